"""Opsgenie Alert API v2 sender.

Atlassian stopped selling Opsgenie on 2025-06-04 and ends support (and the REST API) on
2027-04-05: PagerDuty is the primary receiver; use this for existing Opsgenie setups.

Create: `POST {url}/v2/alerts` with `Authorization: GenieKey <key>`; close / acknowledge:
`POST {url}/v2/alerts/{alias}/close?identifierType=alias`. Requests are processed
asynchronously (202); with `confirm` we poll `GET /v2/alerts/requests/{requestId}`.
Limits from Opsgenie's docs: message 130, alias 512 (we cap at 250 as some clients do),
description 15000, details (string map) 8000 in total, tags 20 × 50, entity 512,
source / user 100, note 25000 characters.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from daemon.notify import render
from daemon.notify.http import cap_key, dumps, request, truncate
from daemon.notify.model import DeliveryResult, Notification

__all__ = ["OpsgenieSender", "build_alert", "build_close"]

MAX_MESSAGE = 130
MAX_ALIAS = 250
MAX_DESCRIPTION = 15000
MAX_DETAILS_TOTAL = 8000
MAX_TAGS = 20
MAX_TAG = 50
PRIORITY = {"critical": "P1", "warning": "P3", "watch": "P5"}
SOURCE = "llm-oncall"


def alias_of(n: Notification) -> str:
    return cap_key(n.dedup_key, MAX_ALIAS)


def _details(n: Notification) -> dict[str, str]:
    """A string→string map, ≤ 8000 characters in total (keys + values)."""
    inc = n.incident
    lead = render.lead_signal(inc)
    candidates: list[tuple[str, str]] = [
        ("incident_id", n.incident_id),
        ("feature", str(inc.get("feature"))),
        ("severity", str(inc.get("severity"))),
        ("domain", str(inc.get("domain"))),
        ("opened_at", str(inc.get("opened_at"))),
        ("started_at", str(inc.get("started_at") or inc.get("opened_at"))),
    ]
    if inc.get("flapping"):
        candidates.append(("flapping", "true"))
    if lead is not None:
        candidates.append(("lead_signal", render.signal_line(lead)))
    for i, t in enumerate(x for x in inc.get("triage") or [] if isinstance(x, dict)):
        candidates.append((f"triage_{i + 1}", render.triage_line(t)))
    for i, a in enumerate(x for x in inc.get("attribution") or [] if isinstance(x, dict)):
        candidates.append((f"attribution_{i + 1}", render.attribution_line(a)))
    changes = [x for x in inc.get("changes") or [] if isinstance(x, dict)]
    if changes:
        candidates.append(("last_change_before_start", render.change_line(changes[0])))
    for k, v in (n.runbook or {}).items():
        if v:
            candidates.append((f"runbook_{k}", str(v)))
    out: dict[str, str] = {}
    used = 0
    for k, v in candidates:
        v = truncate(v, 1000)
        if used + len(k) + len(v) > MAX_DETAILS_TOTAL:
            continue
        out[k] = v
        used += len(k) + len(v)
    return out


def _tags(n: Notification, extra: Sequence[str]) -> list[str]:
    inc = n.incident
    tags: list[str] = []
    for t in [*extra, "llm-oncall", str(inc.get("severity")), str(inc.get("domain"))]:
        t = truncate(t, MAX_TAG, "")
        if t and t not in tags:
            tags.append(t)
    return tags[:MAX_TAGS]


def build_alert(
    n: Notification, responders: Sequence[dict[str, str]] = (), tags: Sequence[str] = ()
) -> dict[str, Any]:
    inc = n.incident
    body: dict[str, Any] = {
        "message": truncate(render.title(n), MAX_MESSAGE),
        "alias": alias_of(n),
        "description": truncate("\n".join(render.lines(n)), MAX_DESCRIPTION),
        "details": _details(n),
        "tags": _tags(n, tags),
        "entity": truncate(str(inc.get("feature") or "unknown"), 512),
        "priority": PRIORITY.get(str(inc.get("severity")), "P3"),
        "source": SOURCE,
    }
    if responders:
        body["responders"] = list(responders)[:50]
    return body


def build_close(n: Notification) -> dict[str, Any]:
    verb = "resolved" if n.action == "resolve" else "acknowledged"
    note = f"llm-oncall: incident {n.incident_id} {verb}"
    # Done by hand through llm-oncall (issue 13): say who, and why, in Opsgenie's log too.
    human = n.incident.get("acknowledged" if n.action == "acknowledge" else "resolved_by")
    user = SOURCE
    if isinstance(human, dict) and human.get("by"):
        user = str(human["by"])
        note += f" by {user}" + (f": {human['comment']}" if human.get("comment") else "")
    return {"source": SOURCE, "user": truncate(user, 100), "note": truncate(note, 25000)}


class OpsgenieSender:
    def __init__(
        self,
        name: str,
        api_key: str,
        url: str = "https://api.opsgenie.com",
        *,
        responders: Sequence[dict[str, str]] = (),
        tags: Sequence[str] = (),
        confirm: bool = False,
        confirm_polls: int = 3,
        confirm_interval_s: float = 1.0,
        rate_limit_per_min: float | None = None,
        timeout_s: float = 10.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self._key = api_key
        self.base = url.rstrip("/")
        self.responders = list(responders)
        self.tags = list(tags)
        self.confirm = confirm
        self.confirm_polls = confirm_polls
        self.confirm_interval_s = confirm_interval_s
        self.rate_limit_per_min = rate_limit_per_min
        self.timeout_s = timeout_s
        self._sleep = sleep
        self._wall_clock = wall_clock

    def __repr__(self) -> str:
        return f"OpsgenieSender(name={self.name!r}, url={self.base!r})"

    def _headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", "Authorization": f"GenieKey {self._key}"}

    async def send(self, session: aiohttp.ClientSession, n: Notification) -> DeliveryResult:
        if n.action == "trigger":
            url = f"{self.base}/v2/alerts"
            body = build_alert(n, self.responders, self.tags)
        else:
            verb = "close" if n.action == "resolve" else "acknowledge"
            url = f"{self.base}/v2/alerts/{quote(alias_of(n), safe='')}/{verb}?identifierType=alias"
            body = build_close(n)
        result, raw = await request(
            session,
            "POST",
            url,
            body=dumps(body),
            headers=self._headers(),
            timeout_s=self.timeout_s,
            secrets=[self._key],
            wall_clock=self._wall_clock,
        )
        if not result.ok or not self.confirm:
            return result
        try:
            request_id = orjson.loads(raw).get("requestId")
        except (orjson.JSONDecodeError, AttributeError):
            request_id = None
        if not request_id:
            return result
        return await self._confirm(session, n, str(request_id), result)

    async def _confirm(
        self,
        session: aiohttp.ClientSession,
        n: Notification,
        request_id: str,
        accepted: DeliveryResult,
    ) -> DeliveryResult:
        """Poll the request status. isSuccess false: a failed create is retried; a failed
        close/acknowledge (e.g. "Alert does not exist") is a dead letter. Still unknown after
        the polls: accepted (Opsgenie took it with 202)."""
        url = f"{self.base}/v2/alerts/requests/{quote(request_id, safe='')}"
        for _ in range(self.confirm_polls):
            await self._sleep(self.confirm_interval_s)
            res, raw = await request(
                session,
                "GET",
                url,
                body=None,
                headers=self._headers(),
                timeout_s=self.timeout_s,
                secrets=[self._key],
                wall_clock=self._wall_clock,
            )
            if not res.ok:
                continue  # 404 until processed
            try:
                data = orjson.loads(raw).get("data") or {}
            except (orjson.JSONDecodeError, AttributeError):
                continue
            if data.get("isSuccess") is True:
                return accepted
            if data.get("isSuccess") is False:
                status = truncate(str(data.get("status") or "request failed"), 200)
                return DeliveryResult(
                    ok=False,
                    retry=n.action == "trigger",
                    status=accepted.status,
                    error=f"Opsgenie request {request_id} failed: {status}",
                )
        return accepted
