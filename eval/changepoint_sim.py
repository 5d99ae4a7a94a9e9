"""How often the change-point search puts a fault's start where it was, on simulated series.

    python eval/changepoint_sim.py [--lookback 240] [--seeds 120]

Each case is a metric's per-minute bins before a detection: `--lookback` minutes, a Poisson
number of observations per bin (0.5, 2, 6 or 20 a minute), Gaussian noise of one unit per
observation, and a fall of 0.6 or 1.5 units that is either a step or a 60-min ramp. Steps are
detected 5, 20 or 60 min after they start, ramps 40, 70 or 100 min. When the search names no
change the start is the detection time, as in the correlator's fallback.

It prints, for the search's threshold over the m starts (2·ln(m/α), the default since
2026-12-01) and over the m² placements of two breakpoints (2·ln(m²/α), before), the share of
starts within 5 min for steps and within 15 min for ramps (the targets of issue 11).

Then, per rate, ramps placed by the search against an estimator told the ramp's exact shape
(a straight 60-min fall, `told_the_shape`): what knowing the shape would buy, roughly a
ceiling for a search that does not know it.

Then shares of calls: failures go from 1% to 15% or 50% at 0.5, 1, 2.4 or 6 calls a minute,
detected 5, 20 or 60 min in; the share of starts within 5 min and of fits that are pulses
(the outage did not end), by least squares and by the binomial likelihood (`proportion`,
what the correlator uses for shares since 2026-12-02).

Last, calls partly in batches (3% of the minutes hold a batch of about 20 near-identical
calls that share one value) at 0.5, 2 or 6 calls a minute: steps and ramps as above, the
bins weighted by their calls (before 2026-12-02) or by 1/(τ² + σ²/n) with the shared noise τ²
estimated from the series (`_shared_noise_weights`). The lookback defaults to the
correlator's 4 h.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import correlator.changepoint as changepoint
from correlator.changepoint import Bin, estimate

ALPHA = 0.01
RATES = (0.5, 2.0, 6.0, 20.0)
SHIFTS = (0.6, 1.5)
DELAYS = {"step": (5, 20, 60), "ramp": (40, 70, 100)}
TOLERANCE_MIN = {"step": 5.0, "ramp": 15.0}
RAMP_MIN = 60
BATCH_P = 0.03  # a batch arrives in 3% of the minutes (the last table)
BATCH_MEAN = 20.0  # calls per batch (geometric)


def series(
    rng: np.random.Generator,
    shape: str,
    per_min: float,
    shift: float,
    delay: int,
    lookback: int,
    batch_p: float = 0.0,
) -> tuple[list[Bin], int]:
    """Bins of one case and the minute its change started (the detection is at `lookback`).
    `batch_p`: the share of minutes that also hold a batch of geometric size (mean
    `BATCH_MEAN`) whose calls all have one value."""
    start = lookback - delay
    bins = []
    for i in range(lookback + 1):
        if shape == "ramp":
            level = -shift * min(max((i - start) / RAMP_MIN, 0.0), 1.0)
        else:
            level = -shift if i >= start else 0.0
        n = int(rng.poisson(per_min))
        total = n * float(rng.normal(level, 1.0 / np.sqrt(n))) if n else 0.0
        if batch_p and rng.random() < batch_p:
            size = int(rng.geometric(1.0 / BATCH_MEAN))
            total += size * float(rng.normal(level, 1.0))
            n += size
        if n:
            bins.append(Bin(i * 60.0, total / n, n))
    return bins, start


def share_within(
    shape: str,
    lookback: int,
    seeds: int,
    placements: str = "m",
    rates: tuple[float, ...] = RATES,
    batch_p: float = 0.0,
) -> float:
    """Share of cases of `shape` whose estimated start is within its tolerance, at the
    threshold over m starts or m² placements, over `rates`, with `batch_p` (`series`)."""
    hits = total = 0
    for per_min in rates:
        for shift in SHIFTS:
            for delay in DELAYS[shape]:
                for seed in range(seeds):
                    rng = np.random.default_rng(seed)
                    bins, start = series(rng, shape, per_min, shift, delay, lookback, batch_p)
                    m = sum(1 for b in bins if b.n > 0)
                    # 2·ln(m²/α) is 2·ln(m/α') with α' = α/m.
                    alpha = ALPHA if placements == "m" else ALPHA / max(m, 1)
                    cp = estimate(bins, direction=-1, not_after=lookback * 60.0, alpha=alpha)
                    found = lookback if cp is None else cp.start / 60.0
                    hits += abs(found - start) <= TOLERANCE_MIN[shape]
                    total += 1
    return hits / total


SHARE_RATES = (0.5, 1.0, 2.4, 6.0)
SHARE_AFTER = (0.15, 0.5)
SHARE_BEFORE = 0.01


def shares(lookback: int, seeds: int, proportion: bool) -> tuple[float, float]:
    """(share of starts within 5 min, share of fits that are pulses) of sustained steps in
    a share of calls, searched as shares (`proportion`) or by least squares."""
    hits = pulses = total = 0
    for per_min in SHARE_RATES:
        for after in SHARE_AFTER:
            for delay in DELAYS["step"]:
                for seed in range(seeds):
                    rng = np.random.default_rng(seed)
                    start = lookback - delay
                    bins = []
                    for i in range(lookback + 1):
                        n = int(rng.poisson(per_min))
                        if n:
                            p = after if i >= start else SHARE_BEFORE
                            bins.append(Bin(i * 60.0, rng.binomial(n, p) / n, n))
                    cp = estimate(
                        bins, direction=1, not_after=lookback * 60.0, proportion=proportion
                    )
                    found = lookback if cp is None else cp.start / 60.0
                    hits += abs(found - start) <= TOLERANCE_MIN["step"]
                    pulses += cp is not None and cp.shape == "pulse"
                    total += 1
    return hits / total, pulses / total


def batched(lookback: int, seeds: int, shared: bool) -> tuple[float, float]:
    """(steps within 5 min, ramps within 15 min) when some calls come in batches of
    near-identical requests: a batch's calls share one draw, so its bin has the spread of
    one call. `shared`: the search's weights 1/(τ² + σ²/n) (`_shared_noise_weights`), else
    weights n, as before 2026-12-02."""
    keep = changepoint._shared_noise_weights
    if not shared:
        changepoint._shared_noise_weights = lambda *_args: None
    try:
        step = share_within("step", lookback, seeds, rates=RATES[:3], batch_p=BATCH_P)
        ramp = share_within("ramp", lookback, seeds, rates=RATES[:3], batch_p=BATCH_P)
        return step, ramp
    finally:
        changepoint._shared_noise_weights = keep


def told_the_shape(bins: list[Bin], not_after: float) -> float:
    """The start of a ramp by an estimator told what the search is not: the change is a
    straight fall over exactly `RAMP_MIN` minutes, then held. Least squares over the start
    (levels free, weights n), the median of the start's posterior. It has information the
    search lacks, so its share is roughly a ceiling for the search's."""
    t = np.array([b.ts for b in bins]) / 60.0
    x = np.array([b.mean for b in bins])
    w = np.array([b.n for b in bins], dtype=float)
    starts = t[t <= not_after / 60.0]
    gains = np.full(len(starts), -np.inf)
    big_w = w.sum()
    x_bar = float(w @ x) / big_w
    for i, tk in enumerate(starts):
        u = np.clip((t - tk) / RAMP_MIN, 0.0, 1.0)
        u_bar = float(w @ u) / big_w
        var = float(w @ (u - u_bar) ** 2)
        cov = float(w @ ((u - u_bar) * (x - x_bar)))
        if var > 1e-12 and cov < 0:  # a fall
            gains[i] = cov * cov / var
    if not np.isfinite(gains).any():
        return not_after
    sigma2 = (float(w @ (x - x_bar) ** 2) - gains.max()) / max(len(x) - 3, 1)
    post = np.exp((gains - gains.max()) / (2.0 * max(sigma2, 1e-12)))
    cum = np.cumsum(post)
    return float(starts[int(np.searchsorted(cum, 0.5 * cum[-1]))]) * 60.0


def ramp_bound(lookback: int, seeds: int) -> list[tuple[str, float, float]]:
    """Per rate: ramps within 15 min by the search (`share_within`) and by
    `told_the_shape`, on the same series."""
    rows = []
    for per_min in RATES:
        told = total = 0
        for shift in SHIFTS:
            for delay in DELAYS["ramp"]:
                for seed in range(seeds):
                    rng = np.random.default_rng(seed)
                    bins, start = series(rng, "ramp", per_min, shift, delay, lookback)
                    bound = told_the_shape(bins, lookback * 60.0) / 60.0
                    told += abs(bound - start) <= TOLERANCE_MIN["ramp"]
                    total += 1
        ours = share_within("ramp", lookback, seeds, rates=(per_min,))
        rows.append((f"{per_min:g} a minute", ours, told / total))
    return rows


def _table(header: str, rows: list[tuple[str, float, float]]) -> None:
    print(header)
    print("|---|---|---|")
    for label, first, second in rows:
        print(f"| {label} | {first:.0%} | {second:.0%} |")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lookback", type=int, default=240, help="minutes of bins before detection")
    ap.add_argument("--seeds", type=int, default=120, help="seeds per case")
    args = ap.parse_args()
    look, seeds = args.lookback, args.seeds
    print(f"lookback {look} min, {seeds} seeds per case")
    _table(
        "| threshold | steps within 5 min | ramps within 15 min |",
        [
            (label, share_within("step", look, seeds, p), share_within("ramp", look, seeds, p))
            for p, label in (("m2", "2·ln(m²/α), before"), ("m", "2·ln(m/α), now"))
        ],
    )
    _table(
        "| ramps within 15 min, observations | the search | told the shape (a bound) |",
        ramp_bound(look, seeds),
    )
    _table(
        "| shares of calls, searched by | steps within 5 min | fitted as pulses |",
        [
            (label, *shares(look, seeds, proportion))
            for proportion, label in ((False, "least squares"), (True, "binomial likelihood"))
        ],
    )
    _table(
        "| calls partly in batches, weighted by | steps within 5 min | ramps within 15 min |",
        [
            (label, *batched(look, seeds, shared))
            for shared, label in ((False, "n"), (True, "1/(τ² + σ²/n) when τ² > 0"))
        ],
    )


if __name__ == "__main__":
    main()
