"""Per-call mean test for positive quantities (latency per token, tokens, cost, length).

Each call's value x enters as y = log1p(x): logs turn the heavy right tails of latency,
tokens and cost into something near-normal (a lognormal becomes a normal, a Pareto an
exponential), and a relative change (+40%) becomes a shift of the mean (+0.34). The
aggregator hands over per-tick sufficient statistics (`TickStats`: count, sum and sum of
squares of y), so the detector sees calls, not window aggregates.

For each window W (5, 30, 120 minutes by default), with n calls, sum Y, expected sum E =
sum of n_minute * mu(minute) and expected variance V = sum of n_minute * sigma^2(minute)
from the seasonal per-call profile (`detectors.evidence`):

    z_W = (Y - E) / sqrt(phi_W * V)

i.e. the window mean against its expectation with standard error sqrt(phi sigma^2 / n);
phi_W is learned from clean history (bursts of near-identical requests, slow hours of the
provider and the profile's own error all widen it). A window fires when z_W passes
z(alpha_W) for its share of the false-alarm budget (module doc of `detectors.evidence`;
`direction="both"` splits it over two sides) and the mean shift is at least `min_effect`
in log units (0.15 = about 16%), so a 10% drift at huge volume does not fire.

Skew: at a few calls per window the sum of right-skewed logs is not normal; the test
moves z by the Cornish-Fisher shift of the critical value, using the third cumulant the
profile learns alongside the variance (K3 of the window sum = sum of n * kappa3), so a lone
slow call at 0.5 calls/min needs about 10 sigma, not 4.4.

Too few calls: a window holding fewer than `min_calls` (10) calls, batches counted once
(`daemon.layers.aggregator._Fresh`), is not tested. Its mean is owned by its largest call,
and per-call logs are not near-normal in the tail: a Pareto tail is exponential in log
space, so on the evaluation worlds one call 5 sigma above the mean came every few hundred
calls, and windows of 1-3 calls fired several times a week per series, Cornish-Fisher or
not. A shift is a sustained change of many calls; at low traffic the 30- and 120-minute
windows hold them.

At 10 calls/min and sigma = 0.45 (a typical spread of log latency) +40% gives z = 5.3 in
the 5-minute window; at 2 calls/min the 30-minute window reaches z = 5.8.

`unit_scale`: y = log1p(value * unit_scale) (the aggregator sends cost in micro-dollars,
`unit_scale=1e6` for `cost_per_request_usd`, so log1p is not linear at $0.002); the baseline
is reported in the value's own units. Fed without `TickStats`, each update's value is one
call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Self

from detectors.base import TickStats
from detectors.evidence import EvidenceBase
from detectors.ewma import DirectionParam, _check_direction, _check_int, _check_nonneg

LEARN_CLIP = 6.0


class LogMeanDetector(EvidenceBase):
    kind: ClassVar[str] = "logmean"

    def __init__(
        self,
        direction: DirectionParam = "up",
        budget: float = 0.25,
        windows_min: Sequence[int] = (5, 30, 120),
        min_effect: float = 0.15,
        min_sigma: float = 0.05,
        min_calls: int = 10,
        clear: float = 1.0,
        for_n: int = 2,
        clear_n: int = 8,
        warmup: int = 120,
        bucket_half_life: float = 120.0,
        half_life: float = 720.0,
        full_n: int = 30,
        learn_lag_min: int = 30,
        unit_scale: float = 1.0,
    ) -> None:
        _check_direction(direction)
        _check_nonneg("min_effect", min_effect)
        _check_nonneg("min_sigma", min_sigma)
        _check_int("min_calls", min_calls, 1)
        self.min_calls = min_calls
        if not (unit_scale > 0 and math.isfinite(unit_scale)):
            raise ValueError(f"unit_scale must be > 0, got {unit_scale!r}")
        self.unit_scale = float(unit_scale)
        self.direction: DirectionParam = direction
        self.sides = 2 if direction == "both" else 1
        self.min_effect = float(min_effect)
        self.min_sigma = float(min_sigma)
        self._var_floor = self.min_sigma * self.min_sigma
        self._sign = 1 if direction == "up" else -1
        self._init_evidence(
            windows_min, budget, clear, for_n, clear_n, warmup, bucket_half_life, half_life,
            full_n, learn_lag_min,
        )  # fmt: skip

    def _increment(
        self, value: float, n: int | None, tick: TickStats | None
    ) -> tuple[float, float, float, float] | None:
        if tick is not None:
            sums = (tick.log_sum, tick.log_sq, tick.log_cube)
            if tick.n == 0:
                return 0.0, 0.0, 0.0, 0.0  # no calls this tick: time still passes
            if tick.n < 0 or not all(math.isfinite(x) for x in sums):
                return None
            return float(tick.n), *sums
        if not (value >= 0.0 and math.isfinite(value)):
            return None
        y = math.log1p(value * self.unit_scale)
        return 1.0, y, y * y, y * y * y

    def _adjust(self, mean: float, var: float, k3: float) -> tuple[float, float, float]:
        return mean, var if var > self._var_floor else self._var_floor, k3

    def _clip_minute(
        self, n: float, x: float, x2: float, x3: float, e: float, v: float
    ) -> tuple[float, float, float]:
        """Shift the minute's calls by a common d so their mean lies within `LEARN_CLIP`
        standard errors of the expectation, and their power sums with them. Wide on
        purpose: at one call a minute a tighter clip truncates the per-call distribution,
        and the variance and skew learned from it come out too small."""
        lim = LEARN_CLIP * math.sqrt(v)
        xc = e + lim if x > e + lim else e - lim if x < e - lim else x
        d = (xc - x) / n
        if d == 0.0:
            return x, x2, x3
        return xc, x2 + 2.0 * d * x + n * d * d, x3 + 3.0 * d * x2 + 3.0 * d * d * x + n * d**3

    def _window_z(self, i: int, s: list[float]) -> tuple[float, int]:
        n, y, e, v, k3 = s
        if n < self.min_calls or v <= 0.0:
            return 0.0, 1
        d = y - e
        if abs(d) < self.min_effect * n:
            return 0.0, 1
        z = d / math.sqrt(self.phi(i) * v)
        sign = 1 if z >= 0.0 else -1
        if self.direction != "both":
            if sign != self._sign and -z * self._sign >= self._z[i] * 0.75:
                # A big move the other way (shorter answers make latency per token rise,
                # longer ones make it fall): not an alarm here, but not normal either.
                self._suspect = True
            sign = self._sign
        z *= sign
        if z <= 0.0:
            return 0.0, sign
        # Cornish-Fisher: a right-skewed sum (logs of Pareto-like values are exponential)
        # reaches z(alpha) more often than a normal one; move the statistic by the shift of
        # the critical value, (gamma / 6)(z_a^2 - 1), gamma = K3 / V^1.5 on the tested side.
        gamma = sign * k3 / (v * math.sqrt(v))
        if gamma > 0.0:
            za = self._z[i]
            z -= (gamma if gamma < 3.0 else 3.0) / 6.0 * (za * za - 1.0)
        return (z if z > 0.0 else 0.0), sign

    def _calm_effect(self, s: list[float]) -> bool:
        shift = (s[1] - s[2]) / s[0]
        if self.direction == "both":
            shift = abs(shift)
        else:
            shift *= self._sign
        return shift < 0.5 * self.min_effect

    def _baseline_value(self) -> float:
        """The expected per-call mean in the value's units (lognormal: exp(mu + s^2/2))."""
        return math.expm1(min(self._mean + 0.5 * self._var, 700.0)) / self.unit_scale

    @property
    def baseline(self) -> float | None:
        return self._baseline_value() if self._ready else None

    def to_state(self) -> dict[str, Any]:
        return self._evidence_state()

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        det = cls(**state["params"])
        det._load_evidence(state)
        return det
