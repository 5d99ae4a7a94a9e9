"""Generic JSON webhook sender with an optional HMAC-SHA256 signature.

Body: `{"version": "1", "sent_at": <unix s>, "notification": {...}, "incident": {...}}`.
Headers: `X-LLM-Oncall-Timestamp: <sent_at>` and, with a secret,
`X-LLM-Oncall-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>`. The timestamp is also
inside the signed body, so a receiver can reject replays by checking it against the header
and its clock (e.g. ±5 min) after verifying the signature with a constant-time compare.

A body over `max_body_bytes` (default 512 KB, as PagerDuty's limit) is shrunk the way
PagerDuty events are (`daemon.notify.shrink`): the incident record loses its least useful
parts first, and the top-level `truncated` says which. A proxy's 1 MB limit would otherwise
answer 413, a dead letter, and an incident with thousands of changes could never resolve.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping

import aiohttp

from daemon.notify.http import dumps, request
from daemon.notify.model import DeliveryResult, Notification
from daemon.notify.shrink import shrink_to_fit

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "WebhookSender", "sign", "verify"]

SIGNATURE_HEADER = "X-LLM-Oncall-Signature"
TIMESTAMP_HEADER = "X-LLM-Oncall-Timestamp"
MAX_BODY_BYTES = 512 * 1000
# What the last resort keeps of the record: what the incident is and where it stands.
_IDENTITY = (
    "id",
    "dedup_key",
    "feature",
    "status",
    "severity",
    "domain",
    "paged",
    "summary",
    "opened_at",
    "started_at",
    "resolved_at",
)


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    return hmac.compare_digest(sign(secret, body), header)


class WebhookSender:
    def __init__(
        self,
        name: str,
        url: str,
        *,
        hmac_secret: str | None = None,
        headers: Mapping[str, str] | None = None,
        rate_limit_per_min: float | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        timeout_s: float = 10.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.url = url
        self.max_body_bytes = max_body_bytes
        self._secret = hmac_secret
        self._headers = dict(headers or {})
        self.rate_limit_per_min = rate_limit_per_min
        self.timeout_s = timeout_s
        self._wall_clock = wall_clock

    def __repr__(self) -> str:
        return f"WebhookSender(name={self.name!r}, url={self.url!r})"

    async def send(self, session: aiohttp.ClientSession, n: Notification) -> DeliveryResult:
        sent_at = int(self._wall_clock())
        doc = n.to_json_dict()
        incident = doc.pop("incident")  # to_json_dict's own copy: shrinking may change it
        out = {"version": "1", "sent_at": sent_at, "notification": doc, "incident": incident}
        body = dumps(shrink_to_fit(out, incident, self.max_body_bytes, note=out, keep=_IDENTITY))
        headers = {**self._headers, "Content-Type": "application/json"}
        headers[TIMESTAMP_HEADER] = str(sent_at)
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(self._secret, body)
        secrets = [s for s in [self._secret, *self._headers.values()] if s]
        result, _ = await request(
            session,
            "POST",
            self.url,
            body=body,
            headers=headers,
            timeout_s=self.timeout_s,
            secrets=secrets,
            wall_clock=self._wall_clock,
        )
        return result
