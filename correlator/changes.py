"""The change store: the `change` events the correlator attaches to incidents, bounded per
feature so that one feature's changes never push out another's.

Until 2026-12-02 every feature shared one list of `max_changes` (1,000), trimmed oldest
first: a CI job posting 1,000 `flag` changes for `noisy-ci` pushed `support-bot`'s prompt
change out, and nothing counted it (probe). Now each feature has a list of its own, bounded
by `max_changes_per_feature`; the changes for every feature (`feature: null`) have one
bounded by `max_global_changes`; and all lists together stay within `max_changes`, which
bounds memory and the correlator state written with every incident change.

Which change goes when a bound is hit:

- a list over its own bound drops its oldest changes (those past the change lookback go
  first by construction: they are the oldest);
- over the total, the victim is the oldest change past the change lookback in any list, if
  there is one (a new incident quotes it only if its start is estimated that far back, up
  to `changepoint_lookback_s` before its first signal, and ingest would count it `late` if it
  arrived now), else the oldest change of the longest list: each list keeps its share of the
  total whatever the others send.

Every change a bound drops is counted (`ChangeDrop`: which list, which bound, and whether it
was still inside the change lookback) for the shell to export and log (`take_drops`); the
core does no I/O. Changes older than `change_retention_s` leave without being counted: that
is their retention, not a cap.

Pure: no clock. `now` is an argument.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from correlator.policy import CorrelationPolicy
from correlator.records import ChangeRecord

__all__ = ["ChangeDrop", "ChangeStore"]

ChangeKey = tuple[float, str, str, str]
Cap = Literal["per_feature", "global", "total"]


@dataclass(frozen=True, slots=True)
class ChangeDrop:
    """What a dropped change was: its list (`feature`, None for the changes of every
    feature), the bound that dropped it, and whether it had already left the change
    lookback (`aged`) or could still have been an incident's suspect."""

    feature: str | None
    cap: Cap
    aged: bool


@dataclass(slots=True)
class _List:
    """One list's changes in key order (`ChangeRecord.key`), keys kept beside for bisect."""

    keys: list[ChangeKey] = field(default_factory=list)
    items: list[ChangeRecord] = field(default_factory=list)

    def insert(self, change: ChangeRecord) -> bool:
        """Put `change` in its place; False when it is there already. A change newer than
        the newest (the usual case) is appended without a search."""
        key = change.key
        keys = self.keys
        if keys and key <= keys[-1]:
            i = bisect.bisect_left(keys, key)
            if i < len(keys) and keys[i] == key:
                return False
            keys.insert(i, key)
            self.items.insert(i, change)
        else:
            keys.append(key)
            self.items.append(change)
        return True

    def holds(self, key: ChangeKey) -> bool:
        i = bisect.bisect_left(self.keys, key)
        return i < len(self.keys) and self.keys[i] == key


class ChangeStore:
    """Change events by feature, deduplicated, bounded (see the module docstring)."""

    def __init__(self) -> None:
        self._lists: dict[str | None, _List] = {}
        self._size = 0
        self._drops: dict[tuple[str | None, Cap, bool], int] = {}  # (feature, cap, aged)

    def __len__(self) -> int:
        return self._size

    def add(
        self, changes: Iterable[ChangeRecord], now: float, policy: CorrelationPolicy
    ) -> list[ChangeRecord]:
        """Keep each change not kept already, then apply the bounds once; returns the new
        changes still kept (a bound can drop one at once: the oldest of a full list).

        One pass of the bounds per batch, not per change: a body of 1,000 changes of one
        feature trims its list with one slice, where trimming it after each change cost
        ten times the old single list's insert."""
        new: list[ChangeRecord] = []
        for change in changes:
            lst = self._lists.get(change.feature)
            if lst is None:
                lst = self._lists[change.feature] = _List()
            if lst.insert(change):
                new.append(change)
        if not new:
            return new
        self._size += len(new)
        horizon = now - policy.change_lookback_s
        dropped = False
        for feature in {c.feature for c in new}:
            dropped |= self._bound_list(feature, self._lists[feature], horizon, policy)
        dropped |= self._bound_total(horizon, policy)
        if dropped:
            new = [c for c in new if self._holds(c)]
        return new

    def prune(self, now: float, policy: CorrelationPolicy) -> None:
        """Drop the changes past their retention (uncounted), then apply the bounds again:
        a config reload may have lowered them."""
        cut = (now - policy.change_retention_s, "", "", "")
        for feature, lst in list(self._lists.items()):
            n = bisect.bisect_left(lst.keys, cut)
            if n:
                del lst.keys[:n]
                del lst.items[:n]
                self._size -= n
            if not lst.keys:
                del self._lists[feature]
        horizon = now - policy.change_lookback_s
        for feature, lst in list(self._lists.items()):
            self._bound_list(feature, lst, horizon, policy)
        self._bound_total(horizon, policy)

    def window(self, feature: str, lo: float) -> Iterable[ChangeRecord]:
        """The changes of `feature` and of every feature from `lo` on, oldest first."""
        parts = []
        for name in (feature, None):
            lst = self._lists.get(name)
            if lst is not None:
                start = bisect.bisect_left(lst.keys, (lo, "", "", ""))
                parts.append(lst.items[start:])
        if len(parts) == 1:
            return parts[0]
        return heapq.merge(*parts, key=lambda c: c.key)

    def all(self) -> list[ChangeRecord]:
        """Every change kept, in key order (time first)."""
        return list(heapq.merge(*(lst.items for lst in self._lists.values()), key=lambda c: c.key))

    def take_drops(self) -> dict[ChangeDrop, int]:
        """The changes dropped by a bound since the last call, counted (and forgotten)."""
        out, self._drops = self._drops, {}
        return {ChangeDrop(*key): n for key, n in out.items()}

    # ---- internals ---------------------------------------------------------------------

    def _holds(self, change: ChangeRecord) -> bool:
        lst = self._lists.get(change.feature)
        return lst is not None and lst.holds(change.key)

    def _drop_oldest(
        self, feature: str | None, lst: _List, n: int, cap: Cap, horizon: float
    ) -> None:
        """Drop the list's `n` oldest changes, counted as aged or not."""
        aged = bisect.bisect_left(lst.keys, (horizon, "", "", ""), 0, n)
        del lst.keys[:n]
        del lst.items[:n]
        self._size -= n
        if not lst.keys:
            del self._lists[feature]
        for is_aged, count in ((True, aged), (False, n - aged)):
            if count:
                key = (feature, cap, is_aged)
                self._drops[key] = self._drops.get(key, 0) + count

    def _bound_list(
        self, feature: str | None, lst: _List, horizon: float, policy: CorrelationPolicy
    ) -> bool:
        cap: Cap = "global" if feature is None else "per_feature"
        bound = policy.max_global_changes if feature is None else policy.max_changes_per_feature
        excess = len(lst.keys) - bound
        if excess > 0:
            self._drop_oldest(feature, lst, excess, cap, horizon)
        return excess > 0

    def _bound_total(self, horizon: float, policy: CorrelationPolicy) -> bool:
        dropped = False
        while self._size > policy.max_changes:
            feature, lst = min(self._lists.items(), key=lambda kv: kv[1].keys[0])
            if lst.keys[0][0] >= horizon:  # nothing past the lookback: the longest list pays
                feature, lst = min(
                    self._lists.items(), key=lambda kv: (-len(kv[1].keys), kv[1].keys[0])
                )
            self._drop_oldest(feature, lst, 1, "total", horizon)
            dropped = True
        return dropped
