"""OTLP/HTTP protobuf and JSON on /v1/traces, from the stock OpenTelemetry SDK exporters.

Issue 12: the stock `opentelemetry-exporter-otlp-proto-http` exporter got 415. Here the real
SDK exporters (protobuf and JSON, plain and gzip) send real SDK spans to the real daemon
process, and the daemon's counters show what it took. The protobuf reader is also checked
against the JSON reader on the same requests: same events, same errors.
"""

from __future__ import annotations

import gzip
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from google.protobuf.json_format import ParseDict
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.common.http import Compression as JsonCompression
from opentelemetry.exporter.otlp.json.http.trace_exporter import (
    OTLPSpanExporter as JsonSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression as ProtoCompression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as ProtoSpanExporter,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status as SpanStatus
from opentelemetry.trace import StatusCode

from daemon.ingest import otlp, otlp_proto
from tests.conftest import DaemonProcess
from tests.daemon.test_e2e import metrics
from tests.daemon.test_otlp import START, attr, doc, span


def sdk_spans(feature: str, n: int) -> list[ReadableSpan]:
    """`n` LLM spans (every 5th a provider error) and one span that is not an LLM call, made
    by the SDK's tracer as an instrumented app makes them."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": feature}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("llm-app")
    for i in range(n):
        with tracer.start_as_current_span("chat gpt-4o") as s:
            s.set_attribute("gen_ai.provider.name", "openai")
            s.set_attribute("gen_ai.request.model", "gpt-4o")
            s.set_attribute("gen_ai.response.model", "gpt-4o-2024-08-06")
            s.set_attribute("gen_ai.usage.input_tokens", 1000 + i)
            s.set_attribute("gen_ai.usage.output_tokens", 150)
            s.set_attribute("gen_ai.response.finish_reasons", ["stop"])
            s.set_attribute("llm_oncall.label.prompt_version", "v7")
            if i % 5 == 4:
                s.set_attribute("error.type", "500")
                s.set_attribute("http.response.status_code", 500)
                s.set_status(SpanStatus(StatusCode.ERROR, "upstream 500"))
    with tracer.start_as_current_span("GET /health"):
        pass
    provider.shutdown()
    return list(memory.get_finished_spans())


def accepted(d: DaemonProcess, feature: str) -> tuple[float, float]:
    m = metrics(d)
    calls = m.get(("llm_oncall_events_accepted_total", (("type", "llm_call"),)), 0.0)
    skipped = m.get(("llm_oncall_events_unused_total", (("reason", "not_llm_span"),)), 0.0)
    return calls, skipped


def exporters(url: str) -> dict[str, SpanExporter]:
    endpoint = url + "/v1/traces"
    return {
        "protobuf": ProtoSpanExporter(endpoint=endpoint),
        "protobuf+gzip": ProtoSpanExporter(endpoint=endpoint, compression=ProtoCompression.Gzip),
        "json": JsonSpanExporter(endpoint=endpoint),
        "json+gzip": JsonSpanExporter(endpoint=endpoint, compression=JsonCompression.GZIP),
    }


def test_stock_sdk_exporters_both_encodings(daemon: DaemonProcess) -> None:
    taken = 0.0
    for name, exporter in exporters(daemon.url).items():
        spans = sdk_spans("support-bot", 10)
        assert exporter.export(spans) == SpanExportResult.SUCCESS, name
        exporter.shutdown()
        calls, skipped = accepted(daemon, "support-bot")
        assert calls - taken == 10, f"{name}: {calls - taken} of 10 LLM spans taken"
        taken = calls
    assert skipped == 4  # one non-LLM span per export, counted, not lost silently
    # The calls reached the four-layer aggregation: one provider/model series, errors counted.
    m = metrics(daemon)
    by_status = {
        dict(labels).get("status_class"): v
        for (metric, labels), v in m.items()
        if metric == "llm_oncall_llm_requests_total"
        and dict(labels).get("feature") == "support-bot"
    }
    assert by_status.get("5xx") == 8 and by_status.get("2xx") == 32, by_status


def raw_post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str, bytes]:
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def test_protobuf_partial_success_and_errors_are_protobuf(daemon: DaemonProcess) -> None:
    url = daemon.url + "/v1/traces"
    good = span([attr("gen_ai.provider.name", "openai"), attr("gen_ai.usage.input_tokens", 10)])
    bad = span([attr("gen_ai.provider.name", "openai"), attr("gen_ai.usage.input_tokens", -3)])
    request = ParseDict(doc([good, bad]), ExportTraceServiceRequest())
    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
    status, ctype, body = raw_post(url, gzip.compress(request.SerializeToString()), headers)
    assert (status, ctype) == (200, "application/x-protobuf")
    answer = ExportTraceServiceResponse.FromString(body)
    assert answer.partial_success.rejected_spans == 1
    assert "resourceSpans[0].scopeSpans[0].spans[1]" in answer.partial_success.error_message
    assert "input_tokens" in answer.partial_success.error_message

    # All spans rejected, and a body that is not the message: 400 with a google.rpc.Status.
    only_bad = ParseDict(doc([bad]), ExportTraceServiceRequest()).SerializeToString()
    for body_in, expect in ((only_bad, "input_tokens"), (b"\xff\xff\xff", "not a protobuf")):
        status, ctype, body = raw_post(url, body_in, {"Content-Type": "application/x-protobuf"})
        assert (status, ctype) == (400, "application/x-protobuf")
        rpc = Status.FromString(body)
        assert rpc.code == otlp_proto.INVALID_ARGUMENT and expect in rpc.message

    # An encoding nobody speaks is still a clear 415 naming both that are.
    status, _, body = raw_post(url, b"x", {"Content-Type": "text/plain"})
    assert status == 415 and b"application/x-protobuf" in body


def test_protobuf_answers_auth_errors_as_status(tmp_path: Any) -> None:
    from tests.conftest import start_daemon

    d = start_daemon(tmp_path, env={"LLM_ONCALL_INGEST__TOKEN": "s3cret"})
    try:
        request = ParseDict(
            doc([span([attr("gen_ai.system", "openai")])]), ExportTraceServiceRequest()
        )
        status, ctype, body = raw_post(
            d.url + "/v1/traces",
            request.SerializeToString(),
            {"Content-Type": "application/x-protobuf"},
        )
        assert (status, ctype) == (401, "application/x-protobuf")
        assert Status.FromString(body).code == otlp_proto.UNAUTHENTICATED
        exporter = ProtoSpanExporter(
            endpoint=d.url + "/v1/traces", headers={"Authorization": "Bearer s3cret"}
        )
        assert exporter.export(sdk_spans("bot", 3)) == SpanExportResult.SUCCESS
        exporter.shutdown()
    finally:
        d.proc.terminate()
        d.proc.wait(timeout=15)


# The same OTLP requests in both encodings: the protobuf reader must give exactly the JSON
# reader's events, skips and errors (one code path per span, `otlp.llm_event`).
CASES: list[list[dict[str, Any]]] = [
    [span([attr("gen_ai.system", "openai"), attr("gen_ai.usage.prompt_tokens", 5)])],
    [
        span([attr("gen_ai.provider.name", "anthropic"), attr("http.status_code", "429")]),
        span([attr("http.method", "GET")]),  # not an LLM call: skipped
        span([attr("gen_ai.provider.name", "x")], status={"code": 2, "message": "boom"}),
        span([attr("gen_ai.provider.name", "x"), attr("gen_ai.usage.output_tokens", -1)]),
        span([attr("gen_ai.provider.name", "x"), attr("llm_oncall.feature", "other")]),
        span(
            [
                attr("gen_ai.provider.name", "x"),
                attr("gen_ai.response.finish_reasons", ["content_filter"]),
                {"key": "gen_ai.server.time_to_first_token", "value": {"doubleValue": 0.25}},
            ]
        ),
    ],
    [{"name": "no start", "attributes": [attr("gen_ai.system", "openai")]}],
]


@pytest.mark.parametrize("spans", CASES)
def test_protobuf_reads_like_json(spans: list[dict[str, Any]]) -> None:
    document = doc(spans)
    from_json = otlp.spans_to_events(document)
    binary = ParseDict(document, ExportTraceServiceRequest()).SerializeToString()
    from_proto = otlp_proto.spans_to_events(binary)
    assert from_proto == from_json
    assert from_json.events or from_json.errors


def test_protobuf_times_and_feature() -> None:
    s = span([attr("gen_ai.system", "openai")], ms=1234)
    got = otlp_proto.spans_to_events(
        ParseDict(doc([s], service="bot-7"), ExportTraceServiceRequest()).SerializeToString()
    )
    (ev,) = got.events
    assert ev["feature"] == "bot-7"
    assert ev["ts"] == pytest.approx((START + 1234 * 1_000_000) / 1e9)
    assert ev["latency_ms"] == pytest.approx(1234.0)


def test_sdk_spans_arrive_with_their_times(daemon: DaemonProcess) -> None:
    """The exporter's spans land in the current window (ts from the span's end time)."""
    before = time.time()
    exporter = ProtoSpanExporter(endpoint=daemon.url + "/v1/traces")
    spans = sdk_spans("timing-bot", 1)
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    exporter.shutdown()
    end = spans[0].end_time
    assert end is not None and before - 5 <= end / 1e9 <= time.time()
    assert accepted(daemon, "timing-bot")[0] == 1
