"""What a browser must not do to the daemon whatever the tokens (probe findings after issue
13): cross-site writes to control endpoints, DNS rebinding of a loopback listener, framing,
and redirects out of the site from `/login?next=` or a form's `back`."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from config.settings import Settings
from daemon.app import Daemon
from daemon.pages import _safe_next

# Mutes every feature: what a cross-site page would post. `.+`, not `.*`: a silence whose
# matchers all match the empty string is refused (as Alertmanager does) whoever sends it.
SILENCE = {
    "matchers": [{"name": "feature", "value": ".+", "is_regex": True}],
    "ends_at": time.time() + 3600,
}


async def client_for(tmp: Path) -> tuple[Daemon, TestClient]:
    # A loopback listener, as on a laptop (the default 0.0.0.0 is for a sidecar's scrapes).
    daemon = Daemon(Settings(state={"path": tmp / "state.db"}, listen={"host": "127.0.0.1"}))
    client = TestClient(TestServer(daemon.build_app(), host="127.0.0.1"))
    await client.start_server()
    return daemon, client


@pytest.mark.asyncio
async def test_cross_site_writes_are_refused_and_other_clients_are_not(tmp_path: Path) -> None:
    daemon, client = await client_for(tmp_path)
    try:
        for origin in ("http://evil.example", "null"):
            resp = await client.post("/api/v1/silences", json=SILENCE, headers={"Origin": origin})
            assert resp.status == 403, origin
            assert "cross-site" in (await resp.json())["error"]
            assert (await client.post("/-/reload", headers={"Origin": origin})).status == 403
        assert daemon.pipeline.silences.list() == []
        # The CLI, curl and Alertmanager send no Origin; the daemon's own pages send its own.
        own = f"http://{client.host}:{client.port}"
        for headers in ({}, {"Origin": own}):
            resp = await client.post("/api/v1/silences", json=SILENCE, headers=headers)
            assert resp.status == 201, headers
        # Ingest is not a control endpoint: a browser SDK may post telemetry cross-origin.
        resp = await client.post(
            "/v1/events",
            json={"type": "llm_call", "ts": 1_795_000_000.0, "feature": "f", "status": 200},
            headers={"Origin": "http://app.example"},
        )
        assert resp.status == 200
    finally:
        await client.close()
        daemon.store.close()


@pytest.mark.asyncio
async def test_a_rebound_host_is_refused_on_loopback_and_pages_cannot_be_framed(
    tmp_path: Path,
) -> None:
    daemon, client = await client_for(tmp_path)
    try:
        rebound = {"Host": "evil.example:9477", "Sec-Fetch-Mode": "cors"}
        resp = await client.get("/api/v1/incidents", headers=rebound)
        assert resp.status == 421
        # Not a browser (no Sec-Fetch-*, no Origin): a client may name the host as it likes.
        plain = await client.get("/api/v1/incidents", headers={"Host": "llm-oncall:9477"})
        assert plain.status == 200
        ok = await client.get("/", headers={"Host": f"localhost:{client.port}"})
        assert ok.status == 200
        assert ok.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in ok.headers["Content-Security-Policy"]
    finally:
        await client.close()
        daemon.store.close()


@pytest.mark.parametrize(
    ("target", "kept"),
    [
        ("/incidents/inc-1", True),
        ("/incidents/inc-1?error=x", True),
        ("/", True),
        ("//evil.example", False),
        ("/\\evil.example", False),
        ("/\t/evil.example", False),
        ("/x\r\nSet-Cookie: a=b", False),
        ("https://evil.example/", False),
        ("", False),
    ],
)
def test_redirect_targets_stay_on_this_host(target: str, kept: bool) -> None:
    assert (_safe_next(target) == target) is kept
    if not kept:
        assert _safe_next(target) == "/"


@pytest.mark.asyncio
async def test_a_name_with_a_bidi_override_is_refused(tmp_path: Path) -> None:
    """U+202E makes a name read backwards in Slack and on the pages (probe finding)."""
    daemon, client = await client_for(tmp_path)
    try:
        resp = await client.post("/api/v1/incidents/inc-x/ack", json={"by": "al\u202eice"})
        assert resp.status == 400
        assert "bidi" in (await resp.json())["error"]
    finally:
        await client.close()
        daemon.store.close()
