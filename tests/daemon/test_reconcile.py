"""`Pipeline.reconcile`: a signal restored as firing whose detector state is older (state
written before detector snapshots committed with each transition) is confirmed by its
detector firing again, or cleared after one window, so the incident still resolves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import yaml

from config.settings import load_settings
from daemon.ingest.events import LlmCall
from daemon.pipeline import Pipeline, TickOutput
from tests.e2e.crash import OUTAGE_RULES

T0 = 1_795_000_000.0


def settings(tmp: Path) -> Any:
    cfg = {
        "aggregation": {"tick_s": 1, "window_s": 5, "quality_window_s": 5},
        "correlation": {"cooldown_s": 2, "window_s": 10},
        # These tests read the trigger of the first tick; the group wait has its own tests.
        "notify": {"group_wait_s": 0},
        "rules": OUTAGE_RULES,
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return load_settings(path)


def run(pipe: Pipeline, start: float, end: float, status: int) -> list[TickOutput]:
    outs = []
    t = start
    while t < end:
        calls = [
            LlmCall(type="llm_call", ts=t + i * 0.05, feature="bot", status=status)
            for i in range(10)
        ]
        outs.append(pipe.ingest(calls, now=t + 0.5))
        outs.append(pipe.advance(t + 1))
        t += 1
    return outs


def roundtrip(state: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads(orjson.dumps(state, option=orjson.OPT_NON_STR_KEYS))
    return loaded


def restored_with_old_detectors(tmp: Path) -> tuple[Pipeline, str]:
    first = Pipeline(settings(tmp))
    run(first, T0, T0 + 10, 200)
    old = roundtrip(first.snapshot())  # the periodic snapshot, before the outage
    outs = run(first, T0 + 10, T0 + 16, 500)
    notes = [(u.notify, u.incident.id) for o in outs for u in o.updates if u.notify]
    assert notes and notes[0][0] == "trigger"
    second = Pipeline(settings(tmp))
    assert second.restore(old) == []
    second.restore_correlator(roundtrip(first.correlator.to_state()))
    assert second.reconcile() == 1
    assert second.unconfirmed() == [("bot", "availability", "", "static")]
    return second, notes[0][1]


def test_unconfirmed_signal_is_cleared_after_one_window_and_the_incident_resolves(
    tmp_path: Path,
) -> None:
    pipe, inc_id = restored_with_old_detectors(tmp_path)
    outs = run(pipe, T0 + 17, T0 + 40, 200)
    cleared = [s for o in outs for s in o.signals if s.state == "cleared"]
    assert [(s.metric, s.detector) for s in cleared] == [("availability", "static")]
    # one window (5 s) from the first tick after the restart, not before
    assert T0 + 17 + 5 <= cleared[0].ts <= T0 + 17 + 7
    resolves = [u for o in outs for u in o.updates if u.notify == "resolve"]
    assert [u.incident.id for u in resolves] == [inc_id]
    assert pipe.unconfirmed() == []


def test_a_detector_that_fires_again_confirms_the_signal(tmp_path: Path) -> None:
    pipe, inc_id = restored_with_old_detectors(tmp_path)
    outs = run(pipe, T0 + 17, T0 + 30, 500)  # the outage goes on
    assert pipe.unconfirmed() == []
    assert not [s for o in outs for s in o.signals if s.state == "cleared"]
    assert [i.id for i in pipe.correlator.open_incidents()] == [inc_id]
    assert not [u for o in outs for u in o.updates if u.notify]  # no second page


def restored_after_transition(tmp: Path, keep_last: bool) -> tuple[Pipeline, str]:
    """What a kill -9 right after the trigger leaves: the per-series rows written with the
    transition and the correlator, and no periodic snapshot yet (probe N1)."""
    first = Pipeline(settings(tmp))
    run(first, T0, T0 + 6, 200)
    outs = run(first, T0 + 6, T0 + 12, 500)
    notes = [(u.notify, u.incident.id) for o in outs for u in o.updates if u.notify]
    assert notes and notes[0][0] == "trigger"
    rows = roundtrip({"rows": first.series_states(first.detector_keys())})["rows"]
    if not keep_last:  # state written by a version before the last sample was saved
        for row in rows:
            row.pop("last", None)
    second = Pipeline(settings(tmp))
    assert second.restore_series(rows) == []
    second.restore_correlator(roundtrip(first.correlator.to_state()))
    assert second.reconcile() == 0  # the restored detector fires: nothing unconfirmed
    return second, notes[0][1]


def test_a_firing_series_with_no_traffic_after_restart_goes_stale_and_resolves(
    tmp_path: Path,
) -> None:
    for keep_last in (True, False):
        pipe, inc_id = restored_after_transition(tmp_path, keep_last)
        outs = [pipe.advance(T0 + t) for t in range(13, 60)]  # no events at all
        cleared = [s for o in outs for s in o.signals if s.state == "cleared"]
        assert [(s.metric, s.detector) for s in cleared] == [("availability", "static")]
        # stale after 2 x the 5 s window: from the last sample, or from the restart
        # (the restored pipeline starts its clock at T0 + 13 and ticks from T0 + 14)
        assert cleared[0].ts <= T0 + (12 + 11 if keep_last else 14 + 11), cleared[0].ts
        resolves = [u for o in outs for u in o.updates if u.notify == "resolve"]
        assert [u.incident.id for u in resolves] == [inc_id]
