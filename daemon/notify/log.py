"""The log receiver: the page goes to the daemon's structured log (embedded default)."""

from __future__ import annotations

from typing import Any

import aiohttp

from daemon.notify import render
from daemon.notify.model import DeliveryResult, Notification

__all__ = ["LogSender"]


class LogSender:
    rate_limit_per_min: float | None = None

    def __init__(self, name: str, log: Any) -> None:
        self.name = name
        self.log = log

    async def send(self, session: aiohttp.ClientSession, n: Notification) -> DeliveryResult:
        inc = n.incident
        self.log.warning(
            "page",
            receiver=self.name,
            action=n.action,
            incident_id=n.incident_id,
            dedup_key=n.dedup_key,
            feature=inc.get("feature"),
            severity=inc.get("severity"),
            domain=inc.get("domain"),
            summary=render.title(n),
            runbook=(n.runbook or {}).get("url"),
        )
        return DeliveryResult.success()
