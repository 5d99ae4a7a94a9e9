"""`/metrics` for the daemon's own health: failures caught inside ticks, by stage, and the
outcome of config reloads.

Kept apart from the pipeline's traffic metrics (`exposition.py`): these say whether the
daemon is doing its job, not what the traffic looks like. Every stage is exported from the
start at 0, so `increase(llm_oncall_tick_errors_total[5m]) > 0` works on the first failure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from daemon.pipeline import Pipeline

P = "llm_oncall_"


class HealthCollector(Collector):
    def __init__(self, pipeline: Callable[[], Pipeline]) -> None:
        self._pipeline = pipeline

    def collect(self) -> Iterator[Metric]:
        errors = CounterMetricFamily(
            P + "tick_errors",
            "Failures caught inside evaluation ticks, by stage (evaluate: computing a "
            "feature's window values; detect: a detector update; correlate: a signal into the "
            "correlator; stale, correlator_tick, expire; start_estimate, attribution: an "
            "incident's enrichment, paged without it). The failing feature or series is "
            "skipped for that tick and logged (tick_error); everything else keeps running.",
            labels=["stage"],
        )
        for stage, n in self._pipeline().errors.by_stage.items():
            errors.add_metric([stage], n)
        yield errors


class ReloadCollector(Collector):
    """Prometheus' own two reload series under our prefix, so the same alert works
    (`llm_oncall_config_last_reload_successful == 0`). Start-up counts as a successful load.
    """

    def __init__(self, now: float) -> None:
        self.successful = True
        self.success_ts = now

    def record(self, ok: bool, now: float) -> None:
        self.successful = ok
        if ok:
            self.success_ts = now

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            P + "config_last_reload_successful",
            "Whether the last config reload (SIGHUP or POST /-/reload) succeeded: 1, or 0 "
            "when the file did not validate and the running config stayed in force.",
            value=1 if self.successful else 0,
        )
        yield GaugeMetricFamily(
            P + "config_last_reload_success_timestamp_seconds",
            "When the config was last loaded successfully (start-up counts), Unix seconds.",
            value=self.success_ts,
        )
