"""Synthetic metric series for detector tests and the eval: seeded, seasonal, heavy-tailed.

Every series is what a detector sees at each 15-s tick: the daily shape peaks at 14:00 UTC
and bottoms at 02:00, weekends (Saturday, Sunday) sit lower, noise is Student-t scaled to
the requested relative standard deviation. Traffic (`n`) follows the same daily and weekly
shape. Faults are injected as multiplicative shifts of the level (or of the rate) over a
time range. The series start on Monday 2026-01-05 00:00 UTC.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

START = 1_767_571_200.0  # Monday 2026-01-05 00:00:00 UTC
TICK_S = 15.0
DAY_S = 86_400.0

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def ticks(days: float, tick_s: float = TICK_S, start: float = START) -> FloatArray:
    return start + tick_s * np.arange(int(days * DAY_S / tick_s), dtype=np.float64)


def daily_shape(ts: FloatArray) -> FloatArray:
    """In [-1, 1]: +1 at 14:00 UTC, -1 at 02:00 UTC."""
    hours = (ts % DAY_S) / 3600.0
    return np.cos(2.0 * np.pi * (hours - 14.0) / 24.0)


def weekend(ts: FloatArray) -> FloatArray:
    """1.0 on Saturday and Sunday (UTC), else 0.0. Day 0 of the epoch was a Thursday."""
    dow = ((ts // DAY_S).astype(np.int64) + 3) % 7  # 0 = Monday
    return (dow >= 5).astype(np.float64)


def t_noise(rng: np.random.Generator, size: int, df: float) -> FloatArray:
    """Student-t noise scaled to unit standard deviation."""
    noise: FloatArray = rng.standard_t(df, size) / np.sqrt(df / (df - 2.0))
    return noise


@dataclass(frozen=True)
class Shift:
    """Multiply the level (or the rate) by `factor` from `start` for `duration` seconds."""

    start: float
    duration: float
    factor: float


@dataclass(frozen=True)
class Series:
    ts: FloatArray
    value: FloatArray
    n: IntArray | None = None

    def __iter__(self) -> Iterator[tuple[float, float, int | None]]:
        ns: list[int | None] = [None] * len(self.ts) if self.n is None else self.n.tolist()
        return zip(self.ts.tolist(), self.value.tolist(), ns, strict=True)


@dataclass(frozen=True)
class LevelSpec:
    """A level metric (score mean, output length, tokens, latency)."""

    base: float = 1.0
    daily_amp: float = 0.05
    weekend_dip: float = 0.03
    noise_rel: float = 0.04
    df: float = 4.0
    n_peak: int = 120
    shifts: tuple[Shift, ...] = field(default_factory=tuple)
    # Noise correlated over this many ticks (a moving average, rescaled to the same sd): the
    # aggregator's 5-minute windows every 15 s share 95% of their calls, so a window
    # statistic such as p95 wanders rather than jumping independently at every tick (20).
    corr_ticks: int = 1


@dataclass(frozen=True)
class RateSpec:
    """A k-of-n metric: `p` is the "value" rate (e.g. refusals 0.03, availability 0.995)."""

    p: float = 0.03
    daily_amp: float = 0.1  # relative swing of the rate over the day
    jitter: float = 0.1  # lognormal extra-binomial variation of the bad rate per sample
    n_peak: int = 400
    weekend_factor: float = 1.0  # the bad rate is multiplied by this on Saturday and Sunday
    bad_is_low: bool = False  # availability/compliance: shifts multiply 1 - p
    shifts: tuple[Shift, ...] = field(default_factory=tuple)


def traffic(rng: np.random.Generator, ts: FloatArray, n_peak: int) -> IntArray:
    """Calls (or scores) in the window: 30% of peak at night, 75% of weekday on weekends."""
    shape = 0.65 + 0.35 * daily_shape(ts)
    shape *= 1.0 - 0.25 * weekend(ts)
    return rng.poisson(n_peak * shape).astype(np.int64)


def _factor(ts: FloatArray, shifts: tuple[Shift, ...]) -> FloatArray:
    f = np.ones_like(ts)
    for s in shifts:
        f[(ts >= s.start) & (ts < s.start + s.duration)] *= s.factor
    return f


def level_series(rng: np.random.Generator, ts: FloatArray, spec: LevelSpec) -> Series:
    level = spec.base * (1.0 + spec.daily_amp * daily_shape(ts))
    level *= 1.0 - spec.weekend_dip * weekend(ts)
    if spec.corr_ticks > 1:
        w = spec.corr_ticks
        raw = t_noise(rng, len(ts) + w - 1, spec.df)
        noise = np.convolve(raw, np.full(w, 1.0 / np.sqrt(w)), mode="valid")
    else:
        noise = t_noise(rng, len(ts), spec.df)
    value = level * (1.0 + spec.noise_rel * noise)
    value *= _factor(ts, spec.shifts)
    n = traffic(rng, ts, spec.n_peak)
    return Series(ts, value, n)


def rate_series(rng: np.random.Generator, ts: FloatArray, spec: RateSpec) -> Series:
    bad = (1.0 - spec.p) if spec.bad_is_low else spec.p
    bad_rate = bad * (1.0 + spec.daily_amp * daily_shape(ts))
    if spec.weekend_factor != 1.0:
        bad_rate *= 1.0 + (spec.weekend_factor - 1.0) * weekend(ts)
    bad_rate *= np.exp(spec.jitter * rng.standard_normal(len(ts)))
    bad_rate = np.clip(bad_rate * _factor(ts, spec.shifts), 0.0, 1.0)
    n = np.maximum(traffic(rng, ts, spec.n_peak), 1)
    k = rng.binomial(n, bad_rate)
    frac = k / n
    value = 1.0 - frac if spec.bad_is_low else frac
    return Series(ts, value.astype(np.float64), n)


def at(day: int, hour: float, start: float = START) -> float:
    """Timestamp of `hour` (UTC) on day `day` of the series (day 0 = Monday)."""
    return start + day * DAY_S + hour * 3600.0
