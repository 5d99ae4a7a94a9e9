"""The incident pages and the daemon's side of the on-call workflow (issue 13), in process:
a real outage through the pipeline, then the HTML list, the incident page with its charts
and forms, form posts, escaping, and one log line per state change."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from config.settings import load_settings
from daemon.app import Daemon
from daemon.ingest.events import LlmCall
from daemon.pages import band_of, metric_chart
from daemon.pipeline import TickOutput
from tests.e2e.crash import OUTAGE_RULES

T0 = 1_795_000_000.0
FEATURE = "bot<script>alert(1)</script>"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Log:
    """Records log calls: (event, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def _rec(self, event: str, **kw: Any) -> None:
        self.lines.append((event, kw))

    info = warning = error = debug = _rec


def make_daemon(tmp: Path, clock: Clock, log: Log) -> Daemon:
    cfg = {
        "state": {"path": str(tmp / "state.db")},
        "rules": OUTAGE_RULES,
        "notify": {"group_wait_s": 30},
        "features": {FEATURE: {"runbook": {"url": "https://runbooks.example/bot"}}},
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return Daemon(load_settings(path), log, clock)


def calls(ts: float, n: int, status: int) -> list[LlmCall]:
    return [
        LlmCall(
            type="llm_call",
            ts=ts + i * 0.01,
            feature=FEATURE,
            provider="openai",
            model="gpt-4o",
            status=status,
            latency_ms=700.0,
        )
        for i in range(n)
    ]


def run_outage(d: Daemon, clock: Clock) -> None:
    """20 healthy minutes, then 5 minutes of errors: one paged incident."""
    t = T0
    while t < T0 + 25 * 60:
        clock.now = t
        status = 200 if t < T0 + 20 * 60 else 500
        d.handle(d.pipeline.ingest(calls(t, 6, status), now=t))
        d.handle(d.pipeline.advance(t))
        t += 5


@pytest.fixture
def outage(tmp_path: Path) -> Any:
    clock, log = Clock(), Log()
    d = make_daemon(tmp_path, clock, log)
    run_outage(d, clock)
    yield d, clock, log
    d.store.close()


async def test_pages_show_the_incident_with_charts_forms_and_escaping(outage: Any) -> None:
    d, clock, _ = outage
    (rec,) = d.store.incidents()
    assert rec["paged"] and rec["severity"] == "critical"
    async with TestClient(TestServer(d.build_app())) as client:
        index = await (await client.get("/")).text()
        assert "http-equiv='refresh'" in index and "Open incidents (1)" in index
        assert f"/incidents/{rec['id']}" in index
        assert "<script>" not in index and "bot&lt;script&gt;" in index
        page = await client.get(f"/incidents/{rec['id']}")
        assert page.status == 200
        html = await page.text()
        assert "<script>" not in html
        for part in ("estimated start", "detected (opened)", "Notifications", "Post-mortem draft",
                     "https://runbooks.example/bot", "availability", "<svg", "threshold 0.5",
                     "action='/incidents/" + rec["id"] + "/ack'"):  # fmt: skip
            assert part in html, part
        # The chart spans the healthy minutes and the outage, with the detection marked.
        svg = re.search(r"<svg.*?</svg>", html, re.S)
        assert svg is not None and ">detected<" in svg.group(0)
        assert (await client.get("/incidents/inc-nope")).status == 404

        # A form post from another site is refused; from the page itself it acts.
        url = f"/incidents/{rec['id']}/ack"
        evil = await client.post(url, data={"by": "mallory"},
                                 headers={"Origin": "https://evil.example"})  # fmt: skip
        assert evil.status == 403
        host = f"http://{client.host}:{client.port}"
        ok = await client.post(url, data={"by": "alice", "comment": "on it"},
                               headers={"Origin": host}, allow_redirects=False)  # fmt: skip
        assert ok.status == 303 and ok.headers["Location"] == f"/incidents/{rec['id']}"
        assert d.store.incident(rec["id"])["acknowledged"]["by"] == "alice"
        # A post with neither Origin nor Referer is not from our page; `null` (a sandboxed
        # frame) is refused too (probe finding).
        for headers in ({}, {"Origin": "null"}):
            stray = await client.post(url, data={"by": "mallory"}, headers=headers,
                                      allow_redirects=False)  # fmt: skip
            assert stray.status == 403, headers
        same = {"Origin": host}
        bad = await client.post(url, data={"by": ""}, headers=same, allow_redirects=False)
        assert bad.status == 303 and "error=by" in bad.headers["Location"]
        snooze = url.replace("/ack", "/snooze")
        bad = await client.post(snooze, data={"by": "alice"}, headers=same, allow_redirects=False)
        assert bad.status == 303 and "error=action" in bad.headers["Location"]

        sil = await client.post("/silences", allow_redirects=False, headers=same, data={
            "name": "feature", "value": FEATURE, "duration": "2h", "by": "alice",
            "back": f"/incidents/{rec['id']}"})  # fmt: skip
        assert sil.status == 303
        (made,) = d.pipeline.silences.list()
        assert made.ends_at - made.starts_at == 7200
        index = await (await client.get("/")).text()
        assert "Silences (1 active or pending)" in index
        gone = await client.post(f"/silences/{made.id}/expire", headers=same,
                                 allow_redirects=False)  # fmt: skip
        assert gone.status == 303
        assert d.pipeline.silences.active(clock.now) == []


async def test_api_ack_routes_and_notification_history(outage: Any) -> None:
    d, _, _ = outage
    (rec,) = d.store.incidents()
    async with TestClient(TestServer(d.build_app())) as client:
        resp = await client.post(f"/api/v1/incidents/{rec['id']}/ack", json={"by": "alice"})
        assert resp.status == 200 and (await resp.json())["acknowledged"]["by"] == "alice"
        hist = await (await client.get(f"/api/v1/incidents/{rec['id']}/notifications")).json()
        assert [n["action"] for n in hist["notifications"]] == ["trigger", "acknowledge"]
        assert {n["receiver"] for n in hist["notifications"]} == {"log"}
        bad = await client.post(f"/api/v1/incidents/{rec['id']}/snooze", json={})
        assert bad.status == 404
        routes = await (await client.get("/api/v1/routes/test?feature=x&severity=watch")).json()
        assert routes["receivers"] == []
        missing = await client.get("/api/v1/routes/test?severity=critical")
        assert missing.status == 400 and (await missing.json())["error"] == "feature: required"


def test_one_log_line_per_state_change_not_per_tick(outage: Any) -> None:
    d, clock, log = outage
    (rec,) = d.store.incidents()
    inc = d.pipeline.correlator.get(rec["id"])
    assert inc is not None
    before = len([e for e, _ in log.lines if e.startswith("incident_")])
    # A tick refresh moves the evidence's numbers and the summary: stored, not logged.
    for i in range(18):
        moved = replace(inc, summary=f"{inc.summary} ({i})")
        d.handle(TickOutput(updates=[_update(moved, "update", None, clock.now + i)]))
    assert len([e for e, _ in log.lines if e.startswith("incident_")]) == before
    assert d.store.incident(rec["id"])["summary"].endswith("(17)")
    # A real change (severity) is one line.
    d.handle(TickOutput(updates=[_update(replace(inc, severity="warning"), "update", None, 1)]))
    assert [e for e, _ in log.lines if e.startswith("incident_")][before:] == ["incident_update"]


def _update(inc: Any, action: str, notify: Any, ts: float) -> Any:
    from correlator import IncidentUpdate

    return IncidentUpdate(inc, action, notify, ts)  # type: ignore[arg-type]


def test_chart_band_and_marks() -> None:
    pts = [(T0 + 60 * i, 1.0 + (0.01 if i % 2 else -0.01), 1.0) for i in range(30)]
    pts += [(T0 + 60 * i, 3.0, 1.0) for i in range(30, 40)]
    half = band_of(pts, start=T0 + 60 * 30)
    assert 0.02 < half < 0.05  # 3 robust sigma of +-0.01 noise, not widened by the outage
    svg = metric_chart(pts, start=T0 + 60 * 30, detected=T0 + 60 * 32, title="a<b")
    assert svg.count("<line") == 2 and ">start<" in svg and ">detected<" in svg
    assert "<polygon" in svg  # the band
    assert "a&lt;b" in svg
    assert "not enough history" in metric_chart(pts[:1], None, None, "x")


def test_an_unchanged_watch_incident_logs_once(tmp_path: Path) -> None:
    """The issue's case through the real pipeline: a lone latency breach (a watch incident)
    for 10 minutes. Its evidence refreshes every minute (8 stored updates); before issue 13
    each was an `incident_update` log line, now only the open is logged."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "state": {"path": str(tmp_path / "s.db")},
        "rules": [{"metric": "latency_p95_ms", "detector": "static",
                   "params": {"threshold": 2000, "op": "above", "for_s": 0}}],
    }))  # fmt: skip
    clock, log = Clock(), Log()
    d = Daemon(load_settings(cfg), log, clock)
    stored = 0
    t = T0
    while t < T0 + 40 * 60:
        clock.now = t
        lat = 800.0 if t < T0 + 30 * 60 else 5000.0
        evs = [
            LlmCall(type="llm_call", ts=t + i * 0.01, feature="f", status=200, latency_ms=lat)
            for i in range(5)
        ]
        for out in (d.pipeline.ingest(evs, now=t), d.pipeline.advance(t)):
            stored += len(out.updates)
            d.handle(out)
        t += 5
    d.store.close()
    assert stored >= 5  # the refreshes happened and were stored
    assert [e for e, _ in log.lines if e.startswith("incident_")] == ["incident_open"]


def test_a_corroborated_start_is_shown_with_its_metrics() -> None:
    """The start estimate's `corroborated_by` (a list) reads as metric names on the page
    and in the post-mortem's timeline, not as a Python list."""
    from daemon.api import postmortem_markdown
    from daemon.pages import _num

    assert _num(["input_tokens_per_request", "quality"]) == "input_tokens_per_request, quality"
    rec = {
        "id": "inc-1", "feature": "bot", "severity": "critical", "status": "open", "domain": "x",
        "opened_at": "2026-12-02T10:00:00.000Z", "started_at": "2026-12-02T09:30:00.000Z",
        "start_estimate": {"basis": "changepoint", "metric": "ttft_ms",
                           "corroborated_by": ["input_tokens_per_request"]},
        "signals": [], "triage": [], "changes": [], "attribution": [], "summary": "s",
    }  # fmt: skip
    text = postmortem_markdown(rec, {})
    assert r"estimated start (changepoint, ttft\_ms with input\_tokens\_per\_request)" in text


def test_the_post_mortem_timeline_quotes_a_signal_s_peak() -> None:
    """A resolved signal's value is its last reading (the recovery's); the timeline says
    how bad it got."""
    from daemon.api import postmortem_markdown

    sig = {"metric": "availability", "detector": "rate", "onset": "2026-12-02T10:00:00.000Z",
           "cleared": "2026-12-02T10:30:00.000Z", "value": 0.93, "peak": 0.5816,
           "baseline": 0.9958}  # fmt: skip
    rec = {
        "id": "inc-1", "feature": "bot", "severity": "critical", "status": "resolved",
        "domain": "provider", "opened_at": "2026-12-02T10:00:00.000Z", "signals": [sig],
        "triage": [], "changes": [], "attribution": [], "summary": "s",
    }  # fmt: skip
    text = postmortem_markdown(rec, {})
    assert "availability fired (rate): peak 0.5816 vs 0.9958 (latest 0.93)" in text
