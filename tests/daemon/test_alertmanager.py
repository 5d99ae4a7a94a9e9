"""`POST /v1/alertmanager`: a webhook's alerts join as one batch; alert times long before the
receipt are bounded by the correlation window."""

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
from correlator import rfc3339
from daemon.app import Daemon
from daemon.ingest.alertmanager import alertmanager_signals
from daemon.notify.model import Notification
from daemon.notify.render import details


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


# ---- alert times before the correlation window ----------------------------------------------

DAY = 86400.0
WINDOW = 600.0  # correlation.window_s, the default


def test_alert_times_before_the_window_are_taken_as_its_start() -> None:
    """A firing alert's startsAt, or a resolved one's endsAt, more than the lookback before
    the receipt is taken as the lookback's start and listed; the firing alert keeps its own
    startsAt as `reported_onset`. Inside the window, and unreadable or zero times (taken as
    the receipt, as before), nothing changes."""
    now = 1_800_000_000.0
    payload = {
        "alerts": [
            alert("GpuDown", "bot", "a", now - 3 * DAY),
            alert("GpuDown", "bot", "b", now - 300),
            alert("GpuDown", "bot", "c", now - WINDOW),  # on the boundary: kept
            alert("GpuDown", "bot", "d", now - 2 * DAY, "resolved") | {"endsAt": iso(now - DAY)},
            alert("GpuDown", "bot", "e", 0.0) | {"startsAt": "1975-01-01T00:00:00Z"},
            alert("GpuDown", "bot", "f", 0.0) | {"startsAt": "0001-01-01T00:00:00Z"},
            alert("GpuDown", "bot", "g", 0.0) | {"startsAt": "last friday"},
        ]
    }
    batch = alertmanager_signals(payload, now, lookback_s=WINDOW)
    assert batch.errors == [] and batch.clamped == []
    got = [(s.series, s.state, s.ts - now, s.reported_onset) for s in batch.signals]
    assert got == [
        ("a", "firing", -WINDOW, now - 3 * DAY),
        ("b", "firing", -300, None),
        ("c", "firing", -WINDOW, None),
        ("d", "cleared", -WINDOW, None),  # a clear needs no evidence of when
        ("e", "firing", -WINDOW, datetime(1975, 1, 1, tzinfo=UTC).timestamp()),
        ("f", "firing", 0.0, None),
        ("g", "firing", 0.0, None),
    ]
    assert [(c.index, c.field, c.given) for c in batch.backdated] == [
        (0, "startsAt", now - 3 * DAY),
        (3, "endsAt", now - DAY),
        (4, "startsAt", datetime(1975, 1, 1, tzinfo=UTC).timestamp()),
    ]


async def test_an_alert_firing_for_days_opens_a_current_incident_that_others_join(
    tmp_path: Path, loop_guard: None
) -> None:
    """Probe finding: an alert firing since three days ago (a silence just expired) opened
    an incident dated then, already past new_incident_after_s (2 h), so the alert that
    fired a minute later, of another family, opened a second incident and page. Now the
    incident opens at the window's start, keeps the reported startsAt as evidence (record,
    page details, postmortem), and the next alert joins it."""
    now = float(int(time.time()))
    old = alert("GpuDown", "bot", "gpu", now - 3 * DAY)
    async with daemon_at(tmp_path, now, "d") as (_, client):
        resp = await client.post("/v1/alertmanager", json={"alerts": [old]})
        assert resp.status == 200 and (await resp.json())["accepted"] == 1
        new = alert("VectorStoreSlow", "bot", "vec", now - 60)
        resp = await client.post("/v1/alertmanager", json={"alerts": [new]})
        assert resp.status == 200
        (inc,) = await incidents(client)
        assert inc["opened_at"] == rfc3339(now - WINDOW) == inc["started_at"]
        assert inc["severity"] == "critical"  # two families firing together
        gpu, vec = inc["signals"]
        assert gpu["metric"] == "GpuDown" and gpu["onset"] == rfc3339(now - WINDOW)
        assert gpu["reported_onset"] == rfc3339(now - 3 * DAY)
        assert vec["onset"] == rfc3339(now - 60) and "reported_onset" not in vec
        text = await (await client.get("/metrics")).text()
        assert 'llm_oncall_alert_times_before_window_total{field="startsAt"} 1.0' in text
        assert 'llm_oncall_alert_times_clamped_total{field="startsAt"} 0.0' in text
        resp = await client.get(f"/api/v1/incidents/{inc['id']}/postmortem")
        assert f"firing since {rfc3339(now - 3 * DAY)} as its source reported" in (
            await resp.text()
        )
    page = details(Notification(inc["id"], inc["dedup_key"], "trigger", inc, now))
    assert [s.get("reported_onset") for s in page["signals"]] == [rfc3339(now - 3 * DAY), None]


async def test_an_old_alert_does_not_reopen_an_incident_resolved_hours_ago(
    tmp_path: Path, loop_guard: None
) -> None:
    """Its series was in an incident that resolved three hours ago, past reopen_s (1 h).
    Dated three days back, the alert fired "before" that resolve, and the correlator
    reopened the old incident; now it fires at the window's start and opens a new one."""
    clock = [float(int(time.time()))]
    start = clock[0]
    async with daemon_at(tmp_path, start, "d", aggregation={"tick_s": 60}) as (daemon, client):
        daemon.clock = lambda: clock[0]
        first = alert("GpuDown", "bot", "gpu", start - 30)
        await client.post("/v1/alertmanager", json={"alerts": [first]})
        clock[0] = start + 60
        done = first | {"status": "resolved", "endsAt": iso(start + 60)}
        await client.post("/v1/alertmanager", json={"alerts": [done]})
        clock[0] = start + 3 * 3600
        daemon.handle(daemon.pipeline.advance(clock[0]))
        (old,) = await incidents(client)
        assert old["status"] == "resolved"
        again = alert("GpuDown", "bot", "gpu", start - 3 * DAY)
        await client.post("/v1/alertmanager", json={"alerts": [again]})
        new, old_now = await incidents(client)  # newest first
        assert old_now == old and new["id"] != old["id"]
        assert new["status"] == "open" and new["opened_at"] == rfc3339(clock[0] - WINDOW)


async def test_an_alert_resolved_long_ago_opens_and_pages_nothing(
    tmp_path: Path, loop_guard: None
) -> None:
    """A resolved alert only clears a series the daemon saw firing: one it never saw
    (resolved two days ago) is accepted, counted, and opens nothing. One it saw clears it
    no earlier than the window's start, so the incident resolves a cooldown after that,
    never dated before its own opening."""
    now = float(int(time.time()))
    gone = alert("GpuDown", "bot", "gone", now - 3 * DAY, "resolved") | {
        "endsAt": iso(now - 2 * DAY)
    }
    async with daemon_at(tmp_path, now, "d", notify={"group_wait_s": 0}) as (daemon, client):
        resp = await client.post("/v1/alertmanager", json={"alerts": [gone]})
        assert resp.status == 200 and (await resp.json())["accepted"] == 1
        assert await incidents(client) == []
        text = await (await client.get("/metrics")).text()
        assert 'llm_oncall_alert_times_before_window_total{field="endsAt"} 1.0' in text

        seen = alert("GpuDown", "bot", "seen", now - 3 * DAY, page_alone="true")
        await client.post("/v1/alertmanager", json={"alerts": [seen]})
        late = seen | {"status": "resolved", "endsAt": iso(now - 2 * DAY)}
        await client.post("/v1/alertmanager", json={"alerts": [late]})
        (inc,) = await incidents(client)
        assert inc["paged"] and inc["signals"][0]["cleared"] == rfc3339(now - WINDOW)
        daemon.handle(daemon.pipeline.advance(now + 1))
        (inc,) = await incidents(client)
        assert inc["status"] == "open"  # until a cooldown (900 s) after the window's start
