"""Fuzz: hostile input never gets a 5xx and never stops detection (issue 8).

Two layers:

- in process, the parser and the pipeline behind it, per example on a fresh pipeline so a
  failure shrinks to the one body that causes it: `parse_body` (with gzip inflation) raises
  only `BodyError` or `UnsupportedMediaType` (the 415), and whatever it accepts survives
  ingest, the following ticks and a `/metrics` exposition;
- through the real daemon process (ticking every 0.2 s), every endpoint: `POST /v1/events`
  (JSON object, array, NDJSON, gzip, two-member and truncated gzip, raw bytes, odd
  Content-Types), `/v1/traces`, `/v1/alertmanager`, `/api/v1/silences` (POST and DELETE),
  and the GET endpoints with odd query strings and ids: no answer is a 5xx, and afterwards
  the tick loop still ticks, `/metrics` and `/readyz` answer 200.

Examples are bounded so the default suite stays near 30 s, and derandomized (the same inputs
every run: CI stays deterministic). For a long random run:

    LLM_ONCALL_FUZZ_EXAMPLES=2000 python -m pytest -p no:cacheprovider tests/fuzz -x

`LLM_ONCALL_FUZZ_EXAMPLES` scales every test's example count (default 1: the bounded run)
and turns derandomization off when set.
"""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from config.settings import load_settings
from daemon.exposition import PipelineCollector
from daemon.ingest.events import (
    BodyError,
    BodyTooLarge,
    UnsupportedMediaType,
    decompress,
    parse_body,
    validate_items,
)
from daemon.pipeline import Pipeline
from tests.conftest import DaemonProcess, start_daemon
from tests.fuzz import strategies as fz

SCALE = int(os.environ.get("LLM_ONCALL_FUZZ_EXAMPLES", "0") or 0)
T0 = 1_790_000_000.0
TICK_S = 0.2


def fuzz(examples: int) -> Any:
    """Bounded, derandomized by default; `LLM_ONCALL_FUZZ_EXAMPLES=N` runs N per test."""
    return settings(
        max_examples=SCALE or examples,
        derandomize=not SCALE,
        deadline=None,
        database=None,
        report_multiple_bugs=False,  # shrink one failure, not each: the CI budget
        # No `explain` phase: it reruns failures under a tracer, a minute on this pipeline.
        phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# ---- in process: parser → pipeline → ticks → exposition --------------------------------


SETTINGS = load_settings(None)


def survive(events: list[Any]) -> None:
    """Accepted events go through ingest, three ticks and an exposition without raising."""
    pipeline = Pipeline(SETTINGS)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(PipelineCollector(lambda: pipeline, {}, lambda: T0))
    tick = SETTINGS.aggregation.tick_s
    pipeline.advance(T0 - tick)
    pipeline.ingest(events, now=T0)
    for k in range(1, 4):
        pipeline.advance(T0 + k * tick)
    generate_latest(registry)


@fuzz(200)
@given(body=fz.event_bodies())
def test_parser_and_pipeline_survive_any_body(body: fz.Body) -> None:
    data, headers = body.render(T0)
    try:
        raw = decompress(data, headers.get("Content-Encoding"), SETTINGS.ingest.max_body_bytes)
        events, _ = parse_body(raw, headers.get("Content-Type"))
    except (BodyError, BodyTooLarge, UnsupportedMediaType):
        return
    survive(events)


@fuzz(200)
@given(items=st.lists(fz.events, min_size=1, max_size=6))
@example([{"type": "llm_call", "ts": fz.Rel(0), "feature": "f", "output_chars": 10**400}])
@example([{"type": "llm_call", "ts": fz.Rel(0), "feature": "f", "input_tokens": 10**400}])
def test_validated_events_never_stop_the_pipeline(items: list[Any]) -> None:
    """Decoded JSON straight into validation: every hostile field value reaches the checks
    (a body would often be refused whole as JSON first)."""
    doc = [fz.with_times(item, T0) for item in items]
    events, _ = validate_items(doc)
    survive(events)


# ---- through the daemon --------------------------------------------------------------


class Client:
    """One keep-alive connection, reopened when the server closes it (413, 408...)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        headers = headers or {}
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                return resp.status, data
            except (http.client.RemoteDisconnected, ConnectionError, BrokenPipeError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                if attempt:
                    raise
        raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, Client]]:
    state = tmp_path_factory.mktemp("fuzz")
    cfg = state / "config.yaml"
    cfg.write_text(
        "silences:\n  - {matchers: [{name: feature, value: maint}], ends_at: 4000000000}\n"
    )
    d = start_daemon(state, config=cfg, env={"LLM_ONCALL_AGGREGATION__TICK_S": str(TICK_S)})
    yield d, Client(d.port)
    d.proc.terminate()
    try:
        d.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        d.proc.kill()


def no_5xx(status: int, answer: bytes, what: str) -> None:
    assert status < 500, f"{what} → {status}: {answer[:500]!r}"


def _call(**fields: Any) -> dict[str, Any]:
    return {"type": "llm_call", "ts": fz.Rel(0.0), "feature": "bot", "status": 200} | fields


# The bad-input classes of issue 8 run first on every run, then the random ones.
@fuzz(150)
@given(body=fz.event_bodies())
@example(fz.Body([_call(output_chars=10**400)], "array", None, "application/json"))
@example(fz.Body([_call(input_tokens=10**400)], "array", None, "application/json"))
@example(fz.Body([_call(input_tokens=10**30, cost_usd=1e308)], "array", None, None))
@example(fz.Body([_call(), _call(latency_ms=float("nan"))], "array", None, None))
@example(fz.Body([_call(), _call(latency_ms=1e400)], "array", None, None))
@example(fz.Body([_call()] * 6, "ndjson", "gzip2", "application/x-ndjson"))
@example(fz.Body([_call()] * 200, "ndjson", "gzip_cut", "application/x-ndjson"))
@example(fz.Body([_call(labels={"segment": "a\x00b"})], "array", None, None))
def test_events_endpoint(fuzzed: tuple[DaemonProcess, Client], body: fz.Body) -> None:
    _, client = fuzzed
    data, headers = body.render(time.time())
    status, answer = client.request("POST", "/v1/events", data, headers)
    no_5xx(status, answer, f"POST /v1/events {headers} {data[:300]!r}")


@fuzz(80)
@given(doc=fz.otlp_docs, ctype=st.sampled_from(["application/json", "application/x-protobuf"]))
@example({"resourceSpans": [{"resource": {"attributes": 5}}]}, "application/json")
def test_traces_endpoint(fuzzed: tuple[DaemonProcess, Client], doc: Any, ctype: str) -> None:
    _, client = fuzzed
    now = time.time()
    data = fz.encode(fz.otlp_time(doc, now), now)
    status, answer = client.request("POST", "/v1/traces", data, {"Content-Type": ctype})
    no_5xx(status, answer, f"POST /v1/traces {data[:300]!r}")


@fuzz(80)
@given(doc=fz.alertmanager_docs)
@example({"alerts": [{"labels": "x"}]})
def test_alertmanager_endpoint(fuzzed: tuple[DaemonProcess, Client], doc: Any) -> None:
    _, client = fuzzed
    data = fz.encode(doc, time.time())
    status, answer = client.request("POST", "/v1/alertmanager", data)
    no_5xx(status, answer, f"POST /v1/alertmanager {data[:300]!r}")


@fuzz(100)
@given(doc=fz.silence_docs, delete=st.booleans())
@example({"matchers": [{"name": "feature", "value": "bot"}], "ends_at": 1e308}, False)
@example({"id": "cfg-0", "matchers": [{"name": "feature", "value": "x"}], "ends_at": 2e9}, True)
@example(
    {"matchers": [{"name": "f", "value": "(a+)+$", "is_regex": True}], "ends_at": fz.Rel(60)}, True
)
def test_silences_endpoint(fuzzed: tuple[DaemonProcess, Client], doc: Any, delete: bool) -> None:
    _, client = fuzzed
    data = fz.encode(doc, time.time())
    status, answer = client.request("POST", "/api/v1/silences", data)
    no_5xx(status, answer, f"POST /api/v1/silences {data[:300]!r}")
    if status == 201 and delete:
        sid = urllib.parse.quote(doc["id"] if isinstance(doc.get("id"), str) else "x", safe="")
        status, answer = client.request("DELETE", f"/api/v1/silences/{sid}")
        no_5xx(status, answer, f"DELETE /api/v1/silences/{sid}")
    status, answer = client.request("GET", "/api/v1/silences")
    assert status == 200, answer[:500]


GET_PATHS = [
    "/api/v1/incidents",
    "/api/v1/incidents/{id}",
    "/api/v1/incidents/{id}/postmortem",
    "/api/v1/silences",
    "/metrics",
    "/healthz",
    "/readyz",
    "/openapi.json",
    "/",
]


@fuzz(120)
@given(path=st.sampled_from(GET_PATHS), query=fz.queries, ident=st.text(max_size=30))
def test_get_endpoints(
    fuzzed: tuple[DaemonProcess, Client], path: str, query: list[tuple[str, str]], ident: str
) -> None:
    _, client = fuzzed
    target = path.replace("{id}", urllib.parse.quote(ident, safe="") or "x")
    if query:
        target += "?" + urllib.parse.urlencode(query)
    status, answer = client.request("GET", target)
    no_5xx(status, answer, f"GET {target}")
    status, answer = client.request("DELETE", "/api/v1/silences/" + target.rsplit("/", 1)[-1])
    no_5xx(status, answer, f"DELETE /api/v1/silences/{target.rsplit('/', 1)[-1]}")


def ticks(client: Client) -> float:
    status, body = client.request("GET", "/metrics")
    assert status == 200, body[:500]
    match = re.search(rb"^llm_oncall_ticks_total ([0-9.e+]+)$", body, re.M)
    assert match, "llm_oncall_ticks_total missing from /metrics"
    return float(match.group(1))


def test_daemon_still_detects_after_the_fuzz(fuzzed: tuple[DaemonProcess, Client]) -> None:
    """Runs after the endpoint tests (file order): the tick loop is alive and the daemon is
    ready. A bad event that killed the loop would freeze the ticks counter."""
    d, client = fuzzed
    assert d.proc.poll() is None, d.log()[-2000:]
    before = ticks(client)
    time.sleep(6 * TICK_S)
    after = ticks(client)
    assert after >= before + 3, f"tick loop stalled: {before} → {after}\n{d.log()[-2000:]}"
    status, body = client.request("GET", "/readyz")
    assert status == 200, body
