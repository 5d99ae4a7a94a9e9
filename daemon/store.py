"""The embedded state store: one SQLite file in WAL mode.

It holds the pipeline snapshot (detector baselines, open windows, correlator state), the
incident records and the paging outbox, so a restart keeps its baselines and, because the
incident change and its notification commit together, never pages twice or loses a page.

Opening it checks the file before anything trusts it (issue 8: a bad state file ended in a
raw traceback). Two kinds of trouble are told apart:

- *The content is corrupt* (not an SQLite file, a damaged page, a failed integrity check):
  nothing in it can be trusted and nobody can repair it by restarting, so the file (with its
  -wal/-shm companions) is renamed aside with a UTC timestamp suffix for inspection, one
  warning is logged, and the daemon starts fresh. Baselines relearn; open incidents and
  pages not yet sent in the old file are not carried over (the log line says so).
- *The daemon may not use the file* (permissions, an immutable or read-only file or
  directory, another process holding the lock, a disk error): moving it aside would lose
  good state, so `StateFileError` says in one line which file, what is wrong and how to fix
  it, and the command exits non-zero.

One daemon per file: a second daemon on the same state would restore the same baselines,
overwrite the first's snapshots and drain the same outbox, paging twice. SQLite's own locks
serialize writes but do not stop that, so the store holds an exclusive advisory lock
(`flock`) on `<state file>.lock` for as long as it is open, with the holder's pid in it for
the message. The kernel drops it when the process dies, so a crash never leaves it stale.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

SCHEMA_VERSION = 1
_FIX = "fix it, or point state.path (LLM_ONCALL_STATE__PATH) at a writable location"
# Result codes (low byte of sqlite_errorcode), https://www.sqlite.org/rescode.html
_CORRUPT_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_ACCESS_CODES = {3, 8, 14, 23}  # SQLITE_PERM, SQLITE_READONLY, SQLITE_CANTOPEN, SQLITE_AUTH
_BUSY_CODES = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED


class StateFileError(Exception):
    """The state file cannot be used and must not be replaced; the message is one line
    naming the file, the problem and the fix."""


class _Corrupt(Exception):
    pass


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
# The columns the daemon reads and writes, per table: `CREATE TABLE IF NOT EXISTS` leaves a
# table of the same name from another schema as it is.
_COLUMNS = {
    "kv": {"key", "value", "updated_at"},
    "incidents": {"id", "feature", "status", "severity", "opened_at", "updated_at", "record"},
}


class Store:
    def __init__(self, path: str | Path, log: Any = None) -> None:
        self.path = Path(path)
        self.moved_aside: Path | None = None  # where a corrupt file went, if one did
        self._lock = -1  # the lock file's descriptor while open (`_take_lock`)
        if str(path) == ":memory:":
            self.conn = self._connect()
            return
        self._check_access()
        lock_path = Path(f"{self.path}.lock")
        created = not lock_path.exists()
        self._lock = self._take_lock(lock_path)
        try:
            self._open(log)
        except BaseException:
            if created:  # a refused path (another program's database) is left as it was
                lock_path.unlink(missing_ok=True)
            os.close(self._lock)
            raise

    def _open(self, log: Any) -> None:
        try:
            self.conn = self._connect()
        except _Corrupt as exc:
            self.moved_aside = self._move_aside()
            if log is not None:
                log.warning(
                    "state_file_corrupt",
                    path=str(self.path),
                    moved_to=str(self.moved_aside),
                    error=str(exc),
                    detail="starting with fresh state: baselines relearn; incidents and"
                    " unsent pages in the old file are not carried over",
                )
            self.conn = self._connect()

    def _take_lock(self, lock_path: Path) -> int:
        """The exclusive lock on `lock_path`, or `StateFileError` naming its holder."""
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StateFileError(
                f"cannot open the lock file {lock_path}: {exc.strerror}; {_FIX}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StateFileError(
                f"state file {self.path} is in use by another llm-oncall (pid {holder}, holding"
                f" {lock_path}); to fix it, stop that daemon, or give each daemon its own"
                " state.path (LLM_ONCALL_STATE__PATH)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def _check_access(self) -> None:
        """Permission problems, named before SQLite's vaguer "unable to open database file"."""
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateFileError(
                f"cannot create the state directory {folder}: {exc.strerror}; {_FIX}"
            ) from None
        self._check_kind()
        who = f"user id {os.geteuid()}"
        if not os.access(folder, os.W_OK | os.X_OK):
            raise StateFileError(
                f"state directory {folder} is not writable by {who} (SQLite keeps its -wal and"
                f" -shm files next to the state file; read-only or immutable?); {_FIX}"
            )
        for f in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
            if f.exists() and not os.access(f, os.R_OK | os.W_OK):
                raise StateFileError(
                    f"state file {f} is not readable and writable by {who} (read-only or"
                    f" immutable, see ls -l and lsattr); {_FIX}"
                )

    def _check_kind(self) -> None:
        """A directory, a FIFO (SQLite would block opening it) or a symlink loop at the
        state path is a mistake in the setup, not corruption: refuse, naming it."""
        try:
            mode = os.stat(self.path).st_mode
        except FileNotFoundError:
            return  # created on open (a dangling symlink's target too)
        except OSError as exc:
            raise StateFileError(
                f"state path {self.path} cannot be resolved ({exc.strerror}; a symlink loop?);"
                f" {_FIX}"
            ) from None
        if stat.S_ISREG(mode):
            return
        kind = (
            "a directory"
            if stat.S_ISDIR(mode)
            else "a FIFO"
            if stat.S_ISFIFO(mode)
            else "not a regular file"
        )
        raise StateFileError(
            f"state path {self.path} is {kind}; to fix it, point state.path"
            " (LLM_ONCALL_STATE__PATH) at a file (llm-oncall creates it), or remove what is there"
        )

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        """A sound SQLite file whose tables lack our columns may be another program's
        database: refuse rather than move it aside or write into it."""
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        if tables and not tables & set(_COLUMNS):
            raise StateFileError(
                f"state file {self.path} is an SQLite database without llm-oncall's tables"
                f" (it has {', '.join(sorted(tables)[:5])}): another program's database?; to fix"
                " it, point state.path (LLM_ONCALL_STATE__PATH) at another file"
            )
        for table, needed in _COLUMNS.items():
            have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            missing = sorted(needed - have)
            if have and missing:
                raise StateFileError(
                    f"state file {self.path} is an SQLite database whose table {table} lacks"
                    f" the column(s) {', '.join(missing)}: not an llm-oncall state file (another"
                    " program's database?); to fix it, point state.path (LLM_ONCALL_STATE__PATH) at"
                    " another file, or move this one away if it is not needed"
                )

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so a transaction spans
        # exactly the incident change and its outbox rows.
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout=5000")
            self._check_schema(conn)  # before any write: the file may not be ours
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            check = conn.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise _Corrupt(f"integrity check failed: {check and check[0]}")
            conn.executescript(_SCHEMA)
            # A write on every open: a file we can read but not write fails here, at start,
            # not at the first incident.
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except (_Corrupt, StateFileError):
            conn.close()
            raise
        except sqlite3.DatabaseError as exc:
            conn.close()
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            if code in _CORRUPT_CODES:
                raise _Corrupt(str(exc)) from None
            if code in _BUSY_CODES:
                raise StateFileError(
                    f"state file {self.path} is locked by another process ({exc}); stop the"
                    " other daemon using it, or give each daemon its own state.path"
                ) from None
            what = "cannot be written" if code in _ACCESS_CODES else "cannot be used"
            raise StateFileError(f"state file {self.path} {what}: {exc}; {_FIX}") from None
        return conn

    def _move_aside(self) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = Path(f"{self.path}.corrupt-{stamp}")
        try:
            for suffix in ("-wal", "-shm", ""):  # the main file last: it names the set
                src = Path(f"{self.path}{suffix}")
                if src.exists():
                    src.rename(Path(f"{target}{suffix}"))
        except OSError as exc:
            raise StateFileError(
                f"state file {self.path} is corrupt and cannot be moved aside"
                f" ({exc.strerror}); move or delete it by hand to start fresh"
            ) from None
        return target

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

    def with_prefix(self, prefix: str) -> list[Any]:
        """The values of every key starting with `prefix`, oldest write first."""
        rows = self.conn.execute(
            "SELECT value FROM kv WHERE key >= ? AND key < ? ORDER BY updated_at",
            (prefix, prefix + "\U0010ffff"),
        )
        return [orjson.loads(r[0]) for r in rows]

    @staticmethod
    def delete_prefix(conn: sqlite3.Connection, prefix: str) -> None:
        conn.execute("DELETE FROM kv WHERE key >= ? AND key < ?", (prefix, prefix + "\U0010ffff"))

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
        lock, self._lock = self._lock, -1
        if lock >= 0:
            os.close(lock)  # releases the flock
