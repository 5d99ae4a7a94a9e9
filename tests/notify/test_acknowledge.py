"""What each receiver gets for an acknowledgement made in llm-oncall (issue 13)."""

from __future__ import annotations

from daemon.notify import render
from daemon.notify.opsgenie import build_close
from daemon.notify.pagerduty import build_event
from daemon.notify.slack import build_message
from tests.notify.helpers import incident, note

ACK = {"by": "alice", "at": "2026-11-27T03:05:00Z", "comment": "looking at the provider"}


def test_pagerduty_acknowledge_is_the_key_and_the_action() -> None:
    n = note(incident(acknowledged=ACK), "acknowledge", 0.0)
    event = build_event(n, "k" * 32)
    assert event == {
        "routing_key": "k" * 32,
        "event_action": "acknowledge",
        "dedup_key": "llm-oncall/support-bot/inc-1",
    }


def test_opsgenie_acknowledge_names_who_and_why() -> None:
    body = build_close(note(incident(acknowledged=ACK), "acknowledge", 0.0))
    assert body["user"] == "alice"
    assert body["note"] == (
        "llm-oncall: incident inc-1 acknowledged by alice: looking at the provider"
    )
    resolved = incident(status="resolved", resolved_by={"by": "bob", "at": "x", "comment": ""})
    assert build_close(note(resolved, "resolve", 0.0))["note"].endswith("resolved by bob")
    # Resolved by the daemon itself (signals quiet): no person is named.
    assert build_close(note(incident(), "resolve", 0.0))["user"] == "llm-oncall"


def test_slack_and_title_say_who_acknowledged() -> None:
    n = note(incident(acknowledged=ACK), "acknowledge", 0.0)
    assert render.title(n).startswith("[ACKNOWLEDGED by alice] [critical]")
    text = str(build_message(n))
    assert "*Acknowledged* by alice" in text and "looking at the provider" in text
