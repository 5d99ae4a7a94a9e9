"""Paging: route incidents to receivers and deliver them through a durable outbox.

Flow: `Router` picks receivers for an incident → the pipeline calls `Outbox.enqueue` inside
its own SQLite transaction → `DeliveryWorker` delivers with retries, ordering, rate limits
and dead letters → one `Sender` per receiver speaks its API (PagerDuty first).
"""

from daemon.notify.http import Sender, classify_status, parse_retry_after
from daemon.notify.metrics import NotifyMetrics
from daemon.notify.model import Action, DeliveryResult, Notification
from daemon.notify.outbox import Outbox, OutboxBusy, OutboxRow
from daemon.notify.router import Router, RouteTarget
from daemon.notify.senders import build_senders
from daemon.notify.worker import DeliveryWorker

__all__ = [
    "Action",
    "DeliveryResult",
    "DeliveryWorker",
    "Notification",
    "NotifyMetrics",
    "Outbox",
    "OutboxBusy",
    "OutboxRow",
    "RouteTarget",
    "Router",
    "Sender",
    "build_senders",
    "classify_status",
    "parse_retry_after",
]
