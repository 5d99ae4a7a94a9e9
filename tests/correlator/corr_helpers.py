"""Builders for correlator tests (imported by the test modules in this folder)."""

from __future__ import annotations

from collections.abc import Mapping

from correlator import CorrelationPolicy, Correlator, IncidentUpdate
from correlator.records import FeatureContext, LabelCounts, MetricSnapshot, Signal
from detectors.base import Direction, Layer

T0 = 1_700_000_000.0
FEATURE = "support-bot"

LAYER_OF: dict[str, Layer] = {
    "latency_p50_ms": "infra",
    "latency_p95_ms": "infra",
    "latency_p99_ms": "infra",
    "output_tokens_per_request": "infra",
    "cost_per_request_usd": "infra",
    "throughput_rpm": "infra",
    "error_rate": "infra",
    "rate_limited_rate": "api",
    "provider_error_rate": "api",
    "auth_failure_rate": "api",
    "availability": "api",
    "retry_rate": "api",
    "refusal_rate": "behavioral",
    "format_compliance_rate": "behavioral",
    "output_length_mean": "behavioral",
    "score:faithfulness": "quality",
    "score:relevance": "quality",
}

DEFAULTS: dict[str, tuple[float, float, Direction]] = {
    "latency_p95_ms": (4200.0, 1100.0, Direction.UP),
    "latency_p99_ms": (6000.0, 1800.0, Direction.UP),
    "refusal_rate": (0.12, 0.03, Direction.UP),
    "score:faithfulness": (0.71, 0.86, Direction.DOWN),
    "score:relevance": (0.6, 0.8, Direction.DOWN),
    "rate_limited_rate": (0.31, 0.004, Direction.UP),
    "availability": (0.5, 0.999, Direction.DOWN),
    "output_tokens_per_request": (900.0, 300.0, Direction.UP),
}


def sig(
    metric: str,
    ts: float,
    state: str = "firing",
    *,
    feature: str = FEATURE,
    value: float | None = None,
    baseline: float | None = None,
    score: float = 4.0,
    n: int | None = None,
    series: str = "",
    detector: str = "rate",
    page_alone: bool = False,
) -> Signal:
    dv, db, dd = DEFAULTS.get(metric, (2.0, 1.0, Direction.UP))
    return Signal(
        ts=ts,
        feature=feature,
        metric=metric,
        layer=LAYER_OF.get(metric, "infra"),
        detector=detector,
        state="firing" if state == "firing" else "cleared",
        value=dv if value is None else value,
        baseline=db if baseline is None else baseline,
        score=score,
        direction=dd,
        series=series,
        n=n,
        page_alone=page_alone,
    )


def ctx(
    feature: str = FEATURE,
    metrics: Mapping[str, tuple[float, float | None, int | None]] | None = None,
    bad: LabelCounts | None = None,
    all_: LabelCounts | None = None,
    base: LabelCounts | None = None,
) -> FeatureContext:
    snaps = {
        name: MetricSnapshot(name, LAYER_OF.get(name, "infra"), v, b, n)
        for name, (v, b, n) in (metrics or {}).items()
    }
    # Anomalous traffic is part of all traffic: without `all_`, the bad events are all of it.
    after = all_ if all_ is not None else (bad or {})
    return FeatureContext(feature, snaps, bad or {}, after, base or {})


def no_ctx(feature: str, onset: float) -> FeatureContext:
    return ctx(feature)


def triggers(updates: list[IncidentUpdate]) -> list[IncidentUpdate]:
    return [u for u in updates if u.notify == "trigger"]


def run_ticks(
    corr: Correlator, start: float, end: float, step: float = 60.0
) -> list[IncidentUpdate]:
    out: list[IncidentUpdate] = []
    t = start
    while t <= end:
        out += corr.tick(t, no_ctx)
        t += step
    return out


def policy(**kw: float) -> CorrelationPolicy:
    return CorrelationPolicy(**kw)  # type: ignore[arg-type]
