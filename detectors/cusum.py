"""CUSUM: sustained shifts of quality scores.

Page's one-sided CUSUM on the relative deviation from a slowly learned baseline:

    d = (baseline - value) / |baseline|        (direction "down"; sign flipped for "up")
    S = max(0, S + min(d, max_step) - k)

fires when S >= h. With the defaults (k = 0.05, h = 4, 15-s ticks) a sustained 10% drop adds
about 0.05 per tick and fires in ~80 ticks (20 minutes), a 20% drop in ~7 minutes, while
noise of 3-5% relative sd around the baseline drifts S back to 0 (each tick subtracts the
slack, and a random walk with drift -k and sd s crosses h about once per exp(2 k h / s^2)
ticks: exp(160) at s = 5%). `max_step` caps one sample's contribution, so a burst of bad
scores (or one terrible window) cannot fire on its own: 8 ticks (2 minutes) at -50% add at
most 8 x 0.45 = 3.6 < h.

The baseline is seasonal by default (the hour-of-week profile of `SeasonalDetector`, with a
long `half_life` for its global level) so a normal daily cycle in scores is not read as a
shift. It learns values winsorized to baseline x (1 +/- 2k) and is frozen while S is past
h/2 or the detector is firing, so a developing drop is not absorbed into it.

It clears once the value has been back within the slack (d < k) for `clear_n` consecutive
samples; S then restarts at 0. Samples with `n < min_n` (too few scores in the window) are
ignored.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal, Self

from detectors.base import TickStats, Transition
from detectors.ewma import (
    STATE_VERSION,
    _Alarm,
    _alpha,
    _check_direction,
    _check_int,
    _check_version,
)
from detectors.seasonal import _Profile

CusumDirection = Literal["up", "down"]


class CusumDetector(_Alarm):
    kind: ClassVar[str] = "cusum"

    def __init__(
        self,
        direction: CusumDirection = "down",
        k: float = 0.05,
        h: float = 4.0,
        max_step: float = 0.5,
        half_life: float = 2880.0,
        bucket_half_life: float = 480.0,
        full_n: int = 120,
        seasonal: bool = True,
        warmup: int = 120,
        min_n: int = 30,
        clear_n: int = 20,
    ) -> None:
        _check_direction(direction, ("up", "down"))
        if not (k >= 0 and math.isfinite(k)):
            raise ValueError(f"k must be a finite number >= 0, got {k!r}")
        if not (h > 0 and math.isfinite(h)):
            raise ValueError(f"h must be > 0, got {h!r}")
        if not (max_step > k and math.isfinite(max_step)):
            raise ValueError(f"max_step must be > k, got {max_step!r}")
        if not isinstance(seasonal, bool):
            raise ValueError(f"seasonal must be a bool, got {seasonal!r}")
        _check_int("full_n", full_n, 1)
        _check_int("warmup", warmup, 2)
        _check_int("min_n", min_n, 0)
        global_a = _alpha(half_life, None)
        bucket_a = _alpha(bucket_half_life, None, "bucket_half_life")
        self._init_alarm(1, clear_n)
        self.direction: CusumDirection = direction
        self.k = float(k)
        self.h = float(h)
        self.max_step = float(max_step)
        self.half_life = float(half_life)
        self.bucket_half_life = float(bucket_half_life)
        self.full_n = full_n
        self.seasonal = seasonal
        self.warmup = warmup
        self.min_n = min_n
        # Without `seasonal` the profile's buckets stay empty and only its global level is used.
        self._profile = _Profile(bucket_a, global_a, full_n, smooth=True)
        self._s = 0.0
        self._baseline: float | None = None

    @property
    def baseline(self) -> float | None:
        return self._baseline

    @property
    def statistic(self) -> float:
        return self._s

    def _learn(self, ts: float, x: float) -> None:
        prof = self._profile
        if self.seasonal:
            prof.learn(ts, x)
            return
        c = prof.gc = prof.gc + 1
        a = prof.global_a
        if c * a < 1.0:
            a = 1.0 / c
        prof.gm += a * (x - prof.gm)

    def update(
        self, ts: float, value: float, n: int | None = None, tick: TickStats | None = None
    ) -> Transition | None:
        if (n is not None and n < self.min_n) or not math.isfinite(value):
            return None
        prof = self._profile
        if prof.gc < self.warmup:
            self._learn(ts, value)
            return None
        base = prof.expect(ts)[0] if self.seasonal else prof.gm
        self._baseline = base
        scale = abs(base) or 1.0
        d = (base - value) / scale
        if self.direction == "up":
            d = -d
        k = self.k
        s = self._s + (d if d < self.max_step else self.max_step) - k
        s = self._s = s if s > 0.0 else 0.0
        sign = -1 if self.direction == "down" else 1
        out = self._judge(ts, value, base, s, sign, s >= self.h, d < k)
        if out is not None and out.state == "cleared":
            self._s = 0.0
        if not self._firing and s < 0.5 * self.h:
            lim = 2.0 * k * scale
            self._learn(ts, base + lim if value > base + lim else max(value, base - lim))
        return out

    def to_state(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "kind": self.kind,
            "params": self._params(),
            "profile": self._profile.to_state(),
            "s": self._s,
            "baseline": self._baseline,
            **self._alarm_state(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        _check_version(state, cls.kind)
        det = cls(**state["params"])
        det._profile.load(state["profile"])
        det._s = float(state["s"])
        b = state["baseline"]
        det._baseline = None if b is None else float(b)
        det._load_alarm(state)
        return det
