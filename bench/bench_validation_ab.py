"""A/B of ingest: this checkout against another one, alternating, so a noisy shared machine
slows both sides alike (whole-benchmark runs one after the other swing by 2-3x there).

    python bench/bench_validation_ab.py --base CHECKOUT [--events 100000] [--repeat 15] [--no-http]

Validation, in one process: each run parses the same bodies with `parse_body` (JSON arrays of
1,000 events, as the HTTP bench posts them) and with the NDJSON path replay uses
(`iter_lines`), clean and "dirty" (every 100th event invalid, which sends each batch down the
per-item fallback). `daemon/ingest/events.py` imports only the standard library, pydantic and
(since the item cap) numpy, so both versions load side by side.

HTTP: one daemon process per checkout, both running; each round posts the same 100 batches of
1,000 events to one, then the other (order alternating per round).

The daemons tick every 300 s instead of 15 s, so evaluation ticks stay out of the rounds.
Rates are per second of CPU time (this process's for validation, each daemon's from
/proc/<pid>/stat for HTTP), which a busy machine disturbs far less than wall time: being
descheduled does not count. Prints the median of each side and the relative cost of this
checkout's version.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import ModuleType

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_ingest import free_port, make_events, post_batches

ROOT = Path(__file__).resolve().parents[1]


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pydantic resolves annotations through sys.modules
    spec.loader.exec_module(module)
    return module


ROUND = 100_000  # events per daemon per HTTP round (about 1 CPU-s: 1% tick resolution)


def start(checkout: Path, state_dir: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = os.environ | {
        "LLM_ONCALL_LISTEN__HOST": "127.0.0.1",
        "LLM_ONCALL_LISTEN__PORT": str(port),
        "LLM_ONCALL_STATE__PATH": os.path.join(state_dir, f"{port}.db"),
        "PYTHONPATH": str(checkout),
        # Ticks (every 15 s by default) would land in one side's round at random and cost more
        # than the difference measured; ingest is what is compared.
        "LLM_ONCALL_AGGREGATION__TICK_S": "300",
    }
    proc = subprocess.Popen([sys.executable, "-m", "daemon.cli", "run"], cwd=checkout, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=0.5):
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"daemon in {checkout} did not start")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (clock ticks, usually 10 ms)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http_ab(base: Path, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as state:
        daemons = {"base": start(base, state), "this": start(ROOT, state)}
        rates: dict[str, list[float]] = {"base": [], "this": []}
        try:
            for i in range(repeat):
                events = make_events(ROUND, start=time.time() - 60, step=60 / ROUND)
                batches = [orjson.dumps(events[j : j + 1000]) for j in range(0, ROUND, 1000)]
                order = ["base", "this"] if i % 2 == 0 else ["this", "base"]
                for name in order:
                    proc, port = daemons[name]
                    cpu = cpu_seconds(proc.pid)
                    asyncio.run(post_batches(port, batches))
                    rates[name].append(ROUND / (cpu_seconds(proc.pid) - cpu))
        finally:
            for proc, _ in daemons.values():
                proc.terminate()
                proc.wait(timeout=15)
    b, t = statistics.median(rates["base"]), statistics.median(rates["this"])
    print(f"  http: base {b:,.0f} events/CPU-s, this {t:,.0f} events/CPU-s, this costs "
          f"{100 * (b / t - 1):+.1f}% (median of {repeat} rounds of {ROUND:,})")  # fmt: skip


def _events_file(root: Path) -> Path:
    """The event contract module of a checkout (it moved into `daemon/ingest/` in issue 12)."""
    moved = root / "daemon" / "ingest" / "events.py"
    return moved if moved.exists() else root / "daemon" / "events.py"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True, type=Path, help="the other checkout's root")
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--no-http", action="store_true", help="validation only, no daemons")
    args = ap.parse_args()
    sides = {
        "base": load(_events_file(args.base), "events_base"),
        "this": load(_events_file(ROOT), "events_this"),
    }
    events = make_events(args.events)
    dirty = [ev | {"ts": -1} if i % 100 == 50 else ev for i, ev in enumerate(events)]
    good = {"": len(events), "-dirty": len(events) - len(events) // 100}
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeat):
        for name, mod in sides.items():
            for kind, evs in (("", events), ("-dirty", dirty)):
                batches = [orjson.dumps(evs[i : i + 1000]) for i in range(0, len(evs), 1000)]
                lines = [orjson.dumps(ev) + b"\n" for ev in evs]
                t = time.process_time()
                n = sum(len(mod.parse_body(b, "application/json")[0]) for b in batches)
                times.setdefault((name, "array" + kind), []).append(time.process_time() - t)
                assert n == good[kind]
                t = time.process_time()
                n = sum(len(evs) for evs, _ in mod.iter_lines(iter(lines)))
                times.setdefault((name, "ndjson" + kind), []).append(time.process_time() - t)
                assert n == good[kind]
    for path in ("array", "ndjson", "array-dirty", "ndjson-dirty"):
        base = statistics.median(times[("base", path)])
        this = statistics.median(times[("this", path)])
        print(
            f"{path:>12}: base {len(events) / base:,.0f} events/CPU-s, this "
            f"{len(events) / this:,.0f} events/CPU-s, "
            f"this costs {100 * (this / base - 1):+.1f}% (median of {args.repeat})"
        )
    if not args.no_http:
        http_ab(args.base, args.repeat)


if __name__ == "__main__":
    main()
