"""Issue 8, defect 1: a failure while computing or evaluating one feature or series is
caught there, counted by stage, logged once per series and interval, and costs nothing
else: other features, other series and later ticks run as before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

import correlator.correlator
from config.settings import load_settings
from daemon.ingest.events import LlmCall
from daemon.pipeline import ERROR_LOG_INTERVAL_S, Pipeline
from detectors.base import Transition
from tests.daemon.test_oncall_pages import Clock, Log, make_daemon, run_outage

T0 = 1_795_000_000.0


def call(feature: str, ts: float, status: int = 200, **fields: Any) -> LlmCall:
    return LlmCall(type="llm_call", ts=ts, feature=feature, status=status, **fields)


def feed(pipe: Pipeline, t: float, n: int = 20) -> None:
    pipe.ingest([call("good", t + i * 0.01, output_chars=900 + i) for i in range(n)], now=t + 1)


def tick_errors(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in log if e["event"] == "tick_error"]


def test_a_feature_that_overflows_costs_only_itself() -> None:
    settings = load_settings(None)
    tick = settings.aggregation.tick_s
    with capture_logs() as log:
        pipe = Pipeline(settings, structlog.get_logger())
        feed(pipe, T0)
        # A 400-digit integer, as in the issue (built without validation, as an event that
        # got past ingest would be), in input_tokens: the window's mean no longer fits a
        # float. (In output_chars it now fails at once, in add_call: the sum of squares is a
        # float since probe N2.)
        pipe.aggregator.add_call(
            LlmCall.model_construct(type="llm_call", ts=T0, feature="bad", input_tokens=10**400)
        )
        ticks = 30
        for k in range(1, ticks + 1):
            feed(pipe, T0 + k * tick)
            pipe.advance(T0 + k * tick + 1)
    assert pipe.counters.ticks == ticks  # no tick lost
    good = {m for (f, m, _), s in pipe.latest.items() if f == "good"}
    assert {"availability", "output_length_mean", "error_rate"} <= good
    assert max(s.ts for s in pipe.latest.values()) >= T0 + (ticks - 1) * tick  # to the end
    assert not any(f == "bad" for f, _, _ in pipe.latest)
    # The bad call stays in the window for window_s, failing every tick until it leaves.
    failing_ticks = pipe.errors.by_stage["evaluate"]
    assert 0 < failing_ticks <= settings.aggregation.window_s / tick + 1
    assert failing_ticks < ticks  # then the feature evaluates again (window rebuilt)
    lines = tick_errors(log)
    assert len(lines) == 1  # rate-limited: one line for a series failing every tick
    assert lines[0]["feature"] == "bad" and lines[0]["stage"] == "evaluate"
    assert "OverflowError" in lines[0]["error"]
    assert pipe.errors.by_stage["detect"] == 0


class Exploding:
    """A detector with a bug: every update raises."""

    kind = "static"
    firing = False

    def update(self, ts: float, value: float, n: int | None = None) -> Transition | None:
        raise ZeroDivisionError("detector bug")

    def to_state(self) -> dict[str, Any]:
        return {"v": 1}


def test_a_detector_that_raises_costs_only_its_series() -> None:
    settings = load_settings(None)
    tick = settings.aggregation.tick_s
    with capture_logs() as log:
        pipe = Pipeline(settings, structlog.get_logger())
        feed(pipe, T0)
        pipe.advance(T0 + tick + 1)
        watch = pipe._watches[("good", "availability", "")]
        rule, _ = watch.slots[0]
        watch.slots[0] = (rule, Exploding())  # type: ignore[arg-type]
        before = {k: s.ts for k, s in pipe.latest.items()}
        steps = round(2 * ERROR_LOG_INTERVAL_S / tick) + 2
        for k in range(2, 2 + steps):
            feed(pipe, T0 + k * tick)
            pipe.advance(T0 + k * tick + 1)
    assert pipe.errors.by_stage["detect"] == steps
    # Every series, the broken one's other detectors included, was evaluated every tick.
    assert all(pipe.latest[k].ts > ts for k, ts in before.items())
    lines = tick_errors(log)
    # Once at the start and once per ERROR_LOG_INTERVAL_S after, with the count in between.
    assert 2 <= len(lines) <= 3, lines
    assert {(e["stage"], e["feature"], e["metric"]) for e in lines} == {
        ("detect", "good", "availability")
    }
    assert lines[1]["not_logged_since"] > 0


def test_a_start_estimate_or_attribution_that_raises_does_not_stop_the_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The change-point search and attribution only enrich an incident: with both raising
    (a bug such as an empty search that crashed `max()`), the outage is still paged, at
    its detection time and with no suspect, and each failure is counted and logged."""

    def broken(*_args: Any, **_kw: Any) -> Any:
        raise ValueError("enrichment bug")

    monkeypatch.setattr(correlator.correlator, "estimate", broken)
    monkeypatch.setattr(correlator.correlator, "attribute", broken)
    clock, log = Clock(), Log()
    d = make_daemon(tmp_path, clock, log)
    try:
        run_outage(d, clock)
        (rec,) = d.store.incidents()
        assert rec["paged"] and rec["severity"] == "critical"
        assert rec["started_at"] == rec["opened_at"] and rec["attribution"] == []
        assert rec["start_estimate"]["basis"] == "detection"
        errors = d.pipeline.errors.by_stage
        assert errors["start_estimate"] > 0 and errors["attribution"] > 0
        stages = {kw["stage"] for event, kw in log.lines if event == "tick_error"}
        assert stages == {"start_estimate", "attribution"}
    finally:
        d.store.close()
