"""Per-segment series (issue 10): each value of a split label gets its own k/n samples, per-tick
increments, quality verdict and history, within a cap, through a snapshot; and its rules
share the metric's false-alarm budget."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.settings import Settings
from daemon.ingest.events import LlmCall, Score, validate_items
from daemon.layers.aggregator import Aggregator
from daemon.layers.rules import RuleBook
from detectors.base import Sample
from detectors.defaults import QUALITY_METRIC
from detectors.factory import build_detector, split_params
from tests.daemon.reference_rates import call_ok, call_rates

TICK, WINDOW = 15.0, 300.0
T0 = 1_767_225_600.0
METRICS = ("availability", "provider_error_rate", "refusal_rate", "format_compliance_rate")

calls = st.fixed_dictionaries(
    {
        "type": st.just("llm_call"),
        "ts": st.floats(T0, T0 + 900, allow_nan=False),
        "feature": st.just("f"),
        "status": st.sampled_from([200, 200, 200, 429, 401, 500, 503, 0, None]),
        "labels": st.fixed_dictionaries({}, optional={"segment": st.sampled_from("abc")}),
    },
    optional={
        "refused": st.booleans(),
        "format_ok": st.booleans(),
        "error": st.just("boom"),
    },
)


def _add(agg: Aggregator, raw: list[dict[str, Any]]) -> list[LlmCall]:
    events, rejected = validate_items(raw)
    assert rejected == []
    out = []
    for ev in events:
        if isinstance(ev, LlmCall):
            assert agg.add_call(ev) is None
            out.append(ev)
        else:
            assert isinstance(ev, Score)
            assert agg.add_score(ev) is None
    return out


def _reference(events: list[LlmCall], value: str, lo: float, hi: float) -> dict[str, float]:
    win = [
        e
        for e in events
        if (e.labels or {}).get("segment") == value and lo <= math.floor(e.ts / TICK) * TICK < hi
    ]
    return call_rates(win) if win else {}


@settings(max_examples=60, deadline=None)
@given(st.lists(calls, min_size=1, max_size=200), st.integers(1, 60))
def test_per_value_windows_match_brute_force(raw: list[dict[str, Any]], tick_no: int) -> None:
    agg = Aggregator(tick_s=TICK, window_s=WINDOW, quality_window_s=WINDOW)
    events = _add(agg, raw)
    now = T0 + tick_no * TICK
    got = {(s.series, s.metric): s for s in agg.evaluate(now) if s.series}
    values = {(e.labels or {}).get("segment") for e in events} - {None}
    for value in "abc":
        want = _reference(events, value, now - WINDOW, now) if len(values) > 1 else {}
        have = {m: s.value for (series, m), s in got.items() if series == f"segment={value}"}
        assert set(have) == set(want), (value, have, want)
        for metric, v in want.items():
            assert math.isclose(have[metric], v, abs_tol=1e-12), (value, metric)
    # Each call counts once in the per-tick increments: the first tick takes every call.
    first = Aggregator(tick_s=TICK, window_s=1200.0, quality_window_s=WINDOW)
    _add(first, raw)
    ticks = {(s.series, s.metric): s.tick for s in first.evaluate(T0 + 960) if s.series}
    for value in values if len(values) > 1 else ():
        mine = [e for e in events if (e.labels or {}).get("segment") == value]
        tick = ticks.get((f"segment={value}", "availability"))
        assert tick is not None and (tick.n, tick.k) == (len(mine), sum(call_ok(e) for e in mine))


def _call(ts: float, segment: str, **kw: Any) -> dict[str, Any]:
    return {"type": "llm_call", "ts": ts, "feature": "f", "status": 200,
            "labels": {"segment": segment}, **kw}  # fmt: skip


def _by_series(samples: list[Sample]) -> dict[tuple[str, str], Sample]:
    return {(s.series, s.metric): s for s in samples}


def test_one_value_is_the_feature_and_values_past_the_cap_are_not_tested() -> None:
    agg = Aggregator(split_values=2)
    _add(agg, [_call(T0 + i, "a", refused=False) for i in range(5)])
    assert not [s for s in agg.evaluate(T0 + 15) if s.series]  # one value: no split series
    _add(agg, [_call(T0 + 20 + i, v, refused=v == "c") for i, v in enumerate("bcbc")])
    got = _by_series(agg.evaluate(T0 + 30))
    assert {series for series, _ in got} == {"", "segment=a", "segment=b"}
    assert agg.capped["split_value"] == 2  # the two calls of c, counted at the feature only
    assert got[("", "refusal_rate")].value == pytest.approx(2 / 9)
    assert got[("segment=b", "refusal_rate")].value == 0.0


def test_per_call_scores_feed_their_value_and_golden_runs_do_not() -> None:
    agg = Aggregator()
    _add(agg, [_call(T0 + i, "ab"[i % 2]) for i in range(4)])
    score = {"type": "score", "feature": "f", "name": "judge"}
    _add(agg, [
        score | {"ts": T0 + 5, "value": 0.9, "request_id": "r1", "labels": {"segment": "a"}},
        score | {"ts": T0 + 6, "value": 0.2, "request_id": "r2", "labels": {"segment": "b"}},
        score | {"ts": T0 + 7, "value": 0.5, "name": "golden"},
    ])  # fmt: skip
    got = _by_series(agg.evaluate(T0 + 15))
    assert got[("segment=a", QUALITY_METRIC)].parts is not None
    assert [(p.name, p.values) for p in got[("segment=a", QUALITY_METRIC)].parts or ()] == [
        ("judge", (0.9,))
    ]
    assert [(p.name, p.values) for p in got[("segment=b", QUALITY_METRIC)].parts or ()] == [
        ("judge", (0.2,))
    ]
    # While its scores are in the quality window the value's verdict gets a sample each tick
    # (an empty one), so a firing verdict is not taken for stale.
    later = _by_series(agg.evaluate(T0 + 30))
    assert later[("segment=a", QUALITY_METRIC)].parts == ()


def test_history_and_snapshot_of_a_value() -> None:
    agg = Aggregator()
    raw = [_call(T0 + i * 10, "ab"[i % 3 == 0], status=200 if i % 4 else 503) for i in range(60)]
    events = _add(agg, raw)
    pro = [e for e in events if e.labels and e.labels["segment"] == "b"]
    hist = agg.history("f", "availability", T0, T0 + 600, 60.0, "segment=b")
    assert sum(n for _, _, n in hist) == len(pro)
    ok = sum(round(v * n) for _, v, n in hist)
    assert ok == sum(call_ok(e) for e in pro)
    assert agg.history("f", "output_length_mean", T0, T0 + 600, 60.0, "segment=b") == []
    assert agg.is_split("segment=b") and not agg.is_split("provider=x,model=y,endpoint=z")
    copy = Aggregator()
    copy.load_state(agg.to_state())
    assert copy.evaluate(T0 + 615) == agg.evaluate(T0 + 615)
    assert copy.history("f", "availability", T0, T0 + 600, 60.0, "segment=b") == hist


def test_split_rules_share_the_budget_and_drop_static_lines() -> None:
    book = RuleBook(Settings(aggregation={"split_labels": ["segment", "region"]}))
    assert book.split_tests == 16
    whole = book.rules_for("f", "api", "availability")
    per_value = book.rules_for("f", "api", "availability", "segment=pro")
    assert [r.kind for r in whole] == ["binomial", "static", "static"]
    assert [r.kind for r in per_value] == ["binomial"]
    assert (
        per_value[0].page_alone and per_value[0].params["budget"] == whole[0].params["budget"] / 16
    )
    # A provider series is no split: it runs the metric's rules unchanged.
    assert book.rules_for("f", "api", "availability", "provider=a,model=b,endpoint=c") == whole
    fused = book.rules_for("f", "quality", QUALITY_METRIC, "region=eu")[0]
    assert fused.params["budget_s"] == 16 * 30 * 86_400.0
    # The thresholds: the fused CUSUM's h grows by ln 16; the binomial's z by ~0.5 at 5 min.
    h = {
        k: build_detector("fused", split_params("fused", {}, k) or {}).h  # type: ignore[attr-defined]
        for k in (1, 16)
    }
    assert h[16] - h[1] == pytest.approx(math.log(16))
    assert split_params("fused", {"h": 10.0}, 4) == {"h": 10.0 + math.log(4)}
    assert split_params("static", {"threshold": 1.0}, 4) is None
    assert split_params("binomial", {}, 8) == {"budget": 0.25 / 8, "warmup": 1440}
    assert split_params("logmean", {"warmup": 2000}, 2) == {"budget": 0.125, "warmup": 2000}


def test_split_label_config_is_checked() -> None:
    for bad, word in ((["model"], "own availability"), (["a=b"], "'='"), (["x", "x"], "twice")):
        with pytest.raises(ValueError, match=word):
            Settings(aggregation={"split_labels": bad})


def test_a_pipeline_snapshot_restores_the_per_value_detectors_with_their_rules() -> None:
    from daemon.pipeline import Pipeline

    settings = Settings()
    pipe = Pipeline(settings)
    raw = [_call(T0 + i * 7.0, "ab"[i % 2], refused=i % 13 == 0) for i in range(300)]
    events, _ = validate_items(raw)
    pipe.ingest(events)
    pipe.advance(T0 + 2200)
    key = ("f", "refusal_rate", "segment=a")
    assert key in pipe.detector_keys()
    again = Pipeline(settings)
    assert again.restore(orjson.loads(pipe.snapshot_bytes(T0 + 2200))) == []
    rule, det = again._watches[key].slots[0]
    assert rule.params["budget"] == 0.25 / 8 and rule.params["warmup"] == 1440
    assert det.to_state() == pipe._watches[key].slots[0][1].to_state()
