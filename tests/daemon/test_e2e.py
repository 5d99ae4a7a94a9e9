"""The real daemon process: ingest over HTTP, /metrics through prometheus-client's parser,
auth and limits, and a clean exit on SIGTERM."""

from __future__ import annotations

import gzip
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon.app import _accepts_gzip
from tests.conftest import DaemonProcess, start_daemon


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    # JSON unless told otherwise (urllib would send a form content type, answered 415).
    headers = {"Content-Type": "application/json"} | (headers or {})
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read() or b"null")


def metrics(d: DaemonProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(d.url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def call(**kw: Any) -> dict[str, Any]:
    return {
        "type": "llm_call",
        "ts": time.time(),
        "feature": "support-bot",
        "provider": "openai",
        "model": "gpt-4o",
        "status": 200,
        "latency_ms": 700.0,
    } | kw


def test_ingest_forms_and_metrics(daemon: DaemonProcess) -> None:
    url = daemon.url + "/v1/events"
    status, body = post(
        url,
        orjson.dumps([call(), call(status=429), call(latency_ms=-1)]),
        {"Content-Type": "application/json"},
    )
    assert status == 200
    assert body == {
        "accepted": 2,
        "rejected": [
            {"index": 2, "error": "latency_ms: Input should be greater than or equal to 0 (got -1)"}
        ],
    }

    ndjson = b"\n".join(orjson.dumps(call(input_tokens=100, output_tokens=20)) for _ in range(3))
    status, body = post(
        url,
        gzip.compress(ndjson),
        {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"},
    )
    assert (status, body["accepted"]) == (200, 3)

    status, body = post(url, orjson.dumps(call(status="oops")))
    assert status == 400 and body["accepted"] == 0
    assert body["rejected"][0]["error"].startswith("status: must be an integer")

    score = {
        "type": "score",
        "ts": time.time(),
        "feature": "support-bot",
        "name": "faith",
        "value": 0.8,
    }
    assert post(url, orjson.dumps(score))[0] == 200

    m = metrics(daemon)
    base = (("feature", "support-bot"), ("model", "gpt-4o"), ("provider", "openai"))
    assert m[("llm_oncall_llm_requests_total", (*base, ("status_class", "2xx")))] == 4
    assert m[("llm_oncall_llm_requests_total", (*base, ("status_class", "429")))] == 1
    # The duration histogram counts successful calls only (the 429 is in requests_total).
    assert m[("llm_oncall_llm_request_duration_seconds_count", base)] == 4
    assert (
        m[
            (
                "llm_oncall_llm_request_duration_seconds_bucket",
                tuple(sorted((*base, ("le", "0.64")))),
            )
        ]
        == 0
    )
    assert (
        m[
            (
                "llm_oncall_llm_request_duration_seconds_bucket",
                tuple(sorted((*base, ("le", "1.28")))),
            )
        ]
        == 4
    )
    assert m[("llm_oncall_llm_tokens_total", (*base, ("type", "input")))] == 300
    assert m[("llm_oncall_events_accepted_total", (("type", "llm_call"),))] == 5
    assert m[("llm_oncall_events_rejected_total", (("reason", "invalid"),))] == 2
    assert m[("llm_oncall_score_count", (("feature", "support-bot"), ("name", "faith")))] == 1

    late = call(ts=time.time() - 3600)
    assert post(url, orjson.dumps(late))[0] == 200
    assert metrics(daemon)[("llm_oncall_events_unused_total", (("reason", "late"),))] == 1

    for path in ("/healthz", "/readyz"):
        with urllib.request.urlopen(daemon.url + path, timeout=5) as resp:
            assert resp.status == 200

    # Prometheus asks for gzip (Accept-Encoding: gzip): the same text, compressed.
    req = urllib.request.Request(daemon.url + "/metrics", headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.headers["Content-Encoding"] == "gzip"
        text = gzip.decompress(resp.read()).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["llm_oncall_score"].samples


def test_auth_and_body_limit(tmp_path: Path) -> None:
    d = start_daemon(
        tmp_path,
        env={"LLM_ONCALL_INGEST__TOKEN": "s3cret", "LLM_ONCALL_INGEST__MAX_BODY_BYTES": "2000"},
    )
    try:
        url = d.url + "/v1/events"
        assert post(url, orjson.dumps(call()))[0] == 401
        assert post(url, orjson.dumps(call()), {"Authorization": "Bearer wrong"})[0] == 401
        ok = {"Authorization": "Bearer s3cret"}
        assert post(url, orjson.dumps(call()), ok)[0] == 200
        assert post(url, orjson.dumps([call()] * 40), ok)[0] == 413
        bomb = gzip.compress(orjson.dumps([call()] * 400))
        assert len(bomb) < 2000
        assert post(url, bomb, ok | {"Content-Encoding": "gzip"})[0] == 413
        # A silence can stop pages, so it needs the token too.
        silence = orjson.dumps(
            {"matchers": [{"name": "feature", "value": "x"}], "ends_at": time.time() + 600}
        )
        assert post(d.url + "/api/v1/silences", silence)[0] == 401
        assert post(d.url + "/api/v1/silences", silence, ok)[0] == 201
        d.proc.send_signal(signal.SIGTERM)
        d.proc.wait(timeout=15)
        assert "s3cret" not in d.log()
    finally:
        if d.proc.poll() is None:
            d.proc.kill()


def test_sigterm_stops_cleanly_and_keeps_state(daemon: DaemonProcess) -> None:
    assert post(daemon.url + "/v1/events", orjson.dumps([call()] * 50))[0] == 200
    started = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=10) == 0
    assert time.monotonic() - started < 10
    log = daemon.log()
    assert '"event": "stopping"' in log and '"event": "stopped"' in log
    # The snapshot written at shutdown is there for the next start.
    again = start_daemon(daemon.state_dir)
    try:
        assert '"event": "state_restored"' in again.log()
    finally:
        again.proc.send_signal(signal.SIGTERM)
        assert again.proc.wait(timeout=10) == 0


@pytest.mark.parametrize(
    ("header", "takes"),
    [
        ("gzip", True),
        ("deflate, gzip;q=1.0, *;q=0.5", True),
        ("gzip;q=0", False),
        ("identity", False),
        ("*", True),
        ("*;q=0.2, gzip;q=0", False),
        ("", False),
        ("GZIP ; q=0.5", True),
        ("gzip;q=oops", False),
    ],
)
def test_accept_encoding_takes_gzip_as_rfc_9110_says(header: str, takes: bool) -> None:
    assert _accepts_gzip(header) is takes
