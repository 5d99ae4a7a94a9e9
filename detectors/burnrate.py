"""Multi-window, multi-burn-rate SLO alert (Google SRE workbook, "Alerting on SLOs").

The error budget is `1 - slo`. A window's burn rate is its error rate divided by the budget;
a pair (long_s, short_s, factor) is breached when both windows burn faster than `factor`.
The long window says the budget is really going; the short one says it is still going now,
so the alert clears soon after the fault stops. Defaults are the workbook's paging pairs:
1 h / 5 min at 14.4 (2% of a 30-day budget in an hour) and 6 h / 30 min at 6 (5% in 6 h).

Input per update: `value` is the bad fraction over the sample and `n` its number of events
(or the good fraction with `value_is="good"`, e.g. availability). Counts go into a ring of
`slot_s`-second slots covering the longest window (6 h / 60 s = 360 slots); each window keeps
a running sum updated as slots enter and leave it, so an update is O(number of windows) and
memory is bounded by the longest window, whatever the traffic.

Samples that summarise overlapping trailing windows (the aggregator's 5-minute windows every
15 s) count each event in several samples; every event is over-counted by the same factor,
so the ratios and the burn rates are unchanged, but a window's edges are smoothed by the
sample window. `min_events` (in summed sample counts) keeps a quiet window from firing on a
handful of failures. A pair is only judged once the history covers its long window (or
`warmup_s` seconds, when given): a 6-hour rate over the first 20 minutes after a cold start
is a 20-minute rate, and would page on what the pair is meant to ignore. Snapshots keep the
history across restarts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Literal, Self

from detectors.base import Direction, TickStats, Transition
from detectors.ewma import STATE_VERSION, _check_version

DEFAULT_PAIRS: tuple[tuple[float, float, float], ...] = (
    (3600.0, 300.0, 14.4),
    (21600.0, 1800.0, 6.0),
)
ValueIs = Literal["bad", "good"]


class BurnRateDetector:
    kind: ClassVar[str] = "burn_rate"

    def __init__(
        self,
        slo: float = 0.995,
        pairs: Sequence[Sequence[float]] = DEFAULT_PAIRS,
        slot_s: float = 60.0,
        value_is: ValueIs = "bad",
        min_events: float = 1.0,
        warmup_s: float | None = None,
    ) -> None:
        if not (0.0 < slo < 1.0):
            raise ValueError(f"slo must be in (0, 1), got {slo!r}")
        if not (slot_s > 0 and math.isfinite(slot_s)):
            raise ValueError(f"slot_s must be > 0, got {slot_s!r}")
        if value_is not in ("bad", "good"):
            raise ValueError(f"value_is must be 'bad' or 'good', got {value_is!r}")
        if not (min_events >= 0 and math.isfinite(min_events)):
            raise ValueError(f"min_events must be >= 0, got {min_events!r}")
        checked: list[tuple[float, float, float]] = []
        try:
            for pair in pairs:
                long_s, short_s, factor = (float(x) for x in pair)
                checked.append((long_s, short_s, factor))
        except (TypeError, ValueError):
            raise ValueError(
                f"pairs must be a list of (long_s, short_s, factor), got {pairs!r}"
            ) from None
        if not checked:
            raise ValueError("pairs must not be empty")
        for long_s, short_s, factor in checked:
            if not (0 < short_s <= long_s and math.isfinite(long_s)) or not factor > 0:
                raise ValueError(
                    f"pairs: need 0 < short_s <= long_s and factor > 0, got "
                    f"{(long_s, short_s, factor)!r}"
                )
            if short_s < slot_s:
                raise ValueError(f"pairs: window {short_s!r} s is shorter than slot_s")
        if warmup_s is not None and not (warmup_s >= 0 and math.isfinite(warmup_s)):
            raise ValueError(f"warmup_s must be >= 0, got {warmup_s!r}")
        self.slo = float(slo)
        self.pairs = tuple(checked)
        self.slot_s = float(slot_s)
        self.value_is: ValueIs = value_is
        self.min_events = float(min_events)
        self.warmup_s = None if warmup_s is None else float(warmup_s)
        windows = sorted({w for p in checked for w in p[:2]})
        self._wins = tuple(max(1, round(w / slot_s)) for w in windows)
        self._win_index = {w: i for i, w in enumerate(windows)}
        self._size = max(self._wins)
        self._bad = [0.0] * self._size
        self._tot = [0.0] * self._size
        self._sum_bad = [0.0] * len(self._wins)
        self._sum_tot = [0.0] * len(self._wins)
        self._slot: int | None = None  # index of the current (newest) slot
        self._first_ts: float | None = None
        self._firing = False
        self._budget = 1.0 - self.slo

    @property
    def firing(self) -> bool:
        return self._firing

    @property
    def baseline(self) -> float:
        """The error rate the SLO allows, in the units of `value`."""
        return self._budget if self.value_is == "bad" else self.slo

    def _advance(self, slot: int) -> None:
        cur = self._slot
        if cur is None or slot - cur >= self._size:
            size = self._size
            self._bad = [0.0] * size
            self._tot = [0.0] * size
            self._sum_bad = [0.0] * len(self._wins)
            self._sum_tot = [0.0] * len(self._wins)
            self._slot = slot
            return
        bad, tot, sb, st, size = self._bad, self._tot, self._sum_bad, self._sum_tot, self._size
        for j in range(cur + 1, slot + 1):
            for i, w in enumerate(self._wins):
                old = (j - w) % size
                sb[i] -= bad[old]
                st[i] -= tot[old]
            pos = j % size
            bad[pos] = 0.0
            tot[pos] = 0.0
            if pos == 0:  # once per ring turn, drop accumulated rounding error
                for i, w in enumerate(self._wins):
                    idx = [(j - m) % size for m in range(1, w)]
                    sb[i] = math.fsum(bad[x] for x in idx)
                    st[i] = math.fsum(tot[x] for x in idx)
        self._slot = slot

    def _burn(self, window_s: float) -> tuple[float, float]:
        i = self._win_index[window_s]
        tot = self._sum_tot[i]
        if tot <= 0:
            return 0.0, 0.0
        return max(0.0, self._sum_bad[i]) / tot / self._budget, tot

    def update(
        self, ts: float, value: float, n: int | None = None, tick: TickStats | None = None
    ) -> Transition | None:
        if not (0.0 <= value <= 1.0) or (n is not None and n <= 0):
            return None
        events = 1.0 if n is None else float(n)
        bad = (value if self.value_is == "bad" else 1.0 - value) * events
        slot = int(ts // self.slot_s)
        if self._slot is not None and slot < self._slot:
            if self._slot - slot >= self._size:
                return None  # older than every window
        else:
            self._advance(slot)
        assert self._slot is not None
        pos = slot % self._size
        self._bad[pos] += bad
        self._tot[pos] += events
        age = self._slot - slot
        for i, w in enumerate(self._wins):
            if age < w:
                self._sum_bad[i] += bad
                self._sum_tot[i] += events
        if self._first_ts is None:
            self._first_ts = ts
        history = ts - self._first_ts
        breach = False
        score = 0.0
        for long_s, short_s, factor in self.pairs:
            if history < (long_s - self.slot_s if self.warmup_s is None else self.warmup_s):
                continue
            burn_long, n_long = self._burn(long_s)
            burn_short, n_short = self._burn(short_s)
            s = min(burn_long, burn_short)
            score = max(score, s)
            if s > factor and min(n_long, n_short) >= self.min_events:
                breach = True
        if breach == self._firing:
            return None
        self._firing = breach
        direction = Direction.UP if self.value_is == "bad" else Direction.DOWN
        state: Literal["firing", "cleared"] = "firing" if breach else "cleared"
        return Transition(ts, state, value, self.baseline, round(score, 6), direction)

    def to_state(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "kind": self.kind,
            "params": {
                "slo": self.slo,
                "pairs": [list(p) for p in self.pairs],
                "slot_s": self.slot_s,
                "value_is": self.value_is,
                "min_events": self.min_events,
                "warmup_s": self.warmup_s,
            },
            "bad": self._bad,
            "tot": self._tot,
            "sum_bad": self._sum_bad,
            "sum_tot": self._sum_tot,
            "slot": self._slot,
            "first_ts": self._first_ts,
            "firing": self._firing,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        _check_version(state, cls.kind)
        det = cls(**state["params"])
        if len(state["bad"]) != det._size or len(state["sum_bad"]) != len(det._wins):
            raise ValueError("burn_rate state does not match its windows")
        det._bad = [float(x) for x in state["bad"]]
        det._tot = [float(x) for x in state["tot"]]
        det._sum_bad = [float(x) for x in state["sum_bad"]]
        det._sum_tot = [float(x) for x in state["sum_tot"]]
        det._slot = None if state["slot"] is None else int(state["slot"])
        det._first_ts = None if state["first_ts"] is None else float(state["first_ts"])
        det._firing = bool(state["firing"])
        return det
