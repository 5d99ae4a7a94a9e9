"""Paging (issue 5) and incident persistence (issue 4) end to end, through the real daemon
process: Alertmanager alerts in, a fake PagerDuty (which validates every Events API v2
request and fails on demand) out, and the daemon's own HTTP API in between.

Each test polls with deadlines; the fake receiver runs on its own event loop in a thread.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

import orjson

from tests.conftest import ROOT
from tests.e2e.conftest import Env
from tests.e2e.harness import (
    ROUTING_KEY,
    alert,
    get_json,
    http,
    incident_of,
    incidents,
    metrics,
    notifications,
    wait_for,
)
from tests.notify.fakes import Fault

CONTRACT_KEYS = {
    "id", "dedup_key", "feature", "status", "severity", "paged", "domain", "opened_at",
    "resolved_at", "signals", "triage", "changes", "attribution", "summary",
}  # fmt: skip
SIGNAL_KEYS = {
    "metric", "layer", "detector", "onset", "cleared", "value", "baseline", "score", "direction",
}  # fmt: skip
COOLDOWN_S = 2.0


def ts(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339).timestamp()


def per_key(env: Env) -> dict[str, list[str]]:
    return env.fake.actions_by_key()


def distinct_complete(env: Env, keys: set[str]) -> bool:
    got = per_key(env)
    return all(set(got.get(k, [])) == {"trigger", "resolve"} for k in keys)


def duplicates(env: Env) -> int:
    deliveries = env.fake.deliveries()
    return len(deliveries) - len(set(deliveries))


def assert_trigger_then_resolve(env: Env, keys: set[str]) -> None:
    """Per dedup key: the first delivery is a trigger, every trigger comes before every
    resolve, and exactly one distinct trigger and one distinct resolve arrived."""
    got = per_key(env)
    assert set(got) == keys
    for key, actions in got.items():
        assert actions[0] == "trigger", (key, actions)
        last_trigger = max(i for i, a in enumerate(actions) if a == "trigger")
        first_resolve = actions.index("resolve")
        assert last_trigger < first_resolve, (key, actions)
        assert set(actions) == {"trigger", "resolve"}, (key, actions)


def outbox_drained(d: Any) -> bool:
    m = metrics(d)
    depth = m.get(("llm_oncall_outbox_depth", frozenset({("receiver", "sre")})), -1)
    return depth == 0


# ---- 1 ------------------------------------------------------------------------------------


def test_happy_path_trigger_resolve_api_metrics_postmortem(e2e: Env) -> None:
    d = e2e.start()
    t_fire = time.time()
    alert(d, "support-bot", firing=True)
    first = wait_for("the trigger", lambda: e2e.fake.accepted[:1], timeout=5)[0]
    trigger_latency = first.t - t_fire
    assert trigger_latency < 3.0

    inc = incident_of(d, "support-bot")
    assert inc["status"] == "open" and inc["severity"] == "critical" and inc["paged"] is True
    ev = first.body
    assert ev["event_action"] == "trigger" and ev["dedup_key"] == inc["dedup_key"]
    assert ev["routing_key"] == ROUTING_KEY
    p = ev["payload"]
    assert 0 < len(p["summary"]) <= 1024
    assert p["summary"].startswith("[critical] support-bot: ")
    assert "support-bot: support-bot:" not in p["summary"]  # the feature once, not twice
    assert p["source"] == "llm-oncall/support-bot"
    assert p["severity"] == "critical"
    details = p["custom_details"]
    assert details["incident_id"] == inc["id"]
    assert [t["question"] for t in details["triage"]] == [
        "provider", "prompt_model", "infra_retrieval",
    ]  # fmt: skip
    assert all(isinstance(t["answer"], bool) and t["evidence"] for t in details["triage"])
    assert details["signals"][0]["metric"] == "ModelDown"

    t_clear = time.time()
    alert(d, "support-bot", firing=False)
    wait_for("the resolve", lambda: len(e2e.fake.accepted) >= 2, timeout=COOLDOWN_S + 5)
    resolve = e2e.fake.accepted[1]
    assert resolve.body["event_action"] == "resolve"
    assert resolve.body["dedup_key"] == inc["dedup_key"]
    assert resolve.t - t_clear >= COOLDOWN_S - 0.1  # not before the cooldown
    assert e2e.fake.rejected == []

    listed = incidents(d)
    assert len(listed) == 1
    rec = get_json(d, f"/api/v1/incidents/{inc['id']}")
    assert rec == listed[0]
    assert set(rec) >= CONTRACT_KEYS
    assert all(set(s) >= SIGNAL_KEYS for s in rec["signals"])
    assert rec["id"] == inc["id"] and rec["dedup_key"] == inc["dedup_key"]
    assert rec["status"] == "resolved" and rec["paged"] is True
    assert rec["severity"] == "critical" and rec["feature"] == "support-bot"
    assert rec["signals"][0]["cleared"] is not None
    # resolved_at is exactly the last clear + the cooldown, whatever the tick cadence
    assert abs(ts(rec["resolved_at"]) - ts(rec["signals"][0]["cleared"]) - COOLDOWN_S) < 0.01
    assert incidents(d, status="open") == []
    assert http("GET", d.url + "/api/v1/incidents/nope")[0] == 404

    wait_for("resolve counted", lambda: notifications(d, "resolve", "sent") == 1, timeout=5)
    assert notifications(d, "trigger", "sent") == 1
    assert notifications(d, "trigger", "dead") == 0 and notifications(d, "trigger", "retried") == 0
    _, text, _ = http("GET", d.url + "/metrics")
    line = 'llm_oncall_notifications_total{action="trigger",receiver="sre",result="sent"} 1.0'
    assert line in text.decode()

    status, md, ctype = http("GET", d.url + f"/api/v1/incidents/{inc['id']}/postmortem")
    assert status == 200 and ctype.startswith("text/markdown")
    doc = md.decode()
    assert doc.startswith("# Postmortem: support-bot: ModelDown")
    for part in (f"`{inc['id']}`", "- Paged: yes", "## Timeline", "ModelDown fired", "## Triage"):
        assert part in doc, part
    assert "still open" not in doc
    assert e2e.fake.deliveries() == [(inc["dedup_key"], "trigger"), (inc["dedup_key"], "resolve")]
    after = resolve.t - t_clear
    print(f"\ntrigger latency {trigger_latency:.3f}s, resolve {after:.3f}s after clear")


# ---- 2 ------------------------------------------------------------------------------------


def test_receiver_down_then_429_everything_arrives_in_order(e2e: Env) -> None:
    d = e2e.start()
    t0 = time.time()
    # 500 for 4 s, then 429 with Retry-After: 1 for 1.2 s, then healthy.
    up_at = t0 + 5.2
    e2e.fake.phases = [(t0 + 4.0, Fault(500)), (up_at, Fault(429, retry_after="1"))]
    features = ["bot-a", "bot-b", "bot-c", "bot-d"]
    for f in features[:3]:
        alert(d, f, firing=True)
    wait_for("failed attempts", lambda: e2e.fake.requests >= 3, timeout=3)
    for f in features[:3]:
        alert(d, f, firing=False)
    alert(d, "bot-d", firing=True)
    wait_for("a failed attempt for bot-d", lambda: e2e.fake.requests >= 5, timeout=3)
    alert(d, "bot-d", firing=False)

    def all_resolved() -> list[dict[str, Any]] | None:
        found = incidents(d)
        done = len(found) == 4 and all(i["status"] == "resolved" for i in found)
        return found if done else None

    recs = wait_for("four incidents resolved", all_resolved, timeout=COOLDOWN_S + 3)
    resolved_during_outage = time.time() < up_at
    assert resolved_during_outage and e2e.fake.accepted == []  # nothing got through yet
    keys = {i["dedup_key"] for i in recs}
    assert {i["feature"] for i in recs} == set(features)
    assert all(i["paged"] for i in recs)  # paged: a notification went to a receiver

    wait_for("every trigger and resolve", lambda: distinct_complete(e2e, keys), timeout=12)
    recovered_in = time.time() - up_at
    wait_for("the outbox drained", lambda: outbox_drained(d), timeout=5)
    assert_trigger_then_resolve(e2e, keys)
    assert e2e.fake.rejected == []
    statuses = e2e.fake.statuses()
    assert statuses[500] >= 4 and statuses[429] >= 1, statuses
    assert notifications(d, "trigger", "sent") == 4 and notifications(d, "resolve", "sent") == 4
    assert notifications(d, "trigger", "retried") >= 1
    assert notifications(d, "trigger", "dead") == 0 and notifications(d, "resolve", "dead") == 0
    m = metrics(d)
    rate_limited = m[
        (
            "llm_oncall_notification_attempts_total",
            frozenset({("receiver", "sre"), ("outcome", "rate_limited")}),
        )
    ]
    assert rate_limited >= 1
    # Retry-After: 1 pauses the whole receiver: no request starts within the second after a
    # 429 (max_backoff_s is 0.5 s, so a retry that ignored it would start in that span).
    for t429 in (t for t, status in e2e.fake.answered if status == 429):
        early = [t for t in e2e.fake.request_times if t429 + 0.2 < t < t429 + 0.9]
        assert not early, (t429, early)
    dup = duplicates(e2e)
    print(
        f"\n{e2e.fake.requests} requests ({dict(statuses)} failed), "
        f"{len(e2e.fake.accepted)} accepted, {dup} duplicate deliveries; "
        f"all delivered {recovered_in:.2f}s after the receiver recovered"
    )
    # Retry-After (1 s) is obeyed, then the token bucket paces the backlog at PagerDuty's
    # 2 events/s: the outage's failed attempts used up its burst.
    assert recovered_in < 1.0 + 0.5 * len(e2e.fake.accepted) + 1.5


# ---- 3 ------------------------------------------------------------------------------------


def test_kill_9_with_pending_pages_delivers_after_restart(e2e: Env) -> None:
    cfg = e2e.config()
    d = e2e.start(cfg)
    fake = e2e.fake
    alert(d, "bot-a", firing=True)  # paged while the receiver is healthy
    wait_for("A's trigger sent", lambda: notifications(d, "trigger", "sent") == 1, timeout=5)
    inc_a = incident_of(d, "bot-a")

    fake.down = Fault(500)
    alert(d, "bot-b", firing=True)
    alert(d, "bot-c", firing=True)
    alert(d, "bot-c", firing=False)
    wait_for(
        "C resolved while the receiver fails",
        lambda: incident_of(d, "bot-c")["status"] == "resolved",
        timeout=COOLDOWN_S + 3,
    )
    wait_for("retries", lambda: fake.requests >= 5, timeout=5)
    inc_b, inc_c = incident_of(d, "bot-b"), incident_of(d, "bot-c")
    assert fake.deliveries() == [(inc_a["dedup_key"], "trigger")]
    # Kill while a delivery is on the wire: the next request hangs 2 s (then fails).
    fake.latency_s = 2.0
    n = fake.requests
    wait_for("a request in flight", lambda: fake.requests > n, timeout=3)
    d.proc.send_signal(signal.SIGKILL)
    assert d.proc.wait(5) == -signal.SIGKILL

    fake.down = None
    fake.latency_s = 0.0
    d2 = e2e.start(cfg)
    want = {
        (inc_b["dedup_key"], "trigger"),
        (inc_c["dedup_key"], "trigger"),
        (inc_c["dedup_key"], "resolve"),
    }
    wait_for("pending pages after restart", lambda: want <= set(fake.deliveries()), timeout=5)
    assert fake.count(inc_a["dedup_key"], "trigger") == 1  # A was not paged again

    # The open incidents continue under the same ids.
    for inc in (inc_a, inc_b):
        rec = get_json(d2, f"/api/v1/incidents/{inc['id']}")
        assert rec["status"] == "open" and rec["paged"] is True
        assert rec["opened_at"] == inc["opened_at"]
    assert {i["id"] for i in incidents(d2, status="open")} == {inc_a["id"], inc_b["id"]}

    alert(d2, "bot-a", firing=False)
    alert(d2, "bot-b", firing=False)
    keys = {inc_a["dedup_key"], inc_b["dedup_key"], inc_c["dedup_key"]}
    wait_for("the resolves", lambda: distinct_complete(e2e, keys), timeout=COOLDOWN_S + 5)
    assert_trigger_then_resolve(e2e, keys)
    assert {i["status"] for i in incidents(d2)} == {"resolved"}
    assert len(incidents(d2)) == 3
    assert fake.rejected == []
    assert '"outbox_requeued"' in d2.log()  # the row in flight at the kill went back
    print(f"\n{duplicates(e2e)} duplicate deliveries after kill -9")


# ---- 4 ------------------------------------------------------------------------------------


def test_sigterm_mid_incident_keeps_it_open_without_a_second_trigger(e2e: Env) -> None:
    cfg = e2e.config()
    d = e2e.start(cfg)
    alert(d, "support-bot", firing=True)
    wait_for("trigger sent", lambda: notifications(d, "trigger", "sent") == 1, timeout=5)
    inc = incident_of(d, "support-bot")
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(15) == 0
    assert '"stopped"' in d.log()

    d2 = e2e.start(cfg)
    rec = get_json(d2, f"/api/v1/incidents/{inc['id']}")
    assert rec["status"] == "open" and rec["paged"] is True
    assert rec["dedup_key"] == inc["dedup_key"] and rec["opened_at"] == inc["opened_at"]
    # The estimated start survives the restart (an alert has no history: its onset).
    assert rec["started_at"] == inc["started_at"] == inc["signals"][0]["onset"]
    assert rec["start_estimate"] == {"basis": "detection", "metric": inc["signals"][0]["metric"]}
    assert [i["id"] for i in incidents(d2)] == [inc["id"]]

    t_clear = time.time()
    alert(d2, "support-bot", firing=False)
    wait_for("the resolve", lambda: notifications(d2, "resolve", "sent") == 1, timeout=6)
    # Exactly one trigger in all, and the restarted process sent none: a trigger re-sent on
    # restart would have been queued ahead of the resolve on the same key.
    assert e2e.fake.deliveries() == [(inc["dedup_key"], "trigger"), (inc["dedup_key"], "resolve")]
    assert notifications(d2, "trigger", "sent") == 0
    assert e2e.fake.accepted[1].t - t_clear >= COOLDOWN_S - 0.1
    assert get_json(d2, f"/api/v1/incidents/{inc['id']}")["status"] == "resolved"


# ---- 5 ------------------------------------------------------------------------------------


def test_silence_after_page_still_resolves_and_silence_api(e2e: Env) -> None:
    d = e2e.start()
    alert(d, "support-bot", firing=True)
    wait_for("trigger sent", lambda: notifications(d, "trigger", "sent") == 1, timeout=5)
    inc = incident_of(d, "support-bot")

    body = {
        "matchers": [{"name": "feature", "value": "support-bot|chat-bot", "is_regex": True}],
        "ends_at": time.time() + 600,
        "created_by": "e2e",
        "comment": "maintenance",
    }
    status, raw, _ = http("POST", d.url + "/api/v1/silences", body)
    assert status == 201, raw
    sil = orjson.loads(raw)
    assert sil["state"] == "active" and sil["id"]
    listed = get_json(d, "/api/v1/silences")["silences"]
    assert [s["id"] for s in listed] == [sil["id"]] and listed[0]["state"] == "active"

    # The silence works: a new incident it matches is not paged ...
    alert(d, "chat-bot", firing=True)
    chat = wait_for("chat-bot incident", lambda: incidents(d, feature="chat-bot"), timeout=3)[0]
    assert chat["paged"] is False

    # ... but the page already sent still gets its resolve (no orphaned PagerDuty incident).
    alert(d, "support-bot", firing=False)
    wait_for("the resolve", lambda: notifications(d, "resolve", "sent") == 1, timeout=6)
    assert e2e.fake.deliveries() == [(inc["dedup_key"], "trigger"), (inc["dedup_key"], "resolve")]
    assert incident_of(d, "support-bot")["status"] == "resolved"

    status, raw, _ = http("DELETE", d.url + f"/api/v1/silences/{sil['id']}")
    assert status == 200 and orjson.loads(raw) == {"expired": sil["id"]}
    listed = get_json(d, "/api/v1/silences")["silences"]
    assert [(s["id"], s["state"]) for s in listed] == [(sil["id"], "expired")]
    assert http("DELETE", d.url + "/api/v1/silences/nope")[0] == 404
    # With the silence over, the still-firing chat-bot incident pages on the next tick.
    wait_for("chat-bot's trigger", lambda: len(e2e.fake.accepted) == 3, timeout=3)
    assert e2e.fake.deliveries()[2] == (chat["dedup_key"], "trigger")
    assert incident_of(d, "chat-bot")["paged"] is True


# ---- 6 ------------------------------------------------------------------------------------


def test_routing_key_never_in_the_log(e2e: Env) -> None:
    """Even at debug level, with a receiver that echoes the key back in its error bodies (on
    a retryable 500 and on a 400 that makes a dead letter), and with a bad key in the
    config, the key appears nowhere in the daemon's output, whole or in part."""
    cfg = e2e.config(log={"level": "debug"})
    fake = e2e.fake
    fake.fail_next(1, Fault(500, body=f"upstream said: bad routing_key {ROUTING_KEY}"))
    # The key straddles the first 300 bytes, where error snippets are cut.
    fake.fail_next(1, Fault(400, body="x" * 285 + ROUTING_KEY))
    d = e2e.start(cfg)
    alert(d, "support-bot", firing=True)
    wait_for("the dead letter", lambda: notifications(d, "trigger", "dead") == 1, timeout=5)
    assert notifications(d, "trigger", "retried") == 1
    log = d.log()
    assert "notification dead letter" in log and "HTTP 400" in log
    pieces = {ROUTING_KEY[i : i + 8] for i in range(len(ROUTING_KEY) - 7)}
    leaked = sorted(p for p in pieces if p in log)
    assert not leaked, f"parts of the routing key in the log: {leaked}"
    for path in ("/metrics", "/api/v1/incidents", "/"):
        page = http("GET", d.url + path)[1].decode()
        assert not [p for p in pieces if p in page], path

    # A config the daemon refuses (a 31-character key) is not echoed either.
    bad_key = ROUTING_KEY[:-1]
    bad = e2e.tmp / "bad.yaml"
    bad.write_text(cfg.read_text().replace(ROUTING_KEY, bad_key))
    out = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "run", "--config", str(bad)],
        capture_output=True,
        timeout=30,
        cwd=ROOT,
    )
    text = (out.stdout + out.stderr).decode()
    assert out.returncode != 0 and "routing_key" in text
    assert bad_key[:8] not in text, text
