"""Issue 8, defect 1, through the real daemon process: an event that breaks its feature's
evaluation does not stop the tick loop; a background task that dies anyway fails /readyz
and ends the process with exit code 1 after a final snapshot; SIGTERM always saves one."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from pathlib import Path

import orjson
import yaml

from tests.conftest import DaemonProcess, start_daemon
from tests.e2e.harness import http, metrics, stop, wait_for


def config(tmp: Path, **state: float) -> Path:
    cfg = {
        "aggregation": {"tick_s": 1, "window_s": 5, "quality_window_s": 5},
        "state": {"path": str(tmp / "state.db"), **state},
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def ticks(d: DaemonProcess) -> float:
    return metrics(d)[("llm_oncall_ticks_total", frozenset())]


def good_calls(n: int = 10) -> bytes:
    now = time.time()
    return orjson.dumps(
        [{"type": "llm_call", "ts": now, "feature": "good", "status": 200} for _ in range(n)]
    )


def post_raw(d: DaemonProcess, body: bytes) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        d.url + "/v1/events", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def test_an_event_that_breaks_evaluation_does_not_stop_the_tick_loop(tmp_path: Path) -> None:
    d = start_daemon(tmp_path, config=config(tmp_path))
    try:
        # The event: a 400-digit integer. Ingest may reject it (naming the field);
        # if it gets in, only its own feature's evaluation fails.
        digits = "9" * 400
        bad = (
            f'[{{"type":"llm_call","ts":{time.time()},"feature":"bad","status":200,'
            f'"output_chars":{digits}}}]'
        ).encode()
        code, answer = post_raw(d, bad)
        accepted = code == 200 and answer["accepted"] == 1
        if not accepted:
            assert code == 400 and "output_chars" in answer["rejected"][0]["error"], answer
        start = ticks(d)
        for _ in range(4):
            assert post_raw(d, good_calls())[0] == 200
            time.sleep(1)
        wait_for("ticks to go on", lambda: ticks(d) >= start + 3, timeout=5)
        assert http("GET", d.url + "/readyz")[0] == 200
        m = metrics(d)
        good = m.get(("llm_oncall_availability", frozenset({("feature", "good")})))
        errors = m[("llm_oncall_tick_errors_total", frozenset({("stage", "evaluate")}))]
        log = d.log()
        if accepted:
            assert errors >= 3, errors  # every tick while the event is in the window
            lines = [ln for ln in log.splitlines() if '"tick_error"' in ln]
            assert len(lines) == 1, lines  # rate-limited to one line per series
            assert '"feature": "bad"' in lines[0] and "OverflowError" in lines[0]
        else:
            assert errors == 0
        assert good is None or good == 1.0  # the good feature is still evaluated
        assert "background_task_failed" not in log
    finally:
        code = stop(d)
    assert code == 0
    assert '"final_snapshot_saved"' in d.log()


def test_a_dead_background_task_fails_readyz_and_exits_1(tmp_path: Path) -> None:
    """A genuine failure: another process holds the state file's write lock longer than
    the busy timeout, so the snapshot loop's write fails and the task dies."""
    d = start_daemon(tmp_path, config=config(tmp_path, snapshot_interval_s=0.5))
    seen: list[int] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set() and d.proc.poll() is None:
            try:
                status, raw, _ = http("GET", d.url + "/readyz", timeout=1)
                seen.append(status)
                if status == 503 and b"failed" in raw:
                    return
            except OSError:
                pass
            time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    holder = sqlite3.connect(tmp_path / "state.db", isolation_level=None, timeout=10)
    try:
        holder.execute("BEGIN IMMEDIATE")
        poller.join(timeout=20)
    finally:
        holder.execute("ROLLBACK")  # the final snapshot can now go through
        holder.close()
        done.set()
    assert 503 in seen, seen
    assert d.proc.wait(timeout=20) == 1
    log = d.log()
    assert '"background_task_failed"' in log and "database is locked" in log
    assert '"final_snapshot_saved"' in log
    with sqlite3.connect(tmp_path / "state.db") as conn:
        (saved_at,) = conn.execute("SELECT updated_at FROM kv WHERE key = 'pipeline'").fetchone()
    assert saved_at > time.time() - 15


def test_sigterm_saves_the_final_snapshot(tmp_path: Path) -> None:
    d = start_daemon(tmp_path, config=config(tmp_path))
    assert post_raw(d, good_calls())[0] == 200
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(15) == 0
    assert '"final_snapshot_saved"' in d.log()
    with sqlite3.connect(tmp_path / "state.db") as conn:
        (raw,) = conn.execute("SELECT value FROM kv WHERE key = 'pipeline'").fetchone()
    assert "good" in orjson.loads(raw)["aggregator"]["features"]


def maximal_events(now: float, n: int) -> list[dict]:
    """Every numeric field at the top of its documented range (daemon/ingest/events.py)."""
    from daemon.ingest.events import (
        MAX_ABS_VALUE,
        MAX_COST_USD,
        MAX_COUNT,
        MAX_LATENCY_MS,
        MAX_RETRIES,
    )

    call = {
        "type": "llm_call",
        "ts": now,
        "feature": "f_max",
        "status": 200,
        "latency_ms": float(MAX_LATENCY_MS),
        "retries": MAX_RETRIES,
        "input_tokens": MAX_COUNT,
        "output_tokens": MAX_COUNT,
        "output_chars": MAX_COUNT,
        "cost_usd": float(MAX_COST_USD),
        "ttft_ms": float(MAX_LATENCY_MS),
        # Per-label-value output lengths are summed too (attribution), squares included.
        "labels": {"segment": "pro", "prompt_version": "v1"},
    }
    score = {"type": "score", "ts": now, "feature": "f_max", "name": "s", "value": MAX_ABS_VALUE}
    metric = {
        "type": "metric",
        "ts": now,
        "feature": "f_max",
        "layer": "infra",
        "name": "m",
        "value": -MAX_ABS_VALUE,
    }
    return [call] * n + [score] * n + [metric]


def test_a_window_of_maximal_values_is_snapshotted(tmp_path: Path) -> None:
    """Probe N2: 100 calls with output_chars 1e9 (in range) made the window's sum of squares
    an int past 2**63, which orjson cannot encode: every snapshot dropped the feature."""
    d = start_daemon(tmp_path, config=config(tmp_path))
    code, body = post_raw(d, orjson.dumps(maximal_events(time.time(), 1000)))
    assert code == 200 and body["rejected"] == [], body
    t0 = ticks(d)
    wait_for("two ticks", lambda: ticks(d) >= t0 + 2, timeout=10)
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(15) == 0
    log = d.log()
    assert '"tick_error"' not in log and '"final_snapshot_saved"' in log
    with sqlite3.connect(tmp_path / "state.db") as conn:
        (raw,) = conn.execute("SELECT value FROM kv WHERE key = 'pipeline'").fetchone()
    assert "f_max" in orjson.loads(raw)["aggregator"]["features"]


def test_sighup_does_not_stop_the_daemon(tmp_path: Path) -> None:
    """Probe N5: SIGHUP's default action killed the daemon at once, with no final snapshot.
    Now it reloads the config (one log line, tests/daemon/test_reload.py) and the daemon goes
    on ticking."""
    d = start_daemon(tmp_path, config=config(tmp_path))
    d.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert d.proc.poll() is None
    assert post_raw(d, good_calls())[0] == 200
    t0 = ticks(d)
    wait_for("two more ticks", lambda: ticks(d) >= t0 + 2, timeout=10)
    assert d.log().count('"config_reloaded"') == 1
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(15) == 0
    assert '"final_snapshot_saved"' in d.log()


def test_a_port_already_taken_is_one_line_naming_listen_port(tmp_path: Path) -> None:
    """Probe finding: `run` on a taken port ended in a 15-line OSError traceback. It is one
    line naming the address and the settings to change, exit 1, and the state file closed."""
    import os
    import socket
    import subprocess
    import sys

    from tests.conftest import ROOT

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_ONCALL_")} | {
            "PYTHONPATH": str(ROOT),
            "LLM_ONCALL_LISTEN__HOST": "127.0.0.1",
            "LLM_ONCALL_LISTEN__PORT": str(port),
            "LLM_ONCALL_STATE__PATH": str(tmp_path / "state.db"),
        }
        proc = subprocess.run(
            [sys.executable, "-m", "daemon.cli", "run"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("llm-oncall:")]
    assert line == (
        f"llm-oncall: cannot listen on 127.0.0.1:{port} (listen.host, listen.port): "
        "Address already in use"
    )
