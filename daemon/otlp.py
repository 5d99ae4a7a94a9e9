"""OTLP/HTTP JSON traces → `llm_call` events, per the OpenTelemetry gen_ai conventions.

Applications already instrumented with OpenTelemetry can point a trace exporter at the
sidecar instead of sending our own events. Both the older attribute names
(`gen_ai.system`, `gen_ai.usage.prompt_tokens`) and the current ones (`gen_ai.provider.name`,
`gen_ai.usage.input_tokens`) are read, since SDKs in the field emit either. Spans without any
`gen_ai.*` attribute are not LLM calls and are skipped (and counted).

The feature is `llm_oncall.feature` on the span, else on the resource, else `service.name`.
Attributes `llm_oncall.label.<name>` become labels; `gen_ai.response.model` (the dated model
the provider actually served) becomes the `model_version` label, which is how a silent
provider model update shows up in attribution.
"""

from __future__ import annotations

from typing import Any

# First name present wins: current convention first, then the older names.
_PROVIDER = ("gen_ai.provider.name", "gen_ai.system")
_MODEL = ("gen_ai.request.model", "gen_ai.response.model")
_INPUT = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
_OUTPUT = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
_STATUS = ("http.response.status_code", "http.status_code")
_REFUSAL_REASONS = {"content_filter", "refusal", "safety"}


def _value(v: dict[str, Any]) -> Any:
    """An OTLP AnyValue → a Python value (int values arrive as strings in OTLP JSON)."""
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "arrayValue" in v:
        return [_value(x) for x in v["arrayValue"].get("values", [])]
    return None


def _attrs(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {a["key"]: _value(a.get("value", {})) for a in items or [] if "key" in a}


def _first(attrs: dict[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        if name in attrs:
            return attrs[name]
    return None


def spans_to_events(doc: Any) -> tuple[list[dict[str, Any]], int, list[str]]:
    """Returns (event dicts for validation, spans skipped as non-LLM, errors by span path)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceSpans", []), list):
        raise ValueError("body must be an OTLP ExportTraceServiceRequest (resourceSpans)")
    events: list[dict[str, Any]] = []
    errors: list[str] = []
    skipped = 0
    for ri, rs in enumerate(doc.get("resourceSpans", [])):
        resource = _attrs((rs.get("resource") or {}).get("attributes"))
        for si, ss in enumerate(
            rs.get("scopeSpans") or rs.get("instrumentationLibrarySpans") or []
        ):
            for pi, span in enumerate(ss.get("spans") or []):
                where = f"resourceSpans[{ri}].scopeSpans[{si}].spans[{pi}]"
                try:
                    ev = _span_event(span, resource)
                except (KeyError, TypeError, ValueError) as exc:
                    errors.append(f"{where}: {exc}")
                    continue
                if ev is None:
                    skipped += 1
                else:
                    events.append(ev)
    return events, skipped, errors


def _span_event(span: dict[str, Any], resource: dict[str, Any]) -> dict[str, Any] | None:
    attrs = _attrs(span.get("attributes"))
    if not any(k.startswith("gen_ai.") for k in attrs):
        return None
    start = int(span["startTimeUnixNano"])
    end = int(span.get("endTimeUnixNano") or start)
    feature = (
        attrs.get("llm_oncall.feature")
        or resource.get("llm_oncall.feature")
        or resource.get("service.name")
    )
    if not feature:
        raise ValueError("no feature: set llm_oncall.feature or service.name")
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
    span_error = (span.get("status") or {}).get("code") in (2, "STATUS_CODE_ERROR")
    if status is not None:
        ev["status"] = int(status)
    elif error_type or span_error:
        ev["status"] = 0
    else:
        ev["status"] = 200
    if error_type or span_error:
        ev["error"] = str(error_type or (span.get("status") or {}).get("message") or "error")
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
