"""The event contract (DESIGN.md "Event contract"): validation and parsing of request bodies.

Validation is pydantic v2 so the rules live in one declarative place; the hot path validates
a whole batch in one call into the Rust core and only falls back to per-item validation when
the batch has an error, so a clean batch of 1,000 costs one call, not 1,000.

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
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import from_json

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
_MANY: TypeAdapter[list[Event]] = TypeAdapter(list[_EventField])


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
    "TypeAdapter[list[Event]]",
    TypeAdapter(
        list[
            Annotated[
                _FastLlmCall | _FastScore | _FastChange | _FastMetric, Field(discriminator="type")
            ]
        ]
    ),
)


def _validate_json_array(body: bytes) -> list[Event]:
    """Validate a JSON array of events in one call into pydantic-core (raises on any error)."""
    if b"\\" in body or b"\x7f" in body:
        return _MANY.validate_json(body)
    return _FAST_MANY.validate_json(body)


EVENT_TYPES = ("llm_call", "score", "change", "metric")
# Field errors named per rejected event: an event with 100,000 bad label keys is one line.
MAX_FIELD_ERRORS = 10
# Every value an error message echoes (a field's input, a label key, an unknown `type`) is
# cut to this many characters, so an answer never copies a megabyte of the request back.
ECHO_CHARS = 60


@dataclass(frozen=True, slots=True)
class Rejected:
    """One event that failed validation: its position (array index or NDJSON line, from 0)."""

    index: int
    error: str

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "error": self.error}


class BodyError(ValueError):
    """The body as a whole cannot be read (bad gzip, not JSON at all, wrong top-level type)."""


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
    """Validate a batch; fast path when every item is good, per-item errors otherwise."""
    try:
        return _MANY.validate_python(items), []
    except ValidationError:
        pass
    events: list[Event] = []
    rejected: list[Rejected] = []
    for i, obj in enumerate(items):
        if not isinstance(obj, dict):
            rejected.append(Rejected(i, f"event must be a JSON object, got {type(obj).__name__}"))
            continue
        try:
            events.append(_ONE.validate_python(obj))
        except ValidationError as exc:
            rejected.append(Rejected(i, _format_error(exc, skip=1)))
    return events, rejected


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


def parse_body(body: bytes, content_type: str | None = None) -> tuple[list[Event], list[Rejected]]:
    """Parse a POST /v1/events body: one object, an array, or NDJSON."""
    if body_format(content_type) == "ndjson":
        return parse_ndjson(body)
    if body.lstrip()[:1] == b"[":
        try:
            return _validate_json_array(body), []
        except ValueError:
            pass  # find out which items are bad, below
    try:
        doc = loads_lenient(body)
    except ValueError as exc:
        # Bodies sent without the NDJSON content type but with several lines still work (a
        # pretty-printed array that is not JSON gets the parser's line and column instead).
        if b"\n" in body.strip() and body.lstrip()[:1] != b"[":
            return parse_ndjson(body)
        raise BodyError(f"body is not valid JSON: {exc}") from None
    if isinstance(doc, dict):
        return validate_items([doc])
    if isinstance(doc, list):
        return validate_items(doc)
    raise BodyError("body must be a JSON object, an array of objects, or NDJSON")


def parse_ndjson(body: bytes) -> tuple[list[Event], list[Rejected]]:
    """NDJSON: indexes are line numbers from 0 counting blank lines, so they match an editor."""
    lines: list[bytes] = []
    numbers: list[int] = []
    for lineno, line in enumerate(body.split(b"\n")):
        line = line.strip()
        if line:
            lines.append(line)
            numbers.append(lineno)
    return _validate_lines(lines, numbers)


def _validate_lines_fast(lines: list[bytes]) -> list[Event] | None:
    """All-good fast path: validate the lines as one JSON array inside pydantic-core, which
    skips building Python dicts first. None when anything is off (then go line by line); the
    length check catches a line that smuggles in two values ("{...}, {...}")."""
    try:
        events = _validate_json_array(b"[" + b",".join(lines) + b"]")
    except ValueError:  # ValidationError, or the joined text is not JSON
        return None
    return events if len(events) == len(lines) else None


def _validate_lines(lines: list[bytes], numbers: list[int]) -> tuple[list[Event], list[Rejected]]:
    fast = _validate_lines_fast(lines)
    if fast is not None:
        return fast, []
    items: list[Any] = []
    positions: list[int] = []
    rejected: list[Rejected] = []
    for number, line in zip(numbers, lines, strict=True):
        try:
            items.append(loads_lenient(line))
            positions.append(number)
        except ValueError as exc:
            rejected.append(Rejected(number, f"line is not valid JSON: {exc}"))
    events, bad = validate_items(items)
    rejected.extend(Rejected(positions[r.index], r.error) for r in bad)
    rejected.sort(key=lambda r: r.index)
    return events, rejected


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
            yield _validate_lines(lines, numbers)
            lines, numbers = [], []
    yield _validate_lines(lines, numbers)


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
