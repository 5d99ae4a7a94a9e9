"""Outages driven through the real daemon's detectors, for the crash-consistency tests and
`bench/crash_soak.py`: a config whose availability rule pages within a tick or two on the
e2e harness's 1 s ticks, and a traffic helper that posts `llm_call` events now.

Unlike the Alertmanager path (an external signal the sender clears), these incidents open
and resolve only through detector transitions, which is what a kill -9 can put out of step
with the correlator's saved state.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from tests.conftest import DaemonProcess
from tests.e2e.harness import http, write_config

# Availability below 50% over >= 5 calls pages at once; it clears at 80% (hysteresis).
# The other default rules stay on: provider error rate joins the incident as a second
# signal when its baseline has been learned, as it would in production.
OUTAGE_RULES: list[dict[str, Any]] = [
    {
        "metric": "availability",
        "detector": "static",
        "params": {"threshold": 0.5, "op": "below", "for_s": 0, "clear": 0.8, "min_n": 5},
        "page_alone": True,
    }
]


def crash_config(tmp: Path, pd_url: str, **extra: Any) -> Path:
    return write_config(tmp, pd_url, **({"rules": OUTAGE_RULES} | extra))


def post_calls(d: DaemonProcess, feature: str, n: int, status: int, timeout: float = 5.0) -> int:
    """Post `n` calls of `feature` stamped now; returns the HTTP status (0: no answer)."""
    now = time.time()
    body = [
        {
            "type": "llm_call",
            "ts": now - i * 0.001,
            "feature": feature,
            "provider": "openai",
            "model": "gpt-4o",
            "status": status,
            "latency_ms": 800.0,
            "output_tokens": 200,
        }
        for i in range(n)
    ]
    try:
        code, raw, _ = http("POST", d.url + "/v1/events", body, timeout=timeout)
    except OSError:
        return 0
    if code == 200:
        assert orjson.loads(raw)["accepted"] == n, raw
    return code
