"""Issue 8, defect 9: a bad state file never ends in a traceback. Corrupt content is moved
aside (timestamped) with one log line and the daemon starts fresh; a file or directory the
daemon may not write is refused in one line naming the file and the fix, exit code 1.
Every case runs the real `python -m daemon.cli run`."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, start_daemon
from tests.e2e.harness import http


def run_refused(state: Path) -> list[str]:
    """Run the daemon on `state`, expect a refusal; returns the stderr lines."""
    env = os.environ | {
        "LLM_ONCALL_LISTEN__HOST": "127.0.0.1",
        "LLM_ONCALL_LISTEN__PORT": str(free_port()),
        "LLM_ONCALL_STATE__PATH": str(state),
        "LLM_ONCALL_LOG__FORMAT": "json",
        "PYTHONPATH": str(ROOT),
    }
    out = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "run"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )
    err = out.stderr.decode()
    assert out.returncode == 1, (out.returncode, err)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    refusal = lines[-1]
    assert refusal.startswith("llm-oncall: ") and "fix" in refusal, refusal
    assert sum(1 for ln in lines if ln.startswith("llm-oncall:")) == 1
    return lines


def start_fresh_after_corruption(tmp_path: Path, original: bytes) -> None:
    d = start_daemon(tmp_path)
    try:
        assert http("GET", d.url + "/readyz")[0] == 200
        log = d.log()
        corrupt = [ln for ln in log.splitlines() if '"state_file_corrupt"' in ln]
        assert len(corrupt) == 1, log
        assert "Traceback" not in log
        moved = sorted(tmp_path.glob("state.db.corrupt-*"))
        assert [p for p in moved if not p.name.endswith(("-wal", "-shm"))], moved
        main = next(p for p in moved if not p.name.endswith(("-wal", "-shm")))
        assert main.read_bytes() == original  # kept as it was, for inspection
        assert str(main) in corrupt[0]
    finally:
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(15) == 0
    with sqlite3.connect(tmp_path / "state.db") as conn:  # the fresh file is sound
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_random_bytes_are_moved_aside_and_the_daemon_starts_fresh(tmp_path: Path) -> None:
    junk = os.urandom(64 * 1024)
    (tmp_path / "state.db").write_bytes(junk)
    start_fresh_after_corruption(tmp_path, junk)


def test_a_corrupted_page_is_moved_aside(tmp_path: Path) -> None:
    d = start_daemon(tmp_path)
    d.proc.send_signal(signal.SIGTERM)  # a real state file: snapshot, schema, outbox
    assert d.proc.wait(15) == 0
    db = tmp_path / "state.db"
    with sqlite3.connect(db) as conn:
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
    assert pages >= 3
    raw = bytearray(db.read_bytes())
    raw[page : 2 * page] = b"\xa5" * page  # page 2: a table's root page, now garbage
    db.write_bytes(bytes(raw))
    start_fresh_after_corruption(tmp_path, bytes(raw))


@contextmanager
def immutable(path: Path) -> Iterator[None]:
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"chattr +i not permitted here: {done.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def make_state(tmp_path: Path) -> Path:
    d = start_daemon(tmp_path)
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(15) == 0
    return tmp_path / "state.db"


def test_an_immutable_state_file_is_refused_in_one_line(tmp_path: Path) -> None:
    db = make_state(tmp_path)
    with immutable(db):
        lines = run_refused(db)
    assert str(db) in lines[-1] and "not readable and writable" in lines[-1]


def test_a_read_only_state_file_is_refused_in_one_line(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores file modes; the immutable-file test covers this refusal")
    db = make_state(tmp_path)
    db.chmod(0o444)
    try:
        lines = run_refused(db)
    finally:
        db.chmod(0o644)
    assert str(db) in lines[-1]


def test_a_read_only_state_directory_is_refused_in_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    folder.mkdir()
    db = folder / "state.db"
    if os.geteuid() == 0:
        with immutable(folder):  # root ignores modes, not the immutable attribute
            lines = run_refused(db)
    else:
        folder.chmod(0o555)
        try:
            lines = run_refused(db)
        finally:
            folder.chmod(0o755)
    assert f"state directory {folder}" in lines[-1]


def _directory(db: Path) -> None:
    db.mkdir()


def _fifo(db: Path) -> None:
    os.mkfifo(db)


def _symlink_loop(db: Path) -> None:
    db.symlink_to(db)


def _foreign_schema(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE kv (a)")
        conn.execute("INSERT INTO kv VALUES (1)")


def _other_tables(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE users (name)")


@pytest.mark.parametrize(
    ("setup", "says"),
    [
        (_directory, "is a directory"),
        (_fifo, "is a FIFO"),
        (_symlink_loop, "symlink loop"),
        (_other_tables, "without llm-oncall's tables"),
        (_foreign_schema, "lacks the column(s) key, updated_at, value"),
    ],
)
def test_a_state_path_that_is_not_our_file_is_refused_in_one_line(
    tmp_path: Path, setup: object, says: str
) -> None:
    """Probe N4: these ended in a raw traceback. None of them is corruption of our file, so
    none is moved aside: a foreign SQLite database may be someone else's."""
    db = tmp_path / "state.db"
    setup(db)  # type: ignore[operator]
    before = sorted(p.name for p in tmp_path.iterdir())
    lines = run_refused(db)
    assert str(db) in lines[-1] and says in lines[-1], lines[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing moved or created


def test_a_second_daemon_on_the_same_state_is_refused_naming_the_first(tmp_path: Path) -> None:
    """Probe finding: a second daemon on the same state file started, restored the same
    baselines and overwrote the first's snapshot, orphaning its open incident; SQLite's
    locks are not held by an idle daemon in WAL mode. The store's flock on
    `state.db.lock` refuses it, naming the first's pid; once the first stops, the state
    opens again (a crash releases the lock too: the kernel drops it with the process)."""
    first = start_daemon(tmp_path)
    try:
        lines = run_refused(tmp_path / "state.db")
        assert "in use by another llm-oncall" in lines[-1], lines[-1]
        assert f"pid {first.proc.pid}" in lines[-1], lines[-1]
    finally:
        first.proc.kill()
        first.proc.wait(timeout=30)
    again = start_daemon(tmp_path)  # after kill -9: no stale lock
    again.proc.send_signal(signal.SIGTERM)
    assert again.proc.wait(timeout=30) == 0
