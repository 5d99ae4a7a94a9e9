"""The daemon at its cardinality caps: RSS, /metrics size, scrape time, /healthz during a scrape.

    python bench/bench_caps.py [--scenario NAME ...] [--root DIR] [--scrapes 3]
    python bench/bench_caps.py --ingest-cpu OTHER_CHECKOUT   # hot-path cost vs. another tree
    python bench/bench_caps.py --label-memory                # label sets folded per bucket

Each scenario starts a fresh daemon process (default caps, `python -m daemon.cli run` from
`--root`, this checkout by default: pass another checkout to measure it the same way), posts
events far past one or more caps to POST /v1/events in batches of 1,000 with "now"
timestamps, waits for the next tick, then scrapes /metrics `--scrapes` times while another
thread polls /healthz every 10 ms. Printed per scenario: events sent, daemon RSS, /metrics
bytes and samples, median scrape time, the slowest /healthz answer seen during the scrapes,
and the capped counters.

Scenarios (the issue's attacks, then every cap at once):
- models:   100k distinct `model` values in one feature;
- scores:   20k distinct score names in one feature, then 100 names in each of 200 features;
- features: 5k features through `metric` events, and 5k through `llm_call`;
- labels:   100k distinct label values, 20 label names, 10 kB values;
- all:      200 features, each at its provider/model/endpoint/series/score/metric caps.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
TICK_S = 15.0  # the default aggregation.tick_s
Event = dict[str, Any]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Daemon:
    def __init__(self, root: Path, state_dir: str) -> None:
        self.port = free_port()
        env = os.environ | {
            "LLM_ONCALL_LISTEN__HOST": "127.0.0.1",
            "LLM_ONCALL_LISTEN__PORT": str(self.port),
            "LLM_ONCALL_STATE__PATH": os.path.join(state_dir, "state.db"),
            "LLM_ONCALL_LOG__LEVEL": "warning",
            "PYTHONPATH": str(root),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon.cli", "run"],
            env=env,
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                self.get("/readyz", timeout=0.5)
                return
            except OSError:
                time.sleep(0.1)
        self.proc.kill()
        raise RuntimeError("daemon did not start")

    def get(self, path: str, timeout: float = 600) -> bytes:
        url = f"http://127.0.0.1:{self.port}{path}"
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return bytes(resp.read())

    def post(self, events: list[Event]) -> None:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/v1/events",
            data=orjson.dumps(events),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=600) as resp:
            body = orjson.loads(resp.read())
            if body["rejected"]:
                raise RuntimeError(f"rejected: {body['rejected'][:3]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def call(feature: str, **kw: Any) -> Event:
    return {"type": "llm_call", "ts": time.time(), "feature": feature, "status": 200,
            "latency_ms": 400.0, "input_tokens": 100, "output_tokens": 50,
            "cost_usd": 0.001} | kw  # fmt: skip


def score(feature: str, name: str) -> Event:
    return {"type": "score", "ts": time.time(), "feature": feature, "name": name, "value": 0.7}


def metric(feature: str, name: str) -> Event:
    return {"type": "metric", "ts": time.time(), "feature": feature, "layer": "infra",
            "name": name, "value": 1.0}  # fmt: skip


def models() -> Iterator[Event]:
    for i in range(100_000):
        yield call("bot", provider="openai", model=f"model-{i}")


def scores() -> Iterator[Event]:
    for i in range(20_000):
        yield score("bot", f"score-{i}")
    for f in range(200):
        for i in range(100):
            yield score(f"feature-{f}", f"score-{i}")


def features() -> Iterator[Event]:
    for i in range(5_000):
        yield metric(f"metric-feature-{i}", "gpu_util")
    for i in range(5_000):
        yield call(f"call-feature-{i}")


def labels() -> Iterator[Event]:
    for i in range(100_000):
        yield call("bot", labels={"user": f"u{i}", "prompt_version": f"v{i % 7}"})
    for i in range(2_000):
        yield call("bot", labels={f"name-{j}": f"{i}" for j in range(40)})
    for i in range(2_000):
        yield call("bot", labels={"blob": f"{i}" + "x" * 10_000})


def all_caps() -> Iterator[Event]:
    """Every feature at its caps: 60 providers x models x endpoints (past the per-feature
    caps of 50 values and 100 combinations), 120 score names, 120 metric names."""
    for f in range(200):
        feat = f"feature-{f}"
        for i in range(150):
            yield call(feat, provider=f"p{i % 60}", model=f"m{i}", endpoint=f"e{i % 60}",
                       status=200 if i % 9 else 503)  # fmt: skip
        for i in range(120):
            yield score(feat, f"s{i}")
            yield metric(feat, f"g{i}")


SCENARIOS: dict[str, Callable[[], Iterator[Event]]] = {
    "models": models,
    "scores": scores,
    "features": features,
    "labels": labels,
    "all": all_caps,
}


def scrape_with_health(d: Daemon, scrapes: int) -> tuple[int, int, float, float]:
    """(bytes, samples, median scrape s, slowest /healthz s during the scrapes)."""
    worst = 0.0
    stop = threading.Event()

    def poll() -> None:
        nonlocal worst
        while not stop.is_set():
            t = time.perf_counter()
            d.get("/healthz", timeout=600)
            worst = max(worst, time.perf_counter() - t)
            time.sleep(0.01)

    poller = threading.Thread(target=poll)
    poller.start()
    times: list[float] = []
    body = b""
    try:
        for _ in range(scrapes):
            t = time.perf_counter()
            body = d.get("/metrics")
            times.append(time.perf_counter() - t)
    finally:
        stop.set()
        poller.join()
    samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    return len(body), samples, statistics.median(times), worst


def capped_counters(body: bytes) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in body.decode().splitlines():
        for family in ("cardinality_capped_total", "events_unused_total"):
            if line.startswith(f"llm_oncall_{family}{{"):
                labels, value = line.rsplit(" ", 1)
                if float(value):
                    out[labels.split('"')[1]] = float(value)
    return out


def run(name: str, root: Path, scrapes: int) -> None:
    with tempfile.TemporaryDirectory() as state:
        d = Daemon(root, state)
        try:
            rss0 = rss_mib(d.proc.pid)
            sent = 0
            batch: list[Event] = []
            approx = 0  # bytes, to stay under the 8 MiB body limit with 10 kB labels
            t = time.perf_counter()
            for ev in SCENARIOS[name]():
                batch.append(ev)
                approx += 300 + sum(len(v) for v in ev.get("labels", {}).values())
                if len(batch) == 1000 or approx > 4_000_000:
                    d.post(batch)
                    sent += len(batch)
                    batch, approx = [], 0
            if batch:
                d.post(batch)
                sent += len(batch)
            post_s = time.perf_counter() - t
            # Let the first tick after the posts run (it builds the new series' detectors,
            # which blocks the loop once): the /healthz figure is then the scrape's alone.
            time.sleep(TICK_S - time.time() % TICK_S + 3)
            size, samples, scrape_s, health_s = scrape_with_health(d, scrapes)
            rss = rss_mib(d.proc.pid)
            caps = capped_counters(d.get("/metrics"))
        finally:
            d.stop()
    print(
        f"{name:9s} events {sent:>7,d} in {post_s:5.1f} s | RSS {rss0:5.1f} -> {rss:6.1f} MiB"
        f" | /metrics {size / 1e6:6.2f} MB, {samples:>7,d} samples, scrape {scrape_s:6.3f} s"
        f" | /healthz max {health_s:6.3f} s"
    )
    print(f"{'':9s} capped/unused: {caps}")


_INGEST_CPU = """
import sys, time
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/bench"]
from bench_ingest import make_events
from config.settings import Settings
from daemon.ingest.events import validate_items
from daemon.pipeline import Pipeline
events, bad = validate_items(make_events(200_000))
assert not bad
runs = []
for _ in range(3):
    pipe = Pipeline(Settings())
    t = time.process_time()
    pipe.ingest(events)  # replay mode: ticks included
    runs.append(time.process_time() - t)
print(f"{sys.argv[1]}: Pipeline.ingest of 200k events, CPU {min(runs):.3f} s (best of 3)")
"""


def label_memory(n_buckets: int = 24) -> None:
    """Label memory of one feature under high-cardinality labels (20 names, ~1,000 values
    each, 2,000 calls per 15 s bucket), in process with tracemalloc, before and after the
    aggregator folds whole label sets of buckets behind the clock; scaled to the 480 buckets
    of the 2 h attribution retention."""
    import gc
    import tracemalloc

    sys.path.insert(0, str(ROOT))
    from daemon.ingest.events import LlmCall, validate_items
    from daemon.layers.aggregator import Aggregator

    t0 = 1_795_000_000.0
    raw = [
        {"type": "llm_call", "ts": t0 + k * TICK_S + i * 0.005, "feature": "f", "status": 200,
         "labels": {f"name{j}": f"v{(i * (j + 1) + k) % 997}" for j in range(20)}}
        for k in range(n_buckets)
        for i in range(2000)
    ]  # fmt: skip
    events, _ = validate_items(raw)
    agg = Aggregator()
    gc.collect()
    tracemalloc.start()
    for ev in events:
        assert isinstance(ev, LlmCall)
        agg.add_call(ev)
    gc.collect()
    whole, _ = tracemalloc.get_traced_memory()
    agg.expire(t0 + (n_buckets + 2) * TICK_S)
    gc.collect()
    folded, _ = tracemalloc.get_traced_memory()
    scale = 480 / n_buckets / 1e6
    print(f"label memory per feature over 480 buckets: whole sets {whole * scale:.0f} MB, "
          f"folded {folded * scale:.0f} MB ({n_buckets} buckets measured)")  # fmt: skip


def ingest_cpu(roots: list[Path], rounds: int = 2) -> None:
    """The hot-path cost of the caps: CPU time of Pipeline.ingest in-process, checkouts
    interleaved so a loaded machine hurts them alike."""
    for _ in range(rounds):
        for root in roots:
            subprocess.run([sys.executable, "-c", _INGEST_CPU, str(root)], check=True, cwd="/")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    ap.add_argument("--root", type=Path, default=ROOT, help="checkout to run the daemon from")
    ap.add_argument("--scrapes", type=int, default=3)
    ap.add_argument(
        "--ingest-cpu",
        type=Path,
        metavar="OTHER_ROOT",
        help="instead: compare Pipeline.ingest CPU time with another checkout",
    )
    ap.add_argument("--label-memory", action="store_true", help="instead: label memory")
    args = ap.parse_args()
    if args.label_memory:
        label_memory()
        return
    if args.ingest_cpu:
        ingest_cpu([args.root, args.ingest_cpu])
        return
    print(f"daemon from {args.root}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    for name in args.scenario or list(SCENARIOS):
        run(name, args.root, args.scrapes)


if __name__ == "__main__":
    main()
