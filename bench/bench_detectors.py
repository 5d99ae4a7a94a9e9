"""Detector speed and state size, one core.

    python bench/bench_detectors.py [--reps 5] [--kinds binomial logmean]

Per kind (default parameters as shipped in `detectors.defaults` where a default rule uses
the kind): updates per second on one series after warm-up; the time to update 10,000 series
once (one tick of a large deployment); and bytes of JSON state per series. Medians of
`--reps` repetitions.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors import Detector, TickStats, build_detector, detector_from_state

T0 = 1_767_571_200.0
TICK_S = 15.0
KIND_PARAMS: dict[str, dict[str, Any]] = {
    "static": {"threshold": 10_000.0, "for_s": 120.0, "clear": 8_000.0, "min_n": 20},
    "ewma": {"direction": "up", "for_n": 8, "half_life": 480.0, "warmup": 240},
    "seasonal": {"direction": "both", "for_n": 3},
    "rate": {"direction": "up"},
    "cusum": {},
    "burn_rate": {"slo": 0.995},
    "binomial": {"direction": "up", "min_ratio": 1.5, "min_abs_diff": 0.01},
    "logmean": {"direction": "up"},
    "sequential": {"direction": "both"},  # the custom-metric default
    "fused": {},  # the quality default (scalar path: one observation per update)
}
RATE_KINDS = {"rate", "burn_rate", "binomial"}
# The evidence kinds read per-tick increments (TickStats), as the aggregator sends them:
# here 12 calls per 15-s tick (48 calls/min).
TICK_KINDS = {"binomial", "logmean"}
Input = tuple[float, float, int, TickStats | None]


def inputs(kind: str, count: int, seed: int = 1) -> list[Input]:
    rng = np.random.default_rng(seed)
    ts = T0 + TICK_S * np.arange(count)
    if kind in TICK_KINDS:
        return tick_inputs(rng, kind, ts)
    n = rng.poisson(200, count).clip(1)
    if kind in RATE_KINDS:
        values = rng.binomial(n, 0.03) / n
    else:
        daily = 1.0 + 0.1 * np.cos(2 * np.pi * (ts % 86_400) / 86_400)
        values = 0.8 * daily * (1 + 0.04 * rng.standard_normal(count))
    rows = zip(ts.tolist(), values.tolist(), n.tolist(), strict=True)
    return [(t, v, c, None) for t, v, c in rows]


def tick_inputs(rng: np.random.Generator, kind: str, ts: np.ndarray) -> list[Input]:
    n = rng.poisson(12, len(ts))
    if kind == "binomial":
        k = rng.binomial(n, 0.03)
        return [(t, ki / max(ni, 1), ni, TickStats(ni, ki))
                for t, ni, ki in zip(ts.tolist(), n.tolist(), k.tolist(), strict=True)]  # fmt: skip
    daily = 0.1 * np.cos(2 * np.pi * (ts % 86_400) / 86_400)
    y = np.repeat(6.0 + daily, n) + 0.45 * rng.standard_normal(int(n.sum()))
    edges = np.concatenate(([0], np.cumsum(n)))[:-1]
    sums = [np.add.reduceat(y**p, edges) if len(y) else np.zeros(len(n)) for p in (1, 2, 3)]
    out: list[Input] = []
    for i, (t, ni) in enumerate(zip(ts.tolist(), n.tolist(), strict=True)):
        if ni:
            tick = TickStats(ni, 0, float(sums[0][i]), float(sums[1][i]), float(sums[2][i]))
        else:
            tick = TickStats(0)
        out.append((t, 0.0, ni, tick))
    return out


def warmed(kind: str, data: list[Input]) -> Detector:
    det = build_detector(kind, KIND_PARAMS[kind])
    for ts, v, n, tick in data:
        det.update(ts, v, n, tick)
    return det


def updates_per_second(kind: str, reps: int) -> float:
    warm = inputs(kind, 8 * 5760)  # 8 days: every bucket and window is populated
    data = inputs(kind, 200_000, seed=2)
    shift = warm[-1][0] + TICK_S - data[0][0]
    data = [(ts + shift, v, n, tick) for ts, v, n, tick in data]
    rates = []
    for _ in range(reps):
        det = detector_from(warmed(kind, warm))
        update = det.update
        start = time.perf_counter()
        for ts, v, n, tick in data:
            update(ts, v, n, tick)
        rates.append(len(data) / (time.perf_counter() - start))
    return statistics.median(rates)


def detector_from(det: Detector) -> Detector:
    return detector_from_state(det.to_state())


def tick_of_10k(kind: str, reps: int) -> float:
    """Milliseconds to update 10,000 warmed series once each."""
    template = warmed(kind, inputs(kind, 8 * 5760))
    state = template.to_state()
    fleet = [detector_from_state(json.loads(json.dumps(state))) for _ in range(10_000)]
    rng = np.random.default_rng(3)
    ts0 = 8 * 86_400 + T0
    times = []
    for r in range(reps):
        ts = ts0 + r * TICK_S
        if kind in TICK_KINDS:  # one tick of increments per series
            ticks = [x[3] for x in inputs(kind, 10_000, seed=3 + r)]
            start = time.perf_counter()
            for det, tick in zip(fleet, ticks, strict=True):
                det.update(ts, 0.0, 12, tick)
            times.append((time.perf_counter() - start) * 1000)
            continue
        values = (rng.binomial(200, 0.03, 10_000) / 200 if kind in RATE_KINDS else
                  0.8 * (1 + 0.04 * rng.standard_normal(10_000))).tolist()  # fmt: skip
        start = time.perf_counter()
        for det, v in zip(fleet, values, strict=True):
            det.update(ts, v, 200)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def state_bytes(kind: str) -> int:
    return len(json.dumps(warmed(kind, inputs(kind, 8 * 5760)).to_state()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--kinds", nargs="*", default=list(KIND_PARAMS), choices=list(KIND_PARAMS))
    args = parser.parse_args()
    print(f"Python {platform.python_version()} on {platform.machine()}, {platform.processor()}")
    print(f"medians of {args.reps} repetitions\n")
    print("| kind | updates/s (one series) | 10,000 series, one tick (ms) | state bytes |")
    print("|---|---|---|---|")
    for kind in args.kinds:
        ups = updates_per_second(kind, args.reps)
        tick = tick_of_10k(kind, args.reps)
        size = state_bytes(kind)
        print(f"| {kind} | {ups:,.0f} | {tick:.1f} | {size:,} |")


if __name__ == "__main__":
    main()
