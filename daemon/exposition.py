"""`/metrics`: the pipeline's counters rendered at scrape time.

The hot path counts into plain dicts (a `Counter.labels().inc()` per field per event would
cost more than the whole aggregation), and this collector turns them into metric families
when Prometheus scrapes. Raw counters and histograms are what a central Prometheus sums
across pods; the derived layer values and detector states are gauges for dashboards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from daemon.aggregator import GEN_AI_DURATION_BUCKETS, SCORE_BUCKETS

if TYPE_CHECKING:
    from daemon.pipeline import Pipeline

P = "llm_oncall_"


def _buckets(bounds: tuple[float, ...], hist: list[float]) -> list[tuple[str, float]]:
    """Per-bucket counts (last two slots: overflow count, sum) → cumulative Prometheus form."""
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
            "LLM calls seen, by feature, provider, model and status class.",
            labels=["feature", "provider", "model", "status_class"],
        )
        for key, n in agg.requests_total.items():
            req.add_metric(list(key), n)
        yield req

        dur = HistogramMetricFamily(
            P + "llm_request_duration_seconds",
            "Latency of successful LLM calls (OpenTelemetry gen_ai duration buckets).",
            labels=["feature", "provider", "model"],
        )
        for hkey, hist in agg.duration_hist.items():
            dur.add_metric(list(hkey), _buckets(GEN_AI_DURATION_BUCKETS, hist), hist[-1])
        yield dur

        tok = CounterMetricFamily(
            P + "llm_tokens",
            "Tokens used, by type (input, output).",
            labels=["feature", "provider", "model", "type"],
        )
        for key, n in agg.tokens_total.items():
            tok.add_metric(list(key), n)
        yield tok

        cost = CounterMetricFamily(
            P + "llm_cost_usd", "Cost of LLM calls in US dollars.",
            labels=["feature", "provider", "model"],
        )  # fmt: skip
        for ckey, v in agg.cost_total.items():
            cost.add_metric(list(ckey), v)
        yield cost

        for name, help_text, data in (
            ("llm_refusals", "Calls the model refused.", agg.refusals_total),
            ("llm_format_failures", "Calls whose output failed the format check.",
             agg.format_failures_total),
            ("llm_retries", "Retries reported by callers.", agg.retries_total),
        ):  # fmt: skip
            fam = CounterMetricFamily(P + name, help_text, labels=["feature"])
            for feature, n in data.items():
                fam.add_metric([feature], n)
            yield fam

        score = HistogramMetricFamily(
            P + "score", "Evaluation scores by feature and score name.",
            labels=["feature", "name"],
        )  # fmt: skip
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
            "Accepted events not used by the pipeline, by reason (late, future, feature_limit).",
            labels=["reason"],
        )
        for reason, n in pipe.counters.unused.items():
            unused.add_metric([reason], n)
        yield unused

        yield CounterMetricFamily(P + "ticks", "Evaluation ticks run.", value=pipe.counters.ticks)
        if self._clock is not None and pipe.counters.last_tick_at is not None:
            yield GaugeMetricFamily(
                P + "pipeline_lag_seconds",
                "Seconds between now and the end of the last evaluated window.",
                value=max(0.0, self._clock() - pipe.counters.last_tick_at),
            )

        stats = pipe.correlator.stats()
        inc = GaugeMetricFamily(
            P + "incidents_open", "Open incidents by severity and domain.",
            labels=["severity", "domain"],
        )  # fmt: skip
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
