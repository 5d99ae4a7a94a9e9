"""The correlator: signals → incidents, with triage, attribution, changes, mutes and the
notify decisions the pager layer carries out.

Pure: no I/O, no clock. Time comes from the signals (`sig.ts`) and from `tick(now, ...)`, so
the same stream gives the same incidents, ids and notifications live and in replay. See
docs/correlator.md for the policies and their rationale.

Lifecycle of an incident (all times are the caller's):

- **open** — a firing signal of a feature with no open incident opens one.
- **update / escalate** — signals that fire while it is open join it; severity only rises.
- **reopen** — a member series fires again after every member had cleared (the incident was
  in its cooldown), or within `reopen_s` after it resolved; the same incident continues.
- **resolve** — every member has been clear for the quiet period: `cooldown_s`, or for a
  flapping incident `flap_hold_s` doubling with each reopen-after-resolve. `resolved_at` is
  exactly the last clear + the quiet period, whatever the tick cadence.
- **resolved by hand** — the resolve is notified at once; members still firing stay firing,
  and if any still fires after `policy.resolve_grace` the incident reopens and pages, saying
  why (`Correlator.resolve`, `_recheck`).
- **renotify** — a paged incident still open, with a member still firing, re-sends its
  trigger every `renotify_s` (an incident only waiting out its quiet period is not re-sent).

Notify decisions (`IncidentUpdate.notify`):

- "trigger" when an open incident is pageable (severity warning/critical, not muted) and the
  receiver does not have it open (first page; again after a resolve was sent, at most once per
  `retrigger_min_s`, otherwise deferred to a later tick); when its severity rises above the
  severity last sent; and on re-notification.
- "resolve" when an incident the receiver has open resolves — also when it was muted after it
  was paged, so no receiver keeps an orphaned incident.
- None otherwise. `watch` and muted incidents never trigger.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Self, cast

from correlator.attribution import attribute, look_alpha, split_suspects
from correlator.changepoint import Bin, ChangePoint, StartPosterior, estimate, shared_start
from correlator.changes import ChangeDrop, ChangeStore
from correlator.families import CALL_FAMILIES, DERIVED_FAMILIES, default_family
from correlator.incident import (
    SEVERITY_RANK,
    Action,
    Attribution,
    ChangeRef,
    Domain,
    HumanAction,
    Incident,
    IncidentUpdate,
    MemberSignal,
    Mute,
    Notify,
    Severity,
    StartEstimate,
    Status,
    StillFiring,
    TriageAnswer,
    dedup_key,
    incident_id,
)
from correlator.mute import Muter
from correlator.policy import CorrelationPolicy
from correlator.records import (
    ChangeRecord,
    FeatureContext,
    LabelCounts,
    Readings,
    Rollout,
    Signal,
    rfc3339,
)
from correlator.severity import SeverityInput, assess_any, max_severity
from correlator.triage import PROMPT_MODEL_CHANGE_KINDS, summarize, triage
from detectors.base import LAYERS, Direction, Layer

__all__ = ["ContextFn", "Correlator", "CorrelatorStats"]

ContextFn = Callable[[str, float], FeatureContext]
MemberKey = tuple[str, str, str]  # (metric, series, detector)
STATE_VERSION = 1
SEVERITIES: tuple[Severity, ...] = ("critical", "warning", "watch")
DOMAINS: tuple[Domain, ...] = ("provider", "prompt_model", "infra_retrieval", "unknown")


@dataclass(slots=True)
class _Member:
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
    n: int | None
    peak: float
    peak_score: float
    fires: int = 1
    page_alone: bool = False
    family: str = ""
    reported_onset: float | None = None
    # The series' reading of the latest tick while the member fires and the most extreme
    # reading since the last refresh (`read`), published into value/n/peak when the record is
    # refreshed (`publish`): the numbers follow the outage, and the stored record changes
    # once per refresh interval, not on every tick. Not persisted: a restart loses at most
    # one refresh interval of readings.
    reading: tuple[float, int | None] | None = None
    extreme: tuple[float, int | None] | None = None
    peak_n: int | None = None  # the count behind `peak`

    @classmethod
    def from_signal(cls, sig: Signal) -> _Member:
        return cls(
            sig.metric,
            sig.layer,
            sig.detector,
            sig.series,
            sig.ts,
            None,
            sig.value,
            sig.baseline,
            sig.score,
            sig.direction,
            sig.n,
            sig.value,
            abs(sig.score),
            1,
            sig.page_alone,
            sig.family or default_family(sig.metric),
            sig.reported_onset,
            peak_n=sig.n,
        )

    def fire(self, sig: Signal) -> None:
        self.publish()  # readings before this transition still count towards the peak
        if self.cleared is not None:
            self.cleared = None
            self.fires += 1
        self.value, self.baseline, self.score = sig.value, sig.baseline, sig.score
        self.direction, self.n = sig.direction, sig.n
        self.page_alone = self.page_alone or sig.page_alone
        if sig.family:  # the config may have moved the metric since it first fired
            self.family = sig.family
        if self._beyond(sig.value, self.peak):
            self.peak, self.peak_n = sig.value, sig.n
        self.peak_score = max(self.peak_score, abs(sig.score))

    def _beyond(self, value: float, than: float) -> bool:
        """Whether `value` is more extreme than `than` in the direction the member fired: the
        peak of a rising error rate is its highest value, of a falling availability its
        lowest."""
        return value > than if self.direction == Direction.UP else value < than

    def read(self, value: float, n: int | None) -> None:
        """The series' current reading, while the member fires (`Correlator.tick`)."""
        if self.cleared is not None or not math.isfinite(value):
            return
        self.reading = (value, n)
        if self.extreme is None or self._beyond(value, self.extreme[0]):
            self.extreme = (value, n)

    def publish(self) -> None:
        """The readings since the last refresh into value, n and peak. `score` and `baseline`
        stay those of the firing transition: a detector states them only when it changes
        state (a static rule's baseline is its threshold, not the series' mean)."""
        if self.reading is not None:
            self.value, self.n = self.reading
        if self.extreme is not None and self._beyond(self.extreme[0], self.peak):
            self.peak, self.peak_n = self.extreme
        self.reading = self.extreme = None

    def snapshot(self) -> MemberSignal:
        return MemberSignal(
            self.metric,
            self.layer,
            self.detector,
            self.series,
            self.onset,
            self.cleared,
            self.value,
            self.baseline,
            self.score,
            self.direction,
            self.n,
            self.peak,
            self.fires,
            self.page_alone,
            self.family,
            self.reported_onset,
            self.peak_n,
        )

    def severity_input(self) -> SeverityInput:
        return SeverityInput(
            self.metric, self.layer, self.onset, self.cleared, self.page_alone, self.family
        )

    def to_state(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "layer": self.layer,
            "detector": self.detector,
            "series": self.series,
            "onset": self.onset,
            "cleared": self.cleared,
            "value": self.value,
            "baseline": self.baseline,
            "score": self.score,
            "direction": str(self.direction),
            "n": self.n,
            "peak": self.peak,
            "peak_score": self.peak_score,
            "fires": self.fires,
            "page_alone": self.page_alone,
            "family": self.family,
            "reported_onset": self.reported_onset,
            "peak_n": self.peak_n,
        }

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> _Member:
        layer = d["layer"]
        if layer not in LAYERS:
            raise ValueError(f"unknown layer {layer!r}")
        return cls(
            str(d["metric"]),
            cast(Layer, layer),
            str(d["detector"]),
            str(d["series"]),
            float(d["onset"]),
            None if d["cleared"] is None else float(d["cleared"]),
            float(d["value"]),
            None if d["baseline"] is None else float(d["baseline"]),
            float(d["score"]),
            Direction(d["direction"]),
            None if d["n"] is None else int(d["n"]),
            float(d["peak"]),
            float(d["peak_score"]),
            int(d["fires"]),
            bool(d["page_alone"]),
            # States saved before families were stored: the built-in table's answer.
            str(d.get("family") or default_family(str(d["metric"]))),
            None if d.get("reported_onset") is None else float(d["reported_onset"]),
            # States saved before peak_n: the peak's count is unknown.
            peak_n=None if d.get("peak_n") is None else int(d["peak_n"]),
        )


def _label(m: _Member) -> str:
    """How a person names a member: its metric, and its series when it is one."""
    return f"{m.metric}{{{m.series}}}" if m.series else m.metric


def _after_resolve(who: HumanAction, t: float) -> str:
    """ " 15 min after a manual resolve by alice": how long after whose resolve."""
    span = max(t - who.at, 0.0)
    text = f"{span:.0f} s" if span < 120 else f"{span / 60:.0f} min"
    return f" {text} after a manual resolve by {who.by}"


def _onset_order(m: _Member) -> tuple[float, str, str, str]:
    """Members by onset; ties by metric, series and detector, so every use sees one order."""
    return (m.onset, m.metric, m.series, m.detector)


@dataclass(slots=True)
class _Inc:
    """The correlator's mutable bookkeeping for one incident; `snapshot()` is what leaves."""

    id: str
    dedup_key: str
    feature: str
    seq: int
    opened_at: float
    status: Status = "open"
    severity: Severity = "watch"
    resolved_at: float | None = None
    members: dict[MemberKey, _Member] = field(default_factory=dict)
    domain: Domain = "unknown"
    triage: tuple[TriageAnswer, ...] = ()
    changes: tuple[ChangeRef, ...] = ()
    attribution: tuple[Attribution, ...] = ()
    summary: str = ""
    muted: Mute | None = None
    paged: bool = False
    receiver_open: bool = False
    last_trigger_at: float | None = None
    notified_severity: Severity | None = None
    reopens: int = 0
    flapping: bool = False
    # The fullest label counts of the hour before the start seen so far (`_held_baseline`).
    baseline_labels: dict[str, dict[str, int]] | None = None
    # The last non-empty answer of `split_suspects`, and the rollout named, if any (see
    # `_refresh`).
    split_held: tuple[Attribution, ...] = ()
    rollout_held: tuple[Attribution, ...] = ()
    # Estimated start (`Correlator._estimate_start`) and when it was last estimated.
    started_at: float | None = None
    start_estimate: StartEstimate | None = None
    start_checked_at: float | None = None
    later_changes: tuple[ChangeRef, ...] = ()
    # Start of the refresh bin of the last tick refresh (`CorrelationPolicy.refresh_s`; not
    # persisted: derived from tick times).
    refreshed_bin: float | None = None
    # Done by a person through the API or CLI (issue 13). An acknowledged incident gets no
    # reminders; `hold_until` keeps an incident reopened by hand open for a cooldown.
    acknowledged: HumanAction | None = None
    resolved_by: HumanAction | None = None
    hold_until: float | None = None
    # Resolved by hand while members still fire: they keep firing here (the detector has
    # not cleared them), and if any still fires at `recheck_at` the incident reopens and
    # pages, saying why (`reopen_reason`; `Correlator._recheck`).
    recheck_at: float | None = None
    reopen_reason: str | None = None
    # Kept, not recounted, since every signal asks them of each open incident of its
    # feature (`_maybe_resolve`, `_joinable`): a webhook of 2,000 alerts asked 2,000 times
    # of 2,000 members. Members change only through `add`, `fire` and `clear`, which keep
    # them; not persisted (`from_state` adds the members). `families`: None = to compute;
    # `cleared_max`: the last clear once none is firing, None = to compute.
    n_firing: int = 0
    families: set[str] | None = None
    cleared_max: float | None = None

    def add(self, key: MemberKey, member: _Member) -> None:
        self.members[key] = member
        self.n_firing += member.cleared is None
        if self.families is not None:
            self.families.add(member.family)
        self.cleared_max = None

    def fire(self, member: _Member, sig: Signal) -> None:
        family = member.family
        self.n_firing += member.cleared is not None
        member.fire(sig)
        if member.family != family:
            self.families = None
        self.cleared_max = None

    def clear(self, member: _Member, at: float) -> None:
        self.n_firing -= member.cleared is None
        member.cleared = at
        self.cleared_max = None

    def any_firing(self) -> bool:
        return self.n_firing > 0

    def last_clear(self) -> float | None:
        if not self.members or self.any_firing():
            return None
        if self.cleared_max is None:
            self.cleared_max = max(cast(float, m.cleared) for m in self.members.values())
        return self.cleared_max

    def family_set(self) -> set[str]:
        """The families of the members."""
        if self.families is None:
            self.families = {m.family for m in self.members.values()}
        return self.families

    def by_onset(self) -> list[_Member]:
        return sorted(self.members.values(), key=_onset_order)

    def member_snapshots(self) -> tuple[MemberSignal, ...]:
        return tuple(m.snapshot() for m in self.by_onset())

    def snapshot(self) -> Incident:
        return Incident(
            id=self.id,
            dedup_key=self.dedup_key,
            feature=self.feature,
            status=self.status,
            severity=self.severity,
            paged=self.paged,
            domain=self.domain,
            opened_at=self.opened_at,
            resolved_at=self.resolved_at,
            signals=self.member_snapshots(),
            triage=self.triage,
            changes=self.changes,
            attribution=self.attribution,
            summary=self.summary,
            muted=self.muted,
            reopens=self.reopens,
            started_at=self.started_at,
            start_estimate=self.start_estimate,
            later_changes=self.later_changes,
            flapping=self.flapping,
            acknowledged=self.acknowledged,
            resolved_by=self.resolved_by,
            still_firing=self.still_firing(),
            reopen_reason=self.reopen_reason,
        )

    def still_firing(self) -> StillFiring | None:
        if self.status != "resolved" or self.recheck_at is None:
            return None
        firing = tuple(_label(m) for m in self.by_onset() if m.cleared is None)
        return StillFiring(firing, self.recheck_at) if firing else None

    def to_state(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "dedup_key": self.dedup_key,
            "feature": self.feature,
            "seq": self.seq,
            "opened_at": self.opened_at,
            "status": self.status,
            "severity": self.severity,
            "resolved_at": self.resolved_at,
            "members": [m.to_state() for m in self.members.values()],
            "domain": self.domain,
            "triage": [t.to_record() for t in self.triage],
            "changes": [_change_state(c) for c in self.changes],
            "attribution": [a.to_record() for a in self.attribution],
            "summary": self.summary,
            "muted": None if self.muted is None else self.muted.to_record(),
            "paged": self.paged,
            "receiver_open": self.receiver_open,
            "last_trigger_at": self.last_trigger_at,
            "notified_severity": self.notified_severity,
            "reopens": self.reopens,
            "flapping": self.flapping,
            "baseline_labels": self.baseline_labels,
            "split_held": [a.to_record() for a in self.split_held],
            "rollout_held": [a.to_record() for a in self.rollout_held],
            "started_at": self.started_at,
            "start_estimate": None
            if self.start_estimate is None
            else self.start_estimate.to_record(),
            "start_checked_at": self.start_checked_at,
            "later_changes": [_change_state(c) for c in self.later_changes],
            "acknowledged": None if self.acknowledged is None else self.acknowledged.to_state(),
            "resolved_by": None if self.resolved_by is None else self.resolved_by.to_state(),
            "hold_until": self.hold_until,
            "recheck_at": self.recheck_at,
            "reopen_reason": self.reopen_reason,
        }

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> _Inc:
        inc = cls(
            str(d["id"]),
            str(d["dedup_key"]),
            str(d["feature"]),
            int(d["seq"]),
            float(d["opened_at"]),
        )
        if d["status"] not in ("open", "resolved"):
            raise ValueError(f"incident {inc.id}: bad status {d['status']!r}")
        if d["severity"] not in SEVERITY_RANK:
            raise ValueError(f"incident {inc.id}: bad severity {d['severity']!r}")
        if d["domain"] not in DOMAINS:
            raise ValueError(f"incident {inc.id}: bad domain {d['domain']!r}")
        inc.status = cast(Status, d["status"])
        inc.severity = cast(Severity, d["severity"])
        inc.resolved_at = None if d["resolved_at"] is None else float(d["resolved_at"])
        for md in d["members"]:
            m = _Member.from_state(md)
            inc.add((m.metric, m.series, m.detector), m)
        inc.domain = cast(Domain, d["domain"])
        inc.triage = tuple(
            TriageAnswer(t["question"], bool(t["answer"]), str(t["evidence"])) for t in d["triage"]
        )
        inc.changes = tuple(_change_from_state(c) for c in d["changes"])
        inc.later_changes = tuple(_change_from_state(c) for c in d.get("later_changes") or [])
        inc.attribution = tuple(Attribution.from_record(a) for a in d["attribution"])
        inc.summary = str(d["summary"])
        mu = d.get("muted")
        inc.muted = None if mu is None else Mute(mu["reason"], str(mu["by"]))
        inc.paged = bool(d["paged"])
        inc.receiver_open = bool(d["receiver_open"])
        inc.last_trigger_at = None if d["last_trigger_at"] is None else float(d["last_trigger_at"])
        ns = d.get("notified_severity")
        inc.notified_severity = None if ns is None else cast(Severity, ns)
        inc.reopens = int(d["reopens"])
        inc.flapping = bool(d["flapping"])
        bl = d.get("baseline_labels")  # absent in states saved before it existed
        inc.baseline_labels = None if bl is None else _copy_counts(bl)
        inc.split_held = tuple(Attribution.from_record(a) for a in d.get("split_held") or [])
        inc.rollout_held = tuple(Attribution.from_record(a) for a in d.get("rollout_held") or [])
        # Absent in states saved before the start estimate existed: estimated afresh.
        sa = d.get("started_at")
        inc.started_at = None if sa is None else float(sa)
        se = d.get("start_estimate")
        inc.start_estimate = None if se is None else StartEstimate.from_record(se)
        sc = d.get("start_checked_at")
        inc.start_checked_at = None if sc is None else float(sc)
        # Absent in states saved before issue 13: nobody acknowledged or resolved by hand.
        inc.acknowledged = HumanAction.from_state(d.get("acknowledged"))
        inc.resolved_by = HumanAction.from_state(d.get("resolved_by"))
        hu = d.get("hold_until")
        inc.hold_until = None if hu is None else float(hu)
        # Absent in states saved before a manual resolve kept firing members firing.
        rc = d.get("recheck_at")
        inc.recheck_at = None if rc is None else float(rc)
        rr = d.get("reopen_reason")
        inc.reopen_reason = None if rr is None else str(rr)
        return inc


@dataclass(frozen=True, slots=True)
class CorrelatorStats:
    """Gauges for /metrics. Every key is present (zeros included) so series never vanish."""

    open_by_severity_domain: dict[tuple[str, str], int]
    active_signals_by_layer: dict[str, int]
    muted_by_reason: dict[str, int]
    open_total: int
    resolved_kept: int
    changes_kept: int
    flapping_open: int = 0


MAX_FAILURES_KEPT = 1000


@dataclass(frozen=True, slots=True)
class EnrichmentFailure:
    """A start estimate or an attribution that raised. The incident is paged without it (a
    page with its detection time and no suspect beats no page); the caller counts and logs
    these (`Correlator.take_failures`), since the core does no I/O. Stage "correlate" is a
    signal of a batch, or the settling of an incident it touched, that raised
    (`Correlator.on_signals`): it alone is lost, as when the caller wrapped each signal."""

    stage: str  # "start_estimate", "attribution", or "correlate" (`Correlator.on_signals`)
    feature: str
    error: Exception
    metric: str = "*"


@dataclass(slots=True)
class _Touched:
    """An incident the signals of one batch touched, waiting for `Correlator._settle`:
    the action its one update will carry, its record before the batch (for an update), the
    time of the last signal that touched it, the times its members fired at, and whether it
    was refreshed since (its first look, when nothing touched it after: a webhook of one
    alert reads one context, as before)."""

    inc: _Inc
    action: Action
    before: dict[str, Any] | None
    ts: float
    fired_at: list[float] = field(default_factory=list)
    looked: bool = False


class Correlator:
    """Groups signals into incidents. Feed it `add_change`, `on_signal` and `tick`; persist it
    with `to_state` / `from_state`."""

    def __init__(self, policy: CorrelationPolicy | None = None, muters: Iterable[Muter] = ()):
        self.policy = policy if policy is not None else CorrelationPolicy()
        self._muters: list[Muter] = list(muters)
        self._incidents: dict[str, _Inc] = {}
        self._changes = ChangeStore()
        self._seq = 0
        self._now = -math.inf
        self._failures: list[EnrichmentFailure] = []

    # ---- wiring ------------------------------------------------------------------------

    def add_muter(self, muter: Muter) -> None:
        self._muters.append(muter)

    def set_muters(self, muters: Iterable[Muter]) -> None:
        self._muters = list(muters)

    # ---- inputs ------------------------------------------------------------------------

    def add_change(self, change: ChangeRecord, now: float | None = None) -> bool:
        """Remember a change event: deduplicated, bounded per feature (`correlator.changes`).
        True when it is new and kept, so the caller can persist it. `now` (default: the
        later of the correlator's time and the change's) tells which kept changes have left
        the change lookback, the first to go when the bounds bind.

        No incident is touched here: open incidents pick a change up at their next refresh
        (`tick`), which is also how a change that arrives late (a deploy record sent when
        the deploy finished) reaches the incident it may explain."""
        return bool(self.add_changes([change], now))

    def add_changes(
        self, changes: Sequence[ChangeRecord], now: float | None = None
    ) -> list[ChangeRecord]:
        """`add_change` for a batch (one request's changes), bounds applied once at the end;
        returns the changes that are new and kept."""
        if now is None:
            now = max(self._now, max((c.ts for c in changes), default=-math.inf))
        return self._changes.add(changes, now, self.policy)

    def on_signal(
        self,
        sig: Signal,
        ctx: FeatureContext | None = None,
        contexts: ContextFn | None = None,
    ) -> list[IncidentUpdate]:
        """A detector transition (firing or cleared) of `sig.feature` at `sig.ts`. `ctx` is the
        context as of the signal; with `contexts`, the correlator asks again for the span split
        at the incident's estimated start once it has one (see `_refresh`)."""
        out: list[IncidentUpdate] = []
        touched: dict[str, _Touched] = {}
        self._admit(sig, touched, out, contexts, first_look=False)
        for t in touched.values():  # one at most
            self._settle(t, ctx, contexts, out)
        return out

    def on_signals(self, signals: Iterable[Signal], contexts: ContextFn) -> list[IncidentUpdate]:
        """Transitions that arrived together (one Alertmanager webhook), in order.

        Each signal joins, clears, opens or reopens exactly as `on_signal` would decide, but
        each incident they touched is settled once, after all of them: severity, start
        estimate, attribution, triage, summary and the notify decision, as of the last signal
        that touched it (`_settle`). Settled per signal, a webhook of 2,000 alerts for one
        feature refreshed and copied a growing incident 2,000 times: quadratic, 3 s of
        blocked event loop at 500 alerts, 54 s at 2,000 (bench/bench_alertmanager_ab.py).
        The incident records that result are those of `on_signal` one by one, as the tests
        check, with one update per incident instead of one per signal; a warning page
        followed by a critical one within the same webhook becomes one page at the severity
        they make together, as `group_wait_s` would have sent it.

        A signal or an incident that raises costs only itself: the failure is kept for the
        caller to count (`take_failures`, stage "correlate") and the others go on, as they
        did when the caller wrapped each `on_signal`."""
        out: list[IncidentUpdate] = []
        touched: dict[str, _Touched] = {}
        for sig in signals:
            try:
                self._admit(sig, touched, out, contexts, first_look=True)
            except Exception as exc:  # the caller counts and logs it; the others go on
                self._failed(EnrichmentFailure("correlate", sig.feature, exc, sig.metric))
        for t in touched.values():
            try:
                ctx = None if t.looked else contexts(t.inc.feature, t.ts)
                self._settle(t, ctx, contexts, out)
            except Exception as exc:
                self._failed(EnrichmentFailure("correlate", t.inc.feature, exc))
        return out

    def _admit(
        self,
        sig: Signal,
        touched: dict[str, _Touched],
        out: list[IncidentUpdate],
        contexts: ContextFn | None,
        first_look: bool,
    ) -> None:
        """Decide where `sig` belongs and apply it to the members; the incident it touched is
        left in `touched` for `_settle`.

        With `first_look`, an incident it opens is refreshed at once, with this signal its
        only member, as `on_signal` refreshes it: that look places the start (from the
        signal that opened the incident: later signals of the same instant tie with it) and
        holds what attribution found, and later looks within a change-point bin keep both,
        so the batch's one settling gives the incident `on_signal` would have given."""
        now = sig.ts
        self._now = max(self._now, now)
        for inc in self._open_of(sig.feature):
            self._maybe_resolve(inc, now, out, touched, contexts)
        for inc in self._rechecks_of(sig.feature):
            # As a tick would have, whatever the tick cadence.
            self._recheck(inc, now, out, touched, contexts)
        mkey: MemberKey = (sig.metric, sig.series, sig.detector)

        if sig.state == "cleared":
            target = next(
                (
                    i
                    for i in reversed(self._open_of(sig.feature))
                    if mkey in i.members and i.members[mkey].cleared is None
                ),
                None,
            )
            if target is None:
                # Still firing when a person resolved its incident: now it has cleared.
                self._cleared_after_resolve(sig, mkey, now, touched)
                return  # or the series fired before we knew it (or was never ours)
            member = target.members[mkey]
            self._touch(target, "update", now, touched)
            target.clear(member, max(sig.ts, member.onset))
            return

        p = self.policy
        opens = self._open_of(sig.feature)
        holder = next((i for i in reversed(opens) if mkey in i.members), None)
        if holder is not None:
            in_cooldown = not holder.any_firing()
            action: Action = "reopen" if in_cooldown else "update"
            self._join(holder, sig, mkey, action, touched)
            return
        if any(
            i.members[mkey].cleared is None
            for i in self._rechecks_of(sig.feature)
            if mkey in i.members
        ):
            # Still firing since a manual resolve: a repeat (Alertmanager re-sends firing
            # alerts, and a webhook carries every alert of its group), not a new fire. The
            # grace decides (`_recheck`).
            return
        joinable = [i for i in opens if self._joinable(i, sig, now)]
        if joinable:
            # The incident telling this family's story, if one is open; else the newest.
            fam = sig.family or default_family(sig.metric)
            same = [i for i in joinable if fam in i.family_set()]
            target = (same or joinable)[-1]
            self._join(target, sig, mkey, "update", touched)
            return
        if not opens:
            # A series of a resolved incident that fires again within `reopen_s`; or any
            # signal of the feature while a manually resolved incident still has a member
            # firing: that fault is not over, and this is more of it.
            recent = [
                i
                for i in self._incidents.values()
                if i.feature == sig.feature
                and i.status == "resolved"
                and i.resolved_at is not None
                and (
                    (mkey in i.members and now - i.resolved_at <= p.reopen_s)
                    or (i.any_firing() and self._joinable(i, sig, now))
                )
            ]
            if recent:
                inc = max(recent, key=lambda i: (cast(float, i.resolved_at), i.seq))
                reason = None
                if inc.resolved_by is not None:
                    verb = "fired again" if mkey in inc.members else "fired"
                    reason = f"{_label(_Member.from_signal(sig))} {verb}"
                    reason += _after_resolve(inc.resolved_by, now)
                    still = [_label(m) for m in inc.by_onset() if m.cleared is None]
                    if still:
                        reason += f" ({', '.join(still)} still firing)"
                self._reopen_by_itself(inc, reason)
                self._join(inc, sig, mkey, "reopen", touched)
                return
        self._seq += 1
        iid = incident_id(sig.feature, sig.ts, self._seq)
        inc = _Inc(iid, dedup_key(sig.feature, sig.ts, iid), sig.feature, self._seq, sig.ts)
        self._incidents[iid] = inc
        self._join(inc, sig, mkey, "open", touched)
        if first_look and contexts is not None:
            self._refresh(inc, contexts(inc.feature, now), now, contexts)
            touched[iid].looked = True

    def tick(
        self, now: float, contexts: ContextFn, readings: Readings | None = None
    ) -> list[IncidentUpdate]:
        """Time passes: resolve quiet incidents, refresh triage/attribution/changes/mutes,
        send deferred triggers and re-notifications. `contexts(feature, onset)`.

        `readings` are the watched series' current values: a firing member's value and peak
        follow its series, or the page, the evidence and every reminder would quote the
        figure of the moment it fired (an outage that grows after detection was understated
        3-7x). They are read every tick (the peak misses no tick) and published with the
        record's refresh, once per refresh interval, and before a reminder."""
        self._now = max(self._now, now)
        out: list[IncidentUpdate] = []
        for inc in [i for i in self._incidents.values() if i.status == "open"]:
            self._maybe_resolve(inc, now, out)
        for inc in [i for i in self._incidents.values() if i.recheck_at is not None]:
            self._recheck(inc, now, out)
        p = self.policy
        for inc in [i for i in self._incidents.values() if i.status == "open"]:
            if readings is not None:
                _read(inc, readings)
            young = now - inc.opened_at < p.refresh_slow_after_s
            every = p.refresh_s if young else p.refresh_slow_s
            refresh_bin = math.floor(now / every) * every
            before: dict[str, Any] | None = None
            if inc.refreshed_bin != refresh_bin or self._reminder_due(inc, now):
                before = inc.snapshot().to_record()
                inc.refreshed_bin = refresh_bin
                start = inc.opened_at if inc.started_at is None else inc.started_at
                self._refresh(inc, contexts(inc.feature, start), now, contexts)
            # Without a refresh only `_emit` itself (a mute, a notification) can change the
            # record: `same_unless_emitted` spares the two snapshots per tick per incident.
            self._emit(inc, "update", now, out, before, renotify=True, same_unless_emitted=True)
        self._prune()
        return out

    # ---- people ------------------------------------------------------------------------

    def acknowledge(self, incident_id: str, who: HumanAction) -> list[IncidentUpdate]:
        """Someone is on it: receivers that got the page hear so, and reminders stop (an
        escalation still updates the page). Acknowledging an acknowledged incident is refused
        (ValueError, naming who): a second ack would notify every receiver again and erase
        who took it."""
        inc = self._open_incident(incident_id)
        if inc.acknowledged is not None:
            raise ValueError(
                f"incident {incident_id} is already acknowledged by {inc.acknowledged.by}"
                f" at {rfc3339(inc.acknowledged.at)}"
            )
        inc.acknowledged = who
        self._now = max(self._now, who.at)
        notify: Notify = "acknowledge" if inc.receiver_open else None
        return [IncidentUpdate(inc.snapshot(), "acknowledge", notify, who.at)]

    def resolve(self, incident_id: str, who: HumanAction) -> list[IncidentUpdate]:
        """Resolved by hand: the receivers get the resolve now (the person's call).

        Members whose detector still fires are not marked cleared: nothing cleared them,
        and the record says so (`still_firing`, and no `cleared` time). They get a grace
        (`CorrelationPolicy.resolve_grace`) for the fix to show in the data; one that clears
        meanwhile gets its true clear time, and if any still fires when the grace ends the
        incident reopens and pages (`_recheck`). A detector that keeps firing emits no new
        transition, so without this check the incident stayed resolved and silent while the
        fault went on. A member that fires again after clearing reopens it at once."""
        inc = self._open_incident(incident_id)
        self._now = max(self._now, who.at)
        inc.status, inc.resolved_at = "resolved", who.at
        inc.resolved_by, inc.hold_until = who, None
        inc.recheck_at = who.at + self.policy.resolve_grace if inc.any_firing() else None
        out: list[IncidentUpdate] = []
        self._emit(inc, "resolve", who.at, out)
        return out

    def reopen(self, incident_id: str, who: HumanAction) -> list[IncidentUpdate]:
        """Reopened by hand ("not fixed"): pages again and stays open at least one cooldown,
        then resolves as usual once its members are quiet."""
        inc = self._incidents.get(incident_id)
        if inc is None:
            raise KeyError(incident_id)
        if inc.status != "resolved":
            raise ValueError(f"incident {incident_id} is not resolved")
        self._now = max(self._now, who.at)
        inc.status, inc.resolved_at = "open", None
        inc.reopens += 1
        inc.resolved_by = inc.acknowledged = None
        inc.recheck_at = inc.reopen_reason = None
        inc.hold_until = who.at + self.policy.cooldown_s
        inc.last_trigger_at = None  # a person asked: no re-trigger spacing applies
        # Re-inserted last: open incidents iterate in the order they (re)opened.
        self._incidents.pop(inc.id)
        self._incidents[inc.id] = inc
        out: list[IncidentUpdate] = []
        self._emit(inc, "reopen", who.at, out)
        return out

    def _open_incident(self, incident_id: str) -> _Inc:
        inc = self._incidents.get(incident_id)
        if inc is None:
            raise KeyError(incident_id)
        if inc.status != "open":
            raise ValueError(f"incident {incident_id} is already resolved")
        return inc

    # ---- queries -----------------------------------------------------------------------

    def incidents(self) -> list[Incident]:
        """Every incident kept (open and recently resolved), oldest first."""
        return [
            i.snapshot()
            for i in sorted(self._incidents.values(), key=lambda i: (i.opened_at, i.seq))
        ]

    def open_incidents(self) -> list[Incident]:
        return [
            i.snapshot()
            for i in sorted(self._incidents.values(), key=lambda i: (i.opened_at, i.seq))
            if i.status == "open"
        ]

    def _failed(self, failure: EnrichmentFailure) -> None:
        self._failures.append(failure)
        del self._failures[:-MAX_FAILURES_KEPT]  # bounded when nobody takes them

    def take_failures(self) -> list[EnrichmentFailure]:
        """The enrichment failures since the last call (and forget them)."""
        out, self._failures = self._failures, []
        return out

    def get(self, incident_id: str) -> Incident | None:
        inc = self._incidents.get(incident_id)
        return None if inc is None else inc.snapshot()

    def changes(self) -> list[ChangeRecord]:
        return self._changes.all()

    def take_change_drops(self) -> dict[ChangeDrop, int]:
        """The changes the store's bounds dropped since the last call, counted by list, bound
        and age (and forgotten); the shell exports and logs them."""
        return self._changes.take_drops()

    def stats(self) -> CorrelatorStats:
        by_sd: dict[tuple[str, str], int] = {(s, d): 0 for s in SEVERITIES for d in DOMAINS}
        layers: dict[str, int] = {lay: 0 for lay in LAYERS}
        muted: dict[str, int] = {"silence": 0, "inhibited": 0}
        open_total = resolved = flapping = 0
        for inc in self._incidents.values():
            if inc.status != "open":
                resolved += 1
                continue
            open_total += 1
            flapping += inc.flapping
            by_sd[(inc.severity, inc.domain)] += 1
            for m in inc.members.values():
                if m.cleared is None:
                    layers[m.layer] += 1
            if inc.muted is not None:
                muted[inc.muted.reason] += 1
        return CorrelatorStats(
            by_sd, layers, muted, open_total, resolved, len(self._changes), flapping
        )

    # ---- persistence -------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """JSON-able state: incidents (with what was paged), changes, id counter, policy.
        Muters are not included: silences persist through `SilenceMuter.to_state`."""
        return {
            "version": STATE_VERSION,
            "policy": self.policy.to_state(),
            "seq": self._seq,
            "now": None if math.isinf(self._now) else self._now,
            "changes": [c.to_state() for c in self._changes.all()],
            "incidents": [i.to_state() for i in self._incidents.values()],
        }

    @classmethod
    def from_state(
        cls,
        state: dict[str, Any],
        policy: CorrelationPolicy | None = None,
        muters: Iterable[Muter] = (),
    ) -> Self:
        """Restore; open incidents continue where they were (no second page). `policy`
        overrides the saved one (e.g. after a config change)."""
        version = state.get("version")
        if version != STATE_VERSION:
            raise ValueError(f"correlator state version {version!r}, expected {STATE_VERSION}")
        if policy is None:
            policy = CorrelationPolicy.from_state(state.get("policy") or {})
        corr = cls(policy, muters)
        corr._seq = int(state["seq"])
        now = state.get("now")
        corr._now = -math.inf if now is None else float(now)
        # The bounds apply as configured now: a lowered one drops (and counts) the excess.
        corr.add_changes([ChangeRecord.from_state(c) for c in state.get("changes", [])])
        for d in state.get("incidents", []):
            inc = _Inc.from_state(d)
            corr._incidents[inc.id] = inc
        return corr

    # ---- internals ---------------------------------------------------------------------

    def _open_of(self, feature: str) -> list[_Inc]:
        return [i for i in self._incidents.values() if i.feature == feature and i.status == "open"]

    def _quiet_s(self, inc: _Inc) -> float:
        p = self.policy
        if not inc.flapping:
            return p.cooldown_s
        doublings = min(max(inc.reopens - 1, 0), 60)
        hold = min(p.flap_hold_max_s, p.flap_hold_s * 2.0**doublings)
        return max(p.cooldown_s, hold)

    def _maybe_resolve(
        self,
        inc: _Inc,
        now: float,
        out: list[IncidentUpdate],
        touched: dict[str, _Touched] | None = None,
        contexts: ContextFn | None = None,
    ) -> None:
        last = inc.last_clear()
        if inc.status != "open" or last is None:
            return
        deadline = last + self._quiet_s(inc)
        if inc.hold_until is not None:
            deadline = max(deadline, inc.hold_until)
        if now < deadline:
            return
        self._settle_first(inc, out, touched, contexts)
        inc.status, inc.resolved_at = "resolved", deadline
        self._emit(inc, "resolve", now, out)

    def _settle_first(
        self,
        inc: _Inc,
        out: list[IncidentUpdate],
        touched: dict[str, _Touched] | None,
        contexts: ContextFn | None,
    ) -> None:
        """Within a batch, what earlier signals did to `inc` is settled (and emitted) before
        the resolve or reopen that follows, so updates come in the order `on_signal` one by
        one gives."""
        pending = None if touched is None else touched.pop(inc.id, None)
        if pending is not None:
            ctx = None if contexts is None or pending.looked else contexts(inc.feature, pending.ts)
            self._settle(pending, ctx, contexts, out)

    def _touch(
        self, inc: _Inc, action: Action, now: float, touched: dict[str, _Touched]
    ) -> _Touched:
        """`inc`'s entry in the batch, made at its first touch: then the record before the
        batch is taken (an update that changed nothing is not emitted). An open or a reopen
        is what the one update of the batch says, whatever follows it."""
        t = touched.get(inc.id)
        if t is None:
            before = inc.snapshot().to_record() if action == "update" else None
            t = touched[inc.id] = _Touched(inc, action, before, now)
        elif action != "update" and t.action == "update":
            t.action, t.before = action, None
        t.ts, t.looked = now, False
        return t

    def _rechecks_of(self, feature: str) -> list[_Inc]:
        return [
            i for i in self._incidents.values() if i.feature == feature and i.recheck_at is not None
        ]

    def _recheck(
        self,
        inc: _Inc,
        now: float,
        out: list[IncidentUpdate],
        touched: dict[str, _Touched] | None = None,
        contexts: ContextFn | None = None,
    ) -> None:
        """At the end of a manual resolve's grace: members still firing reopen the incident
        and page at once, saying why (the fix did not hold, or the resolve was early).

        Not marked flapping: the detector did not flip, a person's resolve was ahead of the
        data. Once reopened the incident lives as any open one: it resolves when its members
        have been clear for the cooldown, and reminds every `renotify_s` meanwhile. Within a
        batch (`on_signals`), what earlier signals did to it (members that cleared) is
        settled first, so the updates come in the order `on_signal` one by one gives."""
        due, who = inc.recheck_at, inc.resolved_by
        if due is None or now < due:
            return
        inc.recheck_at = None
        firing = [_label(m) for m in inc.by_onset() if m.cleared is None]
        if inc.status != "resolved" or who is None or not firing:
            return
        self._settle_first(inc, out, touched, contexts)
        self._reopen_by_itself(inc, f"{', '.join(firing)} still firing{_after_resolve(who, due)}")
        self._emit(inc, "reopen", now, out)

    def _reopen_by_itself(self, inc: _Inc, reason: str | None) -> None:
        """A resolved incident opens again because its data says so (not a person): with
        `reason` when a person had resolved it."""
        inc.status, inc.resolved_at = "open", None
        inc.reopens += 1
        # Resolved by hand and firing again: the fix did not hold, which is not a flapping
        # detector. Either way the old acknowledgement no longer holds.
        inc.flapping = inc.resolved_by is None
        if inc.resolved_by is not None:
            inc.last_trigger_at = None  # page at once: no re-trigger spacing
        inc.resolved_by = inc.acknowledged = None
        inc.recheck_at, inc.reopen_reason = None, reason
        # Re-inserted last: open incidents iterate in the order they (re)opened.
        self._incidents.pop(inc.id)
        self._incidents[inc.id] = inc

    def _cleared_after_resolve(
        self, sig: Signal, mkey: MemberKey, now: float, touched: dict[str, _Touched]
    ) -> None:
        """A member still firing at a manual resolve clears: its true clear time goes into
        the record; with none left firing, the incident stays resolved for good.

        Through `_Inc.clear` (it keeps the firing count `any_firing` reads) and `touched`:
        a webhook that clears 2,000 such alerts gives one update, not 2,000 copies of the
        incident; `_settle` neither refreshes nor notifies a resolved incident."""
        held = next(
            (
                i
                for i in self._rechecks_of(sig.feature)
                if mkey in i.members and i.members[mkey].cleared is None
            ),
            None,
        )
        if held is None:
            return
        member = held.members[mkey]
        t = self._touch(held, "update", now, touched)
        held.clear(member, max(sig.ts, member.onset))
        t.looked = True  # resolved: nothing to refresh (and no context to read for it)
        if not held.any_firing():
            held.recheck_at = None

    def _join(
        self, inc: _Inc, sig: Signal, mkey: MemberKey, action: Action, touched: dict[str, _Touched]
    ) -> None:
        t = self._touch(inc, action, sig.ts, touched)
        member = inc.members.get(mkey)
        if member is None:
            member = _Member.from_signal(sig)
            inc.add(mkey, member)
        else:
            inc.fire(member, sig)
        if member.fires >= self.policy.flap_fires:
            inc.flapping = True
        t.fired_at.append(sig.ts)

    def _settle(
        self,
        t: _Touched,
        ctx: FeatureContext | None,
        contexts: ContextFn | None,
        out: list[IncidentUpdate],
    ) -> None:
        """What the signals of a batch did to `t.inc`, worked out once, as of the last of
        them: severity at each firing signal's time (it only rises), then the refresh and the
        notify decision. `ctx` is the context as of that signal."""
        inc, action, before, now = t.inc, t.action, t.before, t.ts
        if inc.status == "resolved":
            # Resolved by hand, and members still firing then have cleared since
            # (`_cleared_after_resolve`): the record says when; the person's resolve stands,
            # so nothing is refreshed and nobody is notified (`_emit` would page it).
            snap = inc.snapshot()
            if before is None or snap.to_record() != before:
                out.append(IncidentUpdate(snap, action, None, now))
            return
        if t.fired_at:
            sev = assess_any(
                [m.severity_input() for m in inc.members.values()],
                t.fired_at,
                self.policy.window_s,
                self.policy.min_signals,
            )
            if SEVERITY_RANK[sev] > SEVERITY_RANK[inc.severity]:
                inc.severity = max_severity(inc.severity, sev)
                if action == "update":
                    action = "escalate"
                    before = None
        if not t.looked:
            self._refresh(inc, ctx, now, contexts)
        self._emit(inc, action, now, out, before)

    def _joinable(self, inc: _Inc, sig: Signal, now: float) -> bool:
        """Whether a new series' signal joins this open incident of its feature (or reopens
        one resolved by hand while members still fire: `_admit`'s reopen candidates).

        Not when `split_after_s` is set and the incident is older than that; and not when the
        signal is of a symptom family the incident does not have and either the incident
        opened more than `new_incident_after_s` ago or none of its members is firing: a
        flapping or stuck incident must not swallow the next real problem, and neither must
        one whose symptoms have all cleared and that only waits out its cooldown (it gets its
        own incident, triage and page). An on-call probe stopped a retrieval drift, whose
        incident was acknowledged, and started a provider outage 4 min after its signals
        cleared: the outage joined the acknowledged incident and nobody was paged. Its own
        families firing again are still the same story (`reopen`, flapping)."""
        p = self.policy
        age = now - inc.opened_at
        if p.split_after_s > 0 and age > p.split_after_s:
            return False
        late = p.new_incident_after_s > 0 and age > p.new_incident_after_s
        if late or not inc.any_firing():
            fam = sig.family or default_family(sig.metric)
            return fam in inc.family_set()
        return True

    def _estimate_start(self, inc: _Inc, ctx: FeatureContext | None, now: float) -> None:
        """`started_at`: the change point of the earliest member signal whose history shows
        one.

        Estimated when the incident opens and again (at most once per bin) while that signal
        is younger than `changepoint_refine_s`: the data after the change sharpens the
        estimate. With no significant change (or no history), the start is the last reset of
        the signal's detector when it is a CUSUM that keeps one (basis "cusum"), else the
        signal's onset (basis "detection"). The start is never after that onset.

        The members are searched in order of onset until one shows a significant change: a
        member with no history (a segment's quality series keeps none) or none that the
        search can place hands over to the next, such as the whole feature's series of the
        same fault, which fired later and still holds its start. While no member has placed
        the start (basis "detection"), the search runs again while the youngest member is
        younger than `changepoint_refine_s`: one that joins late may place it. Once placed,
        the later members of other families that changed at the same moment sharpen it
        (`_shared_start`)."""
        p = self.policy
        if not inc.members:
            return
        ordered = inc.by_onset()
        first = ordered[0]
        checked = inc.start_checked_at
        if inc.started_at is not None:
            if ctx is None or ctx.history is None:
                return
            placed = inc.start_estimate is not None and inc.start_estimate.basis != "detection"
            young = first if placed else ordered[-1]
            if now - young.onset > p.changepoint_refine_s:
                return
            if checked is not None and now - checked < p.changepoint_bin_s:
                return
        started: float = first.onset
        est = StartEstimate("detection", first.metric)
        cp = None
        if ctx is not None and ctx.history is not None:
            inc.start_checked_at = now
            lo = first.onset - p.changepoint_lookback_s
            for i, searched in enumerate(ordered):
                cp = self._search(searched, ctx, self._episode_floor(inc, searched, lo), now)
                if cp is not None:
                    later = ordered[i + 1 :]
                    break
        if cp is not None:
            start = cp.start
            joined: tuple[str, ...] = ()
            if ctx is not None:
                start, joined = self._shared_start(inc, searched, later, cp, ctx, lo, now)
            started = min(start, first.onset)
            est = StartEstimate(
                "changepoint",
                searched.metric,
                cp.shape,
                cp.before,
                cp.after,
                round(cp.stat, 2),
                round(cp.threshold, 2),
                corroborated_by=joined,
            )
        elif ctx is not None and not first.series:
            # No significant change point: the detector's own evidence, if it keeps one.
            reset = ctx.excursions.get(first.metric, math.inf)
            floor = self._episode_floor(inc, first, first.onset - p.changepoint_lookback_s)
            if floor <= reset < first.onset:
                started, est = reset, StartEstimate("cusum", first.metric)
        if started != inc.started_at:
            inc.baseline_labels = None  # the held "before" was for another split
            inc.split_held = inc.rollout_held = ()
        inc.started_at, inc.start_estimate = started, est

    def _episode_floor(self, inc: _Inc, member: _Member, lo: float) -> float:
        """Where the search of `member`'s series may begin: `lo`, or later, when the same
        series fired and cleared in an earlier incident of the feature inside the lookback.

        That earlier episode is a change the series already made and undid, explained by its
        own incident; searched over, it is the largest change in sight. An on-call probe
        rolled a bad prompt out, rolled it back, then out again 14 min later: the new
        incident's start was put at the first rollout, 83 min before the second, and its
        summary blamed the first rollout's change."""
        key = (member.metric, member.series, member.detector)
        floor = lo
        for other in self._incidents.values():
            if other is inc or other.feature != inc.feature:
                continue
            prior = other.members.get(key)
            if prior is not None and prior.cleared is not None and prior.cleared <= member.onset:
                floor = max(floor, prior.cleared)
        return floor

    def _search(
        self, member: _Member, ctx: FeatureContext, lo: float, now: float
    ) -> ChangePoint | None:
        """The change point of `member`'s series over [lo, now], not after its onset."""
        assert ctx.history is not None
        raw = ctx.history(member.metric, member.series, lo, now)
        if not raw:
            return None
        p = self.policy
        return estimate(
            [Bin(ts, value, n) for ts, value, n in raw],
            direction=1 if str(member.direction) == "up" else -1,
            not_after=member.onset,
            alpha=p.changepoint_alpha,
            bin_s=p.changepoint_bin_s,
            proportion=member.metric in ctx.proportions,
        )

    def _shared_start(
        self,
        inc: _Inc,
        anchor: _Member,
        later: Sequence[_Member],
        cp: ChangePoint,
        ctx: FeatureContext,
        lo: float,
        now: float,
    ) -> tuple[float, tuple[str, ...]]:
        """The start placed by the anchor's series together with the later members that
        measure other quantities and share its start (`changepoint.shared_start`), and
        those members' metrics.

        One series per family, its earliest member: metrics of one family measure one
        quantity (output tokens and output length), and their noise is not independent
        evidence. A derived family (cost) adds nothing its parts do not say."""
        seen = {anchor.family}
        others: list[tuple[_Member, StartPosterior]] = []
        for member in later:
            if member.family in seen or member.family in DERIVED_FAMILIES:
                continue
            seen.add(member.family)
            other = self._search(member, ctx, self._episode_floor(inc, member, lo), now)
            if other is not None:
                others.append((member, other.posterior))
        if not others:
            return cp.start, ()
        joint, used = shared_start(cp.posterior, [post for _, post in others])
        if not used:
            return cp.start, ()
        return joint.median(), tuple(others[i][0].metric for i in used)

    def _attach_changes(self, inc: _Inc, start: float, now: float) -> None:
        """Changes of the feature (or of all features) in the lookback before `start`, most
        recent first; those after it (beyond the estimate's tolerance) are `later_changes`:
        context such as a rollback, never the suspect.

        At most `incident_max_changes` on each side. A deploy pipeline that sends a change
        every minute filled one incident with 766 changes of 2,000 characters (probe: a
        1.5 MB record, API response and snapshot entry), which nobody reads. Before the start
        the ones kept are, in this order: those that set a value attribution names (the
        summary quotes the one that introduced the suspect), prompt and model changes
        (triage's second question reads them), then the most recent of the rest. After it,
        the earliest (a rollback comes soon after)."""
        p = self.policy
        cut = start + p.change_start_tolerance_s
        lo = start - p.change_lookback_s
        seen = {(c.ts, c.kind, c.description, c.feature): c for c in inc.changes}
        for c in inc.later_changes:
            seen.setdefault((c.ts, c.kind, c.description, c.feature), c)
        for ch in self._changes.window(inc.feature, lo):
            if ch.ts > now:
                break
            ref = ChangeRef(
                ch.ts,
                ch.kind,
                ch.description or _labels_text(ch),
                ch.feature,
                tuple(sorted(ch.labels.items())),
            )
            seen.setdefault((ref.ts, ref.kind, ref.description, ref.feature), ref)
        refs = sorted(seen.values(), key=lambda c: (c.ts, c.kind, c.description))
        before = list(reversed([c for c in refs if lo <= c.ts <= cut]))
        cap = p.incident_max_changes
        if len(before) > cap:
            suspects = {(a.label, a.value) for a in inc.attribution}

            def rank(c: ChangeRef) -> int:
                if suspects.intersection(c.labels):
                    return 0
                return 1 if c.kind in PROMPT_MODEL_CHANGE_KINDS else 2

            kept = set(sorted(before, key=rank)[:cap])  # stable: most recent first per rank
            before = [c for c in before if c in kept]
        inc.changes = tuple(before)
        inc.later_changes = tuple(c for c in refs if c.ts > cut)[:cap]

    def _refresh(
        self,
        inc: _Inc,
        ctx: FeatureContext | None,
        now: float,
        contexts: ContextFn | None = None,
    ) -> None:
        p = self.policy
        for m in inc.members.values():
            m.publish()
        try:
            self._estimate_start(inc, ctx, now)
        except Exception as exc:  # the page goes out without it; the pipeline counts it
            self._failed(EnrichmentFailure("start_estimate", inc.feature, exc))
            if inc.started_at is None and inc.members:  # as when nothing places the start
                first = inc.by_onset()[0]
                inc.started_at = first.onset
                inc.start_estimate = StartEstimate("detection", first.metric)
        start = inc.opened_at if inc.started_at is None else inc.started_at
        if contexts is not None and ctx is not None and ctx.start != start:
            ctx = contexts(inc.feature, start)  # split the span at the estimated start
        self._attach_changes(inc, start, now)
        # Attribution follows the anomalous traffic while it lasts; once every member has
        # cleared, the last answer stands (the context's windows age out of retention).
        if ctx is not None and (inc.any_firing() or not inc.attribution):
            try:
                start = self._attribute(inc, ctx, start, now)
            except Exception as exc:  # the page goes out without it; the pipeline counts it
                self._failed(EnrichmentFailure("attribution", inc.feature, exc))
        signals = inc.member_snapshots()
        res = triage(
            signals,
            ctx,
            inc.changes,
            inc.attribution,
            start,
            p.change_lookback_s,
            p.quality_stable_tol,
        )
        inc.triage, inc.domain = res.answers, res.domain
        inc.summary = summarize(
            inc.feature,
            signals,
            res,
            inc.changes,
            inc.attribution,
            start,
            p.change_lookback_s,
        )

    def _attribute(self, inc: _Inc, ctx: FeatureContext, start: float, now: float) -> float:
        """Attribution of `inc` split at `start`; returns the start, moved to a rollout
        named as the prime suspect (`_start_at_rollout`)."""
        p = self.policy
        ctx = _rollouts_near(inc, ctx, start, p.change_lookback_s)
        # The first look is at the opening (an incident is refreshed when it opens), and
        # its span is at least one refresh: a start at the detection has none yet.
        first_span = max(inc.opened_at - start, p.refresh_s)
        alpha = look_alpha(p.attribution_alpha, now - start, first_span)
        general = attribute(
            _held_baseline(inc, ctx),
            p.attribution_min_support,
            p.attribution_min_delta,
            p.attribution_top,
            alpha,
            lengths=_output_size_direction(inc),
            scores=any(m.layer == "quality" for m in inc.members.values()),
            calls=any(default_family(m.metric) in CALL_FAMILIES for m in inc.members.values()),
        )
        # A per-value series (`segment=pro`) of the incident whose rate moved more than
        # the rest's names its value first: its own metric is sharper evidence than label
        # counts. Cleared members count too: the span still runs from the start. Once
        # found the answer is held: the hour before the start ages out of the retained
        # buckets while a long incident stays open, and then nothing can be tested.
        fired = [
            (m.metric, m.series, str(m.direction) == "down")
            for m in inc.members.values()
            if m.series
        ]
        own = split_suspects(fired, ctx, start, now, alpha, p.attribution_min_support)
        if own:
            inc.split_held = own
        # A metric that fired in two or more values of a label is not confined to one of
        # them: no answer from that label's per-value tests stands, a held one included
        # (it may date from before the second value fired), nor its label-count "moved"
        # answers (an outage's retries can tilt one segment's count by chance).
        spread = _labels_fired_widely(fired)
        own = tuple(a for a in inc.split_held if a.label not in spread)
        named = {(a.label, a.value) for a in own}
        # A rollout to (nearly) everyone stays the prime suspect: a new prompt version
        # raises refusals in every segment, and one segment's series may fire first.
        # Once named it is held: the rollout is a fact about the start, and after the
        # retained buckets age past the value's last call (a rollback hours ago) the
        # catalog has nothing left to test it on.
        rollouts = [a for a in general if a.basis == "new_value"]
        if rollouts:
            inc.rollout_held = tuple(rollouts)
        rollouts = list(inc.rollout_held)
        rest = [a for a in general if a.basis != "new_value" and a.label not in spread]
        rolled = {(a.label, a.value) for a in rollouts}
        merged = [
            *rollouts,
            *(a for a in own if (a.label, a.value) not in rolled),
            *(a for a in rest if (a.label, a.value) not in named),
        ]
        # An answer found stands against a later empty one: a member that keeps firing
        # after the fault (a per-segment quality verdict clears only as its sparse scores
        # come in) would otherwise recompute it over aged-out data until nothing is left.
        # Not against the two-values rule, which is evidence, not a lack of it.
        if merged or not inc.attribution:
            inc.attribution = tuple(merged[: p.attribution_top])
        else:
            inc.attribution = tuple(
                a for a in inc.attribution if a.basis == "new_value" or a.label not in spread
            )
        moved = _start_at_rollout(inc, start, ctx)
        if moved != start:
            start = moved
            self._attach_changes(inc, start, now)
        return start

    def _mute_reason(self, inc: _Inc, now: float) -> Mute | None:
        snap = inc.snapshot()
        for muter in self._muters:
            reason = muter.mutes(snap, now)
            if reason:
                return Mute.parse(reason)
        return None

    def _emit(
        self,
        inc: _Inc,
        action: Action,
        now: float,
        out: list[IncidentUpdate],
        before: dict[str, Any] | None = None,
        renotify: bool = False,
        same_unless_emitted: bool = False,
    ) -> None:
        """Decide the notification for `action` and append the update, unless it is an
        `update` that changed nothing: the record equals `before`, or with
        `same_unless_emitted` and no `before`, neither the mute nor a notification moved."""
        p = self.policy
        notify: Notify = None
        muted_before = inc.muted
        if action == "resolve":
            if inc.receiver_open:
                notify = "resolve"
                inc.receiver_open = False
        else:
            inc.muted = self._mute_reason(inc, now)
            pageable = SEVERITY_RANK[inc.severity] >= 1 and inc.muted is None
            if pageable:
                if not inc.receiver_open:
                    last = inc.last_trigger_at
                    if not inc.paged and (
                        now < inc.opened_at + p.group_wait_s or inc.acknowledged is not None
                    ):
                        pass  # group wait (a tick sends it), or someone is already on it
                    elif not inc.paged or last is None or now - last >= p.retrigger_s:
                        notify = "trigger"
                elif SEVERITY_RANK[inc.severity] > SEVERITY_RANK[inc.notified_severity or "watch"]:
                    notify = "trigger"
                    if action == "update":
                        action = "escalate"
                elif renotify and self._reminder_due(inc, now):
                    notify = "trigger"
                    if action == "update":
                        action = "renotify"
            if notify == "trigger":
                inc.paged = inc.receiver_open = True
                inc.last_trigger_at = now
                inc.notified_severity = inc.severity
        if (
            action == "update"
            and notify is None
            and before is None
            and same_unless_emitted
            and inc.muted == muted_before
        ):
            return
        snap = inc.snapshot()
        if (
            action == "update"
            and notify is None
            and before is not None
            and snap.to_record() == before
        ):
            return
        out.append(IncidentUpdate(snap, action, notify, now))

    def _reminder_due(self, inc: _Inc, now: float) -> bool:
        """A paged incident, unmuted and unacknowledged, still firing (or flapping), whose
        last trigger is `renotify_s` old: the tick re-sends it, with fresh numbers."""
        p = self.policy
        return (
            inc.receiver_open
            and inc.muted is None
            and inc.acknowledged is None
            and p.renotify_s > 0
            and (inc.any_firing() or inc.flapping)
            and inc.last_trigger_at is not None
            and now - inc.last_trigger_at >= p.renotify_s
        )

    def _prune(self) -> None:
        p = self.policy
        now = self._now
        if math.isinf(now):
            return
        resolved = [i for i in self._incidents.values() if i.status == "resolved"]
        drop = [i for i in resolved if cast(float, i.resolved_at) + p.resolved_retention_s < now]
        keep = [i for i in resolved if i not in drop]
        if len(keep) > p.max_resolved:
            keep.sort(key=lambda i: (cast(float, i.resolved_at), i.seq))
            drop += keep[: len(keep) - p.max_resolved]
        for i in drop:
            del self._incidents[i.id]
        self._changes.prune(now, p)


def _read(inc: _Inc, readings: Readings) -> None:
    """Each firing member of `inc` takes its series' current reading."""
    for m in inc.members.values():
        if m.cleared is None:
            r = readings.get((inc.feature, m.metric, m.series))
            if r is not None:
                m.read(r.value, r.n)


def _label_total(counts: LabelCounts) -> int:
    return sum(max(n, 0) for values in counts.values() for n in values.values())


def _copy_counts(counts: LabelCounts) -> dict[str, dict[str, int]]:
    return {str(k): {str(v): int(n) for v, n in vals.items()} for k, vals in counts.items()}


def _held_baseline(inc: _Inc, ctx: FeatureContext) -> FeatureContext:
    """The context with the fullest pre-onset baseline this incident has seen.

    The hour before onset is a fixed span, but the pipeline keeps label counts for a bounded
    retention (2 h by default), so while a long incident keeps firing that hour ages out from
    its start: the baseline shrinks toward the minutes just before onset (where a detector
    that fired late already sees the new prompt or model version), and once it is gone the
    attribution compares the anomalous traffic with itself and drops the culprit. A span that
    only loses data never gains counts, so the largest baseline seen is the least aged one;
    it is kept on the incident (and in its state) and used in place of a smaller one.
    """
    fresh = ctx.baseline_labels
    held = inc.baseline_labels
    if held is None or _label_total(fresh) >= _label_total(held):
        inc.baseline_labels = _copy_counts(fresh)
        return ctx
    return replace(ctx, baseline_labels=held)


ROLLOUT_SLACK_S = 1800.0
"""How long before a change-point start a rollout may have begun and still be its suspect:
detectors that found the change point saw the metric move then, not an hour later."""


def _rollouts_near(inc: _Inc, ctx: FeatureContext, start: float, lookback: float) -> FeatureContext:
    """The context with only the rollouts that can explain this incident's start.

    When the start is a change point, the metric moved then: a value first seen more than
    `ROLLOUT_SLACK_S` earlier had been carrying traffic without harm (a benign prompt change
    an hour before a provider outage is no suspect). When the start is only the detection
    (a quality detector can fire an hour after a silent model switch), the whole change
    lookback stays open."""
    if ctx.rollouts is None:
        return ctx
    est = inc.start_estimate
    slack = ROLLOUT_SLACK_S if est is not None and est.basis == "changepoint" else lookback
    # A value first seen after the first signal fired cannot have caused it.
    onset = min((m.onset for m in inc.members.values()), default=math.inf)
    near = tuple(r for r in ctx.rollouts if start - slack <= r.first_seen <= onset)
    return ctx if len(near) == len(ctx.rollouts) else replace(ctx, rollouts=near)


def _labels_fired_widely(fired: Sequence[tuple[str, str, bool]]) -> set[str]:
    """Labels with a metric whose series fired in two or more of their values."""
    values: dict[tuple[str, str], set[str]] = {}
    for metric, series, _ in fired:
        label, sep, value = series.partition("=")
        if sep:
            values.setdefault((metric, label), set()).add(value)
    return {label for (_, label), vals in values.items() if len(vals) >= 2}


def _start_at_rollout(inc: _Inc, start: float, ctx: FeatureContext) -> float:
    """When attribution's prime suspect is a rollout, the incident started with it (basis
    "rollout"), earlier or later than the detector's estimate: the switch lies between the
    feature's last call before the value and the value's first call (`_switched_at`), where
    a change-point search over sparse bins, a CUSUM's last reset or a late detection is a
    noisy guess. (`_rollouts_near` keeps only rollouts that appeared near the estimate and
    no later than the first signal.) Changes are attached from that moment."""
    top = inc.attribution[0] if inc.attribution else None
    if top is None or top.basis != "new_value" or not ctx.rollouts:
        return start
    seen = [_switched_at(r) for r in ctx.rollouts if (r.label, r.value) == (top.label, top.value)]
    if not seen or seen[0] == start:
        return start
    first = seen[0]
    metric = inc.start_estimate.metric if inc.start_estimate else top.label
    inc.started_at, inc.start_estimate = first, StartEstimate("rollout", metric)
    return first


def _switched_at(r: Rollout) -> float:
    """When the feature switched to a rolled-out value: midway between its last call before
    the value and the value's first call. On a quiet feature (a call every few minutes at
    night) the first call can come many minutes after the switch; the midpoint halves the
    expected error, and on a busy one the two are the same."""
    if r.quiet_from is None or r.quiet_from > r.first_seen:
        return r.first_seen
    return (r.quiet_from + r.first_seen) / 2.0


OUTPUT_SIZE_METRICS = ("output_length_mean", "output_tokens_per_request")


def _output_size_direction(inc: _Inc) -> int:
    """+1 / -1 when an output-size signal of the incident went up / down (the earliest one
    decides), else 0: attribution then also compares output length per label value."""
    sized = [m for m in inc.members.values() if m.metric in OUTPUT_SIZE_METRICS]
    if not sized:
        return 0
    first = min(sized, key=_onset_order)
    return 1 if str(first.direction) == "up" else -1


def _change_state(c: ChangeRef) -> dict[str, Any]:
    return {
        "ts": c.ts,
        "kind": c.kind,
        "description": c.description,
        "feature": c.feature,
        "labels": [list(kv) for kv in c.labels],
    }


def _change_from_state(c: dict[str, Any]) -> ChangeRef:
    labels = tuple((str(k), str(v)) for k, v in c.get("labels") or [])
    return ChangeRef(
        float(c["ts"]), str(c["kind"]), str(c["description"]), c.get("feature"), labels
    )


def _labels_text(ch: ChangeRecord) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(ch.labels.items()))
