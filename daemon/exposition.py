"""`/metrics`: the pipeline's counters rendered at scrape time.

The hot path counts into plain dicts (a `Counter.labels().inc()` per field per event would
cost more than the whole aggregation), and this collector turns them into metric families
when Prometheus scrapes. Raw counters and histograms are what a central Prometheus sums
across pods; the derived layer values and detector states are gauges for dashboards.

Every label set here comes from a capped dimension (daemon.aggregator.Limits), so the size of
a scrape is bounded; `render` still formats the text off the event loop, because at the caps
formatting takes long enough (~1 s on a busy 2-core VM) to stall ingest and health checks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, cast

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from daemon.aggregator import CAPPED_DIMENSIONS, GEN_AI_DURATION_BUCKETS, SCORE_BUCKETS

if TYPE_CHECKING:
    from daemon.pipeline import Pipeline

P = "llm_oncall_"


def _buckets(bounds: tuple[float, ...], hist: list[float] | list[int]) -> list[tuple[str, float]]:
    """Per-bucket counts (the slot after the bounds: overflow) → cumulative Prometheus form."""
    out: list[tuple[str, float]] = []
    running = 0.0
    for bound, count in zip(bounds, hist, strict=False):
        running += count
        out.append((repr(float(bound)), running))
    running += hist[len(bounds)]
    out.append(("+Inf", running))
    return out


class PipelineCollector(Collector):
    def __init__(
        self,
        pipeline: Callable[[], Pipeline],
        rejected: dict[str, int],
        clock: Callable[[], float] | None = None,
    ) -> None:
        # A callable, because restore may swap the pipeline's parts after registration.
        self._pipeline = pipeline
        self._rejected = rejected
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        pipe = self._pipeline()
        agg = pipe.aggregator

        req = CounterMetricFamily(
            P + "llm_requests",
            "LLM calls seen, by feature, provider, model and status class "
            "(2xx, 429, auth, 4xx, 5xx, error, unknown).",
            labels=["feature", "provider", "model", "status_class"],
        )
        dur = HistogramMetricFamily(
            P + "llm_request_duration_seconds",
            "Latency of successful LLM calls (OpenTelemetry gen_ai duration buckets).",
            labels=["feature", "provider", "model"],
        )
        tok = CounterMetricFamily(
            P + "llm_tokens",
            "Tokens used, by type (input, output).",
            labels=["feature", "provider", "model", "type"],
        )
        cost = CounterMetricFamily(
            P + "llm_cost_usd",
            "Cost of LLM calls in US dollars.",
            labels=["feature", "provider", "model"],
        )
        per_feature: dict[str, list[int]] = {}  # feature → [refusals, format failures, retries]
        for key, tot in agg.totals.items():
            labels = list(key)
            for status_class, n in tot.requests.items():
                req.add_metric([*labels, status_class], n)
            if sum(tot.duration):
                dur.add_metric(
                    labels, _buckets(GEN_AI_DURATION_BUCKETS, tot.duration), tot.duration_sum
                )
            tok.add_metric([*labels, "input"], tot.input_tokens)
            tok.add_metric([*labels, "output"], tot.output_tokens)
            cost.add_metric(labels, tot.cost_usd)
            counts = per_feature.setdefault(key[0], [0, 0, 0])
            counts[0] += tot.refusals
            counts[1] += tot.format_failures
            counts[2] += tot.retries
        yield from (req, dur, tok, cost)

        refusals = CounterMetricFamily(
            P + "llm_refusals", "Calls the model refused.", labels=["feature"]
        )
        format_failures = CounterMetricFamily(
            P + "llm_format_failures",
            "Calls whose output failed the format check.",
            labels=["feature"],
        )
        retries = CounterMetricFamily(
            P + "llm_retries", "Retries reported by callers.", labels=["feature"]
        )
        for feature, (n_refused, n_format, n_retries) in per_feature.items():
            refusals.add_metric([feature], n_refused)
            format_failures.add_metric([feature], n_format)
            retries.add_metric([feature], n_retries)
        yield from (refusals, format_failures, retries)

        score = HistogramMetricFamily(
            P + "score",
            "Evaluation scores by feature and score name.",
            labels=["feature", "name"],
        )
        for skey, hist in agg.score_hist.items():
            score.add_metric(list(skey), _buckets(SCORE_BUCKETS, hist), hist[-1])
        yield score

        layer = GaugeMetricFamily(
            P + "layer_value",
            "Current window value of each derived metric (latency in ms, rates as 0-1).",
            labels=["feature", "layer", "metric", "series"],
        )
        for (feature, metric, series), sample in pipe.latest.items():
            layer.add_metric([feature, sample.layer, metric, series], sample.value)
        yield layer

        firing = GaugeMetricFamily(
            P + "detector_firing",
            "1 while a detector is firing on a series.",
            labels=["feature", "metric", "series", "detector"],
        )
        for (feature, metric, series), kind, is_firing in pipe.detector_states():
            firing.add_metric([feature, metric, series, kind], 1.0 if is_firing else 0.0)
        yield firing

        acc = CounterMetricFamily(
            P + "events_accepted", "Events accepted, by type.", labels=["type"]
        )
        for typ, n in pipe.counters.accepted.items():
            acc.add_metric([typ], n)
        yield acc

        rej = CounterMetricFamily(
            P + "events_rejected",
            "Events or bodies rejected at ingest, by reason.",
            labels=["reason"],
        )
        for reason, n in self._rejected.items():
            rej.add_metric([reason], n)
        yield rej

        unused = CounterMetricFamily(
            P + "events_unused",
            "Accepted events not used by the pipeline, by reason (late, future, "
            "feature_limit, score_name_limit, metric_name_limit, series_limit, not_llm_span).",
            labels=["reason"],
        )
        for reason, n in pipe.counters.unused.items():
            unused.add_metric([reason], n)
        yield unused

        capped = CounterMetricFamily(
            P + "cardinality_capped",
            "Events that hit a cardinality cap, by dimension: the value was folded into "
            "__other__, cut, or the event counted in events_unused (docs/ingest.md).",
            labels=["dimension"],
        )
        for dim in CAPPED_DIMENSIONS:
            capped.add_metric([dim], agg.capped.get(dim, 0))
        yield capped
        limit = GaugeMetricFamily(
            P + "cardinality_limit",
            "The configured cardinality caps (ingest.max_*), by limit.",
            labels=["limit"],
        )
        for name, value in agg.limits.as_dict().items():
            limit.add_metric([name], value)
        yield limit

        yield CounterMetricFamily(P + "ticks", "Evaluation ticks run.", value=pipe.counters.ticks)
        if self._clock is not None and pipe.counters.last_tick_at is not None:
            yield GaugeMetricFamily(
                P + "pipeline_lag_seconds",
                "Seconds between now and the end of the last evaluated window.",
                value=max(0.0, self._clock() - pipe.counters.last_tick_at),
            )

        stats = pipe.correlator.stats()
        inc = GaugeMetricFamily(
            P + "incidents_open",
            "Open incidents by severity and domain.",
            labels=["severity", "domain"],
        )
        for (sev, dom), n in stats.open_by_severity_domain.items():
            inc.add_metric([sev, dom], n)
        yield inc
        act = GaugeMetricFamily(P + "signals_active", "Signals firing, by layer.", labels=["layer"])
        for lay, n in stats.active_signals_by_layer.items():
            act.add_metric([lay], n)
        yield act
        muted = GaugeMetricFamily(
            P + "incidents_muted", "Open incidents muted, by reason.", labels=["reason"]
        )
        for reason, n in stats.muted_by_reason.items():
            muted.add_metric([reason], n)
        yield muted


class _Collected:
    """Metric families already collected, in the shape `generate_latest` reads."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


async def render(registry: CollectorRegistry, lock: asyncio.Lock) -> bytes:
    """The /metrics text, without holding the event loop for the whole render.

    Collecting reads the pipeline's live dicts, so it runs on the loop (a few percent of the
    render); formatting the text, the bulk of the time, runs in a worker thread that only
    reads the collected families, with the GIL switching back to the loop every few ms.
    The lock lets one render run at a time, so a client hammering /metrics costs one thread.
    """
    async with lock:
        families = _Collected(registry.collect())
        return await asyncio.to_thread(generate_latest, cast(CollectorRegistry, families))
