"""`/metrics`: the pipeline's counters rendered at scrape time.

The hot path counts into plain dicts (a `Counter.labels().inc()` per field per event would
cost more than the whole aggregation), and this collector turns them into metric families
when Prometheus scrapes. Raw counters and histograms are what a central Prometheus sums
across pods; the derived layer values and detector states are gauges for dashboards.

Every label set here comes from a capped dimension (daemon.layers.aggregator.Limits), so the size of
a scrape is bounded; `render` still builds and formats the text off the event loop, because at
the caps that takes long enough (~1 s on a busy 2-core VM) to stall ingest and health checks.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from correlator.correlator import CorrelatorStats
from daemon.layers.aggregator import (
    CAPPED_DIMENSIONS,
    GEN_AI_DURATION_BUCKETS,
    SCORE_BUCKETS,
    Totals,
)
from detectors.base import Sample

if TYPE_CHECKING:
    from daemon.pipeline import Pipeline

P = "llm_oncall_"
# gzip level for /metrics: 1 gets most of the ratio on repetitive text at a fraction of 9's CPU.
GZIP_LEVEL = 1


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


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """Copies of everything /metrics reads from the pipeline, taken on the event loop in one
    go (C-speed copies, a few ms at the caps), so the families can be built and formatted in
    a worker thread while the loop keeps mutating the originals. A new family reads a new
    field here, never the live pipeline (a dict iterated off the loop while the loop inserts
    into it raises)."""

    totals: list[tuple[tuple[str, str, str], Totals]]
    score_hist: list[tuple[tuple[str, str], list[float]]]
    latest: list[tuple[tuple[str, str, str], Sample]]
    detectors: list[tuple[tuple[str, str, str], int, str, bool]]
    disarmed: list[tuple[tuple[str, str, str], int, str, str]]
    accepted: dict[str, int]
    rejected: dict[str, int]
    unused: dict[str, int]
    clamped: dict[str, int]
    backdated: dict[str, int]
    capped: dict[str, int]
    limits: dict[str, int]
    usage: dict[str, int]
    ticks: int
    lag: float | None
    stats: CorrelatorStats


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
        # A snapshot handed to the rendering thread (`render`); other threads take their own.
        self._local = threading.local()

    def snapshot(self) -> _Snapshot:
        """Everything collect() reads; call on the thread that owns the pipeline."""
        pipe = self._pipeline()
        agg = pipe.aggregator
        last = pipe.counters.last_tick_at
        lag = None
        if self._clock is not None and last is not None:
            lag = max(0.0, self._clock() - last)
        return _Snapshot(
            totals=[(k, t.copy()) for k, t in agg.totals.items()],
            score_hist=[(k, list(h)) for k, h in agg.score_hist.items()],
            latest=list(pipe.latest.items()),
            detectors=list(pipe.detector_states()),
            disarmed=list(pipe.disarmed_detectors()),
            accepted=dict(pipe.counters.accepted),
            rejected=dict(self._rejected),
            unused=dict(pipe.counters.unused),
            clamped=dict(pipe.counters.clamped),
            backdated=dict(pipe.counters.backdated),
            capped=dict(agg.capped),
            limits=agg.limits.as_dict(),
            usage=agg.usage(),
            ticks=pipe.counters.ticks,
            lag=lag,
            stats=pipe.correlator.stats(),
        )

    @contextmanager
    def frozen(self, snap: _Snapshot) -> Iterator[None]:
        """collect() on this thread reads `snap` instead of the live pipeline."""
        self._local.snap = snap
        try:
            yield
        finally:
            self._local.snap = None

    def collect(self) -> Iterator[Metric]:
        snap: _Snapshot | None = getattr(self._local, "snap", None)
        yield from self._families(snap or self.snapshot())

    def _families(self, snap: _Snapshot) -> Iterator[Metric]:
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
        for key, tot in snap.totals:
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
        for skey, hist in snap.score_hist:
            score.add_metric(list(skey), _buckets(SCORE_BUCKETS, hist), hist[-1])
        yield score

        layer = GaugeMetricFamily(
            P + "layer_value",
            "Current window value of each derived metric (latency in ms, rates as 0-1; "
            "quality: the fused verdict's relative quality, 1.0 until it fires).",
            labels=["feature", "layer", "metric", "series"],
        )
        for (feature, metric, series), sample in snap.latest:
            layer.add_metric([feature, sample.layer, metric, series], sample.value)
        yield layer

        firing = GaugeMetricFamily(
            P + "detector_firing",
            "1 while a detector is firing on a series; rule is the rule's position among the "
            "metric's rules (defaults: detectors/defaults.py; else the config's order).",
            labels=["feature", "metric", "series", "detector", "rule"],
        )
        for (feature, metric, series), rule, kind, is_firing in snap.detectors:
            firing.add_metric([feature, metric, series, kind, str(rule)], float(is_firing))
        yield firing

        disarmed = GaugeMetricFamily(
            P + "detector_disarmed",
            "1 for a default static line that disarmed itself: the series' normal traffic "
            "crossed it in its first day, so it is no budget for this feature (set one in "
            "the config; the log line default_rule_disarmed says more).",
            labels=["feature", "metric", "series", "detector", "rule"],
        )
        for (feature, metric, series), rule, kind, _why in snap.disarmed:
            disarmed.add_metric([feature, metric, series, kind, str(rule)], 1.0)
        yield disarmed

        acc = CounterMetricFamily(
            P + "events_accepted", "Events accepted, by type.", labels=["type"]
        )
        for typ, n in snap.accepted.items():
            acc.add_metric([typ], n)
        yield acc

        rej = CounterMetricFamily(
            P + "events_rejected",
            "Events or bodies rejected at ingest, by reason.",
            labels=["reason"],
        )
        for reason, n in snap.rejected.items():
            rej.add_metric([reason], n)
        yield rej

        unused = CounterMetricFamily(
            P + "events_unused",
            "Accepted events not used by the pipeline, by reason (late, future, "
            "feature_limit, score_name_limit, metric_name_limit, series_limit, not_llm_span, "
            "alert_no_feature; change_limit, change_limit_aged: change events dropped by the "
            "correlator's bounds inside or past the change lookback).",
            labels=["reason"],
        )
        for reason, n in snap.unused.items():
            unused.add_metric([reason], n)
        yield unused

        clamped = CounterMetricFamily(
            P + "alert_times_clamped",
            "Alertmanager alerts whose startsAt (firing) or endsAt (resolved) was later than "
            "their receipt, taken as received now (a sender's clock running ahead), by field.",
            labels=["field"],
        )
        for alert_field in ("startsAt", "endsAt"):
            clamped.add_metric([alert_field], snap.clamped.get(alert_field, 0))
        yield clamped

        backdated = CounterMetricFamily(
            P + "alert_times_before_window",
            "Alertmanager alerts whose startsAt (firing) or endsAt (resolved) was more than "
            "correlation.window_s before their receipt, taken as that long before it (an alert "
            "firing for long, a late resolve; the firing alert's startsAt stays in its incident "
            "as reported_onset), by field.",
            labels=["field"],
        )
        for alert_field in ("startsAt", "endsAt"):
            backdated.add_metric([alert_field], snap.backdated.get(alert_field, 0))
        yield backdated

        capped = CounterMetricFamily(
            P + "cardinality_capped",
            "Events that hit a cardinality cap, by dimension: the value was folded into "
            "__other__, cut, or the event counted in events_unused (docs/ingest.md).",
            labels=["dimension"],
        )
        for dim in CAPPED_DIMENSIONS:
            capped.add_metric([dim], snap.capped.get(dim, 0))
        yield capped
        limit = GaugeMetricFamily(
            P + "cardinality_limit",
            "The configured cardinality caps (ingest.max_*), by limit.",
            labels=["limit"],
        )
        for name, value in snap.limits.items():
            limit.add_metric([name], value)
        yield limit
        used = GaugeMetricFamily(
            P + "cardinality_used",
            "How much of the global caps is taken: features, series (provider/model/endpoint "
            "combinations + score names + metric names, all features).",
            labels=["limit"],
        )
        for name, value in snap.usage.items():
            used.add_metric([name], value)
        yield used

        yield CounterMetricFamily(P + "ticks", "Evaluation ticks run.", value=snap.ticks)
        if snap.lag is not None:
            yield GaugeMetricFamily(
                P + "pipeline_lag_seconds",
                "Seconds between now and the end of the last evaluated window.",
                value=snap.lag,
            )

        stats = snap.stats
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
        yield GaugeMetricFamily(
            P + "incidents_flapping",
            "Open incidents whose signals keep firing and clearing (a detector tuning problem:"
            " they stay open through a doubling quiet period and remind on the renotify"
            " schedule).",
            value=stats.flapping_open,
        )


async def render(
    registry: CollectorRegistry,
    collector: PipelineCollector,
    lock: asyncio.Lock,
    compress: bool = False,
) -> bytes:
    """The /metrics text, holding the event loop only for the pipeline snapshot.

    The snapshot copies what the collector reads (a few ms at the caps); building the metric
    families and formatting the text (about a second at the caps on a busy 2-core VM) run in
    a worker thread, with the GIL switching back to the loop every few ms, so ingest and
    /healthz keep answering. The other collectors of the registry (paging) are prometheus-
    client metrics, which are thread-safe. The lock lets one render run at a time, so a client
    hammering /metrics costs one thread, not one per request.

    `compress`: gzip the text in that thread too, for a scraper that accepts it (Prometheus
    always does). At the caps the text is megabytes of repetitive label sets that gzip
    shrinks about tenfold, and compressing on the loop would hold it for tens of ms.
    """
    async with lock:
        snap = collector.snapshot()

        def work() -> bytes:
            with collector.frozen(snap):
                text = generate_latest(registry)
            return gzip.compress(text, compresslevel=GZIP_LEVEL) if compress else text

        return await asyncio.to_thread(work)
