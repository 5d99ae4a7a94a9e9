"""Resolving by hand while the fault goes on, through the real daemon process (probe: an
incident resolved during a prompt regression stayed resolved and silent for 46 minutes while
its detectors kept firing).

The resolve goes out at once; a member still firing after the grace reopens the incident and
pages once under the same dedup key, saying why; a member that clears within the grace keeps
it resolved, with its true clear time. Here the grace is the longest window (5 s) plus the
cooldown (2 s), 7 s (`daemon.pipeline.resolve_grace`); a restart in the middle of it does not
lose it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from tests.conftest import ROOT, DaemonProcess, start_daemon
from tests.e2e.crash import OUTAGE_RULES, post_calls
from tests.e2e.harness import (
    PhasedPagerDuty,
    fake_pagerduty,
    http,
    incident_of,
    stop,
    wait_for,
    write_config,
)

GRACE_S = 7.0


def _cli(d: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    env.pop("LLM_ONCALL_TOKEN", None)
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli", *args, "--url", d.url],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=30,
    )  # fmt: skip


def _paged(d: DaemonProcess, fake: PhasedPagerDuty, feature: str) -> dict[str, Any]:
    """An outage of `feature` (availability below 50%), paged; its record."""
    assert post_calls(d, feature, 20, 200) == 200

    def trigger() -> bool:
        post_calls(d, feature, 20, 500)
        keys = {k for k, a in fake.deliveries() if a == "trigger"}
        return any(f"/{feature}/" in k for k in keys)

    wait_for(f"the page of {feature}", trigger, timeout=10, every=0.2)
    return incident_of(d, feature)


def _keep_posting(
    d: DaemonProcess, seconds: float, calls: dict[str, int], until: Any = None
) -> None:
    """Traffic for `seconds` (or until `until()`): per feature 20 calls of the given status
    every 0.2 s, so each window holds data and the detectors judge it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for feature, status in calls.items():
            post_calls(d, feature, 20, status)
        if until is not None and until():
            return
        time.sleep(0.2)


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _trigger_bodies(fake: PhasedPagerDuty, key: str) -> list[dict[str, Any]]:
    return [
        r.body
        for r in list(fake.accepted)
        if r.body["dedup_key"] == key and r.body["event_action"] == "trigger"
    ]


def test_resolved_while_firing_reopens_after_the_grace_and_a_cleared_one_stays_resolved(
    tmp_path: Path,
) -> None:
    with fake_pagerduty() as (fake, url):
        d = start_daemon(tmp_path, write_config(tmp_path, url, rules=OUTAGE_RULES))
        try:
            going_on = _paged(d, fake, "bot-a")  # the regression goes on
            fixed = _paged(d, fake, "bot-b")  # rolled back: clears within the grace
            key_a, key_b = going_on["dedup_key"], fixed["dedup_key"]

            # Resolved by hand while both still fire: the answer says which still fire.
            done = _cli(d, "incidents", "resolve", going_on["id"], "--by", "alice",
                        "--comment", "rolled back")  # fmt: skip
            resolved_at = time.time()  # the fake stamps requests with time.time()
            assert done.returncode == 0, done.stderr
            assert f"{going_on['id']} resolved (resolved, critical)" in done.stdout
            assert "still firing: availability" in done.stdout, done.stdout
            assert "reopens and pages at" in done.stdout
            code, raw, _ = http(
                "POST", f"{d.url}/api/v1/incidents/{fixed['id']}/resolve", {"by": "bob"}
            )
            assert code == 200, raw
            answer = orjson.loads(raw)
            assert answer["status"] == "resolved"
            assert [s.split("{")[0] for s in answer["still_firing"]["signals"]] == ["availability"]
            # Not "cleared at the resolve": nothing cleared them.
            assert all(s["cleared"] is None for s in answer["signals"])
            wait_for("both resolves", lambda: fake.count(key_a, "resolve") == 1
                     and fake.count(key_b, "resolve") == 1, timeout=5)  # fmt: skip

            # bot-a keeps failing, bot-b is healthy again: bot-a pages again once the grace
            # is over, and not before.
            def reopened() -> bool:
                return fake.count(key_a, "trigger") == 2

            _keep_posting(d, GRACE_S + 6, {"bot-a": 500, "bot-b": 200}, until=reopened)
            assert reopened(), fake.deliveries()
            waited = fake.request_times[-1] - resolved_at
            again = _trigger_bodies(fake, key_a)[-1]
            summary = again["payload"]["summary"]
            assert summary.startswith("[REOPENED: availability"), summary
            assert "still firing 7 s after a manual resolve by alice]" in summary
            rec = incident_of(d, "bot-a")
            assert rec["status"] == "open" and rec["id"] == going_on["id"]
            assert rec["reopen_reason"] in summary and not rec["flapping"]
            assert rec["still_firing"] is None

            # Paged once: more of the same failure sends nothing more.
            _keep_posting(d, 2.0, {"bot-a": 500, "bot-b": 200})
            assert fake.count(key_a, "trigger") == 2
            # bot-b stays resolved, with the true clear time (after the resolve).
            assert fake.count(key_b, "trigger") == 1
            rec_b = incident_of(d, "bot-b")
            assert rec_b["status"] == "resolved" and rec_b["still_firing"] is None
            assert rec_b["reopen_reason"] is None
            cleared = [_ts(s["cleared"]) for s in rec_b["signals"]]
            assert cleared and min(cleared) >= _ts(rec_b["resolved_at"])
            assert waited >= GRACE_S - 1.5, waited  # the send follows the tick at the grace
            shown = _cli(d, "incidents", "show", going_on["id"])
            assert "reopened: availability" in shown.stdout, shown.stdout
        finally:
            stop(d)


def test_the_grace_survives_a_restart(tmp_path: Path) -> None:
    """Resolved, then the daemon restarts inside the grace: the restored daemon still
    knows which members fire and reopens the incident when the grace ends."""
    with fake_pagerduty() as (fake, url):
        # A longer grace (5 s window + 10 s cooldown) leaves room for the restart inside it.
        cfg = write_config(
            tmp_path, url, rules=OUTAGE_RULES, correlation={"cooldown_s": 10, "window_s": 10}
        )
        d = start_daemon(tmp_path, cfg)
        try:
            rec = _paged(d, fake, "bot-a")
            key = rec["dedup_key"]
            code, raw, _ = http("POST", f"{d.url}/api/v1/incidents/{rec['id']}/resolve",
                                {"by": "alice"})  # fmt: skip
            assert code == 200 and orjson.loads(raw)["still_firing"], raw
            wait_for("the resolve", lambda: fake.count(key, "resolve") == 1, timeout=5)
        finally:
            assert stop(d) == 0
        d = start_daemon(tmp_path, cfg)
        try:
            back = incident_of(d, "bot-a")
            assert back["status"] == "resolved" and back["still_firing"], back
            reopened: Callable[[], bool] = lambda: fake.count(key, "trigger") == 2  # noqa: E731
            _keep_posting(d, 25, {"bot-a": 500}, until=reopened)
            assert reopened(), fake.deliveries()
            assert (
                "still firing 15 s after a manual resolve by alice"
                in (incident_of(d, "bot-a")["reopen_reason"])
            )
        finally:
            stop(d)
