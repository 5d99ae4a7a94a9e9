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
"""

from __future__ import annotations

import builtins
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

from correlator.incident import Incident
from correlator.records import rfc3339

SINGLE_FIELDS = ("feature", "domain", "severity", "status", "id")


def _parse_ts(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected Unix seconds or RFC 3339, got {value!r}")
    if isinstance(value, int | float):
        ts = float(value)
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"{name}: not an RFC 3339 time: {value!r}") from exc
        if dt.tzinfo is None:
            raise ValueError(f"{name}: RFC 3339 time needs a zone: {value!r}")
        ts = dt.timestamp()
    else:
        raise ValueError(f"{name}: expected Unix seconds or RFC 3339, got {value!r}")
    if not math.isfinite(ts):
        raise ValueError(f"{name}: must be finite")
    return ts


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True
    _regex: re.Pattern[str] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("matcher name must not be empty")
        if self.is_regex:
            try:
                object.__setattr__(self, "_regex", re.compile(self.value))
            except re.error as exc:
                raise ValueError(f"matcher {self.name}: bad regex {self.value!r}: {exc}") from exc

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
        name, value = d.get("name"), d.get("value")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}.name: expected a non-empty string")
        if not isinstance(value, str):
            raise ValueError(f"{where}.value: expected a string")
        is_regex, is_equal = d.get("is_regex", False), d.get("is_equal", True)
        if not isinstance(is_regex, bool) or not isinstance(is_equal, bool):
            raise ValueError(f"{where}: is_regex and is_equal must be booleans")
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
        if not self.id:
            raise ValueError("silence id must not be empty")
        if not self.matchers:
            raise ValueError(f"silence {self.id}: needs at least one matcher")
        if not (math.isfinite(self.starts_at) and math.isfinite(self.ends_at)):
            raise ValueError(f"silence {self.id}: starts_at and ends_at must be finite")
        if self.ends_at <= self.starts_at:
            raise ValueError(f"silence {self.id}: ends_at must be after starts_at")

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
    def from_dict(cls, d: Mapping[str, Any], where: str = "silence") -> Self:
        """Validate an API/config object; errors name the field."""
        if not isinstance(d, Mapping):
            raise ValueError(f"{where}: expected an object")
        sid = d.get("id")
        if not isinstance(sid, str) or not sid:
            raise ValueError(f"{where}.id: expected a non-empty string")
        raw = d.get("matchers")
        if not isinstance(raw, list) or not raw:
            raise ValueError(f"{where}.matchers: expected a non-empty list")
        matchers = tuple(Matcher.from_dict(m, f"{where}.matchers[{i}]") for i, m in enumerate(raw))
        starts = _parse_ts(d.get("starts_at"), f"{where}.starts_at")
        ends = _parse_ts(d.get("ends_at"), f"{where}.ends_at")
        if ends <= starts:
            raise ValueError(f"{where}.ends_at: must be after starts_at")
        created_by, comment = d.get("created_by", ""), d.get("comment", "")
        if not isinstance(created_by, str) or not isinstance(comment, str):
            raise ValueError(f"{where}: created_by and comment must be strings")
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
        raw = state.get("silences", [])
        if not isinstance(raw, list):
            raise ValueError("silences: expected a list")
        return cls(Silence.from_dict(d, f"silences[{i}]") for i, d in enumerate(raw))
