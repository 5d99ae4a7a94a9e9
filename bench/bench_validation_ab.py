"""A/B of event validation: this checkout's `daemon/events.py` against another checkout's, in
one process, alternating runs, so a noisy shared machine slows both sides alike.

    python bench/bench_validation_ab.py --base CHECKOUT [--events 100000] [--repeat 15]

Each run parses the same bodies with `parse_body` (JSON arrays of 1,000 events, as the HTTP
bench posts them) and with the NDJSON path replay uses (`iter_lines`). `daemon/events.py`
imports only the standard library and pydantic, so both versions load side by side.
Prints the median events/s of each side and the relative cost of this checkout's version.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_ingest import make_events

ROOT = Path(__file__).resolve().parents[1]


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pydantic resolves annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True, type=Path, help="the other checkout's root")
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    sides = {
        "base": load(args.base / "daemon" / "events.py", "events_base"),
        "this": load(ROOT / "daemon" / "events.py", "events_this"),
    }
    events = make_events(args.events)
    batches = [orjson.dumps(events[i : i + 1000]) for i in range(0, len(events), 1000)]
    lines = [orjson.dumps(ev) + b"\n" for ev in events]
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeat):
        for name, mod in sides.items():
            t = time.perf_counter()
            n = sum(len(mod.parse_body(b, "application/json")[0]) for b in batches)
            times.setdefault((name, "array"), []).append(time.perf_counter() - t)
            assert n == len(events)
            t = time.perf_counter()
            n = sum(len(evs) for evs, _ in mod.iter_lines(iter(lines)))
            times.setdefault((name, "ndjson"), []).append(time.perf_counter() - t)
            assert n == len(events)
    for path in ("array", "ndjson"):
        base = statistics.median(times[("base", path)])
        this = statistics.median(times[("this", path)])
        print(
            f"{path:>6}: base {len(events) / base:,.0f} events/s, this {len(events) / this:,.0f}"
            f" events/s, this costs {100 * (this / base - 1):+.1f}% (median of {args.repeat})"
        )


if __name__ == "__main__":
    main()
