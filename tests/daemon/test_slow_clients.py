"""Slow clients (issue 8, defect 8) against the real daemon process: a connection dripping its
headers is closed after `listen.header_timeout_s`, one dripping its body gets 408 and is
closed after `listen.body_timeout_s`, and normal clients are served quickly meanwhile."""

from __future__ import annotations

import asyncio
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.conftest import DaemonProcess, start_daemon

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.0
SLACK_S = 1.5  # scheduling on a busy 2-core CI machine
SLOW_CLIENTS = 20  # of each kind
GIVE_UP_S = 10.0  # what "held" means: without timeouts these stay open as long as they drip


@pytest.fixture
def strict_daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    d = start_daemon(
        tmp_path,
        env={
            "LLM_ONCALL_LISTEN__HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
            "LLM_ONCALL_LISTEN__BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        },
    )
    yield d
    d.proc.terminate()
    try:
        d.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        d.proc.kill()


async def drip(port: int, head: bytes, chunk: bytes) -> tuple[float, bytes]:
    """Send `head`, then `chunk` every 0.2 s; return (seconds until the server closed the
    connection, what it answered)."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = loop.time()
    answer = b""
    try:
        writer.write(head)
        while loop.time() - started < GIVE_UP_S:
            try:
                data = await asyncio.wait_for(reader.read(4096), 0.2)
            except TimeoutError:
                writer.write(chunk)
                await writer.drain()
                continue
            if not data:
                break
            answer += data
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        writer.close()
    return loop.time() - started, answer


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def normal_client(url: str) -> float:
    """One ordinary ingest call and a health check; returns the slower latency."""
    event = {"type": "llm_call", "ts": time.time(), "feature": "bot", "status": 200}
    worst = 0.0
    for req in (
        urllib.request.Request(
            url + "/v1/events",
            data=orjson.dumps(event),
            headers={"Content-Type": "application/json"},
            method="POST",
        ),
        urllib.request.Request(url + "/healthz"),
    ):
        started = time.perf_counter()
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200
        worst = max(worst, time.perf_counter() - started)
    return worst


async def test_slow_headers_and_bodies_are_cut_off_while_others_are_served(
    strict_daemon: DaemonProcess,
) -> None:
    port = strict_daemon.port
    slow_head = b"POST /v1/events HTTP/1.1\r\nHost: x\r\n"
    body_head = (
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n["
    )
    silence_head = body_head.replace(b"/v1/events", b"/api/v1/silences")
    slow = [drip(port, slow_head, b"X-Slow: 1\r\n") for _ in range(SLOW_CLIENTS)]
    slow += [drip(port, body_head, b" ") for _ in range(SLOW_CLIENTS - 2)]
    slow += [drip(port, silence_head, b" ") for _ in range(2)]  # the API reads bodies too
    slow_tasks = [asyncio.ensure_future(c) for c in slow]
    await asyncio.sleep(0.3)  # the slow ones are connected and dripping
    latencies = [await asyncio.to_thread(normal_client, strict_daemon.url) for _ in range(5)]
    results = await asyncio.gather(*slow_tasks)

    assert max(latencies) < 1.0, latencies
    headers, bodies = results[:SLOW_CLIENTS], results[SLOW_CLIENTS:]
    for held, answer in headers:
        assert held < HEADER_TIMEOUT_S + SLACK_S, (held, answer)
    for held, answer in bodies:
        assert held < BODY_TIMEOUT_S + SLACK_S, (held, answer)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"request body not received within 1 s" in answer
    metrics = await asyncio.to_thread(fetch, strict_daemon.url + "/metrics")
    assert f'reason="body_timeout"}} {float(SLOW_CLIENTS - 2)}' in metrics
