"""OTLP/HTTP traces → `llm_call` events, per the OpenTelemetry gen_ai conventions.

Applications already instrumented with OpenTelemetry can point a trace exporter at the
sidecar instead of sending our own events. Both the older attribute names
(`gen_ai.system`, `gen_ai.usage.prompt_tokens`) and the current ones (`gen_ai.provider.name`,
`gen_ai.usage.input_tokens`) are read, since SDKs in the field emit either. Spans without any
`gen_ai.*` attribute are not LLM calls and are skipped (and counted).

The feature is `llm_oncall.feature` on the span, else on the resource, else `service.name`.
Attributes `llm_oncall.label.<name>` become labels; `gen_ai.response.model` (the dated model
the provider actually served) becomes the `model_version` label, which is how a silent
provider model update shows up in attribution.

This module reads the JSON encoding; `otlp_proto` reads protobuf into the same per-span
values and shares `llm_event`, so both encodings give the same events and the same errors
(paths use the OTLP JSON field names in both).
"""

from __future__ import annotations

from typing import Any, NamedTuple

# First name present wins: current convention first, then the older names.
_PROVIDER = ("gen_ai.provider.name", "gen_ai.system")
_MODEL = ("gen_ai.request.model", "gen_ai.response.model")
_INPUT = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
_OUTPUT = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
_STATUS = ("http.response.status_code", "http.status_code")
_REFUSAL_REASONS = {"content_filter", "refusal", "safety"}
_MAX_NANOS = 2**64 - 1  # fixed64, the type of OTLP span times


class OtlpError(ValueError):
    """A malformed part of the request outside any one span: the whole request is refused
    (400), and the message names the JSON path."""


class Spans(NamedTuple):
    """LLM spans as event dicts for validation, with the JSON path of each (for errors)."""

    events: list[dict[str, Any]]
    paths: list[str]
    skipped: int  # spans without gen_ai.* attributes: not LLM calls
    errors: list[str]  # "path: message" per span that could not be read


def _kind(value: Any) -> str:
    """The JSON name of a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _obj(value: Any, path: str) -> dict[str, Any]:
    """An optional JSON object (absent or null reads as empty, as protobuf JSON allows)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise OtlpError(f"{path}: must be an object (got {_kind(value)})")
    return value


def _arr(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise OtlpError(f"{path}: must be an array (got {_kind(value)})")
    return value


def _int(value: Any, path: str) -> int:
    """An int64/fixed64 in OTLP JSON: a decimal string, or a plain JSON integer."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:  # also a string over Python's 4,300-digit limit
            pass
    raise OtlpError(f"{path}: must be an integer or a decimal string (got {_short(value)})")


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**60 else "a huge number"
    return text if len(text) <= 60 else text[:57] + "..."


def _value(v: Any, path: str) -> Any:
    """An OTLP AnyValue → a Python value (int values arrive as strings in OTLP JSON). Ranges
    are left to event validation, which names the event field."""
    v = _obj(v, path)
    if "stringValue" in v:
        if not isinstance(v["stringValue"], str):
            raise OtlpError(f"{path}.stringValue: must be a string (got {_kind(v['stringValue'])})")
        return v["stringValue"]
    if "intValue" in v:
        return _int(v["intValue"], path + ".intValue")
    if "doubleValue" in v:
        d = v["doubleValue"]
        # protobuf JSON writes NaN and infinities as strings; event validation refuses them.
        if isinstance(d, int | float | str) and not isinstance(d, bool):
            try:
                return float(d)
            except (ValueError, OverflowError):
                pass
        raise OtlpError(f"{path}.doubleValue: must be a number (got {_short(d)})")
    if "boolValue" in v:
        if not isinstance(v["boolValue"], bool):
            got = _short(v["boolValue"])
            raise OtlpError(f"{path}.boolValue: must be true or false (got {got})")
        return v["boolValue"]
    if "arrayValue" in v:
        values = _arr(_obj(v["arrayValue"], path + ".arrayValue").get("values"),
                      path + ".arrayValue.values")  # fmt: skip
        return [_value(x, f"{path}.arrayValue.values[{i}]") for i, x in enumerate(values)]
    return None  # kvlistValue, bytesValue, empty: not used


def _attrs(items: Any, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, a in enumerate(_arr(items, path)):
        a = _obj(a, f"{path}[{i}]")
        key = a.get("key")
        if not isinstance(key, str):
            raise OtlpError(f"{path}[{i}].key: must be a string (got {_kind(key)})")
        out[key] = _value(a.get("value"), f"{path}[{i}].value")
    return out


def _first(attrs: dict[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        if name in attrs:
            return attrs[name]
    return None


def spans_to_events(doc: Any) -> Spans:
    """OTLP ExportTraceServiceRequest → LLM events. A malformed span is one error naming its
    path; a malformed structure around the spans raises OtlpError (the request is refused)."""
    if not isinstance(doc, dict):
        raise OtlpError(f"body must be an OTLP ExportTraceServiceRequest object (got {_kind(doc)})")
    out = Spans([], [], 0, [])
    skipped = 0
    for ri, rs in enumerate(_arr(doc.get("resourceSpans"), "resourceSpans")):
        rpath = f"resourceSpans[{ri}]"
        rs = _obj(rs, rpath)
        resource = _attrs(_obj(rs.get("resource"), rpath + ".resource").get("attributes"),
                          rpath + ".resource.attributes")  # fmt: skip
        scope_key = "scopeSpans" if "scopeSpans" in rs else "instrumentationLibrarySpans"
        for si, ss in enumerate(_arr(rs.get(scope_key), f"{rpath}.{scope_key}")):
            spath = f"{rpath}.{scope_key}[{si}]"
            for pi, span in enumerate(_arr(_obj(ss, spath).get("spans"), spath + ".spans")):
                where = f"{spath}.spans[{pi}]"
                try:
                    ev = _span_event(span, resource, where)
                except (OtlpError, ValueError) as exc:
                    out.errors.append(str(exc))
                    continue
                if ev is None:
                    skipped += 1
                else:
                    out.events.append(ev)
                    out.paths.append(where)
    return out._replace(skipped=skipped)


def _status(value: Any) -> Any:
    """An HTTP status attribute sent as "429" or 429.0 is still 429; anything else is left for
    event validation to refuse by name (status: integer 0..999)."""
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 3:
        return int(value)
    if isinstance(value, float) and value.is_integer() and 0 <= value <= 999:
        return int(value)
    return value


def _span_event(span: Any, resource: dict[str, Any], path: str) -> dict[str, Any] | None:
    """One OTLP JSON span → an event dict (None when it is not an LLM call)."""
    span = _obj(span, path)
    attrs = _attrs(span.get("attributes"), path + ".attributes")
    if not any(k.startswith("gen_ai.") for k in attrs):
        return None
    if "startTimeUnixNano" not in span:
        raise OtlpError(f"{path}.startTimeUnixNano: required")
    start = _int(span["startTimeUnixNano"], path + ".startTimeUnixNano")
    end = start
    if span.get("endTimeUnixNano") not in (None, "", 0, "0"):
        end = _int(span["endTimeUnixNano"], path + ".endTimeUnixNano")
    span_status = _obj(span.get("status"), path + ".status")
    span_error = span_status.get("code") in (2, "STATUS_CODE_ERROR")
    return llm_event(attrs, resource, start, end, span_error, span_status.get("message"), path)


def llm_event(
    attrs: dict[str, Any],
    resource: dict[str, Any],
    start: int,
    end: int,
    span_error: bool,
    status_message: Any,
    path: str,
) -> dict[str, Any]:
    """A span already read from its encoding (JSON or protobuf) → an `llm_call` event dict.

    One function for both encodings, so a span means the same event however it was sent.
    Raises OtlpError naming `path` for a span that cannot be an event."""
    for name, nanos in (("startTimeUnixNano", start), ("endTimeUnixNano", end)):
        if not 0 <= nanos <= _MAX_NANOS:  # fixed64; also keeps the float division finite
            raise OtlpError(f"{path}.{name}: must be between 0 and 2^64-1 (got {_short(nanos)})")
    feature = (
        attrs.get("llm_oncall.feature")
        or resource.get("llm_oncall.feature")
        or resource.get("service.name")
    )
    if not feature:
        raise OtlpError(f"{path}: no feature: set llm_oncall.feature or service.name")
    ev: dict[str, Any] = {
        "type": "llm_call",
        "ts": end / 1e9,
        "feature": feature,
        "latency_ms": max(0, end - start) / 1e6,
    }
    provider = _first(attrs, _PROVIDER)
    if provider:
        ev["provider"] = provider
    model = _first(attrs, _MODEL)
    if model:
        ev["model"] = model
    if "gen_ai.operation.name" in attrs:
        ev["endpoint"] = attrs["gen_ai.operation.name"]
    for key, names in (("input_tokens", _INPUT), ("output_tokens", _OUTPUT)):
        n = _first(attrs, names)
        if n is not None:
            ev[key] = n
    status = _first(attrs, _STATUS)
    error_type = attrs.get("error.type")
    if status is not None:
        ev["status"] = _status(status)
    elif error_type or span_error:
        ev["status"] = 0
    else:
        ev["status"] = 200
    if error_type or span_error:
        ev["error"] = str(error_type or status_message or "error")
    ttft_s = attrs.get("gen_ai.server.time_to_first_token")  # seconds, where spans carry it
    if isinstance(ttft_s, int | float) and not isinstance(ttft_s, bool) and ttft_s >= 0:
        ev["ttft_ms"] = float(ttft_s) * 1000.0
    reasons = attrs.get("gen_ai.response.finish_reasons")
    if isinstance(reasons, list) and reasons:
        ev["refused"] = any(str(r) in _REFUSAL_REASONS for r in reasons)
    labels = {k.removeprefix("llm_oncall.label."): str(v) for k, v in attrs.items()
              if k.startswith("llm_oncall.label.")}  # fmt: skip
    served = attrs.get("gen_ai.response.model")
    if served and "model_version" not in labels:
        labels["model_version"] = str(served)
    if labels:
        ev["labels"] = labels
    return ev
