"""A delivering process for the crash tests: `enqueue` mode writes incidents' triggers,
starts delivering, writes their resolves while delivering, and runs until killed;
`drain` mode delivers whatever is left and exits 0 when the outbox is empty.

Usage: python -m tests.notify.crash_child DB URL enqueue|drain [COUNT] [PREFIX]
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import sys
import time

import structlog
from prometheus_client import CollectorRegistry

from config.receivers import NotifyConfig
from daemon.notify import DeliveryWorker, Notification, NotifyMetrics, Outbox
from daemon.notify.pagerduty import PagerDutySender

ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"


def _incident(prefix: str, i: int, status: str) -> dict[str, object]:
    return {
        "id": f"{prefix}-{i}",
        "dedup_key": f"llm-oncall/crash/{prefix}-{i}",
        "feature": "crash",
        "status": status,
        "severity": "critical",
        "paged": True,
        "domain": "provider",
        "opened_at": "2026-11-27T03:00:00Z",
        "resolved_at": None,
        "signals": [],
        "triage": [],
        "changes": [],
        "attribution": [],
        "summary": f"crash test incident {i}",
    }


def _enqueue(ob: Outbox, conn: sqlite3.Connection, prefix: str, i: int, action: str) -> None:
    inc = _incident(prefix, i, "open" if action == "trigger" else "resolved")
    n = Notification(str(inc["id"]), str(inc["dedup_key"]), action, inc, time.time())  # type: ignore[arg-type]
    ob.enqueue(conn, n, ["sre"])
    conn.commit()


async def main(db: str, url: str, mode: str, count: int, prefix: str) -> int:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    Outbox.init_schema(conn)
    ob = Outbox(conn, time.time)
    worker = DeliveryWorker(
        ob,
        {"sre": PagerDutySender("sre", ROUTING_KEY, url, rate_limit_per_min=1e9)},
        time.time,
        asyncio.sleep,
        random.Random(),
        NotifyMetrics(CollectorRegistry()),
        structlog.get_logger(),
        config=NotifyConfig(base_backoff_s=0.05, max_backoff_s=0.5, timeout_s=2, concurrency=8),
    )
    if mode == "drain":
        return 0 if await worker.drain(timeout=60) else 1
    for i in range(count):
        _enqueue(ob, conn, prefix, i, "trigger")
    worker.start()
    for i in range(count):
        _enqueue(ob, conn, prefix, i, "resolve")
        await asyncio.sleep(0.002)
    print("enqueued", flush=True)
    await asyncio.Event().wait()  # until killed
    return 0


if __name__ == "__main__":
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    db, url, mode = sys.argv[1:4]
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 30
    prefix = sys.argv[5] if len(sys.argv) > 5 else "inc"
    sys.exit(asyncio.run(main(db, url, mode, count, prefix)))
