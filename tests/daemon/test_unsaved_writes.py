"""A state write that fails keeps the incident's changes and pages in memory until one
succeeds (probe: an alert during a 5-s lock of the state file was never paged, even after a
restart, because the next snapshot saved the correlator without the incident's rows)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from daemon.app import Daemon
from tests.daemon.test_oncall_pages import Clock, Log, make_daemon, run_outage


def _outbox(d: object) -> list[tuple[str, str]]:
    conn = d.store.conn  # type: ignore[attr-defined]
    return list(conn.execute("SELECT receiver, action FROM notify_outbox ORDER BY id"))


def lock_store(d: Daemon) -> Callable[[], None]:
    """Make every state write fail as a database locked by another process does; returns
    what makes them work again."""
    working = d.store.transaction

    @contextmanager
    def locked() -> Iterator[sqlite3.Connection]:
        raise sqlite3.OperationalError("database is locked")
        yield d.store.conn  # pragma: no cover

    d.store.transaction = locked  # type: ignore[method-assign]

    def unlock() -> None:
        d.store.transaction = working  # type: ignore[method-assign]

    return unlock


async def test_a_failed_write_is_retried_and_the_page_goes_out(tmp_path: Path) -> None:
    clock, log = Clock(), Log()
    d = make_daemon(tmp_path, clock, log)
    unlock = lock_store(d)
    run_outage(d, clock)  # the outage opens its incident while every write fails
    assert d.store.incidents() == [] and _outbox(d) == []
    assert any(event == "state_write_failed" for event, _ in log.lines)
    assert d._unsaved.updates
    d._ready = True
    async with TestClient(TestServer(d.build_app())) as client:
        ready = await client.get("/readyz")
        assert ready.status == 503 and "state writes failing" in (await ready.json())["error"]
        try:  # a snapshot cannot skip past the unsaved changes
            d.save_snapshot()
        except sqlite3.OperationalError:
            pass
        else:
            raise AssertionError("the snapshot was saved without the unsaved changes")

        unlock()
        clock.now += 5
        d.handle(d.pipeline.advance(clock.now))
        (rec,) = d.store.incidents()
        assert rec["paged"]
        assert [action for _, action in _outbox(d)] == ["trigger"]
        assert d._unsaved_since is None and not d._unsaved.updates
        assert (await client.get("/readyz")).status == 200
    d.store.close()
