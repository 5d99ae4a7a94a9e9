"""A/B of the aggregator's hot path: this checkout against another one, alternating, so a
noisy shared machine slows both sides alike.

    python bench/bench_aggregator_ab.py --base CHECKOUT [--calls 200000] [--repeat 5]

Each run is a fresh process per checkout that validates `--calls` calls with every size
field set (tokens, chars, cost, latency, ttft) over 20 features, then times only
`Aggregator.add_call` and a 15-s `expire` tick, as the pipeline calls them. Runs alternate
between the two checkouts; prints each side's median and the ratio this/base. CPU time of
the child process, not wall time: being descheduled on a busy machine does not count.
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
sys.path.insert(0, sys.argv[1])
from daemon.ingest.events import validate_items
from daemon.layers.aggregator import Aggregator
T0 = 1_795_000_000.0
raw = [{"type": "llm_call", "ts": T0 + i * 0.01, "feature": f"f{i % 20}", "status": 200,
        "input_tokens": 400 + i % 300, "output_tokens": 200 + i % 50, "output_chars": 900,
        "cost_usd": 0.002, "latency_ms": 1500.0, "ttft_ms": 300.0}
       for i in range(int(sys.argv[2]))]
events, errors = validate_items(raw)
assert not errors
agg = Aggregator()
t = time.process_time()
tick = T0 + 15.0
for ev in events:
    if ev.ts >= tick:
        agg.expire(tick)
        tick += 15.0
    agg.add_call(ev)
print(time.process_time() - t)
"""


def run(checkout: Path, calls: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(checkout), str(calls)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True, help="the other checkout (e.g. a git worktree)")
    ap.add_argument("--calls", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    sides = {"base": Path(args.base).resolve(), "this": ROOT}
    times: dict[str, list[float]] = {name: [] for name in sides}
    for i in range(args.repeat):
        order = list(sides) if i % 2 == 0 else list(reversed(sides))
        for name in order:
            times[name].append(run(sides[name], args.calls))
    for name, path in sides.items():
        runs = ", ".join(f"{t:.3f}" for t in times[name])
        print(f"{name} ({path}): median {statistics.median(times[name]):.3f} s CPU [{runs}]")
    ratio = statistics.median(times["this"]) / statistics.median(times["base"])
    print(f"this/base: {ratio:.3f}")


if __name__ == "__main__":
    main()
