"""EWMA control chart: the general-purpose baseline detector.

An exponentially weighted mean and variance (the incremental form of Finch 2009, as in
river's `stats.EWMean`/`stats.EWVar`) give a baseline and a spread; a sample is anomalous when
its z-score passes `threshold`. Four things keep it quiet on normal data:

- warm-up: the first `warmup` samples only learn (the first ones use a running mean, so the
  estimate is unbiased from the start instead of creeping up from zero);
- `for_n`: that many consecutive anomalous samples (same side) before firing, so one spike
  never fires;
- `min_rel_sigma` / `min_sigma`: a floor on sigma, so a perfectly flat series does not fire on
  a tiny wiggle;
- protection: what the baseline learns is winsorized at `threshold` sigmas, and nothing is
  learned while firing, so an incident does not teach the detector that it is normal.

Clearing has hysteresis: the deviation must fall below `clear` sigmas for `clear_n`
consecutive samples. Samples with `n < min_n` are ignored (too few observations behind them).

The alarm state machine (`_Alarm`) and the parameter checks here are shared with the other
z-score detectors of this package.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, ClassVar, Literal, Self

from detectors.base import Direction, TickStats, Transition

DirectionParam = Literal["up", "down", "both"]
STATE_VERSION = 1
_TINY = 1e-12


def _check_version(state: dict[str, Any], kind: str, version: int = STATE_VERSION) -> None:
    """Refuse a snapshot this code cannot read (e.g. written by a newer release)."""
    v = state.get("v")
    if v != version:
        raise ValueError(
            f"cannot load {kind!r} detector state version {v!r} (this build reads v{version}); "
            "start the series fresh"
        )


def _check_direction(direction: str, allowed: tuple[str, ...] = ("up", "down", "both")) -> None:
    if direction not in allowed:
        raise ValueError(f"direction must be one of {allowed}, got {direction!r}")


def _alpha(half_life: float | None, alpha: float | None, name: str = "half_life") -> float:
    """Smoothing factor from either `alpha` or a half-life in samples (alpha wins)."""
    if alpha is not None:
        if not (0.0 < alpha <= 1.0):
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
        return float(alpha)
    if half_life is None or not (half_life > 0 and math.isfinite(half_life)):
        raise ValueError(f"{name} must be a positive number of samples, got {half_life!r}")
    return 1.0 - math.pow(0.5, 1.0 / half_life)


def _check_thresholds(threshold: float, clear: float) -> None:
    if not (threshold > 0 and math.isfinite(threshold)):
        raise ValueError(f"threshold must be > 0, got {threshold!r}")
    if not (0 <= clear <= threshold):
        raise ValueError(f"clear must be in [0, threshold], got {clear!r}")


def _check_int(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_nonneg(name: str, value: float) -> None:
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


HUBER_Z = 2.0


def _winsorize(value: float, mean: float, sd: float, threshold: float) -> tuple[float, float]:
    """What a protected baseline learns from `value`: for the mean, `value` clipped at
    `HUBER_Z` sigmas (a Huber-style location step: unbiased for symmetric noise, and an
    outlier moves the mean by at most 2 sigma x alpha); for the variance, `value` clipped at
    `threshold` sigmas (heavy tails still widen the spread, one wild point does not)."""
    lim = HUBER_Z * sd
    xm = mean + lim if value > mean + lim else mean - lim if value < mean - lim else value
    lim = threshold * sd
    xv = mean + lim if value > mean + lim else mean - lim if value < mean - lim else value
    return xm, xv


_PARAM_NAMES: dict[type, tuple[str, ...]] = {}


def _init_params(cls: type) -> tuple[str, ...]:
    names = _PARAM_NAMES.get(cls)
    if names is None:
        names = _PARAM_NAMES[cls] = tuple(inspect.signature(cls).parameters)
    return names


class _Alarm:
    """Fire after `for_n` consecutive anomalous samples on one side; clear after `clear_n`
    consecutive calm ones. Subclasses decide what anomalous and calm mean."""

    for_n: int
    clear_n: int
    _firing: bool
    _pending: int  # consecutive anomalous samples while not firing
    _pending_sign: int
    _fire_sign: int  # +1 firing on the up side, -1 on the down side
    _calm: int  # consecutive calm samples while firing

    def _init_alarm(self, for_n: int, clear_n: int) -> None:
        _check_int("for_n", for_n, 1)
        _check_int("clear_n", clear_n, 1)
        self.for_n = for_n
        self.clear_n = clear_n
        self._firing = False
        self._pending = 0
        self._pending_sign = 0
        self._fire_sign = 0
        self._calm = 0

    @property
    def firing(self) -> bool:
        return self._firing

    def _judge(
        self,
        ts: float,
        value: float,
        baseline: float | None,
        score: float,
        sign: int,
        anomalous: bool,
        calm: bool,
    ) -> Transition | None:
        """`anomalous`: this sample counts toward firing on side `sign` (+1 up, -1 down).
        `calm`: while firing, this sample counts toward clearing."""
        if not self._firing:
            if not anomalous:
                self._pending = 0
                return None
            if self._pending and sign != self._pending_sign:
                self._pending = 0
            self._pending += 1
            self._pending_sign = sign
            if self._pending < self.for_n:
                return None
            self._firing = True
            self._pending = 0
            self._calm = 0
            self._fire_sign = sign
            direction = Direction.UP if sign > 0 else Direction.DOWN
            return Transition(ts, "firing", value, baseline, round(score, 6), direction)
        if not calm:
            self._calm = 0
            return None
        self._calm += 1
        if self._calm < self.clear_n:
            return None
        self._firing = False
        self._calm = 0
        direction = Direction.UP if self._fire_sign > 0 else Direction.DOWN
        return Transition(ts, "cleared", value, baseline, round(score, 6), direction)

    def _params(self) -> dict[str, Any]:
        """The constructor's arguments, read back from the attributes of the same names
        (every subclass keeps them so), so a snapshot's `params` cannot drift from the
        signature as parameters are added."""
        return {name: getattr(self, name) for name in _init_params(type(self))}

    def _alarm_state(self) -> dict[str, Any]:
        return {
            "firing": self._firing,
            "pending": self._pending,
            "pending_sign": self._pending_sign,
            "fire_sign": self._fire_sign,
            "calm": self._calm,
        }

    def _load_alarm(self, state: dict[str, Any]) -> None:
        self._firing = bool(state["firing"])
        self._pending = int(state["pending"])
        self._pending_sign = int(state["pending_sign"])
        self._fire_sign = int(state["fire_sign"])
        self._calm = int(state["calm"])


class EwmaDetector(_Alarm):
    kind: ClassVar[str] = "ewma"

    def __init__(
        self,
        threshold: float = 4.0,
        clear: float = 2.0,
        direction: DirectionParam = "both",
        for_n: int = 3,
        clear_n: int = 3,
        half_life: float | None = 240.0,
        alpha: float | None = None,
        warmup: int = 60,
        min_n: int = 0,
        min_rel_sigma: float = 0.02,
        min_sigma: float = 0.0,
    ) -> None:
        _check_thresholds(threshold, clear)
        _check_direction(direction)
        _check_int("warmup", warmup, 2)
        _check_int("min_n", min_n, 0)
        _check_nonneg("min_rel_sigma", min_rel_sigma)
        _check_nonneg("min_sigma", min_sigma)
        self._a = _alpha(half_life, alpha)
        self._init_alarm(for_n, clear_n)
        self.threshold = float(threshold)
        self.clear = float(clear)
        self.direction: DirectionParam = direction
        self.half_life = None if half_life is None else float(half_life)
        self.alpha = None if alpha is None else float(alpha)
        self.warmup = warmup
        self.min_n = min_n
        self.min_rel_sigma = float(min_rel_sigma)
        self.min_sigma = float(min_sigma)
        self._count = 0
        self._mean = 0.0
        self._var = 0.0

    @property
    def baseline(self) -> float | None:
        return self._mean if self._count >= self.warmup else None

    def _learn(self, x: float, xv: float) -> None:
        """EW mean of `x` and EW variance of `xv` (see `_winsorize`)."""
        self._count += 1
        a = self._a
        if self._count * a < 1.0:  # running mean until 1/count drops below alpha
            a = 1.0 / self._count
        m = self._mean
        dv = xv - m
        self._mean = m + a * (x - m)
        self._var = (1.0 - a) * (self._var + a * dv * dv)

    def update(
        self, ts: float, value: float, n: int | None = None, tick: TickStats | None = None
    ) -> Transition | None:
        if (n is not None and n < self.min_n) or not math.isfinite(value):
            return None
        if self._count < self.warmup:
            self._learn(value, value)
            return None
        mean = self._mean
        sd = max(math.sqrt(self._var), self.min_rel_sigma * abs(mean), self.min_sigma, _TINY)
        z = (value - mean) / sd
        d = self.direction
        sign = 1 if z >= 0 else -1
        dev = z if d == "up" else -z if d == "down" else abs(z)
        thr = self.threshold
        calm = z * self._fire_sign < self.clear
        out = self._judge(ts, value, mean, abs(z), sign, dev >= thr, calm)
        if not self._firing and not self._pending:
            self._learn(*_winsorize(value, mean, sd, thr))
        return out

    def to_state(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "kind": self.kind,
            "params": self._params(),
            "count": self._count,
            "mean": self._mean,
            "var": self._var,
            **self._alarm_state(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        _check_version(state, cls.kind)
        det = cls(**state["params"])
        det._count = int(state["count"])
        det._mean = float(state["mean"])
        det._var = float(state["var"])
        det._load_alarm(state)
        return det
