"""Fake PagerDuty, Opsgenie and generic HTTP receivers that check every request against
the documented fields and limits, and can be told to fail.

PagerDuty Events API v2 (developer.pagerduty.com "Send an Alert Event", "Overview"):
routing_key is the 32-character integration key; event_action trigger|acknowledge|resolve;
dedup_key ≤ 255; payload.summary (≤ 1024), payload.source, payload.severity
(critical|error|warning|info) required for trigger; event ≤ 512 KB; 202 accepted, 400 invalid.

Opsgenie Alert API (docs.opsgenie.com "Alert API"): `Authorization: GenieKey <key>`;
message required ≤ 130; alias ≤ 512; description ≤ 15000; details a string map (≤ 8000 in
total); tags ≤ 20 of ≤ 50; entity ≤ 512; source ≤ 100; priority P1..P5; responders objects
with type team|user|escalation|schedule and id|name|username; close / acknowledge by
identifier with identifierType id|alias|tiny; 202 with a requestId; request status at
GET /v2/alerts/requests/{requestId}.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class Fault:
    status: int = 500
    retry_after: str | None = None
    sleep_s: float = 0.0  # sleep before answering (a timeout when longer than the client's)
    body: str = ""


@dataclass
class Received:
    t: float  # the fake's clock when accepted
    body: dict[str, Any]
    path: str = ""
    headers: dict[str, str] = field(default_factory=dict)


class _FakeBase:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.faults: list[Fault] = []
        self.down: Fault | None = None  # every request fails with this until cleared
        self.accepted: list[Received] = []
        self.rejected: list[tuple[int, list[str]]] = []
        self.requests = 0
        self.request_times: list[float] = []
        self.latency_s = 0.0  # every request takes this long (crash tests kill mid-request)
        self.server: TestServer | None = None

    def fail_next(self, n: int, fault: Fault) -> None:
        self.faults.extend([fault] * n)

    async def _fault(self) -> web.Response | None:
        self.requests += 1
        self.request_times.append(self.clock())
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        fault = self.faults.pop(0) if self.faults else self.down
        if fault is None:
            return None
        if fault.sleep_s:
            await asyncio.sleep(fault.sleep_s)
            if fault.status == 0:
                return None  # slow but then fine
        headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
        return web.Response(status=fault.status, text=fault.body, headers=headers)

    def app(self) -> web.Application:
        raise NotImplementedError

    async def start(self) -> str:
        self.server = TestServer(self.app(), host="127.0.0.1", port=0)
        await self.server.start_server()
        return str(self.server.make_url("")).rstrip("/")

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()


def _str_max(d: dict[str, Any], key: str, limit: int, errors: list[str], required: bool) -> None:
    if key not in d:
        if required:
            errors.append(f"{key} is required")
        return
    v = d[key]
    if not isinstance(v, str):
        errors.append(f"{key} must be a string")
    elif required and not v:
        errors.append(f"{key} must not be empty")
    elif len(v) > limit:
        errors.append(f"{key} longer than {limit}")


class FakePagerDuty(_FakeBase):
    def __init__(self, routing_key: str, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self.routing_key = routing_key

    def app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/v2/enqueue", self.enqueue)
        return app

    @staticmethod
    def validate(raw: bytes, expected_key: str | None = None) -> tuple[dict[str, Any], list[str]]:
        errors: list[str] = []
        if len(raw) > 512 * 1000:
            errors.append("event larger than 512 KB")
        try:
            ev = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return {}, ["not JSON"]
        if not isinstance(ev, dict):
            return {}, ["not an object"]
        rk = ev.get("routing_key")
        if not isinstance(rk, str) or len(rk) != 32:
            errors.append("routing_key must be a 32-character string")
        elif expected_key is not None and rk != expected_key:
            errors.append("unknown routing_key")
        action = ev.get("event_action")
        if action not in ("trigger", "acknowledge", "resolve"):
            errors.append("event_action must be trigger, acknowledge or resolve")
        _str_max(ev, "dedup_key", 255, errors, required=action != "trigger")
        if action == "trigger":
            p = ev.get("payload")
            if not isinstance(p, dict):
                errors.append("payload is required")
            else:
                _str_max(p, "summary", 1024, errors, required=True)
                _str_max(p, "source", 10_000, errors, required=True)
                if p.get("severity") not in ("critical", "error", "warning", "info"):
                    errors.append("payload.severity must be critical, error, warning or info")
                for k in ("timestamp", "component", "group", "class"):
                    _str_max(p, k, 10_000, errors, required=False)
                if "custom_details" in p and not isinstance(p["custom_details"], dict):
                    errors.append("payload.custom_details must be an object")
            for link in ev.get("links", []):
                if not isinstance(link, dict) or not isinstance(link.get("href"), str):
                    errors.append("links[].href is required")
        allowed = {
            "routing_key",
            "event_action",
            "dedup_key",
            "payload",
            "links",
            "images",
            "client",
            "client_url",
        }
        extra = set(ev) - allowed
        if extra:
            errors.append(f"unknown fields {sorted(extra)}")
        return ev, errors

    async def enqueue(self, request: web.Request) -> web.Response:
        fault = await self._fault()
        if fault is not None:
            return fault
        raw = await request.read()
        ev, errors = self.validate(raw, self.routing_key)
        if errors:
            self.rejected.append((400, errors))
            return web.json_response(
                {"status": "invalid event", "message": "Event object is invalid", "errors": errors},
                status=400,
            )
        self.accepted.append(Received(self.clock(), ev, request.path))
        return web.json_response(
            {"status": "success", "message": "Event processed", "dedup_key": ev.get("dedup_key")},
            status=202,
        )

    def actions_by_key(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for r in self.accepted:
            out.setdefault(r.body["dedup_key"], []).append(r.body["event_action"])
        return out


class FakeOpsgenie(_FakeBase):
    def __init__(self, api_key: str, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self.api_key = api_key
        self.requests_status: dict[str, dict[str, Any]] = {}
        self.fail_processing = False  # request status isSuccess false
        self.status_polls = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v2/alerts", self.create)
        app.router.add_post("/v2/alerts/{identifier}/{verb}", self.action)
        app.router.add_get("/v2/alerts/requests/{request_id}", self.request_status)
        return app

    def _auth(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"GenieKey {self.api_key}":
            self.rejected.append((401, ["bad GenieKey"]))
            return web.json_response({"message": "Could not authenticate"}, status=401)
        return None

    def _accept(self, body: dict[str, Any], path: str, action: str) -> web.Response:
        rid = str(uuid.uuid4())
        ok = not self.fail_processing
        self.requests_status[rid] = {
            "isSuccess": ok,
            "success": ok,
            "action": action,
            "status": "Created alert" if ok else "Alert does not exist",
        }
        self.accepted.append(Received(self.clock(), body, path))
        return web.json_response(
            {"result": "Request will be processed", "took": 0.01, "requestId": rid}, status=202
        )

    @staticmethod
    def validate_create(body: Any) -> list[str]:
        if not isinstance(body, dict):
            return ["body must be an object"]
        errors: list[str] = []
        _str_max(body, "message", 130, errors, required=True)
        _str_max(body, "alias", 512, errors, required=False)
        _str_max(body, "description", 15000, errors, required=False)
        _str_max(body, "entity", 512, errors, required=False)
        _str_max(body, "source", 100, errors, required=False)
        _str_max(body, "user", 100, errors, required=False)
        _str_max(body, "note", 25000, errors, required=False)
        if "priority" in body and body["priority"] not in ("P1", "P2", "P3", "P4", "P5"):
            errors.append("priority must be P1..P5")
        details = body.get("details", {})
        if not isinstance(details, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in details.items()
        ):
            errors.append("details must map strings to strings")
        elif sum(len(k) + len(v) for k, v in details.items()) > 8000:
            errors.append("details longer than 8000 characters")
        tags = body.get("tags", [])
        if not isinstance(tags, list) or len(tags) > 20:
            errors.append("at most 20 tags")
        elif any(not isinstance(t, str) or len(t) > 50 for t in tags):
            errors.append("tags are strings of at most 50 characters")
        for r in body.get("responders", []):
            if (
                not isinstance(r, dict)
                or r.get("type") not in ("team", "user", "escalation", "schedule")
                or not (r.get("id") or r.get("name") or r.get("username"))
            ):
                errors.append("responders need a type and an id, name or username")
        return errors

    async def create(self, request: web.Request) -> web.Response:
        fault = await self._fault()
        if fault is not None:
            return fault
        denied = self._auth(request)
        if denied is not None:
            return denied
        body = orjson.loads(await request.read())
        errors = self.validate_create(body)
        if errors:
            self.rejected.append((422, errors))
            return web.json_response({"message": "; ".join(errors)}, status=422)
        return self._accept(body, request.path, "Create")

    async def action(self, request: web.Request) -> web.Response:
        fault = await self._fault()
        if fault is not None:
            return fault
        denied = self._auth(request)
        if denied is not None:
            return denied
        verb = request.match_info["verb"]
        ident_type = request.query.get("identifierType", "id")
        errors = []
        if verb not in ("close", "acknowledge"):
            errors.append(f"unknown action {verb}")
        if ident_type not in ("id", "alias", "tiny"):
            errors.append("identifierType must be id, alias or tiny")
        raw = await request.read()
        body = orjson.loads(raw) if raw else {}
        for key, limit in (("source", 100), ("user", 100), ("note", 25000)):
            _str_max(body, key, limit, errors, required=False)
        if errors:
            self.rejected.append((422, errors))
            return web.json_response({"message": "; ".join(errors)}, status=422)
        body = {
            **body,
            "_verb": verb,
            "_identifier": request.match_info["identifier"],
            "_identifierType": ident_type,
        }
        return self._accept(body, request.path, verb.capitalize())

    async def request_status(self, request: web.Request) -> web.Response:
        denied = self._auth(request)
        if denied is not None:
            return denied
        self.status_polls += 1
        status = self.requests_status.get(request.match_info["request_id"])
        if status is None:
            return web.json_response({"message": "Request not found"}, status=404)
        return web.json_response({"data": status, "took": 0.01, "requestId": str(uuid.uuid4())})


class FakeHTTP(_FakeBase):
    """A plain JSON endpoint (Slack webhook, generic webhook) recording raw bodies."""

    def __init__(
        self, path: str = "/hook", ok_status: int = 200, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(clock)
        self.path = path
        self.ok_status = ok_status
        self.raw: list[bytes] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(self.path, self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        fault = await self._fault()
        if fault is not None:
            return fault
        raw = await request.read()
        self.raw.append(raw)
        self.accepted.append(
            Received(self.clock(), orjson.loads(raw), request.path, dict(request.headers))
        )
        return web.Response(status=self.ok_status, text="ok")


class FakeClock:
    """Injected clock and sleep: `sleep` moves time forward instead of waiting."""

    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0.0005)
        self.t += max(0.0, seconds)
