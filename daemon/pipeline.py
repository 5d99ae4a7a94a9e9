"""The pipeline: events → aggregator → detectors → correlator, one code path for two clocks.

Nothing here reads a clock or sleeps. Live, the daemon passes the wall clock into `advance`
every tick; in replay, event timestamps drive it (the watermark is the newest event time).
Either way a tick at boundary T evaluates the trailing window that ends at T, feeds every
sample to its detectors, and hands transitions to the correlator.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, cast

import orjson
import structlog

from config.settings import IngestConfig, Settings
from correlator import (
    ChangeDrop,
    CorrelationPolicy,
    Correlator,
    HumanAction,
    IncidentUpdate,
    InhibitMuter,
    MemberSignal,
    Silence,
    SilenceMuter,
)
from correlator.records import (
    ChangeRecord,
    FeatureContext,
    HistoryFn,
    MetricSnapshot,
    Rollout,
    Signal,
)
from daemon.ingest.events import Change, Event, LlmCall, MetricEvent, Score
from daemon.layers.aggregator import PROPORTIONS, Aggregator, Limits, clip
from daemon.layers.rules import Rule, RuleBook
from detectors.base import Detector, Direction, Layer, Sample, Transition
from detectors.defaults import QUALITY_METRIC
from detectors.factory import KINDS, detector_from_state, migrate_state

SNAPSHOT_VERSION = 1
ATTRIBUTION_BASELINE_S = 3600.0

SeriesKey = tuple[str, str, str]  # feature, metric, series
# The incident page's charts (issue 13): one point per minute (per 4 ticks when ticks are
# shorter than 15 s, as in tests) per whole-feature metric, the last HISTORY_POINTS of them
# (6 h at the default tick). Bounded: series are capped by `ingest.max_series`, so this holds
# at most max_series x 360 points (2000 series: ~35 MB worst case, ~2 MB typical).
HISTORY_BIN_S = 60.0
HISTORY_POINTS = 360
# A change's description travels into pages; the correlator keeps up to max_changes of them.
DESCRIPTION_MAX = 2000


@dataclass(slots=True)
class _Watch:
    """The detectors on one series, with the rule each came from.

    `stale` is set when the series stopped receiving samples while a detector was firing:
    its signal was cleared for the correlator (absent data resolves, as in Prometheus), and
    fires again if the detector still fires when data returns.
    """

    layer: Layer
    slots: list[tuple[Rule, Detector]]
    stale: bool = False
    directions: dict[int, Direction] = field(default_factory=dict)  # last firing, per slot
    next_history_ts: float = -math.inf  # when the next chart point is due (`_remember`)
    # Restored without its last sample (state from an older version): the stale rule counts
    # from the first tick that saw it so, or a firing series with no traffic never clears.
    missing_since: float | None = None


@dataclass(slots=True)
class _Unconfirmed:
    """A signal the restored correlator holds as firing while its detector is not firing."""

    member: MemberSignal
    layer: Layer
    grace_s: float
    deadline: float | None = None


@dataclass(slots=True)
class TickOutput:
    """What one step of the pipeline produced.

    `changed` names the series whose detector transition reached the correlator: the
    daemon saves their detector state (`series_states`) in the same transaction as the
    correlator's state, so the two are never restored out of step (see `reconcile`).

    `changes` are the change events the correlator took in (new, not duplicates): the
    daemon writes them before it answers the request that carried them, since senders do
    not resend a deploy record the way telemetry keeps coming (see `Daemon.handle`).
    """

    signals: list[Signal] = field(default_factory=list)
    updates: list[IncidentUpdate] = field(default_factory=list)
    changed: set[SeriesKey] = field(default_factory=set)
    changes: list[ChangeRecord] = field(default_factory=list)

    def extend(self, other: TickOutput) -> None:
        self.signals.extend(other.signals)
        self.updates.extend(other.updates)
        self.changed |= other.changed
        self.changes.extend(other.changes)

    def unsaved(self) -> bool:
        """Whether anything here must reach the state store."""
        return bool(self.updates or self.changed or self.changes)


TICK_STAGES = (
    "evaluate", "detect", "correlate", "stale", "correlator_tick", "expire", "snapshot",
    "start_estimate", "attribution",
)  # fmt: skip
ERROR_LOG_INTERVAL_S = 300.0
STALE_CHECK_S = 60.0  # how often `_tick` looks for stale firing series
DISARM_SCAN_TICKS = 240  # look for newly disarmed default lines about once an hour
_MAX_ERROR_KEYS = 10_000


@dataclass(slots=True)
class TickErrors:
    """Failures caught inside a tick, per feature or per series.

    One broken series (a value that overflows, a detector bug) must cost only that series:
    the rest of the tick and every later tick still run. Each failure is counted by stage for
    /metrics; the log gets one line per (stage, feature, metric) at most every
    `ERROR_LOG_INTERVAL_S` of tick time, with the count of those not logged since, so a series
    that fails every tick does not flood the log.
    """

    by_stage: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TICK_STAGES, 0))
    _last_logged: dict[tuple[str, str, str], float] = field(default_factory=dict)
    _suppressed: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def record(
        self, log: Any, stage: str, feature: str, metric: str, exc: BaseException, now: float
    ) -> None:
        self.by_stage[stage] = self.by_stage.get(stage, 0) + 1
        key = (stage, feature, metric)
        last = self._last_logged.get(key)
        if last is not None and now - last < ERROR_LOG_INTERVAL_S:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        if len(self._last_logged) >= _MAX_ERROR_KEYS:  # bounded whatever the input does
            self._last_logged.clear()
            self._suppressed.clear()
        self._last_logged[key] = now
        log.error(
            "tick_error",
            stage=stage,
            feature=feature,
            metric=metric,
            error=f"{type(exc).__name__}: {exc}"[:500],
            not_logged_since=self._suppressed.pop(key, 0),
            exc_info=exc,
        )


@dataclass(slots=True)
class ChangeDropLog:
    """Change events the correlator's bounds dropped (`correlator.changes`), counted for
    /metrics and logged.

    Counted in `llm_oncall_events_unused_total` (`change_limit` while the change was still
    inside the change lookback and could have been an incident's suspect, `change_limit_aged`
    past it) and in `llm_oncall_cardinality_capped_total{dimension="changes"}`. Logged as
    `change_dropped` at most once per list (a feature, or null for the changes of every
    feature) every `ERROR_LOG_INTERVAL_S` of the pipeline's clock, with what was dropped since
    the last line: a CI job that floods one feature's changes writes one line per 5 min, not
    one per change, and the quiet features' lists are untouched.
    """

    _last_logged: dict[str | None, float] = field(default_factory=dict)
    _pending: dict[str | None, dict[str, int]] = field(default_factory=dict)

    def record(
        self,
        log: Any,
        drops: dict[ChangeDrop, int],
        counters: Counters,
        aggregator: Aggregator,
        policy: CorrelationPolicy,
        now: float,
    ) -> None:
        for drop, n in drops.items():
            counters.count_unused("change_limit_aged" if drop.aged else "change_limit", n)
            aggregator.count_capped("changes", n)
            pending = self._pending.setdefault(drop.feature, {})
            pending[drop.cap] = pending.get(drop.cap, 0) + n
            if not drop.aged:
                pending["in_lookback"] = pending.get("in_lookback", 0) + n
        limits = {
            "per_feature": policy.max_changes_per_feature,
            "global": policy.max_global_changes,
            "total": policy.max_changes,
        }
        for feature in {d.feature for d in drops}:
            last = self._last_logged.get(feature)
            if last is not None and now - last < ERROR_LOG_INTERVAL_S:
                continue
            self._last_logged[feature] = now
            pending = self._pending.pop(feature)
            in_lookback = pending.pop("in_lookback", 0)
            log.warning(
                "change_dropped",
                feature=feature,
                dropped=sum(pending.values()),
                inside_lookback=in_lookback,
                by_bound={cap: n for cap, n in sorted(pending.items())},
                limits={cap: limits[cap] for cap in sorted(pending)},
                detail="the oldest change events of this list were dropped to stay within"
                " correlation.max_changes_per_feature / max_global_changes / max_changes;"
                " counted in llm_oncall_events_unused_total{reason=change_limit}",
            )


@dataclass(slots=True)
class Counters:
    """Ingest outcomes for /metrics: accepted by type, unused by reason, Alertmanager alert
    times taken as the receive time (`clamped`) or as the correlation window's start
    (`backdated`) by field."""

    accepted: dict[str, int] = field(default_factory=dict)
    unused: dict[str, int] = field(default_factory=dict)
    clamped: dict[str, int] = field(default_factory=dict)
    backdated: dict[str, int] = field(default_factory=dict)
    ticks: int = 0
    last_tick_at: float | None = None

    def count_unused(self, reason: str, n: int = 1) -> None:
        self.unused[reason] = self.unused.get(reason, 0) + n

    def count_clamped(self, alert_field: str, n: int = 1) -> None:
        self.clamped[alert_field] = self.clamped.get(alert_field, 0) + n

    def count_backdated(self, alert_field: str, n: int = 1) -> None:
        self.backdated[alert_field] = self.backdated.get(alert_field, 0) + n


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        log: Any = None,
    ) -> None:
        self.settings = settings
        self.log = log or structlog.get_logger("llm_oncall.pipeline")
        agg = settings.aggregation
        score_dirs = dict(settings.scores)
        self.aggregator = Aggregator(
            tick_s=agg.tick_s,
            window_s=agg.window_s,
            quality_window_s=agg.quality_window_s,
            retention_s=max(
                agg.retention_s, ATTRIBUTION_BASELINE_S + settings.correlation.window_s
            ),
            limits=limits_of(settings.ingest),
            score_directions=score_dirs,
            score_direction=settings.score_direction,
            split_labels=agg.split_labels,
            split_values=agg.split_values,
        )
        self.rulebook = RuleBook(settings)
        self.policy = policy_of(settings)
        self.silences = SilenceMuter(config_silences(settings))
        # The inhibitor asks whichever correlator is current (restore replaces it).
        self._muters = (self.silences, InhibitMuter(lambda: self.correlator.open_incidents()))
        self.correlator = Correlator(self.policy, muters=self._muters)
        self.lateness_s = settings.ingest.lateness_s
        self.tick_s = agg.tick_s
        self.watermark: float | None = None
        self.next_tick: float | None = None
        self._last_data_ts: float = -math.inf
        self._watches: dict[SeriesKey, _Watch] = {}
        # A firing series with no sample for this long is cleared (absent data resolves).
        self._stale_after_s = 2 * max(agg.window_s, agg.quality_window_s)
        self._next_stale_check = -math.inf
        self.latest: dict[SeriesKey, Sample] = {}
        self.counters = Counters()
        self.errors = TickErrors()
        self.change_drops = ChangeDropLog()
        # Correlator members restored as firing whose detector was not (see `reconcile`):
        # (feature, metric, series, detector kind) -> clear-by deadline, None until a tick.
        self._unconfirmed: dict[tuple[str, str, str, str], _Unconfirmed] = {}
        # Detectors kept, newly built and dropped by the last config reload (for its log line).
        self.last_reconfigure: dict[str, int] = {}
        self._disarm_logged: set[tuple[SeriesKey, int]] = set()
        # (feature, metric) -> (minute, value, baseline or None); see HISTORY_POINTS.
        self.history: dict[tuple[str, str], deque[tuple[float, float, float | None]]] = {}

    # ---- config reload --------------------------------------------------------------------

    def prepare_reconfigure(self, settings: Settings) -> Callable[[float], TickOutput]:
        """Build what a new, already validated config (SIGHUP, `POST /-/reload`) needs, and
        return the step that applies it at time `now`.

        Everything is built here, before anything changes, so a failure leaves the old config
        whole, and the daemon can prepare every part before committing any. Detectors whose
        rule is unchanged (same kind, params and page_alone) keep their state: baselines are
        hours of learning, and a reload that touches one rule must not restart the others.
        A changed or new rule starts a fresh detector; a detector dropped while firing is
        cleared for the correlator (its rule is gone, so nothing else would ever clear it).
        Windows, counters, incidents and API silences stay.

        The caller keeps what needs a restart (aggregation windows, listen, state) as it was.
        """
        rulebook = RuleBook(settings)
        policy = policy_of(settings)
        silences = config_silences(settings)
        limits = limits_of(settings.ingest)
        plans: dict[SeriesKey, tuple[list[tuple[Rule, Detector]], dict[int, int], list[int]]] = {}
        counts = {"kept": 0, "new": 0, "dropped": 0}
        for key, watch in self._watches.items():
            rules = rulebook.rules_for(key[0], watch.layer, key[1], key[2])
            if list(rules) == [rule for rule, _ in watch.slots]:
                counts["kept"] += len(watch.slots)
                continue
            free = list(range(len(watch.slots)))
            slots: list[tuple[Rule, Detector]] = []
            moved: dict[int, int] = {}  # old slot index -> new slot index
            for rule in rules:
                old = next((i for i in free if watch.slots[i][0] == rule), None)
                if old is None:
                    slots.append((rule, rule.build()))
                else:
                    free.remove(old)
                    moved[old] = len(slots)
                    slots.append(watch.slots[old])
            plans[key] = (slots, moved, free)
            counts["kept"] += len(moved)
            counts["new"] += len(slots) - len(moved)
            counts["dropped"] += len(free)

        def commit(now: float) -> TickOutput:
            self.last_reconfigure = counts
            return self._commit_reconfigure(
                settings, rulebook, policy, silences, limits, plans, now
            )

        return commit

    def _commit_reconfigure(
        self,
        settings: Settings,
        rulebook: RuleBook,
        policy: CorrelationPolicy,
        silences: list[Silence],
        limits: Limits,
        plans: dict[SeriesKey, tuple[list[tuple[Rule, Detector]], dict[int, int], list[int]]],
        now: float,
    ) -> TickOutput:
        """Swap in what `prepare_reconfigure` built; nothing here is expected to fail."""
        out = TickOutput()
        old_config_ids = {s.id for s in config_silences(self.settings)}
        self.settings = settings
        self.rulebook = rulebook
        self.policy = policy
        self.correlator.policy = policy
        self.lateness_s = settings.ingest.lateness_s
        self.aggregator.reconfigure(limits, dict(settings.scores), settings.score_direction)
        for sid in old_config_ids:
            self.silences.remove(sid)
        for sil in silences:
            self.silences.add(sil)
        for key, (slots, moved, dropped) in plans.items():
            watch = self._watches[key]
            feature, metric, series = key
            last = self.latest.get(key)
            sample = last or Sample(now, feature, watch.layer, metric, 0.0, None, series)
            for i in dropped:
                rule, det = watch.slots[i]
                if det.firing:
                    direction = watch.directions.get(i, Direction.UP)
                    tr = Transition(now, "cleared", sample.value, _baseline_of(det), 0.0, direction)
                    self._emit(out, sample, rule, det.kind, tr)
            watch.directions = {moved[i]: d for i, d in watch.directions.items() if i in moved}
            watch.slots = slots
        return out

    # ---- ingest ---------------------------------------------------------------------------

    def ingest(
        self,
        events: Iterable[Event],
        now: float | None = None,
        on_unused: Callable[[int, str], None] | None = None,
    ) -> TickOutput:
        """Take validated events. `now` is the wall clock live, None in replay.

        In replay each event may first close the ticks it passes, so events interleave with
        ticks exactly as their timestamps say. An event taken but not used (late, future, past
        a cardinality cap) is counted by reason, and also reported to `on_unused` with its
        position in `events`, so the HTTP answer can name it to its sender.

        A `change` may be as late as the change lookback (`change_lookback_s`, 2 h), not just
        `ingest.lateness_s`: it goes into no time bucket, incidents look it up that far
        back, and a deploy pipeline sends its record when the deploy finishes, often more
        than 5 min after the time it reports. Open incidents pick it up at their next
        refresh. Only one older than that is counted `late`.
        """
        out = TickOutput()
        lateness = self.lateness_s
        change_lateness = max(lateness, self.policy.change_lookback_s)
        accepted = self.counters.accepted
        horizon = -math.inf
        # Changes go to the correlator together (its bounds apply once per batch), before
        # any tick they precede in replay and at the end.
        changes: list[ChangeRecord] = []
        for position, ev in enumerate(events):
            ts = ev.ts
            accepted[ev.type] = accepted.get(ev.type, 0) + 1
            unused: str | None = None
            if now is None:
                if self.next_tick is None:
                    self._start(ts)
                elif ts >= self.next_tick:
                    self._add_changes(changes, horizon, out)
                    out.extend(self.advance(ts))
                if self.watermark is None or ts > self.watermark:
                    self.watermark = ts
                horizon = self.watermark
            else:
                horizon = now
                if self.next_tick is None:
                    self._start(now)
                if ts > now + lateness:
                    unused = "future"
            late = change_lateness if isinstance(ev, Change) else lateness
            if unused is None and ts < horizon - late:
                unused = "late"
            if unused is None:
                unused = self._take(ev, ts, out, changes)
            if unused is not None:
                self.counters.count_unused(unused)
                if on_unused is not None:
                    on_unused(position, unused)
        self._add_changes(changes, horizon, out)
        return out

    def _take(
        self, ev: Event, ts: float, out: TickOutput, changes: list[ChangeRecord]
    ) -> str | None:
        """One event in time into the aggregator, or a change into `changes` (the batch for
        the correlator, `_add_changes`); the reason it was not used (a cardinality cap), or
        None."""
        if isinstance(ev, LlmCall):
            unused = self.aggregator.add_call(ev)
            if unused is not None:
                return unused
        elif isinstance(ev, Score):
            unused = self.aggregator.add_score(ev)
            if unused is not None:
                return unused
        elif isinstance(ev, Change):
            if ev.feature is not None and not self.aggregator.admit_feature(ev.feature):
                return "feature_limit"
            agg = self.aggregator
            labels = dict(agg.clean_labels(ev.labels)) if ev.labels else {}
            description = ev.description
            if len(description) > DESCRIPTION_MAX:
                agg.count_capped("description_length")
                description = clip(description, DESCRIPTION_MAX)
            changes.append(ChangeRecord(ts, ev.kind, ev.feature, description, labels))
            return None
        elif isinstance(ev, MetricEvent):
            unused = self.aggregator.admit_external(ev.feature, ev.name)
            if unused is not None:
                return unused
            sample = Sample(ts, ev.feature, ev.layer, ev.name, float(ev.value), None)
            self._observe(sample, out)
        if ts > self._last_data_ts:
            self._last_data_ts = ts
        return None

    def _add_changes(self, changes: list[ChangeRecord], now: float, out: TickOutput) -> None:
        """Hand the batch to the correlator; the new ones it keeps go out to be written (a
        flood pushes out its own oldest within one body: those are not)."""
        if changes:
            out.changes.extend(self.correlator.add_changes(changes, now=now))
            changes.clear()
            self._record_change_drops(now)

    def count_future(self, ev: Event) -> None:
        """Count an event that replay set aside as ahead of its clock (daemon/replay.py), as
        `ingest` counts one the live clock finds too far ahead: accepted, then unused."""
        self.counters.accepted[ev.type] = self.counters.accepted.get(ev.type, 0) + 1
        self.counters.count_unused("future")

    def _start(self, ts: float) -> None:
        self.next_tick = (math.floor(ts / self.tick_s) + 1) * self.tick_s

    # ---- people ---------------------------------------------------------------------------

    def human_action(self, verb: str, incident_id: str, who: HumanAction) -> TickOutput:
        """Acknowledge, resolve or reopen an incident by hand (`verb`: ack, resolve, reopen).
        Raises KeyError for an unknown incident and ValueError when its state does not allow
        the verb (resolving a resolved incident)."""
        act = {
            "ack": self.correlator.acknowledge,
            "resolve": self.correlator.resolve,
            "reopen": self.correlator.reopen,
        }[verb]
        return TickOutput(updates=act(incident_id, who))

    # ---- ticks ----------------------------------------------------------------------------

    def advance(self, now: float) -> TickOutput:
        """Run every tick whose boundary is at or before `now`."""
        out = TickOutput()
        if self.next_tick is None:
            self._start(now)
            return out
        agg = self.aggregator
        horizon = max(agg.window_s, agg.quality_window_s)
        for pending in self._unconfirmed.values():
            if pending.deadline is None:
                pending.deadline = now + pending.grace_s
        while self.next_tick <= now:
            tick = self.next_tick
            if tick - horizon > self._last_data_ts:
                # Nothing in any window: skip the empty stretch in one step, but let the
                # correlator see the time pass (cooldowns, re-notifications).
                skip_to = max(tick, math.floor(now / self.tick_s) * self.tick_s)
                out.extend(self._clear_stale(skip_to))
                out.extend(self._clear_unconfirmed(skip_to))
                self._correlator_tick(out, skip_to)
                self.next_tick = skip_to + self.tick_s
                continue
            out.extend(self._tick(tick))
            self.next_tick = tick + self.tick_s
        return out

    def _tick(self, now: float) -> TickOutput:
        """One tick. Every stage catches failures per feature or per series (`TickErrors`):
        a series that cannot be computed or evaluated is skipped this tick, the others go on.
        """
        out = TickOutput()

        def failed(feature: str, exc: Exception) -> None:
            self.errors.record(self.log, "evaluate", feature, "*", exc, now)

        for sample in self.aggregator.evaluate(now, on_error=failed):
            self._observe(sample, out)
        if now >= self._next_stale_check:
            # Once a minute: staleness is judged against 2 windows (30 min by default), and
            # looking at every series every tick was a tenth of a quiet feature's replay.
            self._next_stale_check = now + min(STALE_CHECK_S, self._stale_after_s / 10)
            out.extend(self._clear_stale(now))
        out.extend(self._clear_unconfirmed(now))
        self._correlator_tick(out, now)
        try:
            self.aggregator.expire(now)
        except Exception as exc:  # counted and logged; expiry retries next tick
            self.errors.record(self.log, "expire", "*", "*", exc, now)
        if self.counters.ticks % DISARM_SCAN_TICKS == 0:
            self._log_disarmed()
        self.counters.ticks += 1
        self.counters.last_tick_at = now
        return out

    def _correlator_tick(self, out: TickOutput, now: float) -> None:
        try:
            out.updates.extend(self.correlator.tick(now, self.context, self.latest))
        except Exception as exc:  # counted and logged; the next tick retries
            self.errors.record(self.log, "correlator_tick", "*", "*", exc, now)
        self._record_enrichment_failures(now)
        # A reload that lowered a bound, or a restore under lower bounds, drops at the tick.
        self._record_change_drops(now)

    def _record_change_drops(self, now: float) -> None:
        """Count and log what the change store's bounds dropped."""
        drops = self.correlator.take_change_drops()
        if drops:
            self.change_drops.record(
                self.log, drops, self.counters, self.aggregator, self.policy, now
            )

    def _observe(self, sample: Sample, out: TickOutput) -> None:
        """Feed one sample to its series' detectors; what they emit is added to `out`."""
        key = (sample.feature, sample.metric, sample.series)
        self.latest[key] = sample
        watch = self._watches.get(key)
        if watch is None:
            watch = self._watches[key] = self._new_watch(sample)
        returning = watch.stale
        watch.stale = False
        parts = sample.parts
        for i, (rule, det) in enumerate(watch.slots):
            try:
                # The fused quality sample carries its score observations in `parts`.
                observe = getattr(det, "observe", None) if parts is not None else None
                if observe is not None:
                    tr = observe(sample.ts, parts)
                else:
                    tr = det.update(sample.ts, sample.value, sample.n, sample.tick)
            except Exception as exc:  # one detector's failure is its own
                self.errors.record(
                    self.log, "detect", sample.feature, sample.metric, exc, sample.ts
                )
                continue
            if tr is not None and tr.state == "firing":
                self._unconfirmed.pop(
                    (sample.feature, sample.metric, sample.series, det.kind), None
                )
            if tr is None:
                if not (returning and det.firing):
                    continue
                # Data is back and the detector never stopped firing: say so again.
                tr = Transition(
                    sample.ts,
                    "firing",
                    float(getattr(det, "relative_quality", sample.value)),
                    _baseline_of(det),
                    0.0,
                    watch.directions.get(i, Direction.UP),
                )
            if tr.state == "firing":
                watch.directions[i] = tr.direction
                self._emit(out, _with_evidence_n(sample, det), rule, det.kind, tr)
            else:
                self._emit(out, sample, rule, det.kind, tr)
        if parts is not None:
            self.latest[key] = _fused_value(sample, watch)
        if not sample.series and sample.ts >= watch.next_history_ts:
            self._remember(sample, watch)

    def _remember(self, sample: Sample, watch: _Watch) -> None:
        """Keep the first sample of each minute with its baseline, for the incident page's
        charts (the aggregator's buckets hold raw counts, not what the detectors saw).
        `watch.next_history_ts` spares the other samples of the minute any work."""
        key = (sample.feature, sample.metric)
        ring = self.history.get(key)
        bin_s = min(HISTORY_BIN_S, 4 * self.tick_s)
        minute = math.floor(sample.ts / bin_s) * bin_s
        watch.next_history_ts = minute + bin_s
        if ring is None:
            ring = self.history[key] = deque(maxlen=HISTORY_POINTS)
        elif ring and ring[-1][0] >= minute:
            return
        if math.isfinite(sample.value):
            ring.append((minute, sample.value, self._baseline(sample.feature, sample.metric)))

    def _emit(self, out: TickOutput, sample: Sample, rule: Rule, kind: str, tr: Transition) -> None:
        out.changed.add((sample.feature, sample.metric, sample.series))
        sig = Signal(
            ts=tr.ts,
            feature=sample.feature,
            metric=sample.metric,
            layer=sample.layer,
            detector=kind,
            state=tr.state,
            value=tr.value,
            baseline=tr.baseline,
            score=tr.score,
            direction=tr.direction,
            series=sample.series,
            n=sample.n,
            page_alone=rule.page_alone,
            family=self.rulebook.family_for(sample.feature, sample.metric),
        )
        self._to_correlator(out, sig)

    def _to_correlator(self, out: TickOutput, sig: Signal) -> None:
        out.signals.append(sig)
        try:
            out.updates.extend(
                self.correlator.on_signal(sig, self.context(sig.feature, sig.ts), self.context)
            )
        except Exception as exc:  # counted and logged; other signals go on
            self.errors.record(self.log, "correlate", sig.feature, sig.metric, exc, sig.ts)
        self._record_enrichment_failures(sig.ts)

    def _record_enrichment_failures(self, now: float) -> None:
        """A start estimate or attribution that raised inside the correlator: the incident
        was paged without it; count and log it like any tick failure."""
        for f in self.correlator.take_failures():
            self.errors.record(self.log, f.stage, f.feature, f.metric, f.error, now)

    def _clear_stale(self, now: float) -> TickOutput:
        """Clear the signals of series that stopped receiving samples while firing.

        Without this a feature that goes quiet mid-incident (traffic moved away, the caller
        died) would keep its incident open forever.
        """
        out = TickOutput()
        for key, watch in self._watches.items():
            try:
                self._clear_if_stale(out, key, watch, now)
            except Exception as exc:  # counted and logged; other series go on
                self.errors.record(self.log, "stale", key[0], key[1], exc, now)
        return out

    def _clear_if_stale(self, out: TickOutput, key: SeriesKey, watch: _Watch, now: float) -> None:
        if watch.stale or not any(det.firing for _, det in watch.slots):
            return  # nothing to clear (checked first: most series are not firing)
        sample = self.latest.get(key)
        if sample is None:
            # Restored state without a last sample: stale since the first tick after restart.
            if watch.missing_since is None:
                watch.missing_since = now
            feature, metric, series = key
            sample = Sample(watch.missing_since, feature, watch.layer, metric, 0.0, 0, series)
        # `metric` events (no n) may come at a slow cadence of their own: give them longer.
        after = self._stale_after_s if sample.n is not None else max(self._stale_after_s, 7200)
        if sample.ts >= now - after:
            return
        watch.stale = True
        for i, (rule, det) in enumerate(watch.slots):
            if det.firing:
                direction = watch.directions.get(i, Direction.UP)
                tr = Transition(now, "cleared", sample.value, _baseline_of(det), 0.0, direction)
                self._emit(out, sample, rule, det.kind, tr)

    def external_signals(self, signals: Iterable[Signal]) -> TickOutput:
        """Signals decided elsewhere (Alertmanager) go straight to the correlator, within the
        feature and metric-name caps (each alert is one series of its feature).

        They go as one batch (`Correlator.on_signals`): each incident they touch is refreshed
        once, from one context read, not once per alert."""
        out = TickOutput()
        limit = self.aggregator.limits.label_value_length
        for sig in signals:
            if len(sig.metric) > limit or len(sig.series) > limit:
                sig = replace(sig, metric=clip(sig.metric, limit), series=clip(sig.series, limit))
            unused = self.aggregator.admit_external(sig.feature, sig.metric, sig.series)
            if unused is not None:
                self.counters.count_unused(unused)
                continue
            if not sig.family:
                sig = replace(sig, family=self.rulebook.family_for(sig.feature, sig.metric))
            out.signals.append(sig)
        if out.signals:
            out.updates.extend(self.correlator.on_signals(out.signals, self.context))
            self._record_enrichment_failures(max(s.ts for s in out.signals))
        return out

    def _new_watch(self, sample: Sample) -> _Watch:
        rules = self.rulebook.rules_for(sample.feature, sample.layer, sample.metric, sample.series)
        return _Watch(sample.layer, [(rule, rule.build()) for rule in rules])

    # ---- context for the correlator -------------------------------------------------------

    def context(self, feature: str, onset: float) -> FeatureContext:
        """What triage and attribution need: current values, label counts before and after
        `onset` (the incident's estimated start, or a signal's time before there is one), and
        the history the change-point search reads."""
        metrics: dict[str, MetricSnapshot] = {}
        for (feat, metric, series), sample in self.latest.items():
            if feat != feature or series:
                continue
            metrics[metric] = MetricSnapshot(
                metric, sample.layer, sample.value, self._baseline(feature, metric), sample.n
            )
        end = (self.next_tick or onset) + self.tick_s
        window = self.aggregator.window_s
        agg = self.aggregator
        start = min(onset, end - window)
        after = agg.label_stats(feature, start, end)
        before = agg.label_stats(feature, start - ATTRIBUTION_BASELINE_S, start)
        return FeatureContext(
            feature=feature,
            metrics=metrics,
            bad_labels=after.bad(),
            all_labels=after.all(),
            baseline_labels=before.all(),
            baseline_bad_labels=before.bad(),
            lengths=after.lengths(),
            baseline_lengths=before.lengths(),
            score_labels=after.scores(),
            low_score_labels=after.low_scores(),
            baseline_score_labels=before.scores(),
            baseline_low_score_labels=before.low_scores(),
            history=self._history(feature),
            start=onset,
            rollouts=self._rollouts(feature, onset, end),
            excursions=self._excursions(feature),
            split_labels=agg.split_labels,
            proportions=PROPORTIONS,
        )

    def _excursions(self, feature: str) -> dict[str, float]:
        """Metric → when its detector's current excursion began (a CUSUM's last reset), for
        the detectors that know it."""
        out: dict[str, float] = {}
        for (feat, metric, series), watch in self._watches.items():
            if feat != feature or series:
                continue
            for _, det in watch.slots:
                began = getattr(det, "excursion_start", None)
                if began is not None:
                    out[metric] = min(float(began), out.get(metric, math.inf))
        return out

    def _rollouts(self, feature: str, onset: float, end: float) -> tuple[Rollout, ...]:
        """Values first seen within the change lookback before `onset` (a detector that
        fires an hour after a silent model switch still sees the switch), with the events
        around their first appearance, and from it to its last, for attribution's test."""
        agg = self.aggregator
        out = []
        since = onset - self.policy.change_lookback_s
        for label, value, first, last, before, quiet in agg.new_values(feature, since):
            if first >= end:
                continue
            # While the value lived: traffic after a rollback would dilute its share.
            after = agg.label_stats(feature, first, min(end, last + agg.tick_s)).events()
            events_after = max((sum(v.values()) for v in after.values()), default=0)
            count = after.get(label, {}).get(value, 0)
            out.append(Rollout(label, value, first, before, count, events_after, quiet))
        return tuple(out)

    def _history(self, feature: str) -> HistoryFn:
        """The change-point search's and attribution's read of the retained buckets
        (whole-feature series and split label values: per provider/model/endpoint
        availability is not kept per bucket)."""
        agg = self.aggregator
        bin_s = self.policy.changepoint_bin_s

        def read(
            metric: str, series: str, start: float, end: float
        ) -> list[tuple[float, float, int]]:
            if series and not agg.is_split(series):
                return []
            spreads = self._score_spreads(feature) if metric == QUALITY_METRIC else None
            return agg.history(feature, metric, start, end + agg.tick_s, bin_s, series, spreads)

        return read

    def _score_spreads(self, feature: str) -> Callable[[str], tuple[float, float] | None] | None:
        """Each score's (mean, deviation) as the feature's fused quality verdict judges it."""
        fused = self._watches.get((feature, QUALITY_METRIC, ""))
        for _, det in fused.slots if fused is not None else ():
            spread = getattr(det, "source_spread", None)
            if spread is not None:
                return cast(Callable[[str], tuple[float, float] | None], spread)
        return None

    def _baseline(self, feature: str, metric: str) -> float | None:
        """The learned baseline of a metric, for evidence (a static line is no baseline)."""
        watch = self._watches.get((feature, metric, ""))
        if metric.startswith("score:") and (watch is None or not watch.slots):
            # No per-score detector by default: the fused verdict knows each score's baseline.
            fused = self._watches.get((feature, QUALITY_METRIC, ""))
            for _, det in fused.slots if fused is not None else ():
                source_baseline = getattr(det, "source_baseline", None)
                if source_baseline is not None:
                    base = source_baseline(metric.removeprefix("score:"))
                    return None if base is None else float(base)
            return None
        if watch is None:
            return None
        for _, det in watch.slots:
            base = getattr(det, "baseline", None)
            if base is not None and det.kind != "static":
                return float(base)
        return None

    def detector_keys(self) -> list[SeriesKey]:
        return list(self._watches)

    def detector_states(self) -> Iterable[tuple[SeriesKey, int, str, bool]]:
        """(series, rule position, detector kind, firing) for every detector. A metric may
        have several rules of one kind (availability: two static thresholds), so the rule's
        position among the metric's rules is what tells them apart."""
        for key, watch in self._watches.items():
            for i, (_, det) in enumerate(watch.slots):
                yield key, i, det.kind, det.firing

    def disarmed_detectors(self) -> Iterable[tuple[SeriesKey, int, str, str]]:
        """(series, rule position, detector kind, why) for every default line that disarmed
        itself because the series' normal traffic crosses it (`detectors.static`)."""
        for key, watch in self._watches.items():
            for i, (_, det) in enumerate(watch.slots):
                why = getattr(det, "disarmed", None)
                if why:
                    yield key, i, det.kind, why

    def _log_disarmed(self) -> None:
        """Log each newly disarmed default line once: the operator should set a budget."""
        for key, i, kind, why in self.disarmed_detectors():
            if (key, i) in self._disarm_logged:
                continue
            if len(self._disarm_logged) < _MAX_ERROR_KEYS:
                self._disarm_logged.add((key, i))
            self.log.warning(
                "default_rule_disarmed", feature=key[0], metric=key[1], series=key[2],
                detector=kind, rule=i, reason=why,
            )  # fmt: skip

    # ---- persistence ----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Baselines and open windows. The correlator is saved apart (`correlator_state`),
        in the same transaction as every incident change it makes."""
        return {
            "v": SNAPSHOT_VERSION,
            "watermark": self.watermark,
            "next_tick": self.next_tick,
            "last_data_ts": None if self._last_data_ts == -math.inf else self._last_data_ts,
            "detectors": [
                _watch_entry(key, watch, self.latest.get(key))
                for key, watch in self._watches.items()
            ],
            "aggregator": self.aggregator.to_state(since=self._window_start()),
        }

    def snapshot_bytes(self, now: float) -> bytes:
        """The snapshot encoded for the store. A feature whose windows cannot be encoded
        (a value out of JSON's range) is left out, counted and logged, rather than failing
        the whole snapshot and with it the state of every other feature."""
        snap = self.snapshot()
        option = orjson.OPT_NON_STR_KEYS
        try:
            return orjson.dumps(snap, option=option)
        except TypeError:
            features = snap["aggregator"]["features"]
            for name in list(features):
                try:
                    orjson.dumps(features[name], option=option)
                except TypeError as exc:
                    del features[name]
                    self.errors.record(self.log, "snapshot", name, "*", exc, now)
            return orjson.dumps(snap, option=option)

    def _window_start(self) -> float | None:
        """Start of the oldest window the next tick evaluates (None before any data)."""
        if self.next_tick is None:
            return None
        agg = self.aggregator
        return self.next_tick - max(agg.window_s, agg.quality_window_s) - agg.tick_s

    def restore(self, snap: dict[str, Any]) -> list[str]:
        """Load a snapshot; returns warnings for the parts that had to start fresh."""
        warnings: list[str] = []
        if snap.get("v") != SNAPSHOT_VERSION:
            return [
                f"state snapshot version {snap.get('v')!r} is not {SNAPSHOT_VERSION}: "
                "starting with fresh baselines"
            ]
        self.watermark = snap.get("watermark")
        self.next_tick = snap.get("next_tick")
        last = snap.get("last_data_ts")
        self._last_data_ts = -math.inf if last is None else float(last)
        warnings += self.restore_series(snap.get("detectors", []))
        try:
            self.aggregator.load_state(snap.get("aggregator") or {})
        except (ValueError, KeyError, TypeError) as exc:
            warnings.append(f"aggregator windows: {exc}; starting with empty windows")
        return warnings

    def series_states(self, keys: Iterable[SeriesKey]) -> list[dict[str, Any]]:
        """The detector state of some series, in the snapshot's form (for `restore_series`).
        Small: the daemon writes it with every transition, the whole snapshot periodically."""
        return [
            _watch_entry(key, self._watches[key], self.latest.get(key))
            for key in keys
            if key in self._watches
        ]

    def restore_series(self, entries: Iterable[dict[str, Any]]) -> list[str]:
        """Load series' detector states (replacing what a snapshot gave for them)."""
        warnings: list[str] = []
        for entry in entries:
            feature, metric, series = entry["key"]
            layer = entry["layer"]
            rules = self.rulebook.rules_for(feature, layer, metric, series)
            states = entry["states"]
            slots: list[tuple[Rule, Detector]] = []
            for i, rule in enumerate(rules):
                det: Detector | None = None
                old = states[i] if i < len(states) else None
                try:
                    if old is not None and old.get("kind") == rule.kind:
                        det = detector_from_state(old)
                    elif old is not None:
                        # The rule's kind changed (e.g. an upgrade moved a default to a new
                        # detector): carry the baseline over where the kinds allow it.
                        det = migrate_state(old, rule.kind, rule.params)
                        what = "migrated" if det is not None else "learning restarts"
                        warnings.append(
                            f"{feature}/{metric}: detector {old.get('kind')} -> {rule.kind}; {what}"
                        )
                except (ValueError, KeyError, TypeError) as exc:
                    warnings.append(f"{feature}/{metric}: {exc}; starting fresh")
                slots.append((rule, det or rule.build()))
            for state in states[len(rules) :] if len(states) > len(rules) else ():
                # e.g. the per-score quality detectors of a release before the fused verdict
                warnings.append(
                    f"{feature}/{metric}: saved {state.get('kind')!r} detector is not in the "
                    "current rules; its state is dropped (the rules now learn afresh)"
                )
            watch = _Watch(layer, slots, stale=bool(entry.get("stale", False)))
            for i, d in (entry.get("directions") or {}).items():
                watch.directions[int(i)] = Direction(d)
            self._watches[(feature, metric, series)] = watch
            # The last sample lets the stale rule clear a firing series that gets no more
            # traffic after a restart, timed from its real last sample.
            last = entry.get("last")
            known = self.latest.get((feature, metric, series))
            try:
                if last is not None and last[1] is not None:
                    sample = Sample(
                        float(last[0]),
                        feature,
                        layer,
                        metric,
                        float(last[1]),
                        None if last[2] is None else int(last[2]),
                        series,
                    )
                    if known is None or sample.ts >= known.ts:
                        self.latest[(feature, metric, series)] = sample
            except (ValueError, TypeError, IndexError) as exc:
                warnings.append(f"{feature}/{metric}: last sample: {exc}; timed from restart")
            if not series and not self.aggregator.computes(metric):
                self.aggregator.restore_external(feature, metric, series)
        return warnings

    def restore_correlator(self, state: dict[str, Any]) -> None:
        # The current config's policy wins over the one saved with the state.
        self.correlator = Correlator.from_state(state, policy=self.policy, muters=self._muters)

    def restore_changes(self, entries: Iterable[dict[str, Any]]) -> list[str]:
        """Put back the change events written one by one since the correlator state was
        (`Daemon.handle`); call after `restore_correlator`. One the state holds already is
        a duplicate and ignored; the bounds apply as usual. Returns warnings for entries that
        cannot be read (each skipped on its own)."""
        warnings: list[str] = []
        changes: list[ChangeRecord] = []
        for entry in entries:
            try:
                changes.append(ChangeRecord.from_state(entry))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                warnings.append(f"change event {str(entry)[:200]}: {exc!r}; skipped")
        self.correlator.add_changes(changes)
        return warnings

    def reconcile(self) -> int:
        """After a restore, find the signals the correlator holds as firing whose detector is
        not firing; returns how many. Call once, after `restore` and `restore_correlator`.

        Why this exists: an incident resolves only when each member signal clears, and a
        signal clears only through its detector's transition (or the stale-series rule, which
        looks at firing detectors only). If the restored detector is not firing, that never
        happens and the incident, and the receiver's page, stay open for good.

        The daemon prevents the mismatch at its cause: every detector transition commits
        the detector state of its series (`series_states`, a few KB; the whole snapshot is
        megabytes at 100 features, too slow to write per transition) in the same SQLite
        transaction as the correlator state it changed (`Daemon.handle`), so a kill -9 at
        any point restores each signal and its detector as of the same instant. (The
        evaluation windows come from the older periodic snapshot, so the first ticks after a
        restart may show that detector older data; it then clears or fires again through
        its own hysteresis, and the correlator follows, as for any transition.)

        A mismatch can still come from state written before that rule, a detector state
        that had to start fresh (new version, changed rule), or a rule removed from the
        config. For those we chose "clear after a bounded time with no confirming evidence"
        over forcing the detector into its firing state: forcing would need a back door in
        every detector kind and would make up evidence the detector does not have. Each such
        signal gets one evaluation window (counted from the first tick after restart) for its
        detector to fire again, which confirms it and the incident goes on as before; without
        that, the signal is cleared at the deadline, and the incident resolves after its
        cooldown like any other. If the problem is still there, the detector fires again and
        the correlator reopens the same incident.

        Signals that no detector of ours produced (Alertmanager alerts) are left alone: their
        source sends the clear.
        """
        self._unconfirmed.clear()
        agg = self.aggregator
        # Resolved incidents too: a member still firing at a manual resolve reopens its
        # incident after a grace unless it clears, so it must not outlive its detector.
        for inc in self.correlator.incidents():
            if inc.status != "open" and inc.still_firing is None:
                continue
            for m in inc.signals:
                if m.cleared is not None or m.detector not in KINDS:
                    continue
                watch = self._watches.get((inc.feature, m.metric, m.series))
                if watch is not None and any(
                    det.kind == m.detector and det.firing for _, det in watch.slots
                ):
                    continue
                grace = agg.quality_window_s if m.layer == "quality" else agg.window_s
                key = (inc.feature, m.metric, m.series, m.detector)
                self._unconfirmed[key] = _Unconfirmed(m, m.layer, grace)
        return len(self._unconfirmed)

    def _clear_unconfirmed(self, now: float) -> TickOutput:
        """Clear the restored signals whose detector did not confirm them in time."""
        out = TickOutput()
        for key, pending in list(self._unconfirmed.items()):
            if pending.deadline is None or now < pending.deadline:
                continue
            del self._unconfirmed[key]
            feature, metric, series, kind = key
            watch = self._watches.get((feature, metric, series))
            if watch is not None and any(d.kind == kind and d.firing for _, d in watch.slots):
                continue  # confirmed after all
            m = pending.member
            sig = Signal(
                ts=now,
                feature=feature,
                metric=metric,
                layer=pending.layer,
                detector=kind,
                state="cleared",
                value=m.value,
                baseline=m.baseline,
                score=0.0,
                direction=m.direction,
                series=series,
                n=m.n,
            )
            self.log.info(
                "signal_unconfirmed_cleared", feature=feature, metric=metric, detector=kind
            )
            self._to_correlator(out, sig)
        return out

    def unconfirmed(self) -> list[tuple[str, str, str, str]]:
        """Restored firing signals still waiting for their detector (for tests and logs)."""
        return list(self._unconfirmed)


def limits_of(ingest: IngestConfig) -> Limits:
    """The aggregator's cardinality caps from the `ingest.max_*` settings."""
    return Limits(
        features=ingest.max_features,
        providers=ingest.max_providers,
        models=ingest.max_models,
        endpoints=ingest.max_endpoints,
        series_per_feature=ingest.max_series_per_feature,
        score_names=ingest.max_score_names,
        metric_names=ingest.max_metric_names,
        series=ingest.max_series,
        label_names=ingest.max_label_names,
        label_values=ingest.max_label_values,
        label_sets=ingest.max_label_sets,
        label_value_length=ingest.max_label_value_length,
    )


def policy_of(settings: Settings) -> CorrelationPolicy:
    """The correlator's policy from the `correlation` settings (and routes' reminders)."""
    corr = settings.correlation
    return CorrelationPolicy(
        window_s=corr.window_s,
        min_signals=corr.min_signals,
        cooldown_s=corr.cooldown_s,
        change_lookback_s=corr.change_lookback_s,
        renotify_s=reminder_interval(settings),
        split_after_s=corr.split_after_s,
        new_incident_after_s=corr.new_incident_after_s,
        group_wait_s=settings.notify.group_wait_s,
        resolve_grace_s=resolve_grace(settings),
        max_changes_per_feature=corr.max_changes_per_feature,
        max_global_changes=corr.max_global_changes,
        max_changes=corr.max_changes,
    )


def resolve_grace(settings: Settings) -> float:
    """How long a member still firing at a manual resolve may go on before the incident
    reopens and pages (`CorrelationPolicy.resolve_grace`): the longest evaluation window
    (the time a fix needs before every window holds only data from after it; 15 min by
    default, the score window), then the cooldown (the quiet the correlator asks before it
    believes a fault is over; 15 min) for the detectors' own calm-before-clear. 30 min by
    default. Measured on the scenario replays (prompt regression, provider outage, silent
    model update, retrieval drift), members cleared 2-14.5 min after their fault ended
    (docs/oncall.md): the window alone (15 min) would have re-paged on a working rollback
    of a prompt regression resolved a minute early."""
    agg = settings.aggregation
    return max(agg.window_s, agg.quality_window_s) + settings.correlation.cooldown_s


def reminder_interval(settings: Settings) -> float:
    """How often the correlator proposes reminders: the shortest of the global interval and
    any route's own `renotify_s` (the paging side then applies each route's interval)."""
    intervals = [settings.correlation.renotify_s] + [
        r.renotify_s for r in settings.routes if r.renotify_s
    ]
    positive = [i for i in intervals if i]
    return min(positive) if positive else 0.0


def config_silences(settings: Settings) -> list[Silence]:
    """Silences from the config file; ids are stable (cfg-<n>) so the API can list them."""
    out = []
    for i, sil in enumerate(settings.silences):
        raw = sil.model_dump()
        raw["id"] = sil.id or f"cfg-{i}"
        raw["starts_at"] = 0.0 if sil.starts_at is None else sil.starts_at
        out.append(Silence.from_dict(raw, where=f"silences[{i}]"))
    return out


ContextFn = Callable[[str, float], FeatureContext]


def _watch_entry(key: SeriesKey, watch: _Watch, last: Sample | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "key": list(key),
        "layer": watch.layer,
        "states": [det.to_state() | {"kind": det.kind} for _, det in watch.slots],
        "stale": watch.stale,
        "directions": {str(i): str(d) for i, d in watch.directions.items()},
    }
    if last is not None:
        value = last.value if math.isfinite(last.value) else None
        entry["last"] = [last.ts, value, last.n]
    return entry


def _fused_value(sample: Sample, watch: _Watch) -> Sample:
    """The fused quality sample as the layer's value: relative quality as the verdict
    states it, 1.0 while it has not fired and, while it fires, its estimate of the decline
    (0.9 = 10% down, the signal's value). Not the tick's observation count that the
    aggregator puts in `value` for the detector, which `/metrics` showed as the layer value
    (probe: a Grafana panel plotted 0 and 1 beside the score means). Not the estimate
    below the threshold either: over a short excursion of noise it read 0.8 or less in 5%
    of a healthy feature's ticks. The score observations stay out of `latest`: only the
    detector reads them. While it fires, `n` is the scores the estimate rests on
    (`_with_evidence_n`): the correlator quotes this sample as the member's current value."""
    for _, det in watch.slots:
        relative = getattr(det, "relative_quality", None)
        if relative is not None:
            if not det.firing:
                return replace(sample, value=1.0, parts=None)
            return replace(_with_evidence_n(sample, det), value=float(relative), parts=None)
    return replace(sample, parts=None)


def _with_evidence_n(sample: Sample, det: Detector) -> Sample:
    """The sample with the count its detector's verdict rests on, where that is not the
    sample's: the fused quality verdict's estimate covers the scores of its whole excursion,
    where the sample counts one tick's (a page read "quality 0.81 vs baseline 1 over 1
    scores")."""
    obs = getattr(det, "excursion_obs", None) if sample.parts is not None else None
    return sample if obs is None else replace(sample, n=int(obs))


def _baseline_of(det: Detector) -> float | None:
    base = getattr(det, "baseline", None)
    return None if base is None else float(base)
