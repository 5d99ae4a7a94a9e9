"""The event contract (DESIGN.md "Event contract"): validation and parsing of request bodies.

Validation is pydantic v2 so the rules live in one declarative place; the hot path validates
a whole batch in one call into the Rust core and only falls back to per-item validation when
the batch has an error, so a clean batch of 1,000 costs one call, not 1,000.

Numbers are strict: `true` is not a latency and `"12"` is not a count (lax pydantic would
accept both). `ts` is RFC 3339 with a zone, or Unix seconds.
"""

from __future__ import annotations

import gzip
import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
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


def _to_epoch(value: Any) -> float:
    """RFC 3339 with a zone, or Unix seconds; a bare string number or a naive time is refused
    (a naive time would silently mean the server's zone)."""
    if isinstance(value, bool):
        raise ValueError(_TS_MSG)
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(_TS_MSG)
        return float(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(_TS_MSG) from None
        if parsed.tzinfo is None:
            raise ValueError(_TS_MSG)
        return parsed.timestamp()
    raise ValueError(_TS_MSG)


_TS_MSG = "must be RFC 3339 with a time zone or Unix seconds"
Timestamp = Annotated[float, PlainValidator(_to_epoch)]
# StrictFloat takes ints but not bools or numeric strings.
NonNegFloat = Annotated[StrictFloat, Field(ge=0)]
NonNegInt = Annotated[StrictInt, Field(ge=0)]
FiniteNumber = StrictFloat
FeatureName = Annotated[StrictStr, Field(min_length=1, max_length=200)]
Labels = dict[StrictStr, StrictStr]


class _Event(BaseModel):
    # extra="ignore": unknown fields are ignored per the contract, so producers can add fields.
    model_config = ConfigDict(
        frozen=True, extra="ignore", allow_inf_nan=False, cache_strings="keys"
    )


class LlmCall(_Event):
    type: Literal["llm_call"]
    ts: Timestamp
    feature: FeatureName
    provider: StrictStr | None = None
    model: StrictStr | None = None
    endpoint: StrictStr | None = None
    latency_ms: NonNegFloat | None = None
    status: Annotated[StrictInt, Field(ge=0, le=999)] | None = None
    error: StrictStr | None = None
    retries: NonNegInt | None = None
    input_tokens: NonNegInt | None = None
    output_tokens: NonNegInt | None = None
    cost_usd: NonNegFloat | None = None
    refused: StrictBool | None = None
    format_ok: StrictBool | None = None
    output_chars: NonNegInt | None = None
    # Time to first token (streaming): the part of latency the model's output length does
    # not explain, tested on its own (docs/detectors.md, the latency family).
    ttft_ms: NonNegFloat | None = None
    request_id: StrictStr | None = None
    labels: Labels | None = None


class Score(_Event):
    type: Literal["score"]
    ts: Timestamp
    feature: FeatureName
    name: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    value: FiniteNumber
    request_id: StrictStr | None = None
    labels: Labels | None = None


class Change(_Event):
    type: Literal["change"]
    ts: Timestamp
    kind: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    feature: FeatureName | None = None
    description: StrictStr = ""
    labels: Labels | None = None


class MetricEvent(_Event):
    type: Literal["metric"]
    ts: Timestamp
    feature: FeatureName
    layer: Literal["infra", "api", "behavioral", "quality"]
    name: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    value: FiniteNumber
    labels: Labels | None = None


Event = LlmCall | Score | Change | MetricEvent
_EventField = Annotated[Event, Field(discriminator="type")]
_ONE: TypeAdapter[Event] = TypeAdapter(_EventField)
_MANY: TypeAdapter[list[Event]] = TypeAdapter(list[_EventField])
EVENT_TYPES = ("llm_call", "score", "change", "metric")


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
    for err in exc.errors(include_url=False):
        kind = err["type"]
        if kind == "union_tag_invalid":
            tag = err.get("ctx", {}).get("tag")
            parts.append(f"type: must be one of {', '.join(EVENT_TYPES)} (got {tag!r})")
            continue
        if kind == "union_tag_not_found":
            parts.append("type: field required (one of " + ", ".join(EVENT_TYPES) + ")")
            continue
        field = ".".join(str(p) for p in err["loc"][skip:]) or "event"
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
        parts.append(f"{field}: {msg} (got {_short(err.get('input'))})")
    return "; ".join(parts)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def decompress(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """Inflate a gzip body, refusing to inflate past `max_bytes` (a gzip bomb is a 413)."""
    if not content_encoding or content_encoding.lower() in ("identity",):
        return body
    if content_encoding.lower() not in ("gzip", "x-gzip"):
        raise BodyError(f"Content-Encoding {content_encoding!r} is not supported (use gzip)")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise BodyError(f"body is not valid gzip: {exc}") from None
    if len(out) > max_bytes:
        raise BodyTooLarge(max_bytes)
    return out


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


def parse_body(body: bytes, content_type: str | None) -> tuple[list[Event], list[Rejected]]:
    """Parse a POST /v1/events body: one object, an array, or NDJSON."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype in ("application/x-ndjson", "application/ndjson", "application/jsonl"):
        return parse_ndjson(body)
    if body.lstrip()[:1] == b"[":
        try:
            return _MANY.validate_json(body), []
        except ValueError:
            pass  # find out which items are bad, below
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # Bodies sent without the NDJSON content type but with several lines still work.
        if b"\n" in body.strip():
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
        events = _MANY.validate_json(b"[" + b",".join(lines) + b"]")
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
            items.append(orjson.loads(line))
            positions.append(number)
        except orjson.JSONDecodeError as exc:
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


def open_input(path: str) -> Iterator[bytes]:
    """Lines of a replay input: a path, a `.gz` path, or `-` for standard input."""
    import sys

    if path == "-":
        yield from sys.stdin.buffer
        return
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as fh:
        yield from fh
