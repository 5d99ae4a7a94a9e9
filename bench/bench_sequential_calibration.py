"""False firings of the custom-metric default on long clean synthetic streams, per budget.

    python bench/bench_sequential_calibration.py [--samples 100000] [--seeds 2]

The `sequential` detector states a budget of one false firing per 30 days of clean data per
series (per 8,640 samples at one sample per 5 minutes, the interval used here). Each stream
kind below is clean (no fault): the printed rate is firings per 8,640 samples, to compare
with 1.0. The unit test (`tests/detectors/test_sequential.py`) runs a short version.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors import SequentialDetector

T0 = 1_767_571_200.0
DT = 300.0
PER_BUDGET = 30 * 86_400 / DT


def streams(n: int, seed: int) -> dict[str, npt.NDArray[np.float64]]:
    rng = np.random.default_rng(seed)
    ts = T0 + DT * np.arange(n)
    day = np.sin(2 * np.pi * (ts % 86_400) / 86_400)
    e = rng.standard_normal(n)
    ar = np.zeros(n)
    for i in range(1, n):
        ar[i] = 0.8 * ar[i - 1] + e[i]
    return {
        "gaussian": 10 + e,
        "student_t3": 10 + rng.standard_t(3, n),
        "ar1_0.8": 10 + ar,
        "daily_cycle": 100 + 20 * day + rng.standard_normal(n),
        "daily_cycle_t4": 100 + 20 * day + 2 * rng.standard_t(4, n),
        "random_walk_plus_noise": 50
        + np.cumsum(0.2 * rng.standard_normal(n))
        + rng.standard_normal(n),
        "lognormal_0.5": np.exp(0.5 * rng.standard_normal(n)),
        "poisson_3": rng.poisson(3, n).astype(float),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--seeds", type=int, default=2)
    args = ap.parse_args()
    started = time.perf_counter()
    totals: dict[str, int] = {}
    for seed in range(1, args.seeds + 1):
        ts = (T0 + DT * np.arange(args.samples)).tolist()
        for name, values in streams(args.samples, seed).items():
            det = SequentialDetector()
            fired = 0
            for t, v in zip(ts, values.tolist(), strict=True):
                tr = det.update(t, v)
                if tr is not None and tr.state == "firing":
                    fired += 1
            totals[name] = totals.get(name, 0) + fired
    n = args.samples * args.seeds
    print(f"{args.seeds} seeds x {args.samples:,} samples at {DT:.0f} s per stream kind")
    print("| clean stream | firings | per 8,640 samples (budget 1.0) |")
    print("|---|---:|---:|")
    for name, fired in totals.items():
        print(f"| {name} | {fired} | {fired / (n / PER_BUDGET):.2f} |")
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
