"""Helpers for end-to-end tests through the real daemon process: a fake PagerDuty on its own
event loop in a background thread, a config file, small blocking HTTP helpers, and polling
with deadlines."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import orjson
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import DaemonProcess, start_daemon
from tests.notify.fakes import FakePagerDuty, Fault

T = TypeVar("T")

ROUTING_KEY = "e2eR0ut1ngK3yAbCdEfGhIjKlMnOpQrS"  # 32 characters, unlike anything else logged
assert len(ROUTING_KEY) == 32


class PhasedPagerDuty(FakePagerDuty):
    """The fake PagerDuty, failing by phases of wall time: `[(until_t, fault_or_None), ...]`;
    after the last phase it answers normally (unless `down` is set). Unlike the base fake,
    whether a request fails is decided when it arrives, before `latency_s`: a request still
    in flight when its sender is killed keeps the answer it was going to get."""

    def __init__(self, routing_key: str) -> None:
        super().__init__(routing_key)
        self.phases: list[tuple[float, Fault | None]] = []
        self.answered: list[tuple[float, int]] = []  # (time, status) of failed answers

    async def _fault(self) -> Any:
        now = self.clock()
        self.requests += 1
        self.request_times.append(now)
        while self.phases and now >= self.phases[0][0]:
            self.phases.pop(0)
        phase = self.phases[0][1] if self.phases else None
        fault = self.faults.pop(0) if self.faults else phase or self.down
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if fault is None:
            return None
        headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
        self.answered.append((self.clock(), fault.status))
        return web.Response(status=fault.status, text=fault.body, headers=headers)

    def statuses(self) -> Counter[int]:
        return Counter(status for _, status in list(self.answered))

    # Reads from the test thread: list appends on the fake's loop are atomic under the GIL;
    # copy before iterating.
    def deliveries(self) -> list[tuple[str, str]]:
        return [(r.body["dedup_key"], r.body["event_action"]) for r in list(self.accepted)]

    def count(self, dedup_key: str, action: str) -> int:
        return sum(1 for d in self.deliveries() if d == (dedup_key, action))


class FakeThread:
    """Runs a fake receiver's aiohttp server on its own loop in a daemon thread."""

    def __init__(self, fake: PhasedPagerDuty) -> None:
        self.fake = fake
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.url: str = self.call(fake.start())

    def call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.call(self.fake.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@contextmanager
def fake_pagerduty() -> Iterator[tuple[PhasedPagerDuty, str]]:
    fake = PhasedPagerDuty(ROUTING_KEY)
    runner = FakeThread(fake)
    try:
        yield fake, runner.url
    finally:
        runner.close()


def write_config(tmp: Path, pd_url: str, **extra: Any) -> Path:
    cfg: dict[str, Any] = {
        "receivers": [
            {"name": "sre", "type": "pagerduty", "routing_key": ROUTING_KEY, "url": pd_url}
        ],
        "aggregation": {"tick_s": 1, "window_s": 5, "quality_window_s": 5},
        "correlation": {"cooldown_s": 2, "window_s": 10},
        "notify": {"base_backoff_s": 0.05, "max_backoff_s": 0.5},
    } | extra
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def http(method: str, url: str, body: Any = None, timeout: float = 10.0) -> tuple[int, bytes, str]:
    data = None if body is None else orjson.dumps(body)
    headers = {"Content-Type": "application/json"} if data is not None else {}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


def get_json(d: DaemonProcess, path: str) -> Any:
    status, raw, _ = http("GET", d.url + path)
    assert status == 200, (path, status, raw)
    return orjson.loads(raw)


def alert(d: DaemonProcess, feature: str, firing: bool, name: str = "ModelDown") -> None:
    """One Alertmanager webhook with a page_alone alert for `feature`."""
    status = "firing" if firing else "resolved"
    body = {
        "version": "4",
        "status": status,
        "alerts": [
            {
                "status": status,
                "labels": {"alertname": name, "feature": feature, "page_alone": "true"},
                "fingerprint": f"fp-{feature}-{name}",
            }
        ],
    }
    code, raw, _ = http("POST", d.url + "/v1/alertmanager", body)
    assert code == 200 and orjson.loads(raw)["accepted"] == 1, (code, raw)


def incidents(d: DaemonProcess, **query: str) -> list[dict[str, Any]]:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    return list(get_json(d, "/api/v1/incidents" + (f"?{qs}" if qs else ""))["incidents"])


def incident_of(d: DaemonProcess, feature: str) -> dict[str, Any]:
    found = incidents(d, feature=feature)
    assert len(found) == 1, found
    return found[0]


def metrics(d: DaemonProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, raw, _ = http("GET", d.url + "/metrics")
    assert status == 200
    out = {}
    for fam in text_string_to_metric_families(raw.decode()):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def notifications(d: DaemonProcess, action: str, result: str, receiver: str = "sre") -> float:
    labels = frozenset({"receiver": receiver, "action": action, "result": result}.items())
    return metrics(d).get(("llm_oncall_notifications_total", labels), 0.0)


def wait_for(
    what: str, fn: Callable[[], T | None], timeout: float = 10.0, every: float = 0.05
) -> T:
    """Poll `fn` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def stop(d: DaemonProcess, timeout: float = 15.0) -> int:
    if d.proc.poll() is None:
        d.proc.terminate()
        try:
            d.proc.wait(timeout=timeout)
        except Exception:
            d.proc.kill()
            d.proc.wait(5)
    return int(d.proc.returncode)


def start(tmp: Path, config: Path) -> DaemonProcess:
    return start_daemon(tmp, config=config)
