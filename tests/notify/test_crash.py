"""kill -9 in the middle of delivery loses nothing: a second process delivers the rest, the
receiver sees every incident's trigger before its resolve, and duplicates only ever repeat
the same action for the same dedup key (which PagerDuty's dedup absorbs)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

from tests.notify.conftest import url
from tests.notify.fakes import FakePagerDuty
from tests.notify.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]


async def spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.notify.crash_child",
        *args,
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


def committed(db: Path) -> set[tuple[str, str]]:
    with sqlite3.connect(db) as c:
        return set(c.execute("SELECT dedup_key, action FROM notify_outbox"))


def check_receiver(pd: FakePagerDuty, expected: set[tuple[str, str]]) -> int:
    """Asserts the receiver's view; returns the number of duplicate deliveries."""
    got = pd.actions_by_key()
    assert {(k, a) for k, actions in got.items() for a in actions} == expected  # nothing lost
    duplicates = 0
    for key, actions in got.items():
        collapsed = [a for i, a in enumerate(actions) if i == 0 or actions[i - 1] != a]
        want = [a for a in ("trigger", "resolve") if (key, a) in expected]
        assert collapsed == want, (key, actions)  # in order; repeats only of the same action
        duplicates += len(actions) - len(collapsed)
    return duplicates


async def test_kill_9_mid_delivery_then_drain(pd: FakePagerDuty, tmp_path: Path) -> None:
    pd.clock = time.time
    pd.latency_s = 0.02  # slow enough that the kill lands with requests in flight
    db = tmp_path / "state.db"
    first = await spawn(str(db), url(pd), "enqueue", "40")
    try:
        await wait_until(lambda: len(pd.accepted) >= 25, limit_s=30)
        os.kill(first.pid, signal.SIGKILL)
    finally:
        if first.returncode is None:
            first.kill()
        await first.wait()
    assert first.returncode == -signal.SIGKILL
    sent_before = len(pd.accepted)
    assert sent_before < 80  # killed mid-delivery, not after
    with sqlite3.connect(db) as c:
        states = dict(c.execute("SELECT state, COUNT(*) FROM notify_outbox GROUP BY state"))
    assert states.get("pending", 0) + states.get("inflight", 0) > 0
    expected = committed(db)
    second = await spawn(str(db), url(pd), "drain")
    assert await asyncio.wait_for(second.wait(), 60) == 0
    check_receiver(pd, expected)
    assert {a for _, a in expected} == {"trigger", "resolve"}
    with sqlite3.connect(db) as c:
        left = c.execute("SELECT COUNT(*) FROM notify_outbox WHERE state != 'sent'").fetchone()
    assert left == (0,)
