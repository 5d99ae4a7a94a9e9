"""Wiring: the one place that builds the daemon and runs its lifecycle.

Components are built here and passed down (one settings object, one registry, one logger, one
clock), background tasks are owned here, and shutdown is the reverse of start-up: stop
accepting, finish in-flight requests, run a last tick, flush state, stop the pagers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import math
import signal
import time
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from config.settings import Settings
from correlator import SilenceMuter
from daemon import api
from daemon.alertmanager import alertmanager_signals
from daemon.events import (
    BodyError,
    BodyTooLarge,
    UnsupportedMediaType,
    body_format,
    decompress,
    loads_lenient,
    parse_body,
    validate_items,
)
from daemon.exposition import PipelineCollector
from daemon.otlp import OtlpError, spans_to_events
from daemon.paging import Paging
from daemon.pipeline import Pipeline, TickOutput
from daemon.store import Store

SNAPSHOT_KEY = "pipeline"
CORRELATOR_KEY = "correlator"
SILENCES_KEY = "silences"
SHUTDOWN_TIMEOUT_S = 10.0
SHED_LAG_S = 2.0  # event-loop lag past which ingest answers 503 + Retry-After


class Daemon:
    def __init__(
        self,
        settings: Settings,
        log: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.log = log or structlog.get_logger("llm_oncall")
        self.clock = clock
        self.store = Store(settings.state.path)
        self.pipeline = Pipeline(settings, self.log)
        self._restore()
        self.rejected: dict[str, int] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(PipelineCollector(lambda: self.pipeline, self.rejected, clock))
        self.paging = Paging(settings, self.store, self.registry, self.log, clock)
        self._stop = asyncio.Event()
        self._ready = False
        self._loop_lag = 0.0

    # ---- state ----------------------------------------------------------------------------

    def _restore(self) -> None:
        snap = self.store.get(SNAPSHOT_KEY)
        if snap is not None:
            for warning in self.pipeline.restore(snap):
                self.log.warning("state_restore_partial", detail=warning)
        saved_silences = self.store.get(SILENCES_KEY)
        if saved_silences is not None:
            try:
                for sil in SilenceMuter.from_state(saved_silences).list():
                    # Config silences keep the config's definition; API ones come back.
                    if self.pipeline.silences.get(sil.id) is None:
                        self.pipeline.silences.add(sil)
            except ValueError as exc:
                self.log.warning("state_restore_partial", detail=f"silences: {exc}")
        corr = self.store.get(CORRELATOR_KEY)
        if corr is not None:
            try:
                self.pipeline.restore_correlator(corr)
            except (ValueError, KeyError, TypeError) as exc:
                self.log.warning("state_restore_partial", detail=f"incidents: {exc}")
        if snap is not None or corr is not None:
            self.log.info("state_restored", series=len(self.pipeline.detector_keys()))

    def save_snapshot(self) -> None:
        snap = self.pipeline.snapshot()
        now = self.clock()
        with self.store.transaction() as conn:
            self.store.put(conn, SNAPSHOT_KEY, snap, now)
            self.store.put(conn, CORRELATOR_KEY, self.pipeline.correlator.to_state(), now)

    def save_silences(self) -> None:
        self.pipeline.silences.gc(self.clock())
        with self.store.transaction() as conn:
            self.store.put(conn, SILENCES_KEY, self.pipeline.silences.to_state(), self.clock())

    # ---- pipeline output ------------------------------------------------------------------

    def handle(self, out: TickOutput) -> None:
        """Log signals; persist incident changes together with their pages."""
        for sig in out.signals:
            self.log.info("signal", **sig.to_record())
        if not out.updates:
            return
        now = self.clock()
        with self.store.transaction() as conn:
            for upd in out.updates:
                record = upd.incident.to_record()
                self.store.save_incident(conn, record, upd.incident.opened_at, now)
                self.paging.enqueue(conn, upd, record)
            # The correlator's state commits with the pages it caused: after a crash the
            # restored correlator knows which incidents were already paged.
            self.store.put(conn, CORRELATOR_KEY, self.pipeline.correlator.to_state(), now)
        self.paging.wake()
        for upd in out.updates:
            self.log.info(
                "incident_" + upd.action,
                id=upd.incident.id,
                feature=upd.incident.feature,
                severity=upd.incident.severity,
                domain=upd.incident.domain,
                notify=upd.notify,
            )

    # ---- HTTP -----------------------------------------------------------------------------

    def authorized(self, request: web.Request) -> bool:
        token = self.settings.ingest.token
        if token is None:
            return True
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.get_secret_value().encode()
        )

    def _count_rejected(self, reason: str, n: int = 1) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + n

    async def _read_body(self, request: web.Request) -> bytes | web.Response:
        """Auth, load shedding, size limit and gzip: shared by every ingest endpoint."""
        if not self.authorized(request):
            self._count_rejected("unauthorized")
            return api.unauthorized()
        if self._loop_lag > SHED_LAG_S:
            self._count_rejected("shed")
            return web.json_response(
                {"error": "overloaded, retry later"}, status=503, headers={"Retry-After": "1"}
            )
        limit = self.settings.ingest.max_body_bytes
        too_large = web.json_response({"error": f"body exceeds {limit} bytes"}, status=413)
        if request.content_length is not None and request.content_length > limit:
            self._count_rejected("too_large")
            return too_large
        try:
            raw = await request.read()
            return decompress(raw, request.headers.get("Content-Encoding"), limit)
        except (web.HTTPRequestEntityTooLarge, BodyTooLarge):
            self._count_rejected("too_large")
            return too_large
        except BodyError as exc:
            self._count_rejected("bad_body")
            return web.json_response(
                {"accepted": 0, "rejected": [{"index": 0, "error": str(exc)}]}, status=400
            )

    async def post_events(self, request: web.Request) -> web.Response:
        body = await self._read_body(request)
        if isinstance(body, web.Response):
            return body
        ctype = request.headers.get("Content-Type")
        try:
            body_format(ctype)
        except UnsupportedMediaType as exc:
            self._count_rejected("bad_body")
            return web.json_response({"error": str(exc)}, status=415)
        try:
            events, rejected = parse_body(body, ctype)
        except BodyError as exc:
            self._count_rejected("bad_body")
            return web.json_response(
                {"accepted": 0, "rejected": [{"index": 0, "error": str(exc)}]}, status=400
            )
        if rejected:
            self._count_rejected("invalid", len(rejected))
        if events:
            self.handle(self.pipeline.ingest(events, now=self.clock()))
        payload = {"accepted": len(events), "rejected": [r.to_dict() for r in rejected]}
        return web.json_response(payload, status=200 if events else 400)

    async def post_traces(self, request: web.Request) -> web.Response:
        """OTLP/HTTP with JSON encoding (protobuf is answered 415, as the spec allows).

        A malformed structure around the spans is a 400 naming its JSON path; malformed or
        invalid spans are rejected one by one (partialSuccess), and when none was accepted the
        answer is a 400 with the same messages, as for `/v1/events`."""
        ctype = (request.headers.get("Content-Type") or "").split(";")[0].strip()
        if ctype != "application/json":
            return web.json_response(
                {"error": "only OTLP/HTTP JSON (Content-Type: application/json) is accepted"},
                status=415,
            )
        body = await self._read_body(request)
        if isinstance(body, web.Response):
            return body
        try:
            spans = spans_to_events(loads_lenient(body))
        except (OtlpError, ValueError) as exc:
            self._count_rejected("bad_body")
            return web.json_response({"error": str(exc)}, status=400)
        events, rejected = validate_items(spans.events)
        errors = spans.errors + [f"{spans.paths[r.index]}: {r.error}" for r in rejected]
        if errors:
            self._count_rejected("invalid", len(errors))
        if spans.skipped:
            self.pipeline.counters.count_unused("not_llm_span", spans.skipped)
        if events:
            self.handle(self.pipeline.ingest(events, now=self.clock()))
        if not errors:
            return web.json_response({})
        message = "; ".join(errors[:20])
        if not events:
            return web.json_response({"error": message, "rejectedSpans": len(errors)}, status=400)
        partial = {"rejectedSpans": len(errors), "errorMessage": message}
        return web.json_response({"partialSuccess": partial})

    async def post_alertmanager(self, request: web.Request) -> web.Response:
        """Alertmanager webhook in: infra alerts (GPU nodes, vector store) join incidents."""
        body = await self._read_body(request)
        if isinstance(body, web.Response):
            return body
        try:
            signals, errors = alertmanager_signals(loads_lenient(body), self.clock())
        except ValueError as exc:
            self._count_rejected("bad_body")
            return web.json_response({"error": str(exc)}, status=400)
        if errors:
            self._count_rejected("invalid", len(errors))
        self.handle(self.pipeline.external_signals(signals))
        status = 200 if signals or not errors else 400
        return web.json_response({"accepted": len(signals), "rejected": errors}, status=status)

    async def get_metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        if not self._ready or self._stop.is_set():
            return web.json_response({"status": "not ready"}, status=503)
        return web.json_response({"status": "ready", "loop_lag_s": round(self._loop_lag, 3)})

    def build_app(self) -> web.Application:
        # aiohttp enforces the body limit while reading (413) before we buffer a huge body.
        app = web.Application(client_max_size=self.settings.ingest.max_body_bytes)
        app.router.add_post("/v1/events", self.post_events)
        app.router.add_post("/v1/traces", self.post_traces)
        app.router.add_post("/v1/alertmanager", self.post_alertmanager)
        app.router.add_get("/metrics", self.get_metrics)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        api.add_routes(app, self)
        return app

    # ---- background work ------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        """Tick on the wall clock, aligned to tick boundaries, and watch event-loop lag."""
        tick_s = self.settings.aggregation.tick_s
        while not self._stop.is_set():
            now = self.clock()
            next_at = (math.floor(now / tick_s) + 1) * tick_s
            delay = max(0.0, next_at - now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=delay)
            started = self.clock()
            self._loop_lag = max(0.0, started - next_at) if not self._stop.is_set() else 0.0
            self.handle(self.pipeline.advance(started))

    async def _snapshot_loop(self) -> None:
        interval = self.settings.state.snapshot_interval_s
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=interval)
            self.save_snapshot()

    async def serve(self) -> None:
        """Run until SIGTERM/SIGINT, then stop gracefully within SHUTDOWN_TIMEOUT_S."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        # auto_decompress=False: we inflate gzip ourselves, with the body limit applied to the
        # inflated size (a small gzip bomb is a 413, not an out-of-memory).
        runner = web.AppRunner(
            self.build_app(),
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S / 2,
            auto_decompress=False,
        )
        await runner.setup()
        listen = self.settings.listen
        site = web.TCPSite(runner, listen.host, listen.port)
        await site.start()
        port = _bound_port(runner) or listen.port
        tasks = [
            asyncio.create_task(self._tick_loop(), name="tick"),
            asyncio.create_task(self._snapshot_loop(), name="snapshot"),
        ]
        await self.paging.start()
        self._ready = True
        self.log.info("listening", host=listen.host, port=port, state=str(self.store.path),
                      receivers=self.paging.receiver_names())  # fmt: skip
        try:
            await self._stop.wait()
        finally:
            self._ready = False
            self.log.info("stopping")
            await runner.cleanup()  # stop accepting, let in-flight requests finish
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.handle(self.pipeline.advance(self.clock()))
            self.save_snapshot()
            await self.paging.stop(timeout=SHUTDOWN_TIMEOUT_S / 3)
            self.store.close()
            self.log.info("stopped")


def _bound_port(runner: web.AppRunner) -> int | None:
    for addr in runner.addresses:
        if isinstance(addr, tuple) and len(addr) >= 2:
            return int(addr[1])
    return None
