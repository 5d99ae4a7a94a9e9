"""When did it start? A likelihood-ratio change-point search over per-bin statistics.

Detectors fire when the evidence is strong enough, which for a sustained-shift detector on a
15-minute quality window can be 20–60 min after the change. Attribution and change matching
need the moment the series changed, not the moment we noticed; this module estimates it from
the series itself, so it works for any detector (and for detectors being rewritten).

Input: bins `(ts, mean, n)` — the mean of the fired metric over one bin starting at `ts` and
the number of observations behind it (calls, scores). A bin mean of n observations has
variance σ²/n, so the fit is weighted least squares with weights n, which is the Gaussian
likelihood up to σ². Three shapes are fitted by exhaustive search with prefix sums:

- **step**: level a before τ, b from τ on;
- **ramp**: level a before τ, a straight line from a to b over [τ, τ2), b from τ2 on;
- **pulse**: level b on [τ, τ2), a elsewhere (a change that was rolled back already).

The gain of a shape is the weighted sum-of-squares it explains. σ² comes from the residual of
the best fit (per observation), so gain/σ² is a χ²(1) statistic for one fixed τ. The search
tries up to m² placements, so the threshold is Bonferroni's: P(χ²₁ > x) ≈ exp(-x/2) for each,
x = 2·ln(m² / α) with `alpha` the false-start budget per search (default 0.01). Below it there
is no change point worth naming and the caller falls back to the detection time.

The change must go the way the signal went (`direction` +1 up, -1 down, 0 either) and start no
later than the detection (`not_after`): a later change is not what the detector saw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Shape = Literal["step", "ramp", "pulse"]
MIN_BINS = 8  # fewer bins cannot tell a change from noise
MIN_SIDE = 3  # bins a level needs on each side of a breakpoint: one odd bin is no level
MIN_PULSE = 5  # bins a pulse must last: detectors fire on sustained changes, not on a blip


@dataclass(frozen=True, slots=True)
class Bin:
    """One bin of a metric: its start time, mean, and the observations behind the mean."""

    ts: float
    mean: float
    n: float


@dataclass(frozen=True, slots=True)
class ChangePoint:
    """The estimated change: `start` (τ) and, for a ramp or a pulse, `end` (τ2); the levels
    before and after, and the statistic against its threshold (evidence for the record)."""

    start: float
    end: float | None
    shape: Shape
    before: float
    after: float
    stat: float
    threshold: float


class _Prefix:
    """Prefix sums of w, w·t, w·t², w·x, w·x·t, w·x² over the bins (t in bin units)."""

    def __init__(self, t: Sequence[float], x: Sequence[float], w: Sequence[float]) -> None:
        self.w = [0.0]
        self.wt = [0.0]
        self.wt2 = [0.0]
        self.wx = [0.0]
        self.wxt = [0.0]
        self.wx2 = [0.0]
        for ti, xi, wi in zip(t, x, w, strict=True):
            self.w.append(self.w[-1] + wi)
            self.wt.append(self.wt[-1] + wi * ti)
            self.wt2.append(self.wt2[-1] + wi * ti * ti)
            self.wx.append(self.wx[-1] + wi * xi)
            self.wxt.append(self.wxt[-1] + wi * xi * ti)
            self.wx2.append(self.wx2[-1] + wi * xi * xi)

    @staticmethod
    def span(arr: list[float], i: int, j: int) -> float:
        return arr[j] - arr[i]


def estimate(
    bins: Sequence[Bin],
    direction: int = 0,
    not_after: float | None = None,
    alpha: float = 0.01,
    bin_s: float = 60.0,
) -> ChangePoint | None:
    """The most likely change point of `bins` (sorted by time), or None when no shape
    explains significantly more than a flat line."""
    pts = [b for b in bins if b.n > 0 and math.isfinite(b.mean)]
    m = len(pts)
    if m < MIN_BINS or bin_s <= 0:
        return None
    t0 = pts[0].ts
    t = [(b.ts - t0) / bin_s for b in pts]
    x = [b.mean for b in pts]
    w = [b.n for b in pts]
    p = _Prefix(t, x, w)
    big_w = p.w[m]
    mean = p.wx[m] / big_w
    sse0 = p.wx2[m] - big_w * mean * mean
    if sse0 <= 0:
        return None
    last_start = m - 1 if not_after is None else _last_index_at_or_before(pts, not_after)
    if last_start < 1:
        return None

    # The best placement of each shape: gain, k, j, a, b.
    best: dict[Shape, tuple[float, int, int, float, float]] = {}

    def offer(gain: float, k: int, j: int, shape: Shape, a: float, b: float) -> None:
        if direction and (b - a) * direction <= 0:
            return
        cur = best.get(shape)
        if cur is None or gain > cur[0]:
            best[shape] = (gain, k, j, a, b)

    wx, ww = p.wx, p.w
    for k in range(MIN_SIDE, last_start + 1):
        # step at k: [0,k) vs [k,m)
        w1, w2 = ww[k], big_w - ww[k]
        if w1 > 0 and w2 > 0 and m - k >= MIN_SIDE:
            a, b = wx[k] / w1, (wx[m] - wx[k]) / w2
            offer(w1 * w2 / big_w * (a - b) ** 2, k, m, "step", a, b)
        for j in range(k + 1, m + 1):
            # pulse on [k,j): level b inside, a outside (both sides of it)
            w_in = ww[j] - ww[k]
            w_out = big_w - w_in
            # The level outside a pulse is what it returned to; it must be mostly the data
            # before it, else the "pulse" is the quiet start of a step that goes the other way.
            if j < m and j - k >= MIN_PULSE and w_in > 0 and ww[k] >= big_w - ww[j]:
                b_in = (wx[j] - wx[k]) / w_in
                a_out = (wx[m] - wx[j] + wx[k]) / w_out
                offer(w_in * w_out / big_w * (b_in - a_out) ** 2, k, j, "pulse", a_out, b_in)
            # ramp over [k,j): u = 0 before, (t - t_k)/(t_j - t_k) on it, 1 from j on
            gain, a, b = _ramp_gain(p, t, k, j, m, mean)
            if gain > 0:
                offer(gain, k, j, "ramp", a, b)
    if not best:
        return None
    top_gain = max(v[0] for v in best.values())
    sigma2 = max(sse0 - top_gain, 1e-12) / max(m - 4, 1)
    # A ramp or a pulse places a second breakpoint: it must beat the step by what a free
    # location parameter buys in noise (BIC: ln m per parameter, 2·ln m on the χ² scale).
    extra = 2.0 * math.log(m)
    shape = max(best, key=lambda s: best[s][0] / sigma2 - (0.0 if s == "step" else extra))
    gain, k, j, a, b = best[shape]
    stat = gain / sigma2
    threshold = 2.0 * math.log(m * m / alpha)
    if stat < threshold:
        return None
    end = None if shape == "step" or j >= m else pts[j].ts
    return ChangePoint(pts[k].ts, end, shape, a, b, stat, threshold)


def _ramp_gain(
    p: _Prefix, t: Sequence[float], k: int, j: int, m: int, mean: float
) -> tuple[float, float, float]:
    """Explained weighted sum of squares of x = a + (b - a)·u, and (a, b)."""
    span = (t[j] if j < m else t[m - 1] + 1.0) - t[k]  # a ramp may still be going at the end
    if span <= 0:
        return 0.0, 0.0, 0.0
    tk = t[k]
    sw = _Prefix.span(p.w, k, j)
    swt = _Prefix.span(p.wt, k, j)
    swt2 = _Prefix.span(p.wt2, k, j)
    w_after = p.w[m] - p.w[j]
    s_u = (swt - tk * sw) / span + w_after
    s_u2 = (swt2 - 2 * tk * swt + tk * tk * sw) / (span * span) + w_after
    s_ux = (_Prefix.span(p.wxt, k, j) - tk * _Prefix.span(p.wx, k, j)) / span + _Prefix.span(
        p.wx, j, m
    )
    big_w = p.w[m]
    u_bar = s_u / big_w
    var_u = s_u2 - big_w * u_bar * u_bar
    if var_u <= 1e-12:
        return 0.0, 0.0, 0.0
    cov = s_ux - big_w * u_bar * mean
    slope = cov / var_u
    a = mean - slope * u_bar
    return cov * cov / var_u, a, a + slope


def _last_index_at_or_before(pts: Sequence[Bin], ts: float) -> int:
    """Index of the last bin that starts at or before `ts` (-1 when none)."""
    idx = -1
    for i, b in enumerate(pts):
        if b.ts <= ts:
            idx = i
        else:
            break
    return idx
