"""Durable outbox in SQLite: pages survive crashes and receiver outages.

The pipeline writes the incident change and its outbox rows in ONE transaction
(`enqueue` never commits), so a page exists exactly when its incident change does. The
delivery worker claims rows (pending → inflight), and marks them sent only after the
receiver's success response: at-least-once. A crash leaves rows inflight; `requeue_inflight`
(run when the worker starts) makes them pending again, and the receiver's dedup key absorbs
the duplicate.

Ordering: per (receiver, dedup_key) only the lowest-seq unfinished row is eligible, so a
resolve never overtakes its trigger, even while the trigger waits in backoff.

Sharing the daemon's single connection: every method here runs its statements and its
commit with no `await` in between, and the worker's methods refuse to touch the connection
while someone else's transaction is open (`conn.in_transaction`), because committing then
would commit half of the caller's work. The pipeline must likewise do "write incident,
enqueue, commit" without awaiting in the middle.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from daemon.notify.model import Notification
from daemon.notify.router import RouteTarget

__all__ = ["Outbox", "OutboxBusy", "OutboxRow"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS notify_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    receiver TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    dedup_key TEXT NOT NULL,
    action TEXT NOT NULL,
    payload TEXT NOT NULL,
    seq INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    created_at REAL NOT NULL,
    last_error TEXT,
    state TEXT NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'inflight', 'sent', 'dead')),
    sent_at REAL,
    fallback TEXT,
    retried INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS notify_outbox_open
    ON notify_outbox (receiver, dedup_key, seq) WHERE state IN ('pending', 'inflight');
CREATE INDEX IF NOT EXISTS notify_outbox_state ON notify_outbox (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS notify_outbox_incident ON notify_outbox (incident_id, seq);
CREATE TABLE IF NOT EXISTS notify_redirect (
    receiver TEXT NOT NULL,
    dedup_key TEXT NOT NULL,
    target TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (receiver, dedup_key)
);
"""

_COLUMNS = (
    "id, receiver, incident_id, dedup_key, action, payload, seq, attempts, next_attempt_at, "
    "created_at, last_error, state, sent_at, fallback, retried"
)


# A row heads its (receiver, dedup_key) queue when no earlier row of the pair is unfinished.
_IS_HEAD = (
    " AND NOT EXISTS (SELECT 1 FROM notify_outbox p WHERE p.receiver = o.receiver"
    " AND p.dedup_key = o.dedup_key AND p.state IN ('pending', 'inflight')"
    " AND (p.seq < o.seq OR (p.seq = o.seq AND p.id < o.id)))"
)


class OutboxBusy(Exception):
    """The shared connection is inside someone else's transaction; try again shortly."""


@dataclass(frozen=True)
class OutboxRow:
    id: int
    receiver: str
    incident_id: str
    dedup_key: str
    action: str
    payload: str
    seq: int
    attempts: int
    next_attempt_at: float
    created_at: float
    last_error: str | None
    state: str
    sent_at: float | None
    fallback: str | None
    retried: bool

    def notification(self) -> Notification:
        return Notification.from_json_dict(orjson.loads(self.payload))


def _row(t: Sequence[Any]) -> OutboxRow:
    return OutboxRow(
        id=t[0],
        receiver=t[1],
        incident_id=t[2],
        dedup_key=t[3],
        action=t[4],
        payload=t[5],
        seq=t[6],
        attempts=t[7],
        next_attempt_at=t[8],
        created_at=t[9],
        last_error=t[10],
        state=t[11],
        sent_at=t[12],
        fallback=t[13],
        retried=bool(t[14]),
    )


class Outbox:
    def __init__(self, conn: sqlite3.Connection, clock: Callable[[], float]) -> None:
        self.conn = conn
        self.clock = clock
        self._wakeup = asyncio.Event()

    # -- schema ---------------------------------------------------------------------------

    @staticmethod
    def init_schema(conn: sqlite3.Connection) -> None:
        """Create the outbox tables if missing (idempotent; commits)."""
        if conn.in_transaction:
            raise OutboxBusy("init_schema needs no open transaction")
        conn.executescript(_SCHEMA)
        conn.commit()

    # -- writing (the pipeline) -------------------------------------------------------------

    def enqueue(
        self,
        conn: sqlite3.Connection,
        notification: Notification,
        receivers: Sequence[str | RouteTarget],
    ) -> list[int]:
        """Insert one row per receiver WITHOUT committing; the caller commits together with
        its incident change. Receivers given as `RouteTarget` carry their route's fallback.
        Returns the new row ids and wakes the worker."""
        payload = orjson.dumps(notification.to_json_dict(), default=str).decode()
        ids: list[int] = []
        seq = self._next_seq(conn, notification.incident_id)
        for item in receivers:
            target = item if isinstance(item, RouteTarget) else RouteTarget(item)
            receiver, fallback = target.receiver, target.fallback
            # Once a receiver gave up on this dedup key and its fallback took over, later
            # actions (the resolve) follow the trigger to the fallback.
            redirect = conn.execute(
                "SELECT target FROM notify_redirect WHERE receiver = ? AND dedup_key = ?",
                (receiver, notification.dedup_key),
            ).fetchone()
            if redirect is not None:
                receiver, fallback = redirect[0], None
            cur = conn.execute(
                "INSERT INTO notify_outbox (receiver, incident_id, dedup_key, action, payload,"
                " seq, next_attempt_at, created_at, fallback) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    receiver,
                    notification.incident_id,
                    notification.dedup_key,
                    notification.action,
                    payload,
                    seq,
                    notification.created_at,
                    notification.created_at,
                    fallback,
                ),
            )
            assert cur.lastrowid is not None
            ids.append(cur.lastrowid)
        self.notify()
        return ids

    @staticmethod
    def _next_seq(conn: sqlite3.Connection, incident_id: str) -> int:
        (seq,) = conn.execute(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM notify_outbox WHERE incident_id = ?",
            (incident_id,),
        ).fetchone()
        return int(seq)

    def notify(self) -> None:
        """Wake the delivery worker (new rows, or a row finished)."""
        self._wakeup.set()

    @property
    def wakeup_event(self) -> asyncio.Event:
        return self._wakeup

    # -- the worker's side (each method is one short transaction) ---------------------------

    def _begin(self) -> None:
        if self.conn.in_transaction:
            raise OutboxBusy("the shared connection is inside another transaction")
        self.conn.execute("BEGIN IMMEDIATE")

    def requeue_inflight(self) -> int:
        """After a crash: rows that were being delivered become pending again."""
        self._begin()
        try:
            cur = self.conn.execute(
                "UPDATE notify_outbox SET state = 'pending' WHERE state = 'inflight'"
            )
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        return cur.rowcount

    def eligible(self, now: float, limit: int) -> list[OutboxRow]:
        """Due pending rows that head their (receiver, dedup_key) queue, oldest first."""
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM notify_outbox o WHERE o.state = 'pending'"
            " AND o.next_attempt_at <= ?" + _IS_HEAD + " ORDER BY o.next_attempt_at, o.id LIMIT ?",
            (now, limit),
        ).fetchall()
        return [_row(r) for r in rows]

    def claim(self, row_ids: Sequence[int]) -> list[OutboxRow]:
        """pending → inflight for these rows (those still pending); committed."""
        if not row_ids:
            return []
        self._begin()
        try:
            claimed: list[OutboxRow] = []
            for rid in row_ids:
                cur = self.conn.execute(
                    "UPDATE notify_outbox SET state = 'inflight', attempts = attempts + 1"
                    " WHERE id = ? AND state = 'pending'",
                    (rid,),
                )
                if cur.rowcount:
                    claimed.append(self.get(rid))
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        return claimed

    def mark_sent(self, row_id: int, now: float) -> None:
        self._update(
            "UPDATE notify_outbox SET state = 'sent', sent_at = ?, last_error = NULL WHERE id = ?",
            (now, row_id),
        )

    def mark_retry(self, row_id: int, next_attempt_at: float, error: str | None) -> bool:
        """inflight → pending at `next_attempt_at`. Returns True the first time this row
        needed a retry."""
        first = not self.get(row_id).retried
        self._update(
            "UPDATE notify_outbox SET state = 'pending', next_attempt_at = ?, last_error = ?,"
            " retried = 1 WHERE id = ?",
            (next_attempt_at, error, row_id),
        )
        return first

    def expedite(self, receiver: str, now: float) -> int:
        """The receiver is back: rows of it sleeping in backoff become due now."""
        self._begin()
        try:
            cur = self.conn.execute(
                "UPDATE notify_outbox SET next_attempt_at = ? WHERE receiver = ?"
                " AND state = 'pending' AND retried = 1 AND next_attempt_at > ?",
                (now, receiver, now),
            )
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        return cur.rowcount

    def release(self, row_id: int) -> None:
        """inflight → pending without counting the attempt (shutdown mid-delivery)."""
        self._update(
            "UPDATE notify_outbox SET state = 'pending', attempts = MAX(attempts - 1, 0)"
            " WHERE id = ? AND state = 'inflight'",
            (row_id,),
        )

    def mark_dead(self, row: OutboxRow, error: str, now: float) -> list[OutboxRow]:
        """The row is a dead letter. If its route named a fallback receiver, this row and the
        later unfinished rows of the same (receiver, dedup_key) move there, in order, and
        later enqueues for that pair are redirected too. Returns the rows moved (now dead
        here; their copies are pending at the fallback)."""
        self._begin()
        try:
            self.conn.execute(
                "UPDATE notify_outbox SET state = 'dead', last_error = ? WHERE id = ?",
                (error, row.id),
            )
            moved: list[OutboxRow] = []
            if row.fallback:
                later = [
                    _row(r)
                    for r in self.conn.execute(
                        f"SELECT {_COLUMNS} FROM notify_outbox WHERE receiver = ? AND"
                        " dedup_key = ? AND state = 'pending' AND id != ? ORDER BY seq, id",
                        (row.receiver, row.dedup_key, row.id),
                    )
                ]
                for r in [row, *later]:
                    seq = self._next_seq(self.conn, r.incident_id)
                    self.conn.execute(
                        "INSERT INTO notify_outbox (receiver, incident_id, dedup_key, action,"
                        " payload, seq, next_attempt_at, created_at, fallback)"
                        " VALUES (?,?,?,?,?,?,?,?,NULL)",
                        (
                            row.fallback,
                            r.incident_id,
                            r.dedup_key,
                            r.action,
                            r.payload,
                            seq,
                            now,
                            r.created_at,
                        ),
                    )
                    if r.id != row.id:
                        self.conn.execute(
                            "UPDATE notify_outbox SET state = 'dead', last_error = ? WHERE id = ?",
                            (f"moved to fallback {row.fallback!r}", r.id),
                        )
                    moved.append(r)
                self.conn.execute(
                    "INSERT OR REPLACE INTO notify_redirect VALUES (?,?,?,?)",
                    (row.receiver, row.dedup_key, row.fallback, now),
                )
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        if moved:
            self.notify()
        return moved

    def prune(self, sent_before: float) -> int:
        """Delete sent rows older than `sent_before` (dead letters are kept for people).

        Except the last sent trigger of an incident at a receiver, until a later resolve (or
        a later live trigger) of that incident is enqueued there: it is the record that the
        receiver holds the page, which the resolve is sent by (`Paging`) and a config
        reload checks. Pruned after `keep_sent_s` (7 days), an incident open that long
        would have resolved nowhere, and its receiver could be removed."""
        self._begin()
        try:
            cur = self.conn.execute(
                "DELETE FROM notify_outbox WHERE state = 'sent' AND sent_at < ? AND ("
                " action != 'trigger' OR EXISTS (SELECT 1 FROM notify_outbox r"
                " WHERE r.incident_id = notify_outbox.incident_id"
                " AND r.receiver = notify_outbox.receiver AND r.seq > notify_outbox.seq"
                " AND (r.action = 'resolve' OR (r.action = 'trigger' AND r.state != 'dead'))))",
                (sent_before,),
            )
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        return cur.rowcount

    def _update(self, sql: str, args: tuple[Any, ...]) -> None:
        self._begin()
        try:
            self.conn.execute(sql, args)
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise

    # -- reading --------------------------------------------------------------------------

    def get(self, row_id: int) -> OutboxRow:
        r = self.conn.execute(
            f"SELECT {_COLUMNS} FROM notify_outbox WHERE id = ?", (row_id,)
        ).fetchone()
        if r is None:
            raise KeyError(row_id)
        return _row(r)

    def rows(self, state: str | None = None, receiver: str | None = None) -> list[OutboxRow]:
        sql = f"SELECT {_COLUMNS} FROM notify_outbox WHERE 1=1"
        args: list[Any] = []
        if state is not None:
            sql += " AND state = ?"
            args.append(state)
        if receiver is not None:
            sql += " AND receiver = ?"
            args.append(receiver)
        return [_row(r) for r in self.conn.execute(sql + " ORDER BY id", args)]

    def dead_letters(self) -> list[OutboxRow]:
        return self.rows("dead")

    def unfinished_count(self) -> int:
        (n,) = self.conn.execute(
            "SELECT COUNT(*) FROM notify_outbox WHERE state IN ('pending', 'inflight')"
        ).fetchone()
        return int(n)

    def unfinished_by_receiver(self) -> dict[str, int]:
        """Notifications pending or in flight, per receiver."""
        return self._count_by_receiver("pending", "inflight")

    def depth_by_receiver(self) -> dict[str, int]:
        return self._count_by_receiver("pending")

    def _count_by_receiver(self, *states: str) -> dict[str, int]:
        marks = ", ".join("?" for _ in states)
        return {
            r: int(n)
            for r, n in self.conn.execute(
                "SELECT receiver, COUNT(*) FROM notify_outbox"
                f" WHERE state IN ({marks}) GROUP BY receiver",
                states,
            )
        }

    def oldest_pending_created_at(self) -> float | None:
        (t,) = self.conn.execute(
            "SELECT MIN(created_at) FROM notify_outbox WHERE state IN ('pending', 'inflight')"
        ).fetchone()
        return float(t) if t is not None else None

    def next_due_at(self) -> float | None:
        """When the earliest queue head becomes due (rows waiting behind a head don't count)."""
        (t,) = self.conn.execute(
            "SELECT MIN(o.next_attempt_at) FROM notify_outbox o WHERE o.state = 'pending'"
            + _IS_HEAD
        ).fetchone()
        return float(t) if t is not None else None
