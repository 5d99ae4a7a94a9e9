"""The fused `quality` series' layer value is relative quality as the verdict states it
(1.0 until it fires, then its estimate of the decline), not the tick's observation count
the aggregator hands its detector (probe: `/metrics` showed
`llm_oncall_layer_value{metric="quality"}` as 0 and 1 beside the score means)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from config.settings import Settings
from daemon.exposition import PipelineCollector
from daemon.ingest.events import parse_ndjson
from daemon.pipeline import Pipeline
from detectors.defaults import QUALITY_METRIC
from tests.daemon.test_quality_replay import DECLINE_AT, DECLINE_END, write_events


def _layer_value(pipe: Pipeline, now: float) -> float:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(PipelineCollector(lambda: pipe, {}, lambda: now))
    text = generate_latest(registry).decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "llm_oncall_layer_value" and s.labels["metric"] == QUALITY_METRIC:
                return float(s.value)
    raise AssertionError("no layer value for quality")


def test_the_fused_quality_layer_value_is_relative_quality(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write_events(path)
    events, rejected = parse_ndjson(path.read_bytes())
    assert not rejected
    pipe = Pipeline(Settings())
    seen: dict[str, list[float]] = {"before": [], "declined": []}
    counts: list[int | None] = []
    fired = False
    tick = 15.0
    now = events[0].ts - events[0].ts % tick + tick
    i = 0
    while i < len(events) and now < DECLINE_END:
        j = i
        while j < len(events) and events[j].ts < now:
            j += 1
        out = pipe.ingest(events[i:j], now=now)
        out.extend(pipe.advance(now))
        i = j
        fired |= any(s.metric == QUALITY_METRIC and s.state == "firing" for s in out.signals)
        sample = pipe.latest.get(("bot", QUALITY_METRIC, ""))
        if sample is not None and now < DECLINE_AT:
            seen["before"].append(sample.value)
        elif sample is not None and fired:
            seen["declined"].append(sample.value)
            counts.append(sample.n)
        now += tick
    assert fired
    assert seen["before"] and set(seen["before"]) == {1.0}  # counts of 0, 1, 2... before
    assert seen["declined"] and 0.75 < min(seen["declined"]) < 0.97
    assert _layer_value(pipe, now) == pipe.latest[("bot", QUALITY_METRIC, "")].value
    # While it fires, n is the scores the estimate rests on (what a page quotes beside it,
    # "over 412 scores"), not the tick's one or two (probe: "over 1 scores").
    assert all(c is not None and c >= 30 for c in counts)
