"""Prometheus metrics for paging, registered on the registry the app passes in.

`llm_oncall_notifications_total{receiver,action,result}` counts notifications (outbox rows),
not attempts:
  - `sent`: delivered (whether or not it needed retries);
  - `dead`: became a dead letter (4xx other than 408/429, max attempts, max age, or moved to
    a fallback receiver: the fallback's own row is counted under the fallback's name);
  - `retried`: needed at least one retry, counted once, when its first retry is scheduled.
    It overlaps with sent/dead: `sent / (sent + dead)` is the delivery ratio, and
    `retried / (sent + dead)` the share that did not go through first time.
Attempts (every HTTP try) are in `llm_oncall_notification_attempts_total{receiver,outcome}`
with outcome ok|retry|rate_limited|timeout|network|rejected|expired.

prometheus_client would also export a `<name>_created` gauge (a Unix timestamp, with the
counter's HELP text) beside every counter and histogram child. In the text format /metrics
serves, those are separate gauge families that no rule or dashboard reads, doubling these
families' series: `llm_oncall_notifications_created` showed up as a "Notifications by final
result" gauge of value 1.79e9. Turned off, as the client's README suggests for text-format
exporters (`PROMETHEUS_DISABLE_CREATED_SERIES`).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

__all__ = ["NotifyMetrics"]

_DELIVERY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 86400)


class NotifyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # process-wide; module doc
        self.notifications = Counter(
            "llm_oncall_notifications",
            "Notifications by final result (sent, dead) and whether they needed a retry.",
            ["receiver", "action", "result"],
            registry=registry,
        )
        self.attempts = Counter(
            "llm_oncall_notification_attempts",
            "Delivery attempts by outcome.",
            ["receiver", "outcome"],
            registry=registry,
        )
        self.outbox_depth = Gauge(
            "llm_oncall_outbox_depth",
            "Pending outbox rows by receiver.",
            ["receiver"],
            registry=registry,
        )
        self.oldest_pending_age = Gauge(
            "llm_oncall_outbox_oldest_pending_age_seconds",
            "Age of the oldest undelivered notification (0 when none).",
            registry=registry,
        )
        self.delivery_seconds = Histogram(
            "llm_oncall_notification_delivery_seconds",
            "Time from enqueue to the receiver's success response.",
            ["receiver"],
            buckets=_DELIVERY_BUCKETS,
            registry=registry,
        )

    def set_outbox(
        self, depth: dict[str, int], receivers: Iterable[str], oldest_age: float | None
    ) -> None:
        for name in set(receivers) | set(depth):
            self.outbox_depth.labels(receiver=name).set(depth.get(name, 0))
        self.oldest_pending_age.set(max(0.0, oldest_age or 0.0))
