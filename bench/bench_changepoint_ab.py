"""A/B of the change-point search: this checkout against another one, alternating, so a
noisy shared machine slows both sides alike.

    python bench/bench_changepoint_ab.py --base CHECKOUT [--series 20] [--repeat 7]

Each run is a fresh process per checkout that builds `--series` 4-hour histories (minute
bins, about 3 observations a minute, a 0.5 σ step at minute 200 of 270; the same seeds on
both sides) and times `estimate()` on each, detected at minute 230, as the correlator calls
it once a minute while an incident is young. Prints each side's median milliseconds per
estimate and the ratio this/base; CPU time of the child, not wall time.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from correlator.changepoint import Bin, estimate
rng = np.random.default_rng(0)
t0 = 1_700_000_040.0
histories = []
for _ in range(int(sys.argv[2])):
    bins = []
    for i in range(270):
        n = int(rng.poisson(3))
        if n:
            bins.append(Bin(t0 + i * 60, float(rng.normal(0.5 * (i >= 200), n ** -0.5)), n))
    histories.append(bins)
t = time.process_time()
for bins in histories:
    estimate(bins, direction=1, not_after=t0 + 230 * 60)
print((time.process_time() - t) / len(histories) * 1000.0)
"""


def run(checkout: Path, series: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(checkout), str(series)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True, help="the other checkout (e.g. a git worktree)")
    ap.add_argument("--series", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    sides = {"base": Path(args.base).resolve(), "this": ROOT}
    times: dict[str, list[float]] = {name: [] for name in sides}
    for i in range(args.repeat):
        order = list(sides) if i % 2 == 0 else list(reversed(sides))
        for name in order:
            times[name].append(run(sides[name], args.series))
    for name, path in sides.items():
        runs = ", ".join(f"{t:.2f}" for t in times[name])
        print(f"{name} ({path}): median {statistics.median(times[name]):.2f} ms CPU [{runs}]")
    ratio = statistics.median(times["this"]) / statistics.median(times["base"])
    print(f"this/base: {ratio:.3f}")


if __name__ == "__main__":
    main()
