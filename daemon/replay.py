"""`llm-oncall replay`: the live pipeline in simulated time, driven by event timestamps.

It is the same `Pipeline` the daemon runs; only the clock differs (the newest event time
instead of the wall clock), so a file replays to the same signals and incidents every time,
with no sleeps. Bad lines are reported with their line number and skipped: what was accepted
before them is kept.

Replay follows the live daemon's time rules. Live, an event more than `ingest.lateness_s`
behind the clock is counted as `late`, and one more than that ahead of it as `future`. Replay's
clock is the newest event time, so one bad timestamp (a 2099 line among 2026 events) would
drag it forward and make every later event late; `ClockGuard` holds an event that would move
the clock that far until the events after it say whether the stream really continues there.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from config.settings import Settings
from correlator.records import rfc3339
from daemon.ingest.events import Event, Rejected, iter_lines, open_input
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

# Events after a jump that must land at (or past) it before replay believes the jump: one
# more would let a pair of bad lines through, fewer would let a lone one. A real gap between
# bursts is followed by a whole burst, so it is confirmed at once.
CONFIRM_EVENTS = 2


class ClockGuard:
    """Decides which events may move replay's clock far ahead, in file order.

    An event more than `tolerance_s` (the live daemon's future tolerance, `ingest.lateness_s`)
    ahead of the newest time let through so far, or the very first event, is a jump. It is
    held, and the events after it decide:

    - `CONFIRM_EVENTS` more events no earlier than the jump minus the tolerance confirm it:
      the stream really continues there (a gap of hours or days between bursts, a series
      sampled hourly, or simply the start of the file). The jump goes on and the events held
      after it are judged in turn (one of them may be a jump of its own), so an in-order file
      replays exactly as if nothing had been held.
    - An event earlier than that first contradicts it: the jump is set aside as `future` (as
      the live daemon counts an event ahead of its clock) and the events held after it are
      judged again, in order.
    - At the end of the input nothing can confirm a jump any more. One no longer than the
      longest jump the file has already confirmed is in character and goes on (the last hour
      of an hourly series); a longer one is set aside (a 2099 last line must not resolve
      every incident in 2099). When nothing went on yet, everything held does: the input was
      too short to judge.

    Held events are at most `CONFIRM_EVENTS + 1`, so memory does not grow with the input. The
    price, counted as `future` and shown in the summary: a straggler from before a real gap
    that arrives among the gap's first events sets the first of them aside (live, the
    straggler would have been the late one), and so does a file that ends with fewer than
    `CONFIRM_EVENTS + 1` events after a gap longer than any before it.
    """

    def __init__(self, tolerance_s: float, set_aside: Callable[[Event], None]) -> None:
        self.tolerance_s = tolerance_s
        self.set_aside = set_aside
        self.clock: float | None = None  # the newest time let through
        self.held: list[Event] = []  # the jump first, then the events that agree with it
        self.longest_jump = 0.0  # the longest confirmed jump, in seconds

    def feed(self, events: Iterable[Event]) -> list[Event]:
        """The events that may go to the pipeline now, in order."""
        ready: list[Event] = []
        tolerance = self.tolerance_s
        for ev in events:
            clock = self.clock
            if not self.held and clock is not None and ev.ts <= clock + tolerance:
                # The common case, kept cheap: an event near the clock (or behind it: the
                # pipeline judges lateness).
                ready.append(ev)
                if ev.ts > clock:
                    self.clock = ev.ts
            else:
                self._judge([ev], ready)
        return ready

    def finish(self) -> list[Event]:
        """The end of the input: what is still held was never confirmed."""
        ready: list[Event] = []
        if self.clock is None:
            for ev in self.held:
                self._let_through(ev, ready)
            self.held = []
        while self.held:
            jump, *rest = self.held
            self.held = []
            if self.clock is not None and jump.ts - self.clock <= self.longest_jump:
                self._let_through(jump, ready)
            else:
                self.set_aside(jump)
            self._judge(rest, ready)
        return ready

    def _judge(self, pending: list[Event], ready: list[Event]) -> None:
        while pending:
            ev = pending.pop(0)
            if not self.held:
                if self.clock is None or ev.ts > self.clock + self.tolerance_s:
                    self.held.append(ev)
                else:
                    self._let_through(ev, ready)
                continue
            jump = self.held[0]
            if ev.ts < jump.ts - self.tolerance_s:
                # Contradicted: the stream goes on from before the jump.
                self.set_aside(jump)
                pending[:0] = [*self.held[1:], ev]
                self.held = []
                continue
            self.held.append(ev)
            if len(self.held) > CONFIRM_EVENTS:
                # Confirmed: the jump goes on; the events after it are judged in turn.
                if self.clock is not None:
                    self.longest_jump = max(self.longest_jump, jump.ts - self.clock)
                self._let_through(jump, ready)
                pending[:0] = self.held[1:]
                self.held = []

    def _let_through(self, ev: Event, ready: list[Event]) -> None:
        ready.append(ev)
        if self.clock is None or ev.ts > self.clock:
            self.clock = ev.ts


def replay(
    path: str,
    settings: Settings,
    signals_out: IO[bytes] | None = None,
    incidents_out: IO[bytes] | None = None,
    would_page: Any = None,
) -> ReplayResult:
    """Replay the events at `path` (`-`: standard input) through a fresh pipeline.

    The clock is the newest event time, judged as the live daemon judges time: events more
    than `ingest.lateness_s` behind it are counted `late`; an event more than that ahead of it
    moves it only when the events after it continue there (`ClockGuard`), else it is counted
    `future`. Both show in `unused` and in the summary; neither is used.
    """
    started = time.perf_counter()
    pipe = Pipeline(settings)
    guard = ClockGuard(settings.ingest.lateness_s, pipe.count_future)
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
        result.events += len(events)
        ready = guard.feed(events)
        if ready:
            if result.first_ts is None:
                result.first_ts = ready[0].ts
            emit(pipe.ingest(ready))
    ready = guard.finish()
    if ready:
        if result.first_ts is None:
            result.first_ts = ready[0].ts
        emit(pipe.ingest(ready))
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
