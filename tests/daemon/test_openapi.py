"""/openapi.json describes every route the daemon serves (issue 12: it left out /v1/traces,
/v1/alertmanager and /). Checked against the aiohttp router itself, so a route added without
its description fails here."""

from __future__ import annotations

from pathlib import Path

import orjson

from config.settings import Settings
from daemon.api import OPENAPI
from daemon.app import Daemon
from tests.conftest import DaemonProcess
from tests.e2e.harness import http


def registered_routes(tmp_path: Path) -> set[tuple[str, str]]:
    daemon = Daemon(Settings(state={"path": tmp_path / "state.db"}))
    try:
        app = daemon.build_app()
        return {
            (route.method.lower(), route.resource.canonical)
            for route in app.router.routes()
            if route.resource is not None and route.method != "HEAD"  # HEAD comes with GET
        }
    finally:
        daemon.store.close()


def test_every_route_is_in_the_spec_and_nothing_else(tmp_path: Path) -> None:
    routes = registered_routes(tmp_path)
    described = {
        (method, path)
        for path, item in OPENAPI["paths"].items()
        for method in item
        if method in {"get", "post", "put", "delete", "patch"}
    }
    assert routes - described == set(), "routes without a description"
    assert described - routes == set(), "described paths the daemon does not serve"
    for path in ("/v1/traces", "/v1/alertmanager", "/", "/-/reload", "/openapi.json"):
        assert path in OPENAPI["paths"]
    for item in OPENAPI["paths"].values():
        for op in item.values():
            assert op["summary"] and op["responses"]


def test_served_spec_is_the_one_checked(daemon: DaemonProcess) -> None:
    status, raw, ctype = http("GET", daemon.url + "/openapi.json")
    assert status == 200 and ctype.startswith("application/json")
    served = orjson.loads(raw)
    assert served["openapi"].startswith("3.") and set(served["paths"]) == set(OPENAPI["paths"])
