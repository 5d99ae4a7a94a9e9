"""What writing change events before the answer costs: `POST /v1/events` latency against the
real daemon process, for bodies of change events and, as the reference, of calls.

    python bench/bench_changes.py [--requests 500] [--repeat 3]

Each round posts `--requests` bodies of one change event (20 features in turn), 10 bodies of
1,000 change events of one feature (the per-feature bound keeps 200 of each), and
`--requests` bodies of 10 `llm_call` events, one after the other on one connection at a
time, and prints the median and 95th percentile per kind. Run it on two checkouts (the
daemon is started from the checkout the script is in) to compare.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import start_daemon
from tests.e2e.harness import http, stop


def timed(url: str, bodies: list[Any]) -> tuple[float, float]:
    """Median and 95th percentile of the requests' latency, in ms."""
    lat = []
    for body in bodies:
        t = time.perf_counter()
        status, raw, _ = http("POST", url, body)
        lat.append((time.perf_counter() - t) * 1e3)
        assert status == 200, raw
    lat.sort()
    return statistics.median(lat), lat[int(0.95 * (len(lat) - 1))]


def changes(n: int, size: int, feature: Callable[[int], str], base: float) -> list[Any]:
    return [
        [
            {
                "type": "change",
                "ts": base + r * 0.01 + i * 1e-5,
                "kind": "deploy",
                "feature": feature(r),
                "description": f"deploy {r}/{i} " + "x" * 200,
            }
            for i in range(size)
        ]
        for r in range(n)
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} {platform.platform()} "
        f"cpus={os.cpu_count()} python {platform.python_version()}"
    )
    d = start_daemon(Path(tempfile.mkdtemp()))
    url = d.url + "/v1/events"
    try:
        for round_ in range(args.repeat):
            # Recent enough for every version's lateness rule (before 2026-12-02, 300 s).
            base = time.time() - 60
            n = args.requests
            timed(url, changes(20, 1, lambda r: "warm-up", base))
            one = timed(url, changes(n, 1, lambda r: f"f{r % 20}", base))
            flood = timed(url, changes(10, 1000, lambda r: "noisy", base))
            now = time.time()
            calls = [
                [{"type": "llm_call", "ts": now, "feature": "f0", "status": 200}] * 10
                for _ in range(n)
            ]
            ref = timed(url, calls)
            for name, (med, p95) in (
                (f"1 change x {n}", one),
                ("1,000 changes x 10", flood),
                (f"10 llm_calls x {n}", ref),
            ):
                print(f"round {round_ + 1} {name:>20}: median {med:6.2f} ms, p95 {p95:6.2f} ms")
    finally:
        stop(d)


if __name__ == "__main__":
    main()
