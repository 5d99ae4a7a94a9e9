from __future__ import annotations

import pytest

from daemon.notify import Outbox, OutboxBusy, RouteTarget
from tests.notify.fakes import FakeClock
from tests.notify.helpers import incident, note, open_db


def test_init_schema_is_idempotent() -> None:
    conn = open_db()
    Outbox.init_schema(conn)
    Outbox.init_schema(conn)


def test_enqueue_rides_the_callers_transaction() -> None:
    conn = open_db()
    ob = Outbox(conn, FakeClock())
    conn.execute("CREATE TABLE incidents (id TEXT)")
    conn.commit()
    conn.execute("INSERT INTO incidents VALUES ('inc-1')")
    ob.enqueue(conn, note(incident(), "trigger", 10.0), ["sre", "chat"])
    assert conn.in_transaction  # not committed by enqueue
    conn.rollback()
    assert ob.rows() == [] and conn.execute("SELECT * FROM incidents").fetchall() == []
    conn.execute("INSERT INTO incidents VALUES ('inc-1')")
    ids = ob.enqueue(conn, note(incident(), "trigger", 10.0), ["sre", "chat"])
    conn.commit()
    rows = ob.rows()
    assert [r.id for r in rows] == ids and {r.receiver for r in rows} == {"sre", "chat"}
    assert all(r.state == "pending" and r.seq == 1 and r.attempts == 0 for r in rows)
    assert rows[0].notification().incident["summary"] == incident()["summary"]


def test_worker_side_refuses_inside_another_transaction() -> None:
    conn = open_db()
    ob = Outbox(conn, FakeClock())
    ob.enqueue(conn, note(incident(), "trigger", 10.0), ["sre"])
    with pytest.raises(OutboxBusy):
        ob.claim([1])
    conn.commit()
    assert [r.id for r in ob.claim([1])] == [1]


def test_only_the_head_of_each_receiver_and_key_is_eligible() -> None:
    conn = open_db()
    ob = Outbox(conn, FakeClock())
    a, b = incident(1), incident(2)
    ob.enqueue(conn, note(a, "trigger", 10.0), ["sre"])
    ob.enqueue(conn, note(a, "resolve", 11.0), ["sre"])
    ob.enqueue(conn, note(b, "trigger", 12.0), ["sre"])
    conn.commit()
    heads = ob.eligible(now=100.0, limit=10)
    assert [(r.incident_id, r.action) for r in heads] == [
        ("inc-1", "trigger"),
        ("inc-2", "trigger"),
    ]
    (t,) = ob.claim([heads[0].id])
    # in flight: the resolve still waits
    assert [r.incident_id for r in ob.eligible(100.0, 10)] == ["inc-2"]
    # in backoff: the resolve still waits
    ob.mark_retry(t.id, next_attempt_at=500.0, error="HTTP 503")
    assert [r.incident_id for r in ob.eligible(100.0, 10)] == ["inc-2"]
    assert ob.next_due_at() == 12.0
    (t,) = ob.claim([r.id for r in ob.eligible(600.0, 10) if r.incident_id == "inc-1"])
    ob.mark_sent(t.id, 600.0)
    assert [(r.incident_id, r.action) for r in ob.eligible(600.0, 10)] == [
        ("inc-1", "resolve"),
        ("inc-2", "trigger"),
    ]


def test_requeue_inflight_after_crash(tmp_path: object) -> None:
    conn = open_db()
    ob = Outbox(conn, FakeClock())
    ob.enqueue(conn, note(incident(), "trigger", 10.0), ["sre"])
    conn.commit()
    ob.claim([1])
    assert ob.rows()[0].state == "inflight"
    assert Outbox(conn, FakeClock()).requeue_inflight() == 1
    assert ob.rows()[0].state == "pending" and ob.rows()[0].attempts == 1


def test_dead_row_moves_with_its_followers_to_the_fallback() -> None:
    conn = open_db()
    ob = Outbox(conn, FakeClock())
    inc = incident()
    ob.enqueue(conn, note(inc, "trigger", 10.0), [RouteTarget("sre", fallback="chat")])
    ob.enqueue(conn, note(inc, "resolve", 11.0), [RouteTarget("sre", fallback="chat")])
    conn.commit()
    (t,) = ob.claim([1])
    moved = ob.mark_dead(t, "HTTP 400: bad", now=20.0)
    assert [r.action for r in moved] == ["trigger", "resolve"]
    chat = ob.rows(receiver="chat")
    assert [(r.action, r.state, r.fallback) for r in chat] == [
        ("trigger", "pending", None),
        ("resolve", "pending", None),
    ]
    assert chat[0].seq < chat[1].seq and chat[0].created_at == 10.0
    assert [r.state for r in ob.rows(receiver="sre")] == ["dead", "dead"]
    # a later action for the same key follows the trigger to the fallback
    ob.enqueue(conn, note(inc, "acknowledge", 30.0), ["sre"])
    conn.commit()
    assert [r.action for r in ob.rows(receiver="chat")] == ["trigger", "resolve", "acknowledge"]
    assert ob.dead_letters()[0].last_error == "HTTP 400: bad"


def test_depth_and_oldest() -> None:
    conn = open_db()
    ob = Outbox(conn, FakeClock())
    ob.enqueue(conn, note(incident(1), "trigger", 10.0), ["sre", "chat"])
    ob.enqueue(conn, note(incident(2), "trigger", 5.0), ["sre"])
    conn.commit()
    assert ob.depth_by_receiver() == {"sre": 2, "chat": 1}
    assert ob.oldest_pending_created_at() == 5.0
    assert ob.unfinished_count() == 3


def test_prune_keeps_the_trigger_of_a_page_still_open() -> None:
    """A resolve goes to the receivers whose trigger row is in the outbox: pruning the sent
    trigger of an incident open longer than keep_sent_s would send its resolve nowhere (and
    let a reload drop the receiver). The last trigger stays until a resolve follows it."""
    clock = FakeClock(1000.0)
    conn = open_db()
    ob = Outbox(conn, clock)

    def send(inc: dict[str, object], action: str, receivers: list[str]) -> None:
        ids = ob.enqueue(conn, note(inc, action, clock()), receivers)  # type: ignore[arg-type]
        conn.commit()
        for row in ob.claim(ids):
            ob.mark_sent(row.id, clock())

    still_open, resolved = incident(1), incident(2)
    send(still_open, "trigger", ["sre", "chat"])
    send(resolved, "trigger", ["sre"])
    send(still_open, "trigger", ["sre"])  # a reminder: the first trigger can go
    send(resolved, "resolve", ["sre"])
    clock.t += 10
    assert ob.prune(clock()) == 3
    left = [(r.incident_id, r.receiver, r.action, r.seq) for r in ob.rows()]
    assert left == [("inc-1", "chat", "trigger", 1), ("inc-1", "sre", "trigger", 2)]
    send(still_open, "resolve", ["sre", "chat"])
    clock.t += 10
    assert ob.prune(clock()) == 4 and ob.rows() == []
