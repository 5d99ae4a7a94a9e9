from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import generate_latest

from config.receivers import NotifyConfig
from daemon.notify import Outbox, RouteTarget
from daemon.notify.http import Sender
from daemon.notify.opsgenie import OpsgenieSender
from daemon.notify.pagerduty import PagerDutySender
from daemon.notify.slack import SlackSender
from daemon.notify.webhook import WebhookSender
from tests.notify.conftest import url
from tests.notify.fakes import FakeClock, FakeHTTP, FakeOpsgenie, FakePagerDuty, Fault
from tests.notify.helpers import (
    OG_KEY,
    PD_KEY,
    counter,
    incident,
    make_worker,
    note,
    open_db,
    wait_until,
)

N = "llm_oncall_notifications_total"


def enqueue_pairs(ob: Outbox, clock: FakeClock, count: int, receivers: list[object]) -> None:
    for i in range(count):
        inc = incident(i)
        ob.enqueue(ob.conn, note(inc, "trigger", clock()), receivers)  # type: ignore[arg-type]
        ob.conn.commit()
    for i in range(count):
        inc = incident(i, status="resolved")
        ob.enqueue(ob.conn, note(inc, "resolve", clock()), receivers)  # type: ignore[arg-type]
        ob.conn.commit()


async def test_outage_then_recovery_delivers_everything_in_order(
    pd: FakePagerDuty, clock: FakeClock
) -> None:
    ob = Outbox(open_db(), clock)
    pd.down = Fault(503)
    worker, reg, _ = make_worker(ob, {"sre": PagerDutySender("sre", PD_KEY, url(pd))}, clock)
    enqueue_pairs(ob, clock, 10, ["sre"])
    worker.start()
    await wait_until(lambda: pd.requests >= 25)  # every trigger has been failing a while
    assert pd.accepted == []
    pd.down = None
    assert await worker.drain(timeout=20)
    await worker.stop()
    by_key = pd.actions_by_key()
    assert len(by_key) == 10
    assert all(actions == ["trigger", "resolve"] for actions in by_key.values()), by_key
    assert counter(reg, N, receiver="sre", action="trigger", result="sent") == 10
    assert counter(reg, N, receiver="sre", action="resolve", result="sent") == 10
    assert counter(reg, N, receiver="sre", action="trigger", result="retried") == 10
    assert counter(reg, "llm_oncall_outbox_depth", receiver="sre") == 0


async def test_resolve_never_overtakes_a_retried_trigger(
    pd: FakePagerDuty, clock: FakeClock
) -> None:
    ob = Outbox(open_db(), clock)
    pd.fail_next(3, Fault(500))
    worker, _, _ = make_worker(ob, {"sre": PagerDutySender("sre", PD_KEY, url(pd))}, clock)
    inc = incident()
    ob.enqueue(ob.conn, note(inc, "trigger", clock()), ["sre"])
    ob.enqueue(ob.conn, note(inc, "resolve", clock()), ["sre"])
    ob.conn.commit()
    assert await worker.drain(timeout=10)
    assert pd.requests == 5
    assert [r.body["event_action"] for r in pd.accepted] == ["trigger", "resolve"]


async def test_retry_after_is_honoured(pd: FakePagerDuty, clock: FakeClock) -> None:
    ob = Outbox(open_db(), clock)
    pd.fail_next(1, Fault(429, retry_after="120"))
    worker, reg, _ = make_worker(ob, {"sre": PagerDutySender("sre", PD_KEY, url(pd))}, clock)
    ob.enqueue(ob.conn, note(incident(), "trigger", clock()), ["sre"])
    ob.conn.commit()
    t0 = time.monotonic()
    assert await worker.drain(timeout=10)
    assert time.monotonic() - t0 < 5  # simulated time, no real two-minute wait
    first, second = pd.request_times
    assert 120 <= second - first < 126
    outcome = "llm_oncall_notification_attempts_total"
    assert counter(reg, outcome, receiver="sre", outcome="rate_limited") == 1
    assert counter(reg, outcome, receiver="sre", outcome="ok") == 1


async def test_backoff_is_exponential_with_full_jitter(pd: FakePagerDuty, clock: FakeClock) -> None:
    ob = Outbox(open_db(), clock)
    pd.fail_next(6, Fault(502))
    cfg = NotifyConfig(base_backoff_s=1, max_backoff_s=8, timeout_s=2)
    worker, _, _ = make_worker(
        ob, {"sre": PagerDutySender("sre", PD_KEY, url(pd))}, clock, config=cfg
    )
    ob.enqueue(ob.conn, note(incident(), "trigger", clock()), ["sre"])
    ob.conn.commit()
    assert await worker.drain(timeout=10)
    gaps = [b - a for a, b in zip(pd.request_times, pd.request_times[1:], strict=False)]
    caps = [1, 2, 4, 8, 8, 8]
    assert len(gaps) == 6
    # each wait is uniform in [0, cap] (plus the poll granularity of the injected sleep)
    assert all(0 <= g <= cap + 0.01 for g, cap in zip(gaps, caps, strict=True)), gaps


async def test_400_is_a_dead_letter_in_metrics_and_goes_to_the_fallback(
    pd: FakePagerDuty, hook: FakeHTTP, clock: FakeClock
) -> None:
    ob = Outbox(open_db(), clock)
    senders = {
        "sre": PagerDutySender("sre", PD_KEY, url(pd)),
        "chat": SlackSender("chat", url(hook) + "/hook"),
    }
    pd.fail_next(1, Fault(400, body='{"status":"invalid event"}'))
    worker, reg, logs = make_worker(ob, senders, clock)
    inc = incident()
    ob.enqueue(ob.conn, note(inc, "trigger", clock()), [RouteTarget("sre", fallback="chat")])
    ob.enqueue(ob.conn, note(inc, "resolve", clock()), [RouteTarget("sre", fallback="chat")])
    ob.conn.commit()
    assert await worker.drain(timeout=10)
    assert pd.requests == 1 and pd.accepted == []
    assert [r.body["text"].startswith("[RESOLVED]") for r in hook.accepted] == [False, True]
    assert counter(reg, N, receiver="sre", action="trigger", result="dead") == 1
    assert counter(reg, N, receiver="chat", action="trigger", result="sent") == 1
    text = generate_latest(reg).decode()
    assert (
        'llm_oncall_notifications_total{action="trigger",receiver="sre",result="dead"} 1.0' in text
    )
    dead = ob.dead_letters()[0]
    assert dead.receiver == "sre" and "HTTP 400" in (dead.last_error or "")
    out = logs.getvalue()
    assert "notification dead letter" in out and '"receiver": "sre"' in out


async def test_max_age_dead_letters(pd: FakePagerDuty, clock: FakeClock) -> None:
    ob = Outbox(open_db(), clock)
    pd.down = Fault(500)
    cfg = NotifyConfig(max_age_s=600, base_backoff_s=1, max_backoff_s=300, timeout_s=2)
    worker, reg, _ = make_worker(
        ob, {"sre": PagerDutySender("sre", PD_KEY, url(pd))}, clock, config=cfg
    )
    ob.enqueue(ob.conn, note(incident(), "trigger", clock()), ["sre"])
    ob.conn.commit()
    assert await worker.drain(timeout=10)
    (dead,) = ob.dead_letters()
    assert "max_age" in (dead.last_error or "")
    assert clock() - dead.created_at <= 600
    assert counter(reg, N, receiver="sre", action="trigger", result="dead") == 1


async def test_max_attempts_dead_letters(pd: FakePagerDuty, clock: FakeClock) -> None:
    ob = Outbox(open_db(), clock)
    pd.down = Fault(503)
    cfg = NotifyConfig(max_attempts=3, timeout_s=2)
    worker, _, _ = make_worker(
        ob, {"sre": PagerDutySender("sre", PD_KEY, url(pd))}, clock, config=cfg
    )
    ob.enqueue(ob.conn, note(incident(), "trigger", clock()), ["sre"])
    ob.conn.commit()
    assert await worker.drain(timeout=10)
    assert pd.requests == 3 and "gave up after 3 attempts" in (
        ob.dead_letters()[0].last_error or ""
    )


async def test_timeouts_are_retried(pd: FakePagerDuty, clock: FakeClock) -> None:
    ob = Outbox(open_db(), clock)
    pd.fail_next(1, Fault(status=0, sleep_s=1.0))
    sender = PagerDutySender("sre", PD_KEY, url(pd), timeout_s=0.2)
    worker, reg, _ = make_worker(ob, {"sre": sender}, clock)
    ob.enqueue(ob.conn, note(incident(), "trigger", clock()), ["sre"])
    ob.conn.commit()
    assert await worker.drain(timeout=10)
    assert len(pd.accepted) == 1
    attempts = "llm_oncall_notification_attempts_total"
    assert counter(reg, attempts, receiver="sre", outcome="timeout") == 1


async def test_rate_limit_spaces_requests(pd: FakePagerDuty, clock: FakeClock) -> None:
    ob = Outbox(open_db(), clock)
    sender = PagerDutySender("sre", PD_KEY, url(pd), rate_limit_per_min=60)  # burst 15, 1/s
    worker, _, _ = make_worker(ob, {"sre": sender}, clock)
    for i in range(25):
        ob.enqueue(ob.conn, note(incident(i), "trigger", clock()), ["sre"])
    ob.conn.commit()
    assert await worker.drain(timeout=10)
    times = sorted(r.t for r in pd.accepted)
    assert len(times) == 25
    assert times[-1] - times[0] >= 9.5  # 15 at once, then one a second


async def test_secrets_never_logged(
    pd: FakePagerDuty, og: FakeOpsgenie, hook: FakeHTTP, clock: FakeClock
) -> None:
    slack_url = url(hook) + "/hook"
    ob = Outbox(open_db(), clock)
    senders = {
        "sre": PagerDutySender("sre", PD_KEY, url(pd)),
        "ml": OpsgenieSender("ml", OG_KEY, url(og)),
        "chat": SlackSender("chat", slack_url),
    }
    # the receivers echo the key back in their errors; we must not log it
    pd.fail_next(1, Fault(500, body=f"bad key {PD_KEY}"))
    pd.fail_next(1, Fault(400, body=f"invalid routing_key {PD_KEY}"))
    og.fail_next(1, Fault(403, body=f"GenieKey {OG_KEY} is disabled"))
    hook.fail_next(1, Fault(404, body=f"no_service {slack_url}"))
    worker, _, logs = make_worker(ob, senders, clock)
    ob.enqueue(ob.conn, note(incident(), "trigger", clock()), ["sre", "ml", "chat"])
    ob.conn.commit()
    assert await worker.drain(timeout=10)
    out = logs.getvalue()
    assert "notification dead letter" in out and "notification retry" in out
    for secret in (PD_KEY, OG_KEY, slack_url, "/hook"):
        assert secret not in out
    for row in ob.rows():
        for secret in (PD_KEY, OG_KEY, slack_url):
            assert secret not in (row.last_error or "")


async def test_wakes_promptly_on_enqueue_and_stops_cleanly(pd: FakePagerDuty) -> None:
    real = FakeClock()
    real.t = time.time()
    ob = Outbox(open_db(), time.time)
    cfg = NotifyConfig(poll_interval_s=30, timeout_s=2)
    worker, reg, _ = make_worker(
        ob, {"sre": PagerDutySender("sre", PD_KEY, url(pd))}, real, config=cfg
    )
    worker.clock = time.time
    worker.sleep = asyncio.sleep
    worker.start()
    await asyncio.sleep(0.05)
    t0 = time.monotonic()
    ob.enqueue(ob.conn, note(incident(), "trigger", time.time()), ["sre"])
    ob.conn.commit()
    await wait_until(lambda: bool(pd.accepted))
    assert time.monotonic() - t0 < 1.0  # not the 30 s poll
    await worker.stop(timeout=2)
    await worker.stop(timeout=2)  # idempotent
    assert ob.rows()[0].state == "sent"
    assert (
        reg.get_sample_value("llm_oncall_notification_delivery_seconds_count", {"receiver": "sre"})
        or 0
    ) == 1


async def test_stop_mid_delivery_releases_the_row(pd: FakePagerDuty, clock: FakeClock) -> None:
    ob = Outbox(open_db(), clock)
    pd.fail_next(1, Fault(status=0, sleep_s=3.0))
    cfg = NotifyConfig(timeout_s=1)
    worker, _, _ = make_worker(
        ob, {"sre": PagerDutySender("sre", PD_KEY, url(pd), timeout_s=5)}, clock, config=cfg
    )
    ob.enqueue(ob.conn, note(incident(), "trigger", clock()), ["sre"])
    ob.conn.commit()
    worker.start()
    await wait_until(lambda: pd.requests > 0)
    await worker.stop(timeout=0.1)
    (row,) = ob.rows()
    assert row.state == "pending" and row.attempts == 0


async def test_recovery_releases_rows_sleeping_in_backoff(
    pd: FakePagerDuty, clock: FakeClock
) -> None:
    ob = Outbox(open_db(), clock)
    pd.down = Fault(503)
    cfg = NotifyConfig(base_backoff_s=1, max_backoff_s=600, timeout_s=2)
    worker, _, _ = make_worker(
        ob, {"sre": PagerDutySender("sre", PD_KEY, url(pd))}, clock, config=cfg
    )
    for i in range(20):
        ob.enqueue(ob.conn, note(incident(i), "trigger", clock()), ["sre"])
    ob.conn.commit()
    worker.start()
    await wait_until(lambda: pd.requests >= 150)  # backoffs now reach minutes
    pd.down = None
    assert await worker.drain(timeout=10)
    await worker.stop()
    times = sorted(r.t for r in pd.accepted)
    assert len(times) == 20 and times[-1] - times[0] < 1.0  # all at once after the first


@pytest.mark.parametrize("kind", ["webhook", "opsgenie"])
async def test_a_429_pauses_receivers_without_a_rate_limit(
    kind: str, hook: FakeHTTP, og: FakeOpsgenie, clock: FakeClock
) -> None:
    """Probe finding: the 429 pause lived in the receiver's token bucket, which webhook and
    Opsgenie receivers lack by default, so their other rows kept going out during the pause
    (11 webhook requests in a 5 s Retry-After, 1 for PagerDuty). Now every kind pauses."""
    ob = Outbox(open_db(), clock)
    fake: FakeHTTP | FakeOpsgenie = hook if kind == "webhook" else og
    sender: Sender = (
        WebhookSender("rx", url(hook) + "/hook")
        if kind == "webhook"
        else OpsgenieSender("rx", OG_KEY, url(og))
    )
    assert sender.rate_limit_per_min is None
    fake.fail_next(1, Fault(429, retry_after="120"))
    # One request at a time, so the rows after the 429'd one are claimed after it answered.
    cfg = NotifyConfig(base_backoff_s=1, max_backoff_s=60, timeout_s=2, concurrency=1)
    worker, _, _ = make_worker(ob, {"rx": sender}, clock, config=cfg)
    for i in range(4):
        ob.enqueue(ob.conn, note(incident(i), "trigger", clock()), ["rx"])
    ob.conn.commit()
    assert await worker.drain(timeout=10)
    first, *rest = fake.request_times
    assert len(rest) == 4  # the retried row and the three that waited
    assert all(t - first >= 120 for t in rest), [t - first for t in rest]
    assert len(fake.accepted) == 4


def test_metrics_export_no_created_gauges() -> None:
    """prometheus_client's `_created` series are not exported: in the text format they are
    gauges of their own (`llm_oncall_notifications_created`) with the counter's HELP text."""
    from prometheus_client import CollectorRegistry

    from daemon.notify.metrics import NotifyMetrics

    reg = CollectorRegistry()
    m = NotifyMetrics(reg)
    m.notifications.labels(receiver="pd", action="trigger", result="sent").inc()
    m.attempts.labels(receiver="pd", outcome="ok").inc()
    m.delivery_seconds.labels(receiver="pd").observe(0.2)
    text = generate_latest(reg).decode()
    assert "llm_oncall_notifications_total{" in text
    assert "_created" not in text
