"""Wiring: the one place that builds the daemon and runs its lifecycle.

Components are built here and passed down (one settings object, one registry, one logger, one
clock), background tasks are owned here, and shutdown is the reverse of start-up: stop
accepting, finish in-flight requests, run a last tick, flush state, stop the pagers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import math
import os
import signal
import sqlite3
import time
from asyncio import FIRST_COMPLETED
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import SecretStr

from config.settings import ConfigError, Settings, load_settings
from correlator import ChangeRecord, IncidentUpdate, SilenceMuter, load_silences
from daemon import api, pages
from daemon.exposition import PipelineCollector, render
from daemon.health import HealthCollector, ReloadCollector
from daemon.ingest import otlp_proto
from daemon.ingest.alertmanager import ClampedTime, alertmanager_signals
from daemon.ingest.events import (
    MAX_LISTED,
    Batch,
    BodyError,
    BodyTooLarge,
    Change,
    Event,
    TooManyEvents,
    UnsupportedEncoding,
    UnsupportedMediaType,
    body_format,
    decompress,
    loads_lenient,
    read_events,
    require_json,
    validate_items,
)
from daemon.ingest.otlp import OtlpError, spans_to_events
from daemon.paging import Paging
from daemon.pipeline import Pipeline, TickOutput, config_silences
from daemon.store import Store
from daemon.timeouts import BodyTimeout, body_timeout_response, read_body

SNAPSHOT_KEY = "pipeline"
CORRELATOR_KEY = "correlator"
SILENCES_KEY = "silences"
# Detector state of one series, written with each of its transitions (see `handle`); the
# periodic snapshot, which holds every series, removes them.
SERIES_PREFIX = "series:"
# One change event, written before its request is answered (see `handle`); every write of
# the correlator state, which holds every change kept, removes them.
CHANGE_PREFIX = "change:"
SHUTDOWN_TIMEOUT_S = 10.0
SHED_LAG_S = 2.0  # event-loop lag past which ingest answers 503 + Retry-After
# After a background task dies: how long /readyz answers 503 before the socket closes, so a
# load balancer sees the failure and stops routing here before connections are refused.
FAILED_READINESS_S = 1.0
# How long state writes may keep failing (the file locked past SQLite's busy timeout, a full
# disk) before the tick loop gives up: readiness fails, a final flush is tried, exit 1.
UNSAVED_GIVE_UP_S = 60.0
# The incident page's sign-in cookie (HttpOnly, SameSite=Strict) holds a token: browsers
# cannot add a bearer header to a link or a form.
COOKIE = "llm_oncall_token"
# GETs that never need the read token: probes, and the page that asks for it.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/login"})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
# Endpoints that change state on a person's behalf (not ingest): a browser may reach them only
# from the daemon's own pages (`_guard`).
CONTROL_PREFIXES = ("/api/", "/-/", "/incidents/", "/silences", "/login")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Ingest bodies (events, OTLP) larger than this decode and validate in a worker thread: 8 MiB
# of valid events takes about a second to validate, which the event loop (and /healthz, and
# every other client) would otherwise wait out.
OFFLOAD_BYTES = 256 * 1024
# Validated events enter the pipeline this many at a time, the event loop free in between:
# 165,000 events (8 MiB) take ~0.7 s to aggregate, under 10 ms per slice.
APPLY_SLICE = 2_000
# Ingest bodies waiting for their turn (see `_ingest_turn`), in full-size bodies: past this
# many bytes a new one is answered 503 + Retry-After. With the event loop free during
# validation, a flood no longer shows as loop lag (the other shedding rule); without this
# bound it would queue, in memory, behind the body being validated.
QUEUED_BODIES = 4


class _Unused:
    """The accepted events a batch could not use, for its answer: all counted, the first
    MAX_LISTED named by their index in the body and the reason /metrics counts them under
    (`llm_oncall_events_unused_total{reason}`)."""

    __slots__ = ("count", "listed")

    def __init__(self) -> None:
        self.listed: list[dict[str, Any]] = []
        self.count = 0

    def add(self, index: int, reason: str) -> None:
        self.count += 1
        if len(self.listed) < MAX_LISTED:
            self.listed.append({"index": index, "reason": reason})


class ListenError(Exception):
    """The HTTP listener could not start (port taken, address not on this machine): a
    settings problem the operator fixes in `listen`, reported as one line, not a traceback."""


def _listen_error(host: str, port: int, exc: OSError) -> ListenError:
    # asyncio's bind error repeats the address in its text; the errno's own words are shorter
    # (a host that does not resolve has a negative errno and says it in `strerror`).
    if exc.errno is not None and exc.errno > 0:
        reason = os.strerror(exc.errno)
    else:
        reason = exc.strerror or str(exc)
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return ListenError(f"cannot listen on {where} (listen.host, listen.port): {reason}")


def _accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header (RFC 9110 12.5.3) takes gzip: listed, or covered by
    `*`, with a q-value above 0."""
    named: float | None = None
    star: float | None = None
    for item in accept_encoding.split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        coding = coding.lower()
        if coding in ("gzip", "x-gzip"):
            named = q
        elif coding == "*":
            star = q
    q_gzip = named if named is not None else star
    return q_gzip is not None and q_gzip > 0


def _bearer(request: web.Request) -> str | None:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" else None


def _matches(given: str | None, token: SecretStr) -> bool:
    return given is not None and hmac.compare_digest(
        given.encode(), token.get_secret_value().encode()
    )


class Daemon:
    def __init__(
        self,
        settings: Settings,
        log: Any = None,
        clock: Callable[[], float] = time.time,
        config_path: str | None = None,
    ) -> None:
        self.settings = settings
        self.config_path = config_path  # what a reload reads again (None: env + defaults)
        self.log = log or structlog.get_logger("llm_oncall")
        self.clock = clock
        self.store = Store(settings.state.path, self.log)
        self.pipeline = Pipeline(settings, self.log)
        # Config silences are read-only through the API and never persisted: the file owns them.
        self.config_silence_ids = frozenset(s.id for s in self.pipeline.silences.list())
        self._restore()
        self.rejected: dict[str, int] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        self.collector = PipelineCollector(lambda: self.pipeline, self.rejected, clock)
        self.registry.register(self.collector)
        self.registry.register(HealthCollector(lambda: self.pipeline))
        self.paging = Paging(settings, self.store, self.registry, self.log, clock)
        self._warn_orphaned_pages()
        self.reload_metrics = ReloadCollector(clock())
        self.registry.register(self.reload_metrics)
        self._stop = asyncio.Event()
        self._ready = False
        self._failure: str | None = None  # why a background task died; /readyz says it
        self._loop_lag = 0.0
        self._metrics_lock = asyncio.Lock()
        self._ingest_order = asyncio.Lock()  # see `_ingest_turn`
        self._ingest_queued = 0  # bytes of the bodies waiting for, or holding, their turn
        self._logged: dict[str, tuple[Any, ...]] = {}  # incident id -> state last logged
        # Incident changes and detector transitions not yet written (`handle`): the pipeline
        # has moved on in memory, so they must reach the store before any snapshot does.
        self._unsaved = TickOutput()
        self._unsaved_since: float | None = None

    # ---- state ----------------------------------------------------------------------------

    def _restore(self) -> None:
        """Load what the store holds, part by part: a part that cannot be read (written by
        another version, damaged) is logged and starts fresh without costing the others."""
        snap = self._load(SNAPSHOT_KEY, "detector snapshot")
        if snap is not None:
            try:
                for warning in self.pipeline.restore(snap):
                    self.log.warning("state_restore_partial", detail=warning)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                self.pipeline = Pipeline(self.settings, self.log)
                self.log.warning(
                    "state_restore_partial", detail=f"detector snapshot: {exc!r}; starting fresh"
                )
        try:
            series = self.store.with_prefix(SERIES_PREFIX)
            for warning in self.pipeline.restore_series(series):
                self.log.warning("state_restore_partial", detail=warning)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self.log.warning("state_restore_partial", detail=f"series states: {exc!r}")
        self._restore_silences()
        corr = self._load(CORRELATOR_KEY, "incidents")
        if corr is not None:
            try:
                self.pipeline.restore_correlator(corr)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                self.log.warning("state_restore_partial", detail=f"incidents: {exc}")
        try:
            for warning in self.pipeline.restore_changes(self.store.with_prefix(CHANGE_PREFIX)):
                self.log.warning("state_restore_partial", detail=warning)
        except ValueError as exc:  # a row that is not JSON
            self.log.warning("state_restore_partial", detail=f"change events: {exc}")
        unconfirmed = self.pipeline.reconcile()
        if unconfirmed:
            # Only state written before detector snapshots committed with each transition,
            # or a detector that restarted fresh, gets here (see `Pipeline.reconcile`).
            self.log.warning(
                "state_restore_unconfirmed_signals",
                signals=unconfirmed,
                detail="firing in the incident record but not in the detector state; cleared"
                " after one window unless the detector fires again",
            )
        if snap is not None or corr is not None:
            self.log.info("state_restored", series=len(self.pipeline.detector_keys()))

    def _open_paged(self) -> list[str]:
        """Ids of the open incidents that were paged: each will need a resolve at the
        receivers that got its trigger."""
        return [i.id for i in self.pipeline.correlator.open_incidents() if i.paged]

    def _warn_orphaned_pages(self) -> None:
        """A reload refuses a config that drops a receiver holding open pages, but at start
        the pages are already out and the config is what it is: say loudly which incidents
        will stay open at which missing receiver, so a person can put the receiver back (a
        reload then works) or close them there by hand."""
        for receiver, ids in sorted(self.paging.orphaned_pages(self._open_paged()).items()):
            self.log.warning(
                "open_pages_without_receiver",
                receiver=receiver,
                incidents=ids,
                detail=f"{len(ids)} open incident(s) were paged to receiver {receiver!r},"
                " which is not in the config: their resolve will be a dead letter and the"
                " page stays open there; add the receiver back (then reload) or close the"
                " page at the receiver by hand",
            )

    def _restore_silences(self) -> None:
        """API silences come back one by one: a row that no longer loads (written before
        today's bounds, say `ends_at: 1e308`) is skipped with one log line, never breaking
        start-up or `GET /api/v1/silences`."""
        saved = self._load(SILENCES_KEY, "silences")
        if saved is None:
            return
        loaded, errors = load_silences(saved)
        for error in errors:
            self.log.warning("silence_skipped", detail=error)
        for sil in loaded:
            # Config silences keep the config's definition; a stored `cfg-*` (older versions
            # saved them) whose entry left the config file must not come back.
            if sil.id in self.config_silence_ids or sil.id.startswith(api.CONFIG_SILENCE_PREFIX):
                continue
            self.pipeline.silences.add(sil)

    def _load(self, key: str, what: str) -> Any:
        try:
            return self.store.get(key)
        except ValueError as exc:  # not JSON: written by something else, or damaged
            self.log.warning("state_restore_partial", detail=f"{what}: {exc}; starting fresh")
            return None

    def save_snapshot(self) -> None:
        now = self.clock()
        snap = self.pipeline.snapshot_bytes(now)
        with self.store.transaction() as conn:
            written = self._write_unsaved(conn, now)
            self.store.put(conn, SNAPSHOT_KEY, snap, now)
            self.store.delete_prefix(conn, SERIES_PREFIX)  # the snapshot holds newer states
            self.store.put(conn, CORRELATOR_KEY, self.pipeline.correlator.to_state(), now)
            self.store.delete_prefix(conn, CHANGE_PREFIX)  # the correlator state holds them
        self._saved(written)

    def save_silences(self) -> None:
        """Persist the API silences (config ones live in the config file)."""
        self.pipeline.silences.gc(self.clock())
        api_made = SilenceMuter(
            s for s in self.pipeline.silences.list() if s.id not in self.config_silence_ids
        )
        with self.store.transaction() as conn:
            self.store.put(conn, SILENCES_KEY, api_made.to_state(), self.clock())

    # ---- pipeline output ------------------------------------------------------------------

    def handle(self, out: TickOutput) -> bool:
        """Log signals; persist incident changes together with their pages, and change
        events before the request that carried them is answered. Returns whether everything
        unsaved is now written.

        When a detector transition reached the correlator, that series' detector state
        commits in the same transaction: the correlator's firing signals and the detectors'
        firing states are then always restored as of the same instant, so a signal restored
        as firing has a detector that will clear it (issue 8: after kill -9, 0 of 24 resolves
        were sent). A series' state is a few KB and transitions are rare (a few per incident).

        A write that fails (the file locked past SQLite's busy timeout, a full disk) keeps
        the changes in memory and retries them at every call and before any snapshot: the
        pipeline has already moved on (the incident is open and marked paged), so dropping
        them would lose the page for good, and a later snapshot would save the correlator
        without the incident's row or outbox entry (probe: an alert during a 5-s lock was
        never paged, even after a restart). Meanwhile /readyz fails; after
        `UNSAVED_GIVE_UP_S` the tick loop stops the daemon for a restart from the store.
        The request that caused the change is still answered as accepted: its data is in the
        pipeline, and a client retrying it would count it twice (`post_events` makes one
        exception, for a body of change events only).

        Change events (`out.changes`) are one-off records: a deploy hook sends its record
        once, where telemetry that a crash loses since the last snapshot keeps coming. Each
        new one still kept is written as a row of its own (`change:<digest>`, at most a few
        KB) in this call, so it is on disk before the 200 (probe: a change answered 200 was
        gone after a kill -9 within the 60-s snapshot interval). The rows go when the
        correlator state, which holds every change kept, is next written (an incident change
        or the snapshot, so within `snapshot_interval_s`); a restart puts them back
        (`Pipeline.restore_changes`). Commits are not fsynced (WAL, synchronous=NORMAL, as
        for incidents and pages): they survive the process dying, not the machine losing
        power.
        """
        for sig in out.signals:
            self.log.info("signal", **sig.to_record())
        if out.unsaved():
            self._unsaved.updates.extend(out.updates)
            self._unsaved.changed |= out.changed
            self._unsaved.changes.extend(out.changes)
        if not self._unsaved.unsaved():
            return True
        now = self.clock()
        try:
            with self.store.transaction() as conn:
                written = self._write_unsaved(conn, now)
        except (sqlite3.Error, OSError) as exc:
            if self._unsaved_since is None:
                self._unsaved_since = now
            self.log.error(
                "state_write_failed",
                state=str(self.store.path),
                error=f"{type(exc).__name__}: {exc}",
                unsaved_updates=len(self._unsaved.updates),
                unsaved_changes=len(self._unsaved.changes),
                failing_for_s=round(now - self._unsaved_since, 1),
                detail="kept in memory and retried; pages go out once written",
            )
            return False
        self._saved(written)
        return True

    def _write_unsaved(self, conn: sqlite3.Connection, now: float) -> TickOutput:
        """Write the unsaved changes in `conn`'s transaction; returns what was written."""
        unsaved = self._unsaved
        if not unsaved.updates and not unsaved.changed:
            # Change events alone: a row each, not the whole correlator state (up to
            # `max_changes` changes and every incident kept) per request.
            for change in unsaved.changes:
                self.store.put(conn, _change_row(change), change.to_state(), now)
            return unsaved
        for upd in unsaved.updates:
            record = upd.incident.to_record()
            self.store.save_incident(conn, record, upd.incident.opened_at, now)
            self.paging.enqueue(conn, upd, record)
        # The correlator's state commits with the pages it caused: after a crash the
        # restored correlator knows which incidents were already paged. It holds every
        # change event kept, so the rows written for them one by one can go.
        self.store.put(conn, CORRELATOR_KEY, self.pipeline.correlator.to_state(), now)
        self.store.delete_prefix(conn, CHANGE_PREFIX)
        for entry in self.pipeline.series_states(unsaved.changed):
            key = SERIES_PREFIX + orjson.dumps(entry["key"]).decode()
            self.store.put(conn, key, entry, now)
        return unsaved

    def _saved(self, written: TickOutput) -> None:
        """After the commit of `written`: wake the sender, log the changes."""
        self._unsaved, self._unsaved_since = TickOutput(), None
        if not written.updates and not written.changed:
            return
        self.paging.wake()
        for upd in written.updates:
            self._log_update(upd)

    def _log_update(self, upd: IncidentUpdate) -> None:
        """One log line per change of an incident's state, not per tick: a tick's refresh
        moves the evidence's numbers, which the API shows; the log says what changed."""
        inc = upd.incident
        state = (
            inc.status,
            inc.severity,
            inc.domain,
            None if inc.muted is None else inc.muted.reason,
            frozenset((s.metric, s.series, s.detector) for s in inc.signals if s.cleared is None),
            inc.acknowledged,
        )
        if upd.action == "update" and upd.notify is None and self._logged.get(inc.id) == state:
            return
        if inc.status == "resolved":
            self._logged.pop(inc.id, None)  # bounded by the open incidents
        else:
            self._logged[inc.id] = state
        self.log.info(
            "incident_" + upd.action,
            id=inc.id,
            feature=inc.feature,
            severity=inc.severity,
            domain=inc.domain,
            notify=upd.notify,
            firing=sorted(m for m, _, _ in state[4]),
        )

    # ---- config reload --------------------------------------------------------------------

    def reload_config(self, trigger: str) -> dict[str, Any]:
        """Read the config file again (and the environment), validate it, apply it at once.

        Prometheus' convention: SIGHUP or `POST /-/reload`; a config that does not validate
        changes nothing and the old one stays in force; the outcome is logged and shown in
        /metrics. Settings that shape what is already running (listen, state, aggregation
        windows, log, ingest.max_body_bytes) keep their running values and are listed as
        needing a restart. Every part is built before any is swapped in, and the swap has no
        await in it, so no request or tick sees half a config.
        """
        try:
            new = load_settings(self.config_path)
        except ConfigError as exc:
            return self._reload_failed(trigger, exc.errors)
        new, restart = _keep_running(self.settings, new)
        try:
            commit_pipeline = self.pipeline.prepare_reconfigure(new)
            commit_paging = self.paging.prepare_reconfigure(new, self._open_paged())
        except (ValueError, TypeError, KeyError) as exc:  # validated, so not expected
            return self._reload_failed(trigger, [f"{type(exc).__name__}: {exc}"])
        commit_paging()
        out = commit_pipeline(self.clock())
        self.settings = new
        self.config_silence_ids = frozenset(s.id for s in config_silences(new))
        self.reload_metrics.record(True, self.clock())
        self.log.info(
            "config_reloaded",
            trigger=trigger,
            config=self.config_path or "embedded defaults",
            summary=new.summary(),
            detectors=self.pipeline.last_reconfigure,
            restart_required=restart,
        )
        self.handle(out)
        return {"status": "success", "restart_required": restart}

    def _reload_failed(self, trigger: str, errors: list[str]) -> dict[str, Any]:
        self.reload_metrics.record(False, self.clock())
        self.log.error(
            "config_reload_failed",
            trigger=trigger,
            config=self.config_path or "embedded defaults",
            errors=errors,
            action="the running config stays in force",
        )
        return {"status": "error", "errors": errors}

    def _on_sighup(self) -> None:
        try:
            self.reload_config("SIGHUP")
        except Exception as exc:  # a signal handler must never take the daemon down
            self.reload_metrics.record(False, self.clock())
            self.log.error("config_reload_failed", trigger="SIGHUP", error=repr(exc)[:500])

    async def post_reload(self, request: web.Request) -> web.Response:
        """`POST /-/reload`: 200 when the new config is in force, 400 with every error (the
        old config stays) otherwise. Needs the ingest token when one is configured."""
        if not self.authorized(request):
            return api.unauthorized()
        result = self.reload_config("POST /-/reload")
        return web.json_response(result, status=200 if result["status"] == "success" else 400)

    # ---- HTTP -----------------------------------------------------------------------------

    def authorized(self, request: web.Request) -> bool:
        """Ingest: the bearer token `ingest.token`, when one is configured."""
        token = self.settings.ingest.token
        if token is None:
            return True
        return _matches(_bearer(request), token)

    def can_write(self, request: web.Request) -> bool:
        """Silences, acknowledge, resolve, test pages: the ingest token when configured, else
        the read token when that is, else anyone (the embedded default, on loopback). The
        incident page's forms send it as the sign-in cookie instead of a header."""
        token = self.settings.ingest.token or self.settings.api.read_token
        if token is None:
            return True
        return _matches(_bearer(request), token) or _matches(request.cookies.get(COOKIE), token)

    def can_read(self, request: web.Request) -> bool:
        """GETs of the API and pages: either token, once `api.read_token` is set."""
        read = self.settings.api.read_token
        if read is None:
            return True
        given = [_bearer(request), request.cookies.get(COOKIE)]
        tokens = [t for t in (read, self.settings.ingest.token) if t is not None]
        return any(_matches(g, t) for g in given for t in tokens)

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """What a browser must not do to an on-call daemon, whatever the tokens:

        - DNS rebinding: on a loopback listener, a browser's request (it carries
          `Sec-Fetch-Mode` or `Origin`) with a Host that is not a loopback name is refused (a
          rebound evil.example would otherwise be same-origin with the daemon); other
          clients may name the host as they like;
        - cross-site writes: a state-changing request to a control endpoint that carries an
          `Origin` (every browser sends one on cross-origin POST, even without CORS, and
          `null` from sandboxed frames) must come from this host. Clients that are not
          browsers (the CLI, curl, Alertmanager) send none and are unaffected;
        - framing: no page may be framed (clickjacking)."""
        browser = "Sec-Fetch-Mode" in request.headers or "Origin" in request.headers
        if browser and self.settings.listen.host in LOOPBACK_HOSTS:
            name = (request.host or "").rsplit(":", 1)[0].strip("[]").lower()
            if request.host and name not in LOOPBACK_HOSTS:
                return web.json_response(
                    {"error": f"Host {request.host!r} is not served on a loopback listener"},
                    status=421,
                )
        if request.method not in SAFE_METHODS and request.path.startswith(CONTROL_PREFIXES):
            origin = request.headers.get("Origin")
            if origin is not None and (origin == "null" or urlsplit(origin).netloc != request.host):
                return web.json_response(
                    {"error": f"cross-site request refused (Origin {origin!r})"}, status=403
                )
        response: web.StreamResponse = await handler(request)
        if not response.prepared:  # a 408 for a slow body is written by its handler
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    @web.middleware
    async def _read_auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """`api.read_token` guards every GET except the probes and the sign-in form."""
        if request.method in ("GET", "HEAD") and request.path not in OPEN_PATHS:
            public_metrics = request.path == "/metrics" and not self.settings.api.protect_metrics
            if not public_metrics and not self.can_read(request):
                if request.path == "/" or request.path.startswith("/incidents"):
                    return pages.see_other(f"/login?next={quote(request.path_qs)}")
                return api.unauthorized()
        response: web.StreamResponse = await handler(request)
        return response

    def _count_rejected(self, reason: str, n: int = 1) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + n

    async def _read_body(self, request: web.Request) -> bytes | web.StreamResponse:
        """Auth, load shedding, size limit and gzip: shared by every ingest endpoint."""
        if not self.authorized(request):
            self._count_rejected("unauthorized")
            return api.unauthorized()
        if self._loop_lag > SHED_LAG_S:
            return self._shed()
        limit = self.settings.ingest.max_body_bytes
        too_large = web.json_response({"error": f"body exceeds {limit} bytes"}, status=413)
        if request.content_length is not None and request.content_length > limit:
            self._count_rejected("too_large")
            return too_large
        try:
            raw = await read_body(request, self.settings.listen.body_timeout_s)
            return decompress(raw, request.headers.get("Content-Encoding"), limit)
        except BodyTimeout as exc:
            self._count_rejected("body_timeout")
            return await body_timeout_response(request, exc)
        except (web.HTTPRequestEntityTooLarge, BodyTooLarge):
            self._count_rejected("too_large")
            return too_large
        except UnsupportedEncoding as exc:
            self._count_rejected("bad_body")
            return web.json_response(
                {"error": str(exc)}, status=415, headers={"Accept-Encoding": "gzip"}
            )
        except BodyError as exc:
            self._count_rejected("bad_body")
            return web.json_response(
                {"accepted": 0, "rejected": [{"index": 0, "error": str(exc)}]}, status=400
            )

    def _shed(self) -> web.Response:
        self._count_rejected("shed")
        return web.json_response(
            {"error": "overloaded, retry later"}, status=503, headers={"Retry-After": "1"}
        )

    def _queue_full(self, size: int) -> bool:
        """A body of `size` bytes would queue past QUEUED_BODIES full bodies (one body alone
        always gets its turn)."""
        bound = QUEUED_BODIES * self.settings.ingest.max_body_bytes
        return self._ingest_queued > 0 and self._ingest_queued + size > bound

    @contextlib.asynccontextmanager
    async def _ingest_turn(self, size: int) -> AsyncIterator[None]:
        """Decode and apply one ingest body, after every body that arrived before it.

        One lock (asyncio.Lock wakes its waiters first come, first served) for /v1/events
        and /v1/traces: a large body validated in a worker thread is not overtaken by a
        small one behind it, so batches reach the pipeline in the order they finished
        arriving, and one decoded batch at a time waits for the pipeline."""
        self._ingest_queued += size
        try:
            async with self._ingest_order:
                yield
        finally:
            self._ingest_queued -= size

    async def post_events(self, request: web.Request) -> web.StreamResponse:
        """`POST /v1/events` (DESIGN.md "Event contract"). The answer's `accepted` counts the
        valid events; extensions: `rejected` names the first MAX_LISTED rejected events
        (`rejected_count` counts all of them when more were), and `unused` names the accepted
        events the pipeline could not use (late, future, past a cap) with their reason
        (`unused_count` likewise), so a sender sees what /metrics counts."""
        body = await self._read_body(request)
        if isinstance(body, web.StreamResponse):
            return body
        ctype = request.headers.get("Content-Type")
        try:
            body_format(ctype)
        except UnsupportedMediaType as exc:
            self._count_rejected("bad_body")
            return web.json_response({"error": str(exc)}, status=415)
        max_events = self.settings.ingest.body_events_limit

        def decode() -> Batch:
            return read_events(body, ctype, max_events=max_events, listed=MAX_LISTED)

        if self._queue_full(len(body)):
            return self._shed()
        async with self._ingest_turn(len(body)):
            try:
                if len(body) > OFFLOAD_BYTES:
                    batch = await asyncio.to_thread(decode)
                else:
                    batch = decode()
            except TooManyEvents as exc:
                self._count_rejected("too_large")
                return web.json_response({"error": str(exc)}, status=413)
            except BodyError as exc:
                self._count_rejected("bad_body")
                return web.json_response(
                    {"accepted": 0, "rejected": [{"index": 0, "error": str(exc)}]}, status=400
                )
            if batch.rejected_count:
                self._count_rejected("invalid", batch.rejected_count)
            unused, written = await self._apply(batch.events, batch.indexes)
        payload: dict[str, Any] = {
            "accepted": len(batch.events),
            "rejected": [r.to_dict() for r in batch.rejected],
        }
        if batch.rejected_count > len(batch.rejected):
            payload["rejected_count"] = batch.rejected_count
        if unused.count:
            payload["unused"] = unused.listed
            if unused.count > len(unused.listed):
                payload["unused_count"] = unused.count
        if batch.events and not written and all(isinstance(ev, Change) for ev in batch.events):
            # Not on disk, and nothing in the body would count twice if it came again (a
            # change sent twice is kept once): say so, so the sender retries instead of
            # taking a 200 that a crash before the store recovers would make untrue. With
            # telemetry in the body, the 200 stands (see `handle`).
            payload["error"] = "state store unavailable: not yet written; retry"
            return web.json_response(payload, status=503, headers={"Retry-After": "5"})
        return web.json_response(payload, status=200 if batch.events else 400)

    async def _apply(self, events: list[Event], indexes: Sequence[int]) -> tuple[_Unused, bool]:
        """Validated events into the pipeline, APPLY_SLICE at a time with the event loop free
        in between (the caller holds `_ingest_order`, so no other batch interleaves; a tick
        may, which is the same as the rest of the batch arriving a moment later). All of
        them are judged late or future against one clock reading, the time of receipt.
        Returns the events not used, by their index in the body, and whether every slice's
        changes were written (`handle`)."""
        unused = _Unused()
        now = self.clock()
        written = True
        for start in range(0, len(events), APPLY_SLICE):
            if start:
                await asyncio.sleep(0)

            def note(position: int, reason: str, start: int = start) -> None:
                unused.add(indexes[start + position], reason)

            part = events[start : start + APPLY_SLICE]
            written = self.handle(self.pipeline.ingest(part, now=now, on_unused=note)) and written
        return unused, written

    async def post_traces(self, request: web.Request) -> web.StreamResponse:
        """OTLP/HTTP traces, protobuf (`application/x-protobuf`, what stock exporters send) or
        JSON (`application/json`), either gzipped.

        Answers follow the OTLP/HTTP spec in the request's encoding: 200 with an empty
        `ExportTraceServiceResponse`, or with `partialSuccess` when some spans were rejected
        (the message names each span's path); 4xx with a `google.rpc.Status` body. A
        malformed structure around the spans is a 400; when every LLM span is rejected the
        answer is a 400 with the same messages, as for `/v1/events`."""
        ctype = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        proto = ctype in OTLP_PROTOBUF_TYPES
        if not proto and ctype != "application/json":
            self._count_rejected("bad_body")
            return _otlp_error(
                False,
                415,
                f"Content-Type {ctype!r} is not supported: OTLP/HTTP takes "
                "application/x-protobuf or application/json",
            )
        body = await self._read_body(request)
        if isinstance(body, web.StreamResponse):
            return _otlp_error_from(body) if proto else body

        def decode() -> tuple[Any, list[Any], list[Any]]:
            spans = (
                otlp_proto.spans_to_events(body) if proto else spans_to_events(loads_lenient(body))
            )
            return (spans, *validate_items(spans.events))

        if self._queue_full(len(body)):
            return _otlp_error_from(self._shed()) if proto else self._shed()
        async with self._ingest_turn(len(body)):
            try:
                # A large body decodes in a worker thread: 4M empty resourceSpans (8 MB of
                # valid protobuf) held the event loop for 6 s, and /healthz and ingest with it.
                if len(body) > OFFLOAD_BYTES:
                    spans, events, rejected = await asyncio.to_thread(decode)
                else:
                    spans, events, rejected = decode()
            except (OtlpError, ValueError) as exc:
                self._count_rejected("bad_body")
                return _otlp_error(proto, 400, str(exc))
            errors = spans.errors + [f"{spans.paths[r.index]}: {r.error}" for r in rejected]
            if errors:
                self._count_rejected("invalid", len(errors))
            if spans.skipped:
                self.pipeline.counters.count_unused("not_llm_span", spans.skipped)
            await self._apply(events, range(len(events)))
        message = "; ".join(errors[:20])
        if errors and not events:
            return _otlp_error(proto, 400, message, rejected=len(errors))
        if proto:
            return web.Response(
                body=otlp_proto.response(len(errors), message),
                content_type=otlp_proto.CONTENT_TYPE,
            )
        if not errors:
            return web.json_response({})
        partial = {"rejectedSpans": len(errors), "errorMessage": message}
        return web.json_response({"partialSuccess": partial})

    async def post_alertmanager(self, request: web.Request) -> web.StreamResponse:
        """Alertmanager webhook in: infra alerts (GPU nodes, vector store) join incidents."""
        try:
            require_json(request.headers.get("Content-Type"), "/v1/alertmanager")
        except UnsupportedMediaType as exc:
            self._count_rejected("bad_body")
            return web.json_response({"error": str(exc)}, status=415)
        body = await self._read_body(request)
        if isinstance(body, web.StreamResponse):
            return body
        default_feature = self.settings.alertmanager.default_feature
        now = self.clock()
        lookback = self.pipeline.policy.window_s
        try:
            batch = alertmanager_signals(
                loads_lenient(body), now, default_feature, lookback_s=lookback
            )
        except ValueError as exc:
            self._count_rejected("bad_body")
            return web.json_response({"error": str(exc)}, status=400)
        signals, errors, dropped = batch.signals, batch.errors, batch.dropped
        if batch.clamped:
            self._alert_times_clamped(batch.clamped, now)
        for c in batch.backdated:  # an alert firing for long: counted, nothing to fix
            self.pipeline.counters.count_backdated(c.field)
        if errors:
            self._count_rejected("invalid", len(errors))
        if dropped:  # 200 all the same: Alertmanager would retry a 4xx forever
            self.pipeline.counters.count_unused("alert_no_feature", len(dropped))
        self.handle(self.pipeline.external_signals(signals))
        status = 200 if signals or dropped or not errors else 400
        reply: dict[str, Any] = {"accepted": len(signals), "rejected": errors}
        if dropped:
            reply["dropped"] = [
                {"index": i, "reason": "no feature label and no alertmanager.default_feature"}
                for i in dropped
            ]
        return web.json_response(reply, status=status)

    def _alert_times_clamped(self, clamped: list[ClampedTime], now: float) -> None:
        """Alerts dated after their receipt were taken as starting or ending now (see
        `daemon.ingest.alertmanager`). All are counted; those further ahead than
        `ingest.lateness_s`, the tolerance `/v1/events` has for the future, also get one
        warning per request: Alertmanager's clock (or a client's) needs fixing."""
        for c in clamped:
            self.pipeline.counters.count_clamped(c.field)
        tolerance = self.pipeline.lateness_s
        ahead = [c for c in clamped if c.ahead_s(now) > tolerance]
        if ahead:
            self.log.warning(
                "alert_time_in_future",
                alerts=len(ahead),
                tolerance_s=tolerance,
                first=[
                    {
                        "index": c.index,
                        "feature": c.feature,
                        "alertname": c.alertname,
                        "field": c.field,
                        "ahead_s": round(c.ahead_s(now), 1),
                    }
                    for c in ahead[:5]
                ],
                action="taken as received now; check the sender's clock",
            )

    async def get_metrics(self, request: web.Request) -> web.Response:
        gzipped = _accepts_gzip(request.headers.get("Accept-Encoding", ""))
        body = await render(self.registry, self.collector, self._metrics_lock, gzipped)
        headers = {"Content-Type": CONTENT_TYPE_LATEST, "Vary": "Accept-Encoding"}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        if self._failure is not None:
            return web.json_response({"status": "failed", "error": self._failure}, status=503)
        if not self._ready or self._stop.is_set():
            return web.json_response({"status": "not ready"}, status=503)
        if self._unsaved_since is not None:
            since = round(self.clock() - self._unsaved_since, 1)
            error = f"state writes failing for {since} s; changes kept in memory and retried"
            return web.json_response({"status": "not ready", "error": error}, status=503)
        return web.json_response({"status": "ready", "loop_lag_s": round(self._loop_lag, 3)})

    def build_app(self) -> web.Application:
        # aiohttp enforces the body limit while reading (413) before we buffer a huge body.
        app = web.Application(
            client_max_size=self.settings.ingest.max_body_bytes,
            middlewares=[self._guard, self._read_auth],
        )
        app.router.add_post("/v1/events", self.post_events)
        app.router.add_post("/v1/traces", self.post_traces)
        app.router.add_post("/v1/alertmanager", self.post_alertmanager)
        app.router.add_get("/metrics", self.get_metrics)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_post("/-/reload", self.post_reload)
        api.add_routes(app, self)
        pages.add_routes(app, self)
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
            if (
                self._unsaved_since is not None
                and started - self._unsaved_since > UNSAVED_GIVE_UP_S
            ):
                raise RuntimeError(
                    f"state writes failing for over {UNSAVED_GIVE_UP_S:.0f} s ({self.store.path})"
                )

    async def _snapshot_loop(self) -> None:
        interval = self.settings.state.snapshot_interval_s
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=interval)
            self.save_snapshot()

    async def serve(self) -> int:
        """Run until SIGTERM/SIGINT, then stop gracefully within SHUTDOWN_TIMEOUT_S.

        Returns the process exit code; raises ListenError when the port cannot be bound.
        Failures inside a tick are caught per series by the
        pipeline; if an owned background task (tick loop, snapshot loop, delivery worker)
        dies anyway (the state store failing, a bug outside the per-series guards), the
        daemon can no longer detect or page, so it says so on /readyz, tries a final
        snapshot and exits 1 for the orchestrator to restart it from the committed state.
        """
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        # SIGHUP reloads the config, as for Prometheus and Alertmanager (its default action
        # would kill the process without the final snapshot).
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        # auto_decompress=False: we inflate gzip ourselves, with the body limit applied to the
        # inflated size (a small gzip bomb is a 413, not an out-of-memory).
        # keepalive_timeout: aiohttp's only timer before a request's headers are complete, so
        # it is the header timeout (slowloris); see daemon/timeouts.py.
        runner = web.AppRunner(
            self.build_app(),
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S / 2,
            auto_decompress=False,
            keepalive_timeout=self.settings.listen.header_timeout_s,
        )
        await runner.setup()
        listen = self.settings.listen
        site = web.TCPSite(runner, listen.host, listen.port)
        try:
            await site.start()
        except OSError as exc:
            # Nothing was accepted yet, so there is nothing to flush: release what was opened.
            await runner.cleanup()
            self.store.close()
            raise _listen_error(listen.host, listen.port, exc) from None
        port = _bound_port(runner) or listen.port
        tasks = [
            asyncio.create_task(self._tick_loop(), name="tick"),
            asyncio.create_task(self._snapshot_loop(), name="snapshot"),
        ]
        await self.paging.start()
        worker = self.paging.task()
        watched = tasks + ([worker] if worker is not None else [])
        stop_wait = asyncio.create_task(self._stop.wait(), name="stop")
        self._ready = True
        self.log.info("listening", host=listen.host, port=port, state=str(self.store.path),
                      receivers=self.paging.receiver_names())  # fmt: skip
        self._warn_open_listener()
        exit_code = 0
        try:
            done, _ = await asyncio.wait([stop_wait, *watched], return_when=FIRST_COMPLETED)
            died = next((t for t in watched if t in done), None)
            if died is not None:
                exit_code = 1
                self._task_died(died)
                await asyncio.sleep(FAILED_READINESS_S)
        finally:
            self._ready = False
            stop_wait.cancel()
            self.log.info("stopping")
            await runner.cleanup()  # stop accepting, let in-flight requests finish
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if not self._final_flush():
                exit_code = 1
            try:
                await self.paging.stop(timeout=SHUTDOWN_TIMEOUT_S / 3)
            except Exception as exc:  # already logged when the worker died
                self.log.error("paging_stop_failed", error=f"{type(exc).__name__}: {exc}")
            self.store.close()
            self.log.info("stopped", exit_code=exit_code)
        return exit_code

    def _warn_open_listener(self) -> None:
        """Anyone who can reach a non-loopback address could read incidents or, without an
        ingest token, silence pages: say so once at start."""
        if self.settings.listen.host in LOOPBACK_HOSTS:
            return
        missing = [
            key
            for key, token in (
                ("ingest.token", self.settings.ingest.token),
                ("api.read_token", self.settings.api.read_token),
            )
            if token is None
        ]
        if not missing:
            return
        can = []
        if self.settings.ingest.token is None:
            can.append("send events")
            if self.settings.api.read_token is None:
                can.append("silence, acknowledge and resolve incidents")
        if self.settings.api.read_token is None:
            can.append("read incidents, silences and metrics")
        self.log.warning(
            "listening_without_token",
            host=self.settings.listen.host,
            missing=missing,
            detail="reachable beyond this machine: anyone who can connect may "
            + ", ".join(can)
            + "; set the missing tokens or listen on 127.0.0.1",
        )

    def _task_died(self, task: asyncio.Task[None]) -> None:
        exc = None if task.cancelled() else task.exception()
        what = "cancelled" if exc is None else f"{type(exc).__name__}: {exc}"
        self._failure = f"background task {task.get_name()!r} stopped: {what}"[:500]
        self._ready = False
        self.log.error(
            "background_task_failed",
            task=task.get_name(),
            error=what[:500],
            action="readiness failed; final snapshot, then exit 1 for a restart",
            exc_info=exc,
        )

    def _final_flush(self) -> bool:
        """The last tick and the final snapshot, each attempted whatever happened before:
        a failing tick must not cost the snapshot. Returns False if the snapshot failed."""
        try:
            self.handle(self.pipeline.advance(self.clock()))
        except Exception as exc:  # logged; the snapshot is still worth trying
            self.log.error("final_tick_failed", error=f"{type(exc).__name__}: {exc}", exc_info=exc)
        try:
            self.save_snapshot()
        except Exception as exc:  # logged; the exit code says it
            self.log.error(
                "final_snapshot_failed",
                state=str(self.store.path),
                error=f"{type(exc).__name__}: {exc}",
            )
            return False
        self.log.info("final_snapshot_saved", state=str(self.store.path))
        return True


# Settings a running daemon cannot change in place: the socket, the state file, the shape of
# the evaluation windows, the log setup, and aiohttp's body limit (fixed when the app is built).
RESTART_ONLY = ("listen", "state", "aggregation", "log")


def _keep_running(running: Settings, new: Settings) -> tuple[Settings, list[str]]:
    """`new` with the running values of what needs a restart, and the names of those that
    differ (so the log and the answer say which changes wait for a restart)."""
    restart = [name for name in RESTART_ONLY if getattr(new, name) != getattr(running, name)]
    if new.ingest.max_body_bytes != running.ingest.max_body_bytes:
        restart.append("ingest.max_body_bytes")
    ingest = new.ingest.model_copy(update={"max_body_bytes": running.ingest.max_body_bytes})
    update: dict[str, Any] = {name: getattr(running, name) for name in RESTART_ONLY}
    return new.model_copy(update={**update, "ingest": ingest}), restart


OTLP_PROTOBUF_TYPES = frozenset({"application/x-protobuf", "application/protobuf"})
_RPC_CODES = {
    401: otlp_proto.UNAUTHENTICATED,
    413: otlp_proto.RESOURCE_EXHAUSTED,
    429: otlp_proto.RESOURCE_EXHAUSTED,
    503: otlp_proto.UNAVAILABLE,
}


def _otlp_error(
    proto: bool,
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    rejected: int | None = None,
) -> web.Response:
    """An OTLP error answer: a `google.rpc.Status`, protobuf-encoded for protobuf requests
    (the spec's rule), JSON otherwise. The JSON form keeps the `error` key every other
    endpoint answers with (and `rejectedSpans`, when spans were refused)."""
    code = _RPC_CODES.get(status, otlp_proto.INVALID_ARGUMENT)
    if proto:
        body = otlp_proto.status(message, code)
        return web.Response(
            body=body, status=status, content_type=otlp_proto.CONTENT_TYPE, headers=headers
        )
    payload: dict[str, Any] = {"code": code, "message": message, "error": message}
    if rejected is not None:
        payload["rejectedSpans"] = rejected
    return web.json_response(payload, status=status, headers=headers)


def _otlp_error_from(resp: web.StreamResponse) -> web.StreamResponse:
    """The shared ingest checks (`_read_body`) answer in JSON; a protobuf client gets the same
    status, headers and message as a protobuf Status. A 408 is already sent as it is."""
    if resp.prepared or not isinstance(resp, web.Response) or not isinstance(resp.body, bytes):
        return resp
    try:
        doc = orjson.loads(resp.body)
    except orjson.JSONDecodeError:
        return resp
    message = doc.get("error") or "; ".join(str(r.get("error")) for r in doc.get("rejected", []))
    keep = {k: v for k, v in resp.headers.items() if k in ("Retry-After", "WWW-Authenticate")}
    return _otlp_error(True, resp.status, str(message), headers=keep)


def _change_row(change: ChangeRecord) -> str:
    """The kv key of one change event's row: its identity (`ChangeRecord.key`), hashed to a
    fixed length (the description alone may be 2,000 characters)."""
    digest = hashlib.sha256(orjson.dumps(change.key)).hexdigest()[:32]
    return CHANGE_PREFIX + digest


def _bound_port(runner: web.AppRunner) -> int | None:
    for addr in runner.addresses:
        if isinstance(addr, tuple) and len(addr) >= 2:
            return int(addr[1])
    return None
