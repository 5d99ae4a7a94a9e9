"""The read/write API beside ingest: incidents, postmortems, silences, OpenAPI, status page."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

import orjson
from aiohttp import web

from config.settings import Settings
from correlator import MAX_API_DURATION_S, HumanAction, Silence
from daemon.ingest.events import UnsupportedMediaType, require_json
from daemon.paging import Paging, TooManyTestPages
from daemon.pipeline import Pipeline, TickOutput
from daemon.store import Store
from daemon.timeouts import BodyTimeout, body_timeout_response, read_body

STATUSES = ("open", "resolved")
SEVERITIES = ("critical", "warning", "watch")
DOMAINS = ("provider", "prompt_model", "infra_retrieval", "unknown")
# Ids the config file's silences get when they name none (pipeline.config_silences); the API
# may not create them, so a stored `cfg-*` is always a config silence.
CONFIG_SILENCE_PREFIX = "cfg-"
# API silences held at once (pending, active, and expired within the last day): each POST
# rewrites the stored list, so it stays bounded.
MAX_SILENCES = 1000


# GET /api/v1/incidents?limit=: the documented range; out of range is a 400, not clamped.
LIMIT_MIN, LIMIT_MAX, LIMIT_DEFAULT = 1, 1000, 100
# Control characters (C0, DEL, C1) in a silence's id or matchers: they would end up in logs,
# pages and the API's answers, and no real label name or value has them.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Bidirectional overrides and isolates: U+202E can make "alice" read as "ecila" (or worse)
# in Slack and on the pages; a person's name does not need them.
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")


def _limit(value: str | None) -> int:
    if value is None:
        return LIMIT_DEFAULT
    try:
        limit = int(value)
    except ValueError:
        raise _bad_request("limit: must be an integer") from None
    if not LIMIT_MIN <= limit <= LIMIT_MAX:
        raise _bad_request(f"limit: must be between {LIMIT_MIN} and {LIMIT_MAX}")
    return limit


def silence_text_errors(body: dict[str, Any]) -> str | None:
    """The first problem with a silence's id or matcher strings, naming the field: control
    characters anywhere, and an id with leading or trailing whitespace (` cfg-0` would look
    like the config's silence in every listing)."""
    sid = body.get("id")
    if isinstance(sid, str):
        if _CONTROL.search(sid):
            return "silence.id: must not contain control characters"
        if sid != sid.strip() or not sid:
            return "silence.id: must be non-empty, without leading or trailing whitespace"
    matchers = body.get("matchers")
    if isinstance(matchers, list):
        for i, m in enumerate(matchers):
            if not isinstance(m, dict):
                continue
            for field in ("name", "value"):
                text = m.get(field)
                if isinstance(text, str) and _CONTROL.search(text):
                    return f"silence.matchers[{i}].{field}: must not contain control characters"
    for field in ("comment", "created_by"):
        text = body.get(field)
        if isinstance(text, str) and _CONTROL.search(text.replace("\n", "")):
            return f"silence.{field}: must not contain control characters other than newlines"
    return None


def _since(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        # NaN would bind as NULL in SQLite and silently match nothing.
        if not math.isfinite(number):
            raise _bad_request("since: must be a finite number of Unix seconds")
        return number
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _bad_request("since: must be RFC 3339 with a zone or Unix seconds") from None
    if parsed.tzinfo is None:
        raise _bad_request("since: needs a time zone")
    return parsed.timestamp()


def _choice(request: web.Request, name: str, allowed: tuple[str, ...]) -> str | None:
    value = request.query.get(name)
    if value is not None and value not in allowed:
        raise _bad_request(f"{name}: must be one of {', '.join(allowed)}")
    return value


def _bad_request(message: str) -> web.HTTPBadRequest:
    """A 400 for a bad query parameter, with the JSON body every API error has."""
    return web.HTTPBadRequest(
        text=orjson.dumps({"error": message}).decode(), content_type="application/json"
    )


def unauthorized() -> web.Response:
    """The 401 of every endpoint that needs the ingest token."""
    return web.json_response(
        {"error": "missing or wrong bearer token"},
        status=401,
        headers={"WWW-Authenticate": 'Bearer realm="llm-oncall"'},
    )


class ApiHost(Protocol):
    """What the API needs from the process that serves it. The daemon (`daemon.app`) is one;
    naming the few members here keeps this module from importing the class that imports it,
    and lets a test serve the API from a smaller host."""

    settings: Settings
    store: Store
    pipeline: Pipeline
    clock: Callable[[], float]
    log: Any
    config_silence_ids: frozenset[str]

    paging: Paging

    def can_write(self, request: web.Request) -> bool: ...

    def can_read(self, request: web.Request) -> bool: ...

    def save_silences(self) -> None: ...

    def handle(self, out: TickOutput) -> bool: ...


# Who acted on an incident and why, as given to the API, CLI or page form.
MAX_BY = 100
MAX_COMMENT = 2000
VERBS = ("ack", "resolve", "reopen")


def act_on_incident(
    host: ApiHost, incident_id: str, verb: str, by: Any, comment: Any
) -> tuple[int, dict[str, Any]]:
    """Acknowledge, resolve or reopen an incident by hand: (HTTP status, JSON body). The
    change and the notifications it causes commit together (`handle`), as for any update."""
    if verb not in VERBS:
        return 404, {"error": f"action: one of {', '.join(VERBS)}"}
    if (
        not isinstance(by, str)
        or not by.strip()
        or len(by) > MAX_BY
        or _CONTROL.search(by)
        or _BIDI.search(by)
    ):
        return 400, {
            "error": f"by: a name of 1 to {MAX_BY} characters, no control or bidi characters"
        }
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
        return 400, {"error": f"comment: a string of at most {MAX_COMMENT} characters"}
    if _CONTROL.search(comment.replace("\n", "").replace("\r", "")):
        return 400, {"error": "comment: must not contain control characters other than newlines"}
    who = HumanAction(by.strip(), host.clock(), comment.strip())
    try:
        out = host.pipeline.human_action(verb, incident_id, who)
    except KeyError:
        if host.store.incident(incident_id) is not None:
            return 409, {"error": f"incident {incident_id} is too old to change (no longer held)"}
        return 404, {"error": "no such incident"}
    except ValueError as exc:
        return 409, {"error": str(exc)}
    host.handle(out)
    record = host.store.incident(incident_id) or {}
    return 200, record


def _routes_record(request: web.Request) -> dict[str, Any]:
    """The incident fields `routes test` matches on, from the query string."""
    feature = request.query.get("feature")
    if not feature:
        raise _bad_request("feature: required")
    severity = _choice(request, "severity", SEVERITIES) or "critical"
    domain = _choice(request, "domain", DOMAINS) or "unknown"
    return {"feature": feature, "severity": severity, "domain": domain, "signals": []}


def is_config_silence(host: ApiHost, sid: Any) -> bool:
    return isinstance(sid, str) and (
        sid in host.config_silence_ids or sid.startswith(CONFIG_SILENCE_PREFIX)
    )


def _reserved_id(host: ApiHost, sid: Any) -> bool:
    # Case-insensitive for new ids: `CFG-0` would pass for the config's `cfg-0` in every
    # listing. (Deleting keeps the exact check, so an older API silence stays deletable.)
    return is_config_silence(host, sid) or (
        isinstance(sid, str) and sid.strip().lower().startswith(CONFIG_SILENCE_PREFIX)
    )


def read_only(sid: str) -> dict[str, str]:
    return {
        "error": f"silence {sid} comes from the config file and is read-only through"
        f" the API (ids starting {CONFIG_SILENCE_PREFIX!r} are reserved for it);"
        " change it in the config file"
    }


def store_silence(host: ApiHost, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Validate and store a silence from the API or the page's form: (HTTP status, body)."""
    now = host.clock()
    body.setdefault("id", f"sil-{uuid.uuid4().hex[:12]}")
    body.setdefault("starts_at", now)
    body.setdefault("created_by", "api")
    problem = silence_text_errors(body)
    if problem is not None:
        return 400, {"error": problem}
    if _reserved_id(host, body["id"]):
        return 409, read_only(body["id"])
    # Everything is validated, including rendering, before anything is stored.
    try:
        silence = Silence.from_dict(body, where="silence", max_duration_s=MAX_API_DURATION_S)
        if silence.ends_at <= now:
            raise ValueError("silence.ends_at: already in the past")
        record = silence.to_record(now)
    except ValueError as exc:
        return 400, {"error": str(exc)}
    silences = host.pipeline.silences
    previous = silences.get(silence.id)
    held = sum(1 for s in silences.list() if s.id not in host.config_silence_ids)
    if previous is None and held >= MAX_SILENCES:
        return 409, {"error": f"too many silences ({MAX_SILENCES}); expire some first"}
    silences.add(silence)
    try:
        host.save_silences()
    except BaseException:
        # Not stored, so not in effect either: memory and disk stay the same.
        silences.remove(silence.id)
        if previous is not None:
            silences.add(previous)
        raise
    host.log.info("silence_created", id=silence.id, by=silence.created_by)
    return 201, record


def add_routes(app: web.Application, daemon: ApiHost) -> None:
    async def list_incidents(request: web.Request) -> web.Response:
        limit = _limit(request.query.get("limit"))
        records = daemon.store.incidents(
            status=_choice(request, "status", STATUSES),
            feature=request.query.get("feature"),
            severity=_choice(request, "severity", SEVERITIES),
            since=_since(request.query.get("since")),
            limit=limit,
        )
        return web.json_response({"incidents": records})

    async def get_incident(request: web.Request) -> web.Response:
        record = daemon.store.incident(request.match_info["id"])
        if record is None:
            return web.json_response({"error": "no such incident"}, status=404)
        return web.json_response(record)

    async def postmortem(request: web.Request) -> web.Response:
        record = daemon.store.incident(request.match_info["id"])
        if record is None:
            return web.json_response({"error": "no such incident"}, status=404)
        runbook = daemon.settings.feature(record["feature"]).runbook.model_dump(exclude_none=True)
        return web.Response(text=postmortem_markdown(record, runbook), content_type="text/markdown")

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(OPENAPI)

    async def list_silences(request: web.Request) -> web.Response:
        now = daemon.clock()
        return web.json_response(
            {"silences": [sil.to_record(now) for sil in daemon.pipeline.silences.list()]}
        )

    async def create_silence(request: web.Request) -> web.StreamResponse:
        # A silence can stop pages: it needs the write token (the ingest token).
        if not daemon.can_write(request):
            return unauthorized()
        try:
            require_json(request.headers.get("Content-Type"), "/api/v1/silences")
        except UnsupportedMediaType as exc:
            return web.json_response({"error": str(exc)}, status=415)
        try:
            body = orjson.loads(await read_body(request, daemon.settings.listen.body_timeout_s))
        except BodyTimeout as exc:
            return await body_timeout_response(request, exc)
        except ValueError as exc:  # orjson says where: "... line 1 column 60 (char 59)"
            return web.json_response({"error": f"body is not valid JSON: {exc}"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"error": "body must be a JSON object"}, status=400)
        status, answer = store_silence(daemon, body)
        return web.json_response(answer, status=status)

    async def expire_silence(request: web.Request) -> web.Response:
        if not daemon.can_write(request):
            return unauthorized()
        sid = request.match_info["id"]
        if daemon.pipeline.silences.get(sid) is None:
            return web.json_response({"error": "no such silence"}, status=404)
        if is_config_silence(daemon, sid):
            return web.json_response(read_only(sid), status=409)
        daemon.pipeline.silences.expire(sid, daemon.clock())
        daemon.save_silences()
        daemon.log.info("silence_expired", id=sid)
        return web.json_response({"expired": sid})

    async def incident_action(request: web.Request) -> web.StreamResponse:
        if not daemon.can_write(request):
            return unauthorized()
        verb = request.match_info["verb"]
        body: Any = {}
        if request.can_read_body:
            try:
                require_json(request.headers.get("Content-Type"), request.path)
            except UnsupportedMediaType as exc:
                return web.json_response({"error": str(exc)}, status=415)
            try:
                raw = await read_body(request, daemon.settings.listen.body_timeout_s)
                body = orjson.loads(raw) if raw.strip() else {}
            except BodyTimeout as exc:
                return await body_timeout_response(request, exc)
            except ValueError as exc:
                return web.json_response({"error": f"body is not valid JSON: {exc}"}, status=400)
            if not isinstance(body, dict):
                return web.json_response({"error": "body must be a JSON object"}, status=400)
        status, answer = act_on_incident(
            daemon, request.match_info["id"], verb, body.get("by", "api"), body.get("comment", "")
        )
        return web.json_response(answer, status=status)

    async def routes_test(request: web.Request) -> web.Response:
        record = _routes_record(request)
        targets = daemon.paging.router.targets(record)
        return web.json_response(
            {
                "match": {k: record[k] for k in ("feature", "severity", "domain")},
                "receivers": [
                    {"receiver": t.receiver, "fallback": t.fallback, "renotify_s": t.renotify_s}
                    for t in targets
                ],
                "routes_configured": bool(daemon.settings.routes),
            }
        )

    async def test_page(request: web.Request) -> web.Response:
        if not daemon.can_write(request):
            return unauthorized()
        by = request.query.get("by", "api")
        if len(by) > MAX_BY or _CONTROL.search(by):
            raise _bad_request(f"by: at most {MAX_BY} characters, no control characters")
        try:
            record = daemon.paging.test_page(request.match_info["name"], by)
        except TooManyTestPages as exc:
            return web.json_response(
                {"error": str(exc)},
                status=429,
                headers={"Retry-After": str(math.ceil(exc.retry_after_s))},
            )
        except KeyError:
            known = ", ".join(daemon.paging.receiver_names())
            return web.json_response(
                {"error": f"no receiver named {request.match_info['name']!r} (known: {known})"},
                status=404,
            )
        return web.json_response({"queued": ["trigger", "resolve"], "incident": record})

    async def notifications(request: web.Request) -> web.Response:
        iid = request.match_info["id"]
        if daemon.store.incident(iid) is None:
            return web.json_response({"error": "no such incident"}, status=404)
        return web.json_response({"notifications": daemon.paging.history(iid)})

    app.router.add_get("/api/v1/incidents/{id}/notifications", notifications)
    app.router.add_post("/api/v1/incidents/{id}/{verb}", incident_action)
    app.router.add_get("/api/v1/routes/test", routes_test)
    app.router.add_post("/api/v1/receivers/{name}/test", test_page)
    app.router.add_get("/api/v1/silences", list_silences)
    app.router.add_post("/api/v1/silences", create_silence)
    app.router.add_delete("/api/v1/silences/{id}", expire_silence)
    app.router.add_get("/api/v1/incidents", list_incidents)
    app.router.add_get("/api/v1/incidents/{id}", get_incident)
    app.router.add_get("/api/v1/incidents/{id}/postmortem", postmortem)
    app.router.add_get("/openapi.json", openapi)


# Markdown's backslash-escapable punctuation that can start markup mid-line (emphasis,
# links, code, tables, headings after a break, HTML); `&<>` become entities instead.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~])")
_HTML_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def md_text(value: Any) -> str:
    """A user-provided string (feature, alert or metric name, change description, label
    value) as inert Markdown text on one line: line breaks and other control characters
    become spaces, so it cannot start a heading or a list, HTML-significant characters become
    entities, and Markdown punctuation is backslash-escaped (it still reads the same
    rendered)."""
    text = _CONTROL.sub(" ", str(value))
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return "".join(_HTML_ENTITIES.get(c, c) for c in text)


def postmortem_markdown(rec: dict[str, Any], runbook: dict[str, Any]) -> str:
    """A postmortem skeleton with the facts filled in; people write the why."""
    e = md_text
    lines = [
        f"# Postmortem: {e(rec['summary'])}",
        "",
        # Ours (inc-<hex>, a fixed set of domains): safe in a code span. The feature is the
        # client's and could close one, so it is escaped text instead.
        f"- Incident: `{e(rec['id'])}` ({e(rec['severity'])}, domain `{e(rec['domain'])}`)",
        f"- Feature: {e(rec['feature'])}",
        f"- Started (estimated): {e(rec.get('started_at') or rec['opened_at'])};"
        f" opened (detected): {e(rec['opened_at'])};"
        f" resolved: {e(rec.get('resolved_at') or 'still open')}",
        f"- Paged: {'yes' if rec.get('paged') else 'no'}",
    ]
    if runbook.get("url"):
        # From the operator's config, not from clients: kept a working link, on one line.
        lines.append(f"- Runbook: {_CONTROL.sub(' ', str(runbook['url']))}")
    lines += ["", "## Timeline", ""]
    events: list[tuple[str, str]] = []
    for ch in rec.get("changes", []) + rec.get("later_changes", []):
        events.append((ch["ts"], f"change ({e(ch['kind'])}): {e(ch.get('description', ''))}"))
    if rec.get("started_at"):
        est = rec.get("start_estimate") or {}
        with_ = ", ".join(str(m) for m in est.get("corroborated_by") or ())
        also = f" with {e(with_)}" if with_ else ""
        how = f" ({e(est.get('basis'))}, {e(est.get('metric'))}{also})" if est else ""
        events.append((rec["started_at"], f"estimated start{how}"))
    for sig in rec.get("signals", []):
        base = sig.get("baseline")
        base_text = "n/a" if base is None else f"{base:.4g}"
        text = f"{e(sig['metric'])} fired ({e(sig['detector'])}): {sig['value']:.4g} vs {base_text}"
        if sig.get("peak") is not None:  # the worst it got; value is the latest reading
            text = (
                f"{e(sig['metric'])} fired ({e(sig['detector'])}): peak {sig['peak']:.4g}"
                f" vs {base_text} (latest {sig['value']:.4g})"
            )
        if sig.get("reported_onset"):
            text += f", firing since {e(sig['reported_onset'])} as its source reported"
        events.append((sig["onset"], text))
        if sig.get("cleared"):
            events.append((sig["cleared"], f"{e(sig['metric'])} cleared"))
    for ts, text in sorted(events):
        lines.append(f"- {e(ts)} — {text}")
    lines += ["", "## Triage", ""]
    for t in rec.get("triage", []):
        answer = "yes" if t["answer"] else "no"
        lines.append(f"- **{e(t['question'])}**: {answer} — {e(t['evidence'])}")
    if rec.get("attribution"):
        lines += ["", "## Attribution", "", "| label | value | anomalous share | baseline share |",
                  "|---|---|---|---|"]  # fmt: skip
        for a in rec["attribution"]:
            lines.append(f"| {e(a['label'])} | {e(a['value'])} | {a['anomalous_share']:.0%} | "
                         f"{a['baseline_share']:.0%} |")  # fmt: skip
    lines += ["", "## Root cause", "", "_To be written._", "", "## Action items", "", "- [ ] "]
    return "\n".join(lines) + "\n"


_PATH_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "llm-oncall", "version": "0.1.0"},
    "paths": {
        "/v1/events": {
            "post": {
                "summary": "Ingest events: a JSON object, an array, or NDJSON (gzip allowed).",
                "responses": {
                    "200": {
                        "description": "at least one event accepted: {accepted, rejected: "
                        "[{index, error}] (the first 100), rejected_count (when more were), "
                        "unused: [{index, reason}] (accepted but not used: late, future, past "
                        "a cap; the first 100), unused_count (when more were)}"
                    },
                    "400": {"description": "no event accepted; per-event errors"},
                    "401": {"description": "missing or wrong bearer token"},
                    "413": {
                        "description": "body over ingest.max_body_bytes (after gzip "
                        "inflation), or more events than ingest.max_body_events"
                    },
                    "415": {
                        "description": "Content-Type not JSON or NDJSON, "
                        "or Content-Encoding not gzip"
                    },
                    "503": {
                        "description": "shedding load, or a body of change events only that"
                        " could not be written to the state store yet (sending it again is"
                        " safe: a change is kept once); see Retry-After"
                    },
                },
            }
        },
        "/v1/traces": {
            "post": {
                "summary": "OTLP/HTTP traces (ExportTraceServiceRequest): spans with gen_ai.* "
                "attributes become llm_call events. application/x-protobuf or application/json,"
                " gzip allowed; answers in the request's encoding.",
                "requestBody": {
                    "content": {
                        "application/x-protobuf": {
                            "schema": {"type": "string", "format": "binary"}
                        },
                        "application/json": {"schema": {"type": "object"}},
                    }
                },
                "responses": {
                    "200": {
                        "description": "ExportTraceServiceResponse; partialSuccess "
                        "{rejectedSpans, errorMessage} when some spans were rejected"
                    },
                    "400": {
                        "description": "malformed body, or every LLM span rejected "
                        "(google.rpc.Status naming each span's path)"
                    },
                    "401": {"description": "missing or wrong bearer token"},
                    "408": {"description": "body not received within listen.body_timeout_s"},
                    "413": {"description": "body over the limit (after gzip inflation)"},
                    "415": {
                        "description": "Content-Type neither protobuf nor JSON, "
                        "or Content-Encoding not gzip"
                    },
                    "503": {"description": "shedding load; see Retry-After"},
                },
            }
        },
        "/v1/alertmanager": {
            "post": {
                "summary": "Alertmanager webhook (version 4): alerts join the incidents of the "
                "feature in their `feature` label as signals (layer label, default infra). "
                "An alert's time is bounded to the span from correlation.window_s before the "
                "receipt to the receipt; a firing alert's earlier startsAt is kept as its "
                "signal's reported_onset.",
                "responses": {
                    "200": {"description": "{accepted, rejected}: at least one alert taken"},
                    "400": {"description": "not a webhook payload, or no alert taken"},
                    "401": {"description": "missing or wrong bearer token"},
                    "413": {"description": "body over the limit"},
                    "415": {"description": "Content-Type not JSON, or Content-Encoding not gzip"},
                    "503": {"description": "shedding load; see Retry-After"},
                },
            }
        },
        "/-/reload": {
            "post": {
                "summary": "Reload the config file (as SIGHUP): validated first, applied at "
                "once; on error the running config stays.",
                "responses": {
                    "200": {"description": "{status: success, restart_required: [...]}"},
                    "400": {"description": "{status: error, errors: [...]}: nothing applied"},
                    "401": {"description": "missing or wrong bearer token (when one is set)"},
                },
            }
        },
        "/metrics": {
            "get": {"summary": "Prometheus exposition", "responses": {"200": {"description": "ok"}}}
        },
        "/openapi.json": {
            "get": {"summary": "This description", "responses": {"200": {"description": "ok"}}}
        },
        "/": {
            "get": {
                "summary": "Status page (HTML): open and recently resolved incidents",
                "responses": {"200": {"description": "text/html"}},
            }
        },
        "/incidents/{id}": {
            "get": {
                "summary": "Incident page (HTML, no JavaScript): members, evidence, charts against"
                " their baseline, changes, attribution, notifications, post-mortem draft",
                "parameters": [_PATH_ID],
                "responses": {
                    "200": {"description": "text/html"},
                    "404": {"description": "unknown"},
                },
            }
        },
        "/incidents/{id}/{verb}": {
            "post": {
                "summary": "The incident page's ack / resolve / reopen form (same-site only);"
                " redirects back to the page",
                "parameters": [
                    {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                    for n in ("id", "verb")
                ],
                "responses": {"303": {"description": "done"}, "403": {"description": "refused"}},
            }
        },
        "/silences": {
            "post": {
                "summary": "The status page's silence form (same-site only); redirects back",
                "responses": {"303": {"description": "created"}, "400": {"description": "bad"}},
            }
        },
        "/silences/{id}/expire": {
            "post": {
                "summary": "The status page's expire-silence form (same-site only)",
                "parameters": [_PATH_ID],
                "responses": {"303": {"description": "expired"}, "404": {"description": "unknown"}},
            }
        },
        "/login": {
            "get": {
                "summary": "Sign-in form for the pages when api.read_token is set",
                "responses": {"200": {"description": "text/html"}},
            },
            "post": {
                "summary": "Sign in with the read token (sets a cookie); redirects",
                "responses": {"303": {"description": "signed in"}, "401": {"description": "bad"}},
            },
        },
        "/healthz": {"get": {"summary": "liveness", "responses": {"200": {"description": "ok"}}}},
        "/readyz": {
            "get": {
                "summary": "readiness",
                "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}},
            }
        },
        "/api/v1/silences": {
            "get": {
                "summary": "Silences with their state",
                "responses": {"200": {"description": "ok"}},
            },
            "post": {
                "summary": "Create a silence: {matchers: [{name, value, is_regex, is_equal}], "
                "starts_at?, ends_at, created_by?, comment?}; other fields are refused, and so"
                " is a silence whose matchers all match the empty string",
                "responses": {
                    "201": {"description": "created"},
                    "400": {"description": "invalid; the error names the field"},
                    "401": {"description": "missing or wrong bearer token"},
                    "408": {"description": "body not received within listen.body_timeout_s"},
                    "409": {"description": "a config silence's id, or too many silences"},
                    "415": {"description": "Content-Type neither application/json nor absent"},
                },
            },
        },
        "/api/v1/silences/{id}": {
            "delete": {
                "summary": "Expire a silence now (kept for the record)",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {"description": "expired"},
                    "404": {"description": "unknown id"},
                    "409": {"description": "a config silence (read-only through the API)"},
                },
            }
        },
        "/api/v1/incidents": {
            "get": {
                "summary": "Incidents, newest first",
                "parameters": [
                    *(
                        {"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
                        for n in ("status", "feature", "severity", "since")
                    ),
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {
                            "type": "integer",
                            "minimum": LIMIT_MIN,
                            "maximum": LIMIT_MAX,
                            "default": LIMIT_DEFAULT,
                        },
                    },
                ],
                "responses": {"200": {"description": "ok"}, "400": {"description": "bad filter"}},
            }
        },
        "/api/v1/incidents/{id}": {
            "get": {
                "summary": "One incident (contract record)",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {"200": {"description": "ok"}, "404": {"description": "unknown id"}},
            }
        },
        "/api/v1/incidents/{id}/{verb}": {
            "post": {
                "summary": "Acknowledge, resolve or reopen by hand: verb is ack, resolve or"
                " reopen; body {by?, comment?} (JSON, optional). Notifies the receivers that got"
                " the page (acknowledge / resolve) or pages again (reopen).",
                "parameters": [
                    {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                    for n in ("id", "verb")
                ],
                "responses": {
                    "200": {"description": "the incident record after the change"},
                    "400": {"description": "bad by or comment"},
                    "401": {"description": "missing or wrong write token"},
                    "404": {"description": "unknown incident or action"},
                    "409": {"description": "not allowed in its state (e.g. already resolved)"},
                },
            }
        },
        "/api/v1/incidents/{id}/notifications": {
            "get": {
                "summary": "What was sent for the incident: receiver, action, delivery state",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {"200": {"description": "ok"}, "404": {"description": "unknown id"}},
            }
        },
        "/api/v1/routes/test": {
            "get": {
                "summary": "The receivers an incident with these fields would reach",
                "parameters": [
                    {
                        "name": n,
                        "in": "query",
                        "required": n == "feature",
                        "schema": {"type": "string"},
                    }
                    for n in ("feature", "severity", "domain")
                ],
                "responses": {"200": {"description": "ok"}, "400": {"description": "bad field"}},
            }
        },
        "/api/v1/receivers/{name}/test": {
            "post": {
                "summary": "Queue a clearly marked test trigger and its resolve to one receiver",
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "by", "in": "query", "required": False, "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {"description": "queued"},
                    "401": {"description": "missing or wrong write token"},
                    "404": {"description": "no such receiver"},
                },
            }
        },
        "/api/v1/incidents/{id}/postmortem": {
            "get": {
                "summary": "Postmortem skeleton in Markdown",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {"200": {"description": "ok"}, "404": {"description": "unknown id"}},
            }
        },
    },
}
