"""Issue 8, defect 3: after kill -9 an open incident still resolves.

The outage opens the incident through a detector (availability), not an external alert,
so the resolve depends on the restored detector state agreeing with the restored
correlator. Before the fix the detector came back from a snapshot up to 60 s old, not
firing, and the incident stayed open for good.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import DaemonProcess
from tests.e2e.conftest import Env
from tests.e2e.crash import OUTAGE_RULES, crash_config, post_calls, soak
from tests.e2e.harness import incident_of, wait_for

RATE = 10  # calls per 0.2 s per feature: 50 calls/s


@contextmanager
def traffic(d: DaemonProcess, feature: str, status: dict[str, int]) -> Iterator[None]:
    """Posts calls every 0.2 s with the status in `status["now"]` until the block ends."""
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            post_calls(d, feature, RATE, status["now"])
            stop.wait(0.2)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(5)


def collapsed(actions: list[str]) -> list[str]:
    return [a for i, a in enumerate(actions) if i == 0 or actions[i - 1] != a]


def outage_until_paged(e2e: Env, d: DaemonProcess, feature: str) -> str:
    status = {"now": 200}
    with traffic(d, feature, status):
        time.sleep(1.5)
        status["now"] = 500
        first = wait_for("the trigger", lambda: e2e.fake.accepted[:1], timeout=10)[0]
    assert first.body["event_action"] == "trigger"
    return str(first.body["dedup_key"])


def test_kill_9_after_the_trigger_still_resolves(e2e: Env) -> None:
    cfg = crash_config(e2e.tmp, e2e.pd_url)
    d = e2e.start(cfg)
    key = outage_until_paged(e2e, d, "bot")
    d.proc.send_signal(signal.SIGKILL)
    assert d.proc.wait(5) == -signal.SIGKILL

    d2 = e2e.start(cfg)
    t0 = time.time()
    with traffic(d2, "bot", {"now": 200}):
        # window 5 s for the availability to recover, cooldown 2 s, 1 s ticks
        wait_for("the resolve", lambda: e2e.fake.count(key, "resolve") >= 1, timeout=15)
    took = time.time() - t0
    # A trigger on the wire at the kill may be sent again (at-least-once; PagerDuty's dedup
    # absorbs it), but never after the resolve, and the resolve comes once.
    assert collapsed(e2e.fake.actions_by_key()[key]) == ["trigger", "resolve"]
    assert e2e.fake.count(key, "resolve") == 1
    assert incident_of(d2, "bot")["status"] == "resolved"
    assert "state_restore_unconfirmed_signals" not in d2.log()  # states agreed: no fallback
    print(f"\nresolve delivered {took:.1f}s after restart with healthy traffic")


def test_kill_9_soon_after_first_traffic_resolves_with_no_more_traffic(e2e: Env) -> None:
    """Probe N1: the crash came before the first periodic snapshot (60 s) and the feature
    sends nothing after the restart. Only the stale rule can clear the signal, and before
    the fix it needed a sample, which a restart did not bring back: open for good."""
    cfg = crash_config(e2e.tmp, e2e.pd_url)  # snapshot_interval_s stays at its 60 s default
    d = e2e.start(cfg)
    key = outage_until_paged(e2e, d, "quiet")
    d.proc.send_signal(signal.SIGKILL)
    assert d.proc.wait(5) == -signal.SIGKILL

    d2 = e2e.start(cfg)
    t0 = time.time()
    # stale after 2 x the 5 s window from the last sample, then the 2 s cooldown
    wait_for("the resolve", lambda: e2e.fake.count(key, "resolve") >= 1, timeout=25)
    assert collapsed(e2e.fake.actions_by_key()[key]) == ["trigger", "resolve"]
    assert incident_of(d2, "quiet")["status"] == "resolved"
    print(f"\nresolve delivered {time.time() - t0:.1f}s after restart with no traffic")


def test_rule_removed_while_firing_clears_after_one_window(e2e: Env) -> None:
    """The fallback of `Pipeline.reconcile`: the restarted daemon has no detector for the
    firing signal (its rule was switched off), so nothing would ever clear it; it is cleared
    after one window without confirmation and the incident resolves."""
    cfg = crash_config(e2e.tmp, e2e.pd_url)
    d = e2e.start(cfg)
    key = outage_until_paged(e2e, d, "bot")
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(15) == 0

    off = [r | {"enabled": False} for r in OUTAGE_RULES]
    d2 = e2e.start(crash_config(e2e.tmp, e2e.pd_url, rules=off))
    assert "state_restore_unconfirmed_signals" in d2.log()
    with traffic(d2, "bot", {"now": 200}):
        wait_for("the resolve", lambda: e2e.fake.count(key, "resolve") >= 1, timeout=15)
    assert e2e.fake.count(key, "trigger") == 1
    assert '"signal_unconfirmed_cleared"' in d2.log()
    rec = incident_of(d2, "bot")
    assert rec["status"] == "resolved"


def test_crash_soak_short(tmp_path: Path) -> None:
    """The short version of bench/crash_soak.py (which runs 20+ cycles): three kill -9s at
    random points through outages and recoveries; nothing lost, every resolve delivered."""
    res = soak(tmp_path, cycles=3, seed=3, spacing_s=3.0, uptime_s=(2.0, 4.0), settle_s=20)
    print(f"\n{res}")
    assert res.ok(), res.details
    assert res.outages >= 2 and res.paged >= 2
    assert res.triggers_delivered == res.resolves_delivered == res.paged
    assert res.changes_accepted >= 5 and res.changes_lost == 0
