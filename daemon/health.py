"""`/metrics` for the daemon's own health: failures caught inside ticks, by stage.

Kept apart from the pipeline's traffic metrics (`exposition.py`): these say whether the
daemon is doing its job, not what the traffic looks like. Every stage is exported from the
start at 0, so `increase(llm_oncall_tick_errors_total[5m]) > 0` works on the first failure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, Metric
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
            "correlator; stale, correlator_tick, expire). The failing feature or series is "
            "skipped for that tick and logged (tick_error); everything else keeps running.",
            labels=["stage"],
        )
        for stage, n in self._pipeline().errors.by_stage.items():
            errors.add_metric([stage], n)
        yield errors
