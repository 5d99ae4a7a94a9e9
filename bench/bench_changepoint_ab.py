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

from child_ab import alternate

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True, help="the other checkout (e.g. a git worktree)")
    ap.add_argument("--series", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    alternate(CHILD, args.base, [str(args.series)], args.repeat, "ms")


if __name__ == "__main__":
    main()
