"""The embedded state store: one SQLite file in WAL mode.

It holds the pipeline snapshot (detector baselines, open windows, correlator state), the
incident records and the paging outbox, so a restart keeps its baselines and, because the
incident change and its notification commit together, never pages twice or loses a page.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

_OPTS = orjson.OPT_NON_STR_KEYS

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,
    feature TEXT NOT NULL,
    status TEXT NOT NULL,
    severity TEXT NOT NULL,
    opened_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    record BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_opened ON incidents (opened_at);
"""


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so a transaction spans
        # exactly the incident change and its outbox rows.
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA busy_timeout=5000")
        self.conn.executescript(_SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    @staticmethod
    def put(conn: sqlite3.Connection, key: str, value: Any, now: float) -> None:
        """Store `value` as JSON (`bytes` are taken as JSON already encoded)."""
        blob = value if isinstance(value, bytes) else orjson.dumps(value, option=_OPTS)
        conn.execute(
            "INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value,"
            " updated_at = excluded.updated_at",
            (key, blob, now),
        )

    def get(self, key: str) -> Any:
        row = self.conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else orjson.loads(row[0])

    @staticmethod
    def save_incident(
        conn: sqlite3.Connection, record: dict[str, Any], opened_at: float, now: float
    ) -> None:
        conn.execute(
            "INSERT INTO incidents (id, feature, status, severity, opened_at, updated_at, record)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET status = excluded.status,"
            " severity = excluded.severity, updated_at = excluded.updated_at,"
            " record = excluded.record",
            (
                record["id"],
                record["feature"],
                record["status"],
                record["severity"],
                opened_at,
                now,
                orjson.dumps(record),
            ),
        )

    def incidents(
        self,
        status: str | None = None,
        feature: str | None = None,
        severity: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        where: list[str] = []
        args: list[Any] = []
        for column, value in (("status", status), ("feature", feature), ("severity", severity)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if since is not None:
            where.append("opened_at >= ?")
            args.append(since)
        sql = "SELECT record FROM incidents"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY opened_at DESC LIMIT ?"
        args.append(limit)
        return [orjson.loads(r[0]) for r in self.conn.execute(sql, args)]

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT record FROM incidents WHERE id = ?", (incident_id,)
        ).fetchone()
        return None if row is None else orjson.loads(row[0])

    def close(self) -> None:
        self.conn.close()
