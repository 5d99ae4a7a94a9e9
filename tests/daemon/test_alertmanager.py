"""`POST /v1/alertmanager` through the daemon's handler: a webhook's alerts join as one batch."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
import yaml
from aiohttp.test_utils import TestClient, TestServer

from config.settings import load_settings
from daemon.app import Daemon


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def alert(
    name: str, feature: str, fp: str, starts: float, status: str = "firing", **labels: str
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": name, "feature": feature, **labels},
        "fingerprint": fp,
        "startsAt": iso(starts),
        "endsAt": iso(starts + 300) if status == "resolved" else "0001-01-01T00:00:00Z",
    }


@asynccontextmanager
async def daemon_at(
    tmp_path: Path, now: float, name: str, **settings: Any
) -> AsyncIterator[tuple[Daemon, TestClient[Any, Any]]]:
    state = tmp_path / name
    state.mkdir()
    cfg = state / "c.yaml"
    cfg.write_text(yaml.safe_dump({"state": {"path": str(state / "state.db")}, **settings}))
    daemon = Daemon(load_settings(cfg), clock=lambda: now)
    daemon.handle(daemon.pipeline.advance(now))
    async with TestClient(TestServer(daemon.build_app())) as client:
        yield daemon, client
    daemon.store.close()


async def incidents(client: TestClient[Any, Any]) -> list[dict[str, Any]]:
    resp = await client.get("/api/v1/incidents")
    assert resp.status == 200
    return list((await resp.json())["incidents"])


async def test_one_webhook_gives_the_incidents_of_one_alert_per_webhook(
    tmp_path: Path, loop_guard: None
) -> None:
    """The batch changes the cost, not the outcome: the same alerts in one webhook or in
    one webhook each give the same incident records; the batch logs one change per
    incident where one alert per webhook logged one per alert that changed it."""
    now = float(int(time.time()))
    alerts = [
        alert(name, feature, f"{feature}-{name}-{i}", now - 240 + 7 * i + j)
        for i in range(8)
        for j, (name, feature) in enumerate(
            [("VectorStoreSlow", "bot"), ("GpuDown", "bot"), ("NodeDown", "search")]
        )
    ]
    alerts[4]["labels"]["page_alone"] = "true"
    alerts.append(alerts[0] | {"status": "resolved", "endsAt": iso(now - 30)})
    async with (
        daemon_at(tmp_path, now, "batch") as (batched, one),
        daemon_at(tmp_path, now, "single") as (_, each),
    ):
        with structlog.testing.capture_logs() as logs:
            resp = await one.post("/v1/alertmanager", json={"alerts": alerts})
        assert resp.status == 200 and (await resp.json())["accepted"] == len(alerts)
        changes = [e["event"] for e in logs if e["event"].startswith("incident_")]
        assert changes == ["incident_open", "incident_open"]
        for a in alerts:
            resp = await each.post("/v1/alertmanager", json={"alerts": [a]})
            assert resp.status == 200
        got = await incidents(one)
        assert got == await incidents(each)
        assert sorted((i["feature"], i["severity"], len(i["signals"])) for i in got) == [
            ("bot", "critical", 16),
            ("search", "watch", 8),
        ]
        assert batched.pipeline.errors.by_stage["correlate"] == 0
