"""Paging figures: delivery latency, drain after an outage, kill -9 cycles.

    python bench/bench_notify.py            # all three, ~1 minute
    python bench/bench_notify.py --quick    # smaller counts

Receivers are the fake PagerDuty from tests/notify/fakes.py on 127.0.0.1 (it validates every
event against the Events API v2 limits), so the figures measure this daemon's outbox, worker
and sender, not the network or PagerDuty.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import structlog  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from config.receivers import NotifyConfig  # noqa: E402
from daemon.notify import DeliveryWorker, Notification, NotifyMetrics, Outbox  # noqa: E402
from daemon.notify.pagerduty import PagerDutySender  # noqa: E402
from tests.notify.fakes import FakeClock, FakePagerDuty, Fault  # noqa: E402

KEY = "R0UT1NGKEY0123456789abcdefABCDEF"
QUIET = structlog.wrap_logger(structlog.ReturnLogger())


def incident(i: int, prefix: str = "b") -> dict[str, Any]:
    return {
        "id": f"{prefix}-{i}",
        "dedup_key": f"llm-oncall/bench/{prefix}-{i}",
        "feature": "bench",
        "status": "open",
        "severity": "critical",
        "paged": True,
        "domain": "provider",
        "opened_at": "2026-11-27T03:00:00Z",
        "resolved_at": None,
        "signals": [
            {
                "metric": "provider_error_rate",
                "layer": "api",
                "detector": "rate",
                "onset": "2026-11-27T03:00:00Z",
                "cleared": None,
                "value": 0.3,
                "baseline": 0.01,
                "score": 9.0,
                "direction": "up",
            }
        ],
        "triage": [{"question": "provider", "answer": True, "evidence": "5xx 30% vs 1%"}],
        "changes": [],
        "attribution": [],
        "summary": f"bench incident {i}",
    }


def open_db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    Outbox.init_schema(conn)
    return conn


def worker(
    ob: Outbox, url: str, clock: Any, sleep: Any, rate: float | None, cfg: NotifyConfig
) -> DeliveryWorker:
    sender = PagerDutySender("sre", KEY, url, rate_limit_per_min=rate)
    return DeliveryWorker(
        ob,
        {"sre": sender},
        clock,
        sleep,
        random.Random(1),
        NotifyMetrics(CollectorRegistry()),
        QUIET,
        config=cfg,
    )


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


async def bench_latency(tmp: Path, n: int) -> dict[str, float]:
    pd = FakePagerDuty(KEY, time.time)
    url = await pd.start()
    ob = Outbox(open_db(tmp / "lat.db"), time.time)
    w = worker(ob, url, time.time, asyncio.sleep, 120.0, NotifyConfig())
    w.start()
    created: dict[str, float] = {}
    for i in range(n):
        inc = incident(i, "lat")
        t = time.time()
        created[str(inc["dedup_key"])] = t
        ob.enqueue(ob.conn, Notification(inc["id"], inc["dedup_key"], "trigger", inc, t), ["sre"])
        ob.conn.commit()
        await asyncio.sleep(0.6)  # one page at a time, under the 120/min limit
    await w.drain(timeout=30)
    await w.stop()
    await pd.close()
    lat = [(r.t - created[r.body["dedup_key"]]) * 1000 for r in pd.accepted]
    return {"n": len(lat), "median_ms": statistics.median(lat), "p99_ms": pct(lat, 99)}


async def bench_drain(tmp: Path, n: int, outage_s: float) -> dict[str, float]:
    """n pending notifications (n/2 incidents × trigger+resolve) during an outage; seconds
    from the receiver's recovery until the last one is accepted, default backoff settings,
    rate limit off (raw throughput)."""
    pd = FakePagerDuty(KEY, time.time)
    url = await pd.start()
    ob = Outbox(open_db(tmp / f"drain{outage_s}.db"), time.time)
    pd.down = Fault(503) if outage_s > 0 else None
    for action in ("trigger", "resolve"):
        for i in range(n // 2):
            inc = incident(i, f"drain{outage_s}")
            ob.enqueue(
                ob.conn,
                Notification(inc["id"], inc["dedup_key"], action, inc, time.time()),
                ["sre"],
            )
        ob.conn.commit()
    w = worker(ob, url, time.time, asyncio.sleep, None, NotifyConfig(concurrency=8))
    w.start()
    await asyncio.sleep(outage_s)
    failed = pd.requests
    pd.down = None
    t0 = time.time()
    ok = await w.drain(timeout=600)
    took = max(r.t for r in pd.accepted) - t0
    await w.stop()
    await pd.close()
    in_order = all(a == ["trigger", "resolve"] for a in pd.actions_by_key().values())
    return {
        "n": len(pd.accepted),
        "drained": ok,
        "seconds_after_recovery": took,
        "failed_attempts_during_outage": failed,
        "in_order": in_order,
    }


async def bench_drain_rate_limited(tmp: Path, n: int) -> dict[str, float]:
    """The same drain with PagerDuty's 120/min limit, in simulated time (injected clock)."""
    clock = FakeClock()
    pd = FakePagerDuty(KEY, clock)
    url = await pd.start()
    ob = Outbox(open_db(tmp / "drain_rl.db"), clock)
    for action in ("trigger", "resolve"):
        for i in range(n // 2):
            inc = incident(i, "rl")
            ob.enqueue(
                ob.conn, Notification(inc["id"], inc["dedup_key"], action, inc, clock()), ["sre"]
            )
        ob.conn.commit()
    t0 = clock()
    w = worker(ob, url, clock, clock.sleep, 120.0, NotifyConfig())
    await w.drain(timeout=600)
    await pd.close()
    return {"n": len(pd.accepted), "simulated_seconds": max(r.t for r in pd.accepted) - t0}


async def bench_kill9(tmp: Path, cycles: int, per_cycle: int) -> dict[str, float]:
    pd = FakePagerDuty(KEY, time.time)
    url = await pd.start()
    pd.latency_s = 0.01
    db = tmp / "kill.db"
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    rng = random.Random(5)
    for c in range(cycles):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.notify.crash_child",
            str(db),
            url,
            "enqueue",
            str(per_cycle),
            f"k{c}",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        start = len(pd.accepted)
        deadline = time.monotonic() + 20
        target = rng.randint(1, per_cycle)  # kill after a random share of this cycle
        while len(pd.accepted) - start < target and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
    drain = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.notify.crash_child",
        str(db),
        url,
        "drain",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    rc = await drain.wait()
    with sqlite3.connect(db) as conn:
        expected = set(conn.execute("SELECT dedup_key, action FROM notify_outbox"))
    got = pd.actions_by_key()
    received = {(k, a) for k, acts in got.items() for a in acts}
    out_of_order = 0
    for acts in got.values():
        collapsed = [a for i, a in enumerate(acts) if i == 0 or acts[i - 1] != a]
        if collapsed not in (["trigger"], ["trigger", "resolve"]):
            out_of_order += 1
    await pd.close()
    return {
        "cycles": cycles,
        "committed": len(expected),
        "lost": len(expected - received),
        "duplicates": len(pd.accepted) - len(received),
        "out_of_order": out_of_order,
        "drain_rc": rc,
    }


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    q = args.quick
    print(
        f"# {time.strftime('%Y-%m-%d')} {platform.platform()} {platform.processor()} "
        f"cpus={os.cpu_count()} python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        print("latency (healthy receiver):", await bench_latency(tmp, 20 if q else 100))
        print("drain, receiver healthy:", await bench_drain(tmp, 1000, 0.0))
        print("drain after outage:", await bench_drain(tmp, 1000, 2.0 if q else 5.0))
        print("drain at 120/min (simulated):", await bench_drain_rate_limited(tmp, 1000))
        print("kill -9 cycles:", await bench_kill9(tmp, 5 if q else 20, 20))


if __name__ == "__main__":
    asyncio.run(main())
