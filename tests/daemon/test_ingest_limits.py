"""What one `POST /v1/events` may cost, whatever is in it (probe: an 8 KB gzip body of
4,190,000 one-byte items took 2.3 GB, froze the event loop for 18 s and answered 288 MB).

- items per body are capped (`ingest.max_body_events`, by default what the byte limit can hold
  of the smallest valid event), counted before anything is parsed, and refused with a 413;
- the answer names at most MAX_LISTED rejections and counts the rest;
- large bodies are validated off the event loop and applied in slices, in order of arrival,
  and the bodies waiting for their turn are bounded (503 + Retry-After past it).
"""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
import tracemalloc
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from config.settings import SMALLEST_EVENT_BYTES, ConfigError, IngestConfig, load_settings
from daemon import app as app_module
from daemon.app import Daemon
from daemon.ingest import events as events_module
from daemon.ingest.events import MAX_LISTED, Change, Rejected, TooManyEvents, read_events
from tests.conftest import DaemonProcess

SMALLEST = b'{"type":"change","ts":0,"kind":"x"}'
BOMB_ITEMS = 4_190_000  # the probe's body: 8,380,001 bytes inflated, under the 8 MiB limit
JSON = {"Content-Type": "application/json"}


def bomb() -> bytes:
    return b"[" + b",".join([b"1"] * BOMB_ITEMS) + b"]"


def call(**kw: Any) -> dict[str, Any]:
    return {"type": "llm_call", "ts": time.time(), "feature": "bot", "status": 200} | kw


# ---- the cap and its default ---------------------------------------------------------------


def test_the_smallest_valid_event_sets_the_default_cap() -> None:
    """No body of valid events within max_body_bytes is refused: the default is what the
    byte limit holds of the smallest valid event and its separator."""
    (ev,), rejected = events_module.parse_body(SMALLEST)
    assert isinstance(ev, Change) and rejected == []
    assert len(SMALLEST) + 1 == SMALLEST_EVENT_BYTES
    for required in (b'"ts":0,', b',"kind":"x"', b'"type":"change",'):
        assert events_module.parse_body(SMALLEST.replace(required, b""))[1]  # none optional
    assert IngestConfig().body_events_limit == 233_016  # 8 MiB
    assert IngestConfig(max_body_events=50).body_events_limit == 50
    # The fullest bodies of valid events the byte limit allows, array and NDJSON:
    limit = IngestConfig(max_body_bytes=36_000)
    n = limit.body_events_limit
    ndjson = b"\n".join([SMALLEST] * n)
    array = b"[" + b",".join([SMALLEST] * (n - 1)) + b"]"
    assert len(ndjson) <= 36_000 and len(array) <= 36_000
    assert len(read_events(ndjson, "application/x-ndjson", max_events=n).events) == n
    assert len(read_events(array, None, max_events=n).events) == n - 1


@pytest.mark.parametrize("ctype", ["application/json", "application/x-ndjson", None])
def test_a_body_over_the_cap_is_refused_before_it_is_parsed(ctype: str | None) -> None:
    body = bomb() if ctype != "application/x-ndjson" else b"1\n" * BOMB_ITEMS
    tracemalloc.start()
    try:
        with pytest.raises(TooManyEvents, match=r"more than 233016 events \(ingest.max_body_ev"):
            read_events(body, ctype, max_events=IngestConfig().body_events_limit, listed=100)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Before: 2.3 GB. Now the scan's chunks (the 8 MB body itself was built before tracing).
    assert peak < 20_000_000, peak  # measured: 6 MB


def test_one_ndjson_line_of_millions_of_items_is_one_bad_line() -> None:
    """Joined into one array for the fast path, `1,1,1,…` on one line would be four million
    items: the scan sees it first, and the line is rejected on its own."""
    body = orjson.dumps(call()) + b"\n" + bomb()[1:-1]
    tracemalloc.start()
    try:
        batch = read_events(body, "application/x-ndjson", max_events=233_016, listed=100)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(batch.events) == 1 and [r.index for r in batch.rejected] == [1]
    assert batch.rejected[0].error.startswith("line is not valid JSON: trailing characters")
    assert peak < 40_000_000, peak  # copies of the 8 MB line (split, joined): 25 MB measured


def test_the_cap_counts_items_not_bytes() -> None:
    ten = orjson.dumps([call()] * 10)
    assert len(read_events(ten, None, max_events=10).events) == 10
    with pytest.raises(TooManyEvents):
        read_events(orjson.dumps([call()] * 11), None, max_events=10)
    lines = b"\n\n".join(orjson.dumps(call()) for _ in range(10)) + b"\n\n  \n"
    assert len(read_events(lines, "application/x-ndjson", max_events=10).events) == 10
    with pytest.raises(TooManyEvents):
        read_events(lines + b"{}", "application/x-ndjson", max_events=10)
    # A string full of commas is one item.
    one = orjson.dumps([call(error="," * 100)])
    assert len(read_events(one, None, max_events=1).events) == 1


# ---- rejections: all counted, the first MAX_LISTED named -------------------------------------


def test_rejections_are_counted_and_the_first_ones_listed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    items: list[Any] = [call(latency_ms=-1) if i % 3 else call() for i in range(3000)]
    items[7] = 1
    formatted = []
    real = events_module._format_error

    def counting(exc: Any, skip: int = 0) -> str:
        formatted.append(1)
        return real(exc, skip)

    monkeypatch.setattr(events_module, "_format_error", counting)
    for body, ctype in [
        (orjson.dumps(items), "application/json"),
        (b"\n".join(orjson.dumps(i) for i in items), "application/x-ndjson"),
        (orjson.dumps(items).replace(b"-1", b"NaN"), "application/json"),  # lenient parser
    ]:
        formatted.clear()
        batch = read_events(body, ctype, max_events=10_000, listed=MAX_LISTED)
        assert len(batch.events) == 1000 and batch.rejected_count == 2000
        bad = [i for i in range(3000) if i % 3]
        assert [r.index for r in batch.rejected] == bad[:MAX_LISTED]
        assert batch.rejected[4] == Rejected(7, "event must be a JSON object, got int")
        assert list(batch.indexes) == [i for i in range(3000) if i % 3 == 0]
        # Messages are written for the listed rejections only.
        assert len(formatted) == MAX_LISTED - 1


def test_parse_body_still_lists_every_rejection() -> None:
    events, rejected = events_module.parse_body(orjson.dumps([1] * 500 + [call()]))
    assert len(events) == 1 and len(rejected) == 500


# ---- over HTTP, in process -----------------------------------------------------------------


async def _client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Daemon, TestClient]:
    monkeypatch.setenv("LLM_ONCALL_STATE__PATH", str(tmp_path / "state.db"))
    daemon = Daemon(load_settings(None))
    # As in Daemon.serve: the daemon inflates gzip itself, with its limits. (TestServer drops
    # the keyword arguments of its constructor; start_server passes them to the runner.)
    server = TestServer(daemon.build_app())
    await server.start_server(auto_decompress=False)
    return daemon, TestClient(server)


async def test_the_probes_gzip_body_is_a_413_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loop_guard: None
) -> None:
    daemon, client = await _client(tmp_path, monkeypatch)
    body = gzip.compress(bomb(), 9)
    assert len(body) < 10_000
    async with client:
        resp = await client.post(
            "/v1/events", data=body, headers=JSON | {"Content-Encoding": "gzip"}
        )
        answer = await resp.read()
        assert resp.status == 413 and len(answer) < 300, answer
        assert "ingest.max_body_events" in orjson.loads(answer)["error"]
        assert daemon.rejected == {"too_large": 1}
        ok = await client.post("/v1/events", data=orjson.dumps(call()), headers=JSON)
        assert ok.status == 200
    daemon.store.close()


async def test_a_body_of_bad_events_answers_a_bounded_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loop_guard: None
) -> None:
    daemon, client = await _client(tmp_path, monkeypatch)
    async with client:
        resp = await client.post("/v1/events", data=orjson.dumps([1] * 200_000), headers=JSON)
        answer = await resp.json()
        assert resp.status == 400 and answer["accepted"] == 0
        assert answer["rejected_count"] == 200_000 and len(answer["rejected"]) == MAX_LISTED
        assert answer["rejected"][-1] == {
            "index": MAX_LISTED - 1,
            "error": "event must be a JSON object, got int",
        }
        assert daemon.rejected == {"invalid": 200_000}
        # Under the listing bound, the answer is as it always was: no count added.
        resp = await client.post("/v1/events", data=orjson.dumps([1, call()]), headers=JSON)
        assert await resp.json() == {
            "accepted": 1,
            "rejected": [{"index": 0, "error": "event must be a JSON object, got int"}],
        }
    daemon.store.close()


async def test_a_full_size_valid_batch_does_not_hold_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loop_guard: None
) -> None:
    """165,000 events (8 MiB): validated in a worker thread, applied 2,000 at a time. On
    the loop it held the loop for 1.4 s in one callback; `loop_guard` fails at 0.5 s."""
    daemon, client = await _client(tmp_path, monkeypatch)
    one = {"type": "llm_call", "ts": int(time.time()), "feature": "f"}
    body = orjson.dumps([one] * 165_000)
    assert len(body) < daemon.settings.ingest.max_body_bytes
    async with client:
        resp = await client.post("/v1/events", data=body, headers=JSON)
        assert resp.status == 200 and (await resp.json())["accepted"] == 165_000
    assert daemon.pipeline.counters.accepted == {"llm_call": 165_000}
    daemon.store.close()


async def test_batches_apply_in_the_order_they_arrived(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large body validates in a thread; a small one that arrives while it does must wait
    for it, not overtake it. With room for one feature, whichever batch is applied first
    takes it, so the other's events are counted as `feature_limit`."""
    monkeypatch.setenv("LLM_ONCALL_INGEST__MAX_FEATURES", "1")
    daemon, client = await _client(tmp_path, monkeypatch)
    started = threading.Event()
    real = app_module.read_events

    def slow_read(*args: Any, **kw: Any) -> Any:
        if len(args[0]) > app_module.OFFLOAD_BYTES:
            started.set()
            time.sleep(0.3)  # the small body arrives meanwhile
        return real(*args, **kw)

    monkeypatch.setattr(app_module, "read_events", slow_read)
    big = orjson.dumps([call(feature="first")] * 5000)
    assert len(big) > app_module.OFFLOAD_BYTES
    async with client:
        first = asyncio.create_task(client.post("/v1/events", data=big, headers=JSON))
        assert await asyncio.to_thread(started.wait, 10)
        second = await client.post(
            "/v1/events", data=orjson.dumps(call(feature="second")), headers=JSON
        )
        assert second.status == 200
        assert (await first).status == 200
    assert daemon.pipeline.counters.unused == {"feature_limit": 1}  # the second batch's event
    daemon.store.close()


async def test_a_flood_queued_behind_a_large_body_is_shed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the loop free while a body validates, a flood no longer shows as loop lag;
    bodies waiting for their turn are bounded (QUEUED_BODIES full bodies), the rest get a
    503 with Retry-After and are counted as shed."""
    monkeypatch.setenv("LLM_ONCALL_INGEST__MAX_BODY_BYTES", "1000000")
    daemon, client = await _client(tmp_path, monkeypatch)
    started, release = threading.Event(), threading.Event()
    real = app_module.read_events

    def held_read(*args: Any, **kw: Any) -> Any:
        started.set()
        release.wait(30)  # the first body holds its turn until the flood has arrived
        return real(*args, **kw)

    monkeypatch.setattr(app_module, "read_events", held_read)
    body = orjson.dumps([call()] * 4000)  # validated in a thread; 13 fit in 4 full bodies
    assert app_module.OFFLOAD_BYTES < len(body) < 1_000_000
    admitted = app_module.QUEUED_BODIES * 1_000_000 // len(body)
    async with client:
        first = asyncio.create_task(client.post("/v1/events", data=body, headers=JSON))
        assert await asyncio.to_thread(started.wait, 10)
        more = [
            asyncio.create_task(client.post("/v1/events", data=body, headers=JSON))
            for _ in range(19)
        ]
        for _ in range(1000):  # until each has been shed or is queued
            queued = daemon._ingest_queued // len(body) - 1
            if queued + sum(t.done() for t in more) == len(more):
                break
            await asyncio.sleep(0.01)
        release.set()
        answers = [await first, *await asyncio.gather(*more)]
    statuses = [r.status for r in answers]
    assert statuses.count(200) == admitted and statuses.count(503) == 20 - admitted
    assert all(r.headers["Retry-After"] == "1" for r in answers if r.status == 503)
    assert daemon.rejected == {"shed": 20 - admitted}
    daemon.store.close()


# ---- the real daemon process ---------------------------------------------------------------


def _kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def test_the_probes_body_costs_the_daemon_little_memory(daemon: DaemonProcess) -> None:
    before = _kib(daemon.proc.pid, "VmRSS")
    req = urllib.request.Request(
        daemon.url + "/v1/events",
        data=gzip.compress(bomb(), 9),
        headers=JSON | {"Content-Encoding": "gzip"},
        method="POST",
    )
    try:
        urllib.request.urlopen(req, timeout=60)
        raise AssertionError("expected a 413")
    except urllib.error.HTTPError as exc:
        assert exc.code == 413 and b"ingest.max_body_events" in exc.read()
    grown_mib = (_kib(daemon.proc.pid, "VmHWM") - before) / 1024
    assert grown_mib < 200, f"peak RSS grew {grown_mib:.0f} MiB (it was 2,200 before the cap)"
    with urllib.request.urlopen(daemon.url + "/healthz", timeout=5) as resp:
        assert resp.status == 200


def test_a_gzip_bomb_stops_inflating_at_the_limit() -> None:
    """64 MiB of zeros in 64 KB of gzip: refused after inflating past the body limit, not
    after inflating everything."""
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    bomb = b"".join(squeeze.compress(block) for _ in range(64)) + squeeze.flush()
    assert len(bomb) < 100_000
    limit = IngestConfig().max_body_bytes
    tracemalloc.start()
    try:
        with pytest.raises(events_module.BodyTooLarge):
            events_module.decompress(bomb, "gzip", limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * limit, peak


def test_a_bad_cap_is_named_by_its_path(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("ingest: {max_body_events: 0}\n")
    with pytest.raises(ConfigError, match=r"ingest\.max_body_events"):
        load_settings(cfg)
