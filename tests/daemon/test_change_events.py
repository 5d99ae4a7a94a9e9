"""`change` events (probe, 2026-12-02): they were lost without trace three ways.

a. one feature's flood pushed out every other feature's changes, uncounted;
b. a change answered 200 was gone after a kill -9 within the snapshot interval;
c. a change dated more than `ingest.lateness_s` (300 s) back was dropped as `late` although
   incidents look changes up `change_lookback_s` (2 h) back.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp.test_utils import TestClient, TestServer

from config.settings import Settings
from correlator.records import Signal
from daemon.app import Daemon
from daemon.ingest.events import Event, validate_one
from daemon.pipeline import Pipeline
from detectors.base import Direction
from tests.conftest import DaemonProcess, start_daemon
from tests.daemon.test_caps import scrape
from tests.daemon.test_oncall_pages import Clock, Log
from tests.daemon.test_unsaved_writes import lock_store
from tests.e2e.harness import alert, http, incident_of, metrics, stop, wait_for

T0 = 1_795_000_000.0
FEATURE = "support-bot"


def change(ts: float, description: str, feature: str | None = FEATURE, **kw: Any) -> Event:
    body = {"type": "change", "ts": ts, "kind": "deploy", "feature": feature}
    return validate_one(body | {"description": description} | kw)


def unused(pipe: Pipeline) -> dict[str, float]:
    rows = scrape(pipe).get("llm_oncall_events_unused_total", [])
    return {labels["reason"]: value for labels, value in rows}


# ---- a. bounded per feature, every drop counted and logged -------------------------------


def test_a_flood_for_one_feature_is_counted_logged_and_spares_the_others() -> None:
    log = Log()
    pipe = Pipeline(Settings(), log)
    pipe.ingest([change(T0 - 60, "prompt v42", kind="prompt")], now=T0)
    flood = [change(T0 + i * 0.001, f"ci {i}", "noisy-ci", kind="flag") for i in range(1000)]
    pipe.ingest(flood, now=T0)
    kept = pipe.correlator.changes()
    assert "prompt v42" in [c.description for c in kept]
    assert len(kept) == 201
    assert unused(pipe) == {"change_limit": 800}
    capped = {
        labels["dimension"]: v for labels, v in scrape(pipe)["llm_oncall_cardinality_capped_total"]
    }
    assert capped["changes"] == 800
    lines = [kw for event, kw in log.lines if event == "change_dropped"]
    assert lines == [
        {
            "feature": "noisy-ci",
            "dropped": 800,
            "inside_lookback": 800,
            "by_bound": {"per_feature": 800},
            "limits": {"per_feature": 200},
            "detail": lines[0]["detail"],
        }
    ]
    # More of the same within the log interval: counted, not logged; then one line for all.
    pipe.ingest(
        [change(T0 + 10 + i, f"ci b{i}", "noisy-ci", kind="flag") for i in range(100)], now=T0 + 10
    )
    assert len([e for e, _ in log.lines if e == "change_dropped"]) == 1
    pipe.ingest([change(T0 + 400, "ci c", "noisy-ci", kind="flag")], now=T0 + 400)
    last = [kw for event, kw in log.lines if event == "change_dropped"][-1]
    assert last["dropped"] == 101 and unused(pipe) == {"change_limit": 901}


def test_the_changes_for_every_feature_have_their_own_bound() -> None:
    pipe = Pipeline(Settings(correlation={"max_global_changes": 20}), Log())
    pipe.ingest([change(T0 - 60, "prompt v42", kind="prompt")], now=T0)
    pipe.ingest([change(T0 + i, f"infra {i}", None) for i in range(50)], now=T0 + 50)
    kept = pipe.correlator.changes()
    assert sum(c.feature is None for c in kept) == 20
    assert any(c.feature == FEATURE for c in kept)
    assert unused(pipe) == {"change_limit": 30}


# ---- c. accepted within the change lookback ------------------------------------------------


def test_a_change_is_accepted_within_the_change_lookback_live_and_in_replay() -> None:
    live = Pipeline(Settings(), Log())
    out = live.ingest(
        [change(T0 - 1800, "deploy finished"), change(T0 - 7199, "edge"), change(T0 - 7300, "old")],
        now=T0,
    )
    assert unused(live) == {"late": 1}
    assert [c.description for c in live.correlator.changes()] == ["edge", "deploy finished"]
    assert [c.description for c in out.changes] == ["deploy finished", "edge"]  # to be written
    replay = Pipeline(Settings(), Log())
    call = validate_one({"type": "llm_call", "ts": T0, "feature": FEATURE, "status": 200})
    replay.ingest([call, change(T0 - 1800, "deploy finished"), change(T0 - 7300, "old")])
    assert [c.description for c in replay.correlator.changes()] == ["deploy finished"]
    assert unused(replay) == {"late": 1}
    # Telemetry keeps its 300-s allowance.
    late_call = validate_one({"type": "llm_call", "ts": T0 - 400, "feature": FEATURE})
    live.ingest([late_call], now=T0)
    assert unused(live) == {"late": 2}


def test_an_open_incident_picks_up_a_late_change_at_its_next_refresh() -> None:
    pipe = Pipeline(Settings(), Log())
    pipe.advance(T0)
    firing = Signal(
        T0,
        FEATURE,
        "ModelDown",
        "infra",
        "alertmanager",
        "firing",
        1.0,
        0.0,
        1.0,
        Direction.UP,
        "fp",
    )
    pipe.external_signals([firing])
    (inc,) = pipe.correlator.open_incidents()
    assert inc.changes == ()
    # The deploy record, 20 min before the incident, sent 10 min after it opened.
    out = pipe.ingest([change(T0 - 1200, "app 1.2.4")], now=T0 + 600)
    assert "late" not in unused(pipe) and len(out.changes) == 1
    out = pipe.advance(T0 + 660)
    (inc,) = pipe.correlator.open_incidents()
    assert [c.description for c in inc.changes] == ["app 1.2.4"]
    assert any(u.incident.changes for u in out.updates)  # the daemon writes the new record


# ---- b. durable before the answer ------------------------------------------------------------


def _daemon(tmp: Path, clock: Clock, log: Log) -> Daemon:
    return Daemon(Settings(state={"path": str(tmp / "state.db")}), log, clock)


def _rows(d: Daemon) -> int:
    (n,) = d.store.conn.execute("SELECT count(*) FROM kv WHERE key LIKE 'change:%'").fetchone()
    return int(n)


def _body(*events: dict[str, Any]) -> bytes:
    return orjson.dumps(list(events))


def _change(ts: float, description: str) -> dict[str, Any]:
    return {
        "type": "change",
        "ts": ts,
        "kind": "deploy",
        "feature": FEATURE,
        "description": description,
    }


async def test_a_change_is_on_disk_when_answered_and_comes_back_after_a_crash(
    tmp_path: Path,
) -> None:
    clock, log = Clock(), Log()
    d = _daemon(tmp_path, clock, log)
    async with TestClient(TestServer(d.build_app())) as client:
        resp = await client.post("/v1/events", data=_body(_change(clock.now - 1800, "app 1.2.4")),
                                 headers={"Content-Type": "application/json"})  # fmt: skip
        assert resp.status == 200
        assert _rows(d) == 1  # written before the answer, not at the next snapshot
        again = await client.post("/v1/events", data=_body(_change(clock.now - 1800, "app 1.2.4")),
                                  headers={"Content-Type": "application/json"})  # fmt: skip
        assert again.status == 200 and _rows(d) == 1  # a duplicate writes nothing
    d.store.close()  # a crash: no final snapshot
    d = _daemon(tmp_path, clock, log)
    assert [c.description for c in d.pipeline.correlator.changes()] == ["app 1.2.4"]
    d.save_snapshot()  # the correlator state holds it now: the row goes
    assert _rows(d) == 0
    d.store.close()
    d = _daemon(tmp_path, clock, log)
    assert [c.description for c in d.pipeline.correlator.changes()] == ["app 1.2.4"]
    d.store.close()


async def test_a_change_only_body_is_a_503_while_the_store_cannot_write(tmp_path: Path) -> None:
    """Nothing in a body of change events counts twice if sent again (a change is kept once),
    so a change that is not on disk is answered 503 + Retry-After, not 200. A body with
    telemetry keeps its 200 (a retry would count the calls twice) and the change is written
    once the store recovers."""
    clock, log = Clock(), Log()
    d = _daemon(tmp_path, clock, log)
    unlock = lock_store(d)
    json = {"Content-Type": "application/json"}
    async with TestClient(TestServer(d.build_app())) as client:
        resp = await client.post("/v1/events", data=_body(_change(clock.now, "v1")), headers=json)
        assert resp.status == 503 and resp.headers["Retry-After"]
        assert (await resp.json())["accepted"] == 1
        call = {"type": "llm_call", "ts": clock.now, "feature": FEATURE, "status": 200}
        mixed = _body(_change(clock.now, "v2"), call)
        assert (await client.post("/v1/events", data=mixed, headers=json)).status == 200
        unlock()
        resp = await client.post("/v1/events", data=_body(_change(clock.now, "v1")), headers=json)
        assert resp.status == 200  # the retry: a duplicate, and the store wrote both
    assert _rows(d) == 2
    d.store.close()


def test_kill_9_after_the_answer_keeps_the_change(tmp_path: Path) -> None:
    """Through the real process: a change answered 200 (one dated 30 min back, more than the
    300-s telemetry lateness, too), kill -9 at once, well inside the 60-s snapshot interval;
    after the restart an incident of the feature quotes both changes."""
    d = start_daemon(tmp_path)
    now = time.time()
    body = [_change(now - 60, "app 1.2.4"), _change(now - 1800, "prompt v42 rolled out")]
    status, raw, _ = http("POST", d.url + "/v1/events", body)
    assert status == 200 and orjson.loads(raw)["accepted"] == 2, raw
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(10)
    d = start_daemon(tmp_path)
    try:
        wait_for("ready", lambda: http("GET", d.url + "/readyz")[0] == 200)
        alert(d, FEATURE, firing=True)
        inc = wait_for("incident", lambda: _incident(d))
        assert [c["description"] for c in inc["changes"]] == ["app 1.2.4", "prompt v42 rolled out"]
        assert ("llm_oncall_events_unused_total", frozenset({("reason", "late")})) not in metrics(d)
    finally:
        assert stop(d) == 0


def _incident(d: DaemonProcess) -> dict[str, Any] | None:
    code, raw, _ = http("GET", d.url + f"/api/v1/incidents?feature={FEATURE}")
    found = orjson.loads(raw)["incidents"] if code == 200 else []
    return incident_of(d, FEATURE) if found else None
