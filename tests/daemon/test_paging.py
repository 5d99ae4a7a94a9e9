"""The daemon's paging adapter: routes pick receivers, resolves follow triggers, reminders
follow each route's own interval."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import structlog
from prometheus_client import CollectorRegistry

from config.settings import load_settings
from correlator import Correlator, IncidentUpdate
from correlator.records import Signal
from daemon.paging import TEST_PAGE_INTERVAL_S, Paging, TooManyTestPages
from daemon.store import Store
from detectors.base import Direction

T0 = 1_795_000_000.0
KEY = "K" * 32

CONFIG = f"""
correlation: {{renotify_s: 3600}}
receivers:
  - {{name: fast, type: pagerduty, routing_key: {KEY}}}
  - {{name: slow, type: pagerduty, routing_key: {KEY}}}
  - {{name: ml, type: pagerduty, routing_key: {KEY}}}
routes:
  - {{match: {{severity: critical}}, receiver: fast, renotify_s: 600, continue: true}}
  - {{match: {{severity: critical}}, receiver: slow}}
  - {{match: {{domain: prompt_model}}, receiver: ml}}
"""


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def signal(ts: float, state: str = "firing") -> Signal:
    return Signal(ts, "bot", "auth_failure_rate", "api", "rate", state,  # type: ignore[arg-type]
                  0.3, 0.001, 9.0, Direction.UP, page_alone=True)  # fmt: skip


def rows(store: Store) -> list[tuple[str, str]]:
    return list(store.conn.execute("SELECT receiver, action FROM notify_outbox ORDER BY id"))


def test_routes_resolves_and_per_route_reminders(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    settings = load_settings(cfg)
    store = Store(tmp_path / "state.db")
    clock = Clock()
    paging = Paging(settings, store, CollectorRegistry(), structlog.get_logger(), clock)
    corr = Correlator()

    def apply(updates: list[IncidentUpdate]) -> None:
        with store.transaction() as conn:
            for upd in updates:
                paging.enqueue(conn, upd, upd.incident.to_record())

    (opened,) = [u for u in corr.on_signal(signal(T0)) if u.notify == "trigger"]
    assert opened.incident.severity == "critical" and opened.incident.domain == "provider"
    apply([opened])
    # critical → fast (continue) and slow; the prompt_model route does not match.
    assert rows(store) == [("fast", "trigger"), ("slow", "trigger")]

    reminder = replace(opened, action="renotify")
    clock.now = T0 + 700  # past fast's 600 s, before the global 3600 s
    apply([reminder])
    assert rows(store)[2:] == [("fast", "trigger")]
    clock.now = T0 + 1000  # fast was reminded 300 s ago: nothing is due
    apply([reminder])
    assert len(rows(store)) == 3
    clock.now = T0 + 3700
    apply([reminder])
    assert rows(store)[3:] == [("fast", "trigger"), ("slow", "trigger")]

    # The resolve goes to every receiver that got the trigger, even if routes changed since.
    resolved = replace(opened, action="resolve", notify="resolve")
    paging.router = type(paging.router)(settings.receivers, [])  # re-route: defaults only
    apply([resolved])
    assert sorted(rows(store)[5:]) == [("fast", "resolve"), ("slow", "resolve")]
    store.close()


def test_test_pages_to_one_receiver_are_one_per_interval(tmp_path: Path) -> None:
    """Probe finding: with no token, 300 requests queued 300 test trigger-and-resolve pairs
    to a real pager. Now one per receiver per `TEST_PAGE_INTERVAL_S`; others wait."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    store = Store(tmp_path / "state.db")
    clock = Clock()
    paging = Paging(load_settings(cfg), store, CollectorRegistry(), structlog.get_logger(), clock)
    paging.test_page("fast", "alice")
    clock.now += 4.0
    with pytest.raises(TooManyTestPages) as too_soon:
        paging.test_page("fast", "mallory")
    assert too_soon.value.retry_after_s == pytest.approx(TEST_PAGE_INTERVAL_S - 4.0)
    paging.test_page("slow", "alice")  # another receiver has its own interval
    clock.now += TEST_PAGE_INTERVAL_S
    paging.test_page("fast", "alice")
    pairs = [("fast", "trigger"), ("fast", "resolve"), ("slow", "trigger"), ("slow", "resolve")]
    assert rows(store) == [*pairs, ("fast", "trigger"), ("fast", "resolve")]
