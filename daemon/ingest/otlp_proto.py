"""OTLP/HTTP protobuf traces → `llm_call` events (the encoding stock exporters send).

The OpenTelemetry SDKs' `otlp-proto-http` exporters, OpenLLMetry and the Collector's
`otlphttp` exporter all send `application/x-protobuf` by default. The messages come from
`opentelemetry-proto` (the OTLP project's own generated classes), so the wire format is never
hand-decoded here. Each span is read into the same values the JSON reader produces and goes
through the same `otlp.llm_event`, so a span means the same event, and a bad one the same
error (named by its OTLP JSON path), in either encoding.

The answers are protobuf too, as the OTLP/HTTP spec requires for protobuf requests:
`ExportTraceServiceResponse` (with `partial_success` when spans were rejected) on 200, and a
`google.rpc.Status` on 4xx.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import DecodeError
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Status as SpanStatus

from daemon.ingest.otlp import OtlpError, Spans, llm_event

CONTENT_TYPE = "application/x-protobuf"
_ERROR = SpanStatus.STATUS_CODE_ERROR
# google.rpc.Code values used in error answers (https://grpc.io/docs/guides/status-codes/).
INVALID_ARGUMENT = 3
UNAUTHENTICATED = 16
RESOURCE_EXHAUSTED = 8
UNAVAILABLE = 14


def _value(v: AnyValue) -> Any:
    """An AnyValue → the Python value the JSON reader gives for the same attribute."""
    which = v.WhichOneof("value")
    if which == "string_value":
        return v.string_value
    if which == "int_value":
        return v.int_value
    if which == "double_value":
        return v.double_value
    if which == "bool_value":
        return v.bool_value
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    return None  # kvlist_value, bytes_value, unset: not used (as in JSON)


def _attrs(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    kv: KeyValue
    for kv in items:
        out[kv.key] = _value(kv.value)
    return out


def decode_request(body: bytes) -> ExportTraceServiceRequest:
    """Parse the body; a body that is not the message is one OtlpError (400)."""
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise OtlpError(
            f"body is not a protobuf ExportTraceServiceRequest ({exc}); with "
            "Content-Type: application/json send OTLP JSON instead"
        ) from None
    return request


def spans_to_events(body: bytes) -> Spans:
    """A protobuf ExportTraceServiceRequest → LLM events, with the same shape, skips and
    per-span errors as `otlp.spans_to_events` gives for the JSON encoding."""
    request = decode_request(body)
    out = Spans([], [], 0, [])
    skipped = 0
    for ri, rs in enumerate(request.resource_spans):
        resource = _attrs(rs.resource.attributes)
        for si, ss in enumerate(rs.scope_spans):
            spath = f"resourceSpans[{ri}].scopeSpans[{si}]"
            for pi, span in enumerate(ss.spans):
                attrs = _attrs(span.attributes)
                if not any(k.startswith("gen_ai.") for k in attrs):
                    skipped += 1
                    continue
                where = f"{spath}.spans[{pi}]"
                # proto3 has no presence for scalars: 0 is "not set", as `required` in JSON.
                if span.start_time_unix_nano == 0:
                    out.errors.append(f"{where}.startTimeUnixNano: required")
                    continue
                start = span.start_time_unix_nano
                end = span.end_time_unix_nano or start
                error = span.status.code == _ERROR
                try:
                    ev = llm_event(attrs, resource, start, end, error, span.status.message, where)
                except (OtlpError, ValueError) as exc:
                    out.errors.append(str(exc))
                    continue
                out.events.append(ev)
                out.paths.append(where)
    return out._replace(skipped=skipped)


def response(rejected: int = 0, message: str = "") -> bytes:
    """The 200 answer: empty when every span was taken, else `partial_success`."""
    answer = ExportTraceServiceResponse()
    if rejected or message:
        answer.partial_success.rejected_spans = rejected
        answer.partial_success.error_message = message
    return bytes(answer.SerializeToString())


def status(message: str, code: int = INVALID_ARGUMENT) -> bytes:
    """The body of a 4xx/5xx answer to a protobuf request: a `google.rpc.Status`."""
    return bytes(Status(code=code, message=message).SerializeToString())
