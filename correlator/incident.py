"""The correlator's output records: `Incident` (contract record) and `IncidentUpdate`.

Both are frozen snapshots: the correlator keeps its own mutable bookkeeping and hands out a
new `Incident` with every update, so nothing downstream can change the correlator's state and
a stored update keeps meaning what it meant when it was emitted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from correlator.records import rfc3339
from detectors.base import Direction, Layer

Severity = Literal["critical", "warning", "watch"]
Domain = Literal["provider", "prompt_model", "infra_retrieval", "unknown"]
Status = Literal["open", "resolved"]
Question = Literal["provider", "prompt_model", "infra_retrieval"]
Action = Literal["open", "update", "escalate", "resolve", "reopen", "renotify", "acknowledge"]
Notify = Literal["trigger", "resolve", "acknowledge"] | None
MuteReason = Literal["silence", "inhibited"]

SEVERITY_RANK: dict[str, int] = {"watch": 0, "warning": 1, "critical": 2}
DEDUP_KEY_MAX = 255


@dataclass(frozen=True, slots=True)
class MemberSignal:
    """One series (metric, series, detector) that fired inside an incident.

    `onset` is the first time it fired in this incident, `cleared` the time of its last clear
    (None while firing). While it fires, `value` and `n` follow its series (the current
    window value, as /metrics `layer_value` shows it, refreshed with the record) and `peak`
    is its most extreme value since it first fired (highest for a rise, lowest for a drop),
    `peak_n` the count behind it; once cleared, `value` is its last reading while firing.
    `baseline` and `score` come from its latest firing transition. `fires` is how often it
    fired (flapping shows here). `family` is the symptom family it counts in
    (`correlator.families`).
    `reported_onset`: the earlier start its source reported, when the onset was bounded
    (`Signal.reported_onset`).
    """

    metric: str
    layer: Layer
    detector: str
    series: str
    onset: float
    cleared: float | None
    value: float
    baseline: float | None
    score: float
    direction: Direction
    n: int | None = None
    peak: float | None = None
    fires: int = 1
    page_alone: bool = False
    family: str = ""
    reported_onset: float | None = None
    peak_n: int | None = None  # not in the record: evidence quotes it beside the peak

    @property
    def firing(self) -> bool:
        return self.cleared is None

    @property
    def shown(self) -> tuple[float, int | None]:
        """The figure a person reads first, and its count: the current value while the
        signal fires, its peak once it cleared (the value at the clear is the recovery's,
        and would make a resolved outage look like none)."""
        if self.firing or self.peak is None:
            return self.value, self.n
        return self.peak, self.peak_n

    def to_record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "metric": self.metric,
            "layer": self.layer,
            "detector": self.detector,
            "onset": rfc3339(self.onset),
            "cleared": rfc3339(self.cleared),
            "value": self.value,
            "baseline": self.baseline,
            "score": self.score,
            "direction": str(self.direction),
        }
        if self.series:
            rec["series"] = self.series
        if self.n is not None:
            rec["n"] = self.n
        if self.peak is not None:
            rec["peak"] = self.peak
        rec["fires"] = self.fires
        if self.family:
            rec["family"] = self.family
        if self.reported_onset is not None:
            rec["reported_onset"] = rfc3339(self.reported_onset)
        return rec


@dataclass(frozen=True, slots=True)
class TriageAnswer:
    question: Question
    answer: bool
    evidence: str

    def to_record(self) -> dict[str, Any]:
        return {"question": self.question, "answer": self.answer, "evidence": self.evidence}


@dataclass(frozen=True, slots=True)
class ChangeRef:
    """A change event attached to an incident."""

    ts: float
    kind: str
    description: str
    feature: str | None = None
    # The change event's labels (e.g. prompt_version=v8): how the summary finds the change
    # that introduced the suspect value. Internal; not part of the record.
    labels: tuple[tuple[str, str], ...] = ()

    def to_record(self) -> dict[str, Any]:
        return {"ts": rfc3339(self.ts), "kind": self.kind, "description": self.description}


Basis = Literal["anomalous", "post_onset", "new_value", "moved"]


@dataclass(frozen=True, slots=True)
class Attribution:
    """A label value that changed at the incident's estimated start (`started_at`).

    `basis` says which test singled it out (see `correlator.attribution`):

    - "new_value": the value (nearly) did not exist before the start and carries a
      significant share after it (a rollout: new prompt or model version).
      `anomalous_share` is its share of all traffic after the start, `baseline_share` before.
    - "moved": the anomalous rate (errors, refusals, malformed outputs, low scores) rose
      within this value significantly more than in the rest of the traffic (a fault in one
      segment or experiment arm). `anomalous_share` is its share of the anomalous traffic
      after the start, `baseline_share` its share of all traffic before.
    - "anomalous", "post_onset": the v1 bases, still read from older records.

    The numbers behind the test ride along (optional record fields): `share_after`, the
    value's share of traffic after the start; `bad_rate` and `baseline_bad_rate`, the
    anomalous rate within the value after and before; `rest_bad_rate`, the rate in the rest
    of the traffic after; `z` the test statistic; `n` the value's events after the start.
    A value whose own series fired (`segment=pro`, `correlator.attribution.split_suspects`)
    names the series' metric in `metric` (e.g. "refusal_rate"): its rates are that metric's
    bad side (refusals, failures) rather than the pooled anomalous flag.
    For a value whose output length moved (`metric: "output_length"`), `mean_after`,
    `mean_before` and `rest_mean_after` are mean output characters instead of rates, and
    `anomalous_share` is its share of all traffic after the start. A "new_value" found in
    the daemon's catalog of label values carries `first_seen` (RFC 3339), when the value
    first appeared; its shares are then after and before that moment.
    """

    label: str
    value: str
    anomalous_share: float
    baseline_share: float
    basis: Basis = "anomalous"
    share_after: float | None = None
    bad_rate: float | None = None
    baseline_bad_rate: float | None = None
    rest_bad_rate: float | None = None
    z: float | None = None
    n: int | None = None
    metric: str | None = None
    mean_after: float | None = None
    mean_before: float | None = None
    rest_mean_after: float | None = None
    first_seen: str | None = None

    def to_record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "label": self.label,
            "value": self.value,
            "anomalous_share": self.anomalous_share,
            "baseline_share": self.baseline_share,
            "basis": self.basis,
        }
        for name in _OPTIONAL:
            v = getattr(self, name)
            if v is not None:
                rec[name] = v
        return rec

    @classmethod
    def from_record(cls, d: dict[str, Any]) -> Attribution:
        def opt(name: str) -> float | None:
            v = d.get(name)
            return None if v is None else float(v)

        basis = d.get("basis", "anomalous")
        if basis not in ("anomalous", "post_onset", "new_value", "moved"):
            raise ValueError(f"attribution basis {basis!r}")
        n = d.get("n")
        return cls(
            str(d["label"]),
            str(d["value"]),
            float(d["anomalous_share"]),
            float(d["baseline_share"]),
            basis,
            opt("share_after"),
            opt("bad_rate"),
            opt("baseline_bad_rate"),
            opt("rest_bad_rate"),
            opt("z"),
            None if n is None else int(n),
            None if d.get("metric") is None else str(d["metric"]),
            opt("mean_after"),
            opt("mean_before"),
            opt("rest_mean_after"),
            None if d.get("first_seen") is None else str(d["first_seen"]),
        )


_OPTIONAL = (
    "share_after",
    "bad_rate",
    "baseline_bad_rate",
    "rest_bad_rate",
    "z",
    "n",
    "metric",
    "mean_after",
    "mean_before",
    "rest_mean_after",
    "first_seen",
)


@dataclass(frozen=True, slots=True)
class StartEstimate:
    """How `started_at` was estimated (record field `start_estimate`, an extension).

    `basis`: "changepoint" (the search in `correlator.changepoint` found a significant change
    in `metric` of the earliest member signal), "detection" (it did not, or there was no
    history: the start is that signal's onset), "cusum" (no significant change point, but
    the signal's detector is a CUSUM whose current excursion began earlier: its last reset,
    Page's estimate of the change time), or "rollout" (attribution's prime suspect is a label
    value first seen before the estimate: the start is its first appearance). For a change
    point, `shape` (step, ramp, pulse), the levels `before` / `after`, and the statistic
    against its threshold (all of `metric`'s series), and `corroborated_by`: the metrics of
    other member signals whose series placed the same start and sharpened it
    (`changepoint.shared_start`).
    """

    basis: Literal["changepoint", "detection", "rollout", "cusum"]
    metric: str
    shape: str | None = None
    before: float | None = None
    after: float | None = None
    stat: float | None = None
    threshold: float | None = None
    corroborated_by: tuple[str, ...] = ()

    def to_record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"basis": self.basis, "metric": self.metric}
        if self.shape is not None:
            rec["shape"] = self.shape
        for name in ("before", "after", "stat", "threshold"):
            v = getattr(self, name)
            if v is not None:
                rec[name] = round(v, 6)
        if self.corroborated_by:
            rec["corroborated_by"] = list(self.corroborated_by)
        return rec

    @classmethod
    def from_record(cls, d: dict[str, Any]) -> StartEstimate:
        basis = d.get("basis")
        if basis not in ("changepoint", "detection", "rollout", "cusum"):
            raise ValueError(f"start_estimate basis {basis!r}")

        def opt(name: str) -> float | None:
            v = d.get(name)
            return None if v is None else float(v)

        shape = d.get("shape")
        return cls(
            basis,
            str(d["metric"]),
            None if shape is None else str(shape),
            opt("before"),
            opt("after"),
            opt("stat"),
            opt("threshold"),
            tuple(str(m) for m in d.get("corroborated_by") or ()),
        )


@dataclass(frozen=True, slots=True)
class Mute:
    reason: MuteReason
    by: str

    def to_record(self) -> dict[str, Any]:
        return {"reason": self.reason, "by": self.by}

    @classmethod
    def parse(cls, text: str) -> Mute:
        """ "silence:<id>" / "inhibited:<incident id>" (a Muter's answer) → Mute."""
        kind, _, by = text.partition(":")
        if kind == "silence":
            return cls("silence", by)
        if kind in ("inhibited", "inhibit"):
            return cls("inhibited", by)
        # A custom muter (e.g. a maintenance window) reports through the silence kind.
        return cls("silence", text)


@dataclass(frozen=True, slots=True)
class HumanAction:
    """Someone acknowledged, resolved or reopened an incident by hand: who, when, why."""

    by: str
    at: float
    comment: str = ""

    def to_record(self) -> dict[str, Any]:
        return {"by": self.by, "at": rfc3339(self.at), "comment": self.comment}

    def to_state(self) -> dict[str, Any]:
        return {"by": self.by, "at": self.at, "comment": self.comment}

    @classmethod
    def from_state(cls, d: dict[str, Any] | None) -> HumanAction | None:
        if d is None:
            return None
        return cls(str(d["by"]), float(d["at"]), str(d.get("comment") or ""))


@dataclass(frozen=True, slots=True)
class StillFiring:
    """Members still firing when a person resolved the incident, and when it reopens (and
    pages) if they are still firing then (`CorrelationPolicy.resolve_grace`).

    A resolve is what the person believes; the detectors say what the data shows. Both are
    in the record so the answer to the resolve can say "these still fire", and a later
    reader sees why a resolved incident has members without a `cleared` time.
    """

    signals: tuple[str, ...]
    reopens_at: float

    def to_record(self) -> dict[str, Any]:
        return {"signals": list(self.signals), "reopens_at": rfc3339(self.reopens_at)}


@dataclass(frozen=True, slots=True)
class Incident:
    """An incident snapshot. `to_record()` is the DESIGN.md contract record.

    Times are Unix seconds here and RFC 3339 in the record.
    """

    id: str
    dedup_key: str
    feature: str
    status: Status
    severity: Severity
    paged: bool
    domain: Domain
    opened_at: float
    resolved_at: float | None
    signals: tuple[MemberSignal, ...]
    triage: tuple[TriageAnswer, ...]
    changes: tuple[ChangeRef, ...]
    attribution: tuple[Attribution, ...]
    summary: str
    muted: Mute | None = None
    reopens: int = 0
    started_at: float | None = None
    start_estimate: StartEstimate | None = None
    later_changes: tuple[ChangeRef, ...] = ()
    flapping: bool = False
    acknowledged: HumanAction | None = None
    resolved_by: HumanAction | None = None
    still_firing: StillFiring | None = None
    reopen_reason: str | None = None

    @property
    def layers(self) -> frozenset[str]:
        return frozenset(s.layer for s in self.signals)

    @property
    def metrics(self) -> frozenset[str]:
        return frozenset(s.metric for s in self.signals)

    def to_record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "dedup_key": self.dedup_key,
            "feature": self.feature,
            "status": self.status,
            "severity": self.severity,
            "paged": self.paged,
            "domain": self.domain,
            "opened_at": rfc3339(self.opened_at),
            "resolved_at": rfc3339(self.resolved_at),
            "started_at": rfc3339(
                self.started_at if self.started_at is not None else self.opened_at
            ),
            "start_estimate": None
            if self.start_estimate is None
            else self.start_estimate.to_record(),
            "signals": [s.to_record() for s in self.signals],
            "triage": [t.to_record() for t in self.triage],
            "changes": [c.to_record() for c in self.changes],
            "attribution": [a.to_record() for a in self.attribution],
            "summary": self.summary,
            "muted": None if self.muted is None else self.muted.to_record(),
            "reopens": self.reopens,
            "later_changes": [c.to_record() for c in self.later_changes],
            "flapping": self.flapping,
            # Extensions (issue 13): who acknowledged it, and who resolved it by hand.
            "acknowledged": None if self.acknowledged is None else self.acknowledged.to_record(),
            "resolved_by": None if self.resolved_by is None else self.resolved_by.to_record(),
            # Extensions: a manual resolve while members still fire (`StillFiring`), and why
            # the incident last reopened by itself after a manual resolve.
            "still_firing": None if self.still_firing is None else self.still_firing.to_record(),
            "reopen_reason": self.reopen_reason,
        }


@dataclass(frozen=True, slots=True)
class IncidentUpdate:
    """One change to one incident and what the pager layer must do about it.

    `notify`: "trigger" — send (or re-send) the page under `incident.dedup_key`; "resolve" —
    close it at the receiver; "acknowledge" — tell the receivers someone is on it; None —
    record only. `ts` is the time the decision was made (the
    signal's or the tick's time).
    """

    incident: Incident
    action: Action
    notify: Notify
    ts: float


def incident_id(feature: str, onset: float, seq: int) -> str:
    """Deterministic id: the same input stream gives the same ids in replay."""
    digest = hashlib.sha256(f"{feature}\x00{onset!r}\x00{seq}".encode()).hexdigest()
    return "inc-" + digest[:16]


def dedup_key(feature: str, onset: float, inc_id: str) -> str:
    """ "llm-oncall/<feature>/<opened_at epoch>/<hash>", at most 255 characters."""
    head = "llm-oncall/"
    tail = f"/{int(onset)}/{inc_id.removeprefix('inc-')[:12]}"
    room = DEDUP_KEY_MAX - len(head) - len(tail)
    return head + feature[:room] + tail
