"""The daemon's side of paging: turn incident updates into outbox rows, run the worker.

Rows are written inside the caller's transaction (the one that saves the incident), so an
incident change and its page commit or vanish together. A resolve goes to every receiver that
got the trigger, whatever the routes say now: a receiver must never keep an orphaned page
because the incident was re-routed, silenced or escalated in between.
"""

from __future__ import annotations

import asyncio
import math
import random
import sqlite3
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry

from config.receivers import effective_receivers
from config.settings import Settings
from correlator import IncidentUpdate, rfc3339
from daemon.notify import (
    DeliveryWorker,
    Notification,
    NotifyMetrics,
    Outbox,
    Router,
    build_senders,
)
from daemon.notify.router import RouteTarget
from daemon.store import Store

# Incident ids per `IN (...)` query: well below SQLite's bound-parameter limit.
_IN_CHUNK = 500


def _ids(ids: list[str], shown: int = 5) -> str:
    """A few ids for a one-line error; the count says how many there are."""
    return ", ".join(ids[:shown]) + (f", … {len(ids) - shown} more" if len(ids) > shown else "")


# At most one test page per receiver this often: a test page reaches a real pager, and with
# no token configured anyone who reaches the listener can ask for one (300 requests queued 300
# trigger-and-resolve pairs to PagerDuty before this).
TEST_PAGE_INTERVAL_S = 10.0


class TooManyTestPages(Exception):
    """A test page to this receiver was queued less than `TEST_PAGE_INTERVAL_S` ago."""

    def __init__(self, receiver: str, retry_after_s: float) -> None:
        super().__init__(
            f"a test page to {receiver!r} was queued {TEST_PAGE_INTERVAL_S - retry_after_s:.0f} s"
            f" ago; at most one every {TEST_PAGE_INTERVAL_S:.0f} s per receiver"
        )
        self.retry_after_s = retry_after_s


class Paging:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        registry: CollectorRegistry,
        log: Any,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.log = log
        self._last_test: dict[str, float] = {}  # receiver -> when its last test page was queued
        Outbox.init_schema(store.conn)
        self.outbox = Outbox(store.conn, clock)
        self.router = Router(settings.receivers, settings.routes)
        self.metrics = NotifyMetrics(registry)
        self.senders = build_senders(
            settings.receivers,
            log=log,
            public_url=settings.listen.public_url,
            timeout_s=settings.notify.timeout_s,
        )
        self.worker = DeliveryWorker(
            self.outbox,
            self.senders,
            clock,
            asyncio.sleep,
            random.Random(),
            self.metrics,
            log,
            config=settings.notify,
        )
        self._init_series()

    def _init_series(self) -> None:
        # Series exist at 0 from the start, so the first dead letter shows in increase().
        for name in self.senders:
            for action in ("trigger", "resolve", "acknowledge"):
                for result in ("sent", "retried", "dead"):
                    self.metrics.notifications.labels(receiver=name, action=action, result=result)

    def prepare_reconfigure(
        self, settings: Settings, open_paged: Iterable[str] = ()
    ) -> Callable[[], None]:
        """Receivers, routes and delivery settings from a config reload: built here (a
        failure changes nothing), swapped in one step by the returned callable.
        `listen.public_url` stays the running one (listen settings need a restart).

        A receiver cannot be removed (or renamed) while it has notifications waiting or in
        flight, nor while it holds the page of an open incident (`open_paged`: ids of open
        incidents that were paged): a resolve always goes to the receivers that got the
        trigger, so it would go dead with "no receiver named ..." and the page would stay
        open at the receiver for good. ValueError names each receiver and how many
        notifications or incidents; the reload changes nothing."""
        keep = {r.name for r in effective_receivers(settings.receivers)}
        waiting = self.outbox.unfinished_by_receiver()
        problems = [
            f"receiver {r!r} has {n} notification(s) waiting or in flight: keep it in "
            "the config until they are delivered"
            for r, n in sorted(waiting.items())
            if r not in keep
        ]
        held = self.open_pages_by_receiver(open_paged)
        problems += [
            f"receiver {r!r} holds the page of {len(ids)} open incident(s) ({_ids(ids)}) that"
            " will need its resolve: keep it in the config until they resolve"
            for r, ids in sorted(held.items())
            if r not in keep
        ]
        if problems:
            raise ValueError("; ".join(problems))
        router = Router(settings.receivers, settings.routes)
        senders = build_senders(
            settings.receivers,
            log=self.log,
            public_url=self.settings.listen.public_url,
            timeout_s=settings.notify.timeout_s,
        )

        def commit() -> None:
            self.settings = settings
            self.router = router
            self.senders = senders
            self.worker.reconfigure(senders, settings.notify)
            self._init_series()

        return commit

    def receiver_names(self) -> list[str]:
        return list(self.senders)

    def open_pages_by_receiver(self, incident_ids: Iterable[str]) -> dict[str, list[str]]:
        """Receiver → those of `incident_ids` whose trigger it was given (not a dead letter):
        the receivers their resolve will go to (`_triggered_receivers`)."""
        ids = sorted(set(incident_ids))
        out: dict[str, list[str]] = {}
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            marks = ", ".join("?" for _ in chunk)
            rows = self.store.conn.execute(
                "SELECT DISTINCT receiver, incident_id FROM notify_outbox WHERE action ="
                f" 'trigger' AND state != 'dead' AND incident_id IN ({marks})"
                " ORDER BY receiver, incident_id",
                chunk,
            )
            for receiver, incident_id in rows:
                out.setdefault(receiver, []).append(incident_id)
        return out

    def orphaned_pages(self, incident_ids: Iterable[str]) -> dict[str, list[str]]:
        """Receivers no longer configured that hold the page of one of `incident_ids`, with
        those incidents: their resolves will be dead letters."""
        return {
            r: ids
            for r, ids in self.open_pages_by_receiver(incident_ids).items()
            if r not in self.senders
        }

    def enqueue(
        self, conn: sqlite3.Connection, upd: IncidentUpdate, record: dict[str, Any]
    ) -> None:
        if upd.notify is None:
            return
        runbook = self.settings.feature(record["feature"]).runbook.model_dump(exclude_none=True)
        note = Notification(
            incident_id=record["id"],
            dedup_key=record["dedup_key"],
            action=upd.notify,
            incident=record,
            created_at=self.clock(),
            runbook={k: str(v) for k, v in runbook.items()} or None,
        )
        targets: list[str | RouteTarget]
        if upd.action == "renotify":
            targets = [
                t for t in self.router.targets(record) if self._reminder_due(conn, record, t)
            ]
        elif upd.notify == "trigger":
            targets = list(self.router.targets(record))
        else:
            targets = list(self._triggered_receivers(conn, record["id"]))
        if not targets:
            self.log.info("page_not_routed", incident=record["id"], action=upd.notify)
            return
        self.outbox.enqueue(conn, note, targets)

    def _reminder_due(
        self, conn: sqlite3.Connection, record: dict[str, Any], target: RouteTarget
    ) -> bool:
        """A route's own `renotify_s` overrides the global interval for its receiver; the
        correlator proposes reminders at the shortest interval of any (see `pipeline`)."""
        interval = target.renotify_s or self.settings.correlation.renotify_s
        if not interval:
            return False
        row = conn.execute(
            "SELECT MAX(created_at) FROM notify_outbox WHERE incident_id = ? AND receiver = ?"
            " AND action = 'trigger'",
            (record["id"], target.receiver),
        ).fetchone()
        last = row[0] if row else None
        return last is None or self.clock() - float(last) >= interval - 1.0

    @staticmethod
    def _triggered_receivers(conn: sqlite3.Connection, incident_id: str) -> list[str]:
        rows = conn.execute(
            "SELECT DISTINCT receiver FROM notify_outbox WHERE incident_id = ? AND action ="
            " 'trigger' AND state != 'dead' ORDER BY receiver",
            (incident_id,),
        )
        return [r[0] for r in rows]

    def test_page(self, receiver: str, by: str) -> dict[str, Any]:
        """A clearly marked test trigger and its resolve to one receiver, through the outbox
        like any page (so retries, rate limits and dead letters show as usual). Returns the
        record sent. Raises KeyError for a receiver that is not configured, TooManyTestPages
        within `TEST_PAGE_INTERVAL_S` of the last one to that receiver."""
        if receiver not in self.senders:
            raise KeyError(receiver)
        now = self.clock()
        wait = self._last_test.get(receiver, -math.inf) + TEST_PAGE_INTERVAL_S - now
        if wait > 0:
            raise TooManyTestPages(receiver, wait)
        self._last_test[receiver] = now
        iid = f"test-{uuid.uuid4().hex[:12]}"
        record: dict[str, Any] = {
            "id": iid,
            "dedup_key": f"llm-oncall/test/{int(now)}/{iid.removeprefix('test-')}",
            "feature": "llm-oncall-test",
            "status": "open",
            "severity": "warning",
            "paged": True,
            "domain": "unknown",
            "opened_at": rfc3339(now),
            "resolved_at": None,
            "started_at": rfc3339(now),
            "signals": [],
            "triage": [],
            "changes": [],
            "attribution": [],
            "summary": f"[TEST] llm-oncall test page requested by {by}: no action needed,"
            " it resolves itself",
            "test": True,
        }
        resolved = record | {"status": "resolved", "resolved_at": rfc3339(now)}
        trigger = Notification(iid, record["dedup_key"], "trigger", record, now)
        resolve = Notification(iid, record["dedup_key"], "resolve", resolved, now)
        with self.store.transaction() as conn:
            self.outbox.enqueue(conn, trigger, [receiver])
            self.outbox.enqueue(conn, resolve, [receiver])
        self.wake()
        self.log.info("test_page_queued", receiver=receiver, id=iid, by=by)
        return record

    def history(self, incident_id: str) -> list[dict[str, Any]]:
        """What was sent for an incident, oldest first: receiver, action, state (pending,
        inflight = being sent, sent, dead), attempts, times and the last error. Sent rows are
        pruned after `notify.keep_sent_s`."""
        rows = self.store.conn.execute(
            "SELECT receiver, action, state, attempts, created_at, sent_at, next_attempt_at,"
            " last_error, fallback FROM notify_outbox WHERE incident_id = ? ORDER BY id",
            (incident_id,),
        )
        return [
            {
                "receiver": r[0],
                "action": r[1],
                "state": r[2],
                "attempts": r[3],
                "created_at": rfc3339(r[4]),
                "sent_at": rfc3339(r[5]),
                "next_attempt_at": rfc3339(r[6]) if r[2] == "pending" else None,
                "last_error": r[7],
                "fallback": r[8],
            }
            for r in rows
        ]

    def wake(self) -> None:
        self.outbox.notify()

    async def start(self) -> None:
        requeued = self.outbox.requeue_inflight()
        if requeued:
            self.log.info("outbox_requeued", rows=requeued)
        self.worker.start()

    def task(self) -> asyncio.Task[None] | None:
        """The delivery worker's task, for the daemon to watch (it must never die)."""
        return self.worker.task

    async def stop(self, timeout: float) -> None:  # noqa: ASYNC109
        await self.worker.stop(timeout=timeout)
