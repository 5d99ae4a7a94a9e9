"""The on-call pages: server-rendered HTML an engineer opens at 2 AM (issue 13).

`GET /` lists open incidents first, then recently resolved ones and the silences;
`GET /incidents/{id}` shows one incident with everything needed to act: members and their
evidence, the estimated start against the detection, changes, attribution, runbook links, the
notification history, the post-mortem draft, and per member metric a chart of the last hours
against its baseline band. Acknowledge, resolve, reopen and silence are plain HTML forms
(POST, then a redirect back), so the pages need no JavaScript and no build step; they refresh
themselves with a meta refresh.

Every value that came from clients (feature, metric and label names, descriptions) is
HTML-escaped. Form posts from another site are refused (Origin/Referer must be this host),
and with a token configured the browser signs in once (`/login` sets an HttpOnly,
SameSite=Strict cookie), since forms and links cannot carry a bearer header.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape, unescape
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web

from daemon import api
from daemon.api import ApiHost
from daemon.durations import format_duration, parse_duration

COOKIE = "llm_oncall_token"  # the same name daemon.app reads
REFRESH_LIST_S = 30
REFRESH_INCIDENT_S = 60
CHART_W, CHART_H = 640, 150
CHART_PAD_L, CHART_PAD_R, CHART_PAD_T, CHART_PAD_B = 56, 10, 12, 22
# The band: baseline ± BAND_SIGMAS robust standard deviations of the value around its
# baseline in the minutes before the estimated start (the detectors' thresholds differ by
# kind; this is the typical variation a person compares the incident against).
BAND_SIGMAS = 3.0
SEVERITY_COLOR = {"critical": "#b00020", "warning": "#b26a00", "watch": "#555"}

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.2em 2em;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:.4em 0 1em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3} .sev{font-weight:bold;color:#fff;padding:1px 6px;border-radius:3px}
.muted{color:#777} form.inline{display:inline-block;margin:0 1em .5em 0}
input,button{font:inherit} pre{background:#f7f7f7;padding:.8em;overflow-x:auto}
.chart{margin:.2em 0 1em} .err{color:#b00020} nav a{margin-right:1em}
"""


def add_routes(app: web.Application, host: ApiHost) -> None:
    async def index(request: web.Request) -> web.Response:
        now = host.clock()
        open_ = host.store.incidents(status="open", limit=200)
        recent = host.store.incidents(status="resolved", limit=20)
        silences = [s.to_record(now) for s in host.pipeline.silences.list()]
        body = _index_body(open_, recent, silences, now, request.query.get("error"))
        return _page("llm-oncall", body, now, REFRESH_LIST_S)

    async def incident(request: web.Request) -> web.Response:
        now = host.clock()
        rec = host.store.incident(request.match_info["id"])
        if rec is None:
            body = "<h1>No such incident</h1><p><a href='/'>All incidents</a></p>"
            return _page("not found", body, now, None, status=404)
        runbook = host.settings.feature(rec["feature"]).runbook.model_dump(exclude_none=True)
        charts = [
            (sig["metric"], _member_chart(host, rec, sig, now))
            for sig in _chart_members(rec.get("signals") or [])
        ]
        body = _incident_body(
            rec,
            runbook,
            host.paging.history(rec["id"]),
            charts,
            api.postmortem_markdown(rec, runbook),
            now,
            request.query.get("error"),
        )
        return _page(f"{rec['severity']}: {rec['summary']}"[:120], body, now, REFRESH_INCIDENT_S)

    async def incident_form(request: web.Request) -> web.StreamResponse:
        iid = request.match_info["id"]
        back = f"/incidents/{quote(iid, safe='')}"
        refused = _refuse_form(request, host, back)
        if refused is not None:
            return refused
        form = await request.post()
        status, answer = api.act_on_incident(
            host,
            iid,
            request.match_info["verb"],
            str(form.get("by", "")),
            str(form.get("comment", "")),
        )
        if status != 200:
            return _back(back, answer.get("error", f"failed ({status})"))
        return see_other(back)

    async def silence_form(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        back = _safe_next(str(form.get("back", "/")))
        refused = _refuse_form(request, host, back)
        if refused is not None:
            return refused
        name, value = str(form.get("name", "")).strip(), str(form.get("value", "")).strip()
        try:
            duration = parse_duration(str(form.get("duration", "")), "duration")
        except ValueError as exc:
            return _back(back, str(exc))
        now = host.clock()
        status, answer = api.store_silence(
            host,
            {
                "matchers": [{"name": name, "value": value}],
                "starts_at": now,
                "ends_at": now + duration,
                "created_by": str(form.get("by", "")).strip() or "page",
                "comment": str(form.get("comment", "")),
            },
        )
        if status != 201:
            return _back(back, answer.get("error", f"failed ({status})"))
        return see_other(back)

    async def expire_form(request: web.Request) -> web.StreamResponse:
        refused = _refuse_form(request, host, "/")
        if refused is not None:
            return refused
        sid = request.match_info["id"]
        if host.pipeline.silences.get(sid) is None:
            return _back("/", "no such silence")
        if api.is_config_silence(host, sid):
            return _back("/", api.read_only(sid)["error"])
        host.pipeline.silences.expire(sid, host.clock())
        host.save_silences()
        host.log.info("silence_expired", id=sid)
        return see_other("/")

    async def login_page(request: web.Request) -> web.Response:
        nxt = _safe_next(request.query.get("next"))
        error = request.query.get("error")
        body = (
            "<h1>Sign in</h1><p>This daemon needs its API token to show incidents.</p>"
            + (f"<p class='err'>{escape(error)}</p>" if error else "")
            + "<form method='post' action='/login'>"
            f"<input type='hidden' name='next' value='{escape(nxt)}'>"
            "<label>Token <input type='password' name='token' required></label> "
            "<button type='submit'>Sign in</button></form>"
        )
        return _page("sign in", body, host.clock(), None)

    async def login(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        nxt = _safe_next(str(form.get("next", "/")))
        token = str(form.get("token", ""))
        tokens = [t for t in (host.settings.api.read_token, host.settings.ingest.token) if t]
        import hmac

        if not any(hmac.compare_digest(token.encode(), t.get_secret_value().encode())
                   for t in tokens):  # fmt: skip
            return see_other(f"/login?next={quote(nxt)}&error=wrong+token")
        resp = see_other(nxt)
        resp.set_cookie(
            COOKIE, token, httponly=True, samesite="Strict", secure=request.secure, path="/"
        )
        return resp

    app.router.add_get("/", index)
    app.router.add_get("/incidents/{id}", incident)
    app.router.add_post("/incidents/{id}/{verb}", incident_form)
    app.router.add_post("/silences", silence_form)
    app.router.add_post("/silences/{id}/expire", expire_form)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)


# ---- form plumbing -----------------------------------------------------------------------


def _refuse_form(request: web.Request, host: ApiHost, back: str) -> web.StreamResponse | None:
    """A form post from another site (CSRF), or without the write token, goes no further.
    A browser's post carries `Origin` (the app's `_guard` already refused a foreign or
    `null` one) or at least `Referer`; a post with neither is not from our page."""
    origin, referer = request.headers.get("Origin"), request.headers.get("Referer")
    if origin is None and not referer:
        return web.Response(status=403, text="no Origin or Referer: refused")
    for value in (origin, referer):
        if value and urlsplit(value).netloc != request.host:
            return web.Response(status=403, text="Origin or Referer is not this host: refused")
    if not host.can_write(request):
        if host.can_read(request):  # signed in, with a token that may only read
            return _back(back, "this needs the write token (ingest.token): sign in with it")
        return see_other(f"/login?next={quote(back)}")
    return None


def see_other(location: str) -> web.Response:
    """303 to `location`: a form post's answer, so a reload does not post again."""
    return web.Response(status=303, headers={"Location": location})


def _back(path: str, error: str) -> web.StreamResponse:
    """Back to the page with the error shown on it (the form's input was refused)."""
    return see_other(f"{path}?error={quote(error[:300])}")


_LOCAL_PATH = re.compile(r"/(?![/\\])[^\s\\\x00-\x1f\x7f]*\Z")


def _safe_next(nxt: str | None) -> str:
    """A redirect target from the client, kept only if it is a path on this host: `/\\evil`
    and `/<TAB>/evil` read as `//evil` in browsers, and CR/LF would break the header."""
    return nxt if nxt and _LOCAL_PATH.match(nxt) else "/"


# ---- rendering ---------------------------------------------------------------------------


def _page(
    title: str, body: str, now: float, refresh_s: int | None, status: int = 200
) -> web.Response:
    refresh = f"<meta http-equiv='refresh' content='{refresh_s}'>" if refresh_s else ""
    html = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        # No favicon request: a 404 for it would be the page's only console error.
        f"<link rel='icon' href='data:,'>{refresh}<title>{escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<nav><a href='/'>Incidents</a><a href='/metrics'>Metrics</a>"
        "<a href='/openapi.json'>API</a>"
        f"<span class='muted'>as of {_hm(now, seconds=True)} UTC"
        + (f", refreshes every {refresh_s} s" if refresh_s else "")
        + f"</span></nav>{body}</body></html>"
    )
    return web.Response(text=html, content_type="text/html", status=status)


def _ts(text: str | None) -> float | None:
    return None if not text else datetime.fromisoformat(text).timestamp()


def _hm(ts: float | None, seconds: bool = False) -> str:
    if ts is None:
        return "—"
    fmt = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return datetime.fromtimestamp(ts, UTC).strftime(fmt)


def _sev(severity: str) -> str:
    color = SEVERITY_COLOR.get(severity, "#555")
    return f"<span class='sev' style='background:{color}'>{escape(severity)}</span>"


def _num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):  # e.g. start_estimate.corroborated_by
        return escape(", ".join(str(x) for x in v))
    return "—" if v is None else escape(str(v))


def _error(error: str | None) -> str:
    return f"<p class='err' role='alert'>{escape(error)}</p>" if error else ""


def _incident_rows(records: Sequence[Mapping[str, Any]], now: float, resolved: bool) -> str:
    if not records:
        return "<tr><td colspan=6><em>none</em></td></tr>"
    rows = []
    for r in records:
        opened = _ts(r["opened_at"]) or now
        end = _ts(r.get("resolved_at")) if resolved else now
        ack = r.get("acknowledged") or {}
        who = (r.get("resolved_by") or {}).get("by") if resolved else ack.get("by")
        rows.append(
            f"<tr><td>{_sev(r['severity'])}</td><td>{escape(r['domain'])}</td>"
            f"<td>{escape(r['feature'])}</td>"
            f"<td><a href='/incidents/{quote(r['id'], safe='')}'>{escape(r['summary'])}</a></td>"
            f"<td>{format_duration((end or now) - opened)}</td>"
            f"<td>{escape(who) if who else '<span class=muted>—</span>'}</td></tr>"
        )
    return "".join(rows)


def _index_body(
    open_: list[dict[str, Any]],
    recent: list[dict[str, Any]],
    silences: list[dict[str, Any]],
    now: float,
    error: str | None,
) -> str:
    # Most urgent first: critical before warning before watch, then newest.
    rank = {"critical": 0, "warning": 1, "watch": 2}
    open_.sort(key=lambda r: (rank.get(r["severity"], 3), -(_ts(r["opened_at"]) or 0)))
    head = "<tr><th>severity</th><th>domain</th><th>feature</th><th>summary</th>"
    active = [s for s in silences if s.get("state") != "expired"]
    sil_rows = (
        "".join(
            f"<tr><td>{escape(s['id'])}</td><td>{_matchers(s['matchers'])}</td>"
            f"<td>{escape(s['state'])}</td><td>{escape(s['ends_at'])}</td>"
            f"<td>{escape(s.get('created_by') or '')}</td><td>{escape(s.get('comment') or '')}</td>"
            f"<td>{_expire_button(s)}</td></tr>"
            for s in active
        )
        or "<tr><td colspan=7><em>none</em></td></tr>"
    )
    return (
        f"<h1>llm-oncall</h1>{_error(error)}"
        f"<h2>Open incidents ({len(open_)})</h2><table>{head}<th>age</th><th>acked by</th></tr>"
        f"{_incident_rows(open_, now, False)}</table>"
        f"<h2>Recently resolved</h2><table>{head}<th>lasted</th><th>resolved by</th></tr>"
        f"{_incident_rows(recent, now, True)}</table>"
        f"<h2>Silences ({len(active)} active or pending)</h2><table><tr><th>id</th>"
        "<th>matchers</th><th>state</th><th>ends</th><th>by</th><th>comment</th><th></th></tr>"
        f"{sil_rows}</table><h3>New silence</h3>{_silence_form('feature', '', '/')}"
    )


def _matchers(matchers: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for m in matchers:
        op = ("=~" if m.get("is_regex") else "=") if m.get("is_equal", True) else (
            "!~" if m.get("is_regex") else "!=")  # fmt: skip
        parts.append(f"{escape(str(m['name']))}{op}{escape(str(m['value']))}")
    return ", ".join(parts)


def _expire_button(s: Mapping[str, Any]) -> str:
    if str(s["id"]).startswith(api.CONFIG_SILENCE_PREFIX):
        return "<span class='muted'>config</span>"
    return (
        f"<form method='post' action='/silences/{quote(s['id'], safe='')}/expire'>"
        "<button type='submit'>Expire</button></form>"
    )


def _silence_form(name: str, value: str, back: str) -> str:
    return (
        "<form method='post' action='/silences'>"
        f"<input type='hidden' name='back' value='{escape(back)}'>"
        f"<label>matcher <input name='name' value='{escape(name)}' size=10 required></label>"
        f" = <input name='value' value='{escape(value)}' size=20 required aria-label='value'> "
        "<label>for <input name='duration' value='2h' size=5 required></label> "
        "<label>by <input name='by' size=10 required></label> "
        "<label>comment <input name='comment' size=24></label> "
        "<button type='submit'>Silence</button></form>"
    )


def _action_forms(rec: Mapping[str, Any]) -> str:
    iid = quote(rec["id"], safe="")
    verbs = [("ack", "Acknowledge"), ("resolve", "Resolve")] if rec["status"] == "open" else [
        ("reopen", "Reopen")]  # fmt: skip
    return "".join(
        f"<form class='inline' method='post' action='/incidents/{iid}/{verb}'>"
        f"<input name='by' placeholder='your name' size=12 required aria-label='by'> "
        f"<input name='comment' placeholder='comment' size=24 aria-label='comment'> "
        f"<button type='submit'>{label}</button></form>"
        for verb, label in verbs
    )


def _incident_body(
    rec: Mapping[str, Any],
    runbook: Mapping[str, Any],
    history: list[dict[str, Any]],
    charts: list[tuple[str, str]],
    postmortem: str,
    now: float,
    error: str | None,
) -> str:
    e = escape
    opened = _ts(rec["opened_at"])
    started = _ts(rec.get("started_at")) or opened
    resolved = _ts(rec.get("resolved_at"))
    ack = rec.get("acknowledged")
    by = rec.get("resolved_by")
    facts = [
        ("status", e(rec["status"]) + (" (flapping)" if rec.get("flapping") else "")),
        ("domain", e(rec["domain"])),
        ("feature", e(rec["feature"])),
        ("estimated start", f"{_hm(started)} UTC"),
        (
            "detected (opened)",
            f"{_hm(opened)} UTC, {format_duration((opened or 0) - (started or 0))} after the start",
        ),
        (
            "resolved",
            f"{_hm(resolved)} UTC"
            if resolved
            else f"still open, for {format_duration(now - (opened or now))}",
        ),
        ("paged", "yes" if rec.get("paged") else "no"),
    ]
    if ack:
        facts.append(("acknowledged", _human(ack)))
    if by:
        facts.append(("resolved by hand", _human(by)))
    still = rec.get("still_firing")
    if isinstance(still, Mapping) and still.get("signals"):
        reopens = _ts(still.get("reopens_at"))
        facts.append(
            (
                "still firing",
                e(", ".join(map(str, still["signals"])))
                + f"; reopens and pages at {_hm(reopens)} UTC if they still fire then",
            )
        )
    if rec.get("reopen_reason"):
        facts.append(("reopened", e(str(rec["reopen_reason"]))))
    if rec.get("muted"):
        facts.append(("muted", e(f"{rec['muted'].get('reason')}: {rec['muted'].get('by')}")))
    est = rec.get("start_estimate")
    if est:
        facts.append(("start estimate", e(", ".join(f"{k} {_num(v)}" for k, v in est.items()))))
    fact_rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts)
    links = [
        f"<li>{e(str(k))}: " + (f"<a href='{e(str(v))}'>{e(str(v))}</a>"
                                if str(v).startswith(("http://", "https://")) else e(str(v)))
        + "</li>"
        for k, v in runbook.items()
    ]  # fmt: skip
    sig_rows = "".join(
        f"<tr><td>{e(s['metric'])}{' · ' + e(s['series']) if s.get('series') else ''}</td>"
        f"<td>{e(s['layer'])}</td><td>{e(s['detector'])}</td><td>{e(s['direction'])}</td>"
        f"<td>{_num(s['value'])}</td><td>{_num(s.get('baseline'))}</td><td>{_num(s['score'])}</td>"
        f"<td>{_hm(_ts(s['onset']), True)}</td><td>{_hm(_ts(s.get('cleared')), True)}</td></tr>"
        for s in rec.get("signals") or []
    )
    triage = "".join(
        f"<li><b>{e(t['question'])}</b>: {'yes' if t['answer'] else 'no'} — {e(t['evidence'])}</li>"
        for t in rec.get("triage") or []
    )
    changes = "".join(
        f"<li>{_hm(_ts(c['ts']))} UTC <b>{e(c['kind'])}</b> {e(c.get('description') or '')}</li>"
        for c in list(rec.get("changes") or []) + list(rec.get("later_changes") or [])
    )
    attribution = "".join(
        f"<tr><td>{e(a['label'])}</td><td>{e(a['value'])}</td>"
        f"<td>{a['anomalous_share']:.0%}</td><td>{a['baseline_share']:.0%}</td>"
        f"<td>{e(a.get('basis') or '')}</td></tr>"
        for a in rec.get("attribution") or []
    )
    notes = "".join(
        f"<tr><td>{e(n['receiver'])}</td><td>{e(n['action'])}</td><td>{e(n['created_at'])}</td>"
        f"<td>{_delivery(n)}</td><td>{n['attempts']}</td>"
        f"<td>{e(n.get('last_error') or '')}</td></tr>"
        for n in history
    )
    chart_html = "".join(f"<h3>{e(metric)}</h3>{svg}" for metric, svg in charts)
    chart_html = chart_html or "<p><em>no history kept for these metrics</em></p>"
    iid = quote(rec["id"], safe="")
    return (
        f"<p><a href='/'>← all incidents</a></p>{_error(error)}"
        f"<h1>{_sev(rec['severity'])} {e(rec['summary'])}</h1>"
        f"<div>{_action_forms(rec)}</div>"
        f"<details><summary>Silence this feature</summary>"
        f"{_silence_form('feature', rec['feature'], '/incidents/' + iid)}</details>"
        f"<table>{fact_rows}</table>"
        + (f"<h2>Runbook</h2><ul>{''.join(links)}</ul>" if links else "")
        + f"<h2>Members</h2><table><tr><th>metric</th><th>layer</th><th>detector</th>"
        "<th>direction</th><th>value</th><th>baseline</th><th>score</th><th>onset</th>"
        f"<th>cleared</th></tr>{sig_rows}</table>"
        f"<h2>Charts</h2><p class='muted'>Last hours per minute (UTC); band: baseline ±"
        f" {BAND_SIGMAS:g} robust σ of the minutes before the start; dotted red: a static"
        f" rule's threshold; orange: estimated start, red: detection.</p>{chart_html}"
        f"<h2>Triage</h2><ul>{triage or '<li><em>none</em></li>'}</ul>"
        f"<h2>Changes</h2><ul>{changes or '<li><em>none in the lookback</em></li>'}</ul>"
        "<h2>Attribution</h2>"
        + (f"<table><tr><th>label</th><th>value</th><th>anomalous share</th>"
           f"<th>baseline share</th><th>basis</th></tr>{attribution}</table>"
           if attribution else "<p><em>no suspect (nothing rather than a wrong one)</em></p>")
        + "<h2>Notifications</h2>"
        + (f"<table><tr><th>receiver</th><th>action</th><th>queued</th><th>delivery</th>"
           f"<th>attempts</th><th>last error</th></tr>{notes}</table>"
           if notes else "<p><em>none sent</em></p>")
        + f"<h2>Post-mortem draft</h2><p><a href='/api/v1/incidents/{iid}/postmortem'>"
        f"Markdown</a></p><pre>{e(unescape(postmortem))}</pre>"
    )  # fmt: skip


def _human(h: Mapping[str, Any]) -> str:
    comment = f": {escape(h['comment'])}" if h.get("comment") else ""
    return f"{escape(h['by'])} at {_hm(_ts(h.get('at')))} UTC{comment}"


def _delivery(n: Mapping[str, Any]) -> str:
    state = n["state"]
    if state == "sent":
        return f"delivered {escape(n.get('sent_at') or '')}"
    if state == "pending" and n["attempts"]:
        return f"retrying (next {escape(n.get('next_attempt_at') or '')})"
    if state == "dead":
        return "<span class='err'>failed (dead letter)</span>"
    return escape("sending" if state == "inflight" else "queued")


# ---- charts ------------------------------------------------------------------------------


def _chart_members(signals: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """One chart per whole-feature metric (per-provider series have no kept history)."""
    seen: set[str] = set()
    out = []
    for s in signals:
        if s["metric"] not in seen:
            seen.add(s["metric"])
            out.append(s)
    return out[:12]


def _member_chart(host: ApiHost, rec: Mapping[str, Any], sig: Mapping[str, Any], now: float) -> str:
    ring = host.pipeline.history.get((rec["feature"], sig["metric"]))
    points = list(ring) if ring else []
    # A static rule has a line, not a learned baseline: draw the line.
    rules = host.pipeline.rulebook.rules_for(rec["feature"], sig["layer"], sig["metric"])
    thresholds = [float(r.params["threshold"]) for r in rules if r.kind == "static"]
    return metric_chart(
        points,
        start=_ts(rec.get("started_at")),
        detected=_ts(sig.get("onset")) or _ts(rec["opened_at"]),
        title=f"{sig['metric']} of {rec['feature']}",
        thresholds=thresholds,
    )


def band_of(points: Sequence[tuple[float, float, float | None]], start: float | None) -> float:
    """Half-width of the baseline band: BAND_SIGMAS robust σ (1.4826 × MAD) of value minus
    baseline over the points before `start` (all points if fewer than 5 precede it)."""
    resid = [v - b for t, v, b in points if b is not None and (start is None or t < start)]
    if len(resid) < 5:
        resid = [v - b for _, v, b in points if b is not None]
    if not resid:
        return 0.0
    med = statistics.median(resid)
    mad = statistics.median(abs(r - med) for r in resid)
    sigma = 1.4826 * mad
    if sigma == 0.0:
        sigma = statistics.pstdev(resid)
    return BAND_SIGMAS * sigma


def metric_chart(
    points: Sequence[tuple[float, float, float | None]],
    start: float | None,
    detected: float | None,
    title: str,
    thresholds: Sequence[float] = (),
) -> str:
    """An inline SVG: the metric per minute, its baseline (dashed) and band (shaded), any
    static threshold (dotted red), the estimated start and the detection as vertical lines.
    Plain SVG, readable without CSS."""
    if len(points) < 2:
        return f"<p class='muted'>{escape(title)}: not enough history kept yet.</p>"
    half = band_of(points, start)
    t0, t1 = points[0][0], points[-1][0]
    values = [v for _, v, _ in points]
    bases = [b for _, _, b in points if b is not None]
    lo = min(values + [b - half for b in bases] + list(thresholds))
    hi = max(values + [b + half for b in bases] + list(thresholds))
    if hi - lo < 1e-12:
        lo, hi = lo - 1.0, hi + 1.0
    pad = (hi - lo) * 0.05
    lo, hi = lo - pad, hi + pad
    w = CHART_W - CHART_PAD_L - CHART_PAD_R
    h = CHART_H - CHART_PAD_T - CHART_PAD_B

    def x(t: float) -> float:
        return CHART_PAD_L + (t - t0) / max(t1 - t0, 1.0) * w

    def y(v: float) -> float:
        return CHART_PAD_T + (hi - v) / (hi - lo) * h

    def path(pts: Sequence[tuple[float, float]]) -> str:
        return " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in pts)

    based = [(t, b) for t, _, b in points if b is not None]
    parts = [
        f"<svg class='chart' role='img' aria-label='{escape(title)}' width='{CHART_W}' "
        f"height='{CHART_H}' viewBox='0 0 {CHART_W} {CHART_H}' xmlns='http://www.w3.org/2000/svg'>"
        f"<title>{escape(title)}</title>"
        f"<rect x='{CHART_PAD_L}' y='{CHART_PAD_T}' width='{w}' height='{h}' fill='#fcfcfc' "
        "stroke='#ddd'/>"
    ]
    if based:
        upper = [(t, b + half) for t, b in based]
        lower = [(t, b - half) for t, b in reversed(based)]
        parts.append(f"<polygon points='{path(upper + lower)}' fill='#cfe3f7' opacity='0.7'/>")
        parts.append(
            f"<polyline points='{path(based)}' fill='none' stroke='#3b78b5' "
            "stroke-dasharray='4 3' stroke-width='1'/>"
        )
    parts.append(
        f"<polyline points='{path([(t, v) for t, v, _ in points])}' fill='none' "
        "stroke='#222' stroke-width='1.5'/>"
    )
    for level in thresholds:
        parts.append(
            f"<line x1='{CHART_PAD_L}' x2='{CHART_PAD_L + w}' y1='{y(level):.1f}' "
            f"y2='{y(level):.1f}' stroke='#b00020' stroke-dasharray='2 2' stroke-width='1'/>"
            f"<text x='{CHART_PAD_L + w - 2}' y='{y(level) - 3:.1f}' font-size='10' "
            f"text-anchor='end' fill='#b00020'>threshold {_tick(level)}</text>"
        )
    marks = ((start, "#e08a00", "start", 22), (detected, "#b00020", "detected", 10))
    for ts, color, label, dy in marks:  # labels on two rows: the two may coincide
        if ts is not None and t0 <= ts <= t1:
            parts.append(
                f"<line x1='{x(ts):.1f}' x2='{x(ts):.1f}' y1='{CHART_PAD_T}' "
                f"y2='{CHART_PAD_T + h}' stroke='{color}' stroke-width='1.5'/>"
                f"<text x='{x(ts) + 3:.1f}' y='{CHART_PAD_T + dy}' font-size='10' "
                f"fill='{color}'>{label}</text>"
            )
    for v in (hi - pad, lo + pad):
        parts.append(
            f"<text x='{CHART_PAD_L - 4}' y='{y(v) + 3:.1f}' font-size='10' text-anchor='end'>"
            f"{_tick(v)}</text>"
        )
    for t, anchor in ((t0, "start"), (t1, "end")):
        label = datetime.fromtimestamp(t, UTC).strftime("%H:%M")
        parts.append(
            f"<text x='{x(t):.1f}' y='{CHART_H - 6}' font-size='10' text-anchor='{anchor}'>"
            f"{label}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _tick(v: float) -> str:
    if v == 0 or not math.isfinite(v):
        return "0"
    return f"{v:.3g}"
