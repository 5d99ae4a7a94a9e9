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
the best fit (per observation), so gain/σ² is a χ²(1) statistic for one fixed τ.

The search is asked where, not whether: it runs only after a detector fired, and that
detector's own false-alarm budget already says a change happened. What must not be random is
the start, one of m positions, so the threshold is Bonferroni's over them:
P(χ²₁ > x) ≈ exp(-x/2) for each, x = 2·ln(m / α) with `alpha` the budget for a start placed
by noise (default 0.01). Below it the data cannot place the start and the caller falls back to
the detector's own evidence or the detection time. (Over the m² placements of two breakpoints,
as whether a change happened at all would need, the threshold missed most slow declines and
most faults at a few calls a minute: on simulated 60-min ramps and steps at 0.5-20
observations a minute, 34% and 79% of starts within 15 and 5 min against 38% and 83%;
`python eval/changepoint_sim.py`.)

A ramp or a pulse places a second breakpoint, the end: it is chosen over the step when it
explains more than what a free location buys in noise (Schwarz's rule, 2·ln m on the χ²
scale). Akaike's (2) fits more slow declines as ramps, whose start is then right where a step
would sit in their middle, but also fits noisy steps as ramps that start early (with it, a
refusal step at 40 calls a minute in `tests/correlator/test_changepoint.py` got a ramp
starting 8 min before the step), and steps are five times as common as ramps in the worlds.

The change must go the way the signal went (`direction` +1 up, -1 down, 0 either) and start no
later than the detection (`not_after`): a later change is not what the detector saw.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

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

    _search(p, t, m, last_start, mean, offer)
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
    threshold = 2.0 * math.log(m / alpha)
    if stat < threshold:
        return None
    end = None if shape == "step" or j >= m else pts[j].ts
    return ChangePoint(pts[k].ts, end, shape, a, b, stat, threshold)


def _search(
    p: _Prefix,
    t: Sequence[float],
    m: int,
    last_start: int,
    mean: float,
    offer: Callable[[float, int, int, Shape, float, float], None],
) -> None:
    """Offer the best placement of each shape in every direction to `offer`.

    Every (k, j) pair at once, as arrays: the search is O(m²) placements and ran as a
    Python double loop, the largest cost of a context refresh. Each shape's placements are
    offered in the loop's order (k, then j), best first, so ties resolve as before: the
    earliest placement wins."""
    ww, wx = np.asarray(p.w), np.asarray(p.wx)
    big_w = ww[m]
    ks = np.arange(MIN_SIDE, last_start + 1)
    if ks.size == 0:
        return
    # step at k: [0,k) vs [k,m)
    sk = ks[m - ks >= MIN_SIDE]
    w1 = ww[sk]
    w2 = big_w - w1
    ok = (w1 > 0) & (w2 > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = wx[sk] / w1
        b = (wx[m] - wx[sk]) / w2
        gain = w1 * w2 / big_w * (a - b) ** 2
    _offer_best(offer, "step", ok, gain, a, b, sk, np.full(sk.shape, m))

    k2 = ks[:, None]
    j2 = np.arange(m + 1)[None, :]
    inside = j2 > k2
    wk, wj = ww[k2], ww[j2]
    # pulse on [k,j): level b inside, a outside (both sides of it). The level outside a
    # pulse is what it returned to; it must be mostly the data before it, else the
    # "pulse" is the quiet start of a step that goes the other way.
    w_in = wj - wk
    w_out = big_w - w_in
    ok = inside & (j2 < m) & (j2 - k2 >= MIN_PULSE) & (w_in > 0) & (wk >= big_w - wj)
    with np.errstate(divide="ignore", invalid="ignore"):
        b_in = (wx[j2] - wx[k2]) / w_in
        a_out = (wx[m] - wx[j2] + wx[k2]) / w_out
        gain = w_in * w_out / big_w * (b_in - a_out) ** 2
    kk, jj = np.broadcast_arrays(k2, j2)
    _offer_best(offer, "pulse", ok, gain, a_out, b_in, kk, jj)

    # ramp over [k,j): u = 0 before, (t - t_k)/(t_j - t_k) on it, 1 from j on; a ramp may
    # still be going at the end (j = m: it ends one bin after the last).
    tt = np.asarray(t, dtype=float)
    t_end = np.append(tt, tt[m - 1] + 1.0)
    tk = tt[np.minimum(k2, m - 1)]
    span = t_end[j2] - tk
    wt, wt2, wxt = np.asarray(p.wt), np.asarray(p.wt2), np.asarray(p.wxt)
    sw = w_in
    swt = wt[j2] - wt[k2]
    swt2 = wt2[j2] - wt2[k2]
    w_after = big_w - wj
    with np.errstate(divide="ignore", invalid="ignore"):
        s_u = (swt - tk * sw) / span + w_after
        s_u2 = (swt2 - 2 * tk * swt + tk * tk * sw) / (span * span) + w_after
        s_ux = (wxt[j2] - wxt[k2] - tk * (wx[j2] - wx[k2])) / span + (wx[m] - wx[j2])
        u_bar = s_u / big_w
        var_u = s_u2 - big_w * u_bar * u_bar
        cov = s_ux - big_w * u_bar * mean
        slope = cov / var_u
        a = mean - slope * u_bar
        gain = cov * cov / var_u
    ok = inside & (span > 0) & (var_u > 1e-12) & (gain > 0)
    _offer_best(offer, "ramp", ok, gain, a, a + slope, kk, jj)


def _offer_best(
    offer: Callable[[float, int, int, Shape, float, float], None],
    shape: Shape,
    ok: npt.NDArray[np.bool_],
    gain: npt.NDArray[np.float64],
    a: npt.NDArray[np.float64],
    b: npt.NDArray[np.float64],
    k: npt.NDArray[np.int64],
    j: npt.NDArray[np.int64],
) -> None:
    """Offer the best valid placement going up and the best going down (`offer` keeps the
    one its direction allows); the first of equal gains, in (k, j) order, wins."""
    for side in (b > a, b < a):
        mask = (ok & side).ravel()
        if not mask.any():
            continue
        g = np.where(mask, gain.ravel(), -np.inf)
        i = int(np.argmax(g))
        offer(
            float(g[i]),
            int(k.ravel()[i]),
            int(j.ravel()[i]),
            shape,
            float(a.ravel()[i]),
            float(b.ravel()[i]),
        )


def _last_index_at_or_before(pts: Sequence[Bin], ts: float) -> int:
    """Index of the last bin that starts at or before `ts` (-1 when none)."""
    idx = -1
    for i, b in enumerate(pts):
        if b.ts <= ts:
            idx = i
        else:
            break
    return idx
