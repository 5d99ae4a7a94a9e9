"""Shared fixtures: a real daemon process on a free port, and a guard against blocking the
event loop in async tests."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DaemonProcess:
    proc: subprocess.Popen[bytes]
    port: int
    state_dir: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_daemon(
    state_dir: Path,
    config: Path | None = None,
    env: dict[str, str] | None = None,
    port: int | None = None,
) -> DaemonProcess:
    port = port or free_port()
    log_path = state_dir / f"daemon-{port}-{time.monotonic_ns()}.log"
    full_env = (
        os.environ
        | {
            "LLM_ONCALL_LISTEN__HOST": "127.0.0.1",
            "LLM_ONCALL_LISTEN__PORT": str(port),
            "LLM_ONCALL_STATE__PATH": str(state_dir / "state.db"),
            "LLM_ONCALL_LOG__FORMAT": "json",
            # Tests wait seconds, not the 30 s default group wait, for a page; the group
            # wait's own tests pass a value in `env`.
            "LLM_ONCALL_NOTIFY__GROUP_WAIT_S": "0",
            "PYTHONPATH": str(ROOT),
        }
        | (env or {})
    )
    cmd = [sys.executable, "-m", "daemon.cli", "run"]
    if config is not None:
        cmd += ["--config", str(config)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    daemon = DaemonProcess(proc, port, state_dir, log_path)
    deadline = time.monotonic() + 30
    import urllib.request

    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode}:\n{daemon.log()}")
        try:
            with urllib.request.urlopen(daemon.url + "/readyz", timeout=0.5) as resp:
                if resp.status == 200:
                    return daemon
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"daemon did not become ready:\n{daemon.log()}")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    d = start_daemon(tmp_path)
    yield d
    if d.proc.poll() is None:
        d.proc.terminate()
        try:
            d.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            d.proc.kill()


@pytest.fixture
async def loop_guard(caplog: pytest.LogCaptureFixture) -> AsyncIterator[None]:
    """Fail an async test whose code blocks the event loop for over 0.5 s in one callback.

    asyncio's debug mode logs every callback slower than `slow_callback_duration`; the guard
    turns that log line into a test failure.
    """
    loop = asyncio.get_running_loop()
    was_debug, was_slow = loop.get_debug(), loop.slow_callback_duration
    loop.set_debug(True)
    loop.slow_callback_duration = 0.5
    caplog.set_level(logging.WARNING, logger="asyncio")
    yield
    loop.set_debug(was_debug)
    loop.slow_callback_duration = was_slow
    slow = [
        r.getMessage() for r in caplog.records if r.name == "asyncio" and "took" in r.getMessage()
    ]
    assert not slow, f"event loop blocked: {slow}"
