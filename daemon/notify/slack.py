"""Slack incoming-webhook sender: a readable message in mrkdwn blocks.

The webhook URL is the credential, so it is a secret and never logged. Limits from Slack's
Block Kit docs: header text 150 characters, section text 3000, ≤ 50 blocks; `text` is the
notification fallback.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from daemon.notify import render
from daemon.notify.http import dumps, request, truncate
from daemon.notify.model import DeliveryResult, Notification

__all__ = ["SlackSender", "build_message"]

_ICON = {"critical": ":rotating_light:", "warning": ":warning:", "watch": ":eyes:"}


def _esc(text: Any) -> str:
    """Slack mrkdwn control characters."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, 3000)}}


def build_message(n: Notification) -> dict[str, Any]:
    inc = n.incident
    severity = str(inc.get("severity"))
    resolved = n.action == "resolve"
    icon = ":white_check_mark:" if resolved else _ICON.get(severity, ":bell:")
    if n.action == "acknowledge":
        icon = ":eyes:"
    head = truncate(render.title(n), 150)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": head, "emoji": True}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Severity*\n{icon} {_esc(severity)}"},
                {"type": "mrkdwn", "text": f"*Domain*\n{_esc(inc.get('domain'))}"},
                {"type": "mrkdwn", "text": f"*Feature*\n`{_esc(inc.get('feature'))}`"},
                {
                    "type": "mrkdwn",
                    "text": f"*Status*\n{_esc(n.action)} ({_esc(inc.get('status'))})",
                },
            ],
        },
    ]
    if inc.get("summary"):
        blocks.append(_section(f"*Summary*\n{_esc(inc['summary'])}"))
    for key, what in (("acknowledged", "Acknowledged"), ("resolved_by", "Resolved")):
        human = inc.get(key)
        if isinstance(human, Mapping) and human.get("by"):
            note = f": {_esc(human['comment'])}" if human.get("comment") else ""
            blocks.append(
                _section(f"*{what}* by {_esc(human['by'])} at {_esc(human.get('at'))}{note}")
            )
    started = inc.get("started_at") or inc.get("opened_at")
    when = f"*Started* (estimated) {_esc(started)}, *opened* {_esc(inc.get('opened_at'))}"
    if inc.get("flapping"):
        when += "\n:warning: flapping: its signals keep firing and clearing (detector tuning)"
    blocks.append(_section(when))
    triage = [t for t in inc.get("triage") or [] if isinstance(t, Mapping)]
    if triage:
        rows = [f"• {_esc(render.triage_line(t))}" for t in triage]
        blocks.append(_section("*Triage*\n" + "\n".join(rows)))
    signals = [s for s in inc.get("signals") or [] if isinstance(s, Mapping)]
    if signals:
        rows = [f"• {_esc(render.signal_line(s))}" for s in signals[:10]]
        if len(signals) > 10:
            rows.append(f"… and {len(signals) - 10} more")
        blocks.append(_section("*Signals*\n" + "\n".join(rows)))
    attribution = [a for a in inc.get("attribution") or [] if isinstance(a, Mapping)]
    if attribution:
        rows = [f"• {_esc(render.attribution_line(a))}" for a in attribution]
        blocks.append(_section("*Attribution*\n" + "\n".join(rows)))
    changes = [c for c in inc.get("changes") or [] if isinstance(c, Mapping)]
    if changes:
        rows = [f"• {_esc(render.change_line(c))}" for c in changes[:5]]
        blocks.append(_section("*Recent changes* (before the start)\n" + "\n".join(rows)))
    rb = n.runbook or {}
    links = [
        f"<{rb[k]}|{label}>"
        for k, label in (("url", "Runbook"), ("dashboard", "Dashboard"))
        if isinstance(rb.get(k), str) and str(rb[k]).startswith(("http://", "https://"))
    ]
    context = [*links, f"incident `{_esc(n.incident_id)}`"]
    if rb.get("owner"):
        context.append(f"owner {_esc(rb['owner'])}")
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": truncate(" · ".join(context), 3000)}],
        }
    )
    # `text` (the notification fallback) is mrkdwn too: escape it; the header is plain_text.
    return {"text": truncate(_esc(render.title(n)), 3000), "blocks": blocks[:50]}


class SlackSender:
    def __init__(
        self,
        name: str,
        url: str,
        *,
        rate_limit_per_min: float | None = 60.0,
        timeout_s: float = 10.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self._url = url
        self.rate_limit_per_min = rate_limit_per_min
        self.timeout_s = timeout_s
        self._wall_clock = wall_clock

    def __repr__(self) -> str:  # the URL is the secret
        return f"SlackSender(name={self.name!r})"

    async def send(self, session: aiohttp.ClientSession, n: Notification) -> DeliveryResult:
        result, _ = await request(
            session,
            "POST",
            self._url,
            body=dumps(build_message(n)),
            headers={"Content-Type": "application/json"},
            timeout_s=self.timeout_s,
            secrets=[self._url],
            wall_clock=self._wall_clock,
        )
        return result
