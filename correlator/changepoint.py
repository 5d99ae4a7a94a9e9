"""When did it start? A likelihood-ratio change-point search over per-bin statistics.

Detectors fire when the evidence is strong enough, which for a sustained-shift detector on a
15-minute quality window can be 20–60 min after the change. Attribution and change matching
need the moment the series changed, not the moment we noticed; this module estimates it from
the series itself, so it works for any detector (and for detectors being rewritten).

Input: bins `(ts, mean, n)` — the mean of the fired metric over one bin starting at `ts` and
the number of observations behind it (calls, scores). Three shapes are fitted by exhaustive
search with prefix sums:

- **step**: level a before τ, b from τ on;
- **ramp**: level a before τ, a straight line from a to b over [τ, τ2), b from τ2 on;
- **pulse**: level b on [τ, τ2), a elsewhere (a change that was rolled back already).

Two likelihoods, by what the metric is:
- a score, a size or a latency: a bin mean of n observations has variance σ²/n, so the fit is
  weighted least squares with weights n (the Gaussian likelihood up to σ²). The gain of a
  shape is the weighted sum of squares it explains; σ² comes from the residual of the best
  fit, so gain/σ² is a χ²(1) statistic for one fixed τ. When the bins vary more than σ²/n
  says (batches of near-identical calls share their noise), the search runs again with
  weights 1/(τ² + σ²/n) (`_shared_noise_weights`).
- a share of calls (`proportion`: an error rate, availability): the binomial likelihood,
  whose variance follows the level. Least squares counts a quiet minute at 1% failures as
  noisy as a failing one at 30%; at 0.5-6 calls a minute it fitted a chance cluster of
  failures as a pulse in 29% of simulated sustained outages (binomial: 2%), started at that
  cluster; 75% of those starts within 5 min against 77%. The binomial likelihood, exact,
  finds no significant start in more of the faintest ones, where least squares' statistic
  overstates the evidence (`python eval/changepoint_sim.py`). The
  gain is twice the log-likelihood ratio, divided by the Pearson dispersion of the best fit
  (at least 1: real failures come in bursts). No ramp: its binomial fit has no closed form,
  and the slow declines are scores and sizes.

The search is asked where, not whether: it runs only after a detector fired, and that
detector's own false-alarm budget already says a change happened. What must not be random is
the start, one of m positions, so the threshold is Bonferroni's over them:
P(χ²₁ > x) ≈ exp(-x/2) for each, x = 2·ln(m / α) with `alpha` the budget for a start placed
by noise (default 0.01). Below it the data cannot place the start and the caller falls back to
the detector's own evidence or the detection time. (Over the m² placements of two breakpoints,
as whether a change happened at all would need, the threshold missed most slow declines and
most faults at a few calls a minute; `python eval/changepoint_sim.py` compares the two.)

A ramp or a pulse places a second breakpoint, the end: it is chosen over the step when it
explains more than what one more free parameter buys in noise (Schwarz's rule, ln m on the χ²
scale). At 2·ln m, as this module had it until 2026-12-02, a step fitted most slow declines in
their middle, 30 min late. Akaike's 2 fits more of them as ramps but also fits noisy steps as
ramps that start early (a refusal step at 40 calls a minute in
`tests/correlator/test_changepoint.py` got a ramp starting 8 min before the step), and steps
are five times as common as ramps in the worlds.

The shape chosen is what the record shows (levels, end, statistic). The start reported is
the median of τ's posterior over all shapes and ends (`_Best.median_start`): a slow decline
seen at a few scores a minute fits a ramp barely better than a step in its middle, so the
chosen shape is often the step, 30 min late; averaged, the ramp's starts keep their weight.
It is the median rather than the mode: the mode of a step in sparse failures sits at the
first failure, which comes after the start, and the median minimizes the expected error. A
start between two bins with empty minutes between them is spread evenly over those minutes
(`_start_time`): on a quiet series the first bin after the change can come minutes after it.

The change must go the way the signal went (`direction` +1 up, -1 down, 0 either) and start no
later than the detection (`not_after`): a later change is not what the detector saw.

Each estimate carries the start's posterior on the grid of bins (`StartPosterior`): the
series of other quantities that changed at the same moment multiply into it
(`shared_start`), for the incidents whose members measure more than one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.special import logsumexp, xlogy

Shape = Literal["step", "ramp", "pulse"]
MIN_BINS = 8  # fewer bins cannot tell a change from noise
MIN_SIDE = 3  # bins a level needs on each side of a breakpoint: one odd bin is no level
MIN_PULSE = 5  # bins a pulse must last: detectors fire on sustained changes, not on a blip

_F = npt.NDArray[np.float64]
_B = npt.NDArray[np.bool_]
_I = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Bin:
    """One bin of a metric: its start time, mean, and the observations behind the mean."""

    ts: float
    mean: float
    n: float


@dataclass(frozen=True, slots=True)
class ChangePoint:
    """The estimated change: `start` (τ) and, for a ramp or a pulse, `end` (τ2); the levels
    before and after, the statistic against its threshold (evidence for the record), and
    the start's posterior (`shared_start` multiplies those of several series)."""

    start: float
    end: float | None
    shape: Shape
    before: float
    after: float
    stat: float
    threshold: float
    posterior: StartPosterior = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class StartPosterior:
    """Where the start may be: `mass[i]` at time `(first + i)·bin_s`, summing to 1.

    Bins are aligned to multiples of `bin_s` (the aggregator's history is), so the posteriors
    of two series of one feature share a grid and can be multiplied (`shared_start`)."""

    first: int
    bin_s: float
    mass: _F

    def median(self) -> float:
        """The time that splits the mass in half (the estimate with least expected error)."""
        cum = np.cumsum(self.mass)
        i = int(np.searchsorted(cum, 0.5 * cum[-1]))
        return (self.first + i) * self.bin_s


class _Best:
    """The best placement of each shape that goes the signal's way, and every placement's
    gain, kept to weigh the starts against each other (`start_weights`)."""

    def __init__(self, direction: int) -> None:
        self.direction = direction
        self.top: dict[Shape, tuple[float, int, int, float, float]] = {}  # gain, k, j, a, b
        # per (shape, up): the start indices and the gains over (start, end), -inf if invalid
        self.gains: dict[tuple[Shape, bool], tuple[_I, _F]] = {}

    def offer(self, shape: Shape, ok: _B, gain: _F, a: _F, b: _F, k: _I, j: _I) -> None:
        """Offer every placement of `shape`: arrays over (k,) for a step, (k, j) otherwise,
        `ok` masking the valid ones. Per side (up, down) the best wins; the first of equal
        gains, in (k, j) order, so ties go to the earliest start."""
        for up in (True, False):
            if self.direction and (1 if up else -1) != self.direction:
                continue
            mask = ok & ((b > a) if up else (b < a))
            if not mask.any():
                continue
            g = np.where(mask, gain, -np.inf)
            i = int(np.argmax(g))
            kk, jj = np.broadcast_arrays(k, j)
            cur = self.top.get(shape)
            if cur is None or g.flat[i] > cur[0]:
                a_i, b_i = np.broadcast_arrays(a, b)
                self.top[shape] = (
                    float(g.flat[i]),
                    int(kk.flat[i]),
                    int(jj.flat[i]),
                    float(a_i.flat[i]),
                    float(b_i.flat[i]),
                )
            ks = kk if kk.ndim == 1 else kk[:, 0]
            self.gains[(shape, up)] = (ks, g if g.ndim == 2 else g[:, None])

    def start_weights(self, up: bool, scale: float, m: int) -> _F:
        """The start's posterior over the m bins (summing to 1), over every shape and end
        that goes the signal's way: each placement weighs exp(gain / 2·scale), and a ramp's
        or pulse's ends share a uniform prior (1/m each), so its start weighs as much as a
        step's when its ends together explain as much."""
        weight = np.full(m, -np.inf)
        for (shape, side), (ks, g) in self.gains.items():
            if side != up:
                continue
            lw = logsumexp(g / (2.0 * scale), axis=1)
            if shape != "step":
                lw = lw - math.log(m)
            weight[ks] = np.logaddexp(weight[ks], lw)
        w: _F = np.exp(weight - weight.max())
        w /= w.sum()
        return w


def estimate(
    bins: Sequence[Bin],
    direction: int = 0,
    not_after: float | None = None,
    alpha: float = 0.01,
    bin_s: float = 60.0,
    proportion: bool = False,
) -> ChangePoint | None:
    """The most likely change point of `bins` (sorted by time), or None when no shape
    explains significantly more than a flat line. `proportion`: each bin's mean is a share
    of its n calls (an error rate, availability), searched with a binomial likelihood."""
    pts = [b for b in bins if b.n > 0 and math.isfinite(b.mean)]
    m = len(pts)
    if m < MIN_BINS or bin_s <= 0:
        return None
    last_start = m - 1 if not_after is None else _last_index_at_or_before(pts, not_after)
    if last_start < MIN_SIDE:
        return None
    t0 = pts[0].ts
    t = np.array([(b.ts - t0) / bin_s for b in pts])
    x = np.array([b.mean for b in pts])
    w = np.array([b.n for b in pts], dtype=float)
    best = _Best(direction)
    ks = np.arange(MIN_SIDE, last_start + 1)
    if proportion:
        scale_of = _binomial_search(best, np.clip(x, 0.0, 1.0) * w, w, ks)
    else:
        scale_of = _gaussian_search(best, t, x, w, ks)
        shared = _shared_noise_weights(best, t, x, w) if scale_of and best.top else None
        if shared is not None:
            best = _Best(direction)
            scale_of = _gaussian_search(best, t, x, shared, ks)
    if not best.top or scale_of is None:
        return None
    top = max(best.top.values(), key=lambda v: v[0])
    scale = scale_of(top)
    # A ramp or a pulse places a second breakpoint: it must beat the step by what one more
    # free parameter buys in noise (Schwarz: ln m on the χ² scale).
    extra = math.log(m)
    shape = max(best.top, key=lambda s: best.top[s][0] / scale - (0.0 if s == "step" else extra))
    gain, k, j, a, b = best.top[shape]
    stat = gain / scale
    threshold = 2.0 * math.log(m / alpha)
    if stat < threshold:
        return None
    weights = best.start_weights(b > a, scale, m)
    k, frac = _median_index(weights)
    if shape != "step" and k > j - 1:
        k, frac = j - 1, 1.0
    end = None if shape == "step" or j >= m else float(pts[j].ts)
    start = _start_time(pts, k, frac, bin_s)
    posterior = _posterior(pts, weights, bin_s)
    return ChangePoint(start, end, shape, a, b, stat, threshold, posterior)


def _median_index(w: _F) -> tuple[int, float]:
    """The median of the start's posterior `w` over the bins (`_Best.start_weights`).

    Not the start of the best shape alone: a 60-min decline at a few scores a minute
    fits a ramp barely better than a step in its middle, 30 min late, and the rule that
    picks the shape (a second breakpoint must beat the step by ln m) picks the step.
    Averaged, the ramp's starts keep their share of the weight: 56% of simulated ramps
    within 15 min against 49%, steps within 5 min 82% against 83%
    (`python eval/changepoint_sim.py`). Not the mode either: the likelihood of a step in
    sparse failures is flat from the last quiet call to the first failure, and its
    mode sits at that first failure, after the start.

    Returns the index k whose weight holds the median and the share of that weight
    below it: a start at k can fall anywhere in the empty minutes before bin k
    (`_start_time`), and the median lies that far into them."""
    cum = np.cumsum(w)
    half = 0.5 * cum[-1]
    k = int(np.searchsorted(cum, half))
    below = cum[k - 1] if k else 0.0
    return k, float(min(max((half - below) / w[k], 0.0), 1.0))


def _posterior(pts: Sequence[Bin], weights: _F, bin_s: float) -> StartPosterior:
    """The start's posterior on the grid of `bin_s`: the weight of a start at bin k is
    spread evenly over the empty minutes before bin k and bin k itself, as `_start_time`
    spreads the median."""
    g = np.rint(np.array([b.ts for b in pts]) / bin_s).astype(np.int64)
    lo = np.minimum(np.concatenate((g[:1], g[:-1] + 1)), g)
    first = int(lo[0])
    each = weights / (g - lo + 1)
    diff = np.zeros(int(g[-1]) - first + 2)
    np.add.at(diff, lo - first, each)
    np.add.at(diff, g - first + 1, -each)
    mass = np.maximum(np.cumsum(diff[:-1]), 0.0)
    return StartPosterior(first, bin_s, mass / mass.sum())


def shared_start(
    anchor: StartPosterior, others: Sequence[StartPosterior]
) -> tuple[StartPosterior, tuple[int, ...]]:
    """The start's posterior given the anchor's series and every other series that shares
    its start, and the indices of those others.

    Signals of one incident that measure independent quantities (time to first token and
    prompt size in a retrieval drift; refusals and scores in a segment's behaviour fault)
    usually changed at one moment, and each places that moment on its own evidence. When
    they share it, the start's posterior is the product of theirs: at half a call a minute,
    each alone can put a step ten minutes off, where their likelihoods overlap they rarely
    both are. But an incident also groups signals that merely fired close together, so each
    other series is first asked whether a shared start explains both better than two
    starts would: with a uniform prior over the N grid positions either could take, the
    Bayes factor of one start against two is N·Σ p₁(t)·p₂(t). Above 1 the series joins the
    product; otherwise it is left out, and the anchor's start stands."""
    joint = anchor
    used: list[int] = []
    for i, other in enumerate(others):
        if other.bin_s != joint.bin_s:
            continue
        lo = max(joint.first, other.first)
        hi = min(joint.first + len(joint.mass), other.first + len(other.mass))
        if hi <= lo:
            continue
        n = max(joint.first + len(joint.mass), other.first + len(other.mass))
        n -= min(joint.first, other.first)
        a = joint.mass[lo - joint.first : hi - joint.first]
        b = other.mass[lo - other.first : hi - other.first]
        overlap = float(a @ b)
        if overlap * n <= 1.0:
            continue
        joint = StartPosterior(lo, joint.bin_s, a * b / overlap)
        used.append(i)
    return joint, tuple(used)


def _start_time(pts: Sequence[Bin], k: int, frac: float, bin_s: float) -> float:
    """The time of a start at bin k, `frac` of the way through the empty minutes before it.

    A start at k says that bins before k are before the change and bin k is after it; when
    bins are missing between them (no call for a few minutes, common below a call a
    minute), the data cannot tell where in that gap the change fell, and each moment of it
    is as likely. The first call after the gap is its latest possible moment: placed there,
    as until 2026-12-02, held-out world 1008's retrieval drift, followed by two empty
    minutes, started 5.0 min late; spread over the gap, 4.1. Contiguous bins have no gap:
    bin k's start."""
    hi = pts[k].ts
    if k == 0:
        return float(hi)
    lo = min(pts[k - 1].ts + bin_s, hi)
    return float(lo + frac * (hi - lo))


def _gaussian_search(
    best: _Best, t: _F, x: _F, w: _F, ks: _I
) -> Callable[[tuple[float, int, int, float, float]], float] | None:
    """Offer every step, pulse and ramp by weighted least squares (a bin mean of n
    observations has variance σ²/n); return σ² of a fit, from its residual."""
    m = len(x)
    ww, wx, wt = _prefix(w), _prefix(w * x), _prefix(w * t)
    wt2, wxt = _prefix(w * t * t), _prefix(w * x * t)
    big_w = ww[m]
    mean = wx[m] / big_w
    sse0 = float(np.sum(w * x * x) - big_w * mean * mean)
    if sse0 <= 0:
        return None

    # step at k: [0,k) vs [k,m)
    sk = ks[m - ks >= MIN_SIDE]
    w1 = ww[sk]
    w2 = big_w - w1
    with np.errstate(divide="ignore", invalid="ignore"):
        a = wx[sk] / w1
        b = (wx[m] - wx[sk]) / w2
        gain = w1 * w2 / big_w * (a - b) ** 2
    best.offer("step", (w1 > 0) & (w2 > 0), gain, a, b, sk, np.full(sk.shape, m))

    k2 = ks[:, None]
    j2 = np.arange(m + 1)[None, :]
    inside = j2 > k2
    wk, wj = ww[k2], ww[j2]
    # pulse on [k,j): level b inside, a outside (both sides of it).
    w_in = wj - wk
    w_out = big_w - w_in
    ok = _pulse_ok(inside, k2, j2, m, w_in, wk, wj, big_w)
    with np.errstate(divide="ignore", invalid="ignore"):
        b_in = (wx[j2] - wx[k2]) / w_in
        a_out = (wx[m] - wx[j2] + wx[k2]) / w_out
        gain = w_in * w_out / big_w * (b_in - a_out) ** 2
    best.offer("pulse", ok, gain, a_out, b_in, k2, j2)

    # ramp over [k,j): u = 0 before, (t - t_k)/(t_j - t_k) on it, 1 from j on; a ramp may
    # still be going at the end (j = m: it ends one bin after the last).
    t_end = np.append(t, t[m - 1] + 1.0)
    tk = t[np.minimum(k2, m - 1)]
    span = t_end[j2] - tk
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
    best.offer("ramp", ok, gain, a, a + slope, k2, j2)
    # σ² per observation from the best fit's residual (gain/σ² is then χ²(1) for one τ).
    return lambda top: max(sse0 - top[0], 1e-12) / max(m - 4, 1)


def _shared_noise_weights(best: _Best, t: _F, x: _F, w: _F) -> _F | None:
    """Weights 1/(τ² + σ²/n) when the bin means vary more than σ²/n says, else None (the
    weights stay n): a bin mean of n observations has variance τ² + σ²/n, where τ² is the
    noise the observations of one bin share.

    Observations within a minute are not independent: a batch of near-identical requests (a
    fan-out, a retried job) is one bin of 60 calls with the spread of one call. Weighted by
    n, such a bin dominates the fit and its residual inflates σ² for every other bin. A
    retrieval drift that took input tokens from about 430 to 750 at 1.5 calls a minute
    (held-out world 1008, 66 calls of one batch in the hour before it) showed no significant
    change (χ² 6 for the best step, the threshold 20), and the incident started at its
    detection, 22 min late; weighted by 1/(τ² + σ²/n), χ² 66 and a start 5 min after the
    drift's. τ² and σ² come from regressing the best fit's squared residuals on 1/n;
    τ² must be significantly positive (z > 2), else the weights stay n (on series without
    shared noise the estimate would only add its own noise)."""
    shape, top = max(best.top.items(), key=lambda kv: kv[1][0])
    m = len(x)
    if shape == "ramp":
        _gain, k, j, a, b = top
        t_end = np.append(t, t[m - 1] + 1.0)
        u = np.clip((t - t[min(k, m - 1)]) / (t_end[j] - t[min(k, m - 1)]), 0.0, 1.0)
        fit = a + (b - a) * u
    else:
        fit = _levels(top, m)
    r2 = (x - fit) ** 2
    design = np.column_stack((np.ones(m), 1.0 / w))
    coef, *_ = np.linalg.lstsq(design, r2, rcond=None)
    tau2, sigma2 = float(coef[0]), max(float(coef[1]), 0.0)
    resid = r2 - design @ coef
    cov = float(resid @ resid) / max(m - 2, 1) * np.linalg.pinv(design.T @ design)
    if tau2 <= 2.0 * math.sqrt(max(float(cov[0, 0]), 0.0)):
        return None
    weights: _F = 1.0 / (tau2 + sigma2 / w)
    return weights


def _binomial_search(
    best: _Best, hits: _F, n: _F, ks: _I
) -> Callable[[tuple[float, int, int, float, float]], float] | None:
    """Offer every step and pulse by the binomial likelihood (2·log-likelihood ratio, the
    χ² scale); return the dispersion of a fit.

    Least squares weighs a bin of a share by its calls alone, as if its variance did not
    depend on the level: with 1% failures before and 15% after, the quiet minutes count as
    noisy as the failing ones, and a chance cluster of failures fits as a pulse (29% of
    simulated sustained outages at 0.5-6 calls a minute, `eval/changepoint_sim.py`; 2% with
    this likelihood). The binomial likelihood has no such freedom. Real call counts are
    overdispersed (failures come in bursts), so the statistic is divided by the Pearson
    dispersion of the best fit, at least 1, as σ² divides the least-squares one. No ramp:
    its binomial fit has no closed form, and slow declines are score and size series here,
    not shares."""
    m = len(n)
    hh, nn = _prefix(hits), _prefix(n)
    total_h, total_n = hh[m], nn[m]
    if total_h <= 0 or total_h >= total_n:
        return None
    ll0 = _loglik(total_h, total_n)

    sk = ks[m - ks >= MIN_SIDE]
    h1, n1 = hh[sk], nn[sk]
    h2, n2 = total_h - h1, total_n - n1
    ok = (n1 > 0) & (n2 > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = 2.0 * (_loglik(h1, n1) + _loglik(h2, n2) - ll0)
        a, b = h1 / n1, h2 / n2
    best.offer("step", ok, gain, a, b, sk, np.full(sk.shape, m))

    k2 = ks[:, None]
    j2 = np.arange(m + 1)[None, :]
    n_in = nn[j2] - nn[k2]
    h_in = hh[j2] - hh[k2]
    n_out, h_out = total_n - n_in, total_h - h_in
    ok = _pulse_ok(j2 > k2, k2, j2, m, n_in, nn[k2], nn[j2], total_n) & (n_out > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = 2.0 * (_loglik(h_in, n_in) + _loglik(h_out, n_out) - ll0)
        b_in, a_out = h_in / n_in, h_out / n_out
    best.offer("pulse", ok, gain, a_out, b_in, k2, j2)

    def dispersion(top: tuple[float, int, int, float, float]) -> float:
        p = _levels(top, m)
        var = n * p * (1.0 - p)
        resid = hits - n * p
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(var > 0, resid * resid / var, 0.0)
        return max(1.0, float(terms.sum()) / max(m - 4, 1))

    return dispersion


def _levels(top: tuple[float, int, int, float, float], m: int) -> _F:
    """The fitted level of each of m bins for a step or a pulse: b on [k, j), a elsewhere
    (a step's j is m)."""
    _gain, k, j, a, b = top
    idx = np.arange(m)
    levels: _F = np.where((idx >= k) & (idx < j), b, a)
    return levels


def _prefix(values: _F) -> _F:
    """Prefix sums with a leading 0: the sum over bins [i, j) is p[j] - p[i]."""
    return np.concatenate((np.zeros(1), np.cumsum(values)))


def _loglik(hits: _F | float, n: _F | float) -> _F:
    """Binomial log-likelihood of `hits` in `n` at its own rate (0·ln 0 = 0)."""
    p = np.divide(hits, n, out=np.zeros_like(np.asarray(n, dtype=float)), where=n > 0)
    return np.asarray(xlogy(hits, p) + xlogy(n - hits, 1.0 - p))


def _pulse_ok(inside: _B, k2: _I, j2: _I, m: int, w_in: _F, wk: _F, wj: _F, big_w: float) -> _B:
    """The valid pulses [k, j): they end before the last bin, last `MIN_PULSE` bins, and
    the level outside is what the series returned to, so it must be mostly the data before
    the pulse, else the "pulse" is the quiet start of a step that goes the other way."""
    return inside & (j2 < m) & (j2 - k2 >= MIN_PULSE) & (w_in > 0) & (wk >= big_w - wj)


def _last_index_at_or_before(pts: Sequence[Bin], ts: float) -> int:
    """Index of the last bin that starts at or before `ts` (-1 when none)."""
    idx = -1
    for i, b in enumerate(pts):
        if b.ts <= ts:
            idx = i
        else:
            break
    return idx
