"""Shared builders for the paging tests."""

from __future__ import annotations

import asyncio
import io
import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from config.receivers import NotifyConfig
from daemon.notify import DeliveryWorker, Notification, NotifyMetrics, Outbox, Sender
from tests.notify.fakes import FakeClock

PD_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"  # 32 characters, like an integration key
OG_KEY = "eb243592-faa2-4ba2-a551-1afdf565c889"


def incident(
    n: int = 1,
    *,
    severity: str = "critical",
    domain: str = "provider",
    feature: str = "support-bot",
    summary: str | None = None,
    status: str = "open",
    **extra: Any,
) -> dict[str, Any]:
    inc = {
        "id": f"inc-{n}",
        "dedup_key": f"llm-oncall/{feature}/inc-{n}",
        "feature": feature,
        "status": status,
        "severity": severity,
        "paged": True,
        "domain": domain,
        "opened_at": "2026-11-27T03:00:00Z",
        "resolved_at": None,
        "signals": [
            {
                "metric": "provider_error_rate",
                "layer": "api",
                "detector": "rate",
                "onset": "2026-11-27T03:00:00Z",
                "cleared": None,
                "value": 0.31,
                "baseline": 0.01,
                "score": 9.2,
                "direction": "up",
            },
            {
                "metric": "latency_p95_ms",
                "layer": "infra",
                "detector": "static",
                "onset": "2026-11-27T03:01:00Z",
                "cleared": None,
                "value": 8200.0,
                "baseline": 1900.0,
                "score": 4.0,
                "direction": "up",
            },
        ],
        "triage": [
            {
                "question": "provider",
                "answer": True,
                "evidence": "provider_error_rate 31% vs 1% baseline (n=812)",
            },
        ],
        "changes": [{"ts": "2026-11-27T02:40:00Z", "kind": "deploy", "description": "v1.2.3"}],
        "attribution": [
            {"label": "model", "value": "gpt-x", "anomalous_share": 0.93, "baseline_share": 0.5}
        ],
        "summary": summary or f"provider errors on support-bot ({n})",
    }
    inc.update(extra)
    return inc


def note(
    inc: dict[str, Any], action: str, t: float, runbook: dict[str, str] | None = None
) -> Notification:
    return Notification(inc["id"], inc["dedup_key"], action, inc, t, runbook)  # type: ignore[arg-type]


def open_db(path: Path | str = ":memory:") -> sqlite3.Connection:
    conn = sqlite3.connect(str(path))
    conn.execute("PRAGMA journal_mode=WAL")
    Outbox.init_schema(conn)
    return conn


def capture_logger() -> tuple[Any, io.StringIO]:
    buf = io.StringIO()
    log = structlog.wrap_logger(
        structlog.PrintLogger(file=buf),
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
    )
    return log, buf


def make_worker(
    outbox: Outbox,
    senders: dict[str, Sender],
    clock: FakeClock,
    *,
    config: NotifyConfig | None = None,
    seed: int = 7,
) -> tuple[DeliveryWorker, CollectorRegistry, io.StringIO]:
    registry = CollectorRegistry()
    log, buf = capture_logger()
    worker = DeliveryWorker(
        outbox,
        senders,
        clock,
        clock.sleep,
        random.Random(seed),
        NotifyMetrics(registry),
        log,
        config=config or NotifyConfig(base_backoff_s=1, max_backoff_s=60, timeout_s=2),
    )
    return worker, registry, buf


def counter(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return value or 0.0


async def wait_until(predicate: Callable[[], bool], limit_s: float = 10.0) -> None:
    """Poll a condition the fakes expose as plain counters (no event to wait on)."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.002)
