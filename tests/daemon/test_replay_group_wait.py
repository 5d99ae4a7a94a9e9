"""The group wait in replay time (issue 13): `llm-oncall replay` waits on event timestamps, so
the issue's double page (a warning, then 0.4 ms later the critical partner) is one page there
too, sent on the first tick after the wait."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import orjson
import pytest
import yaml

from config.settings import load_settings
from daemon.replay import replay
from tests.e2e.test_oncall_e2e import CUSTOM, GROUP_RULES

T0 = 1_795_000_005.0  # a multiple of the 15 s tick


def outage_file(tmp: Path) -> Path:
    events = [
        {"type": "metric", "ts": T0 + 1, "feature": "bot", "layer": "quality",
         "name": "judge_score", "value": 0.2},
        {"type": "metric", "ts": T0 + 1.0004, "feature": "bot", "layer": "api",
         "name": "availability", "value": 0.1},
    ]  # fmt: skip
    # Traffic goes on for two minutes, so ticks run in event time.
    events += [
        {"type": "llm_call", "ts": T0 + t, "feature": "bot", "status": 200, "latency_ms": 500}
        for t in range(2, 120)
    ]
    path = tmp / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


@pytest.mark.parametrize(("wait", "expected"), [
    (30, [(T0 + 45, "critical")]),  # opened at T0+1: the first tick at or after T0+31
    (0, [(T0 + 1, "warning"), (T0 + 1.0004, "critical")]),
])  # fmt: skip
def test_replay_waits_on_event_time(
    tmp_path: Path, wait: int, expected: list[tuple[float, str]]
) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {"rules": GROUP_RULES, "custom_metrics": CUSTOM, "notify": {"group_wait_s": wait}}
        )
    )
    result = replay(str(outage_file(tmp_path)), load_settings(cfg))
    (rec,) = result.incidents
    got = [(datetime.fromisoformat(t).timestamp(), sev) for t, sev in rec["notifications"]]
    assert got == [(pytest.approx(t, abs=0.001), sev) for t, sev in expected]
