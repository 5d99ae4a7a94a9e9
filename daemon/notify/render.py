"""Turning an incident record into words a person reads at 3 a.m."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from daemon.notify.http import truncate
from daemon.notify.model import Notification

__all__ = ["details", "lead_signal", "lines", "title"]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


SIGNIFICANT = 4


def _rounded(v: Any) -> Any:
    """Floats to `SIGNIFICANT` significant digits, inside lists and dicts too: what a person
    reads in a receiver's details (0.036, not 0.036020583190394515). The record behind the
    page (API, replay, webhook) keeps the raw numbers."""
    if isinstance(v, float):
        return float(f"{v:.{SIGNIFICANT}g}") if math.isfinite(v) else v
    if isinstance(v, Mapping):
        return {k: _rounded(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_rounded(x) for x in v]
    return v


def title(n: Notification) -> str:
    inc = n.incident
    summary = str(inc.get("summary") or "").strip()
    if not summary:
        summary = f"{inc.get('domain', 'unknown')} incident on {inc.get('feature', '?')}"
    prefix = "[RESOLVED] " if n.action == "resolve" else ""
    reason = inc.get("reopen_reason")
    if n.action == "trigger" and reason:
        # It was resolved by hand and the data says otherwise: that comes first.
        prefix = f"[REOPENED: {reason}] "
    if n.action == "acknowledge":
        ack = inc.get("acknowledged")
        by = ack.get("by") if isinstance(ack, Mapping) else None
        prefix = f"[ACKNOWLEDGED by {by}] " if by else "[ACKNOWLEDGED] "
    feature = f"{inc.get('feature', '?')}: "
    # The correlator's summary already starts with the feature; name it once (Opsgenie's
    # message has 130 characters).
    head = "" if summary.startswith(feature) else feature
    return f"{prefix}[{inc.get('severity', '?')}] {head}{summary}"


def lead_signal(inc: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The signal that fired first (ties: the highest score)."""
    signals = [s for s in inc.get("signals") or [] if isinstance(s, Mapping)]
    if not signals:
        return None
    return min(signals, key=lambda s: (str(s.get("onset") or ""), -float(s.get("score") or 0)))


def signal_line(s: Mapping[str, Any]) -> str:
    arrow = {"up": "↑", "down": "↓"}.get(str(s.get("direction")), "")
    series = f"{{{s['series']}}}" if s.get("series") else ""  # e.g. {segment=pro}
    peak = s.get("peak")
    peak_text = f", peak {_fmt(peak)}" if peak is not None and peak != s.get("value") else ""
    return (
        f"{s.get('metric')}{series} ({s.get('layer')}) {arrow}{_fmt(s.get('value'))} vs baseline "
        f"{_fmt(s.get('baseline'))}{peak_text}, score {_fmt(s.get('score'))}, {s.get('detector')}"
        f" since {s.get('onset')}" + (f", cleared {s['cleared']}" if s.get("cleared") else "")
    )


def triage_line(t: Mapping[str, Any]) -> str:
    a = t.get("answer")
    answer = "yes" if a is True else "no" if a is False else str(a)
    return f"{t.get('question')}? {answer}: {t.get('evidence', '')}"


def attribution_line(a: Mapping[str, Any]) -> str:
    share = a.get("anomalous_share")
    base = a.get("baseline_share")
    s = f"{a.get('label')}={a.get('value')}"
    if isinstance(share, int | float) and isinstance(base, int | float):
        if a.get("basis") == "new_value":
            s += f" (new: {share:.0%} of traffic since the start vs {base:.0%} before)"
        else:
            s += f" ({share:.0%} of anomalous traffic vs {base:.0%} baseline)"
    rate, before, rest = a.get("bad_rate"), a.get("baseline_bad_rate"), a.get("rest_bad_rate")
    if isinstance(rate, int | float) and isinstance(rest, int | float):
        was = f" (was {before:.1%})" if isinstance(before, int | float) else ""
        what = _BAD_SIDE.get(str(a.get("metric")), "anomalous rate")
        s += f"; {what} {rate:.1%}{was} vs {rest:.1%} in the rest"
    return s


# What the rates of an attribution read from a per-value series measure (its metric's bad side).
_BAD_SIDE = {
    "availability": "failure rate",
    "provider_error_rate": "provider error rate",
    "refusal_rate": "refusal rate",
    "format_compliance_rate": "format failure rate",
}


def change_line(c: Mapping[str, Any]) -> str:
    return f"{c.get('ts')} {c.get('kind')}: {c.get('description', '')}"


# Changes listed in the text of a page, and the characters of each. Receivers cut long
# text at the end (Opsgenie's description at 15,000 characters): thousands of deploys, or a
# few with long descriptions, would push the runbook and the incident id off it.
MAX_CHANGE_LINES = 10
MAX_CHANGE_CHARS = 300


def _change_rows(changes: list[Mapping[str, Any]]) -> list[str]:
    rows = [f"- {truncate(change_line(c), MAX_CHANGE_CHARS)}" for c in changes[:MAX_CHANGE_LINES]]
    if len(changes) > MAX_CHANGE_LINES:
        rows.append(f"- … and {len(changes) - MAX_CHANGE_LINES} more")
    return rows


def lines(n: Notification) -> list[str]:
    """The incident as plain-text lines, most important first."""
    inc = n.incident
    out = [
        title(n),
        f"status {inc.get('status')}, severity {inc.get('severity')}, domain "
        f"{inc.get('domain')}, started {inc.get('started_at') or inc.get('opened_at')}"
        f" (estimated), opened {inc.get('opened_at')}"
        + (f", resolved {inc['resolved_at']}" if inc.get("resolved_at") else "")
        + (" — FLAPPING: its signals keep firing and clearing" if inc.get("flapping") else ""),
    ]
    if inc.get("reopen_reason"):
        out.append(f"Reopened: {inc['reopen_reason']}")
    still = inc.get("still_firing")
    if isinstance(still, Mapping) and still.get("signals"):
        out.append(
            f"Resolved by hand while {', '.join(map(str, still['signals']))} still fire;"
            f" reopens at {still.get('reopens_at')} if they still fire then"
        )
    triage = [t for t in inc.get("triage") or [] if isinstance(t, Mapping)]
    if triage:
        out.append("Triage:")
        out += [f"- {triage_line(t)}" for t in triage]
    signals = [s for s in inc.get("signals") or [] if isinstance(s, Mapping)]
    if signals:
        out.append("Signals:")
        out += [f"- {signal_line(s)}" for s in signals]
    attribution = [a for a in inc.get("attribution") or [] if isinstance(a, Mapping)]
    if attribution:
        out.append("Attribution:")
        out += [f"- {attribution_line(a)}" for a in attribution]
    changes = [c for c in inc.get("changes") or [] if isinstance(c, Mapping)]
    if changes:
        out.append("Recent changes (before the start, most recent first):")
        out += _change_rows(changes)
    later = [c for c in inc.get("later_changes") or [] if isinstance(c, Mapping)]
    if later:
        out.append("Changes after the start (context):")
        out += _change_rows(later)
    if n.runbook:
        out.append("Runbook: " + ", ".join(f"{k}={v}" for k, v in n.runbook.items() if v))
    out.append(f"incident {n.incident_id}, dedup key {n.dedup_key}")
    return out


def details(n: Notification) -> dict[str, Any]:
    """Structured details for receivers that take JSON (PagerDuty custom_details), numbers
    rounded for reading (`_rounded`)."""
    inc = n.incident
    out = {
        "incident_id": n.incident_id,
        "status": inc.get("status"),
        "severity": inc.get("severity"),
        "domain": inc.get("domain"),
        "feature": inc.get("feature"),
        "opened_at": inc.get("opened_at"),
        "started_at": inc.get("started_at"),
        "resolved_at": inc.get("resolved_at"),
        "flapping": bool(inc.get("flapping")),
        "reopen_reason": inc.get("reopen_reason"),
        "triage": [
            {
                "question": t.get("question"),
                "answer": t.get("answer"),
                "evidence": t.get("evidence"),
            }
            for t in inc.get("triage") or []
            if isinstance(t, Mapping)
        ],
        "signals": [
            {
                k: s.get(k)
                for k in (
                    "metric",
                    "layer",
                    "detector",
                    "value",
                    "peak",
                    "baseline",
                    "score",
                    "direction",
                    "onset",
                    "cleared",
                )
            }
            # which label value the series is (segment=pro), when it is one
            | ({"series": s["series"]} if s.get("series") else {})
            # an alert firing since before the correlation window: since when, as it said
            | ({"reported_onset": s["reported_onset"]} if s.get("reported_onset") else {})
            for s in inc.get("signals") or []
            if isinstance(s, Mapping)
        ],
        "attribution": list(inc.get("attribution") or []),
        "changes": list(inc.get("changes") or []),
        "later_changes": list(inc.get("later_changes") or []),
        "runbook": dict(n.runbook or {}),
    }
    rounded: dict[str, Any] = _rounded(out)
    return rounded
