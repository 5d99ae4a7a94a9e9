"""`change` events (probe, 2026-12-03): they were lost without trace three ways.

a. one feature's flood pushed out every other feature's changes, uncounted;
b. a change answered 200 was gone after a kill -9 within the snapshot interval;
c. a change dated more than `ingest.lateness_s` (300 s) back was dropped as `late` although
   incidents look changes up `change_lookback_s` (2 h) back.
"""

from __future__ import annotations

from typing import Any

from config.settings import Settings
from correlator.records import Signal
from daemon.ingest.events import Event, validate_one
from daemon.pipeline import Pipeline
from detectors.base import Direction
from tests.daemon.test_caps import scrape
from tests.daemon.test_oncall_pages import Log

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
    live.ingest(
        [change(T0 - 1800, "deploy finished"), change(T0 - 7199, "edge"), change(T0 - 7300, "old")],
        now=T0,
    )
    assert unused(live) == {"late": 1}
    assert [c.description for c in live.correlator.changes()] == ["edge", "deploy finished"]
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
    pipe.ingest([change(T0 - 1200, "app 1.2.4")], now=T0 + 600)
    assert "late" not in unused(pipe)
    out = pipe.advance(T0 + 660)
    (inc,) = pipe.correlator.open_incidents()
    assert [c.description for c in inc.changes] == ["app 1.2.4"]
    assert any(u.incident.changes for u in out.updates)  # the daemon writes the new record
