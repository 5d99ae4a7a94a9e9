"""PagerDuty Events API v2 sender: the primary receiver.

`POST {url}/v2/enqueue`; 202 accepted, 400 invalid (dead letter), 429 / 5xx / network errors
retried. Limits from PagerDuty's docs: routing_key is the 32-character integration key,
dedup_key ≤ 255 characters, payload.summary ≤ 1024 characters, whole event ≤ 512 KB,
about 120 events a minute per routing key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import aiohttp

from daemon.notify import render
from daemon.notify.http import cap_key, dumps, request, truncate
from daemon.notify.model import DeliveryResult, Notification
from daemon.notify.shrink import shrink_to_fit

__all__ = ["MAX_EVENT_BYTES", "PagerDutySender", "build_event"]

MAX_EVENT_BYTES = 512 * 1000  # PagerDuty says 512 KB; stay under either reading of "KB".
MAX_SUMMARY = 1024
MAX_DEDUP_KEY = 255
SEVERITY = {"critical": "critical", "warning": "warning", "watch": "info"}


def _links(n: Notification, public_url: str | None) -> list[dict[str, str]]:
    links = []
    rb = n.runbook or {}
    for key, text in (("url", "Runbook"), ("dashboard", "Dashboard")):
        href = rb.get(key)
        if isinstance(href, str) and href.startswith(("http://", "https://")):
            links.append({"href": href, "text": text})
    # The incident's page (summary, charts, Acknowledge / Resolve), not its JSON record: the
    # link is for the person holding the phone, and a browser that needs the read token is
    # sent to /login from the page, where the API would answer 401. A test page has no
    # incident to show (its id is not in the correlator): no link rather than a 404.
    if public_url and not n.incident.get("test"):
        links.append(
            {
                "href": f"{public_url.rstrip('/')}/incidents/{n.incident_id}",
                "text": "Incident in llm-oncall",
            }
        )
    return links


def build_event(n: Notification, routing_key: str, public_url: str | None = None) -> dict[str, Any]:
    """The Events API v2 body for a notification, within PagerDuty's limits."""
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": n.action,
        "dedup_key": cap_key(n.dedup_key, MAX_DEDUP_KEY),
    }
    if n.action != "trigger":
        return event  # acknowledge / resolve carry only the key and the action
    inc = n.incident
    feature = str(inc.get("feature") or "unknown")
    lead = render.lead_signal(inc)
    payload: dict[str, Any] = {
        "summary": truncate(render.title(n), MAX_SUMMARY),
        "source": truncate(f"llm-oncall/{feature}", 255),
        "severity": SEVERITY.get(str(inc.get("severity")), "error"),
        "component": feature,
        "group": str(inc.get("domain") or "unknown"),
        "custom_details": render.details(n),
    }
    if inc.get("opened_at"):
        payload["timestamp"] = str(inc["opened_at"])
    if lead is not None and lead.get("layer"):
        payload["class"] = str(lead["layer"])
    event["payload"] = payload
    event["client"] = "llm-oncall"
    if public_url:
        event["client_url"] = public_url
    links = _links(n, public_url)
    if links:
        event["links"] = links
    # Over 512 KB PagerDuty answers 400 (a dead letter): shrink instead, least useful first.
    return shrink_to_fit(event, payload["custom_details"], MAX_EVENT_BYTES, keep=("incident_id",))


class PagerDutySender:
    def __init__(
        self,
        name: str,
        routing_key: str,
        url: str = "https://events.pagerduty.com",
        *,
        rate_limit_per_min: float | None = 120.0,
        public_url: str | None = None,
        timeout_s: float = 10.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self._key = routing_key
        self.endpoint = url.rstrip("/") + "/v2/enqueue"
        self.rate_limit_per_min = rate_limit_per_min
        self.public_url = public_url
        self.timeout_s = timeout_s
        self._wall_clock = wall_clock

    def __repr__(self) -> str:  # never the key
        return f"PagerDutySender(name={self.name!r}, endpoint={self.endpoint!r})"

    async def send(self, session: aiohttp.ClientSession, n: Notification) -> DeliveryResult:
        body = dumps(build_event(n, self._key, self.public_url))
        result, _ = await request(
            session,
            "POST",
            self.endpoint,
            body=body,
            headers={"Content-Type": "application/json"},
            timeout_s=self.timeout_s,
            secrets=[self._key],
            wall_clock=self._wall_clock,
        )
        return result
