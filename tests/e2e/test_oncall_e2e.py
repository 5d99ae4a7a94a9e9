"""The on-call workflow through the real daemon process (issue 13): acknowledge, resolve and
reopen by the CLI and the API reach the receiver under the incident's dedup key; silences,
test pages and route tests from the CLI; the group wait sends one page for co-occurring
signals; read auth; the warning on an open listener."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import orjson
import pytest

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


def cli(d: DaemonProcess, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    env.pop("LLM_ONCALL_TOKEN", None)
    if token:
        env["LLM_ONCALL_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli", *args, "--url", d.url],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=30,
    )  # fmt: skip


def cli_json(d: DaemonProcess, *args: str) -> Any:
    done = cli(d, *args, "-o", "json")
    assert done.returncode == 0, done.stderr
    return orjson.loads(done.stdout)


@pytest.fixture
def outage(tmp_path: Path) -> Iterator[tuple[DaemonProcess, PhasedPagerDuty, dict[str, Any]]]:
    """A daemon with a fake PagerDuty and one paged outage of bot-a."""
    with fake_pagerduty() as (fake, url):
        d = start_daemon(tmp_path, write_config(tmp_path, url, rules=OUTAGE_RULES))
        try:
            post_calls(d, "bot-a", 20, 200)
            wait_for("the trigger", lambda: post_calls(d, "bot-a", 20, 500) == 200
                     and fake.deliveries(), timeout=10)  # fmt: skip
            yield d, fake, incident_of(d, "bot-a")
        finally:
            stop(d)


def test_ack_resolve_reopen_reach_the_receiver_under_one_dedup_key(outage: Any) -> None:
    d, fake, rec = outage
    key, iid = rec["dedup_key"], rec["id"]
    assert fake.deliveries() == [(key, "trigger")]

    listed = cli(d, "incidents")
    assert listed.returncode == 0 and iid in listed.stdout and "critical" in listed.stdout
    assert [r["id"] for r in cli_json(d, "incidents", "list")] == [iid]

    acked = cli_json(d, "incidents", "ack", iid, "--by", "alice", "--comment", "on it")
    assert acked["acknowledged"]["by"] == "alice" and acked["acknowledged"]["comment"] == "on it"
    wait_for("the acknowledge", lambda: fake.count(key, "acknowledge") == 1, timeout=5)

    shown = cli(d, "incidents", "show", iid)
    assert shown.returncode == 0, shown.stderr
    assert "acknowledged by alice" in shown.stdout and "acknowledge" in shown.stdout

    resolved = cli_json(d, "incidents", "resolve", iid, "--by", "bob")
    assert resolved["status"] == "resolved" and resolved["resolved_by"]["by"] == "bob"
    wait_for("the resolve", lambda: fake.count(key, "resolve") == 1, timeout=5)

    again = cli(d, "incidents", "resolve", iid)
    assert again.returncode == 1 and "409" in again.stderr and "already resolved" in again.stderr

    code, raw, _ = http("POST", f"{d.url}/api/v1/incidents/{iid}/reopen", {"by": "carol"})
    assert code == 200, raw
    assert orjson.loads(raw)["status"] == "open"
    wait_for("the second trigger", lambda: fake.count(key, "trigger") == 2, timeout=5)
    # Every notification went to the same page at the receiver, in order.
    assert [a for k, a in fake.deliveries() if k == key] == [
        "trigger", "acknowledge", "resolve", "trigger"
    ]  # fmt: skip
    assert {k for k, _ in fake.deliveries()} == {key}

    code, raw, _ = http("POST", f"{d.url}/api/v1/incidents/inc-nope/ack", {"by": "x"})
    assert code == 404 and b"no such incident" in raw
    code, raw, _ = http("POST", f"{d.url}/api/v1/incidents/{iid}/ack", {"by": ""})
    assert code == 400 and b"by:" in raw

    log = d.log()
    for event in ("incident_acknowledge", "incident_resolve", "incident_reopen"):
        assert log.count(f'"event": "{event}"') == 1, event


def test_cli_silences_test_page_and_routes(outage: Any) -> None:
    d, fake, _ = outage
    added = cli_json(d, "silence", "add", "feature=bot-b", "domain!~prov.*", "-d", "90m",
                     "--by", "alice", "--comment", "deploy")  # fmt: skip
    assert added["state"] == "active" and added["created_by"] == "alice"
    assert added["matchers"][1] == {
        "name": "domain", "value": "prov.*", "is_regex": True, "is_equal": False
    }  # fmt: skip
    span = _ts(added["ends_at"]) - _ts(added["starts_at"])
    assert abs(span - 5400) < 2
    listed = cli(d, "silence", "list")
    assert added["id"] in listed.stdout and "feature=bot-b,domain!~prov.*" in listed.stdout
    expired = cli(d, "silence", "expire", added["id"])
    assert expired.returncode == 0 and f"expired {added['id']}" in expired.stdout
    assert added["id"] not in cli(d, "silence", "list").stdout
    bad = cli(d, "silence", "add", "feature", "-d", "2h")
    assert bad.returncode == 1 and "matcher 'feature'" in bad.stderr
    bad = cli(d, "silence", "add", "feature=x", "-d", "2x")
    assert bad.returncode == 1 and "--duration" in bad.stderr

    sent = cli_json(d, "test-page", "sre")
    key = sent["incident"]["dedup_key"]
    wait_for("test trigger and resolve", lambda: fake.count(key, "resolve") == 1, timeout=5)
    test_trigger = next(r.body for r in fake.accepted if r.body["dedup_key"] == key)
    assert test_trigger["event_action"] == "trigger"
    assert test_trigger["payload"]["summary"].startswith("[warning] llm-oncall-test: [TEST]")
    again = cli(d, "test-page", "sre")  # a test page reaches a real pager: one per 10 s
    assert again.returncode == 1 and "at most one every 10 s per receiver" in again.stderr
    missing = cli(d, "test-page", "nobody")
    assert missing.returncode == 1 and "no receiver named 'nobody'" in missing.stderr

    routes = cli(d, "routes", "test", "--feature", "bot-a", "--severity", "critical")
    assert routes.returncode == 0 and routes.stdout.strip() == "sre"
    watch = cli(d, "routes", "test", "--feature", "bot-a", "--severity", "watch")
    assert watch.stdout.strip() == "no receiver (not notified)"


def _ts(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()


# A lone quality signal is a warning; an availability collapse pages alone (critical).
CUSTOM = ["judge_score"]  # a custom `metric` event name must be declared to carry a rule
GROUP_RULES = [
    {"metric": "judge_score", "detector": "static",
     "params": {"threshold": 0.5, "op": "below", "for_s": 0}},
    {"metric": "availability", "detector": "static",
     "params": {"threshold": 0.5, "op": "below", "for_s": 0}, "page_alone": True},
]  # fmt: skip


def test_group_wait_sends_one_critical_page_for_co_occurring_signals(tmp_path: Path) -> None:
    """The issue's case: the warning signal, then 0.4 ms later the critical one. With a group
    wait both are in the first page; nothing goes out before the wait."""
    with fake_pagerduty() as (fake, url):
        cfg = write_config(tmp_path, url, rules=GROUP_RULES, custom_metrics=CUSTOM)
        d = start_daemon(tmp_path, cfg, env={"LLM_ONCALL_NOTIFY__GROUP_WAIT_S": "2"})
        try:
            now = time.time()
            events = [
                {"type": "metric", "ts": now, "feature": "bot-g", "layer": "quality",
                 "name": "judge_score", "value": 0.2},
                {"type": "metric", "ts": now + 0.0004, "feature": "bot-g", "layer": "api",
                 "name": "availability", "value": 0.1},
            ]  # fmt: skip
            code, raw, _ = http("POST", d.url + "/v1/events", events[:1])
            assert code == 200, raw
            code, raw, _ = http("POST", d.url + "/v1/events", events[1:])
            assert code == 200, raw
            first = wait_for("the page", lambda: fake.accepted[:1], timeout=8)[0]
            waited = fake.request_times[0] - now
            time.sleep(1.5)  # a second page would have come by now
            assert [a for _, a in fake.deliveries()] == ["trigger"]
            assert first.body["payload"]["severity"] == "critical"
            assert 2.0 <= waited < 5.0, waited
            rec = incident_of(d, "bot-g")
            assert rec["paged"] and {s["metric"] for s in rec["signals"]} == {
                "judge_score", "availability"
            }  # fmt: skip
        finally:
            stop(d)


def test_read_token_guards_gets_and_open_listener_warns(tmp_path: Path) -> None:
    env = {"LLM_ONCALL_API__READ_TOKEN": "r34d-t0ken", "LLM_ONCALL_INGEST__TOKEN": "wr1te-t0ken"}
    d = start_daemon(tmp_path, env=env)
    try:
        for path in ("/api/v1/incidents", "/api/v1/silences", "/metrics"):
            code, _, _ = http("GET", d.url + path)
            assert code == 401, path
        code, _, _ = http("GET", d.url + "/healthz")
        assert code == 200
        import urllib.request

        for token in ("r34d-t0ken", "wr1te-t0ken"):
            req = urllib.request.Request(
                d.url + "/api/v1/incidents", headers={"Authorization": f"Bearer {token}"}
            )
            with urllib.request.urlopen(req, timeout=5) as resp:
                assert resp.status == 200
        # The page sends a browser to sign in; the CLI reads the token from the environment.
        req = urllib.request.Request(d.url + "/")
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.url.startswith(d.url + "/login") and b"Sign in" in resp.read()
        denied = cli(d, "incidents")
        assert denied.returncode == 1 and "401" in denied.stderr
        assert cli(d, "incidents", token="r34d-t0ken").returncode == 0
        # Reading is not writing: the read token cannot add a silence when an ingest token
        # is configured.
        no = cli(d, "silence", "add", "feature=x", token="r34d-t0ken")
        assert no.returncode == 1 and "401" in no.stderr
        assert cli(d, "silence", "add", "feature=x", token="wr1te-t0ken").returncode == 0
        # Signed in with the read token, a form post says a write token is needed instead of
        # sending the browser back to /login in a loop (probe finding).
        form = urllib.request.Request(
            d.url + "/silences", method="POST",
            data=b"name=feature&value=x&duration=1h&by=alice&back=/",
            headers={"Origin": d.url, "Authorization": "Bearer r34d-t0ken",
                     "Content-Type": "application/x-www-form-urlencoded"},
        )  # fmt: skip
        with urllib.request.urlopen(form, timeout=5) as resp:
            assert "/login" not in resp.url and "needs the write token" in unquote(resp.url)
        assert "listening_without_token" not in d.log()
    finally:
        stop(d)
    d = start_daemon(tmp_path, env={"LLM_ONCALL_LISTEN__HOST": "0.0.0.0"})
    try:
        line = next(ln for ln in d.log().splitlines() if "listening_without_token" in ln)
        assert orjson.loads(line)["missing"] == ["ingest.token", "api.read_token"]
    finally:
        stop(d)
