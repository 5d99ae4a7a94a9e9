"""The pipeline: events → aggregator → detectors → correlator, one code path for two clocks.

Nothing here reads a clock or sleeps. Live, the daemon passes the wall clock into `advance`
every tick; in replay, event timestamps drive it (the watermark is the newest event time).
Either way a tick at boundary T evaluates the trailing window that ends at T, feeds every
sample to its detectors, and hands transitions to the correlator.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from config.settings import Settings
from correlator import (
    CorrelationPolicy,
    Correlator,
    IncidentUpdate,
    InhibitMuter,
    Silence,
    SilenceMuter,
)
from correlator.records import ChangeRecord, FeatureContext, MetricSnapshot, Signal
from daemon.aggregator import Aggregator
from daemon.events import Change, Event, LlmCall, MetricEvent, Score
from daemon.rules import Rule, RuleBook
from detectors.base import Detector, Direction, Layer, Sample, Transition
from detectors.factory import detector_from_state

SNAPSHOT_VERSION = 1
ATTRIBUTION_BASELINE_S = 3600.0

SeriesKey = tuple[str, str, str]  # feature, metric, series


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


@dataclass(slots=True)
class TickOutput:
    signals: list[Signal] = field(default_factory=list)
    updates: list[IncidentUpdate] = field(default_factory=list)

    def extend(self, other: TickOutput) -> None:
        self.signals.extend(other.signals)
        self.updates.extend(other.updates)


@dataclass(slots=True)
class Counters:
    """Ingest outcomes for /metrics: accepted by type, unused by reason."""

    accepted: dict[str, int] = field(default_factory=dict)
    unused: dict[str, int] = field(default_factory=dict)
    ticks: int = 0
    last_tick_at: float | None = None

    def count_unused(self, reason: str, n: int = 1) -> None:
        self.unused[reason] = self.unused.get(reason, 0) + n


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
            max_label_values=settings.ingest.max_label_values,
            max_features=settings.ingest.max_features,
            score_directions=score_dirs,
        )
        self.rulebook = RuleBook(settings)
        corr = settings.correlation
        self.policy = CorrelationPolicy(
            window_s=corr.window_s,
            min_signals=corr.min_signals,
            cooldown_s=corr.cooldown_s,
            change_lookback_s=corr.change_lookback_s,
            renotify_s=reminder_interval(settings),
            split_after_s=corr.split_after_s,
        )
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
        self.latest: dict[SeriesKey, Sample] = {}
        self.counters = Counters()

    # ---- ingest ---------------------------------------------------------------------------

    def ingest(self, events: Iterable[Event], now: float | None = None) -> TickOutput:
        """Take validated events. `now` is the wall clock live, None in replay.

        In replay each event may first close the ticks it passes, so events interleave with
        ticks exactly as their timestamps say.
        """
        out = TickOutput()
        lateness = self.lateness_s
        accepted = self.counters.accepted
        for ev in events:
            ts = ev.ts
            accepted[ev.type] = accepted.get(ev.type, 0) + 1
            if now is None:
                if self.next_tick is None:
                    self._start(ts)
                elif ts >= self.next_tick:
                    out.extend(self.advance(ts))
                if self.watermark is None or ts > self.watermark:
                    self.watermark = ts
                horizon = self.watermark
            else:
                horizon = now
                if self.next_tick is None:
                    self._start(now)
                if ts > now + lateness:
                    self.counters.count_unused("future")
                    continue
            if ts < horizon - lateness:
                self.counters.count_unused("late")
                continue
            if isinstance(ev, LlmCall):
                if not self.aggregator.add_call(ev):
                    self.counters.count_unused("feature_limit")
                    continue
            elif isinstance(ev, Score):
                if not self.aggregator.add_score(ev):
                    self.counters.count_unused("feature_limit")
                    continue
            elif isinstance(ev, Change):
                self.correlator.add_change(
                    ChangeRecord(ts, ev.kind, ev.feature, ev.description, dict(ev.labels or {}))
                )
                continue
            elif isinstance(ev, MetricEvent):
                sample = Sample(ts, ev.feature, ev.layer, ev.name, float(ev.value), None)
                out.extend(self._observe(sample))
            if ts > self._last_data_ts:
                self._last_data_ts = ts
        return out

    def _start(self, ts: float) -> None:
        self.next_tick = (math.floor(ts / self.tick_s) + 1) * self.tick_s

    # ---- ticks ----------------------------------------------------------------------------

    def advance(self, now: float) -> TickOutput:
        """Run every tick whose boundary is at or before `now`."""
        out = TickOutput()
        if self.next_tick is None:
            self._start(now)
            return out
        agg = self.aggregator
        horizon = max(agg.window_s, agg.quality_window_s)
        while self.next_tick <= now:
            tick = self.next_tick
            if tick - horizon > self._last_data_ts:
                # Nothing in any window: skip the empty stretch in one step, but let the
                # correlator see the time pass (cooldowns, re-notifications).
                skip_to = max(tick, math.floor(now / self.tick_s) * self.tick_s)
                out.extend(self._clear_stale(skip_to))
                out.updates.extend(self.correlator.tick(skip_to, self.context))
                self.next_tick = skip_to + self.tick_s
                continue
            out.extend(self._tick(tick))
            self.next_tick = tick + self.tick_s
        return out

    def _tick(self, now: float) -> TickOutput:
        out = TickOutput()
        for sample in self.aggregator.evaluate(now):
            out.extend(self._observe(sample))
        out.extend(self._clear_stale(now))
        out.updates.extend(self.correlator.tick(now, self.context))
        self.aggregator.expire(now)
        self.counters.ticks += 1
        self.counters.last_tick_at = now
        return out

    def _observe(self, sample: Sample) -> TickOutput:
        out = TickOutput()
        key = (sample.feature, sample.metric, sample.series)
        self.latest[key] = sample
        watch = self._watches.get(key)
        if watch is None:
            watch = self._watches[key] = self._new_watch(sample)
        returning = watch.stale
        watch.stale = False
        for i, (rule, det) in enumerate(watch.slots):
            tr = det.update(sample.ts, sample.value, sample.n)
            if tr is None:
                if not (returning and det.firing):
                    continue
                # Data is back and the detector never stopped firing: say so again.
                tr = Transition(
                    sample.ts,
                    "firing",
                    sample.value,
                    _baseline_of(det),
                    0.0,
                    watch.directions.get(i, Direction.UP),
                )
            if tr.state == "firing":
                watch.directions[i] = tr.direction
            self._emit(out, sample, rule, det.kind, tr)
        return out

    def _emit(self, out: TickOutput, sample: Sample, rule: Rule, kind: str, tr: Transition) -> None:
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
        out.signals.append(sig)
        out.updates.extend(self.correlator.on_signal(sig, self.context(sig.feature, sig.ts)))

    def _clear_stale(self, now: float) -> TickOutput:
        """Clear the signals of series that stopped receiving samples while firing.

        Without this a feature that goes quiet mid-incident (traffic moved away, the caller
        died) would keep its incident open forever.
        """
        out = TickOutput()
        for key, watch in self._watches.items():
            if watch.stale:
                continue
            sample = self.latest.get(key)
            if sample is None:
                continue
            # `metric` events (no n) may come at a slow cadence of their own: give them longer.
            after = self._stale_after_s if sample.n is not None else max(self._stale_after_s, 7200)
            if sample.ts >= now - after:
                continue
            if not any(det.firing for _, det in watch.slots):
                continue
            watch.stale = True
            for i, (rule, det) in enumerate(watch.slots):
                if det.firing:
                    direction = watch.directions.get(i, Direction.UP)
                    tr = Transition(now, "cleared", sample.value, _baseline_of(det), 0.0, direction)
                    self._emit(out, sample, rule, det.kind, tr)
        return out

    def external_signals(self, signals: Iterable[Signal]) -> TickOutput:
        """Signals decided elsewhere (Alertmanager) go straight to the correlator."""
        out = TickOutput()
        for sig in signals:
            if not sig.family:
                sig = replace(sig, family=self.rulebook.family_for(sig.feature, sig.metric))
            out.signals.append(sig)
            out.updates.extend(self.correlator.on_signal(sig, self.context(sig.feature, sig.ts)))
        return out

    def _new_watch(self, sample: Sample) -> _Watch:
        rules = self.rulebook.rules_for(sample.feature, sample.layer, sample.metric)
        return _Watch(sample.layer, [(rule, rule.build()) for rule in rules])

    # ---- context for the correlator -------------------------------------------------------

    def context(self, feature: str, onset: float) -> FeatureContext:
        """What triage and attribution need: current values and label counts around onset."""
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
        return FeatureContext(
            feature=feature,
            metrics=metrics,
            bad_labels=agg.label_counts(feature, start, end, bad_only=True),
            all_labels=agg.label_counts(feature, start, end),
            baseline_labels=agg.label_counts(feature, start - ATTRIBUTION_BASELINE_S, start),
        )

    def _baseline(self, feature: str, metric: str) -> float | None:
        """The learned baseline of a metric, for evidence (a static line is no baseline)."""
        watch = self._watches.get((feature, metric, ""))
        if watch is None:
            return None
        for _, det in watch.slots:
            base = getattr(det, "baseline", None)
            if base is not None and det.kind != "static":
                return float(base)
        return None

    def detector_keys(self) -> list[SeriesKey]:
        return list(self._watches)

    def detector_states(self) -> Iterable[tuple[SeriesKey, str, bool]]:
        for key, watch in self._watches.items():
            for _, det in watch.slots:
                yield key, det.kind, det.firing

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
                {
                    "key": list(key),
                    "layer": watch.layer,
                    "states": [det.to_state() | {"kind": det.kind} for _, det in watch.slots],
                }
                for key, watch in self._watches.items()
            ],
            "aggregator": self.aggregator.to_state(since=self._window_start()),
        }

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
        for entry in snap.get("detectors", []):
            feature, metric, series = entry["key"]
            layer = entry["layer"]
            rules = self.rulebook.rules_for(feature, layer, metric)
            states = entry["states"]
            slots: list[tuple[Rule, Detector]] = []
            for i, rule in enumerate(rules):
                det: Detector | None = None
                if i < len(states) and states[i].get("kind") == rule.kind:
                    try:
                        det = detector_from_state(states[i])
                    except (ValueError, KeyError, TypeError) as exc:
                        warnings.append(f"{feature}/{metric}: {exc}; starting fresh")
                slots.append((rule, det or rule.build()))
            self._watches[(feature, metric, series)] = _Watch(layer, slots)
        try:
            self.aggregator.load_state(snap.get("aggregator") or {})
        except (ValueError, KeyError, TypeError) as exc:
            warnings.append(f"aggregator windows: {exc}; starting with empty windows")
        return warnings

    def restore_correlator(self, state: dict[str, Any]) -> None:
        # The current config's policy wins over the one saved with the state.
        self.correlator = Correlator.from_state(state, policy=self.policy, muters=self._muters)


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


def _baseline_of(det: Detector) -> float | None:
    base = getattr(det, "baseline", None)
    return None if base is None else float(base)
