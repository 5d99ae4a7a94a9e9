"""The event contract: every field's validation, good and bad, with the error text."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest

from daemon.ingest.events import (
    BodyError,
    BodyTooLarge,
    Change,
    InputError,
    LlmCall,
    MetricEvent,
    Score,
    UnsupportedEncoding,
    UnsupportedMediaType,
    body_format,
    decompress,
    iter_lines,
    open_input,
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
    kinds = (LlmCall, Score, Change, MetricEvent)
    assert [isinstance(e, k) for e, k in zip(events, kinds, strict=True)] == [True] * 4
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
    # JSON has no NaN, but a producer's NaN is one bad event named by its field, not a bad body.
    events, rejected = parse_body(b'{"type":"score","ts":1,"feature":"f","name":"n","value":NaN}')
    assert events == [] and rejected[0].error == "value: must be a finite number (got nan)"
    # A NaN that reaches validation another way is refused the same way.
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
    with pytest.raises(UnsupportedEncoding, match="'br' is not supported"):
        decompress(b"x", "br", 1000)


def test_replay_lines_count_from_one() -> None:
    lines = [orjson.dumps(CALL) + b"\n", b"oops\n", orjson.dumps(CALL | {"status": 1.5}) + b"\n"]
    chunks = list(iter_lines(iter(lines), chunk=2))
    events = [e for evs, _ in chunks for e in evs]
    rejected = [r for _, rs in chunks for r in rs]
    assert len(events) == 1
    assert [r.index for r in rejected] == [2, 3]
    assert rejected[1].error == "status: must be an integer (got 1.5)"


# ---- numbers bounded at the contract (issue 8, defects 1, 2 and 10) ---------------------------

HUGE_INT = "1" + "0" * 400
# Every numeric field with its largest accepted value; one more is refused by name.
BOUNDS: list[tuple[str, dict[str, Any], str, Any]] = [
    ("llm_call", CALL, "latency_ms", 86_400_000),
    ("llm_call", CALL, "status", 999),
    ("llm_call", CALL, "retries", 1000),
    ("llm_call", CALL, "input_tokens", 1_000_000_000),
    ("llm_call", CALL, "output_tokens", 1_000_000_000),
    ("llm_call", CALL, "output_chars", 1_000_000_000),
    ("llm_call", CALL, "cost_usd", 1_000_000),
    ("llm_call", CALL, "ts", 253_402_300_799),
    ("score", {"type": "score", "ts": 1, "feature": "f", "name": "n"}, "value", 1e15),
    ("metric", {"type": "metric", "ts": 1, "feature": "f", "layer": "api", "name": "n"},
     "value", 1e15),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "base", "field", "top"), BOUNDS)
def test_each_number_has_a_documented_upper_bound(
    kind: str, base: dict[str, Any], field: str, top: Any
) -> None:
    (ev,), rejected = parse_body(orjson.dumps(base | {field: top}))
    assert rejected == [] and ev.type == kind
    over = top + 1 if isinstance(top, int) else top * 1.001
    assert one_error(base | {field: over}).startswith(f"{field}: ")


@pytest.mark.parametrize(("kind", "base", "field", "top"), BOUNDS)
@pytest.mark.parametrize(
    "raw",
    [HUGE_INT, "-" + HUGE_INT, "1" + "0" * 30, "1e308", "1e400", "-1e400", "NaN", "Infinity",
     "-Infinity"],
    ids=["int400", "-int400", "1e30int", "1e308", "1e400", "-1e400", "NaN", "Inf", "-Inf"],
)  # fmt: skip
def test_hostile_numbers_reject_only_their_event(
    kind: str, base: dict[str, Any], field: str, top: Any, raw: str
) -> None:
    """In an array, in NDJSON and in replay input: the bad event is named by index/line and
    field, the events around it are kept, and no non-finite or out-of-range number passes."""
    good = orjson.dumps(base | {field: top})
    bad = orjson.dumps(base | {field: "RAW"}).replace(b'"RAW"', raw.encode())
    for body, ctype in (
        (b"[" + b",".join([good, bad, good]) + b"]", "application/json"),
        (b"\n".join([good, bad, good]), "application/x-ndjson"),
    ):
        events, rejected = parse_body(body, ctype)
        assert len(events) == 2, (ctype, rejected)
        assert [r.index for r in rejected] == [1]
        assert rejected[0].error.startswith(f"{field}: "), rejected[0].error
        assert len(rejected[0].error) < 300
    chunks = list(iter_lines(iter([good, bad, good])))
    assert sum(len(evs) for evs, _ in chunks) == 2
    assert [r.index for _, rs in chunks for r in rs] == [2]


def test_a_number_past_pythons_digit_limit_is_a_bad_body_not_a_crash() -> None:
    """Over 4,300 digits no parser builds the number: the document (or NDJSON line) is
    refused whole as invalid JSON, with its position."""
    body = b'[{"type":"llm_call","ts":1,"feature":"f","retries":1' + b"0" * 5000 + b"}]"
    with pytest.raises(BodyError, match="not valid JSON: number out of range"):
        parse_body(body, "application/json")
    events, rejected = parse_body(orjson.dumps(CALL) + b"\n" + body[1:-1], "application/x-ndjson")
    assert len(events) == 1 and rejected[0].index == 1


@pytest.mark.parametrize(
    ("ts", "error"),
    [
        (-1, "ts: must be between 0 and 253402300799 Unix seconds"),
        ("0001-01-01T00:00:00+01:00", "ts: must be between 0 and 253402300799 Unix seconds"),
        ("1969-12-31T23:59:59Z", "ts: must be between 0 and 253402300799 Unix seconds"),
    ],
)
def test_ts_range(ts: Any, error: str) -> None:
    assert one_error(CALL | {"ts": ts}).startswith(error)


# ---- names that become /metrics label values ------------------------------------------------

NAME_FIELDS: list[tuple[dict[str, Any], str]] = [
    (CALL, "feature"),
    (CALL, "provider"),
    (CALL, "model"),
    (CALL, "endpoint"),
    ({"type": "score", "ts": 1, "feature": "f", "name": "n", "value": 1}, "name"),
    ({"type": "metric", "ts": 1, "feature": "f", "layer": "api", "name": "n", "value": 1}, "name"),
    ({"type": "change", "ts": 1, "kind": "deploy"}, "kind"),
]


@pytest.mark.parametrize(("base", "field"), NAME_FIELDS)
@pytest.mark.parametrize("escape", ["\\u0000", "\\n", "\\t", "\\u001f", "\\u007f"])
def test_control_characters_in_names_reject_the_event(
    base: dict[str, Any], field: str, escape: str
) -> None:
    good = orjson.dumps(base)
    bad = orjson.dumps(base | {field: "XX"}).replace(b"XX", f"a{escape}b".encode())
    events, rejected = parse_body(b"[" + b",".join([good, bad]) + b"]", "application/json")
    assert len(events) == 1 and [r.index for r in rejected] == [1]
    assert rejected[0].error.startswith(f"{field}: must not contain control characters")


def test_control_characters_in_labels_and_raw_bytes() -> None:
    key = orjson.dumps(CALL | {"labels": {"KK": "v"}}).replace(b"KK", b"a\\u0000")
    value = orjson.dumps(CALL | {"labels": {"k": "VV"}}).replace(b"VV", b"\\r")
    # A raw NUL or DEL byte inside a string: the NUL alone makes the array invalid JSON, yet
    # only its event is refused.
    raw_nul = orjson.dumps(CALL | {"model": "VV"}).replace(b"VV", b"gpt\x00")
    raw_del = orjson.dumps(CALL | {"model": "VV"}).replace(b"VV", b"gpt\x7f")
    body = b"[" + b",".join([orjson.dumps(CALL), key, value, raw_nul, raw_del]) + b"]"
    events, rejected = parse_body(body, "application/json")
    assert len(events) == 1
    assert [(r.index, r.error.split(":")[0]) for r in rejected] == [
        (1, "labels.'a\\x00'.[key]"),
        (2, "labels.k"),
        (3, "model"),
        (4, "model"),
    ]
    # Free text is not a label value: newlines in an error or a description are fine, and so
    # is any printable Unicode in a name.
    ok = [
        CALL | {"error": "line 1\nline 2", "model": "modèle-日本"},
        {"type": "change", "ts": 1, "kind": "deploy", "description": "a\tb\nc"},
    ]
    events, rejected = parse_body(orjson.dumps(ok), "application/json")
    assert rejected == [] and len(events) == 2


def test_fast_and_checked_paths_agree() -> None:
    """A body without a backslash skips the name regex; with one it is checked. Both give the
    same events for the same input."""
    calls = [CALL | {"model": f"m{i}", "labels": {"k": "v"}} for i in range(5)]
    plain = orjson.dumps(calls)
    escaped = plain.replace(b'"m0"', b'"\\u006d0"')  # "m0", written with an escape
    assert b"\\" not in plain and b"\\" in escaped
    fast, checked = parse_body(plain)[0], parse_body(escaped)[0]
    assert [e.model_dump() for e in fast] == [e.model_dump() for e in checked]
    by_item = validate_items(orjson.loads(plain))[0]
    assert [e.model_dump() for e in fast] == [e.model_dump() for e in by_item]


@pytest.mark.parametrize(
    ("ctype", "expected"),
    [
        (None, "json"),
        ("application/json", "json"),
        ("application/json; charset=utf-8", "json"),
        ("application/vnd.api+json", "json"),
        ("application/x-ndjson", "ndjson"),
        ("application/jsonl", "ndjson"),
    ],
)
def test_content_types_accepted(ctype: str | None, expected: str) -> None:
    assert body_format(ctype) == expected


@pytest.mark.parametrize(
    "ctype", ["application/x-www-form-urlencoded", "text/plain", "application/protobuf"]
)
def test_other_content_types_are_refused(ctype: str) -> None:
    with pytest.raises(UnsupportedMediaType, match="application/x-ndjson"):
        body_format(ctype)


# ---- gzip (issue 8, defect 5) ---------------------------------------------------------------


def test_gzip_reads_every_member() -> None:
    a, b = orjson.dumps(CALL)[:-1], b',"model":"m"}'
    assert decompress(gzip.compress(a) + gzip.compress(b), "gzip", 1000) == a + b
    lines = [orjson.dumps(CALL | {"model": f"m{i}"}) + b"\n" for i in range(6)]
    two = gzip.compress(b"".join(lines[:3])) + gzip.compress(b"".join(lines[3:]))
    events, rejected = parse_body(decompress(two, "gzip", 10_000), "application/x-ndjson")
    assert len(events) == 6 and rejected == []
    # Zero padding after the last member is allowed, as gzip(1) allows it.
    assert decompress(gzip.compress(a) + b"\0" * 16, "gzip", 1000) == a


def test_gzip_truncated_or_corrupt_is_refused_whole() -> None:
    body = gzip.compress(b"".join(orjson.dumps(CALL) + b"\n" for _ in range(200)))
    with pytest.raises(BodyError, match="gzip body is truncated: member 1"):
        decompress(body[: len(body) // 2], "gzip", 100_000)
    with pytest.raises(BodyError, match="gzip body is truncated: member 1"):
        decompress(body[:-4], "gzip", 100_000)  # the length trailer cut off
    with pytest.raises(BodyError, match="gzip body is truncated: member 2"):
        decompress(body + body[:30], "gzip", 100_000)
    with pytest.raises(BodyError, match="corrupt member 2"):
        decompress(body + b"trailing garbage", "gzip", 100_000)
    flipped = body[:-8] + bytes([body[-8] ^ 1]) + body[-7:]  # CRC mismatch
    with pytest.raises(BodyError, match="not valid gzip"):
        decompress(flipped, "gzip", 100_000)


def test_gzip_limits_hold_across_members() -> None:
    member = gzip.compress(b" " * 600)
    assert len(decompress(member, "gzip", 1000)) == 600
    with pytest.raises(BodyTooLarge):
        decompress(member + member, "gzip", 1000)  # each under the limit, together over
    empty = gzip.compress(b"")
    with pytest.raises(BodyError, match="more than 10000 members"):
        decompress(empty * 10_001, "gzip", 1000)


def test_replay_gz_input_reads_all_members_and_refuses_truncation(tmp_path: Path) -> None:
    lines = [orjson.dumps(CALL | {"retries": i}) + b"\n" for i in range(100)]
    two = tmp_path / "two.jsonl.gz"
    two.write_bytes(gzip.compress(b"".join(lines[:50])) + gzip.compress(b"".join(lines[50:])))
    assert list(open_input(str(two))) == lines
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(gzip.compress(b"".join(lines))[:-20])
    with pytest.raises(InputError, match=r"cut.jsonl.gz: gzip stream is truncated or corrupt"):
        list(open_input(str(cut)))


def test_pretty_printed_array_with_a_syntax_error_names_the_position() -> None:
    body = b'[\n  {"type": "llm_call", "ts": 1, "feature": "f"},\n  {"type": oops}\n]'
    with pytest.raises(BodyError, match=r"not valid JSON: .* line 3"):
        parse_body(body, "application/json")
    pretty_nan = b'[\n  {"type": "score", "ts": 1, "feature": "f", "name": "n", "value": NaN}\n]'
    events, rejected = parse_body(pretty_nan, "application/json")
    assert events == [] and rejected[0].error == "value: must be a finite number (got nan)"


# ---- what an error message echoes (probe: a 1 MB label key came back whole) --------------


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (CALL | {"labels": {"k\n" + "x" * 1_000_000: "v"}}, "labels."),  # bad key: in the path
        (CALL | {"labels": {"k": "v\n" + "x" * 1_000_000}}, "labels.k"),  # bad value
        ({"type": "x" * 1_000_000, "ts": 1}, "type"),  # unknown type: in the message
        (CALL | {"feature": "x" * 1_000_000}, "feature"),  # too long: the input
        (CALL | {"model": ["x" * 1_000_000]}, "model"),  # not a string at all
    ],
)
def test_every_echoed_value_is_cut_the_same_way(event: dict[str, Any], field: str) -> None:
    error = one_error(event)
    assert error.startswith(field) and len(error) < 300, error[:400]
    assert "..." in error  # cut, and visibly so


def test_an_event_with_thousands_of_bad_fields_names_ten() -> None:
    labels = {f"k{i}\n": "v" for i in range(5000)}
    error = one_error(CALL | {"labels": labels})
    assert error.count("labels.") == 10 and error.endswith("; and 4990 more errors")


# ---- nesting past the JSON reader's depth (probe: one deep unknown field lost the batch) ----


def deep(levels: int) -> bytes:
    """CALL with an unknown field nested `levels` arrays deep (ignored when it can be read)."""
    return orjson.dumps(CALL | {"x": "X"}).replace(b'"X"', b"[" * levels + b"]" * levels)


@pytest.mark.parametrize("levels", [250, 5_000, 1_000_000])
def test_an_event_nested_past_the_readers_depth_is_rejected_alone(levels: int) -> None:
    good = [orjson.dumps(CALL), orjson.dumps(CALL | {"labels": {"k": "[[{,"}})]
    items = [good[0], deep(levels), good[1], deep(levels), good[0]]
    for body, ctype, first in [
        (b"[" + b",".join(items) + b"]", "application/json", 1),
        (b"[\n  " + b",\n  ".join(items) + b"\n]\n", None, 1),  # pretty-printed
        (b"\n".join(items), "application/x-ndjson", 1),
        (b"\n\n".join(items), "application/x-ndjson", 2),  # NDJSON indexes are lines
    ]:
        events, rejected = parse_body(body, ctype)
        assert len(events) == 3 and events[1].labels == {"k": "[[{,"}
        assert [r.index for r in rejected] == [first, 3 * first]
        assert rejected[0].error.startswith("event nests arrays or objects more than 200 levels")


def test_an_unknown_field_the_reader_can_nest_is_ignored() -> None:
    events, rejected = parse_body(b"[" + b",".join([orjson.dumps(CALL), deep(150)]) + b"]")
    assert len(events) == 2 and rejected == []


def test_a_deep_body_still_needs_to_be_json() -> None:
    items = [orjson.dumps(CALL), deep(500)]
    with pytest.raises(BodyError, match="not valid JSON"):
        parse_body(b"[" + b",".join(items) + b"] trailing")
    with pytest.raises(BodyError, match="not valid JSON: item 2"):
        parse_body(b"[" + b",".join([*items, b"{oops}"]) + b"]")
    with pytest.raises(BodyError, match="more than 200 levels"):
        parse_body(items[1])  # the only event: the body is that event
    # A raw control byte elsewhere in the body is still one bad event of its own.
    raw_nul = orjson.dumps(CALL | {"model": "VV"}).replace(b"VV", b"gpt\x00")
    events, rejected = parse_body(b"[" + b",".join([*items, raw_nul]) + b"]")
    assert len(events) == 1 and [r.index for r in rejected] == [1, 2]
