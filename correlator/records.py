"""Records the correlator consumes: signal transitions, change events and the context the
pipeline hands over for triage evidence and attribution.

They are frozen and JSON-able so the same objects flow live and in replay, and so the
contract records (`to_record`) are produced in exactly one place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from detectors.base import Direction, Layer


def rfc3339(ts: float | None) -> str | None:
    """Unix seconds → RFC 3339 in UTC with millisecond precision (the contract's time form)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Signal:
    """A detector transition, enriched with where it came from (contract signal record).

    `family` is the symptom family the pipeline resolved for the metric from the config
    (`correlator.families`); "" leaves it to the built-in table. `reported_onset`: when the
    source said a firing series started earlier than `ts` allows (an Alertmanager alert's
    `startsAt` before the correlation window, `daemon.ingest.alertmanager`), that time,
    kept as evidence; `ts` is what the correlator goes by.
    """

    ts: float
    feature: str
    metric: str
    layer: Layer
    detector: str
    state: Literal["firing", "cleared"]
    value: float
    baseline: float | None
    score: float
    direction: Direction
    series: str = ""
    n: int | None = None
    page_alone: bool = False
    family: str = ""
    reported_onset: float | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        """Identity of the series that fired: (feature, metric, series)."""
        return (self.feature, self.metric, self.series)

    def to_record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "ts": rfc3339(self.ts),
            "feature": self.feature,
            "metric": self.metric,
            "layer": self.layer,
            "detector": self.detector,
            "state": self.state,
            "value": self.value,
            "baseline": self.baseline,
            "score": self.score,
            "direction": str(self.direction),
        }
        if self.series:
            rec["series"] = self.series
        if self.n is not None:
            rec["n"] = self.n
        if self.family:
            rec["family"] = self.family
        if self.reported_onset is not None:
            rec["reported_onset"] = rfc3339(self.reported_onset)
        return rec


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    """A `change` event: prompt, model, deploy, flag, index, provider, config or other."""

    ts: float
    kind: str
    feature: str | None  # None: applies to every feature
    description: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[float, str, str, str]:
        """Identity and order: a change sent twice (a retried deploy hook) is kept once.
        Labels are not part of it: the same change re-sent with more labels is the same."""
        return (self.ts, self.kind, self.feature or "", self.description)

    def to_state(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "kind": self.kind,
            "feature": self.feature,
            "description": self.description,
            "labels": dict(self.labels),
        }

    @classmethod
    def from_state(cls, d: Mapping[str, Any]) -> ChangeRecord:
        feature = d.get("feature")
        return cls(
            float(d["ts"]),
            str(d["kind"]),
            None if feature is None else str(feature),
            str(d.get("description", "")),
            {str(k): str(v) for k, v in (d.get("labels") or {}).items()},
        )


@dataclass(frozen=True, slots=True)
class MetricSnapshot:
    """The current window value of one metric of one feature, for triage evidence."""

    metric: str
    layer: Layer
    value: float
    baseline: float | None
    n: int | None


class Reading(Protocol):
    """A series' current window value and the count behind it (the pipeline's latest
    `detectors.base.Sample` is one, so the daemon hands its own map over without a copy)."""

    @property
    def value(self) -> float: ...

    @property
    def n(self) -> int | None: ...


Readings = Mapping[tuple[str, str, str], Reading]
"""(feature, metric, series) → the series' current reading, as /metrics `layer_value` shows
it: what a firing member's `value` follows (`Correlator.tick`). A member whose series has no
reading (an Alertmanager alert) keeps the value of its firing transition."""

LabelCounts = Mapping[str, Mapping[str, int]]
"""label name → label value → count (values beyond a per-label cap are folded into `__other__`)."""

LabelSums = Mapping[str, Mapping[str, tuple[int, float, int]]]
"""label name → value → (sum, sum of squares, n) of the output characters of its calls."""


@dataclass(frozen=True, slots=True)
class Rollout:
    """A label value the feature showed for the first time shortly before an incident.

    `events_before`: events of the feature in the hour before `first_seen` (the value had
    none: it did not exist); `events_after` / `count_after`: all events and this value's
    events from `first_seen` to now. The catalog behind it remembers values for the life of
    the daemon, so a version that comes back after a rollback is old, not new. `quiet_from`:
    when the feature's last call before `first_seen` was (at bucket resolution; None when
    unknown): the switch to the value happened between the two.
    """

    label: str
    value: str
    first_seen: float
    events_before: int
    count_after: int
    events_after: int
    quiet_from: float | None = None


HistoryFn = Callable[[str, str, float, float], Sequence[tuple[float, float, float]]]
"""(metric, series, start, end) → the metric per bin over [start, end): (bin start, value, n).
The pipeline's read of its retained buckets, for the change-point search; empty when the
metric has no history (an external metric, a series split the buckets do not keep)."""


@dataclass(frozen=True, slots=True)
class FeatureContext:
    """What the pipeline knows about a feature around an incident, handed to the correlator.

    The span is split at `start` (the incident's estimated start, `started_at`): `bad_labels`
    count the label values of anomalous calls (failed, refused or malformed) from `start` on;
    `all_labels` count all calls over the same span; `score_labels` and `low_score_labels`
    the scores and those below their running mean (apart from calls: a value with more scores
    per call would otherwise look worse whenever the error rate moved); the `baseline_*`
    counts are the same over the hour before `start`; `lengths` and `baseline_lengths` hold
    the output length per label value over the same two spans; `rollouts` the values that
    first appeared within the change lookback before `start`. `history` reads a metric's
    recent bins (see `HistoryFn`); None when the caller keeps none. `split_labels` are the
    labels whose values have series of their own (`segment=pro`, docs/detectors.md
    "Per-segment tests"); `history` reads those series too.
    """

    feature: str
    metrics: Mapping[str, MetricSnapshot]
    bad_labels: LabelCounts
    all_labels: LabelCounts
    baseline_labels: LabelCounts
    baseline_bad_labels: LabelCounts = field(default_factory=dict)
    lengths: LabelSums = field(default_factory=dict)
    baseline_lengths: LabelSums = field(default_factory=dict)
    score_labels: LabelCounts = field(default_factory=dict)
    low_score_labels: LabelCounts = field(default_factory=dict)
    baseline_score_labels: LabelCounts = field(default_factory=dict)
    baseline_low_score_labels: LabelCounts = field(default_factory=dict)
    history: HistoryFn | None = None
    start: float | None = None
    # Values first seen within the change lookback before `start` (None: the pipeline keeps
    # no catalog, and attribution falls back to comparing shares across `start`).
    rollouts: tuple[Rollout, ...] | None = None
    # metric → when its detector's current excursion began, from the detector's own
    # evidence (a CUSUM's last reset); the start estimate's fallback when the change-point
    # search finds nothing significant.
    excursions: Mapping[str, float] = field(default_factory=dict)
    split_labels: tuple[str, ...] = ()
    # Metrics whose history bins are shares of their n calls (an error rate, availability):
    # the change-point search reads them with a binomial likelihood.
    proportions: frozenset[str] = frozenset()
