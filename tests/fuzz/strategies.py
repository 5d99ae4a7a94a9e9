"""Hypothesis strategies for hostile request bodies and query strings.

The shapes follow each endpoint's contract closely enough to get past the first type check
(so the fuzz reaches validation, aggregation and the tick), with odd values mixed in at
every leaf: huge and negative integers, NaN/Infinity literals, 1e308, wrong types, long and
non-ASCII strings, truncated or multi-member gzip. Nothing the daemon might reject badly is
filtered out: a 5xx on any of these is a bug.

Timestamps are drawn as `Rel(offset)`, turned into "now + offset" when the body is encoded,
so the same example lands in the live windows whenever it is replayed.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st


@dataclass(frozen=True)
class Rel:
    """A time relative to when the body is sent."""

    offset_s: float


BIG_INTS = [10**400, 10**30, 2**64]
HUGE = [*BIG_INTS, -(10**400), 2**63, -1, 1e308, -1e308, 5e-324, -0.0]
numbers = st.one_of(
    st.integers(min_value=-5, max_value=100_000),
    st.floats(min_value=-1.0, max_value=1e6, allow_nan=False),
    st.sampled_from(HUGE),
    st.integers(),
    st.floats(),  # NaN and infinities: json.dumps writes them as bare literals
)
short_text = st.text(max_size=12)
odd_text = st.one_of(
    short_text,
    st.sampled_from(["", " ", "\x00", "NaN", "1e999", "9" * 400, "__other__", "a/b.c", "é"]),
    st.text(min_size=190, max_size=260),
)
leaf = st.one_of(st.none(), st.booleans(), numbers, odd_text)
anything = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(short_text, inner, max_size=3)
    ),
    max_leaves=6,
)


def rfc3339(offset_s: float, zone: timezone | None) -> str:
    when = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=offset_s)
    return when.astimezone(zone).isoformat() if zone else when.replace(tzinfo=None).isoformat()


timestamps = st.one_of(
    st.builds(Rel, st.floats(min_value=-900, max_value=120)),
    st.builds(Rel, st.sampled_from([-86400.0, 3600.0, -1e9])),
    st.builds(
        rfc3339,
        st.floats(min_value=-1e10, max_value=1e10),
        st.sampled_from([None, UTC, timezone(timedelta(hours=5, minutes=30))]),
    ),
    st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "now", ""]),
    numbers,
    anything,
)
features = st.one_of(st.sampled_from(["bot", "search", "rag"]), odd_text, anything)
labels = st.one_of(
    st.dictionaries(
        st.sampled_from(["prompt_version", "model_version", "segment", "x"]) | short_text,
        st.one_of(short_text, odd_text),
        max_size=4,
    ),
    anything,
)
GOOD: dict[str, st.SearchStrategy[Any]] = {
    "provider": st.sampled_from(["openai", "anthropic"]),
    "model": st.sampled_from(["gpt-x", "claude-y"]),
    "endpoint": st.sampled_from(["chat", "embed"]),
    "latency_ms": st.floats(min_value=0, max_value=30_000),
    "ttft_ms": st.floats(min_value=0, max_value=5_000),
    "status": st.sampled_from([200, 200, 429, 401, 500, 529, 0]),
    "error": short_text,
    "retries": st.integers(min_value=0, max_value=3),
    "input_tokens": st.integers(min_value=0, max_value=8000),
    "output_tokens": st.integers(min_value=0, max_value=2000),
    "cost_usd": st.floats(min_value=0, max_value=1),
    "refused": st.booleans(),
    "format_ok": st.booleans(),
    "output_chars": st.integers(min_value=0, max_value=10_000),
    "request_id": short_text,
    "labels": labels,
    "name": st.sampled_from(["faithfulness", "helpfulness"]) | odd_text,
    "value": numbers,
    "kind": st.sampled_from(["prompt", "model", "deploy"]) | odd_text,
    "layer": st.sampled_from(["infra", "api", "behavioral", "quality"]) | odd_text,
    "description": short_text,
}
good_events = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["llm_call", "llm_call", "score", "change", "metric"]),
        "ts": st.builds(Rel, st.floats(min_value=-120, max_value=5)),
        "feature": st.sampled_from(["bot", "search", "rag"]),
    },
    optional=GOOD,
)
odd_values = st.one_of(st.sampled_from(BIG_INTS), st.sampled_from(HUGE), leaf, anything)
# A valid event with one hostile field: the likeliest way past the first check to the
# aggregation and the tick, where one bad number could stop detection.
one_bad_field = st.builds(
    lambda ev, name, value: {**ev, name: value},
    good_events,
    st.sampled_from([*GOOD, "ts", "feature", "type"]),
    odd_values,
)
wild_events = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["llm_call", "llm_call", "score", "change", "metric"]) | leaf,
        "ts": timestamps,
        "feature": features,
    },
    optional={k: st.one_of(v, odd_values) for k, v in GOOD.items()},
)
events = st.one_of(good_events, one_bad_field, one_bad_field, wild_events)


def encode(doc: Any, now: float, ensure_ascii: bool = True) -> bytes:
    """JSON as Python writes it: big integers exact, NaN/Infinity as bare literals."""

    def default(obj: Any) -> Any:
        if isinstance(obj, Rel):
            return now + obj.offset_s
        raise TypeError(type(obj).__name__)

    text = json.dumps(doc, default=default, ensure_ascii=ensure_ascii)
    return text.encode("utf-8", "surrogatepass")


@dataclass(frozen=True)
class Body:
    """A request body before the send-time clock is applied."""

    doc: Any
    form: str  # object | array | ndjson | raw
    encoding: str | None  # None | gzip | gzip2 (two members) | gzip_cut (truncated) | other
    content_type: str | None
    ensure_ascii: bool = True
    raw: bytes = b""

    def render(self, now: float) -> tuple[bytes, dict[str, str]]:
        if self.form == "raw":
            data = self.raw
        elif self.form == "ndjson":
            lines = [encode(d, now, self.ensure_ascii) for d in self.doc]
            data = b"\n".join(lines) + b"\n"
        else:
            data = encode(self.doc, now, self.ensure_ascii)
        headers = {} if self.content_type is None else {"Content-Type": self.content_type}
        if self.encoding is not None:
            headers["Content-Encoding"] = "gzip" if self.encoding.startswith("gzip") else "br"
        if self.encoding == "gzip":
            data = gzip.compress(data)
        elif self.encoding == "gzip2":  # two members: a reader must take both
            half = len(data) // 2
            data = gzip.compress(data[:half]) + gzip.compress(data[half:])
        elif self.encoding == "gzip_cut":
            packed = gzip.compress(data)
            data = packed[: max(1, len(packed) * 2 // 3)]
        return data, headers


encodings = st.sampled_from([None, None, None, "gzip", "gzip2", "gzip_cut", "other"])
json_types = st.sampled_from(
    [None, "application/json", "application/json; charset=utf-8", "text/plain", "x/y"]
)


@st.composite
def event_bodies(draw: st.DrawFn) -> Body:
    form = draw(st.sampled_from(["object", "array", "array", "ndjson", "raw"]))
    ensure_ascii = draw(st.booleans())
    encoding = draw(encodings)
    if form == "raw":
        raw = draw(st.binary(max_size=200))
        return Body(None, form, encoding, draw(json_types), raw=raw)
    if form == "object":
        doc: Any = draw(st.one_of(events, events, anything))
        return Body(doc, form, encoding, draw(json_types), ensure_ascii)
    items = draw(st.lists(st.one_of(events, events, events, anything), max_size=6))
    if form == "ndjson":
        ctype = draw(st.sampled_from(["application/x-ndjson", "application/jsonl", None]))
        return Body(items, form, encoding, ctype, ensure_ascii)
    return Body(items, form, encoding, draw(json_types), ensure_ascii)


# ---- OTLP/HTTP JSON ----------------------------------------------------------------------

GENAI_KEYS = [
    "gen_ai.system",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.operation.name",
    "gen_ai.response.finish_reasons",
    "http.response.status_code",
    "error.type",
    "llm_oncall.feature",
    "llm_oncall.label.segment",
    "service.name",
]
any_value = st.recursive(
    st.one_of(
        st.builds(lambda v: {"stringValue": v}, st.one_of(short_text, anything)),
        st.builds(lambda v: {"intValue": v}, st.one_of(st.integers().map(str), numbers, anything)),
        st.builds(lambda v: {"doubleValue": v}, st.one_of(numbers, anything)),
        st.builds(lambda v: {"boolValue": v}, st.one_of(st.booleans(), anything)),
        anything,
    ),
    lambda inner: st.builds(lambda vs: {"arrayValue": {"values": vs}}, st.lists(inner, max_size=3)),
    max_leaves=4,
)
attribute = st.one_of(
    st.fixed_dictionaries({"key": st.sampled_from(GENAI_KEYS) | short_text, "value": any_value}),
    anything,
)
attributes = st.one_of(st.lists(attribute, max_size=6), anything)
nanos = st.one_of(
    st.builds(Rel, st.floats(min_value=-600, max_value=60)),
    st.integers().map(str),
    st.sampled_from(["", "1e30", str(10**400)]),
    numbers,
    anything,
)
spans = st.fixed_dictionaries(
    {},
    optional={
        "name": short_text,
        "startTimeUnixNano": nanos,
        "endTimeUnixNano": nanos,
        "attributes": attributes,
        "status": st.one_of(
            st.fixed_dictionaries({"code": st.sampled_from([0, 1, 2, "STATUS_CODE_ERROR"])}),
            anything,
        ),
    },
)
scope_spans = st.one_of(
    st.fixed_dictionaries({"spans": st.one_of(st.lists(spans, max_size=4), anything)}),
    anything,
)
resource_spans = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "resource": st.one_of(st.fixed_dictionaries({"attributes": attributes}), anything),
            "scopeSpans": st.one_of(st.lists(scope_spans, max_size=3), anything),
        },
    ),
    anything,
)
otlp_docs = st.one_of(
    st.fixed_dictionaries(
        {"resourceSpans": st.one_of(st.lists(resource_spans, max_size=3), anything)}
    ),
    anything,
)


def with_times(doc: Any, now: float) -> Any:
    """`doc` with every `Rel` turned into Unix seconds."""
    if isinstance(doc, Rel):
        return now + doc.offset_s
    if isinstance(doc, dict):
        return {k: with_times(v, now) for k, v in doc.items()}
    if isinstance(doc, list):
        return [with_times(v, now) for v in doc]
    return doc


def otlp_time(doc: Any, now: float) -> Any:
    """OTLP times are nanoseconds as strings; turn `Rel` into that form."""
    if isinstance(doc, Rel):
        return str(int((now + doc.offset_s) * 1e9))
    if isinstance(doc, dict):
        return {k: otlp_time(v, now) for k, v in doc.items()}
    if isinstance(doc, list):
        return [otlp_time(v, now) for v in doc]
    return doc


# ---- Alertmanager webhook ----------------------------------------------------------------

alerts = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "status": st.sampled_from(["firing", "resolved"]) | leaf,
            "labels": st.one_of(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "feature": features,
                        "layer": st.sampled_from(["infra", "api", "quality"]) | leaf,
                        "alertname": odd_text | leaf,
                        "page_alone": st.sampled_from(["true", "false"]) | leaf,
                    },
                ),
                anything,
            ),
            "startsAt": timestamps,
            "endsAt": timestamps,
            "fingerprint": odd_text | leaf,
        },
    ),
    anything,
)
alertmanager_docs = st.one_of(
    st.fixed_dictionaries(
        {"alerts": st.one_of(st.lists(alerts, max_size=4), anything)},
        optional={"status": st.sampled_from(["firing", "resolved"]) | leaf, "version": leaf},
    ),
    anything,
)


# ---- silences ----------------------------------------------------------------------------

matchers = st.one_of(
    st.fixed_dictionaries(
        {"name": st.sampled_from(["feature", "domain", "metric", "segment"]) | leaf},
        optional={
            "value": st.one_of(
                st.sampled_from(["bot", "(a+)+$", "score:.*", "(", r"(a)\1", "a" * 2000]),
                odd_text,
                leaf,
            ),
            "is_regex": st.booleans() | leaf,
            "is_equal": st.booleans() | leaf,
        },
    ),
    anything,
)
silence_docs = st.one_of(
    st.fixed_dictionaries(
        {"matchers": st.one_of(st.lists(matchers, min_size=1, max_size=3), anything)},
        optional={
            "id": st.sampled_from(["cfg-0", "fz-1", "fz-2"]) | odd_text | leaf,
            "starts_at": timestamps,
            "ends_at": timestamps,
            "created_by": odd_text | leaf,
            "comment": odd_text | leaf,
        },
    ),
    anything,
)


# ---- query strings -----------------------------------------------------------------------

query_values = st.one_of(
    st.sampled_from(["open", "resolved", "critical", "bot", "10", "0", "-1", "1e999", "nan"]),
    st.sampled_from(["2026-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "9" * 400, "inf"]),
    st.sampled_from(["9999-12-31T23:59:59-01:00", "-1e308", "2026-01-01T00:00:00"]),
    st.text(max_size=20),
)
queries = st.lists(
    st.tuples(
        st.sampled_from(["status", "feature", "severity", "since", "limit"]) | short_text,
        query_values,
    ),
    max_size=5,
)
