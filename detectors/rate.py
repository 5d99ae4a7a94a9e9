"""Rate detector for k-of-n metrics (refusals, errors, 429s, availability, format compliance).

`value` is the window's fraction k/n and `n` its number of trials. The baseline rate is
learned by pooling k and n with exponential decay per sample (`half_life` samples), so a busy
hour weighs more than a quiet one and the estimate is a ratio of sums, not a mean of ratios.

The test: the window's count against the baseline rate with Anscombe's variance-stabilising
arcsine transform and a continuity correction,

    z = 2 sqrt(n) (asin sqrt((k - 1/2 + 3/8) / (n + 3/4)) - asin sqrt(p0))

which follows the exact binomial tail closely for n >= 30 even at low rates (where the plain
normal/Wald or score z is far too optimistic: at p0 = 0.03 and n = 30, five events are z = 4.4
by the score test but z = 2.9 by the exact tail; this transform gives 2.6, slightly
conservative, as it is throughout the range checked in the tests) and
costs one `asin` and two `sqrt` instead of a `scipy.stats.binomtest` call.

Significance alone is not enough at large n, so firing also needs an effect size: the "bad"
fraction (the rate itself for `direction="up"`, its complement for `"down"`) must be at least
`min_ratio` times the baseline's and at least `min_abs_diff` above it. Windows with
`n < min_n` are ignored, so 3 refusals out of 5 at night say nothing.

Cold start: the detector learns for `warmup` samples before it scores, unless `prior_rate` is
given, in which case the baseline starts at that rate with the weight of `prior_n` trials.
Anomalous samples and everything seen while firing are not learned.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal, Self

from detectors.base import Transition
from detectors.ewma import (
    STATE_VERSION,
    _Alarm,
    _alpha,
    _check_direction,
    _check_int,
    _check_nonneg,
    _check_thresholds,
    _check_version,
)

RateDirection = Literal["up", "down"]


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
    ) -> None:
        _check_direction(direction, ("up", "down"))
        _check_thresholds(threshold, clear)
        _check_int("min_n", min_n, 1)
        _check_int("warmup", warmup, 1)
        if not (min_ratio >= 1.0 and math.isfinite(min_ratio)):
            raise ValueError(f"min_ratio must be >= 1, got {min_ratio!r}")
        if not (0.0 <= min_abs_diff < 1.0):
            raise ValueError(f"min_abs_diff must be in [0, 1), got {min_abs_diff!r}")
        if prior_rate is not None and not (0.0 <= prior_rate <= 1.0):
            raise ValueError(f"prior_rate must be in [0, 1], got {prior_rate!r}")
        _check_nonneg("prior_n", prior_n)
        if prior_rate is not None and prior_n <= 0:
            raise ValueError("prior_n must be > 0 when prior_rate is given")
        self._a = _alpha(half_life, None)
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
        # Pooled, decayed counts of the "bad" side (k for up, n - k for down) and trials.
        if prior_rate is None:
            self._bad = 0.0
            self._trials = 0.0
            self._seen = 0
        else:
            bad_rate = prior_rate if direction == "up" else 1.0 - prior_rate
            self._bad = bad_rate * prior_n
            self._trials = float(prior_n)
            self._seen = warmup

    def _bad_rate(self) -> float | None:
        if self._seen < self.warmup or self._trials <= 0:
            return None
        return self._bad / self._trials

    @property
    def baseline(self) -> float | None:
        """The baseline rate in the units of `value` (k/n)."""
        b = self._bad_rate()
        if b is None:
            return None
        return b if self.direction == "up" else 1.0 - b

    def _learn(self, bad: float, n: float) -> None:
        keep = 1.0 - self._a
        self._bad = self._bad * keep + bad
        self._trials = self._trials * keep + n
        self._seen += 1

    def update(self, ts: float, value: float, n: int | None = None) -> Transition | None:
        if n is None or n < self.min_n or not (0.0 <= value <= 1.0):
            return None
        up = self.direction == "up"
        bad = (value if up else 1.0 - value) * n
        b0 = self._bad_rate()
        if b0 is None:
            self._learn(bad, n)
            return None
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
            self._learn(bad, n)
        return out

    def to_state(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "kind": self.kind,
            "params": {
                "direction": self.direction,
                "threshold": self.threshold,
                "clear": self.clear,
                "min_n": self.min_n,
                "min_ratio": self.min_ratio,
                "min_abs_diff": self.min_abs_diff,
                "half_life": self.half_life,
                "warmup": self.warmup,
                "prior_rate": self.prior_rate,
                "prior_n": self.prior_n,
                "for_n": self.for_n,
                "clear_n": self.clear_n,
            },
            "bad": self._bad,
            "trials": self._trials,
            "seen": self._seen,
            **self._alarm_state(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        _check_version(state, cls.kind)
        det = cls(**state["params"])
        det._bad = float(state["bad"])
        det._trials = float(state["trials"])
        det._seen = int(state["seen"])
        det._load_alarm(state)
        return det
