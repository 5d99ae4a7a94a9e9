"""Hostile and malformed input on every ingest endpoint (issue 8, defects 1, 2, 5, 7 and 10).

A table of bad bodies goes through the real aiohttp app: each answer is a 4xx naming the field
path, never a 5xx. Then the issue's own reproductions go to the real daemon process, which must
keep ticking and keep answering /metrics.
"""

from __future__ import annotations

import gzip
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from config.settings import load_settings
from daemon.app import Daemon
from tests.conftest import DaemonProcess, start_daemon
from tests.daemon.test_e2e import metrics, post

NOW = time.time()
GOOD_SPAN: dict[str, Any] = {
    "startTimeUnixNano": str(int(NOW * 1e9)),
    "endTimeUnixNano": str(int(NOW * 1e9) + 500_000_000),
    "attributes": [{"key": "gen_ai.system", "value": {"stringValue": "openai"}}],
}


JSON = {"Content-Type": "application/json"}


def otlp(spans: Any = None, resource: Any = None, scope: Any = None) -> dict[str, Any]:
    """A one-resource, one-scope request; each argument replaces that level."""
    res = {"attributes": [{"key": "service.name", "value": {"stringValue": "bot"}}]}
    return {
        "resourceSpans": [
            {
                "resource": res if resource is None else resource,
                "scopeSpans": [{"spans": [GOOD_SPAN] if spans is None else spans}]
                if scope is None
                else scope,
            }
        ]
    }


def span(**kw: Any) -> dict[str, Any]:
    return GOOD_SPAN | kw


def attr(key: str, value: Any) -> dict[str, Any]:
    return {"key": key, "value": value}


GEN_AI = attr("gen_ai.system", {"stringValue": "openai"})
BIG_INT = {"intValue": "9" * 400}
NUL_STRING = {"stringValue": "a\x00b"}
S0 = "resourceSpans[0].scopeSpans[0].spans[0]"

# (body, expected error text) for POST /v1/traces: all 400, the text names the path.
BAD_OTLP: list[tuple[Any, str]] = [
    ([], "body must be an OTLP ExportTraceServiceRequest object (got array)"),
    ("x", "(got string)"),
    ({"resourceSpans": 5}, "resourceSpans: must be an array (got number)"),
    ({"resourceSpans": [5]}, "resourceSpans[0]: must be an object (got number)"),
    (otlp(resource=5), "resourceSpans[0].resource: must be an object (got number)"),
    (otlp(resource={"attributes": 5}), "resourceSpans[0].resource.attributes: must be an array"),
    (otlp(resource={"attributes": [5]}), "resource.attributes[0]: must be an object"),
    (otlp(resource={"attributes": [{"key": 5}]}), "attributes[0].key: must be a string"),
    (otlp(resource={"attributes": [attr("k", 5)]}), "attributes[0].value: must be an object"),
    (otlp(resource={"attributes": [attr("k", {"intValue": "x"})]}), "value.intValue: must be"),
    (otlp(resource={"attributes": [attr("k", {"intValue": 1.5})]}), "value.intValue: must be"),
    (otlp(resource={"attributes": [attr("k", {"doubleValue": []})]}), "doubleValue: must be"),
    (otlp(resource={"attributes": [attr("k", {"boolValue": "no"})]}), "boolValue: must be"),
    (otlp(resource={"attributes": [attr("k", {"stringValue": 1})]}), "stringValue: must be"),
    (otlp(resource={"attributes": [attr("k", {"arrayValue": 5})]}), "arrayValue: must be"),
    (otlp(resource={"attributes": [attr("k", {"arrayValue": {"values": {}}})]}), "values: must"),
    (otlp(scope={}), "resourceSpans[0].scopeSpans: must be an array (got object)"),
    (otlp(scope=[7]), "resourceSpans[0].scopeSpans[0]: must be an object"),
    (otlp(spans="x"), "resourceSpans[0].scopeSpans[0].spans: must be an array (got string)"),
    # Inside a span: that span is rejected; with no span accepted the answer is still a 400.
    (otlp(spans=[5]), f"{S0}: must be an object (got number)"),
    (otlp(spans=[span(attributes=5)]), f"{S0}.attributes: must be an array"),
    (otlp(spans=[span(attributes=[GEN_AI], startTimeUnixNano="abc")]), f"{S0}.startTimeUnix"),
    (otlp(spans=[span(attributes=[GEN_AI], startTimeUnixNano=-5)]), "between 0 and 2^64-1"),
    (otlp(spans=[span(attributes=[GEN_AI], endTimeUnixNano="9" * 400)]), "between 0 and 2^64"),
    (otlp(spans=[span(attributes=[GEN_AI], status=5)]), f"{S0}.status: must be an object"),
    (
        otlp(spans=[span(attributes=[GEN_AI, attr("gen_ai.usage.input_tokens", BIG_INT)])]),
        f"{S0}: input_tokens: Input should be less than or equal to 1000000000",
    ),
    (
        otlp(spans=[span(attributes=[GEN_AI, attr("http.status_code", {"doubleValue": "NaN"})])]),
        f"{S0}: status: must be an integer (got nan)",
    ),
    (
        otlp(spans=[span(attributes=[GEN_AI, attr("gen_ai.request.model", NUL_STRING)])]),
        f"{S0}: model: must not contain control characters",
    ),
]


# (body, expected error of alert 0, or of the whole body) for POST /v1/alertmanager.
BAD_ALERTS: list[tuple[Any, str]] = [
    ([], "body must be an Alertmanager webhook payload object (got array)"),
    ({"alerts": 5}, "alerts: must be an array of alerts (got number)"),
    ({"alerts": "x"}, "alerts: must be an array of alerts (got string)"),
    ({"alerts": [5]}, "alert: must be an object (got number)"),
    ({"alerts": [{"labels": "x", "status": "firing"}]}, "labels: must be an object of strings"),
    ({"alerts": [{"labels": [], "status": "firing"}]}, "labels: must be an object of strings"),
    ({"alerts": [{"labels": {"feature": 5}, "status": "firing"}]}, "labels.feature: must be a"),
    ({"alerts": [{"labels": {"feature": "f", "alertname": {}}}]}, "labels.alertname: must be"),
    ({"alerts": [{"labels": {"feature": "f"}, "status": 5}]}, "status: must be 'firing' or"),
    ({"alerts": [{"labels": {"feature": "f"}}]}, "status: must be 'firing' or 'resolved'"),
    (
        {"alerts": [{"labels": {"feature": "a\x00"}, "status": "firing"}]},
        "labels.feature: must not",
    ),
    ({"alerts": [{"labels": {"feature": "f" * 201}, "status": "firing"}]}, "at most 200"),
    (
        {"alerts": [{"labels": {"feature": "f"}, "status": "firing", "fingerprint": {}}]},
        "fingerprint: must be a printable string",
    ),
]


async def _client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Daemon, TestClient]:
    monkeypatch.setenv("LLM_ONCALL_STATE__PATH", str(tmp_path / "state.db"))
    daemon = Daemon(load_settings(None))
    # As in Daemon.serve: the daemon inflates gzip itself, with its limits.
    return daemon, TestClient(TestServer(daemon.build_app(), auto_decompress=False))


@pytest.mark.parametrize(("body", "error"), BAD_OTLP)
async def test_malformed_otlp_is_a_400_naming_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: Any, error: str
) -> None:
    daemon, client = await _client(tmp_path, monkeypatch)
    async with client:
        resp = await client.post("/v1/traces", data=orjson.dumps(body),
                                 headers={"Content-Type": "application/json"})  # fmt: skip
        answer = await resp.json()
        assert resp.status == 400, answer
        assert error in answer["error"], answer
        # The same bad span next to a good one: the good one is accepted (partial success).
        if isinstance(body, dict) and str(answer["error"]).startswith(S0):
            spans = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
            mixed = otlp(spans=[*spans, GOOD_SPAN])
            resp = await client.post("/v1/traces", data=orjson.dumps(mixed),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
            answer = await resp.json()
            assert resp.status == 200 and answer["partialSuccess"]["rejectedSpans"] == 1
            assert error in answer["partialSuccess"]["errorMessage"]
        assert (await client.get("/metrics")).status == 200
    daemon.store.close()


@pytest.mark.parametrize(("body", "error"), BAD_ALERTS)
async def test_malformed_alertmanager_is_a_400_naming_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: Any, error: str
) -> None:
    daemon, client = await _client(tmp_path, monkeypatch)
    async with client:
        resp = await client.post("/v1/alertmanager", data=orjson.dumps(body), headers=JSON)
        answer = await resp.json()
        assert resp.status == 400, answer
        text = answer.get("error") or answer["rejected"][0]["error"]
        assert error in text, answer
        # Next to a good alert, only the bad one is refused.
        if "rejected" in answer:
            good = {"status": "firing", "labels": {"feature": "bot", "alertname": "GpuDown"}}
            mixed = {"alerts": [*body["alerts"], good]}
            resp = await client.post("/v1/alertmanager", data=orjson.dumps(mixed), headers=JSON)
            answer = await resp.json()
            assert resp.status == 200 and answer["accepted"] == 1
            assert [r["index"] for r in answer["rejected"]] == [0]
    daemon.store.close()


async def test_an_unknown_field_nested_too_deep_costs_only_its_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Probe: an unknown (ignored) field nested 200+ levels made the whole batch a 400
    against index 0; now that event is rejected alone and the others are accepted."""
    daemon, client = await _client(tmp_path, monkeypatch)
    good = orjson.dumps({"type": "llm_call", "ts": time.time(), "feature": "bot"})
    bad = good[:-1] + b',"extra":' + b"[" * 300 + b"]" * 300 + b"}"
    async with client:
        resp = await client.post("/v1/events", data=b"[" + b",".join([good, bad, good]) + b"]",
                                 headers=JSON)  # fmt: skip
        answer = await resp.json()
        assert resp.status == 200 and answer["accepted"] == 2, answer
        assert [r["index"] for r in answer["rejected"]] == [1]
        assert "more than 200 levels deep" in answer["rejected"][0]["error"]
    daemon.store.close()


async def test_events_content_types(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    daemon, client = await _client(tmp_path, monkeypatch)
    event = orjson.dumps({"type": "llm_call", "ts": time.time(), "feature": "bot"})
    async with client:
        for ctype in ("application/x-www-form-urlencoded", "text/plain", "application/xml"):
            resp = await client.post("/v1/events", data=event, headers={"Content-Type": ctype})
            assert resp.status == 415
            assert "application/x-ndjson" in (await resp.json())["error"]
        for ctype in ("application/json; charset=utf-8", "application/cloudevents+json"):
            resp = await client.post("/v1/events", data=event, headers={"Content-Type": ctype})
            assert resp.status == 200
        resp = await client.post("/v1/events", data=event, skip_auto_headers=["Content-Type"])
        assert resp.status == 200  # no Content-Type at all: read as JSON
    daemon.store.close()


def _metrics_text(d: DaemonProcess) -> tuple[int, bytes]:
    with urllib.request.urlopen(d.url + "/metrics", timeout=10) as resp:
        return resp.status, resp.read()


def test_issue_reproductions_against_the_real_daemon(tmp_path: Path) -> None:
    """The issue's events: answered per event, and the daemon keeps ticking and scraping."""
    d = start_daemon(tmp_path, env={"LLM_ONCALL_AGGREGATION__TICK_S": "0.5"})
    try:
        url = d.url + "/v1/events"
        json_h = {"Content-Type": "application/json"}
        now = time.time()
        good = {"type": "llm_call", "ts": now, "feature": "f", "status": 200, "latency_ms": 50}
        g = orjson.dumps(good)
        huge = "1" + "0" * 400
        bad_calls = [
            g[:-1] + f',"output_chars":{huge}}}'.encode(),
            g[:-1] + f',"input_tokens":{huge}}}'.encode(),
            g[:-1] + b',"output_tokens":1000000000000000000000000000000}',
            g.replace(b'"latency_ms":50', b'"latency_ms":1e308'),
            g.replace(b'"latency_ms":50', b'"latency_ms":1e400'),
            g.replace(b'"latency_ms":50', b'"latency_ms":NaN'),
            g.replace(b'"feature":"f"', b'"feature":"f\\u0000x"'),
            g[:-1] + b',"model":"gpt\x00"}',
        ]
        score = {"type": "score", "ts": now, "feature": "f", "name": "q", "value": 0.5}
        s = orjson.dumps(score)
        metric = {"type": "metric", "ts": now, "feature": "f", "layer": "api", "name": "m"}
        metric["value"] = 1
        bad_other = [
            s.replace(b'"value":0.5', b'"value":1e308'),
            s.replace(b'"value":0.5', f'"value":{huge}'.encode()),
            s.replace(b'"name":"q"', b'"name":"q\\u0000"'),
            orjson.dumps(metric).replace(b'"value":1', b'"value":1' + b"0" * 30),
        ]
        bad = bad_calls + bad_other
        # Each bad event between two good ones, in one JSON array: one rejection each.
        items = [g] + [x for b in bad for x in (b, g)]
        status, answer = post(url, b"[" + b",".join(items) + b"]", json_h)
        assert status == 200, answer
        assert answer["accepted"] == len(bad) + 1
        assert [r["index"] for r in answer["rejected"]] == list(range(1, 2 * len(bad), 2))
        fields = [r["error"].split(":")[0] for r in answer["rejected"]]
        assert fields == ["output_chars", "input_tokens", "output_tokens", "latency_ms",
                          "latency_ms", "latency_ms", "feature", "model", "value", "value",
                          "name", "value"]  # fmt: skip
        # The issue's single-event bodies: refused by field, not accepted.
        for body in bad_calls[:2]:
            status, answer = post(url, b"[" + body + b"]", json_h)
            assert status == 400 and answer["accepted"] == 0
        nd = {"Content-Type": "application/x-ndjson"}
        status, answer = post(url, b"\n".join([g, bad_calls[0], g]), nd)
        assert (status, answer["accepted"], answer["rejected"][0]["index"]) == (200, 2, 1)

        # gzip: both members of a two-member body are read; a truncated body is refused whole.
        lines = [g + b"\n" for _ in range(6)]
        gz = {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}
        two = gzip.compress(b"".join(lines[:3])) + gzip.compress(b"".join(lines[3:]))
        assert post(url, two, gz) == (200, {"accepted": 6, "rejected": []})
        whole = gzip.compress(b"".join(lines * 40))
        status, answer = post(url, whole[: len(whole) // 2], gz)
        assert (status, answer["accepted"]) == (400, 0)
        assert answer["rejected"][0]["error"].startswith("gzip body is truncated")
        # A content coding the daemon cannot read is a 415 (RFC 9110, 15.5.16) saying which
        # one it can, on every ingest endpoint; it used to be a 400. (Through the real daemon:
        # aiohttp's test server refuses `br` itself before any handler runs.)
        for path in ("/v1/events", "/v1/traces", "/v1/alertmanager"):
            req = urllib.request.Request(
                d.url + path, data=g, method="POST",
                headers={"Content-Type": "application/json", "Content-Encoding": "br"},
            )  # fmt: skip
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(req, timeout=10)
            assert refused.value.code == 415, path
            assert refused.value.headers["Accept-Encoding"] == "gzip"
            assert orjson.loads(refused.value.read()) == {
                "error": "Content-Encoding 'br' is not supported (use gzip)"
            }

        m = metrics(d)
        ticks = m[("llm_oncall_ticks_total", ())]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and m[("llm_oncall_ticks_total", ())] < ticks + 3:
            time.sleep(0.3)
            m = metrics(d)
        assert m[("llm_oncall_ticks_total", ())] >= ticks + 3, "the tick loop stopped"
        code, text = _metrics_text(d)
        assert code == 200 and b"\x00" not in text
        layer = {k: v for k, v in m.items() if k[0] == "llm_oncall_layer_value"}
        assert layer and all(abs(v) < 1e15 for v in layer.values()), layer
        total = len(bad) + 1 + 2 + 6  # nothing of the truncated body
        assert m[("llm_oncall_events_accepted_total", (("type", "llm_call"),))] == total
        with urllib.request.urlopen(d.url + "/readyz", timeout=5) as resp:
            assert resp.status == 200
        assert "Traceback" not in d.log()
    finally:
        d.proc.terminate()
        d.proc.wait(timeout=15)


MALFORMED_REQUESTS = [
    b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # request line > 8190
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",  # header
    b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n[]\r\n0\r\n\r\n",  # bad chunk size
]


def _raw_request(d: DaemonProcess, data: bytes) -> bytes:
    import socket

    with socket.create_connection(("127.0.0.1", d.port), timeout=5) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_malformed_http_requests_log_one_line_without_traceback(daemon: DaemonProcess) -> None:
    """Probe N3: aiohttp logged a multi-line traceback for each malformed request, so a client
    could flood the log. Now: 400, and at most one `http_bad_request` line per 10 s."""
    for _ in range(5):
        for data in MALFORMED_REQUESTS:
            answer = _raw_request(daemon, data)
            assert answer.split(b"\r\n")[0].endswith(b" 400 Bad Request"), answer[:200]
    ok = _raw_request(daemon, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200"), ok[:200]
    log = daemon.log()
    assert "Traceback" not in log and "Error handling request" not in log
    lines = [orjson.loads(line) for line in log.splitlines() if line.strip()]  # all JSON
    bad = [line for line in lines if line["event"] == "http_bad_request"]
    assert len(bad) == 1, bad
    assert bad[0]["error"] and "\n" not in bad[0]["error"]
