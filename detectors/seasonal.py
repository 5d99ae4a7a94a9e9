"""Seasonal baseline: an hour-of-week profile, so the daily peak and the weekend dip are normal.

The expected value at time `ts` comes from a three-level hierarchy, each level an EW mean and
EW variance:

1. one of 168 hour-of-week buckets (Monday 00:00-01:00 UTC is bucket 0). Unix time 0 was a
   Thursday 00:00 UTC, 72 hours after the Monday that starts its week, so
   `bucket = (int(ts // 3600) + 72) % 168`;
2. one of 24 hour-of-day buckets, which fill after one day instead of one week;
3. a global EWMA that tracks the recent level.

A level's weight grows with its bucket's sample count (full at `full_n` samples), and the
blend's variance is the mixture variance (it includes the disagreement between levels), so a
young profile is wider, not wrong. On the first day the detector behaves like an EWMA; after
a day the daily shape is known; after a week the weekday/weekend shape too.

Neighbouring-hour smoothing: each bucket's statistics stand for the middle of its hour, and
the expectation at `ts` interpolates linearly between the two nearest bucket centres, so a
steep morning ramp is not a step at the top of each hour.

Protection: outside an alarm the profile learns winsorized values (see `EwmaDetector`) and
nothing while a possible anomaly is pending. While firing, the global level, the hour-of-day
profile and every variance are frozen, but the hour-of-week bucket's mean keeps learning at
its normal rate from values clipped at `threshold` sigmas. Freezing it too would make a
regime the detector first meets while firing (the first weekend of a metric with a sharp
weekend step) unlearnable: it would fire at the same hour every week forever. The price: an
incident moves next week's expectation for its hours toward the incident level (about a
quarter of the way once a bucket has a few weeks of history; all the way for a bucket seen
for the first time, which is why a sharp weekend step can still flap during the first
weekend).

Memory is fixed: 3 x 168 + 3 x 24 numbers plus the alarm state. Threshold, hysteresis,
`for_n`, protection and `min_n` follow `EwmaDetector`.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Self

from detectors.base import TickStats, Transition
from detectors.ewma import (
    _TINY,
    STATE_VERSION,
    DirectionParam,
    _Alarm,
    _alpha,
    _check_direction,
    _check_int,
    _check_nonneg,
    _check_thresholds,
    _check_version,
    _winsorize,
)

HOURS_PER_WEEK = 168
EPOCH_WEEK_OFFSET_H = 72  # 1970-01-01 (hour 0) was a Thursday: Monday 00:00 + 72 h
_COUNT_CAP = 1 << 30


def hour_of_week(ts: float) -> int:
    """0 = Monday 00:00-01:00 UTC ... 167 = Sunday 23:00-24:00 UTC."""
    return (int(ts // 3600) + EPOCH_WEEK_OFFSET_H) % HOURS_PER_WEEK


class _Profile:
    """Hour-of-week, hour-of-day and global EW statistics with count-weighted blending."""

    __slots__ = (
        "bucket_a",
        "dc",
        "dm",
        "dv",
        "full_n",
        "gc",
        "global_a",
        "gm",
        "gv",
        "smooth",
        "wc",
        "wm",
        "wv",
    )

    def __init__(self, bucket_a: float, global_a: float, full_n: int, smooth: bool) -> None:
        self.bucket_a = bucket_a
        self.global_a = global_a
        self.full_n = full_n
        self.smooth = smooth
        self.wm = [0.0] * HOURS_PER_WEEK
        self.wv = [0.0] * HOURS_PER_WEEK
        self.wc = [0] * HOURS_PER_WEEK
        self.dm = [0.0] * 24
        self.dv = [0.0] * 24
        self.dc = [0] * 24
        self.gm = 0.0
        self.gv = 0.0
        self.gc = 0

    def _at(self, hour: int) -> tuple[float, float]:
        """Blended mean and variance for absolute hour index `hour` (hours since the epoch)."""
        full = self.full_n
        m, v = self.gm, self.gv
        d = hour % 24
        c = self.dc[d]
        if c:
            w = 1.0 if c >= full else c / full
            bm = self.dm[d]
            delta = bm - m
            v = w * self.dv[d] + (1.0 - w) * v + w * (1.0 - w) * delta * delta
            m += w * delta
        k = (hour + EPOCH_WEEK_OFFSET_H) % HOURS_PER_WEEK
        c = self.wc[k]
        if c:
            w = 1.0 if c >= full else c / full
            bm = self.wm[k]
            delta = bm - m
            v = w * self.wv[k] + (1.0 - w) * v + w * (1.0 - w) * delta * delta
            m += w * delta
        return m, v

    def expect(self, ts: float) -> tuple[float, float]:
        if not self.smooth:
            return self._at(int(ts // 3600))
        pos = ts / 3600.0 - 0.5
        h0 = math.floor(pos)
        f = pos - h0
        m0, v0 = self._at(h0)
        m1, v1 = self._at(h0 + 1)
        return m0 + f * (m1 - m0), v0 + f * (v1 - v0)

    def learn(self, ts: float, x: float, xv: float | None = None) -> None:
        """Learn `x` into the mean and `xv` (default `x`) into the variance of each level.

        Callers pass a tighter-winsorized `x` (a Huber-style location update) and a looser
        `xv`, so an outlier moves the baseline little while the spread stays honest."""
        if xv is None:
            xv = x
        hour = int(ts // 3600)
        # global
        c = self.gc = min(self.gc + 1, _COUNT_CAP)
        a = self.global_a
        if c * a < 1.0:
            a = 1.0 / c
        m = self.gm
        dv = xv - m
        self.gm = m + a * (x - m)
        self.gv = (1.0 - a) * (self.gv + a * dv * dv)
        ba = self.bucket_a
        # hour of day
        d = hour % 24
        c = self.dc[d] = min(self.dc[d] + 1, _COUNT_CAP)
        a = 1.0 / c if c * ba < 1.0 else ba
        m = self.dm[d]
        dv = xv - m
        self.dm[d] = m + a * (x - m)
        self.dv[d] = (1.0 - a) * (self.dv[d] + a * dv * dv)
        # hour of week
        k = (hour + EPOCH_WEEK_OFFSET_H) % HOURS_PER_WEEK
        c = self.wc[k] = min(self.wc[k] + 1, _COUNT_CAP)
        a = 1.0 / c if c * ba < 1.0 else ba
        m = self.wm[k]
        dv = xv - m
        self.wm[k] = m + a * (x - m)
        self.wv[k] = (1.0 - a) * (self.wv[k] + a * dv * dv)

    def learn_week_mean(self, ts: float, x: float) -> None:
        """Move only the hour-of-week bucket's mean toward `x` (the while-firing update)."""
        k = hour_of_week(ts)
        c = self.wc[k] = min(self.wc[k] + 1, _COUNT_CAP)
        ba = self.bucket_a
        a = 1.0 / c if c * ba < 1.0 else ba
        self.wm[k] += a * (x - self.wm[k])

    def to_state(self) -> dict[str, Any]:
        return {
            "week": [self.wm, self.wv, self.wc],
            "day": [self.dm, self.dv, self.dc],
            "global": [self.gm, self.gv, self.gc],
        }

    def load(self, state: dict[str, Any]) -> None:
        wm, wv, wc = state["week"]
        dm, dv, dc = state["day"]
        if len(wm) != HOURS_PER_WEEK or len(dm) != 24:
            raise ValueError("seasonal profile has the wrong number of buckets")
        self.wm = [float(x) for x in wm]
        self.wv = [float(x) for x in wv]
        self.wc = [int(x) for x in wc]
        self.dm = [float(x) for x in dm]
        self.dv = [float(x) for x in dv]
        self.dc = [int(x) for x in dc]
        gm, gv, gc = state["global"]
        self.gm, self.gv, self.gc = float(gm), float(gv), int(gc)


class SeasonalDetector(_Alarm):
    kind: ClassVar[str] = "seasonal"

    def __init__(
        self,
        threshold: float = 4.0,
        clear: float = 2.0,
        direction: DirectionParam = "both",
        for_n: int = 3,
        clear_n: int = 3,
        bucket_half_life: float = 480.0,
        global_half_life: float = 240.0,
        full_n: int = 120,
        warmup: int = 120,
        min_n: int = 0,
        min_rel_sigma: float = 0.02,
        min_sigma: float = 0.0,
        smooth: bool = True,
    ) -> None:
        _check_thresholds(threshold, clear)
        _check_direction(direction)
        _check_int("full_n", full_n, 1)
        _check_int("warmup", warmup, 2)
        _check_int("min_n", min_n, 0)
        _check_nonneg("min_rel_sigma", min_rel_sigma)
        _check_nonneg("min_sigma", min_sigma)
        if not isinstance(smooth, bool):
            raise ValueError(f"smooth must be a bool, got {smooth!r}")
        bucket_a = _alpha(bucket_half_life, None, "bucket_half_life")
        global_a = _alpha(global_half_life, None, "global_half_life")
        self._init_alarm(for_n, clear_n)
        self.threshold = float(threshold)
        self.clear = float(clear)
        self.direction: DirectionParam = direction
        self.bucket_half_life = float(bucket_half_life)
        self.global_half_life = float(global_half_life)
        self.full_n = full_n
        self.warmup = warmup
        self.min_n = min_n
        self.min_rel_sigma = float(min_rel_sigma)
        self.min_sigma = float(min_sigma)
        self.smooth = smooth
        self._profile = _Profile(bucket_a, global_a, full_n, smooth)
        self._baseline: float | None = None

    @property
    def baseline(self) -> float | None:
        """The expected value at the last scored sample's time."""
        return self._baseline

    def update(
        self, ts: float, value: float, n: int | None = None, tick: TickStats | None = None
    ) -> Transition | None:
        if (n is not None and n < self.min_n) or not math.isfinite(value):
            return None
        prof = self._profile
        if prof.gc < self.warmup:
            prof.learn(ts, value)
            return None
        mean, var = prof.expect(ts)
        self._baseline = mean
        sd = max(math.sqrt(var), self.min_rel_sigma * abs(mean), self.min_sigma, _TINY)
        z = (value - mean) / sd
        d = self.direction
        sign = 1 if z >= 0 else -1
        dev = z if d == "up" else -z if d == "down" else abs(z)
        thr = self.threshold
        calm = z * self._fire_sign < self.clear
        out = self._judge(ts, value, mean, abs(z), sign, dev >= thr, calm)
        if not self._firing:
            if not self._pending:
                prof.learn(ts, *_winsorize(value, mean, sd, thr))
        else:
            prof.learn_week_mean(ts, _winsorize(value, mean, sd, thr)[1])
        return out

    def to_state(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "kind": self.kind,
            "params": self._params(),
            "profile": self._profile.to_state(),
            "baseline": self._baseline,
            **self._alarm_state(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        _check_version(state, cls.kind)
        det = cls(**state["params"])
        det._profile.load(state["profile"])
        b = state["baseline"]
        det._baseline = None if b is None else float(b)
        det._load_alarm(state)
        return det
