"""The aggregator against a brute-force reference on random event streams."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.ingest.events import LlmCall, Score, validate_items
from daemon.layers.aggregator import MAX_COMBOS, OTHER, Aggregator
from detectors.base import ScoreObs
from detectors.defaults import QUALITY_METRIC
from tests.daemon.reference_rates import call_ok, call_rates

TICK, WINDOW = 15.0, 300.0
T0 = 1_767_225_600.0

statuses = st.sampled_from([200, 200, 200, 201, 429, 401, 403, 500, 503, 529, 0, None])
calls = st.fixed_dictionaries(
    {
        "type": st.just("llm_call"),
        "ts": st.floats(T0, T0 + 900, allow_nan=False),
        "feature": st.sampled_from(["a", "b"]),
        "status": statuses,
    },
    optional={
        "latency_ms": st.floats(0, 120_000, allow_nan=False),
        "retries": st.integers(0, 3),
        "input_tokens": st.integers(0, 10_000),
        "output_tokens": st.integers(0, 4_000),
        "cost_usd": st.floats(0, 1, allow_nan=False),
        "refused": st.booleans(),
        "format_ok": st.booleans(),
        "output_chars": st.integers(0, 20_000),
        "error": st.sampled_from(["timeout", "boom"]),
        "provider": st.sampled_from(["openai", "anthropic"]),
    },
)


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def reference(events: list[LlmCall], feature: str, now: float) -> dict[str, float]:
    win = [e for e in events if e.feature == feature and now - WINDOW <= _bucket_start(e.ts) < now]
    out: dict[str, float] = {}
    if not win:
        return out

    n = len(win)
    failed = [e for e in win if not call_ok(e)]
    out.update(call_rates(win))  # availability, provider errors, refusals, format
    out["error_rate"] = len(failed) / n
    out["rate_limited_rate"] = sum(e.status == 429 for e in failed) / n
    out["auth_failure_rate"] = sum(e.status in (401, 403) for e in failed) / n
    out["retry_rate"] = sum(bool(e.retries) for e in win) / n
    out["throughput_rpm"] = n * 60 / WINDOW
    lat = [e.latency_ms for e in win if call_ok(e) and e.latency_ms is not None]
    for q, name in ((0.5, "latency_p50_ms"), (0.95, "latency_p95_ms"), (0.99, "latency_p99_ms")):
        if lat:
            out[name] = nearest_rank(lat, q)
    toks = [e.input_tokens for e in win if e.input_tokens is not None]
    if toks:
        out["input_tokens_per_request"] = sum(toks) / len(toks)
    chars = [e.output_chars for e in win if call_ok(e) and e.output_chars is not None]
    if chars:
        out["output_length_mean"] = sum(chars) / len(chars)
    return out


def _bucket_start(ts: float) -> float:
    return math.floor(ts / TICK) * TICK


@settings(max_examples=60, deadline=None)
@given(st.lists(calls, min_size=1, max_size=300), st.integers(1, 60))
def test_window_metrics_match_brute_force(raw: list[dict[str, Any]], tick_no: int) -> None:
    events, rejected = validate_items(raw)
    assert rejected == []
    agg = Aggregator(tick_s=TICK, window_s=WINDOW, quality_window_s=WINDOW)
    for ev in events:
        assert isinstance(ev, LlmCall)
        agg.add_call(ev)
    now = T0 + tick_no * TICK
    got: dict[tuple[str, str], float] = {
        (s.feature, s.metric): s.value for s in agg.evaluate(now) if not s.series
    }
    calls_only = [e for e in events if isinstance(e, LlmCall)]
    for feature in ("a", "b"):
        want = reference(calls_only, feature, now)
        for metric, value in want.items():
            have = got[(feature, metric)]
            if metric.startswith("latency_"):
                # The sketch promises 1% relative error (the issue asks for 2%); zero is exact.
                assert abs(have - value) <= 0.01 * value + 1e-3, (metric, have, value)
            else:
                assert math.isclose(have, value, rel_tol=1e-9, abs_tol=1e-9), (metric, have, value)
        assert {m for f, m in got if f == feature} >= set(want)


def test_memory_is_bounded_by_retention_not_events() -> None:
    agg = Aggregator(tick_s=15, window_s=300, quality_window_s=300, retention_s=600)
    for i in range(40_000):
        ts = T0 + i * 0.05
        (ev,), _ = validate_items(
            [
                {
                    "type": "llm_call",
                    "ts": ts,
                    "feature": "f",
                    "latency_ms": 100 + i % 7,
                    "labels": {"request": f"r{i}"},
                }
            ]
        )
        assert isinstance(ev, LlmCall)
        agg.add_call(ev)
        if i % 30 == 0:
            agg.expire(ts)
    feat = agg._features["f"]
    assert len(feat.buckets) <= 600 / 15 + 2
    # 40,000 distinct label values: whole label sets are counted up to MAX_COMBOS per
    # bucket, the rest per label with a cap and an __other__ slot.
    for b in feat.buckets.values():
        assert len(b.combos) <= MAX_COMBOS
        assert len(b.labels.get("request", {})) <= agg.max_label_values
    counts = agg.label_counts("f", T0, T0 + 3000)["request"]
    assert len(counts) <= agg.max_label_values and OTHER in counts
    assert sum(counts.values()) == sum(b.calls for b in feat.buckets.values())


def test_scores_mean_and_bad_labels() -> None:
    agg = Aggregator(tick_s=15, window_s=300, quality_window_s=300)
    raw = [
        {
            "type": "score",
            "ts": T0 + i,
            "feature": "f",
            "name": "faith",
            "value": 0.9 if i % 2 else 0.3,
            "labels": {"prompt_version": "v2" if i % 2 else "v3"},
        }
        for i in range(100)
    ]
    events, _ = validate_items(raw)
    for ev in events:
        assert isinstance(ev, Score)
        agg.add_score(ev)
    (sample,) = [s for s in agg.evaluate(T0 + 150) if s.metric == "score:faith"]
    assert sample.n == 100 and math.isclose(sample.value, 0.6)
    bad = agg.label_counts("f", T0, T0 + 150, bad_only=True)["prompt_version"]
    assert bad.get("v3", 0) >= 45 and bad.get("v2", 0) == 0


def test_state_round_trip_gives_same_samples() -> None:
    agg = Aggregator()
    raw = [
        {
            "type": "llm_call",
            "ts": T0 + i,
            "feature": "f",
            "latency_ms": float(i),
            "status": 200 if i % 9 else 500,
            "labels": {"p": str(i % 3)},
        }
        for i in range(200)
    ]
    events, _ = validate_items(raw)
    for ev in events:
        assert isinstance(ev, LlmCall)
        agg.add_call(ev)
    again = Aggregator()
    again.load_state(agg.to_state())
    assert again.evaluate(T0 + 210) == agg.evaluate(T0 + 210)
    assert again.label_counts("f", T0, T0 + 210) == agg.label_counts("f", T0, T0 + 210)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.lists(calls, max_size=40), st.integers(0, 3)), min_size=1, max_size=25),
    st.lists(
        st.fixed_dictionaries(
            {
                "type": st.just("score"),
                "ts": st.floats(T0, T0 + 900),
                "feature": st.sampled_from(["a", "b"]),
                "name": st.sampled_from(["f", "g"]),
                "value": st.floats(0, 1),
            }
        ),
        max_size=100,
    ),
)
def test_running_window_sums_match_a_fresh_merge(
    steps: list[tuple[list[dict[str, Any]], int]], scores: list[dict[str, Any]]
) -> None:
    """Ticks fold buckets in and out of running sums; late events force a rebuild. At every
    tick the result must equal merging the window from scratch."""
    live = Aggregator(tick_s=TICK, window_s=60, quality_window_s=120)
    seen: list[Any] = []
    score_events, _ = validate_items(scores)
    now = T0
    for i, (raw, advance) in enumerate(steps):
        events, _ = validate_items(raw + (scores[i :: len(steps)] if scores else []))
        for ev in events + score_events[i :: len(steps)]:
            (live.add_call if isinstance(ev, LlmCall) else live.add_score)(ev)  # type: ignore[arg-type]
            seen.append(ev)
        now += advance * TICK
        fresh = Aggregator(tick_s=TICK, window_s=60, quality_window_s=120)
        for ev in seen:
            (fresh.add_call if isinstance(ev, LlmCall) else fresh.add_score)(ev)  # type: ignore[arg-type]
        # The fused `quality` sample carries the observations since the previous tick, not a
        # window sum: a fresh aggregator has them all pending (see the quality tests below).
        got = {
            (s.feature, s.metric, s.series): (s.value, s.n)
            for s in live.evaluate(now)
            if s.metric != QUALITY_METRIC
        }
        want = {
            (s.feature, s.metric, s.series): (s.value, s.n)
            for s in fresh.evaluate(now)
            if s.metric != QUALITY_METRIC
        }
        assert got.keys() == want.keys()
        for k, (value, n) in want.items():
            assert got[k][1] == n, k
            assert math.isclose(got[k][0], value, rel_tol=1e-9, abs_tol=1e-9), k


def test_tick_increments_count_each_call_once_and_late_calls_at_the_next_tick() -> None:
    """The evidence detectors' `Sample.tick`: what arrived since the last evaluation, per
    metric (k of n, or log1p sums of successful calls), whatever bucket a call lands in."""
    agg = Aggregator()

    def call(ts: float, status: int, **kw: Any) -> LlmCall:
        (ev,), _ = validate_items([{"type": "llm_call", "ts": ts, "feature": "f",
                                    "status": status, **kw}])  # fmt: skip
        assert isinstance(ev, LlmCall)
        return ev

    agg.add_call(call(T0 + 1, 200, latency_ms=1000.0, output_tokens=100, ttft_ms=200.0))
    agg.add_call(call(T0 + 2, 500))
    first = {s.metric: s for s in agg.evaluate(T0 + 15) if not s.series}
    avail = first["availability"].tick
    assert avail is not None and (avail.n, avail.k) == (2, 1)
    lpt = first["latency_per_output_token_ms"]
    assert lpt.value == 10.0 and lpt.tick is not None and lpt.tick.n == 1
    assert lpt.tick.log_sum == math.log1p(10.0)
    ttft = first["ttft_ms"].tick
    assert ttft is not None and ttft.log_sq == math.log1p(200.0) ** 2
    agg.add_call(call(T0 + 5, 429))  # late: its bucket was evaluated already
    second = {s.metric: s for s in agg.evaluate(T0 + 30) if not s.series}
    rl = second["rate_limited_rate"]
    assert rl.n == 3 and rl.tick is not None and (rl.tick.n, rl.tick.k) == (1, 1)
    third = {s.metric: s for s in agg.evaluate(T0 + 45) if not s.series}
    tick = third["availability"].tick
    assert tick is not None and tick.n == 0  # the window still holds calls; nothing new


def test_a_batch_of_near_identical_calls_counts_once_for_the_evidence_detectors() -> None:
    """Calls within BATCH_GAP_S of each other are one observation (their mean log value);
    the window metrics and the k-of-n counts still count every call."""
    agg = Aggregator()

    def call(ts: float, out_tok: int) -> LlmCall:
        (ev,), _ = validate_items([{"type": "llm_call", "ts": ts, "feature": "f",
                                    "status": 200, "output_tokens": out_tok}])  # fmt: skip
        assert isinstance(ev, LlmCall)
        return ev

    batch = [100, 102, 98, 100]
    for i, tok in enumerate(batch):  # 2 ms apart: one batch
        agg.add_call(call(T0 + 1 + i * 0.002, tok))
    agg.add_call(call(T0 + 5, 400))  # seconds later: its own observation
    out = {s.metric: s for s in agg.evaluate(T0 + 15) if not s.series}["output_tokens_per_request"]
    assert out.n == 5 and out.value == (sum(batch) + 400) / 5
    tick = out.tick
    assert tick is not None and tick.n == 2
    mean_log = sum(math.log1p(t) for t in batch) / len(batch)
    assert math.isclose(tick.log_sum, mean_log + math.log1p(400))
    assert math.isclose(tick.log_sq, mean_log**2 + math.log1p(400) ** 2)
    avail = {s.metric: s for s in agg.evaluate(T0 + 15) if not s.series}["availability"]
    assert avail.n == 5


def _scores(agg: Aggregator, raw: list[dict[str, Any]]) -> None:
    events, errors = validate_items([{"type": "score", "feature": "f", **r} for r in raw])
    assert not errors
    for ev in events:
        assert isinstance(ev, Score)
        assert agg.add_score(ev) is None


def _parts(agg: Aggregator, now: float) -> dict[str, ScoreObs]:
    (sample,) = [s for s in agg.evaluate(now) if s.metric == QUALITY_METRIC]
    assert sample.layer == "quality" and sample.parts is not None
    assert sample.n == sum(len(p.values) for p in sample.parts)
    return {p.name: p for p in sample.parts}


def test_quality_observations_per_call_per_run_and_per_case() -> None:
    """Judge scores (request_id) and cases (case_id) are one observation each; a golden run
    (same timestamp, or same run_id) is one observation, its mean, handed over one tick
    after its last score; each tick hands over only what arrived since the last."""
    agg = Aggregator(score_direction=lambda feature, name: "lower" if name == "tox" else "higher")
    _scores(
        agg,
        [{"ts": T0 + 1, "name": "judge", "value": 0.8, "request_id": f"r{i}"} for i in range(3)],
    )
    _scores(agg, [{"ts": T0 + 2, "name": "golden", "value": v} for v in (0.9, 0.7, 0.8)])
    _scores(agg, [{"ts": T0 + 3 + i, "name": "suite", "value": 0.5 + 0.1 * i,
                   "labels": {"run_id": "nightly-7"}} for i in range(3)])  # fmt: skip
    _scores(agg, [{"ts": T0 + 4, "name": "cases", "value": 0.6, "labels": {"case_id": str(i)}}
                  for i in range(2)])  # fmt: skip
    _scores(agg, [{"ts": T0 + 5, "name": "tox", "value": 0.1, "request_id": "x"}])
    first = _parts(agg, T0 + 15)
    assert first["judge"].values == (0.8, 0.8, 0.8) and first["judge"].higher_is_better
    assert first["cases"].values == (0.6, 0.6)
    assert first["tox"].higher_is_better is False
    assert "golden" not in first and "suite" not in first  # runs wait one tick
    # A late case of the open run joins it; the run is handed over once, as its mean.
    _scores(agg, [{"ts": T0 + 3, "name": "suite", "value": 0.9, "labels": {"run_id": "nightly-7"}}])
    second = _parts(agg, T0 + 30)
    assert len(second["golden"].values) == 1 and math.isclose(second["golden"].values[0], 0.8)
    assert "suite" not in second and "judge" not in second
    third = _parts(agg, T0 + 45)
    assert len(third["suite"].values) == 1
    assert math.isclose(third["suite"].values[0], (0.5 + 0.6 + 0.7 + 0.9) / 4)
    assert _parts(agg, T0 + 60) == {}  # nothing new: an empty tick while scores are in window


def test_quality_observations_survive_a_snapshot() -> None:
    agg = Aggregator()
    _scores(agg, [{"ts": T0 + 1, "name": "judge", "value": 0.7, "request_id": "a"}])
    _scores(agg, [{"ts": T0 + 2, "name": "golden", "value": v} for v in (0.9, 0.7)])
    copy = Aggregator()
    copy.load_state(agg.to_state())
    assert _parts(copy, T0 + 15) == _parts(agg, T0 + 15)
    assert _parts(copy, T0 + 30) == _parts(agg, T0 + 30)
