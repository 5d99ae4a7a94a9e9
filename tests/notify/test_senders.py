from __future__ import annotations

import email.utils
from typing import Any

import aiohttp
import orjson
import pytest

from daemon.notify import render
from daemon.notify.http import cap_key, classify_status, parse_retry_after, truncate
from daemon.notify.opsgenie import OpsgenieSender, build_alert
from daemon.notify.pagerduty import MAX_EVENT_BYTES, PagerDutySender, build_event
from daemon.notify.slack import SlackSender, build_message
from daemon.notify.webhook import MAX_BODY_BYTES as MAX_WEBHOOK_BODY_BYTES
from daemon.notify.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookSender, verify
from tests.notify.conftest import url
from tests.notify.fakes import FakeClock, FakeHTTP, FakeOpsgenie, FakePagerDuty, Fault
from tests.notify.helpers import OG_KEY, PD_KEY, incident, note

RUNBOOK = {
    "url": "https://runbooks.example.com/support-bot",
    "dashboard": "https://g.example.com/d/1",
    "owner": "team-ml",
}


def test_classify_status() -> None:
    assert classify_status(202).ok
    for s in (408, 429, 500, 502, 503, 529):
        r = classify_status(s, 3.0)
        assert not r.ok and r.retry and r.retry_after == 3.0
    for s in (400, 401, 403, 404, 410, 413, 422):
        r = classify_status(s, 3.0)
        assert not r.ok and not r.retry and r.retry_after is None


def test_parse_retry_after_seconds_and_http_date() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after(" 1.5 ", now) == 1.5
    date = email.utils.formatdate(now + 90, usegmt=True)
    assert parse_retry_after(date, now) == pytest.approx(90, abs=1)
    assert parse_retry_after(email.utils.formatdate(now - 50, usegmt=True), now) == 0
    assert parse_retry_after("soon", now) is None and parse_retry_after(None, now) is None


def test_truncate_counts_utf16_and_never_splits_a_character() -> None:
    assert truncate("abc", 3) == "abc"
    s = truncate("a" * 2000, 1024)
    assert len(s) == 1024 and s.endswith("…")
    emoji = truncate("🚨" * 600, 1024)
    assert len(emoji.encode("utf-16-le")) // 2 <= 1024
    assert emoji.rstrip("…") == "🚨" * len(emoji.rstrip("…"))


def test_cap_key_is_stable_and_bounded() -> None:
    long = "k" * 600
    assert len(cap_key(long, 255)) == 255 and cap_key(long, 255) == cap_key(long, 255)
    assert cap_key(long, 255) != cap_key(long + "x", 255)
    assert cap_key("short", 255) == "short"


def test_pagerduty_trigger_event_shape() -> None:
    inc = incident()
    ev = build_event(note(inc, "trigger", 1.0, RUNBOOK), PD_KEY, "https://oncall.example.com")
    assert ev["routing_key"] == PD_KEY and ev["event_action"] == "trigger"
    assert ev["dedup_key"] == inc["dedup_key"] and ev["client"] == "llm-oncall"
    p = ev["payload"]
    assert p["severity"] == "critical" and p["source"] == "llm-oncall/support-bot"
    assert p["component"] == "support-bot" and p["group"] == "provider" and p["class"] == "api"
    assert p["timestamp"] == inc["opened_at"]
    cd = p["custom_details"]
    assert cd["triage"][0]["evidence"].startswith("provider_error_rate 31%")
    assert cd["signals"][0]["value"] == 0.31 and cd["signals"][0]["baseline"] == 0.01
    assert cd["attribution"][0]["value"] == "gpt-x" and cd["runbook"]["owner"] == "team-ml"
    assert {
        "href": "https://oncall.example.com/incidents/inc-1",
        "text": "Incident in llm-oncall",
    } in ev["links"]
    assert ev["links"][0] == {"href": RUNBOOK["url"], "text": "Runbook"}
    _, errors = FakePagerDuty.validate(orjson.dumps(ev), PD_KEY)
    assert errors == []


def test_pagerduty_links_a_test_page_to_no_incident() -> None:
    """A test page's id is not an incident the daemon knows: its link would be a 404."""
    inc = incident() | {"test": True}
    ev = build_event(note(inc, "trigger", 1.0, RUNBOOK), PD_KEY, "https://oncall.example.com")
    assert [link["text"] for link in ev["links"]] == ["Runbook", "Dashboard"]


def test_pagerduty_resolve_carries_only_key_and_action() -> None:
    ev = build_event(note(incident(), "resolve", 1.0), PD_KEY)
    assert set(ev) == {"routing_key", "dedup_key", "event_action"}


def test_pagerduty_limits_summary_dedup_and_size() -> None:
    inc = incident(summary="x" * 5000, dedup_key="d" * 400)
    inc["signals"] = inc["signals"] * 3000
    inc["triage"][0]["evidence"] = "e" * 300_000
    ev = build_event(note(inc, "trigger", 1.0), PD_KEY)
    raw = orjson.dumps(ev)
    assert len(raw) <= MAX_EVENT_BYTES
    assert len(ev["payload"]["summary"]) <= 1024 and len(ev["dedup_key"]) <= 255
    assert "truncated" in ev["payload"]["custom_details"]
    _, errors = FakePagerDuty.validate(raw, PD_KEY)
    assert errors == []
    # the resolve maps the long key to the same capped key
    assert build_event(note(inc, "resolve", 2.0), PD_KEY)["dedup_key"] == ev["dedup_key"]


async def test_pagerduty_sender_against_fake(
    pd: FakePagerDuty, session: aiohttp.ClientSession
) -> None:
    s = PagerDutySender("sre", PD_KEY, url(pd))
    r = await s.send(session, note(incident(), "trigger", 1.0))
    assert r.ok and r.status == 202
    pd.fail_next(1, Fault(429, retry_after="7"))
    r = await s.send(session, note(incident(), "resolve", 2.0))
    assert not r.ok and r.retry and r.retry_after == 7 and r.status == 429
    bad = PagerDutySender("sre", "x" * 31 + "y", url(pd))
    r = await bad.send(session, note(incident(), "trigger", 1.0))
    assert not r.ok and not r.retry and r.status == 400 and "unknown routing_key" in (r.error or "")
    assert "x" * 31 not in (r.error or "")
    assert PD_KEY not in repr(s)


async def test_timeout_and_connection_errors_retry(
    pd: FakePagerDuty, session: aiohttp.ClientSession
) -> None:
    pd.fail_next(1, Fault(status=0, sleep_s=1.0))
    s = PagerDutySender("sre", PD_KEY, url(pd), timeout_s=0.2)
    r = await s.send(session, note(incident(), "trigger", 1.0))
    assert not r.ok and r.retry and r.status is None and "timeout" in (r.error or "")
    closed = PagerDutySender("sre", PD_KEY, "http://127.0.0.1:9")
    r = await closed.send(session, note(incident(), "trigger", 1.0))
    assert not r.ok and r.retry and r.status is None


def test_opsgenie_alert_shape_and_limits() -> None:
    inc = incident(summary="s" * 500, dedup_key="a" * 700)
    inc["attribution"] = [{"label": f"l{i}", "value": "v" * 900} for i in range(30)]
    body = build_alert(
        note(inc, "trigger", 1.0, RUNBOOK),
        [{"type": "team", "name": "ml"}],
        [f"tag{i}" for i in range(30)],
    )
    assert FakeOpsgenie.validate_create(body) == []
    assert len(body["message"]) <= 130 and len(body["alias"]) <= 250
    assert body["priority"] == "P1" and body["entity"] == "support-bot"
    assert body["source"] == "llm-oncall" and len(body["tags"]) == 20
    assert all(isinstance(v, str) for v in body["details"].values())
    assert sum(len(k) + len(v) for k, v in body["details"].items()) <= 8000
    assert body["responders"] == [{"type": "team", "name": "ml"}]
    for sev, prio in (("warning", "P3"), ("watch", "P5")):
        assert build_alert(note(incident(severity=sev), "trigger", 1.0))["priority"] == prio


async def test_opsgenie_create_close_and_confirm(
    og: FakeOpsgenie, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    s = OpsgenieSender("ml", OG_KEY, url(og), confirm=True, sleep=clock.sleep)
    inc = incident()
    assert (await s.send(session, note(inc, "trigger", 1.0))).ok
    assert (await s.send(session, note(inc, "resolve", 2.0))).ok
    create, close = og.accepted
    assert create.path == "/v2/alerts" and create.body["alias"] == inc["dedup_key"]
    assert close.body["_verb"] == "close" and close.body["_identifierType"] == "alias"
    assert close.body["_identifier"] == inc["dedup_key"]
    assert og.status_polls == 2
    og.fail_processing = True
    r = await s.send(session, note(inc, "trigger", 3.0))
    assert not r.ok and r.retry and "Alert does not exist" in (r.error or "")
    r = await s.send(session, note(inc, "acknowledge", 3.0))
    assert not r.ok and not r.retry
    wrong = OpsgenieSender("ml", "not-the-key", url(og))
    r = await wrong.send(session, note(inc, "trigger", 1.0))
    assert not r.ok and not r.retry and r.status == 401
    assert "not-the-key" not in (r.error or "")


def test_slack_message_is_readable() -> None:
    msg = build_message(note(incident(), "trigger", 1.0, RUNBOOK))
    text = orjson.dumps(msg).decode()
    assert msg["text"].startswith("[critical] support-bot:")
    kinds = [b["type"] for b in msg["blocks"]]
    assert kinds[0] == "header" and kinds[-1] == "context"
    assert "*Triage*" in text and "provider_error_rate 31%" in text
    assert "*Attribution*" in text and "model=gpt-x (93% of anomalous traffic" in text
    assert f"<{RUNBOOK['url']}|Runbook>" in text and "*Severity*" in text and "*Domain*" in text
    assert len(msg["blocks"][0]["text"]["text"]) <= 150
    resolved = build_message(note(incident(), "resolve", 2.0))
    assert resolved["text"].startswith("[RESOLVED]")
    evil = incident(summary="<!channel> & <https://evil|click>")
    evil_msg = build_message(note(evil, "trigger", 1.0))
    mrkdwn = [evil_msg["text"]] + [
        b["text"]["text"] for b in evil_msg["blocks"][1:] if b.get("text")
    ]
    assert not any("<!channel>" in t for t in mrkdwn)


async def test_slack_sender_posts(hook: FakeHTTP, session: aiohttp.ClientSession) -> None:
    s = SlackSender("chat", url(hook) + "/hook")
    assert (await s.send(session, note(incident(), "trigger", 1.0))).ok
    assert hook.accepted[0].body["blocks"][0]["type"] == "header"
    assert "hook" not in repr(s)


async def test_webhook_signature_verifies(hook: FakeHTTP, session: aiohttp.ClientSession) -> None:
    s = WebhookSender(
        "hook",
        url(hook) + "/hook",
        hmac_secret="s3cr3t",
        headers={"Authorization": "Bearer tok"},
        wall_clock=lambda: 1_800_000_123,
    )
    inc = incident()
    assert (await s.send(session, note(inc, "trigger", 1.0, RUNBOOK))).ok
    got = hook.accepted[0]
    raw = hook.raw[0]
    assert verify("s3cr3t", raw, got.headers[SIGNATURE_HEADER])
    assert not verify("wrong", raw, got.headers[SIGNATURE_HEADER])
    assert not verify("s3cr3t", raw + b" ", got.headers[SIGNATURE_HEADER])
    assert got.headers[TIMESTAMP_HEADER] == "1800000123" == str(got.body["sent_at"])
    assert got.headers["Authorization"] == "Bearer tok"
    assert got.body["notification"]["action"] == "trigger"
    assert got.body["notification"]["dedup_key"] == inc["dedup_key"]
    assert got.body["incident"]["summary"] == inc["summary"]
    assert got.body["notification"]["runbook"] == RUNBOOK


def change_flood(status: str = "open") -> dict[str, Any]:
    """Probe finding: 8,000 change events during one incident (1000 kept as later changes,
    2000 characters each) made a ~2 MB webhook body, which a receiver with a 1 MB limit
    refuses with 413: a dead letter, and the incident never resolves there."""
    flood = [
        {"ts": f"2026-11-27T03:{i // 60 % 60:02d}:{i % 60:02d}Z", "kind": "deploy",
         "description": f"deploy #{i} " + "d" * 2000}
        for i in range(1000)
    ]  # fmt: skip
    return incident(status=status, later_changes=flood, changes=flood[:50])


@pytest.mark.parametrize("action", ["trigger", "resolve"])
async def test_webhook_body_is_shrunk_below_the_receivers_limit(
    action: str, hook: FakeHTTP, session: aiohttp.ClientSession
) -> None:
    inc = change_flood("resolved" if action == "resolve" else "open")
    assert len(orjson.dumps(inc)) > 2_000_000
    s = WebhookSender("hook", url(hook) + "/hook", hmac_secret="s3cr3t")
    result = await s.send(session, note(inc, action, 1.0, RUNBOOK))
    assert result.ok, result  # the fake, as aiohttp, refuses bodies over 1 MiB with 413
    raw, got = hook.raw[0], hook.accepted[0]
    assert len(raw) <= MAX_WEBHOOK_BODY_BYTES
    assert verify("s3cr3t", raw, got.headers[SIGNATURE_HEADER])  # signed as sent
    assert got.body["truncated"].startswith("dropped to fit 512 KB: later_changes beyond 10")
    body_inc = got.body["incident"]
    assert len(body_inc["later_changes"]) == 10 and len(body_inc["changes"]) == 50
    assert body_inc["triage"] == inc["triage"] and body_inc["signals"] == inc["signals"]
    assert body_inc["status"] == inc["status"] and body_inc["id"] == inc["id"]
    assert len(inc["later_changes"]) == 1000  # the notification's record is not changed


async def test_webhook_body_cap_is_configurable_and_keeps_the_identity(
    hook: FakeHTTP, session: aiohttp.ClientSession
) -> None:
    inc = change_flood()
    inc["triage"][0]["evidence"] = "e" * 100_000
    s = WebhookSender("hook", url(hook) + "/hook", max_body_bytes=16_384)
    assert (await s.send(session, note(inc, "trigger", 1.0))).ok
    assert len(hook.raw[0]) <= 16_384
    body = hook.accepted[0].body
    assert body["truncated"].startswith("dropped to fit 16.384 KB: later_changes beyond 10,")
    assert body["incident"]["id"] == inc["id"] and body["incident"]["status"] == "open"
    assert "triage" in body["incident"]  # kept: enough was dropped before it
    assert len(body["incident"]["triage"][0]["evidence"]) <= 2000


def test_every_receiver_bounds_a_change_flood() -> None:
    """PagerDuty keeps its triage (the later changes go first, not the whole details);
    Opsgenie and Slack bodies stay small and keep the incident id line."""
    inc = change_flood()
    ev = build_event(note(inc, "trigger", 1.0, RUNBOOK), PD_KEY)
    assert len(orjson.dumps(ev)) <= MAX_EVENT_BYTES
    details = ev["payload"]["custom_details"]
    assert details["truncated"].startswith("dropped to fit 512 KB: later_changes beyond 10")
    assert details["triage"] and details["runbook"] == RUNBOOK
    og = build_alert(note(inc, "trigger", 1.0, RUNBOOK))
    assert len(orjson.dumps(og)) < 64_000
    assert og["description"].endswith(f"incident {inc['id']}, dedup key {inc['dedup_key']}")
    assert "… and 990 more" in og["description"]
    assert len(orjson.dumps(build_message(note(inc, "trigger", 1.0, RUNBOOK)))) < 200_000


def test_pagerduty_custom_details_round_numbers_and_carry_the_peak() -> None:
    """Receivers show numbers a person reads (probe: `"peak": 0.036020583190394515`); the
    record behind the page keeps the raw ones."""
    inc = incident()
    inc["signals"][0] |= {"value": 0.21020583190394515, "peak": 0.36020583190394515}
    inc["attribution"][0]["z"] = 9.123456789
    ev = build_event(note(inc, "trigger", 1.0, RUNBOOK), PD_KEY, "https://oncall.example.com")
    cd = ev["payload"]["custom_details"]
    assert cd["signals"][0]["value"] == 0.2102 and cd["signals"][0]["peak"] == 0.3602
    assert cd["attribution"][0]["z"] == 9.123 and cd["attribution"][0]["value"] == "gpt-x"
    assert inc["signals"][0]["value"] == 0.21020583190394515  # the record is untouched
    assert ", peak 0.3602," in render.signal_line(inc["signals"][0])
