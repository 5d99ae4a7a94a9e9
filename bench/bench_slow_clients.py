"""Slow clients against the real daemon process: how long they hold a connection.

    python bench/bench_slow_clients.py [--clients 100] [--timeout 1]

Starts the daemon with `listen.header_timeout_s` and `listen.body_timeout_s` at `--timeout`,
opens `--clients` connections dripping header lines and as many dripping a body (one chunk
per 0.2 s), and meanwhile times ordinary `POST /v1/events` + `GET /healthz` calls. Prints how
long the longest slow connection was held, how many bodies got a 408, and the slowest
ordinary call. Clients give up after 10 s, so "10 s" means "held until we stopped".
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import start_daemon
from tests.daemon.test_slow_clients import drip, normal_client


async def main(clients: int, timeout_s: float) -> None:
    env = {
        "LLM_ONCALL_LISTEN__HEADER_TIMEOUT_S": str(timeout_s),
        "LLM_ONCALL_LISTEN__BODY_TIMEOUT_S": str(timeout_s),
    }
    d = start_daemon(Path(tempfile.mkdtemp()), env=env)
    try:
        head = b"POST /v1/events HTTP/1.1\r\nHost: x\r\n"
        body = b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n["
        slow = [drip(d.port, head, b"X-Slow: 1\r\n") for _ in range(clients)]
        slow += [drip(d.port, body, b" ") for _ in range(clients)]
        tasks = [asyncio.ensure_future(c) for c in slow]
        await asyncio.sleep(0.3)
        normal = [await asyncio.to_thread(normal_client, d.url) for _ in range(5)]
        results = await asyncio.gather(*tasks)
    finally:
        d.proc.terminate()
        d.proc.wait()
    headers, bodies = results[:clients], results[clients:]
    got_408 = sum(answer.startswith(b"HTTP/1.1 408") for _, answer in bodies)
    print(f"{platform.node()} python {platform.python_version()}, timeouts {timeout_s:g} s")
    print(f"slow headers: {clients} held at most {max(h for h, _ in headers):.2f} s")
    print(
        f"slow bodies:  {clients} held at most {max(h for h, _ in bodies):.2f} s, "
        f"{got_408} answered 408"
    )
    print(f"ordinary calls meanwhile: slowest {max(normal) * 1000:.0f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=1.0)
    args = parser.parse_args()
    asyncio.run(main(args.clients, args.timeout))
