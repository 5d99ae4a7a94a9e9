"""Silences: operator-made mutes with matchers and a time span (after Alertmanager's).

A silence matches an incident when every matcher matches. Matcher names address the
incident's fields:

- `feature`, `domain`, `severity`, `status`, `id` — the incident's single value;
- `layer`, `metric` — the set of its member signals' layers / metrics;
- any other name — the set of values of that attribution label (`prompt_version`,
  `model_version`, `segment`, ...).

Over a set, an equality matcher (`=`, `=~`) matches when any element matches; a negative one
(`!=`, `!~`) when no element does. An absent value is the empty string, as in Alertmanager,
so `segment!=""` means "has a segment attribution". Regexes are anchored (`fullmatch`).
A silence is active on `[starts_at, ends_at)`.

Bounds, so one API call can never make the state unreadable or hang the daemon:

- times are finite Unix seconds (or RFC 3339 with a zone) in `[MIN_TS, MAX_TS]`, the span RFC
  3339 can write (years 1970-9999), and `ends_at > starts_at`; `from_dict` can also cap the
  duration (the API passes `MAX_API_DURATION_S`, one year; config silences are reviewed files
  and may be longer);
- regexes use RE2 (`google-re2`), the engine Alertmanager's Go matchers use: matching is linear
  in the input, so a pattern like `(a+)+$` cannot backtrack catastrophically. The price is RE2's
  syntax (no backreferences or lookaround), the same as Alertmanager's. Patterns are limited to
  `MAX_PATTERN_CHARS` and RE2's program memory to `_RE2_MAX_MEM`, so compiling is bounded too;
- ids, names, values, comments and the number of matchers have length caps (`MAX_*`).

What an operator means, so a slip cannot mute more (or less) than they think:

- at least one matcher must not match the empty string, as Alertmanager requires: a silence
  of only `feature=~.*` (or `feature!=x`) would mute every incident of every feature. On the
  closed fields below the empty string is never a value, so there a matcher counts as
  narrowing when it leaves out at least one of the field's values (`severity!=critical` is a
  real silence; `severity=~.*` is not);
- `severity`, `domain`, `status` and `layer` only ever hold the values the correlator assigns
  (`CLOSED_VALUES`): an exact matcher on another value (`severity=critcal`) is refused with the
  allowed values and a did-you-mean, and so is a regex that matches none of them
  (`severity=~crit`, anchored). A regex that matches some is kept even if one alternative is a
  typo (`critical|warnig`): it still means something, and the listing shows it;
- fields are named exactly (`ends_at`, `is_regex`); an unknown one is refused, naming it,
  rather than ignored: Alertmanager's `endsAt` or `isRegex` would otherwise be dropped and the
  silence made from defaults (a literal `.*` never matches).
"""

from __future__ import annotations

import builtins
import difflib
import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Self, get_args

import re2

from correlator.incident import Domain, Incident, Severity, Status
from correlator.records import rfc3339
from detectors.base import LAYERS

SINGLE_FIELDS = ("feature", "domain", "severity", "status", "id")

MIN_TS = 0.0  # 1970-01-01T00:00:00Z
MAX_TS = 253402300799.0  # 9999-12-31T23:59:59Z, the last time RFC 3339 can write
MAX_API_DURATION_S = 366 * 86400.0  # an API silence lasts at most a (leap) year
MAX_PATTERN_CHARS = 1024
MAX_MATCHERS = 32
MAX_ID_CHARS = 200
MAX_NAME_CHARS = 200  # matcher names, created_by
MAX_COMMENT_CHARS = 2048
_RE2_MAX_MEM = 8 << 20  # bytes of compiled program; RE2 refuses patterns that need more

# Fields whose every value the correlator itself assigns: a matcher outside these can only be
# a typo. Taken from the incident's types, so a new severity or domain cannot be forgotten here.
CLOSED_VALUES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "severity": get_args(Severity),
        "domain": get_args(Domain),
        "status": get_args(Status),
        "layer": LAYERS,
    }
)
SILENCE_FIELDS = ("id", "matchers", "starts_at", "ends_at", "created_by", "comment")
MATCHER_FIELDS = ("name", "value", "is_regex", "is_equal")
_TS_FORM = "Unix seconds or RFC 3339 with a zone"
_SHOWN_UNKNOWN = 5  # a body with thousands of stray keys still gets a one-line error


def _options() -> Any:
    opts = re2.Options()
    opts.max_mem = _RE2_MAX_MEM
    opts.log_errors = False  # a bad pattern is the caller's error, not a line on stderr
    return opts


_RE2_OPTIONS = _options()


def compile_regex(pattern: str, where: str = "matcher") -> Any:
    """Compile a matcher regex with RE2 (linear-time matching), or raise ValueError naming
    `where`. Shared with the config validator so `check-config` accepts the same patterns."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"{where}: regex longer than {MAX_PATTERN_CHARS} characters")
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode(errors="replace")
        raise ValueError(
            f"{where}: bad regex {pattern!r} (RE2 syntax, as Alertmanager): {reason}"
        ) from None


def _parse_ts(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected Unix seconds or RFC 3339, got {value!r}")
    if isinstance(value, int | float):
        try:
            ts = float(value)
        except OverflowError:  # a 400-digit integer
            raise ValueError(f"{name}: out of range") from None
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"{name}: not an RFC 3339 time: {value[:64]!r}") from exc
        if dt.tzinfo is None:
            raise ValueError(f"{name}: RFC 3339 time needs a zone: {value[:64]!r}")
        try:
            ts = dt.timestamp()
        except (OverflowError, ValueError):  # year 1 with a +zone, etc.
            raise ValueError(f"{name}: out of range") from None
    else:
        raise ValueError(f"{name}: expected Unix seconds or RFC 3339, got {type(value).__name__}")
    _check_ts(ts, name)
    return ts


def _check_ts(ts: float, name: str) -> None:
    if not math.isfinite(ts):
        raise ValueError(f"{name}: must be finite")
    if not MIN_TS <= ts <= MAX_TS:
        raise ValueError(
            f"{name}: out of range (Unix seconds {MIN_TS:.0f}..{MAX_TS:.0f},"
            " 1970-01-01T00:00:00Z..9999-12-31T23:59:59Z)"
        )


def _check_len(value: str, limit: int, name: str) -> None:
    if len(value) > limit:
        raise ValueError(f"{name}: longer than {limit} characters")


def _closest(word: str, choices: Collection[str]) -> str | None:
    """The choice a typo most likely meant, if any is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def _did_you_mean(word: str, choices: Collection[str]) -> str:
    close = _closest(word, choices)
    return f"; did you mean {close!r}?" if close else ""


def _check_keys(d: Mapping[Any, Any], known: tuple[str, ...], where: str) -> None:
    """Refuse keys this object does not have. Alertmanager's camelCase (`endsAt`) is pointed
    at our spelling rather than accepted: one spelling in the API, the config and the
    listings, and the hint makes the fix obvious."""
    unknown = [k for k in d if k not in known]
    if not unknown:
        return
    parts = []
    for key in unknown[:_SHOWN_UNKNOWN]:
        if not isinstance(key, str):
            parts.append(repr(key))
            continue
        snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in key).lstrip("_")
        meant = snake if snake in known else _closest(key, known)
        hint = f" (did you mean {meant!r}?)" if meant else ""
        parts.append(f"{key[:64]!r}{hint}")
    more = f" and {len(unknown) - _SHOWN_UNKNOWN} more" if len(unknown) > _SHOWN_UNKNOWN else ""
    noun = "field" if len(unknown) == 1 else "fields"
    raise ValueError(
        f"{where}: unknown {noun} {', '.join(parts)}{more}; the fields are {', '.join(known)}"
    )


def closed_value_error(name: str, value: str, regex: Any = None) -> str | None:
    """Why a matcher on a closed field (`CLOSED_VALUES`) can match no incident, or None.
    `regex` is the compiled pattern of a regex matcher. Shared with the config validator so
    `check-config` refuses what the API refuses."""
    allowed = CLOSED_VALUES.get(name)
    if allowed is None:
        return None
    listed = ", ".join(allowed)
    if regex is None:
        if value in allowed:
            return None
        return f"{name} {value[:64]!r} is not one of {listed}{_did_you_mean(value, allowed)}"
    if any(regex.fullmatch(v) is not None for v in allowed):
        return None
    return f"{name} regex {value[:64]!r} matches none of {listed}"


def _narrows(matcher: Matcher) -> bool:
    """Whether the matcher leaves some incident out (Alertmanager's "does not match the empty
    string"; on a closed field, "does not match every value": the empty string is never one)."""
    allowed = CLOSED_VALUES.get(matcher.name)
    if allowed is not None:
        return not all(matcher.matches((v,)) for v in allowed)
    return not matcher.matches(())


def matchers_error(matchers: Iterable[Matcher]) -> str | None:
    """Why these matchers together would mute every incident, or None."""
    if any(_narrows(m) for m in matchers):
        return None
    return (
        "at least one matcher must not match the empty string (on severity, domain, status"
        " or layer: must leave out one of their values); these would silence every incident"
    )


def _required(d: Mapping[str, Any], key: str, where: str, expected: str = "") -> Any:
    """The value of `key`; absent or null is an error that says it is required (a bare
    type error, "got NoneType", read as if the value had been sent wrong)."""
    if d.get(key) is None:
        said = "required" if key not in d else "required, got null"
        raise ValueError(f"{where}.{key}: {said}{f' ({expected})' if expected else ''}")
    return d[key]


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True
    _regex: Any = field(default=None, repr=False, compare=False)  # an RE2 pattern

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("matcher name must not be empty")
        _check_len(self.name, MAX_NAME_CHARS, f"matcher {self.name[:40]!r} name")
        if self.is_regex:
            object.__setattr__(self, "_regex", compile_regex(self.value, f"matcher {self.name}"))
        else:
            _check_len(self.value, MAX_PATTERN_CHARS, f"matcher {self.name} value")
        problem = closed_value_error(self.name, self.value, self._regex)
        if problem is not None:
            raise ValueError(f"matcher {problem}")

    def _one(self, value: str) -> bool:
        if self._regex is not None:
            return self._regex.fullmatch(value) is not None
        return value == self.value

    def matches(self, values: Iterable[str]) -> bool:
        vals = list(values) or [""]
        hit = any(self._one(v) for v in vals)
        return hit if self.is_equal else not hit

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "is_regex": self.is_regex,
            "is_equal": self.is_equal,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "matcher") -> Self:
        if not isinstance(d, Mapping):
            raise ValueError(f"{where}: expected an object, got {d!r}")
        _check_keys(d, MATCHER_FIELDS, where)
        name, value = _required(d, "name", where), _required(d, "value", where)
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}.name: expected a non-empty string")
        _check_len(name, MAX_NAME_CHARS, f"{where}.name")
        if not isinstance(value, str):
            raise ValueError(f"{where}.value: expected a string")
        is_regex, is_equal = d.get("is_regex", False), d.get("is_equal", True)
        if not isinstance(is_regex, bool) or not isinstance(is_equal, bool):
            raise ValueError(f"{where}: is_regex and is_equal must be booleans")
        regex = None
        if is_regex:
            regex = compile_regex(value, f"{where}.value")  # the error names the field
        else:
            _check_len(value, MAX_PATTERN_CHARS, f"{where}.value")
        problem = closed_value_error(name, value, regex)
        if problem is not None:
            raise ValueError(f"{where}.value: {problem}")
        return cls(name, value, is_regex, is_equal)


def incident_values(incident: Incident, name: str) -> list[str]:
    """The value(s) of `name` on an incident, as silence matchers see them."""
    if name in SINGLE_FIELDS:
        return [str(getattr(incident, name))]
    if name == "layer":
        return sorted({s.layer for s in incident.signals})
    if name == "metric":
        return sorted({s.metric for s in incident.signals})
    return [a.value for a in incident.attribution if a.label == name]


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str = ""
    comment: str = ""

    def __post_init__(self) -> None:
        # Every Silence can be rendered (`to_record`) and stored: the API and the restore
        # path rely on this, so a bad one never reaches the muter.
        if not self.id:
            raise ValueError("silence id must not be empty")
        _check_len(self.id, MAX_ID_CHARS, "silence id")
        if not self.matchers:
            raise ValueError(f"silence {self.id}: needs at least one matcher")
        if len(self.matchers) > MAX_MATCHERS:
            raise ValueError(f"silence {self.id}: more than {MAX_MATCHERS} matchers")
        problem = matchers_error(self.matchers)
        if problem is not None:
            raise ValueError(f"silence {self.id}: {problem}")
        _check_ts(self.starts_at, f"silence {self.id}: starts_at")
        _check_ts(self.ends_at, f"silence {self.id}: ends_at")
        if self.ends_at <= self.starts_at:
            raise ValueError(f"silence {self.id}: ends_at must be after starts_at")
        _check_len(self.created_by, MAX_NAME_CHARS, f"silence {self.id}: created_by")
        _check_len(self.comment, MAX_COMMENT_CHARS, f"silence {self.id}: comment")

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, incident: Incident) -> bool:
        return all(m.matches(incident_values(incident, m.name)) for m in self.matchers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "matchers": [m.to_dict() for m in self.matchers],
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "created_by": self.created_by,
            "comment": self.comment,
        }

    def to_record(self, now: float | None = None) -> dict[str, Any]:
        """API form: RFC 3339 times and, given `now`, the state (pending/active/expired)."""
        rec = self.to_dict()
        rec["starts_at"] = rfc3339(self.starts_at)
        rec["ends_at"] = rfc3339(self.ends_at)
        if now is not None:
            rec["state"] = (
                "pending" if now < self.starts_at else "active" if now < self.ends_at else "expired"
            )
        return rec

    @classmethod
    def from_dict(
        cls,
        d: Mapping[str, Any],
        where: str = "silence",
        max_duration_s: float | None = None,
    ) -> Self:
        """Validate an API/config object; errors name the field. `max_duration_s` caps
        `ends_at - starts_at` (the API's one-year limit; None for config silences)."""
        if not isinstance(d, Mapping):
            raise ValueError(f"{where}: expected an object")
        _check_keys(d, SILENCE_FIELDS, where)
        sid = d.get("id")
        if not isinstance(sid, str) or not sid:
            raise ValueError(f"{where}.id: expected a non-empty string")
        _check_len(sid, MAX_ID_CHARS, f"{where}.id")
        raw = d.get("matchers")
        if not isinstance(raw, list) or not raw:
            raise ValueError(f"{where}.matchers: expected a non-empty list")
        if len(raw) > MAX_MATCHERS:
            raise ValueError(f"{where}.matchers: more than {MAX_MATCHERS} matchers")
        matchers = tuple(Matcher.from_dict(m, f"{where}.matchers[{i}]") for i, m in enumerate(raw))
        problem = matchers_error(matchers)
        if problem is not None:
            raise ValueError(f"{where}.matchers: {problem}")
        starts = _parse_ts(_required(d, "starts_at", where, _TS_FORM), f"{where}.starts_at")
        ends = _parse_ts(_required(d, "ends_at", where, _TS_FORM), f"{where}.ends_at")
        if ends <= starts:
            raise ValueError(f"{where}.ends_at: must be after starts_at")
        if max_duration_s is not None and ends - starts > max_duration_s:
            raise ValueError(
                f"{where}.ends_at: at most {max_duration_s / 86400:g} days after starts_at"
            )
        created_by, comment = d.get("created_by", ""), d.get("comment", "")
        if not isinstance(created_by, str):
            raise ValueError(f"{where}.created_by: expected a string")
        if not isinstance(comment, str):
            raise ValueError(f"{where}.comment: expected a string")
        _check_len(created_by, MAX_NAME_CHARS, f"{where}.created_by")
        _check_len(comment, MAX_COMMENT_CHARS, f"{where}.comment")
        return cls(sid, matchers, starts, ends, created_by, comment)


class SilenceMuter:
    """Holds the silences; mutes an incident when an active silence matches it."""

    def __init__(self, silences: Iterable[Silence] = ()) -> None:
        self._silences: dict[str, Silence] = {}
        for s in silences:
            self.add(s)

    def add(self, silence: Silence) -> None:
        """Add, or replace the silence with the same id."""
        self._silences[silence.id] = silence

    def remove(self, silence_id: str) -> bool:
        return self._silences.pop(silence_id, None) is not None

    def get(self, silence_id: str) -> Silence | None:
        return self._silences.get(silence_id)

    def list(self) -> list[Silence]:
        return sorted(self._silences.values(), key=lambda s: (s.starts_at, s.id))

    def active(self, now: float) -> builtins.list[Silence]:
        return [s for s in self.list() if s.active(now)]

    def expire(self, silence_id: str, now: float) -> bool:
        """End a silence at `now` (kept for the record); False when unknown or already over."""
        s = self._silences.get(silence_id)
        if s is None or s.ends_at <= now:
            return False
        if now <= s.starts_at:
            # A pending silence that never began: drop it rather than make an empty span.
            del self._silences[silence_id]
            return True
        self._silences[silence_id] = Silence(
            s.id, s.matchers, s.starts_at, now, s.created_by, s.comment
        )
        return True

    def gc(self, now: float, retention_s: float = 86400.0) -> int:
        """Forget silences that ended more than `retention_s` ago; returns how many."""
        old = [k for k, s in self._silences.items() if s.ends_at + retention_s <= now]
        for k in old:
            del self._silences[k]
        return len(old)

    def mutes(self, incident: Incident, now: float) -> str | None:
        for s in self.list():
            if s.active(now) and s.matches(incident):
                return f"silence:{s.id}"
        return None

    def to_state(self) -> dict[str, Any]:
        return {"silences": [s.to_dict() for s in self.list()]}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Self:
        """Strict: any bad silence is an error. The daemon's restore uses `load_silences`."""
        raw = state.get("silences", [])
        if not isinstance(raw, list):
            raise ValueError("silences: expected a list")
        return cls(Silence.from_dict(d, f"silences[{i}]") for i, d in enumerate(raw))


def load_silences(state: Any) -> tuple[list[Silence], list[str]]:
    """Lenient restore of `SilenceMuter.to_state()`: the silences that load, and one error per
    one that does not. A row written by an older version without today's bounds (say, an
    `ends_at` of 1e308) is skipped rather than losing every silence or breaking start-up."""
    raw = state.get("silences") if isinstance(state, Mapping) else None
    if not isinstance(raw, list):
        return [], ["silences: expected an object with a `silences` list"]
    loaded: list[Silence] = []
    errors: list[str] = []
    for i, d in enumerate(raw):
        try:
            loaded.append(Silence.from_dict(d, f"silences[{i}]"))
        except ValueError as exc:
            errors.append(str(exc))
    return loaded, errors
