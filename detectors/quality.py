"""Fused quality verdict: one CUSUM over every quality score of a feature.

A feature's judge scores, golden-run scores and user feedback each say a little about one
thing, the quality of its answers. Tested one at a time, each must reach the alarm level on
its own evidence; fused, a decline that lowers all three adds their evidence up. This is the
CUSUM of the log-likelihood ratio of "quality is down by `shift`" against "quality is at its
baseline", summed over every observation of every score:

    per source j (one score name): baseline mean m_j and per-observation variance v_j (its
        bad side's, see below), learned
        online (time-decayed weighted Welford, half-life `half_life_s`, but never less than
        `memory_obs` observations' weight, so rare golden runs keep ~100 runs of memory);
    design effect theta_j = shift * |m_j| / sqrt(v_j)   (the 10% decline in sigmas of one
        observation: its information);
    per observation x:  z = (m_j - x) / sqrt(v_j)       (sign flipped for lower-is-better),
                        l = theta_j * z - theta_j^2 / 2 (the Gaussian log-likelihood ratio);
    S = max(0, S + sum of l over the tick's observations); fire at S >= h.

The weight of each observation is theta_j / sigma_j = shift * |m_j| / v_j: a golden-run mean
(small variance) counts for more than one judge score, a thumbs-up (variance p(1-p), the
Bernoulli rate's) for less. Binary feedback needs no special case: its learned mean is the
thumbs-up rate and its learned variance p(1-p), so l is the normal approximation of the
Bernoulli CUSUM's ratio. What one observation is comes from the aggregator: a judge score is
one; a golden run (the scores of one batch) is one, its mean (`daemon/layers/aggregator.py`).

Threshold from a false-alarm budget (docs/detectors.md, "The quality default"): for a CUSUM of exact
log-likelihood ratios, the mean time to a false alarm is at least e^h increments (Lorden
1971); an increment happens at most once per tick, so h = ln(budget_s / tick_s) keeps the
false-alarm rate under one per `budget_s` of clean traffic. Defaults: 30 days of 15-s ticks,
h = ln(172,800) = 12.06. The design shift is also the minimum effect: a drift below shift/2
has negative expected increments and never accumulates, however much traffic there is.

Robustness (one bad score or a short burst never fires):
- z is clipped at [-`z_clip`, max(`z_clip`, theta + 1)]: one wild value counts as a clipped
  one, but a precise observation (a golden run) can still show its full expected z;
- one observation adds at most `max_obs` (default 0.6 h): one catastrophic golden run never
  fires alone from S = 0, two bad golden runs in a row do (a small feature's decline is
  carried by its golden suite);
- an evidence speed limit per source (a token bucket): a source adds at most
  `burst_obs` (3) maximally bad observations' worth at once (at most `evidence_burst`, 0.6 h)
  and `evidence_per_min` (h/4) per minute after that: ten judge scores of 0.1 arriving within
  a minute add at most ~0.55 h, so the CUSUM is left with S <= 0.55 h and the chance that
  clean scores carry it on to h is below e^-(0.45 h) = 0.4% (Ville); one golden run can still
  add 0.6 h, and a sustained decline at high traffic still fires within minutes.
- the spread is the bad side's (the semi-variance doubled): judge scores piled near 1.0 have
  a longer low tail than a normal with their variance, and a low value is judged against it.

The baselines learn values clipped at 3 sigma and learn nothing while S >= h/2 or firing, so
a developing decline is not absorbed. While firing S is capped at 1.5 h, so the verdict
clears (S back at 0) within a bounded time of the quality recovering. A source contributes
once it has `min_obs` observations' weight; until then it only learns.

Scalar `update(ts, value, n)` (a config rule on a plain metric) treats each sample as one
observation of one unnamed source, with `direction` saying which side is bad.

State: 7 numbers per source, at most `max_sources` sources (further names are ignored and
counted), plus the CUSUM: bounded, JSON round trip.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, ClassVar, Literal, Self

from detectors.base import Direction, ScoreObs, TickStats, Transition
from detectors.ewma import _check_int, _check_version

STATE_VERSION = 1
QualityDirection = Literal["up", "down"]
DEFAULT_BUDGET_S = 30 * 86_400.0
DEFAULT_TICK_S = 15.0


def budget_threshold(budget_s: float = DEFAULT_BUDGET_S, tick_s: float = DEFAULT_TICK_S) -> float:
    """h such that a CUSUM of log-likelihood ratios fires falsely at most once per
    `budget_s` of clean traffic with one increment per `tick_s` (Lorden: ARL0 >= e^h)."""
    return math.log(budget_s / tick_s)


class _Source:
    """Decayed weighted mean and spreads of one score's observations, and its evidence
    bucket."""

    __slots__ = ("hi", "lo", "m", "t", "tok", "v", "w")

    def __init__(self, ts: float, tokens: float) -> None:
        self.w = 0.0  # decayed weight of learned observations
        self.m = 0.0
        self.v = 0.0  # variance
        self.lo = 0.0  # 2 E[d^2; d < 0]: the low side's spread (= v when symmetric)
        self.hi = 0.0  # 2 E[d^2; d > 0]
        self.t = ts  # time of the last decay and bucket refill
        self.tok = tokens  # evidence this source may still add now

    def to_list(self) -> list[float]:
        return [self.w, self.m, self.v, self.lo, self.hi, self.t, self.tok]

    @classmethod
    def from_list(cls, raw: list[float]) -> _Source:
        src = cls(0.0, 0.0)
        src.w, src.m, src.v, src.lo, src.hi, src.t, src.tok = (float(x) for x in raw)
        return src


class QualityFusion:
    kind: ClassVar[str] = "fused"

    def __init__(
        self,
        direction: QualityDirection = "down",
        shift: float = 0.1,
        h: float | None = None,
        budget_s: float = DEFAULT_BUDGET_S,
        tick_s: float = DEFAULT_TICK_S,
        half_life_s: float = 6 * 3600.0,
        min_obs: int = 30,
        z_clip: float = 2.0,
        max_obs: float | None = None,
        evidence_burst: float | None = None,
        evidence_per_min: float | None = None,
        burst_obs: float = 3.0,
        memory_obs: float = 100.0,
        max_sources: int = 16,
        min_n: int = 0,
    ) -> None:
        if direction not in ("up", "down"):
            raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
        if not (0.0 < shift < 1.0):
            raise ValueError(f"shift must be in (0, 1), got {shift!r}")
        if not (budget_s > 0 and math.isfinite(budget_s)):
            raise ValueError(f"budget_s must be > 0, got {budget_s!r}")
        if not (tick_s > 0 and tick_s < budget_s):
            raise ValueError(f"tick_s must be in (0, budget_s), got {tick_s!r}")
        if h is None:
            h = budget_threshold(budget_s, tick_s)
        if not (h > 0 and math.isfinite(h)):
            raise ValueError(f"h must be > 0, got {h!r}")
        if not (half_life_s > 0 and math.isfinite(half_life_s)):
            raise ValueError(f"half_life_s must be > 0, got {half_life_s!r}")
        if not (z_clip > 0 and math.isfinite(z_clip)):
            raise ValueError(f"z_clip must be > 0, got {z_clip!r}")
        if max_obs is None:
            max_obs = 0.6 * h
        if not (0 < max_obs < h):
            raise ValueError(f"max_obs must be in (0, h), got {max_obs!r}")
        if evidence_burst is None:
            evidence_burst = 0.6 * h
        if evidence_per_min is None:
            evidence_per_min = h / 4.0
        if not (0 < evidence_burst < h):
            raise ValueError(f"evidence_burst must be in (0, h), got {evidence_burst!r}")
        if not (burst_obs >= 1 and math.isfinite(burst_obs)):
            raise ValueError(f"burst_obs must be >= 1, got {burst_obs!r}")
        if not (evidence_per_min > 0 and math.isfinite(evidence_per_min)):
            raise ValueError(f"evidence_per_min must be > 0, got {evidence_per_min!r}")
        if not (memory_obs >= 2 and math.isfinite(memory_obs)):
            raise ValueError(f"memory_obs must be >= 2, got {memory_obs!r}")
        _check_int("min_obs", min_obs, 2)
        if min_obs > memory_obs:
            raise ValueError(f"min_obs must be <= memory_obs, got {min_obs!r}")
        _check_int("max_sources", max_sources, 1)
        _check_int("min_n", min_n, 0)
        self.direction: QualityDirection = direction
        self.shift = float(shift)
        self.h = float(h)
        self.budget_s = float(budget_s)
        self.tick_s = float(tick_s)
        self.half_life_s = float(half_life_s)
        self.min_obs = min_obs
        self.z_clip = float(z_clip)
        self.max_obs = float(max_obs)
        self.evidence_burst = float(evidence_burst)
        self.evidence_per_min = float(evidence_per_min)
        self.burst_obs = float(burst_obs)
        self.memory_obs = float(memory_obs)
        self.max_sources = max_sources
        self.min_n = min_n
        self._sources: dict[str, _Source] = {}
        self._s = 0.0
        self._zero_at: float | None = None  # the last update that left S at 0
        self._num = 0.0  # sum theta*z over the current excursion (S > 0)
        self._den = 0.0  # sum theta^2 over the current excursion
        self._obs = 0.0  # observations that counted over the current excursion
        self._last: float | None = None
        self._firing = False
        self.ignored_sources = 0  # observations of names past max_sources

    # ---- what the pipeline reads ------------------------------------------------------------

    @property
    def firing(self) -> bool:
        return self._firing

    @property
    def statistic(self) -> float:
        return self._s

    @property
    def baseline(self) -> None:
        """No baseline in the units of the `quality` sample (an observation count); the
        verdict's value is relative quality and its baseline 1.0 (see `relative_quality`)."""
        return None

    def source_baseline(self, name: str) -> float | None:
        """The learned per-observation mean of one score (for triage evidence)."""
        src = self._sources.get(name)
        if src is None or src.w < self.min_obs:
            return None
        return src.m

    @property
    def excursion_start(self) -> float | None:
        """When the current excursion of S began (the last update that left it at 0): for a
        step decline, the maximum-likelihood change time given the alarm (Page's estimate).
        None while S is 0 or before any reset was seen."""
        return self._zero_at if self._s > 0.0 else None

    def source_spread(self, name: str) -> tuple[float, float] | None:
        """(mean, bad-side standard deviation) of one score's observations, as the verdict
        judges them; None until the source counts (for the change-point search's history)."""
        src = self._sources.get(name)
        if src is None or src.w < self.min_obs or src.lo <= 0.0:
            return None
        return src.m, math.sqrt(src.lo)

    @property
    def excursion_obs(self) -> int:
        """How many score observations `relative_quality` rests on: the evidence a page quotes
        beside it ("over 412 scores"), not the one or two scores of the latest tick."""
        return round(self._obs)

    @property
    def relative_quality(self) -> float:
        """Quality relative to baseline over the current excursion: 1 - the maximum-likelihood
        decline (0.9 = 10% down), information-weighted across sources; 1.0 when S = 0."""
        if self._den <= 0.0:
            return 1.0
        return 1.0 - self.shift * self._num / self._den

    # ---- updates -----------------------------------------------------------------------------

    def update(
        self, ts: float, value: float, n: int | None = None, tick: TickStats | None = None
    ) -> Transition | None:
        # `tick` is for the per-call evidence detectors; scores arrive through `observe`.
        if (n is not None and n < self.min_n) or not math.isfinite(value):
            return None
        return self.observe(ts, (ScoreObs("", (value,), self.direction == "down"),))

    def observe(self, ts: float, parts: Iterable[ScoreObs]) -> Transition | None:
        """One tick's observations of every score; the transition, if the verdict changes."""
        self._last = ts
        learning = not self._firing and self._s < 0.5 * self.h
        incr = 0.0
        num = 0.0
        den = 0.0
        obs = 0.0
        seen = False
        for part in parts:
            values = [x for x in part.values if math.isfinite(x)]
            if not values:
                continue
            src = self._sources.get(part.name)
            if src is None:
                if len(self._sources) >= self.max_sources:
                    self.ignored_sources += len(values)
                    continue
                src = self._sources[part.name] = _Source(ts, self.evidence_burst)
            elapsed = max(ts - src.t, 0.0)
            decay = math.pow(0.5, elapsed / self.half_life_s)
            # Forget by time, but never below `memory_obs` observations' weight: a golden
            # run every 30 minutes would otherwise be judged against ~17 runs.
            src.w = max(src.w * decay, min(src.w, self.memory_obs))
            tok = src.tok + self.evidence_per_min * elapsed / 60.0
            src.t = ts
            # The bad side's spread: judge scores piled near 1.0 have a longer low tail.
            bad_v = src.lo if part.higher_is_better else src.hi
            if src.w >= self.min_obs and bad_v > 0.0:
                sd = math.sqrt(bad_v)
                theta = self.shift * abs(src.m) / sd
                if theta > 0.0:
                    seen = True
                    sign = 1.0 if part.higher_is_better else -1.0
                    hi = max(self.z_clip, theta + 1.0)
                    lo = -self.z_clip
                    half = 0.5 * theta * theta
                    cap = self.max_obs
                    # The bucket holds at most `burst_obs` maximally bad observations' worth
                    # (a judge score's is ~1.2, a golden run's is capped at max_obs).
                    top = theta * hi - half
                    room = min(self.evidence_burst, self.burst_obs * min(top, cap))
                    src.tok = tok = tok if tok < room else room
                    llr = 0.0
                    zsum = 0.0
                    for x in values:
                        z = sign * (src.m - x) / sd
                        # The size estimate reads the unclipped z (bounded: a display value).
                        zsum += z if -10.0 < z < 10.0 else math.copysign(10.0, z)
                        z = hi if z > hi else lo if z < lo else z
                        step = theta * z - half
                        llr += cap if step > cap else step
                    k = float(len(values))
                    if llr > tok:
                        # Evidence speed limit: a burst of bad scores counts as a few.
                        f = tok / llr
                        llr, zsum, k = tok, zsum * f, k * f
                    if llr > 0.0:
                        src.tok -= llr
                    incr += llr
                    num += theta * zsum
                    den += theta * theta * k
                    obs += len(values)
                else:
                    src.tok = min(tok, self.evidence_burst)
            else:
                src.tok = min(tok, self.evidence_burst)
            if learning:
                self._learn(src, values)
        if not seen:
            return None
        s = self._s + incr
        if s <= 0.0:
            self._s = self._num = self._den = self._obs = 0.0
            self._zero_at = ts
        else:
            self._s = s
            self._num += num
            self._den += den
            self._obs += obs
        if self._firing:
            if self._s > 1.5 * self.h:
                self._s = 1.5 * self.h
            if self._s <= 0.0:
                self._firing = False
                return Transition(ts, "cleared", 1.0, 1.0, 0.0, Direction.DOWN)
            return None
        if self._s >= self.h:
            self._firing = True
            return Transition(ts, "firing", self.relative_quality, 1.0, self._s, Direction.DOWN)
        return None

    @staticmethod
    def _learn(src: _Source, values: list[float]) -> None:
        """Weighted Welford step per value, clipped at 3 sigma once a spread is known."""
        for x in values:
            if src.w > 2.0 and src.v > 0.0:
                lim = 3.0 * math.sqrt(src.v)
                x = src.m + lim if x > src.m + lim else src.m - lim if x < src.m - lim else x
            src.w += 1.0
            a = 1.0 / src.w
            d = x - src.m
            src.m += a * d
            b = 1.0 - a
            dd = a * d * d
            src.v = b * (src.v + dd)
            if d < 0.0:
                src.lo = b * (src.lo + 2.0 * dd)
                src.hi = b * src.hi
            else:
                src.hi = b * (src.hi + 2.0 * dd)
                src.lo = b * src.lo

    # ---- persistence -----------------------------------------------------------------------

    def _params(self) -> dict[str, Any]:
        return {
            "direction": self.direction,
            "shift": self.shift,
            "h": self.h,
            "budget_s": self.budget_s,
            "tick_s": self.tick_s,
            "half_life_s": self.half_life_s,
            "min_obs": self.min_obs,
            "z_clip": self.z_clip,
            "max_obs": self.max_obs,
            "evidence_burst": self.evidence_burst,
            "evidence_per_min": self.evidence_per_min,
            "burst_obs": self.burst_obs,
            "memory_obs": self.memory_obs,
            "max_sources": self.max_sources,
            "min_n": self.min_n,
        }

    def to_state(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "kind": self.kind,
            "params": self._params(),
            "sources": {name: src.to_list() for name, src in self._sources.items()},
            "s": self._s,
            "num": self._num,
            "den": self._den,
            "obs": self._obs,
            "last": self._last,
            "firing": self._firing,
            "ignored": self.ignored_sources,
            "zero_at": self._zero_at,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        _check_version(state, cls.kind, STATE_VERSION)
        det = cls(**state["params"])
        det._sources = {str(k): _Source.from_list(v) for k, v in state["sources"].items()}
        det._s = float(state["s"])
        det._num = float(state["num"])
        det._den = float(state["den"])
        det._obs = float(state.get("obs", 0.0))  # optional: older states have none
        last = state["last"]
        det._last = None if last is None else float(last)
        det._firing = bool(state["firing"])
        det.ignored_sources = int(state["ignored"])
        zero_at = state.get("zero_at")  # optional: older states have none
        det._zero_at = None if zero_at is None else float(zero_at)
        return det
