"""`llm-oncall replay`: the live pipeline in simulated time, driven by event timestamps.

It is the same `Pipeline` the daemon runs; only the clock differs (the newest event time
instead of the wall clock), so a file replays to the same signals and incidents every time,
with no sleeps. Bad lines are reported with their line number and skipped: what was accepted
before them is kept.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from config.settings import Settings
from correlator.records import rfc3339
from daemon.ingest.events import Rejected, iter_lines, open_input
from daemon.pipeline import Pipeline, TickOutput


@dataclass(slots=True)
class ReplayResult:
    events: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    rejected_total: int = 0
    signals: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    seconds: float = 0.0
    incidents: list[dict[str, Any]] = field(default_factory=list)
    unused: dict[str, int] = field(default_factory=dict)
    firing_by_metric: Counter[str] = field(default_factory=Counter)


MAX_REPORTED_REJECTS = 20


def replay(
    path: str,
    settings: Settings,
    signals_out: IO[bytes] | None = None,
    incidents_out: IO[bytes] | None = None,
    would_page: Any = None,
) -> ReplayResult:
    started = time.perf_counter()
    pipe = Pipeline(settings)
    result = ReplayResult()
    incidents: dict[str, Any] = {}
    # When each incident notified (opened, escalated or reopened at the receiver; reminders
    # excluded) and at which severity: the final record only says that it did, and time to
    # detect and false pages need when (eval/worlds_eval.py).
    notified: dict[str, list[list[Any]]] = {}

    def emit(out: TickOutput) -> None:
        for sig in out.signals:
            result.signals += 1
            if sig.state == "firing":
                result.firing_by_metric[sig.metric] += 1
            if signals_out is not None:
                signals_out.write(orjson.dumps(sig.to_record()) + b"\n")
        for upd in out.updates:
            incidents[upd.incident.id] = upd.incident
            if upd.notify == "trigger" and upd.action != "renotify":
                notified.setdefault(upd.incident.id, []).append(
                    [rfc3339(upd.ts), upd.incident.severity]
                )

    for events, rejected in iter_lines(open_input(path)):
        result.rejected_total += len(rejected)
        room = MAX_REPORTED_REJECTS - len(result.rejected)
        if room > 0:
            result.rejected.extend(rejected[:room])
        if not events:
            continue
        result.events += len(events)
        if result.first_ts is None:
            result.first_ts = events[0].ts
        emit(pipe.ingest(events))
    if pipe.watermark is not None:
        # Close the tick the last events fell into; no time is invented past the data.
        emit(pipe.advance(pipe.watermark))
        result.last_ts = pipe.watermark
    for inc in pipe.correlator.incidents():
        incidents[inc.id] = inc
    records = []
    for inc in incidents.values():
        rec = inc.to_record()
        # Replay-only extension field: [[time, severity], ...] of each notification.
        rec["notifications"] = notified.get(inc.id, [])
        records.append(rec)
    records.sort(key=lambda r: (r["opened_at"], r["id"]))
    result.incidents = records
    if incidents_out is not None:
        for rec in records:
            incidents_out.write(orjson.dumps(rec) + b"\n")
    result.unused = dict(pipe.counters.unused)
    result.seconds = time.perf_counter() - started
    return result


def print_summary(result: ReplayResult, out: IO[str] = sys.stdout) -> None:
    span = ""
    if result.first_ts is not None and result.last_ts is not None:
        hours = (result.last_ts - result.first_ts) / 3600
        span = f" spanning {rfc3339(result.first_ts)} → {rfc3339(result.last_ts)} ({hours:.1f} h)"
    rate = result.events / result.seconds if result.seconds > 0 else 0.0
    print(
        f"replayed {result.events} events{span} in {result.seconds:.2f} s ({rate:,.0f} events/s)",
        file=out,
    )
    if result.rejected_total:
        print(f"rejected {result.rejected_total} line(s):", file=out)
        for r in result.rejected:
            print(f"  line {r.index}: {r.error}", file=out)
        if result.rejected_total > len(result.rejected):
            print(f"  … and {result.rejected_total - len(result.rejected)} more", file=out)
    if result.unused:
        parts = ", ".join(f"{n} {reason}" for reason, n in sorted(result.unused.items()))
        print(f"not used: {parts}", file=out)
    fired = ", ".join(f"{m} ×{n}" for m, n in result.firing_by_metric.most_common(8))
    print(f"signals: {result.signals} transitions" + (f" (firing: {fired})" if fired else ""),
          file=out)  # fmt: skip
    by_sev = Counter(r["severity"] for r in result.incidents)
    paged = sum(1 for r in result.incidents if r.get("paged"))
    print(
        f"incidents: {len(result.incidents)} "
        f"({', '.join(f'{n} {s}' for s, n in sorted(by_sev.items())) or 'none'}); "
        f"{paged} would page",
        file=out,
    )
    for rec in result.incidents[:20]:
        print(f"  [{rec['severity']}/{rec['domain']}] {rec['opened_at']} {rec['summary']}",
              file=out)  # fmt: skip
