"""Symptom families from the config, through the real daemon process and check-config."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from tests.conftest import start_daemon

CONFIG = """
aggregation: {tick_s: 1, window_s: 5, quality_window_s: 5}
custom_metrics: [queue_wait_ms]   # a custom `metric` event that a rule names
rules:
  - {metric: latency_p95_ms, detector: static, params: {threshold: 2000, op: above}}
  - {metric: queue_wait_ms, detector: static, params: {threshold: 100, op: above}}
features:
  grouped:
    families: {queue_wait_ms: latency}
"""


def _post(url: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    req = urllib.request.Request(
        url + "/v1/events", data=orjson.dumps(events), method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=10) as resp:
        body: dict[str, Any] = orjson.loads(resp.read())
    return body


def _incidents(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(url + "/api/v1/incidents", timeout=10) as resp:
        incidents: list[dict[str, Any]] = orjson.loads(resp.read())["incidents"]
    return incidents


def test_custom_metric_family_from_config_in_the_live_daemon(tmp_path: Path) -> None:
    """Slow calls (p95 over its line) and a custom `metric` event over its own line, on two
    features. `grouped` puts the custom metric in the latency family: one symptom, a watch.
    `apart` leaves it a family of its own: two symptoms, critical and paged."""
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG)
    d = start_daemon(tmp_path, cfg)
    try:
        deadline = time.monotonic() + 30
        by_feature: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            now = time.time()
            events: list[dict[str, Any]] = []
            for feature in ("grouped", "apart"):
                events += [
                    {"type": "llm_call", "ts": now, "feature": feature, "status": 200,
                     "latency_ms": 5000.0},
                    {"type": "metric", "ts": now, "feature": feature, "layer": "infra",
                     "name": "queue_wait_ms", "value": 500.0},
                ]  # fmt: skip
            assert _post(d.url, events)["accepted"] == len(events)
            by_feature = {r["feature"]: r for r in _incidents(d.url)}
            found = [by_feature.get(f, {}).get("signals", []) for f in ("grouped", "apart")]
            if all(len(signals) == 2 for signals in found):
                break
            time.sleep(0.5)
        grouped, apart = by_feature["grouped"], by_feature["apart"]
        assert {s["metric"]: s["family"] for s in grouped["signals"]} == {
            "latency_p95_ms": "latency",
            "queue_wait_ms": "latency",
        }
        assert (grouped["severity"], grouped["paged"]) == ("watch", False)
        assert grouped["summary"].endswith("; 1 symptom family: latency")

        assert {s["metric"]: s["family"] for s in apart["signals"]} == {
            "latency_p95_ms": "latency",
            "queue_wait_ms": "queue_wait_ms",
        }
        assert (apart["severity"], apart["paged"]) == ("critical", True)
        assert "; 2 symptom families: " in apart["summary"]
    finally:
        d.proc.terminate()
        d.proc.wait(timeout=15)


BAD = """
families: {queue_wait_ms: latncy, "": latency}
features:
  bot:
    families: {score:helpfulness: qualty}
"""


def test_check_config_names_an_unknown_family(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(BAD)
    proc = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "check-config", str(cfg)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 1
    err = proc.stderr
    assert "families.queue_wait_ms: unknown family 'latncy'; one of: output_size, " in err
    assert "families: key '': String should have at least 1 character" in err
    assert "features.bot.families.score:helpfulness: unknown family 'qualty'" in err
