"""Incident API filters: bad values are a 400 that names the parameter."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from config.settings import load_settings
from daemon.app import Daemon


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("status=bogus", "status: must be one of open, resolved"),
        ("severity=page", "severity: must be one of critical, warning, watch"),
        ("since=yesterday", "since: must be RFC 3339 with a zone or Unix seconds"),
        ("since=2026-01-01T00:00:00", "since: needs a time zone"),
        ("since=nan", "since: must be a finite number of Unix seconds"),
        ("since=-inf", "since: must be a finite number of Unix seconds"),
        ("limit=x", "limit: must be an integer"),
    ],
)
async def test_bad_filters_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loop_guard: None, query: str, error: str
) -> None:
    monkeypatch.setenv("LLM_ONCALL_STATE__PATH", str(tmp_path / "state.db"))
    daemon = Daemon(load_settings(None))
    async with TestClient(TestServer(daemon.build_app())) as client:
        resp = await client.get(f"/api/v1/incidents?{query}")
        assert resp.status == 400
        assert await resp.json() == {"error": error}
        ok = await client.get("/api/v1/incidents?status=open&since=2026-01-01T00:00:00Z")
        assert ok.status == 200 and await ok.json() == {"incidents": []}
    daemon.store.close()
