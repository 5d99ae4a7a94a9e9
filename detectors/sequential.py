"""Sequential residual detector: the default for custom `metric` events (one value per sample).

A custom metric arrives with no call count behind it, no known period and no known noise law,
so everything the tests need is learned from the stream itself, in O(1) state. The full
derivation is in docs/detectors.md ("The custom-metric default"); in short:

1. **Budget.** One false firing per `budget_days` days of clean data per series, or per
   `budget_samples` samples, whichever is rarer: `alpha = min(dt / budget_s,
   1 / budget_samples)` per sample, `dt` the learned sampling interval, split in four
   (Bonferroni: extreme up/down, CUSUM up/down get `alpha / 4` each). At 5-minute samples
   and 30 days alpha = 1/8,640.
2. **Prediction.** Three predictors: a robust level (EWMA with Huber-clipped steps, half-life
   `level_half_life_s`, never under 8 samples), that level deseasonalised plus a time-of-day
   profile (`season_buckets` per UTC day), and that plus an hour-of-week profile. Profiles
   are learned against a slow (one-day) level, nested and re-centred; each predictor keeps a
   winsorized EW mean squared error (half-life `scale_half_life_s`), and the one in use is the
   smallest, a profile paying 10% per level of nesting and eligible after one period. A
   stream without a cycle never uses a profile.
3. **Innovations.** `z = e / sigma`; the learned lag-1 autocorrelation `rho` of z turns it
   into the AR(1) innovation `u = (z - rho z_prev) / sqrt(1 - rho^2)`, near-white with unit
   variance, so autocorrelated streams do not fire on their own wander.
4. **Extreme test with a learned tail.** Per side, exceedances of |u| over 2.5 fit an
   exponential tail (mean excess) and a Pareto tail (Hill's estimator), both from single EW
   moments; a sample fires when |u| passes the larger of the two models' `alpha / 4`
   quantiles, and never less than the Gaussian one. Firing extremes are learned censored at
   the threshold.
5. **CUSUM.** Page's two-sided CUSUM with slack `k` on `(clip(u, +-3) - mu) / s_lr` (mu the
   increments' own mean, s_lr their long-run sd by 32-sample batch means). `h` solves
   Siegmund's `ARL0 = (exp(2 k b) - 2 k b - 1) / (2 k^2)`, `b = h + 1.166`, for
   `ARL0 = 4 / alpha`: h = 8.6 at 5-minute samples. A sustained shift of `d` sigma fires
   after about `h / (d - k)` samples.
6. **Episodes.** Silent for `warmup` samples. An episode ends after `clear_n` consecutive
   samples within `clear` sigma; while it lasts the levels learn unclipped and the profiles
   with 4-sigma steps, and at its end the calm run's mean error moves into the levels, so a
   permanent step of D sigma ends after about log2(D / 2) level half-lives + `clear_n`
   samples and then is the baseline. A single extreme that another learned predictor (about
   as good, and having seen this bucket a period ago) expects does not fire.

State: `season_buckets` + 168 profile values and counts plus about 40 numbers.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any, ClassVar, Self

from detectors.base import Transition
from detectors.ewma import (
    DirectionParam,
    _Alarm,
    _alpha,
    _check_direction,
    _check_int,
    _check_nonneg,
    _check_version,
)

STATE_VERSION = 1
DAY_S = 86_400.0
_TINY = 1e-12
U0 = 2.5  # where the learned (generalised Pareto) tail of |u| starts
CLIP = 3.0  # CUSUM increments and the autocorrelation estimate see u clipped here
HUBER = 2.0  # location steps are clipped at this many sigma
WINSOR = 4.0  # squared errors are winsorized at this many sigma
WINSOR2 = WINSOR * WINSOR
SIEGMUND = 1.166  # Siegmund's correction: b = h + 1.166 (= 2 x 0.583)
MAX_RHO = 0.95
# Prior for the per-side tail of |u| beyond U0, worth PRIOR_EXCESSES exceedances: rate 1%
# (between the Gaussian 0.6% and a Student-t(4)'s 1.5%), mean excess 0.5, tail index 0.2.
PRIOR_RATE = 0.01
PRIOR_M1 = 0.5
PRIOR_LOG = 0.2  # Hill's xi: a Student-t with 5 degrees of freedom
PRIOR_EXCESSES = 10
PRIOR_SAMPLES = 1000  # the prior rate counts as this many samples
EXCESS_MEMORY = 50.0  # exceedances
BLOCK = 32  # samples per batch mean
BLOCK_MEMORY = 64.0  # blocks
PRIOR_BLOCKS = 4  # the long-run variance starts at 1 (white innovations), worth 4 blocks
MIN_LEVEL_SAMPLES = 8.0  # the level's half-life is never shorter than this many samples
MIN_SCALE_SAMPLES = 32.0  # nor the errors'
HOUSEKEEPING = 32  # samples between updates of the slow quantities (budget, rho, predictor)
HOURS_PER_WEEK = 168
EPOCH_WEEK_OFFSET_H = 72  # 1970-01-01 (hour 0) was a Thursday: Monday 00:00 + 72 h
# A profile must beat the simpler predictor's error by this factor per level of complexity
# to be used (a 10% penalty: noise-only buckets make a profile's error larger, not smaller).
COMPLEXITY = 1.1
MODES = ("level", "level+day", "level+day+week")


def cusum_h(arl0: float, k: float) -> float:
    """The CUSUM decision interval giving in-control run length `arl0` (Siegmund)."""
    if k <= 0:
        raise ValueError("k must be > 0")
    target = 2.0 * k * k * arl0
    b = math.log(target + 1.0) / (2.0 * k)
    for _ in range(8):  # fixed point of exp(2kb) = target + 2kb + 1, converges fast
        b = math.log(target + 2.0 * k * b + 1.0) / (2.0 * k)
    return max(b - SIEGMUND, 0.0)


def tail_threshold(rate: float, mean_excess: float, mean_log: float, alpha: float) -> float:
    """The `|u|` whose learned tail probability is `alpha`.

    Two tail models of the exceedances over U0, each fitted from one EW moment: exponential
    (GPD with xi = 0, scale = mean excess) and Pareto (Hill's estimator xi = E[ln(x / U0)]).
    The larger threshold wins: the exponential fits Gaussian-like tails, the Pareto power-law
    ones, and which one a stream has is not known in advance."""
    if rate <= alpha:
        return U0
    log_ratio = math.log(rate / alpha)
    exponential = U0 + mean_excess * log_ratio
    pareto = U0 * math.exp(mean_log * log_ratio)
    return exponential if exponential > pareto else pareto


class SequentialDetector(_Alarm):
    kind: ClassVar[str] = "sequential"

    def __init__(
        self,
        direction: DirectionParam = "both",
        budget_days: float = 30.0,
        budget_samples: int = 1000,
        k: float = 0.5,
        level_half_life_s: float = 3 * 3600.0,
        scale_half_life_s: float = 12 * 3600.0,
        season_buckets: int = 48,
        season_days: float = 3.0,
        week_weeks: float = 3.0,
        tail_memory: float = 4096.0,
        warmup: int = 100,
        clear: float = 2.0,
        clear_n: int = 12,
        min_n: int = 0,
        min_rel_sigma: float = 0.001,
    ) -> None:
        _check_direction(direction)
        if not (budget_days > 0 and math.isfinite(budget_days)):
            raise ValueError(f"budget_days must be > 0, got {budget_days!r}")
        _check_int("budget_samples", budget_samples, 10)
        if not (0 < k <= 2 and math.isfinite(k)):
            raise ValueError(f"k must be in (0, 2], got {k!r}")
        _alpha(level_half_life_s, None, "level_half_life_s")  # validation only
        _alpha(scale_half_life_s, None, "scale_half_life_s")
        # per-sample rates: from the half-lives in time once the interval is known
        self._a_level = _alpha(MIN_LEVEL_SAMPLES, None)
        self._a_scale = _alpha(MIN_SCALE_SAMPLES, None)
        self._a_block = 1.0 - math.pow(1.0 - self._a_scale, BLOCK)  # the same memory, per block
        _check_int("season_buckets", season_buckets, 1)
        if not (season_days > 0 and math.isfinite(season_days)):
            raise ValueError(f"season_days must be > 0, got {season_days!r}")
        if not (week_weeks > 0 and math.isfinite(week_weeks)):
            raise ValueError(f"week_weeks must be > 0, got {week_weeks!r}")
        if not (tail_memory >= 10 and math.isfinite(tail_memory)):
            raise ValueError(f"tail_memory must be >= 10 samples, got {tail_memory!r}")
        _check_int("warmup", warmup, 2)
        if not (clear > 0 and math.isfinite(clear)):
            raise ValueError(f"clear must be > 0, got {clear!r}")
        _check_int("min_n", min_n, 0)
        _check_nonneg("min_rel_sigma", min_rel_sigma)
        self._init_alarm(1, clear_n)
        self.direction: DirectionParam = direction
        self.budget_days = float(budget_days)
        self.budget_samples = budget_samples
        self.k = float(k)
        self.level_half_life_s = float(level_half_life_s)
        self.scale_half_life_s = float(scale_half_life_s)
        self.season_buckets = season_buckets
        self.season_days = float(season_days)
        self.week_weeks = float(week_weeks)
        self.tail_memory = float(tail_memory)
        self.warmup = warmup
        self.clear = float(clear)
        self.min_n = min_n
        self.min_rel_sigma = float(min_rel_sigma)
        self._bucket_s = DAY_S / season_buckets
        # x dt = the learning rate per visit of a bucket (memory in days / weeks)
        self._day_rate = season_buckets / (DAY_S * season_days)
        self._week_rate = 1.0 / (3600.0 * week_weeks)
        self._g_day = 0.5  # per-visit learning rates, from the learned interval
        self._a_base = self._a_level  # the slow level's rate: a one-day half-life
        self._g_week = 0.5
        # learned state
        self._n = 0
        self._first_ts = 0.0
        self._last_ts = 0.0
        self._dt = 0.0
        self._plain = 0.0  # level of the plain predictor
        self._level = 0.0  # deseasonalised level of the profile predictors
        self._base = 0.0  # slow deseasonalised level the profiles are measured from
        self._day = [0.0] * season_buckets
        self._day_n = [0] * season_buckets
        self._week = [0.0] * HOURS_PER_WEEK
        self._week_n = [0] * HOURS_PER_WEEK
        self._var = [0.0, 0.0, 0.0]  # winsorized mean squared error of each predictor
        self._mode = 0  # index into MODES: the predictor in use
        self._rho_num = 0.0
        self._rho_den = 1.0
        self._rho = 0.0
        self._innov = 1.0  # 1 / sqrt(1 - rho^2)
        self._z_prev = 0.0
        self._tail_seen = 0  # samples since the tails' rates were last decayed
        self._mu = 0.0
        self._var_c = 1.0
        self._block_sum = 0.0
        self._block_sq = 0.0
        self._block_n = 0
        self._blocks = PRIOR_BLOCKS
        self._var_block = 1.0  # BLOCK x variance of block means: the long-run variance
        self._inv_sd = 1.0
        self._up = 0.0
        self._down = 0.0
        self._calm_sum = 0.0  # sum of the errors over the current calm run of an episode
        # per side: [exceedance rate, mean excess, mean log excess ratio, exceedances]
        self._tail_up = [PRIOR_RATE, PRIOR_M1, PRIOR_LOG, float(PRIOR_EXCESSES)]
        self._tail_down = [PRIOR_RATE, PRIOR_M1, PRIOR_LOG, float(PRIOR_EXCESSES)]
        # calibration derived from the learned interval (kept in the state: exact replay)
        self._alpha = 1.0 / budget_samples
        self._h = cusum_h(4.0 / self._alpha, self.k)
        self._floor = NormalDist().inv_cdf(1.0 - self._alpha / 4.0)
        self._baseline: float | None = None

    @property
    def baseline(self) -> float | None:
        """The prediction for the last scored sample."""
        return self._baseline

    @property
    def threshold(self) -> float:
        """The CUSUM decision interval `h` for the current budget (for docs and tests)."""
        return self._h

    @property
    def alpha(self) -> float:
        """The per-sample false-firing budget currently in force."""
        return self._alpha

    @property
    def mode(self) -> str:
        """Which predictor is in use: "level", "level+day" or "level+day+week"."""
        return MODES[self._mode]

    def _housekeeping(self) -> None:
        """Every HOUSEKEEPING samples: what changes slowly is recomputed, not per sample.

        The budget (from the learned interval), CUSUM h and the Gaussian floor; the decay of
        the tails' exceedance rates over the samples they saw; the AR(1) coefficient; and
        which predictor is in use (the smallest error, each profile paying COMPLEXITY per
        level of nesting, and only once it has seen two of its periods)."""
        dt = self._dt
        self._g_day = min(self._day_rate * dt, 0.5) if dt > 0 else 0.5
        self._a_base = 1.0 - math.pow(0.5, dt / DAY_S) if dt > 0 else self._a_level
        if dt > 0:
            # memories are times (a 15-s and a 5-min stream forget over the same hours), but
            # never fewer samples than the MIN_* below: a daily metric still averages noise
            self._a_level = _alpha(max(self.level_half_life_s / dt, MIN_LEVEL_SAMPLES), None)
            self._a_scale = _alpha(max(self.scale_half_life_s / dt, MIN_SCALE_SAMPLES), None)
            self._a_block = 1.0 - math.pow(1.0 - self._a_scale, BLOCK)
        self._g_week = min(self._week_rate * dt, 0.5) if dt > 0 else 0.5
        alpha = 1.0 / self.budget_samples
        if dt > 0:
            alpha = min(alpha, dt / (self.budget_days * DAY_S))
        if alpha != self._alpha:
            self._alpha = alpha
            self._h = cusum_h(4.0 / alpha, self.k)
            self._floor = NormalDist().inv_cdf(1.0 - alpha / 4.0)
        seen = self._tail_seen
        if seen:
            keep = math.pow(1.0 - self._tail_a(), seen)
            self._tail_up[0] *= keep
            self._tail_down[0] *= keep
            self._tail_seen = 0
        # Level and profiles are only identified up to a constant (L + S is what is
        # learned): move each profile's mean over its visited buckets into the level, as
        # Holt-Winters renormalises its seasonal indices, so the level stays the level.
        for prof, counts in ((self._day, self._day_n), (self._week, self._week_n)):
            visited = len(counts) - counts.count(0)
            if visited:
                shift = sum(prof) / visited
                prof[:] = [v - shift if n else v for v, n in zip(prof, counts, strict=True)]
                self._level += shift
                self._base += shift
        rho = self._rho_num / self._rho_den
        self._rho = 0.0 if rho < 0.0 else MAX_RHO if rho > MAX_RHO else rho
        self._innov = 1.0 / math.sqrt(1.0 - self._rho * self._rho)
        var = self._var
        span = self._last_ts - self._first_ts
        best = 0
        if span >= DAY_S and var[1] * COMPLEXITY < var[0]:
            best = 1
        if span >= 7.0 * DAY_S and var[2] * COMPLEXITY < var[best]:
            best = 2
        self._mode = best

    def _tail_a(self) -> float:
        """The tails' per-sample EW rate: a running mean over the prior's samples first."""
        seen = self._n
        return 1.0 / (PRIOR_SAMPLES + seen) if seen < PRIOR_SAMPLES else 1.0 / self.tail_memory

    def update(self, ts: float, value: float, n: int | None = None) -> Transition | None:
        if (n is not None and n < self.min_n) or not math.isfinite(value):
            return None
        x = value
        count = self._n = self._n + 1
        # ---- sampling interval (gaps and repeats do not count) ----
        if count == 1:
            self._first_ts = ts
        else:
            dt = ts - self._last_ts
            if dt > 0:
                d0 = self._dt
                if d0 <= 0:
                    self._dt = dt
                elif dt < 4.0 * d0:
                    self._dt = d0 + 0.05 * (dt - d0)
        self._last_ts = ts
        b = int((ts % DAY_S) // self._bucket_s)
        w = (int(ts // 3600.0) + EPOCH_WEEK_OFFSET_H) % HOURS_PER_WEEK
        if count == 1:
            self._plain = self._level = self._base = x
            return None
        mode = self._mode
        if mode == 0:
            pred = self._plain
        elif mode == 1:
            pred = self._level + self._day[b]
        else:
            pred = self._level + self._day[b] + self._week[w]
        self._baseline = pred
        e = x - pred
        sigma = math.sqrt(self._var[mode])
        floor = self.min_rel_sigma * abs(self._plain)
        if floor < _TINY:
            floor = _TINY
        if sigma < floor:
            sigma = floor
        z = e / sigma

        if count <= self.warmup:
            self._learn(x, b, w, z, count, floor, True)
            if count % HOUSEKEEPING == 0:
                self._housekeeping()
            return None
        if count % HOUSEKEEPING == 0 or count == self.warmup + 1:
            self._housekeeping()

        if self._firing:
            calm = abs(z) < self.clear
            self._calm_sum = self._calm_sum + e if calm else 0.0
            out = self._judge(ts, x, pred, abs(z), 1 if z >= 0 else -1, False, calm)
            # Learn with wider limits: a new regime (or a daily pattern seen for the first
            # time) becomes the baseline at the normal rate instead of firing forever.
            self._learn(x, b, w, z, count, floor, False)
            if out is not None:  # cleared: the regime of the calm run is the new baseline,
                shift = self._calm_sum / self.clear_n  # so the CUSUM does not restart on
                self._plain += shift  # the part of a shift the levels have not yet learned
                self._level += shift
                self._calm_sum = 0.0
            return out

        # ---- innovation, both tests ----
        u = (z - self._rho * self._z_prev) * self._innov
        d = self.direction
        sign = 0
        limit = 0.0
        if u > U0:
            t = self._tail_up
            limit = max(tail_threshold(t[0], t[1], t[2], self._alpha / 4.0), self._floor)
            if d != "down" and u >= limit:
                sign = 1
        elif u < -U0:
            t = self._tail_down
            limit = max(tail_threshold(t[0], t[1], t[2], self._alpha / 4.0), self._floor)
            if d != "up" and -u >= limit:
                sign = -1
        c = CLIP if u > CLIP else -CLIP if u < -CLIP else u
        inc = (c - self._mu) * self._inv_sd
        k = self.k
        up = self._up + inc - k
        up = up if up > 0.0 else 0.0
        down = self._down - inc - k
        down = down if down > 0.0 else 0.0
        h = self._h
        spike = sign != 0
        if spike:
            # The extreme is learned censored at the limit (it did happen, but one value
            # must not move the tail much): recurring extremes slowly become normal.
            self._learn_excess(sign * limit)
        else:
            if up >= h and d != "down":
                sign = 1
            elif down >= h and d != "up":
                sign = -1
        if sign:
            self._up = self._down = 0.0
            # A single extreme another learned cycle expects is not an anomaly; the CUSUM's
            # evidence is many samples, which one sample's explanation cannot answer.
            if not (spike and self._explained(x, b, w, floor)):
                return self._judge(ts, x, pred, abs(z), sign, True, False)
            up = down = 0.0
        self._up = up
        self._down = down
        # ---- learn (protected) ----
        self._learn(x, b, w, z, count, floor, True)
        self._block_sum += c
        self._block_sq += c * c
        self._block_n += 1
        if self._block_n == BLOCK:
            self._learn_block()
        self._tail_seen += 1
        if u > U0 or u < -U0:
            self._learn_excess(u)
        return None

    def _explained(self, x: float, b: int, w: int, floor: float) -> bool:
        """Whether another predictor, one that has seen this time's bucket a period ago, expects `x`
        (within `clear` of its own sigma), among those whose average error is within the
        COMPLEXITY margin of the one in use. The predictor in use is the best on average, but
        a rare recurring pattern (a weekend step, a nightly job) barely moves an average
        error: a value one of the learned cycles expects is not an anomaly."""
        span = self._last_ts - self._first_ts
        var = self._var
        fl2 = floor * floor
        mode = self._mode
        candidates = []
        if mode != 0:
            candidates.append((self._plain, var[0]))
        if mode != 1 and span >= DAY_S:
            candidates.append((self._level + self._day[b], var[1]))
        if mode != 2 and span >= 7.0 * DAY_S:
            candidates.append((self._level + self._day[b] + self._week[w], var[2]))
        clear = self.clear
        worst = COMPLEXITY * var[mode]  # only a predictor about as good as the one in use
        for pred, v in candidates:
            if v > worst:
                continue
            d = x - pred
            if d * d < clear * clear * (v if v > fl2 else fl2):
                return True
        return False

    def _learn_excess(self, u: float) -> None:
        """An exceedance of U0 into its side's rate and excess moments (the rates' decay
        over all samples is applied in `_housekeeping`)."""
        t = self._tail_up if u > 0 else self._tail_down
        t[0] += self._tail_a()
        au = u if u > 0 else -u
        t[3] += 1.0
        ea = 1.0 / t[3] if t[3] < EXCESS_MEMORY else 1.0 / EXCESS_MEMORY
        t[1] += ea * (au - U0 - t[1])
        t[2] += ea * (math.log(au / U0) - t[2])

    def _learn_block(self) -> None:
        """Every BLOCK test samples: the increments' mean `mu` and variance, and their
        long-run variance by batch means (BLOCK x the variance of block means: what a CUSUM's
        drift really has, correlation included). The CUSUM is scaled by the larger of the
        two, so it sees increments of unit long-run variance."""
        mu = self._mu
        mean = self._block_sum / BLOCK
        within = self._block_sq / BLOCK - 2.0 * mean * mu + mu * mu  # mean of (c - mu)^2
        self._block_sum = 0.0
        self._block_sq = 0.0
        self._block_n = 0
        a = self._a_block
        self._mu = mu + a * (mean - mu)
        self._var_c += a * (within - self._var_c)
        nb = self._blocks = self._blocks + 1
        ab = 1.0 / nb if nb < BLOCK_MEMORY else 1.0 / BLOCK_MEMORY
        dev = mean - mu
        self._var_block += ab * (BLOCK * dev * dev - self._var_block)
        lr = self._var_block if self._var_block > self._var_c else self._var_c
        self._inv_sd = 1.0 / math.sqrt(lr) if lr > _TINY else 1.0

    def _learn(
        self, x: float, b: int, w: int, z: float, count: int, floor: float, protect: bool
    ) -> None:
        """Learn level, profiles, errors and autocorrelation from one sample.

        Outside an episode (`protect`) every step is clipped at HUBER sigma; inside one the
        level learns unclipped (a new regime must become the baseline) and the profiles
        with WINSOR-sigma steps (a pattern seen for the first time is learned, a one-off
        spike cannot become tomorrow's expectation). `floor` is the smallest sigma, so a
        stream that was exactly constant can still learn that it moves."""
        warm = count <= self.warmup
        a = self._a_level
        if count * a < 1.0:
            a = 1.0 / count
        av = self._a_scale
        if count * av < 1.0:
            av = 1.0 / count
        var = self._var
        fl2 = floor * floor
        day = self._day
        week = self._week
        sd_ = day[b]
        sw = week[w]
        e0 = x - self._plain
        e1 = x - self._level - sd_
        e2 = e1 - sw
        scale = HUBER if protect else WINSOR
        v0 = var[0] if var[0] > fl2 else fl2
        v2 = var[2] if var[2] > fl2 else fl2
        lim = scale * math.sqrt(v2)
        # the two fast levels, plain and deseasonalised (Huber steps outside episodes)
        step = e0
        if protect and not warm:
            lim0 = HUBER * math.sqrt(v0)
            step = lim0 if step > lim0 else -lim0 if step < -lim0 else step
        self._plain += a * step
        step = e2
        if protect and not warm:
            step = lim if step > lim else -lim if step < -lim else step
        self._level += a * step
        # the slow deseasonalised level (memory one day) the profiles are measured from:
        # learning them against the fast level would let the two trade any constant back
        # and forth while a bucket is being visited
        base = self._base
        ab = self._a_base
        if count * ab < 1.0:
            ab = 1.0 / count
        step = x - base - sd_ - sw
        if not warm:
            step = lim if step > lim else -lim if step < -lim else step
        base = self._base = base + ab * step
        # profiles (nested): the day profile learns what the slow level leaves, the week
        # profile what level and day profile leave, so a daily shape is not split between
        # the two; each bucket runs a mean of its first visits, then learns at its
        # per-visit rate
        nb = self._day_n[b] = self._day_n[b] + 1
        g = self._g_day
        if nb * g < 1.0:
            g = 1.0 / nb
        dev = x - base - sd_
        if not warm:
            dev = lim if dev > lim else -lim if dev < -lim else dev
        sd_ = day[b] = sd_ + g * dev
        nw = self._week_n[w] = self._week_n[w] + 1
        g = self._g_week
        if nw * g < 1.0:
            g = 1.0 / nw
        dev = x - base - sd_ - sw
        if not warm:
            dev = lim if dev > lim else -lim if dev < -lim else dev
        week[w] = sw + g * dev
        # winsorized squared errors of the three predictors (before this sample's learning)
        v = var[0]
        sq = e0 * e0
        if not warm:
            cap = WINSOR2 * (v if v > fl2 else fl2)
            sq = sq if sq < cap else cap
        var[0] = v + av * (sq - v)
        v = var[1]
        sq = e1 * e1
        if not warm:
            cap = WINSOR2 * (v if v > fl2 else fl2)
            sq = sq if sq < cap else cap
        var[1] = v + av * (sq - v)
        v = var[2]
        sq = e2 * e2
        if not warm:
            cap = WINSOR2 * v2  # v2 is var[2] floored
            sq = sq if sq < cap else cap
        var[2] = v + av * (sq - v)
        if not protect:
            self._z_prev = 0.0
            return
        # lag-1 autocorrelation of the clipped standardised residual
        zc = CLIP if z > CLIP else -CLIP if z < -CLIP else z
        self._rho_num += av * (zc * self._z_prev - self._rho_num)
        self._rho_den += av * (zc * zc - self._rho_den)
        if self._rho_den < _TINY:
            self._rho_den = _TINY
        self._z_prev = zc

    def to_state(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "kind": self.kind,
            "params": self._params(),
            "n": self._n,
            "first_ts": self._first_ts,
            "last_ts": self._last_ts,
            "dt": [
                self._dt,
                self._g_day,
                self._g_week,
                self._a_base,
                self._a_level,
                self._a_scale,
                self._a_block,
            ],
            "level": [self._plain, self._level, self._base],
            "day": [self._day, self._day_n],
            "week": [self._week, self._week_n],
            "var": list(self._var),
            "mode": self._mode,
            "rho": [self._rho_num, self._rho_den, self._rho, self._innov, self._z_prev],
            "tail_seen": self._tail_seen,
            "cusum": [self._mu, self._up, self._down, self._calm_sum],
            "long_run": [
                self._var_c,
                self._block_sum,
                self._block_sq,
                self._block_n,
                self._blocks,
                self._var_block,
                self._inv_sd,
            ],
            "tail": [list(self._tail_up), list(self._tail_down)],
            "calibration": [self._alpha, self._h, self._floor],
            "baseline": self._baseline,
            **self._alarm_state(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        _check_version(state, cls.kind, STATE_VERSION)
        det = cls(**state["params"])
        det._n = int(state["n"])
        det._first_ts = float(state["first_ts"])
        det._last_ts = float(state["last_ts"])
        (
            det._dt,
            det._g_day,
            det._g_week,
            det._a_base,
            det._a_level,
            det._a_scale,
            det._a_block,
        ) = (float(v) for v in state["dt"])
        det._plain, det._level, det._base = (float(v) for v in state["level"])
        day, day_n = state["day"]
        week, week_n = state["week"]
        if len(day) != det.season_buckets or len(day_n) != det.season_buckets:
            raise ValueError("sequential state has the wrong number of day-profile buckets")
        if len(week) != HOURS_PER_WEEK or len(week_n) != HOURS_PER_WEEK:
            raise ValueError("sequential state has the wrong number of week-profile buckets")
        det._day = [float(v) for v in day]
        det._day_n = [int(v) for v in day_n]
        det._week = [float(v) for v in week]
        det._week_n = [int(v) for v in week_n]
        det._var = [float(v) for v in state["var"]]
        mode = int(state["mode"])
        if not 0 <= mode < len(MODES) or len(det._var) != len(MODES):
            raise ValueError("sequential state has an unknown predictor mode")
        det._mode = mode
        det._rho_num, det._rho_den, det._rho, det._innov, det._z_prev = (
            float(v) for v in state["rho"]
        )
        det._tail_seen = int(state["tail_seen"])
        det._mu, det._up, det._down, det._calm_sum = (float(v) for v in state["cusum"])
        var_c, block_sum, block_sq, block_n, blocks, var_block, inv_sd = state["long_run"]
        det._var_c, det._block_sum, det._var_block = (
            float(var_c),
            float(block_sum),
            float(var_block),
        )
        det._block_sq = float(block_sq)
        det._block_n, det._blocks, det._inv_sd = int(block_n), int(blocks), float(inv_sd)
        tu, td = state["tail"]
        det._tail_up = [float(v) for v in tu]
        det._tail_down = [float(v) for v in td]
        det._alpha, det._h, det._floor = (float(v) for v in state["calibration"])
        b = state["baseline"]
        det._baseline = None if b is None else float(b)
        det._load_alarm(state)
        return det
