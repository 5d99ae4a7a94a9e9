"""A little of every kind of telemetry, so every /metrics family and recording rule has series."""

from __future__ import annotations

import time
from typing import Any

from tests.conftest import DaemonProcess
from tests.integration.servers import http_json

FEATURE = "support-bot"


def events(n: int, now: float | None = None) -> list[dict[str, Any]]:
    now = time.time() if now is None else now
    out: list[dict[str, Any]] = []
    for i in range(n):
        out.append({
            "type": "llm_call", "ts": now - 2, "feature": FEATURE,
            "provider": "openai", "model": "gpt-4o" if i % 2 else "gpt-4o-mini",
            "latency_ms": 400 + 10 * i, "status": {9: 429, 19: 503}.get(i % 20, 200),
            "input_tokens": 1000, "output_tokens": 150, "cost_usd": 0.004,
            "refused": i % 20 == 0, "format_ok": i % 25 != 0, "retries": int(i % 7 == 0),
            "output_chars": 600, "labels": {"prompt_version": "v1"},
        })  # fmt: skip
        out.append({"type": "score", "ts": now - 2, "feature": FEATURE,
                    "name": "faithfulness", "value": 0.9})  # fmt: skip
    out.append({"type": "change", "ts": now - 2, "kind": "deploy", "feature": FEATURE})
    return out


def send(d: DaemonProcess, body: list[dict[str, Any]], token: str | None = None) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    status, answer = http_json(d.url + "/v1/events", body, headers)
    assert status == 200 and answer["rejected"] == [], answer
    assert answer["accepted"] == len(body), answer


def llm_calls(body: list[dict[str, Any]]) -> int:
    return sum(e["type"] == "llm_call" for e in body)
