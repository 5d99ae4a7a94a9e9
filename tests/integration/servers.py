"""Real Prometheus and Alertmanager servers for the integration tests.

`.ci/run` installs Debian's `prometheus` and `prometheus-alertmanager` packages; the tests
find their binaries on PATH and skip, saying which package is missing, when they are not
there. Each server runs from a temporary directory on a free loopback port with short
intervals (1 s scrape and rule evaluation, no Alertmanager group wait), so a test sees
several scrapes and evaluations in a few seconds; Alertmanager runs without clustering.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.conftest import free_port

T = TypeVar("T")


def binary(package: str, *names: str) -> str:
    """The first of `names` on PATH, or skip the test naming the Debian package."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(f"{names[0]} is not on PATH: install Debian's {package} (.ci/run does, as root)")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0) -> T:
    """Poll `probe` every 50 ms until it returns something other than None (or falsy)."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def http_json(
    url: str, body: Any = None, headers: dict[str, str] | None = None, timeout: float = 10
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    hdrs = {"Content-Type": "application/json"} if data is not None else {}
    req = urllib.request.Request(url, data=data, headers=hdrs | (headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw.strip() else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw.strip() else None


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return str(resp.read().decode())


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def run_server(name: str, cmd: list[str], port: int, workdir: Path) -> Iterator[Server]:
    """Start `cmd`, wait for its `/-/ready`, and stop it (SIGTERM, then SIGKILL) on exit."""
    log_path = workdir / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    server = Server(proc, f"http://127.0.0.1:{port}", log_path)
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{server.log()}")
            try:
                with urllib.request.urlopen(server.url + "/-/ready", timeout=1) as resp:
                    return bool(resp.status == 200)
            except OSError:
                return False

        wait_for(f"{name} to be ready", ready)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def prometheus(workdir: Path, config: Path) -> Iterator[Server]:
    exe = binary("prometheus", "prometheus")
    port = free_port()
    cmd = [
        exe,
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'prometheus-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with run_server("prometheus", cmd, port, workdir) as server:
        yield server


@contextmanager
def alertmanager(workdir: Path, config: Path) -> Iterator[Server]:
    exe = binary("prometheus-alertmanager", "prometheus-alertmanager", "alertmanager")
    port = free_port()
    cmd = [
        exe,
        f"--config.file={config}",
        f"--storage.path={workdir / 'alertmanager-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # no gossip port: one instance, nothing else bound
        "--log.level=warn",
    ]
    with run_server("alertmanager", cmd, port, workdir) as server:
        yield server


def query(prom: Server, expr: str) -> list[dict[str, Any]]:
    """An instant PromQL query; the result vector (an error fails the test with Prometheus'
    message)."""
    url = prom.url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    status, answer = http_json(url)
    assert status == 200 and answer["status"] == "success", f"{expr}: {answer}"
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result
