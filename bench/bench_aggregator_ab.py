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

from child_ab import alternate

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True, help="the other checkout (e.g. a git worktree)")
    ap.add_argument("--calls", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    alternate(CHILD, args.base, [str(args.calls)], args.repeat, "s")


if __name__ == "__main__":
    main()
