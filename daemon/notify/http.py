"""What every HTTP sender shares: the `Sender` protocol, status classification, Retry-After
parsing, a POST helper that never lets a secret into an error, and text limits."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import aiohttp
import orjson

from daemon.notify.model import DeliveryResult, Notification

__all__ = [
    "Sender",
    "cap_key",
    "classify_status",
    "parse_retry_after",
    "redact",
    "request",
    "truncate",
]


class Sender(Protocol):
    """Delivers one notification to one receiver. Never raises for HTTP or network errors."""

    name: str
    # Token-bucket rate for this receiver (None: unlimited).
    rate_limit_per_min: float | None

    async def send(self, session: aiohttp.ClientSession, n: Notification) -> DeliveryResult: ...


def classify_status(
    status: int, retry_after: float | None = None, error: str | None = None
) -> DeliveryResult:
    """2xx ok; 408, 429 and 5xx retry; any other status is permanent (a dead letter)."""
    if 200 <= status < 300:
        return DeliveryResult(ok=True, status=status)
    retry = status in (408, 429) or status >= 500
    return DeliveryResult(
        ok=False,
        retry=retry,
        retry_after=retry_after if retry else None,
        status=status,
        error=error or f"HTTP {status}",
    )


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - now
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def redact(text: str, secrets: Sequence[str]) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text


def truncate(text: str, limit: int, ellipsis: str = "…") -> str:
    """At most `limit` characters, cut on a character boundary.

    Counted in UTF-16 code units, which is never less than code points, so the result fits
    whether the receiver counts code points (Python) or UTF-16 units (Java, JavaScript), and
    an astral character (emoji) is never split into half a surrogate pair.
    """

    def units(s: str) -> int:
        return len(s) + sum(1 for ch in s if ord(ch) > 0xFFFF)

    if units(text) <= limit:
        return text
    budget = limit - units(ellipsis)
    out: list[str] = []
    used = 0
    for ch in text:
        w = 2 if ord(ch) > 0xFFFF else 1
        if used + w > budget:
            break
        out.append(ch)
        used += w
    return "".join(out) + ellipsis


def cap_key(key: str, limit: int) -> str:
    """A stable key of at most `limit` characters: long keys keep a prefix and a hash, so the
    trigger and the resolve of one incident always map to the same key."""
    if len(key) <= limit:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return key[: limit - 17] + "~" + digest


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, default=str)


async def request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    body: bytes | None,
    headers: Mapping[str, str],
    timeout_s: float,
    secrets: Sequence[str] = (),
    wall_clock: Callable[[], float] = time.time,
) -> tuple[DeliveryResult, bytes]:
    """One HTTP request, classified. Network errors and timeouts become retryable results;
    error texts are redacted of `secrets` and never contain headers."""
    try:
        async with session.request(
            method,
            url,
            data=body,
            headers=dict(headers),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            allow_redirects=False,
        ) as resp:
            raw = await resp.read()
            retry_after = parse_retry_after(resp.headers.get("Retry-After"), wall_clock())
            error = None
            if not 200 <= resp.status < 300:
                # Redact before cutting: a secret straddling the cut would leave its head.
                text = redact(raw[:4096].decode("utf-8", "replace"), secrets)
                snippet = text[:300].strip()
                error = f"HTTP {resp.status}: {snippet}" if snippet else f"HTTP {resp.status}"
            return classify_status(resp.status, retry_after, error), raw
    except TimeoutError:
        return DeliveryResult(ok=False, retry=True, error=f"timeout after {timeout_s:g}s"), b""
    except aiohttp.ClientError as exc:
        # Connection errors name host:port, never the path (where Slack keeps its secret);
        # redact anyway.
        msg = redact(f"{type(exc).__name__}: {exc}", secrets)
        return DeliveryResult(ok=False, retry=True, error=msg), b""
    except asyncio.CancelledError:
        raise
    except (OSError, ValueError) as exc:
        return DeliveryResult(ok=False, retry=True, error=f"{type(exc).__name__}"), b""
