"""OTLP/HTTP JSON spans → llm_call events, old and new gen_ai attribute names; Alertmanager
webhook payloads → signals."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml
from aiohttp.test_utils import TestClient, TestServer

from config.settings import load_settings
from correlator import rfc3339
from daemon.app import Daemon
from daemon.ingest.alertmanager import ClampedTime, alertmanager_signals
from daemon.ingest.events import LlmCall, validate_items
from daemon.ingest.otlp import OtlpError, spans_to_events

T_RECEIVED = 1_800_000_000.0  # after every time in the payloads below


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
    # No bound on the past here (months between the payload and T_RECEIVED): this test reads
    # the fields; tests/daemon/test_alertmanager.py bounds them.
    batch = alertmanager_signals(payload, now=T_RECEIVED, lookback_s=math.inf)
    sigs, errors, dropped = batch.signals, batch.errors, batch.dropped
    assert batch.clamped == [] and batch.backdated == []
    assert [(s.metric, s.state, s.layer, s.detector) for s in sigs] == [
        ("VectorStoreSlow", "firing", "infra", "alertmanager"),
        ("GpuDown", "cleared", "infra", "alertmanager"),
    ]
    assert sigs[0].ts == 1795773600.0 and sigs[0].series == "abc"
    assert errors == [{"index": 3, "error": "labels.layer: unknown layer 'gpu'"}]
    assert dropped == [2]  # no feature label, no default feature: dropped, not an error


def _alert(status: str, starts: str | None = None, ends: str | None = None) -> dict[str, Any]:
    alert: dict[str, Any] = {"status": status, "labels": {"alertname": "GpuDown", "feature": "bot"}}
    if starts is not None:
        alert["startsAt"] = starts
    if ends is not None:
        alert["endsAt"] = ends
    return alert


def test_alert_times_after_receipt_are_taken_as_received() -> None:
    """Probe finding: startsAt 10 min ahead (clock skew) or in 9000 opened an incident "in the
    future" that resolved that much later, or never. An alert cannot start or end after we
    received it: such a time becomes the receive time and is listed for counting. A firing
    alert's endsAt (Alertmanager's resolve_timeout, always ahead) is not looked at."""
    now = T_RECEIVED
    skewed = datetime.fromtimestamp(now + 600, UTC).isoformat()
    payload = {
        "alerts": [
            _alert("firing", starts=skewed, ends="9000-01-01T00:05:00Z"),
            _alert("firing", starts="9000-01-01T00:00:00Z"),
            _alert("resolved", ends="9000-01-01T00:05:00Z"),
            _alert("firing", starts=datetime.fromtimestamp(now - 60, UTC).isoformat()),
            _alert("resolved", ends=datetime.fromtimestamp(now - 30, UTC).isoformat()),
        ]
    }
    batch = alertmanager_signals(payload, now=now, lookback_s=600)
    assert [s.ts - now for s in batch.signals] == [0.0, 0.0, 0.0, -60.0, -30.0]
    year_9000 = datetime(9000, 1, 1, tzinfo=UTC).timestamp()
    assert batch.clamped == [
        ClampedTime(0, "bot", "GpuDown", "startsAt", now + 600),
        ClampedTime(1, "bot", "GpuDown", "startsAt", year_9000),
        ClampedTime(2, "bot", "GpuDown", "endsAt", year_9000 + 300),
    ]
    assert batch.clamped[0].ahead_s(now) == 600


async def test_a_skewed_alert_opens_and_resolves_now(tmp_path: Path, loop_guard: None) -> None:
    """Through the daemon's handler: the incident opens at the receive time and resolves one
    cooldown after the resolved alert (endsAt in 9000), both clamps are counted in /metrics,
    and the time more than ingest.lateness_s ahead is logged once."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "state": {"path": str(tmp_path / "state.db")},
        "aggregation": {"tick_s": 1, "window_s": 5, "quality_window_s": 5},
        "correlation": {"cooldown_s": 2},
    }))  # fmt: skip
    clock = [float(int(time.time()))]
    daemon = Daemon(load_settings(cfg), clock=lambda: clock[0])
    start = clock[0]
    daemon.handle(daemon.pipeline.advance(start))
    skewed = datetime.fromtimestamp(start + 600, UTC).isoformat()
    firing = _alert("firing", starts=skewed) | {"fingerprint": "f1"}
    firing["labels"] |= {"page_alone": "true"}
    resolved = firing | {"status": "resolved", "endsAt": "9000-01-01T00:00:00Z"}
    async with TestClient(TestServer(daemon.build_app())) as client:
        with structlog.testing.capture_logs() as logs:
            resp = await client.post("/v1/alertmanager", json={"alerts": [firing]})
        assert resp.status == 200 and (await resp.json())["accepted"] == 1
        (warned,) = [e for e in logs if e["event"] == "alert_time_in_future"]
        assert warned["first"][0]["ahead_s"] == 600 and warned["first"][0]["field"] == "startsAt"
        (inc,) = (await (await client.get("/api/v1/incidents")).json())["incidents"]
        assert inc["status"] == "open" and inc["opened_at"] == rfc3339(start)

        clock[0] = start + 3
        daemon.handle(daemon.pipeline.advance(clock[0]))
        resp = await client.post("/v1/alertmanager", json={"alerts": [resolved]})
        assert resp.status == 200
        clock[0] = start + 8  # past the 2 s cooldown
        daemon.handle(daemon.pipeline.advance(clock[0]))
        (inc,) = (await (await client.get("/api/v1/incidents")).json())["incidents"]
        assert inc["status"] == "resolved", inc
        resolved_at = datetime.fromisoformat(inc["resolved_at"]).timestamp()
        assert start + 3 <= resolved_at <= clock[0]
        text = await (await client.get("/metrics")).text()
        assert 'llm_oncall_alert_times_clamped_total{field="startsAt"} 1.0' in text
        assert 'llm_oncall_alert_times_clamped_total{field="endsAt"} 1.0' in text
    daemon.store.close()
