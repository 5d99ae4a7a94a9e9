"""The correlator's knobs, validated once (after river: parameters are checked in `__init__`).

Defaults follow DESIGN.md "Correlation, triage, lifecycle"; the flap guard and retention knobs
are ours and are explained in docs/correlator.md.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Self


@dataclass(frozen=True, slots=True)
class CorrelationPolicy:
    """How signals group into incidents and how incidents live and notify.

    - `window_s`: signals fire "together" (count toward one severity) when one fired while the
      other was firing or had cleared less than `window_s` before.
    - `min_signals`: distinct symptom families (see `correlator.families`) that make an
      incident critical.
    - `cooldown_s`: an incident resolves once every member signal has been clear this long.
    - `change_lookback_s`: change events this long before onset are attached and feed triage.
    - `renotify_s`: re-send the trigger of a paged incident still open after this long (0 = off).
    - `reopen_s`: after an incident resolved, a member series that fires again within this
      long reopens that incident instead of opening a new one (flap guard).
    - `flap_fires`: a series that fires this many times inside one incident marks it flapping.
    - `flap_hold_s`: quiet period a flapping incident needs before it resolves; it doubles with
      every reopen after a resolve, up to `flap_hold_max_s`.
    - `retrigger_min_s`: a reopened incident re-triggers at most once per this interval
      (None = `cooldown_s`); a deferred trigger goes out on a later tick.
    - `split_after_s`: 0 (default) joins every signal of a feature to its open incident. When
      > 0, a new series firing later than this after the open incident's onset opens a second
      incident of the feature (the case where inhibition between incidents of one feature
      applies).
    - retention: resolved incidents are kept `resolved_retention_s` (at most `max_resolved`),
      change events `change_retention_s`, at most `max_changes_per_feature` per feature,
      `max_global_changes` of those for every feature (`feature: null`) and `max_changes` in
      all (`correlator.changes` says which go first and how drops are counted). An incident
      quotes at most `incident_max_changes` changes before its start and as many after it
      (see `Correlator._attach_changes` for which).
    - attribution: `attribution_min_support` anomalous events and `attribution_min_delta` share
      lift over the baseline, top `attribution_top` values.
    - `new_incident_after_s`: a signal of a symptom family (`correlator.severity.family`) the
      open incident does not have yet, firing this long after it opened, opens its own
      incident (and page) instead of joining: a long-lived or flapping incident must not hide
      the next problem. 0 turns this off.
    - estimated start (`correlator.changepoint`): the search reads `changepoint_lookback_s`
      (4 h: a slow quality decline is detected up to 2 h in, and the search needs the level
      before it) of the earliest member's history before its onset in bins of
      `changepoint_bin_s`, at false-start level `changepoint_alpha`, and re-estimates while
      the member is younger than `changepoint_refine_s` (more data after the change
      sharpens it).
    - `refresh_s`: an open incident's triage, attribution and summary are recomputed from a
      fresh feature context when a signal joins it, and otherwise once per `refresh_s` of
      event time (on the first tick of each `refresh_s` bin of the clock, and on the first
      tick after a restore); once the incident is older than `refresh_slow_after_s` (by
      then its estimated start is settled and its evidence moves slowly), once per
      `refresh_slow_s`. Reading a context costs a pass
      over two hours of label buckets; doing that every 15 s tick for every open incident
      made replay of a 14-day world with day-long incidents take minutes instead of seconds,
      while the answer moves on the scale of minutes.
    - `change_start_tolerance_s`: a change event up to this long after the estimated start
      still counts as before it (the estimate has the bin's resolution); later ones are
      context (`later_changes`), never the suspect.
    - `attribution_alpha`: false-suspect level of attribution's tests per incident
      (Bonferroni over the tests of one look, spent over the looks: `attribution.look_alpha`).
    - `group_wait_s`: an incident's first notification waits this long after it opened
      (Alertmanager's `group_wait`), so signals that co-occur with the first one join it
      first and the page goes out once, at the severity they make together, instead of a
      warning page followed milliseconds later by a critical one. Later notifications
      (escalations, reminders, resolves) are not delayed. 0 = page at once.
    - `quality_stable_tol`: a quality metric within this relative distance of its baseline is
      "stable" for triage question 3.
    - `resolve_grace_s`: how long a member still firing when a person resolved the incident
      may go on firing before the incident reopens and pages (None = `cooldown_s`; the
      daemon passes its longest evaluation window plus the cooldown, see `resolve_grace`).
    """

    window_s: float = 600.0
    min_signals: int = 2
    cooldown_s: float = 900.0
    change_lookback_s: float = 7200.0
    renotify_s: float = 14400.0
    reopen_s: float = 3600.0
    flap_fires: int = 3
    flap_hold_s: float = 3600.0
    flap_hold_max_s: float = 86400.0
    retrigger_min_s: float | None = None
    split_after_s: float = 0.0
    resolved_retention_s: float = 86400.0
    max_resolved: int = 1000
    change_retention_s: float = 86400.0
    max_changes: int = 1000
    # 200: a deploy pipeline sending a change a minute fills 120 in the 2-h change lookback.
    max_changes_per_feature: int = 200
    max_global_changes: int = 200
    incident_max_changes: int = 50
    attribution_min_support: int = 5
    attribution_min_delta: float = 0.1
    attribution_top: int = 3
    quality_stable_tol: float = 0.05
    new_incident_after_s: float = 7200.0
    changepoint_lookback_s: float = 14400.0
    changepoint_bin_s: float = 60.0
    changepoint_alpha: float = 0.01
    changepoint_refine_s: float = 1800.0
    refresh_s: float = 60.0
    refresh_slow_after_s: float = 3600.0
    refresh_slow_s: float = 600.0
    change_start_tolerance_s: float = 180.0
    attribution_alpha: float = 0.01
    group_wait_s: float = 0.0
    resolve_grace_s: float | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ValueError(f"correlation.{f.name} must be a number, got {v!r}")
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"correlation.{f.name} must be finite and >= 0, got {v!r}")
        if self.min_signals < 1:
            raise ValueError("correlation.min_signals must be >= 1")
        if self.flap_fires < 2:
            raise ValueError("correlation.flap_fires must be >= 2")
        if self.max_resolved < 1 or self.max_changes < 1 or self.attribution_top < 1:
            raise ValueError("correlation.max_resolved, max_changes, attribution_top must be >= 1")
        if self.max_changes_per_feature < 1 or self.max_global_changes < 1:
            raise ValueError("correlation.max_changes_per_feature, max_global_changes must be >= 1")
        if self.incident_max_changes < 1:
            raise ValueError("correlation.incident_max_changes must be >= 1")
        if self.attribution_min_delta > 1 or self.quality_stable_tol > 1:
            raise ValueError("correlation.attribution_min_delta, quality_stable_tol must be <= 1")
        if not 0 < self.changepoint_alpha < 1 or not 0 < self.attribution_alpha < 1:
            raise ValueError("correlation.changepoint_alpha, attribution_alpha must be in (0, 1)")
        if self.refresh_s <= 0 or self.refresh_slow_s < self.refresh_s:
            raise ValueError("correlation.refresh_s must be > 0 and <= refresh_slow_s")
        if self.changepoint_bin_s <= 0:
            raise ValueError("correlation.changepoint_bin_s must be > 0")
        if self.flap_hold_max_s < self.flap_hold_s:
            raise ValueError("correlation.flap_hold_max_s must be >= flap_hold_s")
        if self.resolved_retention_s < self.reopen_s:
            raise ValueError("correlation.resolved_retention_s must be >= reopen_s")

    @property
    def retrigger_s(self) -> float:
        return self.cooldown_s if self.retrigger_min_s is None else self.retrigger_min_s

    @property
    def resolve_grace(self) -> float:
        """The grace a manual resolve gets while members still fire.

        A person who resolves while detectors still fire has usually just fixed something (a
        rollback); the detectors clear only once the bad data has left the windows they
        judge, so a re-page at once would be noise. But a fault that goes on must not stay
        silent until the next reminder (`renotify_s`, 4 h: Alertmanager's repeat interval
        fits "someone is on it", not "someone said it is over"). The grace is therefore what
        a fix needs to show in the data: the cooldown, the quiet the correlator already
        requires before it believes a fault is over; the daemon adds its longest evaluation
        window, so every window holds only post-fix data before that quiet is counted
        (`daemon.pipeline.resolve_grace`)."""
        return self.cooldown_s if self.resolve_grace_s is None else self.resolve_grace_s

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in state.items() if k in known})
