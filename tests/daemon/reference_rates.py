"""Brute-force rates of a window of calls: the reference that the aggregator's windows (whole
feature and per segment value) are checked against, written once for both."""

from __future__ import annotations

from daemon.ingest.events import LlmCall


def call_ok(e: LlmCall) -> bool:
    return (200 <= e.status < 300) if e.status is not None else not e.error


def call_rates(win: list[LlmCall]) -> dict[str, float]:
    """Availability, provider errors, refusals and format compliance of a non-empty window."""
    n = len(win)
    out = {
        "availability": sum(call_ok(e) for e in win) / n,
        "provider_error_rate": sum(
            not call_ok(e) and (e.status is None or e.status == 0 or e.status >= 500) for e in win
        )
        / n,
    }
    refusals = [e.refused for e in win if e.refused is not None]
    if refusals:
        out["refusal_rate"] = sum(refusals) / len(refusals)
    fmt = [e.format_ok for e in win if e.format_ok is not None]
    if fmt:
        out["format_compliance_rate"] = sum(fmt) / len(fmt)
    return out
