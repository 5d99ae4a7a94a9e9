"""What one hostile or oversized `POST /v1/events` costs the daemon: this checkout against
another, alternating, one fresh daemon process per request so each peak is its own.

    python bench/bench_ingest_limits.py --base CHECKOUT [--repeat 3] [--scenario NAME ...]
                                        [--poll-ms 10]

Scenarios (each body is built once and sent unchanged to both sides):
- `bomb`: the probe's 8 KB request, `[1,1,…]` with 4,190,000 items, gzip level 9;
- `bad-dicts`: 2,790,000 empty objects `[{},{},…]`, gzip (each a bad event, 3 bytes apiece);
- `valid-8mib`: 165,000 minimal valid `llm_call` events (just under 8 MiB), plain JSON;
- `dirty-25k`: 25,000 full events (bench_ingest.make_events, 6.8 MB) with every 10th one
  invalid.

Per request: the HTTP status, the answer's size, the request's wall time, the daemon's CPU
time for it (utime + stime from /proc, which a busy machine disturbs far less than wall time;
it includes answering the /healthz polls: a daemon whose loop is free answers a hundred a
second, a frozen one none, so compare CPU with `--poll-ms 0`), the slowest `GET /healthz`
answered while it ran (polled every 10 ms from another thread; the event loop's freeze as a
client sees it), and
the daemon's peak RSS growth (VmHWM after, minus VmRSS before). Prints the median of
`--repeat` requests per side and this/base for each figure: the ratios, not the absolute
times, are the result on a shared machine.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_ingest import make_events
from bench.bench_validation_ab import cpu_seconds, start

ROOT = Path(__file__).resolve().parents[1]


def _bomb() -> tuple[bytes, dict[str, str]]:
    body = gzip.compress(("[" + ",".join(["1"] * 4_190_000) + "]").encode(), 9)
    return body, {"Content-Type": "application/json", "Content-Encoding": "gzip"}


def _bad_dicts() -> tuple[bytes, dict[str, str]]:
    body = gzip.compress(("[" + ",".join(["{}"] * 2_790_000) + "]").encode(), 9)
    return body, {"Content-Type": "application/json", "Content-Encoding": "gzip"}


def _valid() -> tuple[bytes, dict[str, str]]:
    ts = int(time.time())
    one = {"type": "llm_call", "ts": ts, "feature": "f"}
    return orjson.dumps([one] * 165_000), {"Content-Type": "application/json"}


def _dirty() -> tuple[bytes, dict[str, str]]:
    events = make_events(25_000, start=time.time() - 60, step=60 / 25_000)
    for ev in events[::10]:
        ev["feature"] = ""  # too short: one rejected event in ten
    return orjson.dumps(events), {"Content-Type": "application/json"}


SCENARIOS: dict[str, Callable[[], tuple[bytes, dict[str, str]]]] = {
    "bomb": _bomb,
    "bad-dicts": _bad_dicts,
    "valid-8mib": _valid,
    "dirty-25k": _dirty,
}


def _status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(rest.split()[0])
    return out


def one_request(
    checkout: Path, body: bytes, headers: dict[str, str], poll_s: float
) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as state:
        proc, port = start(checkout, state)
        try:
            time.sleep(0.5)  # let start-up allocations settle before the baseline
            before = _status(proc.pid)["VmRSS"]
            done = threading.Event()
            worst = [0.0]

            def poll() -> None:
                while poll_s and not done.is_set():
                    t = time.perf_counter()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                    conn.request("GET", "/healthz")
                    conn.getresponse().read()
                    conn.close()
                    worst[0] = max(worst[0], time.perf_counter() - t)
                    time.sleep(poll_s)

            poller = threading.Thread(target=poll)
            poller.start()
            cpu = cpu_seconds(proc.pid)
            t = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            conn.request("POST", "/v1/events", body=body, headers=headers)
            resp = conn.getresponse()
            answer = resp.read()
            elapsed = time.perf_counter() - t
            cpu = cpu_seconds(proc.pid) - cpu
            done.set()
            poller.join()
            peak = _status(proc.pid)["VmHWM"]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return {
        "status": resp.status,
        "answer_kb": len(answer) / 1024,
        "request_s": elapsed,
        "daemon_cpu_s": cpu,
        "healthz_max_s": worst[0],
        "peak_rss_mib": (peak - before) / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True, type=Path, help="the other checkout's root")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    ap.add_argument("--poll-ms", type=float, default=10, help="0: no /healthz polling")
    args = ap.parse_args()
    sides = {"base": args.base.resolve(), "this": ROOT}
    for name in args.scenario or list(SCENARIOS):
        body, headers = SCENARIOS[name]()
        runs: dict[str, list[dict[str, float]]] = {"base": [], "this": []}
        for i in range(args.repeat):
            for side in list(sides) if i % 2 == 0 else list(reversed(sides)):
                runs[side].append(one_request(sides[side], body, headers, args.poll_ms / 1000))
        print(f"{name}: {len(body):,} bytes sent, median of {args.repeat} requests per side")
        keys = ("status", "answer_kb", "request_s", "daemon_cpu_s", "healthz_max_s", "peak_rss_mib")
        for key in keys:
            b = statistics.median(r[key] for r in runs["base"])
            t = statistics.median(r[key] for r in runs["this"])
            ratio = f"{t / b:.3f}" if b else "-"
            print(f"  {key:>14}: base {b:>10.3f}  this {t:>10.3f}  this/base {ratio}")


if __name__ == "__main__":
    main()
