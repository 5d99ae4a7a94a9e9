"""`change` events (probe, 2026-12-03): they were lost without trace three ways.

a. one feature's flood pushed out every other feature's changes, uncounted;
b. a change answered 200 was gone after a kill -9 within the snapshot interval;
c. a change dated more than `ingest.lateness_s` (300 s) back was dropped as `late` although
   incidents look changes up `change_lookback_s` (2 h) back.
"""

from __future__ import annotations

from typing import Any

from config.settings import Settings
from daemon.ingest.events import Event, validate_one
from daemon.pipeline import Pipeline
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
