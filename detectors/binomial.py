"""Exact-tail rate detector for k-of-n metrics that lets evidence add up over time.

Where `RateDetector` asks whether one 5-minute window is 4 sigmas off, this one asks, for
each of several windows (5, 30 and 120 minutes by default) made of the calls themselves
(per-tick increments, each call counted once): given N calls in the window and the seasonal
expected bad rate p (the expected bad count E = sum of n_minute * p(minute), p = E / N), how
likely is a count of at least K bad calls?

    p-value = P(X >= K),  X ~ Binomial(N, p)                                   (phi_W <= 1)
            = P(X >= K),  X ~ BetaBinomial(N, a, b)  with the variance phi_W * N p (1-p)

where phi_W is the window's overdispersion learned from clean history (see
`detectors.evidence`): a beta-binomial with intra-class correlation rho = (phi_W - 1)/(N - 1),
a = p (1/rho - 1), b = (1 - p)(1/rho - 1). There is no minimum n: 5 failures in 12 calls
against a 0.5% base rate (p ~ 1e-9) fires at 2 calls/min; a lone failure in 3 calls does not
(p ~ 1.5%). Each window fires below its share of the false-alarm budget, alpha_W (module doc
of `detectors.evidence`): budget 0.25 false firings per series per 30 days gives 1.0e-6 for
5 minutes, 4.1e-6 for 30, 1.6e-5 for 120.

Effect size: the window's bad rate must be at least `min_ratio` times p and `min_abs_diff`
above it, so a 1.1x drift at 10,000 calls a minute, significant as it is, does not fire.
Expected rates below `min_rate` count as `min_rate` (a clean history of 0 failures does not
make one failure a certainty of fault).

Bursts: each of the `burst_minutes` busiest minutes of a window counts for at most one bad
call more than the next busiest minute after them, so a few extra 429s inside a minute or
two (a client retry storm) do not fire a window on their own, while an outage (several
minutes alike) loses little. The default is 1; a rule that pages alone (availability) uses
2, because a burst of 3-8 429s within 90 s straddles two minute slots and at 0.5 calls/min
it paged as an outage on most evaluation worlds. The price, at 10 calls/min and 30%
failing: a median of 2.5 min to fire instead of 1.9 (max 3.5 over 8 seeds); with the
thresholds of the first-passage budget (`detectors.evidence`), 2.9 (max 4.5). What it does
not cover: a burst joined by a stray failure in the same half hour at 0.5 calls/min still
fires (8 bad calls in 25 against 0.6% is a lot of evidence, even discounted).

Speed: the exact tail (scipy) runs only when a normal approximation, which overstates the
significance of a right-skewed count, comes within 1 of the window's z threshold; clean
traffic costs a few additions and a square root per window.

`direction="up"` tests k (errors, refusals); `"down"` tests n - k (availability, format
compliance), so the bad side is always the one counted. Fed without `TickStats` (a config
rule on a plain series), each update's `round(value * n)` of `n` counts as that update's
increment.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Literal, Self

from detectors.base import TickStats
from detectors.evidence import EvidenceBase, z_of_p
from detectors.ewma import _check_direction, _check_int, _check_nonneg

SCREEN_MARGIN = 1.0


class BinomialDetector(EvidenceBase):
    kind: ClassVar[str] = "binomial"
    prior_weight = 10.0  # an hour bucket's rate counts fully once it holds ~10 bad events
    prior_is_events = True

    def __init__(
        self,
        direction: Literal["up", "down"] = "up",
        budget: float = 0.25,
        windows_min: Sequence[int] = (5, 30, 120),
        min_ratio: float = 1.5,
        min_abs_diff: float = 0.01,
        min_rate: float = 0.001,
        burst_minutes: int = 1,
        clear: float = 1.0,
        for_n: int = 2,
        clear_n: int = 8,
        warmup: int = 120,
        bucket_half_life: float = 120.0,
        half_life: float = 720.0,
        full_n: int = 30,
        learn_lag_min: int = 30,
    ) -> None:
        _check_direction(direction, ("up", "down"))
        if not (min_ratio >= 1.0 and math.isfinite(min_ratio)):
            raise ValueError(f"min_ratio must be >= 1, got {min_ratio!r}")
        if not (0.0 <= min_abs_diff < 1.0):
            raise ValueError(f"min_abs_diff must be in [0, 1), got {min_abs_diff!r}")
        _check_nonneg("min_rate", min_rate)
        _check_int("burst_minutes", burst_minutes, 0)
        self.burst_minutes = burst_minutes
        if min_rate >= 0.5:
            raise ValueError(f"min_rate must be < 0.5, got {min_rate!r}")
        self.direction: Literal["up", "down"] = direction
        self.min_ratio = float(min_ratio)
        self.min_abs_diff = float(min_abs_diff)
        self.min_rate = float(min_rate)
        self._init_evidence(
            windows_min, budget, clear, for_n, clear_n, warmup, bucket_half_life, half_life,
            full_n, learn_lag_min,
        )  # fmt: skip

    def _increment(
        self, value: float, n: int | None, tick: TickStats | None
    ) -> tuple[float, float, float, float] | None:
        if tick is not None:
            total, k = tick.n, tick.k
            if total == 0:
                return 0.0, 0.0, 0.0, 0.0  # no calls this tick: time still passes
            if total < 0 or not (0 <= k <= total):
                return None
        else:
            if n is None or n <= 0 or not (0.0 <= value <= 1.0):
                return None
            total, k = n, round(value * n)
        bad = float(k if self.direction == "up" else total - k)
        return float(total), bad, bad, bad  # a 0/1 value is its own square and cube

    def _adjust(self, mean: float, var: float, k3: float) -> tuple[float, float, float]:
        p = mean if mean > self.min_rate else self.min_rate
        p = p if p < 1.0 else 1.0
        return p, p * (1.0 - p), p * (1.0 - p) * (1.0 - 2.0 * p)

    def _clip_minute(
        self, n: float, x: float, x2: float, x3: float, e: float, v: float
    ) -> tuple[float, float, float]:
        mean = e
        lim = 2.0 * math.sqrt(v)
        lim = 1.0 if lim < 1.0 else lim
        x = mean + lim if x > mean + lim else mean - lim if x < mean - lim else x
        return x, x, x

    def _busiest_minute_excess(self, i: int) -> float:
        """How far the `burst_minutes` busiest minutes of window `i` are above the next
        busiest one, plus one each: the bad events the test does not count."""
        r = self.burst_minutes
        if r == 0:
            return 0.0
        w = self.windows_min[i]
        cur = self._minute or 0
        slots, size = self._slots, self._size
        top = [0.0] * (r + 1)  # the r + 1 largest, descending
        for j in range(cur - w + 1, cur + 1):
            x = slots[j % size][1]
            if x > top[r]:
                k = r
                while k > 0 and x > top[k - 1]:
                    top[k] = top[k - 1]
                    k -= 1
                top[k] = x
        floor = top[r] + 1.0
        return sum(t - floor for t in top[:r] if t > floor)

    def _window_z(self, i: int, s: list[float]) -> tuple[float, int]:
        """(z of the bad count's excess, the side the metric itself moved): availability
        and format compliance fall when their bad count rises, and the signal's direction
        says so (the change-point search and the per-segment test read it)."""
        n, x, e, v, _ = s
        side = 1 if self.direction == "up" else -1
        if n <= 0.5 or x <= e:
            return 0.0, side
        p = e / n
        if x / n < self.min_ratio * p or x / n - p < self.min_abs_diff:
            return 0.0, side
        phi = self.phi(i)
        z_n = (x - e - 0.5) / math.sqrt(phi * v) if v > 0.0 else 40.0
        if z_n < self._z[i] - SCREEN_MARGIN:
            return (z_n if z_n > 0.0 else 0.0), side
        x -= self._busiest_minute_excess(i)
        if x / n < self.min_ratio * p or x / n - p < self.min_abs_diff:
            return 0.0, side
        return z_of_p(self.tail(round(x), round(n), p, phi)), side

    @staticmethod
    def tail(k: int, n: int, p: float, phi: float) -> float:
        """P(X >= k) for X binomial(n, p), or beta-binomial with variance phi * n p (1-p)."""
        if k <= 0:
            return 1.0
        if k > n:
            return 0.0
        if phi <= 1.0 + 1e-9 or n <= 1:
            from scipy.special import bdtrc

            return float(bdtrc(k - 1, n, p))
        from scipy.stats import betabinom

        rho = min((phi - 1.0) / (n - 1.0), 0.99)
        scale = 1.0 / rho - 1.0
        return float(betabinom.sf(k - 1, n, p * scale, (1.0 - p) * scale))

    def _calm_effect(self, s: list[float]) -> bool:
        n, x, e = s[0], s[1], s[2]
        p = e / n
        rate = x / n
        return rate < p * (1.0 + 0.5 * (self.min_ratio - 1.0)) or rate - p < 0.5 * self.min_abs_diff

    def _baseline_value(self) -> float:
        return self._mean if self.direction == "up" else 1.0 - self._mean

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

    @classmethod
    def from_rate_state(cls, state: dict[str, Any], params: dict[str, Any]) -> Self:
        """Migrate a `rate` detector's snapshot (the former default on these metrics): its
        pooled bad/trial counts per hour of week, hour of day and globally become this
        detector's profile, so an upgrade keeps the learned seasonal rates. The `rate`
        pools counted each call once per overlapping 5-minute window (~20 times) and their
        sample counts are 15-s ticks, hence the rescaling. Windows and phi start empty."""
        if state.get("kind") != "rate" or state.get("v") not in (1, 2):
            raise ValueError("not a rate detector state this build can migrate")
        det = cls(**params)
        if state["params"].get("direction", "up") != det.direction:
            raise ValueError("rate state watches the other direction")
        per_call, per_minute = 1.0 / 20.0, 1.0 / 4.0
        prof = det._profile

        def pool(bad: float, trials: float) -> list[float]:
            b, t = float(bad) * per_call, float(trials) * per_call
            return [t, b, b, b]  # a 0/1 value is its own square and cube

        if state.get("v") == 2 and state["params"].get("seasonal", True):
            wb, wt, wc = state["week"]
            db, dt, dc = state["day"]
            prof.w = [pool(b, t) for b, t in zip(wb, wt, strict=True)]
            prof.wc = [int(c * per_minute) for c in wc]
            prof.d = [pool(b, t) for b, t in zip(db, dt, strict=True)]
            prof.dc = [int(c * per_minute) for c in dc]
        prof.g = pool(state["bad"], state["trials"])
        prof.gc = int(int(state["seen"]) * per_minute)
        return det
