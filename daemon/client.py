"""The command line's client side: talk to a running daemon, as `amtool` does to Alertmanager.

    llm-oncall incidents [list|show ID|ack ID|resolve ID|reopen ID]
    llm-oncall silence [add MATCHER... --duration 2h|list|expire ID...]
    llm-oncall test-page RECEIVER
    llm-oncall routes test --feature F [--severity S] [--domain D]

`--url` (or `LLM_ONCALL_URL`, default http://127.0.0.1:9477) names the daemon; the token comes
from `LLM_ONCALL_TOKEN` or `--token-file`, never from the command line (it would show in `ps`
and the shell history). Human tables by default, `-o json` for scripts. Standard library only:
the client must start fast and run where the daemon's dependencies are not installed.
"""

from __future__ import annotations

import argparse
import getpass
import http.client
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from daemon.durations import format_duration, parse_duration

DEFAULT_URL = "http://127.0.0.1:9477"
TIMEOUT_S = 10.0
# amtool's matcher syntax: name=value, name!=value, name=~regex, name!~regex.
_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


class ClientError(Exception):
    """A failure to report in one line and exit 1 (unreachable daemon, refused request)."""


def add_commands(sub: Any) -> None:
    """Register the client commands on the main parser's subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url", default=os.environ.get("LLM_ONCALL_URL", DEFAULT_URL), help="daemon base URL"
    )
    common.add_argument("--token-file", help="file holding the API token (else LLM_ONCALL_TOKEN)")
    common.add_argument("-o", "--output", choices=("table", "json"), default="table")

    inc = sub.add_parser("incidents", parents=[common], help="list, show, ack, resolve incidents")
    inc.add_argument(
        "action", nargs="?", default="list", choices=("list", "show", "ack", "resolve", "reopen")
    )
    inc.add_argument("id", nargs="?", help="incident id (show, ack, resolve, reopen)")
    inc.add_argument("--status", choices=("open", "resolved", "all"), default="open")
    inc.add_argument("--feature")
    inc.add_argument("--limit", type=int, default=50)
    inc.add_argument("--by", default=None, help="who acts (default: your user name)")
    inc.add_argument("--comment", default="")
    inc.set_defaults(func=cmd_incidents, usage_error=inc.error)

    sil = sub.add_parser("silence", parents=[common], help="add, list or expire silences")
    sil.add_argument("action", nargs="?", default="list", choices=("add", "list", "expire"))
    sil.add_argument(
        "args", nargs="*", help="add: matchers like feature=support-bot; expire: silence ids"
    )
    sil.add_argument("-d", "--duration", default="2h", help="add: how long (90s, 30m, 2h, 1d)")
    sil.add_argument("--by", default=None, help="who adds it (default: your user name)")
    sil.add_argument("--comment", default="")
    sil.add_argument("--all", action="store_true", help="list: expired ones too")
    sil.set_defaults(func=cmd_silence, usage_error=sil.error)

    tp = sub.add_parser(
        "test-page", parents=[common], help="send a marked test trigger and resolve to a receiver"
    )
    tp.add_argument("receiver")
    tp.add_argument("--by", default=None)
    tp.set_defaults(func=cmd_test_page)

    rt = sub.add_parser("routes", parents=[common], help="which receivers an incident reaches")
    rt.add_argument("action", choices=("test",))
    rt.add_argument("--feature", required=True)
    rt.add_argument("--severity", choices=("critical", "warning", "watch"), default="critical")
    rt.add_argument(
        "--domain",
        choices=("provider", "prompt_model", "infra_retrieval", "unknown"),
        default="unknown",
    )
    rt.set_defaults(func=cmd_routes)


# ---- HTTP ---------------------------------------------------------------------------------


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as exc:
            msg = f"--token-file: cannot read {args.token_file}: {exc.strerror}"
            raise ClientError(msg) from None
        if not token:
            raise ClientError(f"--token-file: {args.token_file} is empty")
        return token
    return os.environ.get("LLM_ONCALL_TOKEN") or None


def call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    """One request to the daemon; the parsed JSON answer, or ClientError with its message."""
    try:
        base = urllib.parse.urlsplit(args.url)
    except ValueError:  # "http://[::1": an unclosed IPv6 bracket
        base = urllib.parse.SplitResult("", "", "", "", "")
    if (
        base.scheme not in ("http", "https")
        or not base.netloc
        or any(c.isspace() for c in args.url)
    ):
        raise ClientError(f"--url: {args.url!r} is not an http(s) URL like http://127.0.0.1:9477")
    url = args.url.rstrip("/") + path
    data = None if body is None else json.dumps(body).encode()
    headers = {"Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    token = _token(args)
    if token:
        if any(c in token for c in "\r\n") or not token.isprintable():
            raise ClientError("the token has a line break or a control character in it")
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            message = json.loads(raw).get("error") or raw.decode(errors="replace")
        except (ValueError, AttributeError):
            message = raw.decode(errors="replace")[:300]
        hint = ""
        if exc.code == 401:
            hint = " (set LLM_ONCALL_TOKEN or --token-file)"
        raise ClientError(f"{method} {path}: HTTP {exc.code}: {message}{hint}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ClientError(f"cannot reach the daemon at {args.url}: {reason}") from None
    except (ValueError, http.client.HTTPException) as exc:  # e.g. InvalidURL, a bad port
        raise ClientError(f"--url {args.url!r}: {exc}") from None


# ---- output -------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell; long cells cut at 60 characters."""
    cells = [[_cell(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))]
    for r in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _cell(value: Any) -> str:
    text = "-" if value is None or value == "" else str(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:59] + "…"


def _age(ts: str | None, now: float) -> str:
    if not ts:
        return "-"
    return format_duration(now - datetime.fromisoformat(ts).timestamp())


def _emit(args: argparse.Namespace, data: Any, human: str) -> None:
    print(json.dumps(data, indent=2) if args.output == "json" else human)


def _who(args: argparse.Namespace) -> str:
    if args.by:
        return str(args.by)
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


# ---- commands -----------------------------------------------------------------------------


def cmd_incidents(args: argparse.Namespace) -> int:
    if args.action == "list":
        if args.id is not None:
            # argparse fills the optional `id` slot for every action; a stray word after
            # `list` is a mistake to point out, not a filter to ignore.
            args.usage_error(f"incidents list takes no incident id (got {args.id!r})")
        query: dict[str, Any] = {"limit": args.limit}
        if args.status != "all":
            query["status"] = args.status
        if args.feature:
            query["feature"] = args.feature
        recs = call(args, "GET", "/api/v1/incidents?" + urlencode(query))["incidents"]
        now = time.time()
        rows = [
            [
                r["id"],
                r["status"],
                r["severity"],
                r["domain"],
                r["feature"],
                _age(r["opened_at"], now),
                (r.get("acknowledged") or {}).get("by"),
                r["summary"],
            ]
            for r in recs
        ]
        headers = ("id", "status", "severity", "domain", "feature", "age", "acked by", "summary")
        _emit(args, recs, table(headers, rows) if rows else "no incidents")
        return 0
    if not args.id:
        raise ClientError(f"incidents {args.action}: needs an incident id")
    iid = quote(args.id, safe="")
    if args.action == "show":
        rec = call(args, "GET", f"/api/v1/incidents/{iid}")
        notes = call(args, "GET", f"/api/v1/incidents/{iid}/notifications")["notifications"]
        _emit(args, rec | {"notifications_sent": notes}, _show(rec, notes))
        return 0
    rec = call(
        args, "POST", f"/api/v1/incidents/{iid}/{args.action}",
        {"by": _who(args), "comment": args.comment},
    )  # fmt: skip
    verb = {"ack": "acknowledged", "resolve": "resolved", "reopen": "reopened"}[args.action]
    text = f"{rec['id']} {verb} ({rec['status']}, {rec['severity']})"
    _emit(args, rec, text + _still_firing(rec))
    return 0


def _still_firing(rec: dict[str, Any]) -> str:
    """What a resolve left firing: the person who resolved should know it may page again."""
    still = rec.get("still_firing")
    if not isinstance(still, dict) or not still.get("signals"):
        return ""
    return (
        f"\n  still firing: {', '.join(map(str, still['signals']))};"
        f" it reopens and pages at {still.get('reopens_at')} if they still fire then"
    )


def _show(rec: dict[str, Any], notes: list[dict[str, Any]]) -> str:
    lines = [
        f"{rec['id']}  [{rec['severity']}/{rec['domain']}] {rec['status']}",
        f"  {rec['summary']}",
        f"  feature {rec['feature']}; started (estimated) {rec.get('started_at')};"
        f" opened {rec['opened_at']}; resolved {rec.get('resolved_at') or '-'}",
    ]
    if rec.get("acknowledged"):
        a = rec["acknowledged"]
        lines.append(f"  acknowledged by {a['by']} at {a['at']}: {a.get('comment') or ''}")
    if rec.get("reopen_reason"):
        lines.append(f"  reopened: {rec['reopen_reason']}")
    if rec.get("still_firing"):
        lines.append(_still_firing(rec).removeprefix("\n"))
    lines += ["", "signals:"]
    lines.append(
        table(
            ("metric", "layer", "detector", "value", "baseline", "onset", "cleared"),
            [
                [
                    s["metric"],
                    s["layer"],
                    s["detector"],
                    _num(s["value"]),
                    _num(s["baseline"]),
                    s["onset"],
                    s.get("cleared"),
                ]
                for s in rec.get("signals") or []
            ],
        )
    )
    lines += ["", "triage:"]
    lines += [
        f"  {t['question']}: {'yes' if t['answer'] else 'no'} — {t['evidence']}"
        for t in rec.get("triage") or []
    ]
    if rec.get("attribution"):
        lines += ["", "attribution:"]
        lines += [
            f"  {a['label']}={a['value']}: {a['anomalous_share']:.0%} of the anomalous traffic"
            f" vs {a['baseline_share']:.0%} before"
            for a in rec["attribution"]
        ]
    if rec.get("changes"):
        lines += ["", "changes:"]
        lines += [f"  {c['ts']} {c['kind']}: {c.get('description') or ''}" for c in rec["changes"]]
    lines += ["", "notifications:"]
    lines.append(
        table(
            ("receiver", "action", "state", "attempts", "queued", "sent"),
            [
                [
                    n["receiver"],
                    n["action"],
                    n["state"],
                    n["attempts"],
                    n["created_at"],
                    n.get("sent_at"),
                ]
                for n in notes
            ],
        )
        if notes
        else "  none"
    )
    return "\n".join(lines)


def _num(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else "-" if v is None else str(v)


def parse_matcher(text: str) -> dict[str, Any]:
    """`name=value`, `name!=value`, `name=~regex`, `name!~regex` → an API matcher."""
    m = _MATCHER.match(text)
    if m is None:
        raise ClientError(
            f"matcher {text!r}: expected name=value, name!=value, name=~regex or name!~regex"
        )
    name, op, value = m.groups()
    if op == "=" and value.startswith("="):  # `name==x`: a typo, not the value "=x"
        raise ClientError(f"matcher {text!r}: '==' is not an operator; write {name}={value[1:]}")
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    return {"name": name, "value": value, "is_regex": "~" in op, "is_equal": op[0] != "!"}


def cmd_silence(args: argparse.Namespace) -> int:
    if args.action == "add":
        if not args.args:
            raise ClientError("silence add: needs at least one matcher, e.g. feature=support-bot")
        try:
            duration = parse_duration(args.duration, "--duration")
        except ValueError as exc:
            raise ClientError(str(exc)) from None
        now = time.time()
        body = {
            "matchers": [parse_matcher(a) for a in args.args],
            "starts_at": now,
            "ends_at": now + duration,
            "created_by": _who(args),
            "comment": args.comment,
        }
        rec = call(args, "POST", "/api/v1/silences", body)
        _emit(args, rec, f"{rec['id']} until {rec['ends_at']}")
        return 0
    if args.action == "expire":
        if not args.args:
            raise ClientError("silence expire: needs silence ids")
        done = [call(args, "DELETE", f"/api/v1/silences/{quote(s, safe='')}") for s in args.args]
        _emit(args, done, "\n".join(f"expired {d['expired']}" for d in done))
        return 0
    if args.args:
        args.usage_error(f"silence list takes no arguments (got {' '.join(args.args)!r})")
    sils = call(args, "GET", "/api/v1/silences")["silences"]
    if not args.all:
        sils = [s for s in sils if s.get("state") != "expired"]
    rows = [
        [s["id"], _matchers(s["matchers"]), s.get("state"), s["starts_at"], s["ends_at"],
         s.get("created_by"), s.get("comment")]
        for s in sils
    ]  # fmt: skip
    headers = ("id", "matchers", "state", "starts", "ends", "by", "comment")
    _emit(args, sils, table(headers, rows) if rows else "no silences")
    return 0


def _matchers(matchers: list[dict[str, Any]]) -> str:
    ops = {(False, True): "=", (True, True): "=~", (False, False): "!=", (True, False): "!~"}
    return ",".join(
        f"{m['name']}{ops[(bool(m.get('is_regex')), bool(m.get('is_equal', True)))]}{m['value']}"
        for m in matchers
    )


def cmd_test_page(args: argparse.Namespace) -> int:
    path = f"/api/v1/receivers/{quote(args.receiver, safe='')}/test?" + urlencode(
        {"by": _who(args)}
    )
    ans = call(args, "POST", path)
    inc = ans["incident"]
    _emit(
        args,
        ans,
        f"queued a test trigger and resolve to {args.receiver} (dedup key {inc['dedup_key']});"
        " see `/metrics` llm_oncall_notifications_total for delivery",
    )
    return 0


def cmd_routes(args: argparse.Namespace) -> int:
    query = urlencode({"feature": args.feature, "severity": args.severity, "domain": args.domain})
    ans = call(args, "GET", "/api/v1/routes/test?" + query)
    names = [t["receiver"] for t in ans["receivers"]]
    human = ", ".join(names) if names else "no receiver (not notified)"
    _emit(args, ans, human)
    return 0


def run(args: argparse.Namespace) -> int:
    """Run a client command; one line on stderr and exit 1 when it fails."""
    try:
        return int(args.func(args))
    except ClientError as exc:
        print(f"llm-oncall: {exc}", file=sys.stderr)
        return 1
