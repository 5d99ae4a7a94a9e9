"""OTLP/HTTP JSON spans → llm_call events, old and new gen_ai attribute names."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.ingest.alertmanager import alertmanager_signals
from daemon.ingest.events import LlmCall, validate_items
from daemon.ingest.otlp import OtlpError, spans_to_events


def attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, list):
        return {
            "key": key,
            "value": {"arrayValue": {"values": [{"stringValue": v} for v in value]}},
        }
    return {"key": key, "value": {"stringValue": value}}


def doc(spans: list[dict[str, Any]], service: str = "support-bot") -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [attr("service.name", service)]},
                "scopeSpans": [{"spans": spans}],
            }
        ]
    }


START = 1_795_000_000_000_000_000


def span(attrs: list[dict[str, Any]], ms: int = 850, **kw: Any) -> dict[str, Any]:
    return {
        "name": "chat gpt-4o",
        "startTimeUnixNano": str(START),
        "endTimeUnixNano": str(START + ms * 1_000_000),
        "attributes": attrs,
    } | kw


def test_new_attribute_names() -> None:
    s = span(
        [
            attr("gen_ai.provider.name", "openai"),
            attr("gen_ai.request.model", "gpt-4o"),
            attr("gen_ai.response.model", "gpt-4o-2024-08-06"),
            attr("gen_ai.operation.name", "chat"),
            attr("gen_ai.usage.input_tokens", 1200),
            attr("gen_ai.usage.output_tokens", 180),
            attr("gen_ai.response.finish_reasons", ["content_filter"]),
            attr("llm_oncall.label.prompt_version", "v42"),
        ]
    )
    spans = spans_to_events(doc([s]))
    assert (spans.skipped, spans.errors) == (0, [])
    assert spans.paths == ["resourceSpans[0].scopeSpans[0].spans[0]"]
    (ev,), rejected = validate_items(spans.events)
    assert rejected == []
    assert isinstance(ev, LlmCall)
    assert ev.feature == "support-bot" and ev.provider == "openai" and ev.model == "gpt-4o"
    assert ev.endpoint == "chat" and ev.input_tokens == 1200 and ev.output_tokens == 180
    assert ev.latency_ms == pytest.approx(850) and ev.ts == pytest.approx(START / 1e9 + 0.85)
    assert ev.refused is True and ev.status == 200
    assert ev.labels == {"prompt_version": "v42", "model_version": "gpt-4o-2024-08-06"}


def test_old_attribute_names_and_errors() -> None:
    s = span(
        [
            attr("gen_ai.system", "anthropic"),
            attr("gen_ai.usage.prompt_tokens", 10),
            attr("gen_ai.usage.completion_tokens", 3),
            attr("error.type", "timeout"),
            attr("llm_oncall.feature", "summarizer"),
        ]
    )
    (ev,) = spans_to_events(doc([s])).events
    assert ev["provider"] == "anthropic" and ev["feature"] == "summarizer"
    assert (ev["input_tokens"], ev["output_tokens"]) == (10, 3)
    assert ev["status"] == 0 and ev["error"] == "timeout"
    s429 = span(
        [attr("gen_ai.system", "openai"), attr("http.response.status_code", 429)],
        status={"code": 2, "message": "rate limited"},
    )
    (ev,) = spans_to_events(doc([s429])).events
    assert ev["status"] == 429 and ev["error"] == "rate limited"


def test_non_llm_spans_are_skipped_and_bad_spans_named() -> None:
    plain = span([attr("http.route", "/health")])
    bad = {"attributes": [attr("gen_ai.system", "openai")]}  # no start time
    spans = spans_to_events(doc([plain, bad]))
    assert spans.events == [] and spans.skipped == 1
    assert spans.errors == ["resourceSpans[0].scopeSpans[0].spans[1].startTimeUnixNano: required"]
    with pytest.raises(OtlpError, match="ExportTraceServiceRequest"):
        spans_to_events([1, 2])


def test_alertmanager_alerts_become_signals() -> None:
    payload = {
        "version": "4",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "VectorStoreSlow", "feature": "bot"},
                "startsAt": "2026-11-27T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": "abc",
            },
            {
                "status": "resolved",
                "labels": {"alertname": "GpuDown", "feature": "bot", "layer": "infra"},
                "endsAt": "2026-11-27T10:05:00Z",
            },
            {"status": "firing", "labels": {"alertname": "NoFeature"}},
            {"status": "firing", "labels": {"alertname": "X", "feature": "bot", "layer": "gpu"}},
        ],
    }
    sigs, errors, dropped = alertmanager_signals(payload, now=0.0)
    assert [(s.metric, s.state, s.layer, s.detector) for s in sigs] == [
        ("VectorStoreSlow", "firing", "infra", "alertmanager"),
        ("GpuDown", "cleared", "infra", "alertmanager"),
    ]
    assert sigs[0].ts == 1795773600.0 and sigs[0].series == "abc"
    assert errors == [{"index": 3, "error": "labels.layer: unknown layer 'gpu'"}]
    assert dropped == [2]  # no feature label, no default feature: dropped, not an error
