"""Cardinality caps: each dimension that grows with the input stops at its cap, folds or counts
what passes it, and says so in llm_oncall_cardinality_capped_total."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from config.settings import Settings
from correlator.records import Signal
from daemon.exposition import PipelineCollector, render
from daemon.ingest.events import Event, validate_one
from daemon.layers.aggregator import CAPPED_DIMENSIONS, OTHER, Aggregator, Limits, clip
from daemon.pipeline import DESCRIPTION_MAX, Pipeline
from detectors.base import Direction
from tests.conftest import start_daemon
from tests.daemon.test_e2e import metrics, post

T0 = 1_795_000_000.0


def ev(**kw: Any) -> Event:
    base: dict[str, Any] = {"type": "llm_call", "ts": T0, "feature": "f", "status": 200}
    return validate_one(base | kw)


def pipeline(**ingest: Any) -> Pipeline:
    return Pipeline(Settings(ingest=ingest))


def scrape(pipe: Pipeline) -> dict[str, list[tuple[dict[str, str], float]]]:
    registry = CollectorRegistry()
    registry.register(PipelineCollector(lambda: pipe, {}))
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def alert(name: str, series: str, feature: str = "f") -> Signal:
    return Signal(
        T0, feature, name, "infra", "alertmanager", "firing", 1.0, 0.0, 1.0, Direction.UP, series
    )


def capped(pipe: Pipeline, dimension: str) -> int:
    return pipe.aggregator.capped.get(dimension, 0)


def test_one_feature_cap_for_every_event_type() -> None:
    pipe = pipeline(max_features=2)
    pipe.ingest([ev(feature="a"), ev(type="score", feature="b", name="s", value=1.0)], now=T0)
    others: list[Event] = [
        ev(feature="c"),
        ev(type="score", feature="c", name="s", value=1.0),
        ev(type="metric", feature="c", layer="infra", name="gpu", value=1.0),
        ev(type="change", kind="deploy", feature="c"),
    ]
    pipe.ingest(others, now=T0)
    assert pipe.external_signals([alert("GpuDown", "fp1", feature="c")]).signals == []
    assert sorted(pipe.aggregator.features) == ["a", "b"]
    assert pipe.counters.unused == {"feature_limit": 5}
    assert capped(pipe, "feature") == 5
    # A change for every feature (feature: null) needs no slot.
    pipe.ingest([ev(type="change", kind="deploy", feature=None)], now=T0)
    assert pipe.counters.unused == {"feature_limit": 5}


def test_models_fold_into_other_and_keep_totals_bounded() -> None:
    pipe = pipeline(max_models=4, max_providers=3, max_endpoints=2)
    calls = [ev(provider=f"p{i % 5}", model=f"m{i}", endpoint=f"e{i % 4}") for i in range(100)]
    pipe.ingest(calls, now=T0)
    feat = pipe.aggregator._features["f"]
    assert len(feat.models) == 4 and OTHER in feat.models
    assert len(feat.providers) == 3 and len(feat.endpoints) == 2
    totals = [k for k in pipe.aggregator.totals if k[0] == "f"]
    assert len(totals) <= 3 * 4
    # Every call is still counted: folding loses the split, not the traffic.
    assert sum(sum(t.requests.values()) for t in pipe.aggregator.totals.values()) == 100
    assert capped(pipe, "model") == 97  # m0..m2 admitted, the 97 others folded
    assert capped(pipe, "provider") > 0 and capped(pipe, "endpoint") > 0


def test_series_caps_per_feature_and_across_features() -> None:
    pipe = pipeline(max_series_per_feature=5, max_series=6)
    pipe.ingest([ev(model=f"m{i}") for i in range(20)], now=T0)
    feat = pipe.aggregator._features["f"]
    assert len(feat.series) == 5 and (OTHER, OTHER, OTHER) in feat.series
    assert capped(pipe, "series_per_feature") == 16
    # 4 combinations used by "f" (__other__ is free across features); 2 left for "g".
    pipe.ingest([ev(feature="g", model=f"m{i}") for i in range(6)], now=T0)
    g = pipe.aggregator._features["g"]
    assert len(g.series - {(OTHER, OTHER, OTHER)}) == 2
    assert capped(pipe, "series") == 4
    samples = pipe.aggregator.evaluate(T0 + 15)
    per_series = {(s.feature, s.series) for s in samples if s.series}
    assert len([k for k in per_series if k[0] == "f"]) == 5


def test_score_and_metric_names_past_the_cap_are_unused_with_a_reason() -> None:
    pipe = pipeline(max_score_names=3, max_metric_names=2)
    scores = [ev(type="score", name=f"s{i}", value=0.5) for i in range(10)]
    metrics = [ev(type="metric", layer="infra", name=f"m{i}", value=1.0) for i in range(10)]
    pipe.ingest([*scores, *metrics, *scores[:3]], now=T0)
    assert pipe.counters.unused == {"score_name_limit": 7, "metric_name_limit": 8}
    assert capped(pipe, "score_name") == 7 and capped(pipe, "metric_name") == 8
    assert {k[1] for k in pipe.aggregator.score_hist} == {"s0", "s1", "s2"}
    assert {k[1] for k in pipe.latest if k[1].startswith("m")} == {"m0", "m1"}


def test_alerts_share_the_metric_name_cap() -> None:
    pipe = pipeline(max_metric_names=2)
    sigs = [alert(f"Alert{i}", "x" * 500) for i in range(4)]
    out = pipe.external_signals(sigs)
    assert len(out.signals) == 2 and pipe.counters.unused == {"metric_name_limit": 2}
    assert all(len(s.series) == 200 and s.series.endswith("…") for s in out.signals)


def test_global_series_cap_covers_scores_and_metrics() -> None:
    pipe = pipeline(max_series=3)
    pipe.ingest([ev(type="score", name=f"s{i}", value=0.5) for i in range(2)], now=T0)
    pipe.ingest([ev(type="metric", layer="api", name=f"m{i}", value=1.0) for i in range(2)], now=T0)
    assert pipe.counters.unused == {"series_limit": 1}
    assert capped(pipe, "series") == 1


def test_label_names_and_value_length() -> None:
    agg = Aggregator(limits=Limits(label_names=3, label_value_length=10))
    labels = {f"l{i}": "v" for i in range(6)} | {"long": "x" * 50}
    agg.add_call(ev(labels=labels))  # type: ignore[arg-type]
    agg.add_call(ev(labels={"prompt": "y" * 50}))  # type: ignore[arg-type]
    counts = agg.label_counts("f", T0, T0 + 15)
    assert set(counts) == {"l0", "l1", "l2", "prompt"}
    assert counts["prompt"] == {"y" * 9 + "…": 1}
    assert agg.capped == {"label_name": 1, "label_value_length": 1}
    # A long model name is a label value in /metrics too.
    agg.add_call(ev(model="m" * 50))  # type: ignore[arg-type]
    assert ("f", "", "m" * 9 + "…") in agg.totals
    assert clip("abc", 10) == "abc" and clip("abcdef", 4) == "abc…"


def test_label_sets_and_values_per_bucket() -> None:
    agg = Aggregator(limits=Limits(label_sets=10, label_values=5))
    for i in range(100):
        agg.add_call(ev(labels={"user": f"u{i}", "prompt": "v1"}))  # type: ignore[arg-type]
    bucket = next(iter(agg._features["f"].buckets.values()))
    assert len(bucket.combos) == 10
    assert len(bucket.labels["user"]) == 5 and OTHER in bucket.labels["user"]
    counts = agg.label_counts("f", T0, T0 + 15)
    assert sum(counts["user"].values()) == 100 and counts["prompt"] == {"v1": 100}
    assert agg.capped["label_set"] == 90 and agg.capped["label_value"] == 86


def test_change_labels_are_cleaned() -> None:
    pipe = pipeline(max_label_names=2, max_label_value_length=5)
    labels = {"a": "123456789", "b": "x", "c": "y"}
    change = ev(type="change", kind="deploy", feature="f", labels=labels, description="d" * 5000)
    pipe.ingest([change], now=T0)
    (kept,) = pipe.correlator.changes()
    assert dict(kept.labels) == {"a": "1234…", "b": "x"}
    assert len(kept.description) == DESCRIPTION_MAX and kept.description.endswith("…")
    assert pipe.aggregator.capped == {
        "label_name": 1,
        "label_value_length": 1,
        "description_length": 1,
    }


def test_slots_survive_a_restart() -> None:
    settings = Settings(ingest={"max_models": 3, "max_metric_names": 1})
    first = Pipeline(settings)
    first.ingest([ev(model="m1"), ev(model="m2"), ev(model="m3")], now=T0)
    first.ingest([ev(type="metric", layer="infra", name="gpu", value=1.0)], now=T0)
    first.advance(T0 + 15)
    second = Pipeline(settings)
    assert second.restore(first.snapshot()) == []
    feat = second.aggregator._features["f"]
    assert {"m1", "m2", OTHER} <= feat.models
    assert feat.external == {("gpu", "")}
    second.ingest([ev(ts=T0 + 16, type="metric", layer="infra", name="gpu2", value=1.0)], now=T0)
    assert second.counters.unused == {"metric_name_limit": 1}


def test_metrics_export_every_dimension_and_limit() -> None:
    pipe = pipeline(max_models=2)
    pipe.ingest([ev(model=f"m{i}") for i in range(5)], now=T0)
    out = scrape(pipe)
    got = {labels["dimension"]: v for labels, v in out["llm_oncall_cardinality_capped_total"]}
    assert set(got) == set(CAPPED_DIMENSIONS) and got["model"] == 4
    limits = {labels["limit"]: v for labels, v in out["llm_oncall_cardinality_limit"]}
    assert limits["models"] == 2 and limits["features"] == 200
    used = {labels["limit"]: v for labels, v in out["llm_oncall_cardinality_used"]}
    assert used == {"features": 1, "series": 2}  # ("", "m0", "") and ("", "__other__", "")
    models = {labels["model"] for labels, _ in out["llm_oncall_llm_requests_total"]}
    assert models == {"m0", OTHER}


def test_render_off_the_loop_matches_generate_latest() -> None:
    pipe = pipeline()
    pipe.ingest([ev(model=f"m{i}") for i in range(30)], now=T0)
    registry = CollectorRegistry()
    collector = PipelineCollector(lambda: pipe, {})
    registry.register(collector)

    async def both() -> tuple[bytes, bytes]:
        lock = asyncio.Lock()
        one, two = await asyncio.gather(
            render(registry, collector, lock), render(registry, collector, lock)
        )
        return one, two

    one, two = asyncio.run(both())
    assert one == two == generate_latest(registry)


async def test_a_large_scrape_does_not_block_the_loop(loop_guard: None) -> None:
    """At the global series cap (2,000 score names: ~36k samples, ~1 s to format on a busy
    machine) the loop is held only for the snapshot; the loop guard fails the test if any
    callback takes over 0.5 s, and a ticker measures the loop's responsiveness meanwhile."""
    pipe = pipeline(max_score_names=100)
    scores = [
        ev(type="score", feature=f"f{i % 20}", name=f"s{i // 20}", value=0.5) for i in range(2000)
    ]
    pipe.ingest(scores, now=T0)
    assert len(pipe.aggregator.score_hist) == 2000
    registry = CollectorRegistry()
    collector = PipelineCollector(lambda: pipe, {})
    registry.register(collector)
    gaps: list[float] = []

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(0.01)
            gaps.append(loop.time() - t)

    task = asyncio.create_task(ticker())
    body = await render(registry, collector, asyncio.Lock())
    task.cancel()
    assert body.count(b"llm_oncall_score_bucket{") == 2000 * 16
    assert gaps, "the loop never ran while the text was being formatted"


def test_daemon_keeps_series_bounded_past_the_caps(tmp_path: Path) -> None:
    """The real daemon: posting far past every cap leaves /metrics at the caps and counts the
    overflow per dimension and per unused reason."""
    env = {
        "LLM_ONCALL_INGEST__MAX_FEATURES": "3",
        "LLM_ONCALL_INGEST__MAX_MODELS": "4",
        "LLM_ONCALL_INGEST__MAX_SCORE_NAMES": "3",
        "LLM_ONCALL_INGEST__MAX_METRIC_NAMES": "2",
    }
    d = start_daemon(tmp_path, env=env)
    try:
        now = time.time()
        base = {"ts": now, "feature": "f0", "status": 200, "latency_ms": 100.0}
        events: list[dict[str, Any]] = [
            {"type": "llm_call", **base, "feature": f"f{i % 10}", "model": f"m{i}"}
            for i in range(400)
        ]
        events += [{"type": "score", **base, "name": f"s{i}", "value": 0.5} for i in range(50)]
        events += [
            {"type": "metric", **base, "layer": "infra", "name": f"g{i}", "value": 1.0}
            for i in range(50)
        ]
        events.append({"type": "llm_call", **base, "labels": {"prompt": "p" * 5000}})
        status, body = post(d.url + "/v1/events", orjson.dumps(events))
        assert status == 200 and body["accepted"] == len(events)
        alerts = {"alerts": [{"labels": {"feature": f"a{i}", "alertname": "X"},
                              "status": "firing"} for i in range(5)]}  # fmt: skip
        assert post(d.url + "/v1/alertmanager", orjson.dumps(alerts))[0] == 200
        ns = str(int(now * 1e9))
        spans = [
            {"startTimeUnixNano": ns, "endTimeUnixNano": ns, "attributes": [
                {"key": "gen_ai.system", "value": {"stringValue": "openai"}},
                {"key": "llm_oncall.feature", "value": {"stringValue": f"otel{i}"}},
            ]}
            for i in range(4)
        ]  # fmt: skip
        otlp = {"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}
        headers = {"Content-Type": "application/json"}
        assert post(d.url + "/v1/traces", orjson.dumps(otlp), headers) == (200, {})
        m = metrics(d)
    finally:
        d.proc.terminate()
        d.proc.wait(timeout=15)

    def series(name: str) -> list[dict[str, str]]:
        return [dict(labels) for (n, labels) in m if n == name]

    requests = series("llm_oncall_llm_requests_total")
    assert {r["feature"] for r in requests} == {"f0", "f1", "f2"}
    # Each feature keeps its first 3 models (m0, m10, m20 for f0); the rest are __other__.
    admitted = {f"m{i + 10 * k}" for i in range(3) for k in range(3)}
    assert {r["model"] for r in requests} == admitted | {OTHER}
    assert len(requests) <= 3 * 4  # features x models (incl. __other__), one status class
    assert {r["name"] for r in series("llm_oncall_score_count")} == {"s0", "s1", "s2"}
    assert len(series("llm_oncall_layer_value")) < 3 * 40
    unused = {dict(k)["reason"]: v for (n, k), v in m.items() if n.endswith("events_unused_total")}
    # 280 calls of features f3..f9, 5 alerts and 4 OTLP spans of new features: past the 3.
    assert unused == {"feature_limit": 289, "score_name_limit": 47, "metric_name_limit": 48}
    cap = {dict(k)["dimension"]: v for (n, k), v in m.items() if n.endswith("capped_total")}
    assert cap["feature"] == 289 and cap["score_name"] == 47 and cap["metric_name"] == 48
    # 37 calls per admitted feature past the cap, and the labelled call (model "") in f0.
    assert cap["model"] == 3 * 37 + 1 and cap["label_value_length"] == 1
    total_calls = sum(v for (n, _), v in m.items() if n == "llm_oncall_llm_requests_total")
    assert total_calls == 120 + 1  # every call of an admitted feature is still counted


def test_label_sets_behind_the_clock_fold_into_per_label_counts() -> None:
    """Folding whole label sets of old buckets keeps every count attribution reads."""
    agg = Aggregator()
    for i in range(300):
        agg.add_call(
            ev(ts=T0 + i * 0.1, status=200 if i % 4 else 500, model=f"m{i % 3}",  # type: ignore[arg-type]
               labels={"prompt": f"v{i % 5}", "segment": "pro" if i % 2 else "free"})
        )  # fmt: skip
    span = (T0, T0 + 60)
    before = (agg.label_counts("f", *span), agg.label_counts("f", *span, bad_only=True))
    agg.expire(T0 + 60)
    buckets = agg._features["f"].buckets
    assert all(not b.combos for b in buckets.values())
    assert (agg.label_counts("f", *span), agg.label_counts("f", *span, bad_only=True)) == before
    # A late event into a folded bucket counts as a new set, folded at the next tick.
    agg.add_call(ev(ts=T0 + 1, labels={"prompt": "v9"}))  # type: ignore[arg-type]
    assert agg.label_counts("f", *span)["prompt"]["v9"] == 1
    agg.expire(T0 + 75)
    assert all(not b.combos for b in buckets.values())
    assert agg.label_counts("f", *span)["prompt"]["v9"] == 1
    assert agg.capped == {}
