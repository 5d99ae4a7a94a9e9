"""Shared machinery of the evidence detectors (`binomial` for k of n, `logmean` per call).

Both detectors test the same thing: over a window of W minutes, is the sum X of what the
calls brought (bad events, or log values) above its expectation E by more than chance
allows? Every call counts once (the detector adds up per-tick increments, `TickStats`, into
one-minute slots), and three windows (5, 30 and 120 minutes by default) let weak evidence
add up: 4 refusals in 50 calls say little, 29 in 300 where 6 were expected say a lot.

Expectation. A seasonal profile of the per-call mean and second moment (pooled, decayed
sums [calls, sum, sum of squares] per hour of week, hour of day and globally, blended by
bucket counts and shrunk by the evidence each bucket holds (`_Profile`), interpolated
between hour centres, as `RateDetector` pools k and n). Each
closed minute stores its expected sum `E = n * mean(ts)` and variance `V = n * var(ts)`, so
a window spanning a daily ramp is tested against the ramp, not against one hour.

Overdispersion. Calls are not independent (bursts of near-identical requests, a slow hour
of the provider, the profile's own error), so the variance of X is phi_W * V, with one phi
per window length learned from clean history: at the end of each non-overlapping block of W
minutes, r = (X - E)^2 / V (a Pearson residual; 1 on average for independent calls) joins an
exponentially weighted mean (half-life one day of blocks, at least 8 blocks; prior 1 with
the weight of 4 blocks; each r capped at 25; blocks that overlap an alarm are not learned).

False-alarm budget (CONVENTIONS 13). The detector is given `budget`: false firings per
series per 30 days of clean traffic, split evenly over the m windows and the sides tested.
A window's z is a moving sum read every 15-s tick (step d = 0.25 min): consecutive reads
of a W-minute window correlate 1 - d/W, a process that is locally a random walk, so a high
level u is first passed far more often than once per W minutes. The rate of first passages
per read is Psi(u) h(a) with a = u^2 d / W (`_first_passage`): h(a) = a for a continuously
read window (Pickands' constant 1 for this correlation), corrected for reading it at
discrete steps by Siegmund's factor exp(-0.5826 sqrt(2a)), and never above the chance that
one read is an upcrossing, erf(sqrt(a)/2). Each window's threshold u solves

    (43,200 / d) * Psi(u) * h(u^2 d / W) = budget / (m * sides)

(budget 0.25, W = 5, 30, 120, one side: alpha = Psi(u) = 1.0e-6, 4.1e-6, 1.6e-5; z = 4.75,
4.46, 4.16). The first version counted T/W chances times 2 (z = 4.43, 4.02, 3.68); on
independent synthetic calls without effect floors it fired 4-6 times its budget at 10-40
calls/min, as this formula predicts, and 1.5 per feature-week on the evaluation worlds' clean
days against 0.76 designed (docs/detectors.md). Significance alone never fires: an effect
size floor (subclass) stops a 1.1x drift at huge volume.

Alarm: fire after `for_n` consecutive significant updates; clear after `clear_n`
consecutive updates where the shortest window's z is below `clear` and the shortest window
holding at least 10 calls shows less than half the effect floor. On clearing the windows
are emptied (evidence starts again), so the long windows, which still hold the fault, do not
fire again at once. A minute is learned 30 minutes after it closed, if no alarm was
pending or firing since (see `_learn_minute`); the price is the one
`RateDetector` documents (a regime first met while firing stays firing until it clears).

Memory: a ring of max(W) one-minute slots x 5 numbers, the profile (4 x 193 numbers plus
counts) and 3 numbers per window: fixed whatever the traffic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from detectors.base import TickStats, Transition
from detectors.ewma import _Alarm, _alpha, _check_int, _check_nonneg, _check_version
from detectors.seasonal import EPOCH_WEEK_OFFSET_H, HOURS_PER_WEEK

STATE_VERSION = 1
MINUTES_PER_30D = 43_200.0
READ_MIN = 0.25  # the windows are read every 15-s tick
SIEGMUND = 0.5826  # Siegmund's correction for a random walk read at discrete steps
SLOT_S = 60.0
PHI_PRIOR = 1.0
PHI_PRIOR_WEIGHT = 4.0
PHI_R_CAP = 25.0
CALM_CALLS = 10.0
_COUNT_CAP = 1 << 30


def _first_passage(a: float) -> float:
    """First passages of level u per read, over Psi(u), for a = u^2 * step / window."""
    return min(a * math.exp(-SIEGMUND * math.sqrt(2.0 * a)), math.erf(math.sqrt(a) / 2.0))


def window_alpha(
    budget: float, window_min: float, n_windows: int, sides: int = 1, read_min: float = READ_MIN
) -> float:
    """One window's one-sided p-value threshold for `budget` false firings per 30 days (the
    module doc's first-passage equation, solved for u by bisection)."""
    from scipy.special import ndtr

    target = budget / (n_windows * sides) * read_min / MINUTES_PER_30D
    lo, hi = 0.0, 40.0
    for _ in range(60):
        u = 0.5 * (lo + hi)
        if float(ndtr(-u)) * _first_passage(u * u * read_min / window_min) > target:
            lo = u
        else:
            hi = u
    return float(ndtr(-hi))


def z_of_p(p: float) -> float:
    """The one-sided normal z of a p-value (0 for p >= 0.5, capped at 40)."""
    if p >= 0.5:
        return 0.0
    if p <= 1e-300:
        return 40.0
    from scipy.special import ndtri

    return min(40.0, float(-ndtri(p)))


class _Profile:
    """Pooled, decayed [weight, sum, sum of squares, sum of cubes] per hour of week, hour of
    day and globally.

    Expected per-call moments at `ts`: the global raw moments, moved toward the hour of day's
    by min(1, count / full_n), then toward the hour of week's; variance and third cumulant
    come from the blended raw moments, so disagreement between levels widens them."""

    __slots__ = ("bkeep", "d", "dc", "full_n", "g", "gc", "gkeep", "prior", "rate", "w", "wc")

    def __init__(
        self, bucket_half_life: float, half_life: float, full_n: int, prior: float, rate: bool
    ) -> None:
        self.bkeep = 1.0 - _alpha(bucket_half_life, None, "bucket_half_life")
        self.gkeep = 1.0 - _alpha(half_life, None)
        self.full_n = full_n
        # Shrinkage: a bucket moves the expectation by w / (w + m) of its pooled calls w,
        # m = `prior` calls, or for a rate `prior` expected events (m = prior / p): at 2
        # calls/min an hour bucket holds ~2 failures at 1%, which must not set the rate.
        self.prior = prior
        self.rate = rate
        self.w = [[0.0, 0.0, 0.0, 0.0] for _ in range(HOURS_PER_WEEK)]
        self.wc = [0] * HOURS_PER_WEEK
        self.d = [[0.0, 0.0, 0.0, 0.0] for _ in range(24)]
        self.dc = [0] * 24
        self.g = [0.0, 0.0, 0.0, 0.0]
        self.gc = 0

    def _at(self, hour: int) -> tuple[float, float, float]:
        g = self.g
        m1, m2, m3 = g[1] / g[0], g[2] / g[0], g[3] / g[0]
        full = self.full_n
        d = hour % 24
        if not self.dc[d]:  # first day: an hour not seen yet looks like the hour before it
            d = (hour - 1) % 24
        for pool, c in (
            (self.d[d], self.dc[d]),
            (
                self.w[(hour + EPOCH_WEEK_OFFSET_H) % HOURS_PER_WEEK],
                self.wc[(hour + EPOCH_WEEK_OFFSET_H) % HOURS_PER_WEEK],
            ),
        ):
            w = pool[0]
            if c and w > 0.0:
                f = 1.0 if c >= full else c / full
                m = self.prior / (m1 if m1 > 1e-3 else 1e-3) if self.rate else self.prior
                shrink = w / (w + m)
                f = f if f < shrink else shrink
                m1 += f * (pool[1] / pool[0] - m1)
                m2 += f * (pool[2] / pool[0] - m2)
                m3 += f * (pool[3] / pool[0] - m3)
        return m1, m2, m3

    def expect(self, ts: float) -> tuple[float, float, float]:
        """Per-call mean, variance and third cumulant expected at `ts` (the global pool must
        be non-empty)."""
        pos = ts / 3600.0 - 0.5
        h0 = math.floor(pos)
        f = pos - h0
        a1, a2, a3 = self._at(h0)
        b1, b2, b3 = self._at(h0 + 1)
        m1 = a1 + f * (b1 - a1)
        m2 = a2 + f * (b2 - a2)
        m3 = a3 + f * (b3 - a3)
        return m1, max(m2 - m1 * m1, 0.0), m3 - 3.0 * m1 * m2 + 2.0 * m1 * m1 * m1

    def learn(self, ts: float, n: float, s1: float, s2: float, s3: float) -> None:
        hour = int(ts // 3600)
        k = self.gkeep
        g = self.g
        g[0] = g[0] * k + n
        g[1] = g[1] * k + s1
        g[2] = g[2] * k + s2
        g[3] = g[3] * k + s3
        self.gc = min(self.gc + 1, _COUNT_CAP)
        k = self.bkeep
        d = hour % 24
        wk = (hour + EPOCH_WEEK_OFFSET_H) % HOURS_PER_WEEK
        for pool in (self.d[d], self.w[wk]):
            pool[0] = pool[0] * k + n
            pool[1] = pool[1] * k + s1
            pool[2] = pool[2] * k + s2
            pool[3] = pool[3] * k + s3
        self.dc[d] = min(self.dc[d] + 1, _COUNT_CAP)
        self.wc[wk] = min(self.wc[wk] + 1, _COUNT_CAP)

    def to_state(self) -> dict[str, Any]:
        return {"w": self.w, "wc": self.wc, "d": self.d, "dc": self.dc, "g": self.g, "gc": self.gc}

    def load(self, st: dict[str, Any]) -> None:
        if len(st["w"]) != HOURS_PER_WEEK or len(st["d"]) != 24 or len(st["wc"]) != 168:
            raise ValueError("evidence profile has the wrong number of buckets")
        self.w = [[float(x) for x in p] for p in st["w"]]
        self.wc = [int(x) for x in st["wc"]]
        self.d = [[float(x) for x in p] for p in st["d"]]
        self.dc = [int(x) for x in st["dc"]]
        self.g = [float(x) for x in st["g"]]
        self.gc = int(st["gc"])


class EvidenceBase(_Alarm):
    """One-minute slots, windows, blocks for phi, the profile and the alarm (see module doc).

    Subclasses say what one tick brings (`_increment`), how significant a window is
    (`_window_z`) and how a learned minute is clipped (`_clip_minute`)."""

    sides: int = 1
    prior_weight: float = 30.0  # profile shrinkage (`_Profile`): calls, or for rates events
    prior_is_events: bool = False

    def _init_evidence(
        self,
        windows_min: Sequence[int],
        budget: float,
        clear: float,
        for_n: int,
        clear_n: int,
        warmup: int,
        bucket_half_life: float,
        half_life: float,
        full_n: int,
        learn_lag_min: int,
    ) -> None:
        ws = tuple(windows_min)
        if not ws or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in ws):
            raise ValueError(f"windows_min must be positive whole minutes, got {windows_min!r}")
        if list(ws) != sorted(set(ws)) or ws[-1] > 1440:
            raise ValueError(f"windows_min must be increasing and <= 1440, got {windows_min!r}")
        if not (budget > 0 and math.isfinite(budget)):
            raise ValueError(f"budget must be > 0 false firings per 30 days, got {budget!r}")
        _check_nonneg("clear", clear)
        _check_int("warmup", warmup, 1)
        _check_int("full_n", full_n, 1)
        _check_int("learn_lag_min", learn_lag_min, 1)
        if learn_lag_min > ws[-1]:
            raise ValueError(f"learn_lag_min must be <= max(windows_min), got {learn_lag_min!r}")
        self.learn_lag_min = learn_lag_min
        self._init_alarm(for_n, clear_n)
        self.windows_min = list(ws)
        self.budget = float(budget)
        self.clear = float(clear)
        self.warmup = warmup
        self.bucket_half_life = float(bucket_half_life)
        self.half_life = float(half_life)
        self.full_n = full_n
        m = len(ws)
        from scipy.special import ndtri

        self._alphas = [window_alpha(budget, w, m, self.sides) for w in ws]
        self._z = [float(-ndtri(a)) for a in self._alphas]
        self._phi_keep = [0.5 ** (1.0 / max(8.0, 1440.0 / w)) for w in ws]
        self._profile = _Profile(
            bucket_half_life, half_life, full_n, self.prior_weight, self.prior_is_events
        )
        self._size = ws[-1]
        self._reset_windows()
        # Per window: decayed sum of r and of weights; the open block's [X, E, V] and taint.
        self._phi_sum = [0.0] * m
        self._phi_w = [0.0] * m
        self._phi = [PHI_PRIOR] * m  # cached from the two above (`_update_phi`)
        self._blk = [[0.0, 0.0, 0.0] for _ in ws]
        self._blk_bad = [False] * m
        self._minute: int | None = None
        self._alarm_minute = -1  # the last minute the alarm was firing or pending
        # Set by a one-sided subclass when a window is significant on the side it does not
        # alarm on: that minute is not learned, or the return to normal would fire.
        self._suspect = False
        self._mean = 0.0  # expected per-call mean, variance, third cumulant, open minute
        self._var = 0.0
        self._k3 = 0.0
        self._ready = False
        self._last_z = 0.0

    def _reset_windows(self) -> None:
        # slot = [N, X, E, V, K3, X2, X3, SUSPECT]: calls, sum, expected sum, expected
        # variance and third cumulant of the sum, sums of squares and cubes (for learning),
        # and 1 when a window was near significance as the minute closed. Window sums hold
        # the first five.
        self._slots = [[0.0] * 8 for _ in range(self._size)]
        self._sums = [[0.0, 0.0, 0.0, 0.0, 0.0] for _ in self.windows_min]
        self._verdict: tuple[float, int, bool, float] | None = None

    def phi(self, i: int) -> float:
        """The learned overdispersion of window `i` (at least 1)."""
        return self._phi[i]

    def _update_phi(self, i: int) -> None:
        phi = (PHI_PRIOR * PHI_PRIOR_WEIGHT + self._phi_sum[i]) / (
            PHI_PRIOR_WEIGHT + self._phi_w[i]
        )
        self._phi[i] = phi if phi > 1.0 else 1.0

    # ---- subclass hooks ------------------------------------------------------------------

    def _increment(
        self, value: float, n: int | None, tick: TickStats | None
    ) -> tuple[float, float, float, float] | None:
        """(calls, sum, sum of squares, sum of cubes) this update brings, or None."""
        raise NotImplementedError

    def _window_z(self, i: int, s: list[float]) -> tuple[float, int]:
        """Signed-side z of window `i` (sums `s` = [N, X, E, V, K3]) and the side (+1/-1);
        0 when the effect is below the floor."""
        raise NotImplementedError

    def _clip_minute(
        self, n: float, x: float, x2: float, x3: float, e: float, v: float
    ) -> tuple[float, float, float]:
        """The minute's (sum, sum of squares, sum of cubes) to learn, clipped near its
        expected sum `e` (variance `v`)."""
        raise NotImplementedError

    def _baseline_value(self) -> float:
        raise NotImplementedError

    def _calm_effect(self, s: list[float]) -> bool:
        """Whether window sums `s` show less than half the effect floor (clearing)."""
        raise NotImplementedError

    def _adjust(self, mean: float, var: float, k3: float) -> tuple[float, float, float]:
        """Floors on the expected per-call moments (subclass policy)."""
        return mean, var, k3

    # ---- the update ------------------------------------------------------------------------

    def _learn_minute(self, minute: int, slot: list[float]) -> None:
        """Learn a minute `learn_lag_min` minutes after it closed into the profile, if no
        alarm was firing or pending since.

        The lag is what keeps a fault's first minutes out of its own expectation: a 3x
        refusal rate at 10 calls/min takes ~30 minutes to become significant, and learning
        its minutes as they closed would raise the expectation a third of the way
        meanwhile. (Skipping minutes while some window was near significance, z >= 3, was
        tried and dropped: at 2 calls/min it skips the minutes that hold failures, the
        expected rate comes out low and clean traffic fired 2 times a week.) The price:
        the profile follows a real change of level half an hour late, which an
        hour-of-week profile does anyway; on the first day an hour not seen yet borrows the
        hour before it."""
        n = slot[0]
        if n <= 0.0 or slot[7] or minute <= self._alarm_minute:
            return
        slot[7] = 1.0  # learned once (a slot flagged 1 is skipped: learned or suspect)
        x, x2, x3 = slot[1], slot[5], slot[6]
        if slot[2] > 0.0 or slot[3] > 0.0:  # an expectation existed: Huber-style clip
            x, x2, x3 = self._clip_minute(n, x, x2, x3, slot[2], slot[3])
        self._profile.learn(minute * SLOT_S + 30.0, n, x, x2, x3)

    def _flush_ring(self, cur: int) -> None:
        """Learn every minute still in the ring (up to `cur`), then empty the windows."""
        size = self._size
        for j in range(cur - self.learn_lag_min + 1, cur + 1):
            self._learn_minute(j, self._slots[j % size])
        self._reset_windows()

    def _close_minute(self, minute: int) -> None:
        """Mark the closed minute for learning and add it to the phi blocks."""
        slot = self._slots[minute % self._size]
        x, e, v = slot[1], slot[2], slot[3]
        quiet = not self._firing and not self._pending
        if not quiet:
            self._alarm_minute = minute
        if self._suspect:
            slot[7] = 1.0
            self._suspect = False
        if self._ready:
            for i, w in enumerate(self.windows_min):
                blk = self._blk[i]
                blk[0] += x
                blk[1] += e
                blk[2] += v
                if not quiet:
                    self._blk_bad[i] = True
                if (minute + 1) % w == 0:
                    self._end_block(i, blk)

    def _end_block(self, i: int, blk: list[float]) -> None:
        if not self._blk_bad[i] and blk[2] >= 1.0:
            d = blk[0] - blk[1]
            r = d * d / blk[2]
            keep = self._phi_keep[i]
            self._phi_sum[i] = self._phi_sum[i] * keep + (r if r < PHI_R_CAP else PHI_R_CAP)
            self._phi_w[i] = self._phi_w[i] * keep + 1.0
            self._update_phi(i)
        blk[0] = blk[1] = blk[2] = 0.0
        self._blk_bad[i] = False

    def _roll(self, ts: float, minute: int) -> None:
        """Close minutes up to `minute` (exclusive) and open `minute`."""
        cur = self._minute
        size = self._size
        if cur is not None:
            self._close_minute(cur)
            if minute - cur > size:
                self._flush_ring(cur)
            else:
                slots, sums, ws = self._slots, self._sums, self.windows_min
                lag = self.learn_lag_min
                for j in range(cur + 1, minute + 1):
                    self._learn_minute(j - lag, slots[(j - lag) % size])
                    for i, w in enumerate(ws):
                        old = slots[(j - w) % size]
                        s = sums[i]
                        s[0] -= old[0]
                        s[1] -= old[1]
                        s[2] -= old[2]
                        s[3] -= old[3]
                        s[4] -= old[4]
                    slots[j % size] = [0.0] * 8
        self._minute = minute
        ready = self._profile.gc >= self.warmup and self._profile.g[0] > 0.0
        if ready and not self._ready and cur is not None:
            self._flush_ring(cur)  # windows filled before the profile had no expectation
        self._ready = ready
        if ready:
            self._mean, self._var, self._k3 = self._adjust(*self._profile.expect(ts))
        self._verdict = None

    def update(
        self, ts: float, value: float, n: int | None = None, tick: TickStats | None = None
    ) -> Transition | None:
        inc = self._increment(value, n, tick)
        if inc is None or not math.isfinite(ts):
            return None  # bad input changes nothing, not even the clock
        minute = int(ts // SLOT_S)
        if self._minute is None or minute > self._minute:
            self._roll(ts, minute)
        dn, dx, dx2, dx3 = inc
        if dn > 0.0:
            de = dn * self._mean
            dv = dn * self._var
            dk = dn * self._k3
            slot = self._slots[self._minute % self._size]  # type: ignore[operator]
            slot[0] += dn
            slot[1] += dx
            slot[2] += de
            slot[3] += dv
            slot[4] += dk
            slot[5] += dx2
            slot[6] += dx3
            for s in self._sums:
                s[0] += dn
                s[1] += dx
                s[2] += de
                s[3] += dv
                s[4] += dk
            self._verdict = None
        if not self._ready:
            return None
        verdict = self._verdict
        if verdict is None:
            verdict = self._verdict = self._test_windows()
        best, best_sign, anomalous, first_z = verdict
        self._last_z = best
        if self._firing or self._pending:
            self._alarm_minute = minute
        calm = self._firing and first_z < self.clear and self._calm_now()
        out = self._judge(ts, value, self._baseline_value(), best, best_sign, anomalous, calm)
        if out is not None and out.state == "cleared":
            self._reset_windows()
        return out

    def _test_windows(self) -> tuple[float, int, bool, float]:
        """(best z, its side, whether some window is significant, the shortest window's z).

        `update` keeps the verdict until the windows change (a call arrives or a minute
        rolls): a tick without calls re-reads it, which makes the 15-s ticks of a quiet
        feature cheap without changing any decision."""
        best, best_sign = 0.0, 1
        anomalous = False
        zs = self._z
        first_z = 0.0
        for i, s in enumerate(self._sums):
            z, sign = self._window_z(i, s)
            if i == 0:
                first_z = z
            if z > best:
                best, best_sign = z, sign
            if z >= zs[i] and not anomalous:
                anomalous, best_sign = True, sign
        return best, best_sign, anomalous, first_z

    def _calm_now(self) -> bool:
        """Clearing looks at the shortest window holding at least CALM_CALLS calls (the
        longest if none does): its effect must be below half the floor. An empty window
        says nothing, so it is not calm (a series that stops is cleared as stale)."""
        sums = self._sums
        for s in sums:
            if s[0] >= CALM_CALLS:
                return self._calm_effect(s)
        last = sums[-1]
        return last[0] > 0.0 and self._calm_effect(last)

    # ---- state ---------------------------------------------------------------------------

    def _evidence_state(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "kind": getattr(self, "kind", ""),
            "params": self._params(),
            "profile": self._profile.to_state(),
            "slots": self._slots,
            "sums": self._sums,
            "phi": [self._phi_sum, self._phi_w],
            "blk": [self._blk, self._blk_bad],
            "minute": self._minute,
            "alarm_minute": self._alarm_minute,
            "suspect": self._suspect,
            "expect": [self._mean, self._var, self._k3],
            "ready": self._ready,
            **self._alarm_state(),
        }

    def _load_evidence(self, state: dict[str, Any]) -> None:
        _check_version(state, str(state.get("kind")), STATE_VERSION)
        self._profile.load(state["profile"])
        slots, sums = state["slots"], state["sums"]
        m = len(self.windows_min)
        if len(slots) != self._size or len(sums) != m or len(state["phi"][0]) != m:
            raise ValueError("evidence state does not match its windows")
        self._slots = [[float(x) for x in s] for s in slots]
        self._sums = [[float(x) for x in s] for s in sums]
        self._phi_sum = [float(x) for x in state["phi"][0]]
        self._phi_w = [float(x) for x in state["phi"][1]]
        for i in range(m):
            self._update_phi(i)
        self._blk = [[float(x) for x in b] for b in state["blk"][0]]
        self._blk_bad = [bool(x) for x in state["blk"][1]]
        minute = state["minute"]
        self._minute = None if minute is None else int(minute)
        self._alarm_minute = int(state["alarm_minute"])
        self._suspect = bool(state["suspect"])
        self._mean, self._var, self._k3 = (float(x) for x in state["expect"])
        self._ready = bool(state["ready"])
        self._verdict = None
        self._load_alarm(state)
