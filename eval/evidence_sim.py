"""Statistical check of the evidence detectors (`binomial`, `logmean`) on synthetic calls.

Clean streams: Poisson calls at 0.5-120 calls/min at the daily peak (30% at night, a
weekend dip), 15-s ticks fed as `TickStats` exactly as the aggregator sends them. Rates:
binomial, or beta-binomial (per-minute rate drawn from a beta with intra-minute correlation
0.02) with a daily cycle of the base rate. Per-call values: lognormal (sigma 0.45) or Pareto
(alpha 2.5) with a daily cycle of the median. Faults (at a flat call rate): provider
outage (30% failing), refusals x3, latency per token +40%, input tokens +50%; delay =
first firing after onset.

    python eval/evidence_sim.py            # full: 3 seeds x 14 days per stream
    python eval/evidence_sim.py --quick    # 1 seed x 9 days
    python eval/evidence_sim.py --calibration [--seeds 12]   # the budget, floors off

`--calibration` checks the false-alarm budget itself: with the effect floors off only
significance decides, so independent clean calls must fire about `budget` (0.25) times per
30 days per series (lognormal values and 2% binomial rates at 2, 10 and 40 calls/min, 32-day
streams, the first 2 days not counted).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors import TickStats, build_detector

T0 = 1_767_571_200.0  # Monday 2026-01-05 00:00 UTC
TICK = 15.0
DAY = 86_400.0


def traffic(ts: np.ndarray, peak_per_min: float, flat: bool = False) -> np.ndarray:
    """Expected calls per tick: daily cycle peaking 14:00 UTC, weekend at 60% (`flat`: the
    same rate all the time, so a fault's delay is measured at the rate it is labelled)."""
    if flat:
        return np.full(len(ts), peak_per_min * TICK / 60.0)
    hour = (ts % DAY) / 3600.0
    shape = 0.65 + 0.35 * np.cos(2 * np.pi * (hour - 14.0) / 24.0)
    weekday = ((ts - T0) // DAY) % 7
    shape = np.where(weekday >= 5, 0.6 * shape, shape)
    return peak_per_min * shape * TICK / 60.0


def cycle(ts: np.ndarray, amp: float) -> np.ndarray:
    hour = (ts % DAY) / 3600.0
    return 1.0 + amp * np.cos(2 * np.pi * (hour - 3.0) / 24.0)


def rate_ticks(
    rng: np.random.Generator,
    days: float,
    rpm: float,
    p0: float,
    overdisp: bool,
    fault: tuple[float, float, float] | None,
) -> Iterator[tuple[float, TickStats]]:
    """(ts, k of n) per tick; fault = (start_s, end_s, failing_rate_or_multiplier<0)."""
    ts = T0 + np.arange(int(days * DAY / TICK)) * TICK
    n = rng.poisson(traffic(ts, rpm, fault is not None))
    p = np.minimum(p0 * cycle(ts, 0.5), 0.5)
    if overdisp:  # the rate wanders minute to minute (beta, ICC 0.02 within a minute)
        minute = ((ts - T0) // 60).astype(int)
        first = np.searchsorted(minute, np.arange(minute[-1] + 1))
        scale = 1.0 / 0.02 - 1.0
        pm = rng.beta(p[first] * scale, (1 - p[first]) * scale)
        p = pm[minute]
    if fault is not None:
        a, b, level = fault
        inside = (ts >= T0 + a) & (ts < T0 + b)
        p = np.where(inside, (-level * p) if level < 0 else level, p)
    k = rng.binomial(n, np.clip(p, 0, 1))
    for t, ni, ki in zip(ts, n, k, strict=True):
        yield float(t), TickStats(int(ni), int(ki))


def value_ticks(
    rng: np.random.Generator,
    days: float,
    rpm: float,
    dist: str,
    fault: tuple[float, float, float] | None,
) -> Iterator[tuple[float, TickStats]]:
    ts = T0 + np.arange(int(days * DAY / TICK)) * TICK
    n = rng.poisson(traffic(ts, rpm, fault is not None))
    med = 500.0 * cycle(ts, 0.3)
    if fault is not None:
        a, b, mult = fault
        med = np.where((ts >= T0 + a) & (ts < T0 + b), med * mult, med)
    for t, ni, m in zip(ts, n, med, strict=True):
        if ni == 0:
            yield float(t), TickStats(0)
            continue
        if dist == "lognormal":
            x = m * np.exp(0.45 * rng.standard_normal(ni))
        else:  # Pareto, alpha 2.5, median m
            x = m / 2 ** (1 / 2.5) * (1 + rng.pareto(2.5, ni))
        y = np.log1p(x)
        yield (
            float(t),
            TickStats(int(ni), 0, float(y.sum()), float((y * y).sum()), float((y**3).sum())),
        )


def run(
    kind: str,
    params: dict[str, object],
    ticks: Iterator[tuple[float, TickStats]],
    measure_from: float,
) -> list[float]:
    det = build_detector(kind, params)
    down = params.get("direction") == "down"
    fires = []
    for t, tick in ticks:
        if down:  # the generators count failures; a "down" metric counts successes
            tick = TickStats(tick.n, tick.n - tick.k)
        tr = det.update(t, 0.0, tick.n, tick)
        if tr is not None and tr.state == "firing" and t >= T0 + measure_from:
            fires.append(t - T0)
    return fires


RATE = {"direction": "up", "min_ratio": 1.5, "min_abs_diff": 0.01}
OUTAGE = {"direction": "down", "min_ratio": 3.0, "min_abs_diff": 0.05}  # availability
LAT = {"direction": "up"}


def calibration(n_seeds: int) -> None:
    days, warm = 32.0, 2 * DAY
    print("## clean streams, effect floors off: false firings per 30 days (budget 0.25)")
    print("| stream | calls/min | firings | stream-days | per 30 days |")
    print("|---|---|---|---|---|")
    total = 0
    for rpm in (2.0, 10.0, 40.0):
        for name, kind, params, gen in (
            (
                "lognormal values",
                "logmean",
                {"direction": "up", "min_effect": 0.0},
                lambda r, rpm=rpm: value_ticks(r, days, rpm, "lognormal", None),
            ),
            (
                "binomial p=2%",
                "binomial",
                {"direction": "up", "min_ratio": 1.0, "min_abs_diff": 0.0},
                lambda r, rpm=rpm: rate_ticks(r, days, rpm, 0.02, False, None),
            ),
        ):
            n = sum(
                len(run(kind, params, gen(np.random.default_rng(100 + s)), warm))
                for s in range(n_seeds)
            )
            total += n
            span = n_seeds * (days - 2)
            print(f"| {name} | {rpm:g} | {n} | {span:.0f} | {n / span * 30:.2f} |")
    span = 6 * n_seeds * (days - 2)
    print(f"| all | | {total} | {span:.0f} | {total / span * 30:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--calibration", action="store_true", help="check the budget itself")
    ap.add_argument("--seeds", type=int, default=12, help="streams per cell (--calibration)")
    args = ap.parse_args()
    if args.calibration:
        calibration(args.seeds)
        return
    seeds = [0] if args.quick else [0, 1, 2]
    days = 9.0 if args.quick else 14.0
    warm = 2 * DAY
    weeks = (days * DAY - warm) / (7 * DAY)
    print("## clean streams: false firings per series-week (warm-up: 2 days)")
    print("| stream | calls/min at peak | firings/week |")
    print("|---|---|---|")
    for rpm in (0.5, 2.0, 10.0, 120.0):
        for name, kind, params, gen in (
            (
                "errors binomial p=1%",
                "binomial",
                RATE,
                lambda r, rpm=rpm: rate_ticks(r, days, rpm, 0.01, False, None),
            ),
            (
                "refusals beta-binomial p=2%",
                "binomial",
                RATE,
                lambda r, rpm=rpm: rate_ticks(r, days, rpm, 0.02, True, None),
            ),
            (
                "latency/token lognormal",
                "logmean",
                LAT,
                lambda r, rpm=rpm: value_ticks(r, days, rpm, "lognormal", None),
            ),
            (
                "tokens Pareto 2.5",
                "logmean",
                LAT,
                lambda r, rpm=rpm: value_ticks(r, days, rpm, "pareto", None),
            ),
        ):
            total = sum(len(run(kind, params, gen(np.random.default_rng(s)), warm)) for s in seeds)
            print(f"| {name} | {rpm} | {total / (weeks * len(seeds)):.2f} |")
    print("\n## delays (minutes from onset to first firing; median over faults)")
    print("| fault | calls/min at peak | found | median delay |")
    print("|---|---|---|---|")
    n_faults = 6 if args.quick else 12
    for label, kind, params, mk, rpms in (
        (
            "outage 30% failing (availability)",
            "binomial",
            OUTAGE,
            lambda r, rpm, f: rate_ticks(r, 4.0, rpm, 0.005, False, f),
            ((10.0, 0.3), (2.0, 0.3)),
        ),
        (
            "refusals x3 (base 2%)",
            "binomial",
            RATE,
            lambda r, rpm, f: rate_ticks(r, 4.0, rpm, 0.02, False, f),
            ((10.0, -3.0), (2.0, -3.0)),
        ),
        (
            "latency/token +40%",
            "logmean",
            LAT,
            lambda r, rpm, f: value_ticks(r, 4.0, rpm, "lognormal", f),
            ((10.0, 1.4), (2.0, 1.4)),
        ),
        (
            "input tokens +50% (Pareto)",
            "logmean",
            LAT,
            lambda r, rpm, f: value_ticks(r, 4.0, rpm, "pareto", f),
            ((10.0, 1.5), (2.0, 1.5)),
        ),
    ):
        for rpm, level in rpms:
            delays = []
            for i in range(n_faults):
                rng = np.random.default_rng(100 + i)
                start = 2.5 * DAY + float(rng.uniform(0, DAY))
                run_for = 3600.0
                fires = run(kind, params, mk(rng, rpm, (start, start + run_for, level)), 2 * DAY)
                after = [f - start for f in fires if start <= f < start + run_for]
                delays.append(after[0] / 60.0 if after else math.inf)
            found = [d for d in delays if math.isfinite(d)]
            med = float(np.median(delays)) if len(found) * 2 > len(delays) else math.inf
            print(f"| {label} | {rpm} | {len(found)}/{len(delays)} | {med:.1f} |")


if __name__ == "__main__":
    main()
