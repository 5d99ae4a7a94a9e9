"""Build one sender per configured receiver."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from config.receivers import (
    LogReceiver,
    OpsgenieReceiver,
    PagerDutyReceiver,
    SlackReceiver,
    WebhookReceiver,
    effective_receivers,
)
from daemon.notify.http import Sender
from daemon.notify.log import LogSender
from daemon.notify.opsgenie import OpsgenieSender
from daemon.notify.pagerduty import PagerDutySender
from daemon.notify.slack import SlackSender
from daemon.notify.webhook import WebhookSender

__all__ = ["build_senders"]


def build_senders(
    receivers: Sequence[Any],
    *,
    log: Any,
    public_url: str | None = None,
    timeout_s: float = 10.0,
    wall_clock: Callable[[], float] = time.time,
) -> dict[str, Sender]:
    """name → sender; with no receivers configured, the built-in log receiver "log"."""
    out: dict[str, Sender] = {}
    for r in effective_receivers(receivers):
        sender: Sender
        if isinstance(r, PagerDutyReceiver):
            sender = PagerDutySender(
                r.name,
                r.secret(),
                r.url,
                rate_limit_per_min=r.rate_limit_per_min,
                public_url=public_url,
                timeout_s=timeout_s,
                wall_clock=wall_clock,
            )
        elif isinstance(r, OpsgenieReceiver):
            sender = OpsgenieSender(
                r.name,
                r.secret(),
                r.base_url,
                responders=[x.to_api() for x in r.responders],
                tags=r.tags,
                confirm=r.confirm,
                rate_limit_per_min=r.rate_limit_per_min,
                timeout_s=timeout_s,
                wall_clock=wall_clock,
            )
        elif isinstance(r, SlackReceiver):
            sender = SlackSender(
                r.name,
                r.secret(),
                rate_limit_per_min=r.rate_limit_per_min,
                timeout_s=timeout_s,
                wall_clock=wall_clock,
            )
        elif isinstance(r, WebhookReceiver):
            sender = WebhookSender(
                r.name,
                r.url,
                hmac_secret=r.hmac_secret.get_secret_value() if r.hmac_secret else None,
                headers={k: v.get_secret_value() for k, v in r.headers.items()},
                rate_limit_per_min=r.rate_limit_per_min,
                max_body_bytes=r.max_body_bytes,
                timeout_s=timeout_s,
                wall_clock=wall_clock,
            )
        elif isinstance(r, LogReceiver):
            sender = LogSender(r.name, log)
        else:  # pragma: no cover - the discriminated union is closed
            raise TypeError(f"unknown receiver type {type(r).__name__}")
        out[r.name] = sender
    return out
