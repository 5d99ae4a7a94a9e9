"""Accepted but not used: the answer of `POST /v1/events` names such events by index and
reason (probe: a change an hour old, a call an hour ahead, ts 0 and the year 9999 got
`{"accepted": 4, "rejected": []}`, and only /metrics said that none of them was used).

`accepted` keeps its meaning (valid events, as tests and docs rely on); `unused` is an
extension: `[{"index", "reason"}]` with the reason /metrics counts them under, the first
MAX_LISTED of them, and `unused_count` when there were more.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from config.settings import load_settings
from daemon.app import APPLY_SLICE, Daemon
from daemon.ingest.events import MAX_LISTED, validate_items
from daemon.pipeline import Pipeline

JSON = {"Content-Type": "application/json"}
HOUR = 3600.0


def call(**kw: Any) -> dict[str, Any]:
    return {"type": "llm_call", "ts": time.time(), "feature": "bot", "status": 200} | kw


async def post(client: TestClient, body: bytes, ctype: str = "application/json") -> Any:
    resp = await client.post("/v1/events", data=body, headers={"Content-Type": ctype})
    return resp.status, await resp.json()


async def _client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str] | None = None
) -> tuple[Daemon, TestClient]:
    monkeypatch.setenv("LLM_ONCALL_STATE__PATH", str(tmp_path / "state.db"))
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    daemon = Daemon(load_settings(None))
    return daemon, TestClient(TestServer(daemon.build_app()))


async def test_the_probes_four_events_are_named_with_their_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon, client = await _client(tmp_path, monkeypatch)
    now = time.time()
    events = [
        # A change may be as late as the change lookback (2 h): 3 h is too late for it.
        {"type": "change", "ts": now - 3 * HOUR, "kind": "deploy"},
        call(ts=now + HOUR),
        call(ts=0),
        call(ts="9999-12-31T23:59:59Z"),
        call(),
    ]
    async with client:
        status, answer = await post(client, orjson.dumps(events))
    assert status == 200
    assert answer == {
        "accepted": 5,
        "rejected": [],
        "unused": [
            {"index": 0, "reason": "late"},
            {"index": 1, "reason": "future"},
            {"index": 2, "reason": "late"},
            {"index": 3, "reason": "future"},
        ],
    }
    assert daemon.pipeline.counters.unused == {"late": 2, "future": 2}
    daemon.store.close()


async def test_caps_name_their_reason_and_indexes_skip_rejected_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"LLM_ONCALL_INGEST__MAX_FEATURES": "1", "LLM_ONCALL_INGEST__MAX_SCORE_NAMES": "1"}
    daemon, client = await _client(tmp_path, monkeypatch, env)
    score = {"type": "score", "ts": time.time(), "feature": "bot", "value": 0.5}
    events: list[Any] = [
        call(),
        call(latency_ms=-1),  # rejected: indexes after it still count it
        call(feature="other"),
        score | {"name": "a"},
        score | {"name": "b"},
    ]
    async with client:
        status, answer = await post(client, orjson.dumps(events))
        assert status == 200 and answer["accepted"] == 4
        assert [r["index"] for r in answer["rejected"]] == [1]
        assert answer["unused"] == [
            {"index": 2, "reason": "feature_limit"},
            {"index": 4, "reason": "score_name_limit"},
        ]
        # NDJSON: indexes are line numbers, blank lines counted.
        lines = [orjson.dumps(e) for e in (call(), call(ts=0))]
        status, answer = await post(client, b"\n\n".join(lines), "application/x-ndjson")
        assert answer["unused"] == [{"index": 2, "reason": "late"}]
    daemon.store.close()


async def test_the_list_is_bounded_and_counts_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon, client = await _client(tmp_path, monkeypatch)
    n = 2 * APPLY_SLICE + 500  # the batch enters the pipeline in three slices
    async with client:
        events = [call() for _ in range(n)] + [call(ts=0) for _ in range(150)]
        status, answer = await post(client, orjson.dumps(events))
        assert status == 200 and answer["accepted"] == n + 150
        assert answer["unused_count"] == 150 and len(answer["unused"]) == MAX_LISTED
        assert [u["index"] for u in answer["unused"]] == list(range(n, n + MAX_LISTED))
        # Only one: no count added, the index is still the body's.
        status, answer = await post(client, orjson.dumps([*events[:n], call(ts=0)]))
        assert answer["unused"] == [{"index": n, "reason": "late"}]
        assert "unused_count" not in answer
    daemon.store.close()


def test_pipeline_reports_positions_live_and_in_replay() -> None:
    now = 1_795_000_000.0
    raw = [call(ts=now), call(ts=now - HOUR), call(ts=now + HOUR), call(ts=now)]
    events, rejected = validate_items(raw)
    assert not rejected
    seen: list[tuple[int, str]] = []
    Pipeline(load_settings(None)).ingest(events, now=now, on_unused=lambda *a: seen.append(a))
    assert seen == [(1, "late"), (2, "future")]
    seen.clear()  # replay: the newest event is the clock, so the hour ahead makes 3 late
    Pipeline(load_settings(None)).ingest(events, on_unused=lambda *a: seen.append(a))
    assert seen == [(1, "late"), (3, "late")]
