"""Crash soak: kill -9 the real daemon at random points through outages and recoveries, and
count the pages a fake PagerDuty receives: triggers and resolves delivered, lost, duplicated.

    python bench/crash_soak.py                   # 20 cycles, ~3 minutes
    python bench/crash_soak.py --cycles 50 --seed 7

Each cycle starts `python -m daemon.cli run` on the same state directory, lets it run for a
random 2-8 s while features go through outages (a new one every ~4 s: availability
collapses for 5-9 s, paged through the detectors) and recoveries, then kills it with
SIGKILL and starts the next.
After the last cycle every feature is healthy and the daemon runs until each incident has
resolved. Expected pages come from the daemon's own incident records: every paged incident
must have its trigger and, last, its resolve delivered. About once a second a change event is
posted too; every one answered 200 must be in the final state file. A repeated action on one
key is a duplicate (at-least-once across a kill; PagerDuty's dedup_key absorbs it). Exit code
1 if anything was lost or out of order. The short version runs in the default test suite
(tests/e2e/test_crash_consistency.py).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.crash import soak  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--spacing", type=float, default=4.0, help="seconds between outages")
    args = ap.parse_args()
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} {platform.platform()} "
        f"cpus={os.cpu_count()} python {platform.python_version()}"
    )
    print(f"# python bench/crash_soak.py --cycles {args.cycles} --seed {args.seed}")
    with tempfile.TemporaryDirectory() as tmp:
        res = soak(
            Path(tmp),
            args.cycles,
            seed=args.seed,
            spacing_s=args.spacing,
            log=lambda m: print(m, flush=True),
        )
    figures = asdict(res)
    details = figures.pop("details")
    for key, value in figures.items():
        print(f"{key:>20}: {round(value, 1) if isinstance(value, float) else value}")
    for line in details:
        print("  " + line)
    return 0 if res.ok() else 1


if __name__ == "__main__":
    sys.exit(main())
