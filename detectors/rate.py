"""Rate detector for k-of-n metrics (refusals, errors, 429s, availability, format compliance).

`value` is the window's fraction k/n and `n` its number of trials. The baseline rate is a
ratio of pooled, exponentially decayed sums of k and n, so a busy hour weighs more than a
quiet one and the estimate is a ratio of sums, not a mean of ratios.

Seasonal baseline (`seasonal=True`, the default): the pools form the same three-level
hierarchy as `SeasonalDetector` (DESIGN.md: every baseline detector is seasonal-aware):

1. one pool per hour-of-week bucket (168, Monday 00:00 UTC = 0, see `hour_of_week`), decayed
   per sample of that bucket (`bucket_half_life` samples: 480 = two hours of 15-s ticks, so
   about two weeks of history for an hour-of-week bucket);
2. one pool per hour of day (24), same decay: the daily shape is known after one day;
3. one global pool (`half_life` samples, 12 h of ticks), which tracks the recent level.

The expected bad rate at `ts` blends the levels exactly as `SeasonalDetector` blends means:
the hour-of-day rate moves the global rate by its weight `min(1, count / full_n)`, then the
hour-of-week rate moves that by its own weight; the expectation interpolates linearly
between the two nearest hour centres, so a steep morning ramp is not a step at the top of
each hour. On the first day the detector is the old single-baseline detector; after a day the
night-time and daytime rates are separate; after a week the weekend too. A refusal rate of 3%
at 03:00 is then normal at 03:00 and a 3x jump at 14:00 when 14:00 runs at 1%.
`seasonal=False` keeps only the global pool (the pre-v2 detector).

The test: the window's count against the expected rate for its hour with Anscombe's
variance-stabilising arcsine transform and a continuity correction,

    z = 2 sqrt(n) (asin sqrt((k - 1/2 + 3/8) / (n + 3/4)) - asin sqrt(p0))

which follows the exact binomial tail closely for n >= 30 even at low rates (where the plain
normal/Wald or score z is far too optimistic: at p0 = 0.03 and n = 30, five events are z = 4.4
by the score test but z = 2.9 by the exact tail; this transform gives 2.6, slightly
conservative, as it is throughout the range checked in the tests) and
costs one `asin` and two `sqrt` instead of a `scipy.stats.binomtest` call.

Significance alone is not enough at large n, so firing also needs an effect size: the "bad"
fraction (the rate itself for `direction="up"`, its complement for `"down"`) must be at least
`min_ratio` times the expected one and at least `min_abs_diff` above it. Windows with
`n < min_n` are ignored, so 3 refusals out of 5 at night say nothing.

Cold start: the detector learns for `warmup` samples before it scores, unless `prior_rate` is
given, in which case the global pool starts at that rate with the weight of `prior_n` trials
(the hour buckets fill from data as usual).

Protection: anomalous samples and everything seen while firing are not learned, at any level,
and what is learned is the window's count clipped at 2 binomial sigmas (at least one event)
around the expectation, the rate analogue of the seasonal detector's Huber step: the early,
not-yet-anomalous windows of a fault would otherwise pull a young hour-of-week bucket (one
week of history) toward the fault within the hour.
Unlike `SeasonalDetector` the hour-of-week bucket does not keep learning while firing: a rate
alarm needs a large effect (`min_ratio`), and the rate detectors guard incidents (error
bursts) that must not teach next week's baseline. The price: a weekly regime whose bad rate is
at least `min_ratio` times the same hour's weekday rate, first met while the weekend bucket
is empty, fires and stays firing (as the non-seasonal detector did); set `prior_rate` or
`min_ratio` for such a metric.

State version 2 (the hour profile). A version-1 snapshot (one global pool) is migrated: its
pool becomes the global pool and the hour buckets start empty, so the detector behaves as
before and becomes seasonal as the buckets fill. Memory is fixed: 3 x 168 + 3 x 24 numbers
plus the global pool and the alarm state.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal, Self

from detectors.base import TickStats, Transition
from detectors.ewma import (
    HUBER_Z,
    _Alarm,
    _alpha,
    _check_direction,
    _check_int,
    _check_nonneg,
    _check_thresholds,
    _check_version,
)
from detectors.seasonal import EPOCH_WEEK_OFFSET_H, HOURS_PER_WEEK

RateDirection = Literal["up", "down"]
STATE_VERSION = 2
_COUNT_CAP = 1 << 30


def arcsine_z(k: float, n: float, p0: float) -> float:
    """Signed z of k events in n trials against rate p0 (positive: more events than p0).

    Anscombe transform with a continuity correction of 1/2 toward p0."""
    cc = -0.5 if k > n * p0 else 0.5
    q = (k + cc + 0.375) / (n + 0.75)
    q = 0.0 if q < 0.0 else 1.0 if q > 1.0 else q
    return 2.0 * math.sqrt(n) * (math.asin(math.sqrt(q)) - math.asin(math.sqrt(p0)))


class RateDetector(_Alarm):
    kind: ClassVar[str] = "rate"

    def __init__(
        self,
        direction: RateDirection = "up",
        threshold: float = 4.0,
        clear: float = 2.0,
        min_n: int = 30,
        min_ratio: float = 1.5,
        min_abs_diff: float = 0.01,
        half_life: float = 2880.0,
        warmup: int = 120,
        prior_rate: float | None = None,
        prior_n: float = 200.0,
        for_n: int = 3,
        clear_n: int = 4,
        seasonal: bool = True,
        bucket_half_life: float = 480.0,
        full_n: int = 120,
    ) -> None:
        _check_direction(direction, ("up", "down"))
        _check_thresholds(threshold, clear)
        _check_int("min_n", min_n, 1)
        _check_int("warmup", warmup, 1)
        _check_int("full_n", full_n, 1)
        if not (min_ratio >= 1.0 and math.isfinite(min_ratio)):
            raise ValueError(f"min_ratio must be >= 1, got {min_ratio!r}")
        if not (0.0 <= min_abs_diff < 1.0):
            raise ValueError(f"min_abs_diff must be in [0, 1), got {min_abs_diff!r}")
        if prior_rate is not None and not (0.0 <= prior_rate <= 1.0):
            raise ValueError(f"prior_rate must be in [0, 1], got {prior_rate!r}")
        _check_nonneg("prior_n", prior_n)
        if prior_rate is not None and prior_n <= 0:
            raise ValueError("prior_n must be > 0 when prior_rate is given")
        if not isinstance(seasonal, bool):
            raise ValueError(f"seasonal must be a bool, got {seasonal!r}")
        self._keep = 1.0 - _alpha(half_life, None)
        self._bkeep = 1.0 - _alpha(bucket_half_life, None, "bucket_half_life")
        self._init_alarm(for_n, clear_n)
        self.direction: RateDirection = direction
        self.threshold = float(threshold)
        self.clear = float(clear)
        self.min_n = min_n
        self.min_ratio = float(min_ratio)
        self.min_abs_diff = float(min_abs_diff)
        self.half_life = float(half_life)
        self.warmup = warmup
        self.prior_rate = None if prior_rate is None else float(prior_rate)
        self.prior_n = float(prior_n)
        self.seasonal = seasonal
        self.bucket_half_life = float(bucket_half_life)
        self.full_n = full_n
        # Pooled, decayed counts of the "bad" side (k for up, n - k for down) and trials:
        # global, then per hour of day (d*) and hour of week (w*), with sample counts (*c).
        if prior_rate is None:
            self._bad = 0.0
            self._trials = 0.0
            self._seen = 0
        else:
            bad_rate = prior_rate if direction == "up" else 1.0 - prior_rate
            self._bad = bad_rate * prior_n
            self._trials = float(prior_n)
            self._seen = warmup
        nw, nd = (HOURS_PER_WEEK, 24) if seasonal else (0, 0)
        self._wb = [0.0] * nw
        self._wt = [0.0] * nw
        self._wc = [0] * nw
        self._db = [0.0] * nd
        self._dt = [0.0] * nd
        self._dc = [0] * nd
        self._last: float | None = None  # expected bad rate at the last scored sample

    def _global_rate(self) -> float | None:
        if self._seen < self.warmup or self._trials <= 0:
            return None
        return self._bad / self._trials

    def _rate_at(self, hour: int, g: float) -> float:
        """Blended expected bad rate for absolute hour index `hour` (global rate `g`)."""
        full = self.full_n
        p = g
        d = hour % 24
        c = self._dc[d]
        if c:
            t = self._dt[d]
            if t > 0.0:
                w = 1.0 if c >= full else c / full
                p += w * (self._db[d] / t - p)
        k = (hour + EPOCH_WEEK_OFFSET_H) % HOURS_PER_WEEK
        c = self._wc[k]
        if c:
            t = self._wt[k]
            if t > 0.0:
                w = 1.0 if c >= full else c / full
                p += w * (self._wb[k] / t - p)
        return p

    def expected(self, ts: float) -> float | None:
        """The expected bad rate (k/n for "up", 1 - k/n for "down") at time `ts`, or None
        during warm-up. Interpolated between the two nearest hour centres."""
        g = self._global_rate()
        if g is None or not self.seasonal:
            return g
        pos = ts / 3600.0 - 0.5
        h0 = math.floor(pos)
        f = pos - h0
        p0 = self._rate_at(h0, g)
        return p0 + f * (self._rate_at(h0 + 1, g) - p0)

    @property
    def baseline(self) -> float | None:
        """The baseline rate in the units of `value` (k/n): the expected rate at the last
        scored sample's time (before any, the global rate)."""
        b = self._last if self._last is not None else self._global_rate()
        if b is None:
            return None
        return b if self.direction == "up" else 1.0 - b

    def _learn(self, ts: float, bad: float, n: float) -> None:
        keep = self._keep
        self._bad = self._bad * keep + bad
        self._trials = self._trials * keep + n
        if self._seen < _COUNT_CAP:
            self._seen += 1
        if not self.seasonal:
            return
        keep = self._bkeep
        hour = int(ts // 3600)
        d = hour % 24
        self._db[d] = self._db[d] * keep + bad
        self._dt[d] = self._dt[d] * keep + n
        if self._dc[d] < _COUNT_CAP:
            self._dc[d] += 1
        k = (hour + EPOCH_WEEK_OFFSET_H) % HOURS_PER_WEEK
        self._wb[k] = self._wb[k] * keep + bad
        self._wt[k] = self._wt[k] * keep + n
        if self._wc[k] < _COUNT_CAP:
            self._wc[k] += 1

    def update(
        self, ts: float, value: float, n: int | None = None, tick: TickStats | None = None
    ) -> Transition | None:
        if n is None or n < self.min_n or not (0.0 <= value <= 1.0) or not math.isfinite(ts):
            return None
        up = self.direction == "up"
        bad = (value if up else 1.0 - value) * n
        b0 = self.expected(ts)
        if b0 is None:
            self._learn(ts, bad, n)
            return None
        self._last = b0
        z = arcsine_z(bad, n, b0)
        b_hat = bad / n
        diff = b_hat - b0
        ratio = b_hat / b0 if b0 > 0 else (math.inf if b_hat > 0 else 1.0)
        anomalous = z >= self.threshold and ratio >= self.min_ratio and diff >= self.min_abs_diff
        calm = (
            z < self.clear
            or ratio < 1.0 + 0.5 * (self.min_ratio - 1.0)
            or diff < 0.5 * self.min_abs_diff
        )
        baseline = b0 if up else 1.0 - b0
        out = self._judge(ts, value, baseline, z, 1 if up else -1, anomalous, calm)
        if not self._firing and not anomalous:
            # Huber-style step, as the seasonal detector's: learn the count clipped at
            # HUBER_Z binomial sigmas (at least one event) around the expectation, so the
            # windows of a fault that are not yet anomalous barely move a young hour bucket.
            mean = n * b0
            lim = HUBER_Z * math.sqrt(mean * (1.0 - b0))
            lim = 1.0 if lim < 1.0 else lim
            bad = mean + lim if bad > mean + lim else mean - lim if bad < mean - lim else bad
            self._learn(ts, bad, n)
        return out

    def to_state(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "kind": self.kind,
            "params": self._params(),
            "bad": self._bad,
            "trials": self._trials,
            "seen": self._seen,
            "week": [self._wb, self._wt, self._wc],
            "day": [self._db, self._dt, self._dc],
            "last": self._last,
            **self._alarm_state(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        """Rebuild from a v2 snapshot, or migrate a v1 one (one global pool: it becomes the
        global pool, the hour buckets start empty). Other versions raise ValueError."""
        if state.get("v") == 1:
            det = cls(**state["params"])
        else:
            _check_version(state, cls.kind, STATE_VERSION)
            det = cls(**state["params"])
            wb, wt, wc = state["week"]
            db, dt, dc = state["day"]
            nw, nd = (HOURS_PER_WEEK, 24) if det.seasonal else (0, 0)
            if not (len(wb) == len(wt) == len(wc) == nw and len(db) == len(dt) == len(dc) == nd):
                raise ValueError("rate profile has the wrong number of buckets")
            det._wb = [float(x) for x in wb]
            det._wt = [float(x) for x in wt]
            det._wc = [int(x) for x in wc]
            det._db = [float(x) for x in db]
            det._dt = [float(x) for x in dt]
            det._dc = [int(x) for x in dc]
            last = state["last"]
            det._last = None if last is None else float(last)
        det._bad = float(state["bad"])
        det._trials = float(state["trials"])
        det._seen = int(state["seen"])
        det._load_alarm(state)
        return det
