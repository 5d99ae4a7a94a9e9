"""The event contract: every field's validation, good and bad, with the error text."""

from __future__ import annotations

import gzip
from typing import Any

import orjson
import pytest

from daemon.events import (
    BodyError,
    BodyTooLarge,
    Change,
    LlmCall,
    MetricEvent,
    Score,
    decompress,
    iter_lines,
    parse_body,
    validate_items,
)

CALL: dict[str, Any] = {"type": "llm_call", "ts": 1767225600, "feature": "support-bot"}


def one_error(obj: Any) -> str:
    events, rejected = parse_body(orjson.dumps([obj]), "application/json")
    assert events == []
    assert len(rejected) == 1 and rejected[0].index == 0
    return rejected[0].error


def test_minimal_events_of_each_type_are_accepted() -> None:
    body = [
        CALL,
        {"type": "score", "ts": 1, "feature": "f", "name": "faithfulness", "value": 0.9},
        {"type": "change", "ts": 1, "kind": "prompt"},
        {"type": "metric", "ts": 1, "feature": "f", "layer": "quality", "name": "x", "value": 2},
    ]
    events, rejected = parse_body(orjson.dumps(body), None)
    assert rejected == []
    assert [type(e) for e in events] == [LlmCall, Score, Change, MetricEvent]
    assert isinstance(events[2], Change) and events[2].feature is None


def test_full_llm_call_keeps_every_field() -> None:
    full = CALL | {
        "provider": "openai",
        "model": "gpt-4o",
        "endpoint": "chat",
        "latency_ms": 812.5,
        "status": 200,
        "error": None,
        "retries": 1,
        "input_tokens": 10,
        "output_tokens": 5,
        "cost_usd": 0.001,
        "refused": False,
        "format_ok": True,
        "output_chars": 40,
        "request_id": "r1",
        "labels": {"prompt_version": "v42"},
        "unknown_field": [1, 2],
    }
    (ev,), rejected = parse_body(orjson.dumps(full), None)
    assert rejected == []
    assert isinstance(ev, LlmCall)
    assert ev.latency_ms == 812.5 and ev.retries == 1 and ev.labels == {"prompt_version": "v42"}


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2026-01-01T00:00:00Z", 1767225600.0),
        ("2026-01-01T01:00:00+01:00", 1767225600.0),
        (1767225600, 1767225600.0),
        (1767225600.25, 1767225600.25),
    ],
)
def test_ts_forms(ts: Any, expected: float) -> None:
    (ev,), _ = parse_body(orjson.dumps(CALL | {"ts": ts}), None)
    assert ev.ts == expected


@pytest.mark.parametrize("ts", ["2026-01-01T00:00:00", "yesterday", "1767225600", True, None, []])
def test_bad_ts_is_named(ts: Any) -> None:
    err = one_error(CALL | {"ts": ts})
    assert err.startswith("ts: must be RFC 3339 with a time zone or Unix seconds")


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("latency_ms", -1, "latency_ms: Input should be greater than or equal to 0 (got -1)"),
        ("latency_ms", "12", "latency_ms: must be a number (got '12')"),
        ("latency_ms", True, "latency_ms: must be a number (got True)"),
        ("retries", 1.5, "retries: must be an integer (got 1.5)"),
        ("retries", -2, "retries: Input should be greater than or equal to 0 (got -2)"),
        ("input_tokens", -1, "input_tokens: Input should be greater than or equal to 0 (got -1)"),
        ("output_tokens", "5", "output_tokens: must be an integer (got '5')"),
        ("cost_usd", -0.01, "cost_usd: Input should be greater than or equal to 0 (got -0.01)"),
        ("status", "200", "status: must be an integer (got '200')"),
        ("status", -1, "status: Input should be greater than or equal to 0 (got -1)"),
        ("refused", "yes", "refused: Input should be a valid boolean (got 'yes')"),
        ("format_ok", 1, "format_ok: Input should be a valid boolean (got 1)"),
        ("output_chars", -3, "output_chars: Input should be greater than or equal to 0 (got -3)"),
        ("error", 5, "error: Input should be a valid string (got 5)"),
        ("labels", {"a": 1}, "labels.a: Input should be a valid string (got 1)"),
        ("labels", ["a"], "labels: Input should be a valid dictionary (got ['a'])"),
        ("feature", "", "feature: String should have at least 1 character (got '')"),
        ("feature", "x" * 201, "feature: String should have at most 200 characters"),
    ],
)
def test_llm_call_field_errors(field: str, value: Any, expected: str) -> None:
    assert one_error(CALL | {field: value}).startswith(expected)


def test_missing_required_fields_are_named() -> None:
    assert one_error({"type": "llm_call", "ts": 1}) == "feature: field required"
    assert one_error({"type": "score", "ts": 1, "feature": "f", "name": "n"}) == (
        "value: field required"
    )
    assert one_error({"type": "change", "ts": 1}) == "kind: field required"
    err = one_error({"type": "metric", "ts": 1, "feature": "f", "name": "n", "value": 1})
    assert err == "layer: field required"


def test_type_errors() -> None:
    assert one_error({"ts": 1}) == "type: field required (one of llm_call, score, change, metric)"
    assert one_error({"type": "trace", "ts": 1}) == (
        "type: must be one of llm_call, score, change, metric (got 'trace')"
    )


def test_score_value_must_be_finite_number() -> None:
    base = {"type": "score", "ts": 1, "feature": "f", "name": "n"}
    assert one_error(base | {"value": "0.5"}) == "value: must be a number (got '0.5')"
    # JSON has no NaN: a body carrying one is not JSON at all...
    with pytest.raises(BodyError, match="not valid JSON"):
        parse_body(b'{"type":"score","ts":1,"feature":"f","name":"n","value":NaN}', None)
    # ...and a NaN that reaches validation another way is still refused by name.
    events, rejected = validate_items([base | {"value": float("nan")}])
    assert events == [] and rejected[0].error == "value: must be a finite number (got nan)"
    events, rejected = validate_items([CALL | {"ts": float("inf")}])
    assert rejected[0].error.startswith("ts: must be RFC 3339")


def test_metric_layer_is_one_of_four() -> None:
    err = one_error(
        {"type": "metric", "ts": 1, "feature": "f", "layer": "gpu", "name": "n", "value": 1}
    )
    assert err.startswith("layer: Input should be 'infra', 'api', 'behavioral' or 'quality'")


def test_feature_names_with_slashes_and_dots() -> None:
    (ev,), _ = parse_body(orjson.dumps(CALL | {"feature": "team/bot.v2"}), None)
    assert ev.feature == "team/bot.v2"


def test_several_errors_in_one_event_are_all_named() -> None:
    err = one_error(CALL | {"latency_ms": -1, "retries": "x"})
    assert "latency_ms:" in err and "retries:" in err


def test_batch_keeps_good_events_and_names_bad_indexes() -> None:
    body = [CALL, CALL | {"latency_ms": -1}, 7, CALL]
    events, rejected = parse_body(orjson.dumps(body), None)
    assert len(events) == 2
    assert [r.index for r in rejected] == [1, 2]
    assert rejected[1].error == "event must be a JSON object, got int"


def test_ndjson_indexes_are_line_numbers() -> None:
    lines = [orjson.dumps(CALL), b"", b"{not json", orjson.dumps(CALL | {"retries": -1})]
    events, rejected = parse_body(b"\n".join(lines), "application/x-ndjson")
    assert len(events) == 1
    assert [(r.index, r.error.split(":")[0]) for r in rejected] == [
        (2, "line is not valid JSON"),
        (3, "retries"),
    ]


def test_body_errors() -> None:
    with pytest.raises(BodyError, match="not valid JSON"):
        parse_body(b"{", "application/json")
    with pytest.raises(BodyError, match="must be a JSON object, an array"):
        parse_body(b"42", "application/json")


def test_gzip_and_its_limit() -> None:
    raw = orjson.dumps([CALL] * 10)
    assert decompress(gzip.compress(raw), "gzip", 10_000) == raw
    with pytest.raises(BodyTooLarge):
        decompress(gzip.compress(b" " * 100_000), "gzip", 1000)
    with pytest.raises(BodyError, match="not valid gzip"):
        decompress(b"plain", "gzip", 1000)
    with pytest.raises(BodyError, match="not supported"):
        decompress(b"x", "br", 1000)


def test_replay_lines_count_from_one() -> None:
    lines = [orjson.dumps(CALL) + b"\n", b"oops\n", orjson.dumps(CALL | {"status": 1.5}) + b"\n"]
    chunks = list(iter_lines(iter(lines), chunk=2))
    events = [e for evs, _ in chunks for e in evs]
    rejected = [r for _, rs in chunks for r in rs]
    assert len(events) == 1
    assert [r.index for r in rejected] == [2, 3]
    assert rejected[1].error == "status: must be an integer (got 1.5)"
