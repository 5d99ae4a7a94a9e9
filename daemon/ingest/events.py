"""The event contract (DESIGN.md "Event contract"): validation and parsing of request bodies.

Validation is pydantic v2 so the rules live in one declarative place; the hot path validates
a whole batch in one call into the Rust core and only falls back to per-item validation when
the batch has an error, so a clean batch of 1,000 costs one call, not 1,000. The batch call
stops at the first bad item (`fail_fast`), and the fallback reads each item once: a batch of a
million bad items used to be validated three times over, building a million errors each time.

What one body can cost is bounded before it is parsed: its items are counted by a scan that
builds nothing (`daemon.ingest.jsonscan`) against `ingest.max_body_events`, and the answer
names the first `MAX_LISTED` rejected events and counts the rest.

Numbers are strict: `true` is not a latency and `"12"` is not a count (lax pydantic would
accept both), finite and inside a documented range per field (the constants below), so no
accepted number can overflow anything downstream. `ts` is RFC 3339 with a zone, or Unix
seconds. Names that end up in /metrics carry no control characters.
"""

from __future__ import annotations

import gzip
import math
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    PlainValidator,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import core_schema, from_json

from daemon.ingest.jsonscan import ArrayShape, array_shape

_TS_MSG = "must be RFC 3339 with a time zone or Unix seconds"

# Ranges of every number in the contract (DESIGN.md "Event contract", extension). Generous for
# any real call, but finite and small enough that sums, squares and float conversions further
# down (window sums, variances, /metrics) can never overflow or turn into +Inf: a 400-digit
# integer or 1e308 is a rejected event naming its field, not a dead tick loop.
TS_MIN = 0  # 1970-01-01T00:00:00Z
TS_MAX = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second RFC 3339 can write
MAX_LATENCY_MS = 86_400_000  # one day
MAX_COUNT = 1_000_000_000  # input_tokens, output_tokens, output_chars
MAX_RETRIES = 1_000
MAX_COST_USD = 1_000_000
MAX_ABS_VALUE = 1e15  # score and metric values
_TS_RANGE_MSG = f"must be between {TS_MIN} and {TS_MAX} Unix seconds (1970 to 9999)"


def _to_epoch(value: Any) -> float:
    """RFC 3339 with a zone, or Unix seconds; a bare string number or a naive time is refused
    (a naive time would silently mean the server's zone)."""
    # The common case first and cheaply: this runs in Python once per event.
    if type(value) is float and TS_MIN <= value <= TS_MAX:  # False for NaN and infinities
        return value
    if isinstance(value, bool):
        raise ValueError(_TS_MSG)
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(_TS_MSG)
        # Compare before float(): a 400-digit int compares exactly but overflows float().
        if not TS_MIN <= value <= TS_MAX:
            raise ValueError(_TS_RANGE_MSG)
        return float(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(_TS_MSG) from None
        if parsed.tzinfo is None:
            raise ValueError(_TS_MSG)
        try:
            epoch = parsed.timestamp()
        except (OverflowError, ValueError):  # year 1 or 9999 shifted out of range by the zone
            raise ValueError(_TS_RANGE_MSG) from None
        if not TS_MIN <= epoch <= TS_MAX:
            raise ValueError(_TS_RANGE_MSG)
        return epoch
    raise ValueError(_TS_MSG)


Timestamp = Annotated[float, PlainValidator(_to_epoch)]
# StrictFloat takes ints but not bools or numeric strings; a 400-digit int is "not a number".
LatencyMs = Annotated[StrictFloat, Field(ge=0, le=MAX_LATENCY_MS)]
CostUsd = Annotated[StrictFloat, Field(ge=0, le=MAX_COST_USD)]
Count = Annotated[StrictInt, Field(ge=0, le=MAX_COUNT)]
Retries = Annotated[StrictInt, Field(ge=0, le=MAX_RETRIES)]
Status = Annotated[StrictInt, Field(ge=0, le=999)]
Value = Annotated[StrictFloat, Field(ge=-MAX_ABS_VALUE, le=MAX_ABS_VALUE)]
# Strings that become Prometheus label values, detector series or score/metric names carry no
# control character (U+0000-U+001F, U+007F): a NUL byte in /metrics breaks scrapers, a newline
# in a series name splits log lines. Other Unicode is fine (the exposition format is UTF-8).
_NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")  # the same rule, for names read outside pydantic
CONTROL_MSG = "must not contain control characters (U+0000-U+001F, U+007F)"
Name = Annotated[StrictStr, Field(pattern=_NO_CONTROL)]
NonEmptyName = Annotated[StrictStr, Field(min_length=1, max_length=200, pattern=_NO_CONTROL)]
FeatureName = NonEmptyName
Labels = dict[Name, Name]


class _Event(BaseModel):
    # extra="ignore": unknown fields are ignored per the contract, so producers can add fields.
    model_config = ConfigDict(
        frozen=True, extra="ignore", allow_inf_nan=False, cache_strings="keys"
    )


class LlmCall(_Event):
    type: Literal["llm_call"]
    ts: Timestamp
    feature: FeatureName
    provider: Name | None = None
    model: Name | None = None
    endpoint: Name | None = None
    latency_ms: LatencyMs | None = None
    status: Status | None = None
    error: StrictStr | None = None
    retries: Retries | None = None
    input_tokens: Count | None = None
    output_tokens: Count | None = None
    cost_usd: CostUsd | None = None
    refused: StrictBool | None = None
    format_ok: StrictBool | None = None
    output_chars: Count | None = None
    # Time to first token (streaming): the part of latency the model's output length does
    # not explain, tested on its own (docs/detectors.md, the latency family).
    ttft_ms: LatencyMs | None = None
    request_id: StrictStr | None = None
    labels: Labels | None = None


class Score(_Event):
    type: Literal["score"]
    ts: Timestamp
    feature: FeatureName
    name: NonEmptyName
    value: Value
    request_id: StrictStr | None = None
    labels: Labels | None = None


class Change(_Event):
    type: Literal["change"]
    ts: Timestamp
    kind: NonEmptyName
    feature: FeatureName | None = None
    description: StrictStr = ""
    labels: Labels | None = None


class MetricEvent(_Event):
    type: Literal["metric"]
    ts: Timestamp
    feature: FeatureName
    layer: Literal["infra", "api", "behavioral", "quality"]
    name: NonEmptyName
    value: Value
    labels: Labels | None = None


Event = LlmCall | Score | Change | MetricEvent
_EventField = Annotated[Event, Field(discriminator="type")]
_ONE: TypeAdapter[Event] = TypeAdapter(_EventField)


class _RejectedAsNone:
    """Annotation: an item that fails validation becomes None instead of failing its list.

    So one call into pydantic-core validates a whole batch, good items and bad, each once:
    the good ones come out as events, the bad ones as None, with no error built in Python.
    Only the rejections the answer lists (the first MAX_LISTED) are validated again, alone,
    to write their message. (Before, a batch with one bad item was validated three times
    over, and a batch of four million bad items built four million errors each time.)"""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.with_default_schema(handler(source), default=None, on_error="default")


# Typed by its argument (pydantic >= 2.14), the adapter would claim no None: cast to what it
# parses into.
_MANY = cast(
    "TypeAdapter[list[Event | None]]",
    TypeAdapter(list[Annotated[_EventField, _RejectedAsNone()]]),
)


# The unchecked fast path. A raw control byte inside a JSON string is not JSON (both parsers
# refuse it), so a control character can only arrive escaped (`\u0000`, `\n`: after a
# backslash) or as a raw DEL byte. A JSON body with neither, which is nearly every real batch,
# is validated by these subclasses that skip the per-name regex (about 10% of validation time at
# ten names per event); any other body, and every Python object (OTLP, per-item fallback), goes
# through the checked classes above. Fields not overridden here keep their checks.
_PlainName = StrictStr
_PlainNonEmpty = Annotated[StrictStr, Field(min_length=1, max_length=200)]
_PlainLabels = dict[StrictStr, StrictStr]


class _FastLlmCall(LlmCall):
    feature: _PlainNonEmpty
    provider: _PlainName | None = None
    model: _PlainName | None = None
    endpoint: _PlainName | None = None
    labels: _PlainLabels | None = None


class _FastScore(Score):
    feature: _PlainNonEmpty
    name: _PlainNonEmpty
    labels: _PlainLabels | None = None


class _FastChange(Change):
    kind: _PlainNonEmpty
    feature: _PlainNonEmpty | None = None
    labels: _PlainLabels | None = None


class _FastMetric(MetricEvent):
    feature: _PlainNonEmpty
    name: _PlainNonEmpty
    labels: _PlainLabels | None = None


# The fast models are subclasses of the event types, but list is invariant: pydantic >= 2.14
# types TypeAdapter(...) by its argument, so the adapter is cast to what it parses into.
_FAST_MANY = cast(
    "TypeAdapter[list[Event | None]]",
    TypeAdapter(
        list[
            Annotated[
                _FastLlmCall | _FastScore | _FastChange | _FastMetric,
                Field(discriminator="type"),
                _RejectedAsNone(),
            ]
        ]
    ),
)


def _validate_json_array(body: bytes) -> list[Event | None]:
    """Validate a JSON array of events in one call into pydantic-core: an event per item,
    None for each bad one. Raises ValueError when the body is not JSON the reader takes
    (NaN and big numbers are fine; a raw control byte, or nesting past 200 levels, is not)."""
    if b"\\" in body or b"\x7f" in body:
        return _MANY.validate_json(body)
    return _FAST_MANY.validate_json(body)


EVENT_TYPES = ("llm_call", "score", "change", "metric")
# Rejected (and unused) events an answer names by index; all are counted. The probe's
# 4,190,000 one-byte items made a 288 MB answer, held as long as its client did not read it.
MAX_LISTED = 100
# Field errors named per rejected event: an event with 100,000 bad label keys is one line.
MAX_FIELD_ERRORS = 10
# Every value an error message echoes (a field's input, a label key, an unknown `type`) is
# cut to this many characters, so an answer never copies a megabyte of the request back.
ECHO_CHARS = 60
# How deep pydantic-core's JSON reader nests arrays and objects (about 200; it refuses the
# whole document past that, unknown fields included).
MAX_JSON_DEPTH = 200
_DEPTH_ERROR = "recursion limit exceeded"


@dataclass(frozen=True, slots=True)
class Rejected:
    """One event that failed validation: its position (array index or NDJSON line, from 0)."""

    index: int
    error: str

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "error": self.error}


class BodyError(ValueError):
    """The body as a whole cannot be read (bad gzip, not JSON at all, wrong top-level type)."""


class TooManyEvents(ValueError):
    """More items in one body than `ingest.max_body_events` (answered 413, like a body over
    the byte limit: the sender splits it)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"body has more than {limit} events (ingest.max_body_events; array items or "
            "non-blank NDJSON lines): send them in smaller batches"
        )
        self.limit = limit


@dataclass(frozen=True, slots=True)
class Batch:
    """One body, validated: its events with the index each had in the body (array position
    or NDJSON line), and its rejections, all counted and the first `listed` of them kept."""

    events: list[Event]
    indexes: Sequence[int]
    rejected: list[Rejected]
    rejected_count: int


def _format_error(exc: ValidationError, skip: int = 0) -> str:
    """Turn pydantic errors into one line naming each bad field.

    `skip` drops leading loc parts (the list index and the discriminator tag), so the message
    reads "latency_ms: Input should be greater than or equal to 0 (got -5)".
    """
    parts: list[str] = []
    errors = exc.errors(include_url=False)
    for err in errors[:MAX_FIELD_ERRORS]:
        kind = err["type"]
        if kind == "union_tag_invalid":
            tag = err.get("ctx", {}).get("tag")
            parts.append(f"type: must be one of {', '.join(EVENT_TYPES)} (got {_short(tag)})")
            continue
        if kind == "union_tag_not_found":
            parts.append("type: field required (one of " + ", ".join(EVENT_TYPES) + ")")
            continue
        # A label key is part of the path; one with a control character is shown escaped.
        field = ".".join(_printable(p) for p in err["loc"][skip:]) or "event"
        if kind == "missing":
            parts.append(f"{field}: field required")
            continue
        msg = err["msg"]
        if kind == "value_error":
            msg = str(err.get("ctx", {}).get("error", msg))
        elif kind in ("int_type", "int_from_float", "int_parsing"):
            msg = "must be an integer"
        elif kind in ("float_type", "float_parsing"):
            msg = "must be a number"
        elif kind == "finite_number":
            msg = "must be a finite number"
        elif kind == "string_pattern_mismatch":
            msg = CONTROL_MSG
        parts.append(f"{field}: {msg} (got {_short(err.get('input'))})")
    if len(errors) > MAX_FIELD_ERRORS:
        parts.append(f"and {len(errors) - MAX_FIELD_ERRORS} more errors")
    return "; ".join(parts)


def _cut(text: str) -> str:
    return text if len(text) <= ECHO_CHARS else text[: ECHO_CHARS - 3] + "..."


def _printable(part: str | int) -> str:
    """A path part (a label key can be one) as the message shows it: escaped when it holds
    a control character, and cut like any echoed value."""
    text = str(part)[: ECHO_CHARS + 1]
    return _cut(text if text.isprintable() else repr(text))


def _short(value: Any) -> str:
    if isinstance(value, str):
        # The cut keeps fewer characters than this, and repr only lengthens: no need to
        # write out a megabyte to keep its first 57 characters.
        value = value[: ECHO_CHARS + 1]
    return _cut(repr(value))


# A body of many tiny gzip members costs a few microseconds each to open on the event loop;
# `cat a.gz b.gz` or a block-gzip writer (64 KiB blocks: 128 members in 8 MiB) stays far below.
MAX_GZIP_MEMBERS = 10_000
_GZIP_CHUNK = 1 << 16


def decompress(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """Inflate a gzip body, refusing to inflate past `max_bytes` (a gzip bomb is a 413).

    Every member is read (`cat a.gz b.gz` is one valid gzip stream, RFC 1952 2.2), and a stream
    that ends inside a member, or has garbage after one, is refused whole: accepting the part
    that inflated would silently lose the rest, and the client's retry would send that part
    twice. Input is fed in bounded chunks, so many members cost linear time.
    """
    if not content_encoding or content_encoding.lower() in ("identity",):
        return body
    if content_encoding.lower() not in ("gzip", "x-gzip"):
        raise UnsupportedEncoding(
            f"Content-Encoding {_short(content_encoding)} is not supported (use gzip)"
        )
    out = bytearray()
    view = memoryview(body)
    pos = 0
    members = 0
    while pos < len(body) or members == 0:
        if members and body[pos] == 0 and body.count(0, pos) == len(body) - pos:
            break  # zero padding after the last member is allowed (as gzip(1) does)
        members += 1
        if members > MAX_GZIP_MEMBERS:
            raise BodyError(f"gzip body has more than {MAX_GZIP_MEMBERS} members")
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        while not inflater.eof:
            if pos >= len(body):
                raise BodyError(
                    f"gzip body is truncated: member {members} ends before its end-of-stream "
                    f"marker ({len(body)} bytes received)"
                )
            chunk = view[pos : pos + _GZIP_CHUNK]
            try:
                out += inflater.decompress(chunk, max_bytes + 1 - len(out))
            except zlib.error as exc:
                where = "is not valid gzip" if members == 1 else f"has a corrupt member {members}"
                raise BodyError(f"body {where}: {exc}") from None
            if len(out) > max_bytes:
                raise BodyTooLarge(max_bytes)
            # Below the output limit every input byte was taken; after the member's end the
            # rest of the chunk is the next member.
            pos += len(chunk) - len(inflater.unused_data)
    return bytes(out)


class BodyTooLarge(ValueError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"body exceeds the limit of {limit} bytes")
        self.limit = limit


def validate_one(obj: Any) -> Event:
    return _ONE.validate_python(obj)


def validate_items(items: list[Any]) -> tuple[list[Event], list[Rejected]]:
    """Validate a batch of Python objects (OTLP spans, tests): every rejection listed."""
    batch = _sort_out(_MANY.validate_python(items), range(len(items)), items.__getitem__, None)
    return batch.events, batch.rejected


def _sort_out(
    results: list[Event | None],
    indexes: Sequence[int],
    item: Callable[[int], Any],
    listed: int | None,
) -> Batch:
    """A batch validated in one call (`_RejectedAsNone`) into its events and rejections:
    `indexes[i]` is the body's index of result i, and `item(i)` reads item i again, which is
    needed only for the first `listed` rejections (None: all), to write their message."""
    events = [ev for ev in results if ev is not None]
    if len(events) == len(results):
        return Batch(events, indexes, [], 0)
    found = _Found(listed)
    for i, ev in enumerate(results):
        if ev is not None:
            found.event(indexes[i], ev)
        elif found.full():
            found.count += 1
        else:
            try:
                obj = item(i)
            except ValueError as exc:  # not read by the lenient parser either
                found.reject(indexes[i], _unreadable(exc))
                continue
            found.item(indexes[i], obj)
    return found.batch()


class _Found:
    """What the items of one body came to, in body order: each valid event with its index,
    and each rejection counted, with a message for the first `listed` (None: all)."""

    __slots__ = ("count", "events", "indexes", "listed", "rejected")

    def __init__(self, listed: int | None) -> None:
        self.events: list[Event] = []
        self.indexes: list[int] = []
        self.rejected: list[Rejected] = []
        self.count = 0
        self.listed = listed

    def full(self) -> bool:
        """Every rejection from here on is counted, not listed."""
        return self.listed is not None and len(self.rejected) >= self.listed

    def event(self, index: int, event: Event) -> None:
        self.events.append(event)
        self.indexes.append(index)

    def reject(self, index: int, error: str | ValidationError) -> None:
        self.count += 1
        if not self.full():
            text = error if isinstance(error, str) else _format_error(error, skip=1)
            self.rejected.append(Rejected(index, text))

    def item(self, index: int, obj: Any) -> None:
        """Validate one item on its own, for its error message (or as the only item)."""
        if not isinstance(obj, dict):
            self.reject(index, f"event must be a JSON object, got {type(obj).__name__}")
            return
        try:
            event = _ONE.validate_python(obj)
        except ValidationError as exc:
            self.reject(index, exc)
            return
        self.event(index, event)

    def batch(self) -> Batch:
        return Batch(self.events, self.indexes, self.rejected, self.count)


JSON_TYPES = ("application/json",)  # and any application/*+json
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl")


class UnsupportedMediaType(ValueError):
    """The Content-Type is neither JSON nor NDJSON (answered 415)."""


class UnsupportedEncoding(UnsupportedMediaType):
    """A Content-Encoding other than gzip. Also a 415 (RFC 9110, 15.5.16): the body may be
    fine, the server cannot read that coding, so the sender should change the request rather
    than the data; the answer's `Accept-Encoding` says which coding would do."""


def body_format(content_type: str | None) -> Literal["json", "ndjson"]:
    """JSON or NDJSON by Content-Type; none at all is read as JSON (with the NDJSON fallback
    for several lines), anything else is refused, so a form post or a text upload by mistake
    gets a clear 415 instead of a confusing per-line JSON error."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype in NDJSON_TYPES:
        return "ndjson"
    if (
        not ctype
        or ctype in JSON_TYPES
        or (ctype.startswith("application/") and ctype.endswith("+json"))
    ):
        return "json"
    raise UnsupportedMediaType(
        f"Content-Type {_short(ctype)} is not supported: send application/json (one event or an "
        "array) or application/x-ndjson (one event per line)"
    )


def require_json(content_type: str | None, what: str) -> None:
    """For the endpoints that take one JSON document (the Alertmanager webhook, silences):
    application/json (or application/*+json) or no Content-Type at all, as for /v1/events;
    anything else (a form, text/plain, NDJSON) is refused with a 415."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    if (
        not ctype
        or ctype in JSON_TYPES
        or (ctype.startswith("application/") and ctype.endswith("+json"))
    ):
        return
    raise UnsupportedMediaType(
        f"Content-Type {_short(ctype)} is not supported: {what} takes application/json"
    )


_RAW_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def loads_lenient(body: bytes) -> Any:
    """Parse JSON for per-event errors after the fast parsers refused the document.

    orjson refuses a whole document for one NaN, Infinity or 1e400 (and reads an integer over
    64 bits as a float), and a raw control byte in one string makes the whole document invalid
    JSON. Those are one bad event each, so here pydantic-core's parser reads them anyway (NaN
    and inf as floats, big integers as ints, a raw control byte as its escape) and the event
    validation names the field. Anything else that is not JSON still raises ValueError (with
    line and column); so does a number over 4,300 digits (Python's int limit).
    """
    try:
        return from_json(body, allow_inf_nan=True)
    except ValueError as exc:
        if "control character" not in str(exc):
            raise
    # Raw control bytes other than JSON whitespace are invalid anywhere in JSON; escaping them
    # keeps them invalid outside strings and makes them a validation error inside one. (Only
    # here: it scans the whole body, and most bodies that are not JSON fail for other reasons.)
    fixed = _RAW_CONTROL.sub(lambda m: b"\\u%04x" % m[0][0], body)
    return from_json(fixed, allow_inf_nan=True)


def _too_deep(exc: ValueError) -> bool:
    return _DEPTH_ERROR in str(exc)


_DEPTH_MSG = (
    f"event nests arrays or objects more than {MAX_JSON_DEPTH} levels deep, past what the "
    "JSON reader takes (unknown fields are ignored, but they are read too)"
)


def _unreadable(exc: ValueError) -> str:
    """The rejection of one NDJSON line or array item that is not JSON the reader takes."""
    return _DEPTH_MSG if _too_deep(exc) else f"line is not valid JSON: {exc}"


def parse_body(body: bytes, content_type: str | None = None) -> tuple[list[Event], list[Rejected]]:
    """Parse a POST /v1/events body: one object, an array, or NDJSON; every rejection is
    listed and no item cap applies (the daemon calls `read_events` with its limits)."""
    batch = read_events(body, content_type)
    return batch.events, batch.rejected


def read_events(
    body: bytes,
    content_type: str | None = None,
    *,
    max_events: int | None = None,
    listed: int | None = None,
) -> Batch:
    """Parse a POST /v1/events body: one object, an array, or NDJSON.

    Raises TooManyEvents past `max_events` items, counted before anything is parsed, and
    BodyError when the body as a whole cannot be read. Of the rejected events, the first
    `listed` come with their message (None: all); `Batch.rejected_count` counts them all.
    """
    if body_format(content_type) == "ndjson":
        return _read_ndjson(body, max_events, listed)
    array = body.lstrip()[:1] == b"["
    if array:
        # An array of n items has at least n - 1 commas: below the cap, nothing to count.
        if (
            max_events is not None
            and body.count(b",") >= max_events
            and array_shape(body, stop_after=max_events).items > max_events
        ):
            raise TooManyEvents(max_events)
        try:
            results = _validate_json_array(body)
        except ValueError:
            pass  # not JSON pydantic-core reads: the lenient parser below, item by item
        else:
            return _sort_out(results, range(len(results)), _item_reader(body), listed)
    try:
        doc = loads_lenient(body)
    except ValueError as exc:
        if array and _too_deep(exc):
            return _read_items_apart(body, listed)
        # Bodies sent without the NDJSON content type but with several lines still work (a
        # pretty-printed array that is not JSON gets the parser's line and column instead).
        if b"\n" in body.strip() and not array:
            return _read_ndjson(body, max_events, listed)
        if _too_deep(exc):
            raise BodyError(_DEPTH_MSG) from None
        raise BodyError(f"body is not valid JSON: {exc}") from None
    if isinstance(doc, dict):
        doc = [doc]
    elif not isinstance(doc, list):
        raise BodyError("body must be a JSON object, an array of objects, or NDJSON")
    return _sort_out(_MANY.validate_python(doc), range(len(doc)), doc.__getitem__, listed)


def _item_reader(body: bytes) -> Callable[[int], Any]:
    """Item i of a JSON array, parsed alone (for the message of a rejected one): the items'
    bounds are found once, on the first call, by a scan that parses nothing else."""
    shape: list[ArrayShape] = []

    def item(i: int) -> Any:
        if not shape:
            shape.append(array_shape(body))
        start, end = shape[0].bounds(i)
        return loads_lenient(body[start:end])

    return item


def _read_items_apart(body: bytes, listed: int | None) -> Batch:
    """An array the JSON reader refused whole because one item nests too deeply: cut at its
    top-level commas (found without parsing), each item is read on its own, so only the deep
    one is rejected and the rest of the batch is kept, as for any other bad event. A syntax
    error anywhere still refuses the body whole, as it would without the deep item."""
    shape = array_shape(body)
    if shape.closed_at < 0 or body[shape.closed_at + 1 :].strip():
        raise BodyError("body is not valid JSON: the array is not closed, or text follows it")
    found = _Found(listed)
    for i in range(shape.items):
        start, end = shape.bounds(i)
        try:
            obj = loads_lenient(body[start:end])
        except ValueError as exc:
            if not _too_deep(exc):
                raise BodyError(f"body is not valid JSON: item {i}: {exc}") from None
            found.reject(i, _DEPTH_MSG)
            continue
        found.item(i, obj)
    return found.batch()


def parse_ndjson(body: bytes) -> tuple[list[Event], list[Rejected]]:
    """NDJSON: indexes are line numbers from 0 counting blank lines, so they match an editor."""
    batch = _read_ndjson(body, None, None)
    return batch.events, batch.rejected


# A non-blank line: `^` tries line starts only, so blank lines cost the regex engine, not a
# Python loop, and a long run of spaces is not rescanned from every position.
_LINE = re.compile(rb"^[ \t\r\f\v]*\S[^\n]*", re.MULTILINE)


def _read_ndjson(body: bytes, max_events: int | None, listed: int | None) -> Batch:
    lines: list[bytes] = []
    numbers: list[int] = []
    lineno, seen = 0, 0
    for match in _LINE.finditer(body):
        if max_events is not None and len(lines) >= max_events:
            raise TooManyEvents(max_events)
        lineno += body.count(b"\n", seen, match.start())
        seen = match.start()
        lines.append(match[0].strip())
        numbers.append(lineno)
    return _validate_lines(lines, numbers, listed, max_events)


def _validate_lines_fast(lines: list[bytes], max_events: int | None) -> list[Event | None] | None:
    """The usual path: validate the lines as one JSON array inside pydantic-core, which
    skips building Python dicts first. None when the joined lines are not JSON it reads (then
    go line by line); the length check catches a line that smuggles in two values
    ("{...}, {...}"). Under an item cap, a body with as many commas as the cap is scanned
    first: one line of four million `1,` is one line, but four million items once joined."""
    joined = b"[" + b",".join(lines) + b"]"
    if (
        max_events is not None
        and joined.count(b",") >= max_events
        and array_shape(joined, stop_after=len(lines)).items != len(lines)
    ):
        return None
    try:
        results = _validate_json_array(joined)
    except ValueError:
        return None
    return results if len(results) == len(lines) else None


def _validate_lines(
    lines: list[bytes],
    numbers: list[int],
    listed: int | None = None,
    max_events: int | None = None,
) -> Batch:
    results = _validate_lines_fast(lines, max_events)
    if results is not None:
        return _sort_out(results, numbers, lambda i: loads_lenient(lines[i]), listed)
    found = _Found(listed)
    for number, line in zip(numbers, lines, strict=True):
        try:
            obj = loads_lenient(line)
        except ValueError as exc:
            found.reject(number, _unreadable(exc))
            continue
        found.item(number, obj)
    return found.batch()


def iter_lines(
    stream: Iterator[bytes], chunk: int = 2000
) -> Iterator[tuple[list[Event], list[Rejected]]]:
    """Validate a line stream (replay input) in chunks, keeping line numbers (from 1 here:
    a file is read by people, and editors count lines from 1)."""
    lines: list[bytes] = []
    numbers: list[int] = []
    for lineno, line in enumerate(stream, start=1):
        line = line.strip()
        if not line:
            continue
        lines.append(line)
        numbers.append(lineno)
        if len(lines) >= chunk:
            batch = _validate_lines(lines, numbers)
            yield batch.events, batch.rejected
            lines, numbers = [], []
    batch = _validate_lines(lines, numbers)
    yield batch.events, batch.rejected


class InputError(ValueError):
    """A replay input that cannot be read to its end (a truncated or corrupt .gz file)."""


def open_input(path: str) -> Iterator[bytes]:
    """Lines of a replay input: a path, a `.gz` path (all members), or `-` for standard input.

    A `.gz` file that is truncated or corrupt raises InputError naming the file and the last
    line read, so a cut-off capture is never mistaken for a complete one."""
    import sys

    if path == "-":
        yield from sys.stdin.buffer
        return
    if not path.endswith(".gz"):
        with open(path, "rb") as fh:
            yield from fh
        return
    read = 0
    try:
        with gzip.open(path, "rb") as gz:
            for line in gz:
                read += 1
                yield line
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise InputError(
            f"{path}: gzip stream is truncated or corrupt after line {read} ({exc})"
        ) from None
