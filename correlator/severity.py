"""Severity of an incident from the signals that fire together.

Rule (DESIGN.md "Correlation, triage, lifecycle"):

- **critical** when the signals firing together come from at least `min_signals` distinct
  *symptom families*, or any of them has `page_alone` (availability collapse, auth failures).
- **warning** for a lone quality signal (a sustained quality drop: the quality detectors only
  fire on sustained trends with enough samples), and for a lone api error signal
  (rate_limited_rate, provider_error_rate, auth_failure_rate, availability, or the infra
  error_rate): callers are getting errors, which users see, and the rate detectors behind them
  only fire on a statistically significant excess over enough calls.
- **watch** for anything else alone: a latency, throughput, token or cost move, a retry_rate
  rise (retries that succeed are invisible to users), and a lone behavioral move (refusals,
  format, length): those vary with the traffic mix and are worth a page only when something
  else agrees.

Families (`correlator.families`): metrics that move together because they measure one
quantity count once. latency_p50/p95/p99 all jump in one latency spike; output tokens, output
length mean and cv rise together when answers get longer; the error metrics all rise with one
429 surge; the scores of a feature all fall when its answers get worse. Counting metric names
would page on "a latency spike alone" (p95 + p99) or on "answers got longer" (tokens + length),
which the design forbids. Cost per request is derived from input and output size, so it is
never the family that makes a page (`counted_families`).

"Together" means within `window_s`: a signal counts with another when it fired while the other
was firing, or the other cleared less than `window_s` before.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from correlator.families import DERIVED_FAMILIES, counted_families
from correlator.incident import SEVERITY_RANK, Severity

API_ERROR_METRICS = frozenset(
    {"rate_limited_rate", "provider_error_rate", "auth_failure_rate", "availability", "error_rate"}
)


@dataclass(frozen=True, slots=True)
class SeverityInput:
    metric: str
    layer: str
    onset: float
    cleared: float | None
    page_alone: bool
    family: str


def lone_severity(metric: str, layer: str) -> Severity:
    """Severity of a signal that fires alone (see the module doc)."""
    if layer == "quality":
        return "warning"
    if metric in API_ERROR_METRICS:
        return "warning"
    return "watch"


def max_severity(a: Severity, b: Severity) -> Severity:
    return a if SEVERITY_RANK[a] >= SEVERITY_RANK[b] else b


def assess(
    members: Iterable[SeverityInput], at: float, window_s: float, min_signals: int
) -> Severity:
    """Severity of the signals firing together at time `at` (a firing transition's time)."""
    together = [
        m for m in members if m.onset <= at and (m.cleared is None or m.cleared >= at - window_s)
    ]
    if not together:
        return "watch"
    if any(m.page_alone for m in together):
        return "critical"
    if len(counted_families(m.family for m in together)) >= min_signals:
        return "critical"
    sev: Severity = "watch"
    for m in together:
        sev = max_severity(sev, lone_severity(m.metric, m.layer))
    return sev


def assess_any(
    members: Sequence[SeverityInput], times: Iterable[float], window_s: float, min_signals: int
) -> Severity:
    """The highest severity `assess` gives at any of `times`, in O((members + times) log).

    A webhook of 2,000 alerts joins one incident at up to 2,000 distinct times; calling
    `assess` at each over all members cost 4 million member checks, the larger part of a
    multi-second stall of the event loop. Each member counts together at a contiguous run of
    the sorted times (from its onset until `window_s` after its clear), so one sweep over the
    times, adding and removing members, gives every answer. The membership tests are the same
    float comparisons `assess` makes, so the answer is exactly the maximum of its answers
    (tests/correlator/test_corr_batch.py checks that against `assess` itself)."""
    at = sorted(set(times))
    if not at:
        return "watch"
    lows = [t - window_s for t in at]  # `cleared >= t - window_s`, as `assess` writes it
    enter: list[list[SeverityInput]] = [[] for _ in at]
    leave: list[list[SeverityInput]] = [[] for _ in at]
    for m in members:
        first = bisect.bisect_left(at, m.onset)  # the first time with onset <= t
        end = len(at) if m.cleared is None else bisect.bisect_right(lows, m.cleared)
        if first < end:
            enter[first].append(m)
            if end < len(at):
                leave[end].append(m)
    families: dict[str, int] = {}
    independent = derived = together = page_alone = warning = 0
    best: Severity = "watch"

    def count(m: SeverityInput, step: int) -> None:
        nonlocal independent, derived, together, page_alone, warning
        together += step
        page_alone += step * m.page_alone
        warning += step * (SEVERITY_RANK[lone_severity(m.metric, m.layer)] >= 1)
        n = families.get(m.family, 0)
        families[m.family] = n + step
        if (n == 0) != (n + step == 0):  # the family appeared or went away
            if m.family in DERIVED_FAMILIES:
                derived += step
            else:
                independent += step

    for i in range(len(at)):
        for m in leave[i]:
            count(m, -1)
        for m in enter[i]:
            count(m, +1)
        if not together:
            continue
        if page_alone or (independent or derived) >= min_signals:
            return "critical"
        if warning:
            best = "warning"
    return best
