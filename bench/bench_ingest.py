"""Ingest and replay throughput, side by side in one run (the machine is shared and noisy).

    python bench/bench_ingest.py [--events 200000] [--repeat 5] [--rss-events 1000000]

Reports medians of `--repeat` runs:
- events/s through `llm-oncall replay` (in-process, the real pipeline) and the ratio of
  replay time to a bare `orjson.loads` of every line of the same file;
- events/s through `POST /v1/events` in batches of 1,000, against the real daemon process;
- the daemon's RSS after 100k, 500k and 1M events across 100 features (flat = bounded).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import gzip
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config.settings import load_settings
from daemon.replay import replay

T0 = 1_795_000_000.0


def make_events(
    n: int, features: int = 100, start: float = T0, step: float = 0.005
) -> list[dict[str, object]]:
    """n calls (and a score every third call) over 100 features, `step` seconds apart
    (200 events/s of simulated time by default)."""
    out: list[dict[str, object]] = []
    for i in range(n):
        ts = start + i * step
        f = f"feature-{i % features}"
        if i % 3 == 2:
            out.append(
                {
                    "type": "score",
                    "ts": ts,
                    "feature": f,
                    "name": "faithfulness",
                    "value": 0.8 + (i % 7) * 0.01,
                    "labels": {"prompt_version": "v3"},
                }
            )
            continue
        out.append(
            {
                "type": "llm_call",
                "ts": ts,
                "feature": f,
                "provider": "openai",
                "model": "gpt-4o",
                "endpoint": "chat",
                "latency_ms": 500.0 + (i * 37) % 900,
                "status": 200 if i % 97 else 429,
                "input_tokens": 1200 + i % 50,
                "output_tokens": 200,
                "cost_usd": 0.004,
                "refused": i % 50 == 0,
                "format_ok": i % 40 != 0,
                "output_chars": 800 + i % 300,
                "labels": {
                    "prompt_version": "v3",
                    "model_version": "2026-08-06",
                    "segment": "free" if i % 3 else "pro",
                },
            }
        )
    return out


def bench_replay(path: str, repeat: int) -> tuple[float, float, int]:
    settings = load_settings(None)
    lines = Path(path).read_bytes().splitlines()
    parse_times, replay_times = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        for line in lines:
            orjson.loads(line)
        parse_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        result = replay(path, settings)
        replay_times.append(time.perf_counter() - t)
    n = result.events
    return (
        n / statistics.median(replay_times),
        statistics.median([r / p for r, p in zip(replay_times, parse_times, strict=True)]),
        n,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def post_batches(port: int, batches: list[bytes]) -> float:
    import aiohttp

    url = f"http://127.0.0.1:{port}/v1/events"
    async with aiohttp.ClientSession() as session:
        t = time.perf_counter()
        for body in batches:
            async with session.post(
                url, data=body, headers={"Content-Type": "application/json"}
            ) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"POST answered {resp.status}: {await resp.text()}")
                await resp.read()
        return time.perf_counter() - t


def start_daemon(state_dir: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = os.environ | {
        "LLM_ONCALL_LISTEN__HOST": "127.0.0.1",
        "LLM_ONCALL_LISTEN__PORT": str(port),
        "LLM_ONCALL_STATE__PATH": os.path.join(state_dir, "state.db"),
        # Live mode drops events older than the lateness; the bench sends "now" timestamps.
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon.cli", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("daemon did not start")


def unused_events(port: int) -> float:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as resp:
        text = resp.read().decode()
    return sum(
        s.value
        for fam in text_string_to_metric_families(text)
        if fam.name == "llm_oncall_events_unused"
        for s in fam.samples
    )


def bench_http(repeat: int, n: int, rss_events: int) -> tuple[float, list[tuple[int, int]], float]:
    rates = []
    rss: list[tuple[int, int]] = []
    with tempfile.TemporaryDirectory() as state:
        proc, port = start_daemon(state)
        try:
            for _ in range(repeat):
                # Live mode: timestamps inside the last minute, so none is late or future.
                events = make_events(n, start=time.time() - 60, step=60 / n)
                batches = [orjson.dumps(events[i : i + 1000]) for i in range(0, n, 1000)]
                elapsed = asyncio.run(post_batches(port, batches))
                rates.append(n / elapsed)
            sent = 0
            marks = {100_000, 500_000, rss_events}
            while sent < rss_events:
                chunk = min(100_000, rss_events - sent)
                events = make_events(chunk, start=time.time() - 60, step=60 / chunk)
                batches = [orjson.dumps(events[i : i + 1000]) for i in range(0, chunk, 1000)]
                asyncio.run(post_batches(port, batches))
                sent += chunk
                if sent in marks:
                    rss.append((sent, rss_kib(proc.pid)))
            unused = unused_events(port)
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    return statistics.median(rates), rss, unused


def main() -> None:
    gc.set_threshold(50_000, 20, 100)  # as `llm-oncall` itself does (daemon/cli.py)
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--rss-events", type=int, default=1_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "events.jsonl")
        with open(path, "wb") as fh:
            for ev in make_events(args.events):
                fh.write(orjson.dumps(ev) + b"\n")
        rate, ratio, n = bench_replay(path, args.repeat)
        gz = path + ".gz"
        with open(path, "rb") as src, gzip.open(gz, "wb") as dst:
            dst.write(src.read())
    print(f"replay: {rate:,.0f} events/s (median of {args.repeat}, {n} events, 100 features)")
    print(f"replay time / bare orjson parse time: {ratio:.1f}x (median of per-run ratios)")
    http_rate, rss, unused = bench_http(args.repeat, min(args.events, 100_000), args.rss_events)
    print(f"POST /v1/events, batches of 1,000: {http_rate:,.0f} events/s (median of {args.repeat})")
    for sent, kib in rss:
        print(f"daemon RSS after {sent:>9,} events: {kib / 1024:.1f} MiB")
    print(f"events the daemon counted as unused (late/future; should be 0): {unused}")


if __name__ == "__main__":
    main()
