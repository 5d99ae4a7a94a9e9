"""A large valid OTLP protobuf body decodes off the event loop (probe finding: 8 MB of empty
resourceSpans held the loop for 6 s, and /healthz and ingest with it)."""

from __future__ import annotations

import threading
import time

from tests.conftest import DaemonProcess
from tests.e2e.harness import http


def test_healthz_answers_while_a_large_protobuf_body_decodes(daemon: DaemonProcess) -> None:
    body = b"\x0a\x00" * 2_000_000  # 2M empty ResourceSpans: valid, 4 MB, no spans
    result: dict[str, int] = {}

    def post() -> None:
        import urllib.request

        req = urllib.request.Request(
            daemon.url + "/v1/traces",
            data=body,
            headers={"Content-Type": "application/x-protobuf"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            result["status"] = resp.status

    thread = threading.Thread(target=post)
    thread.start()
    worst = 0.0
    while thread.is_alive():
        started = time.perf_counter()
        status, _, _ = http("GET", daemon.url + "/healthz", timeout=10)
        assert status == 200
        worst = max(worst, time.perf_counter() - started)
        time.sleep(0.02)
    thread.join()
    assert result["status"] == 200
    assert worst < 1.0, f"/healthz took {worst:.2f} s during the decode"
