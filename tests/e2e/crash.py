"""Outages driven through the real daemon's detectors, for the crash-consistency tests and
`bench/crash_soak.py`: a config whose availability rule pages within a tick or two on the
e2e harness's 1 s ticks, and a traffic helper that posts `llm_call` events now.

Unlike the Alertmanager path (an external signal the sender clears), these incidents open
and resolve only through detector transitions, which is what a kill -9 can put out of step
with the correlator's saved state.
"""

from __future__ import annotations

import math
import random
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from tests.conftest import DaemonProcess, start_daemon
from tests.e2e.harness import fake_pagerduty, http, incidents, stop, write_config

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


def post_change(d: DaemonProcess, feature: str, description: str, timeout: float = 2.0) -> int:
    """Post one `deploy` change event of `feature` stamped now; the HTTP status (0: none)."""
    body = {"type": "change", "ts": time.time(), "kind": "deploy", "feature": feature,
            "description": description}  # fmt: skip
    try:
        return http("POST", d.url + "/v1/events", body, timeout=timeout)[0]
    except OSError:
        return 0


def saved_changes(state: Path) -> set[str]:
    """The descriptions of the change events in a stopped daemon's state file: those in the
    correlator state and those written one by one since (`daemon/app.py`, `CHANGE_PREFIX`)."""
    with sqlite3.connect(state) as conn:
        rows = conn.execute(
            "SELECT key, value FROM kv WHERE key = 'correlator' OR key LIKE 'change:%'"
        ).fetchall()
    out: set[str] = set()
    for key, value in rows:
        doc = orjson.loads(value)
        changes = doc["changes"] if key == "correlator" else [doc]
        out.update(str(c["description"]) for c in changes)
    return out


# ---- the crash soak: kill -9 at random points through outages and recoveries -------------


POST_EVERY_S = 0.2
# The availability window is 5 s and the rule pages below 50%: 3 s of accepted failures
# (60% of the window) pages whatever the calls around them were.
PAGEABLE_S = 3.0
# One change event every this many posting rounds (~1 s): a deploy record the sender does not
# send again. Each answered 200 must be in the state at the end (~200 in 20 cycles, within
# the change store's bounds).
CHANGE_EVERY = 5


@dataclass
class Schedule:
    """One feature's life in the soak: healthy traffic from `active_from`, one outage, then
    healthy traffic until `active_until` (and through the final settling phase).

    One outage per feature, because the correlator holds an incident that reopens after its
    resolve (a flapping series) for `flap_hold_s`, an hour: outages that keep coming back on
    one feature would measure that policy, not crash consistency.
    """

    feature: str
    outage: tuple[float, float]
    active_from: float
    active_until: float

    def spell(self, t: float) -> tuple[float, float] | None:
        a, b = self.outage
        return self.outage if a <= t < b else None

    def failing(self, t: float) -> bool:
        return self.spell(t) is not None

    def active(self, t: float, healthy_after: float) -> bool:
        if t >= healthy_after:
            return self.active_from < healthy_after
        return self.active_from <= t < self.active_until


def schedules(start: float, end: float, rng: random.Random, spacing_s: float) -> list[Schedule]:
    """A new feature's outage every ~`spacing_s`, 5-9 s long (long enough to page even with
    a restart in it), with 4 s of healthy traffic before and 20 s after (recovery: 5 s
    window, 2 s cooldown, ticks, and room for a kill in between)."""
    out = []
    t = start + 4.0
    while t < end:
        a = t + rng.uniform(0.0, spacing_s / 2)
        b = a + rng.uniform(5.0, 9.0)
        out.append(Schedule(f"bot-{len(out)}", (a, b), a - 4.0, b + 20.0))
        t += spacing_s
    return out


class Traffic:
    """Posts each feature's calls every 0.2 s to whichever daemon is current, failing or
    healthy as its schedule says; counts the posts that found no daemon."""

    def __init__(self, plans: list[Schedule]) -> None:
        self.plans = plans
        self.daemon: DaemonProcess | None = None
        self.healthy_after = math.inf  # no outage starts from then on
        self.posted = self.unanswered = 0
        self.changes_accepted: list[str] = []  # descriptions answered 200
        # (feature, outage start) -> failing posts the daemon accepted during that outage
        self.accepted_failing: dict[tuple[str, float], int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        rounds = 0
        while not self._stop.is_set():
            d, now = self.daemon, time.time()
            rounds += 1
            if d is not None and rounds % CHANGE_EVERY == 0:
                live = [p for p in self.plans if p.active(now, self.healthy_after)]
                feature = live[rounds % len(live)].feature if live else None
                description = f"deploy {rounds}"
                if feature is not None and post_change(d, feature, description) == 200:
                    self.changes_accepted.append(description)
            for plan in self.plans:
                if d is None:
                    break
                if not plan.active(now, self.healthy_after):
                    continue
                # Outages under way when the soak turns healthy run to their end.
                spell = plan.spell(now) if plan.outage[0] < self.healthy_after else None
                code = post_calls(d, plan.feature, 10, 200 if spell is None else 500, timeout=2)
                self.posted += 1
                self.unanswered += code != 200
                if spell is not None and code == 200:
                    key = (plan.feature, spell[0])
                    self.accepted_failing[key] = self.accepted_failing.get(key, 0) + 1
            self._stop.wait(POST_EVERY_S)


@dataclass
class SoakResult:
    cycles: int
    kills_in_outage: int  # kills while at least one feature was failing
    kills_in_recovery: int  # kills within 10 s after an outage ended (incident resolving)
    incidents: int
    paged: int
    outages: int  # outages with >= PAGEABLE_S of failing calls accepted
    outages_paged: int
    triggers_delivered: int
    resolves_delivered: int
    triggers_lost: int
    resolves_lost: int
    duplicates: int
    out_of_order: int
    still_open: int
    posts_unanswered: int  # batches of 10 calls sent while no daemon was up
    posts_sent: int
    seconds: float
    details: list[str] = field(default_factory=list)
    daemon_errors_logged: int = 0  # background_task_failed, tick_error, tracebacks
    final_exit_code: int = 0  # of the last daemon, stopped with SIGTERM
    changes_accepted: int = 0  # change events answered 200
    changes_lost: int = 0  # of those, missing from the final state

    def ok(self) -> bool:
        lost = self.triggers_lost + self.resolves_lost + self.still_open + self.changes_lost
        healthy = self.daemon_errors_logged == 0 and self.final_exit_code == 0
        return (
            lost == 0 and self.out_of_order == 0 and self.outages_paged == self.outages and healthy
        )


def soak(
    tmp: Path,
    cycles: int,
    seed: int = 1,
    spacing_s: float = 4.0,
    uptime_s: tuple[float, float] = (2.0, 8.0),
    settle_s: float = 60.0,
    log: Callable[[str], None] = lambda _: None,
) -> SoakResult:
    """`cycles` kill -9s of the real daemon at random points, then healthy traffic until
    every incident has resolved (or `settle_s` passes); counts what the fake PagerDuty got
    against what the daemon's incident records say it should have got."""
    rng = random.Random(seed)
    t_start = time.time()
    with fake_pagerduty() as (fake, url):
        cfg = crash_config(tmp, url)
        # Generous horizon: startups on a loaded machine take longer than planned.
        plans = schedules(t_start, t_start + cycles * (uptime_s[1] + 4) + 20, rng, spacing_s)
        kills_in_outage = kills_in_recovery = 0
        d: DaemonProcess | None = None
        with Traffic(plans) as traffic:
            try:
                for c in range(cycles):
                    d = start_daemon(tmp, config=cfg)
                    traffic.daemon = d
                    time.sleep(rng.uniform(*uptime_s))
                    now = time.time()
                    failing = [p.feature for p in plans if p.failing(now)]
                    recovering = [p.feature for p in plans if 0 <= now - p.outage[1] < 10]
                    kills_in_outage += bool(failing)
                    kills_in_recovery += bool(recovering)
                    d.proc.send_signal(signal.SIGKILL)
                    d.proc.wait(10)
                    log(
                        f"cycle {c + 1}/{cycles}: kill -9 at +{now - t_start:.1f}s, failing:"
                        f" {failing or 'none'}, recovering: {recovering or 'none'},"
                        f" deliveries so far {len(fake.accepted)}"
                    )
                d = last = start_daemon(tmp, config=cfg)
                traffic.daemon = d
                traffic.healthy_after = t_healthy = time.time()

                def settled() -> bool:
                    recs = incidents(last, limit="1000")
                    got = fake.actions_by_key()
                    return all(
                        r["status"] == "resolved"
                        and (not r["paged"] or got.get(r["dedup_key"], [""])[-1] == "resolve")
                        for r in recs
                    )

                # Outages under way run to their end and must page before it counts as settled.
                last_end = max((p.outage[1] for p in plans if p.outage[0] < t_healthy), default=0)
                deadline = time.monotonic() + max(0.0, last_end - time.time()) + settle_s
                while time.monotonic() < deadline and (time.time() < last_end + 3 or not settled()):
                    time.sleep(0.5)
                log(f"settled {time.time() - t_healthy:.1f}s after the last restart")
                recs = incidents(last, limit="1000")
                final_exit = stop(last)
            finally:
                if d is not None and d.proc.poll() is None:
                    d.proc.kill()
                    d.proc.wait(10)
        logged = "".join(p.read_text(errors="replace") for p in tmp.glob("daemon-*.log"))
        failures = sum(logged.count(f'"{e}"') for e in ("background_task_failed", "tick_error"))
        failures += logged.count("Traceback")
        # An outage must page when the daemon accepted at least PAGEABLE_S of its failing
        # calls (kills and the final switch to healthy traffic cut some short).
        outages = [
            (p.feature, *p.outage)
            for p in plans
            if traffic.accepted_failing.get((p.feature, p.outage[0]), 0) * POST_EVERY_S
            >= PAGEABLE_S
        ]
        kills = (kills_in_outage, kills_in_recovery)
        res = _account(fake.deliveries(), recs, outages, cycles, kills, traffic,
                       time.time() - t_start)  # fmt: skip
        res.daemon_errors_logged = failures
        res.final_exit_code = final_exit
        saved = saved_changes(tmp / "state.db")
        lost = [c for c in traffic.changes_accepted if c not in saved]
        res.changes_accepted, res.changes_lost = len(traffic.changes_accepted), len(lost)
        res.details += [f"change {c!r} answered 200, not in the final state" for c in lost[:20]]
        return res


def _account(
    deliveries: list[tuple[str, str]],
    recs: list[dict[str, Any]],
    outages: list[tuple[str, float, float]],
    cycles: int,
    kills: tuple[int, int],
    traffic: Traffic,
    seconds: float,
) -> SoakResult:
    by_key: dict[str, list[str]] = {}
    for key, action in deliveries:
        by_key.setdefault(key, []).append(action)
    paged = [r for r in recs if r["paged"]]
    details: list[str] = []
    triggers_lost = resolves_lost = out_of_order = 0
    # A repeat of the same action on a key is a duplicate (at-least-once delivery across a
    # kill); a trigger after a resolve is an incident that reopened, not a duplicate.
    duplicates = sum(
        sum(1 for i in range(1, len(acts)) if acts[i] == acts[i - 1]) for acts in by_key.values()
    )
    for r in paged:
        acts = by_key.get(r["dedup_key"], [])
        collapsed = [a for i, a in enumerate(acts) if i == 0 or acts[i - 1] != a]
        if "trigger" not in acts:
            triggers_lost += 1
            details.append(f"no trigger for {r['id']}")
        if not collapsed or collapsed[-1] != "resolve":
            resolves_lost += 1
            details.append(f"no final resolve for {r['id']} ({r['status']}): {acts}")
        # trigger, resolve, (trigger, resolve ...): a resolved incident may reopen
        if collapsed and any(a != ("trigger", "resolve")[i % 2] for i, a in enumerate(collapsed)):
            out_of_order += 1
            details.append(f"out of order for {r['id']}: {acts}")
    unknown = set(by_key) - {r["dedup_key"] for r in recs}
    if unknown:
        details.append(f"deliveries for keys with no incident record: {sorted(unknown)}")
        triggers_lost += len(unknown)  # the record of a paged incident was lost

    def covered(feature: str, a: float, b: float) -> bool:
        for r in paged:
            opened = datetime.fromisoformat(r["opened_at"]).timestamp()
            end = r["resolved_at"]
            resolved = math.inf if end is None else datetime.fromisoformat(end).timestamp()
            if r["feature"] == feature and opened <= b + 10 and resolved >= a:
                return True
        return False

    missed = [(f, a, b) for f, a, b in outages if not covered(f, a, b)]
    details += [f"outage of {f} {b - a:.1f}s not paged" for f, a, b in missed]
    return SoakResult(
        cycles=cycles,
        kills_in_outage=kills[0],
        kills_in_recovery=kills[1],
        incidents=len(recs),
        paged=len(paged),
        outages=len(outages),
        outages_paged=len(outages) - len(missed),
        triggers_delivered=len({k for k, a in deliveries if a == "trigger"}),
        resolves_delivered=len({k for k, a in deliveries if a == "resolve"}),
        triggers_lost=triggers_lost,
        resolves_lost=resolves_lost,
        duplicates=duplicates,
        out_of_order=out_of_order,
        still_open=sum(r["status"] == "open" for r in recs),
        posts_unanswered=traffic.unanswered,
        posts_sent=traffic.posted,
        seconds=seconds,
        details=details,
    )
