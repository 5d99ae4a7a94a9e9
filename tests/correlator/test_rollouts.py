"""Attribution from the catalog of label values: a rollout is named whatever the start
estimate, a version back after a rollback is not new, low scores count apart from calls;
and which member's history places the start."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from corr_helpers import FEATURE, T0, sig

from correlator import ChangeRecord, CorrelationPolicy, Correlator, FeatureContext, attribute
from correlator.incident import StartEstimate
from correlator.records import Rollout
from detectors.base import Direction


def _late_start(rollouts: tuple[Rollout, ...] | None) -> FeatureContext:
    """The start estimate came 10 minutes after a switch to prompt v2: the hour "before" the
    start already holds 300 calls of v2, so by shares v2 is not new."""
    return FeatureContext(
        FEATURE,
        {},
        bad_labels={"prompt_version": {"v2": 40}},
        all_labels={"prompt_version": {"v2": 600}},
        baseline_labels={"prompt_version": {"v1": 1500, "v2": 300}},
        baseline_bad_labels={"prompt_version": {"v1": 30, "v2": 20}},
        rollouts=rollouts,
    )


def test_rollout_is_named_when_the_start_estimate_is_late() -> None:
    assert attribute(_late_start(None)) == ()  # shares across the late start: not new
    rollout = Rollout("prompt_version", "v2", T0 - 600, 1800, 900, 900)
    attrs = attribute(_late_start((rollout,)))
    assert [(a.label, a.value, a.basis) for a in attrs] == [("prompt_version", "v2", "new_value")]
    a = attrs[0]
    assert a.share_after == 1.0 and a.baseline_share == 0.0 and a.n == 900
    assert a.first_seen == "2023-11-14T22:03:20.000Z"  # T0 - 600


def test_value_back_after_a_rollback_is_not_new() -> None:
    """v1 is back after a rollback: absent in the hour before the start, but the catalog knows
    it from before (it is in no rollout), so it is not named."""
    c = FeatureContext(
        FEATURE,
        {},
        bad_labels={"prompt_version": {"v1": 5}},
        all_labels={"prompt_version": {"v1": 600}},
        baseline_labels={"prompt_version": {"v2": 1800}},
        baseline_bad_labels={"prompt_version": {"v2": 150}},
        rollouts=(),
    )
    assert attribute(c) == ()
    old = FeatureContext(**{**_fields(c), "rollouts": None})
    assert [a.value for a in attribute(old)] == ["v1"]  # what shares alone concluded


def test_small_or_thin_rollouts_are_not_suspects() -> None:
    tiny = Rollout("experiment", "arm-b", T0 - 600, 1800, 30, 900)  # 3% of traffic
    thin = Rollout("prompt_version", "v2", T0 - 600, 0, 900, 900)  # nothing watched before
    assert attribute(_late_start((tiny, thin))) == ()


def _score_ctx(low_pro: int, low_free: int) -> FeatureContext:
    """A 429 storm: calls fail alike in both segments; pro gets more scores per call."""
    return FeatureContext(
        FEATURE,
        {},
        bad_labels={"segment": {"free": 210, "pro": 90}},
        all_labels={"segment": {"free": 700, "pro": 300}},
        baseline_labels={"segment": {"free": 700, "pro": 300}},
        baseline_bad_labels={"segment": {"free": 7, "pro": 3}},
        score_labels={"segment": {"free": 70, "pro": 300}},
        low_score_labels={"segment": {"free": low_free, "pro": low_pro}},
        baseline_score_labels={"segment": {"free": 70, "pro": 300}},
        baseline_low_score_labels={"segment": {"free": 35, "pro": 150}},
    )


def test_low_scores_count_apart_from_failed_calls() -> None:
    assert attribute(_score_ctx(low_pro=150, low_free=35), scores=True) == ()
    attrs = attribute(_score_ctx(low_pro=240, low_free=35), scores=True)
    assert [(a.label, a.value, a.metric) for a in attrs] == [("segment", "pro", "quality")]
    # Without a quality signal in the incident, scores are not tested.
    assert attribute(_score_ctx(low_pro=240, low_free=35)) == ()


def _fields(c: FeatureContext) -> dict[str, object]:
    return {name: getattr(c, name) for name in FeatureContext.__dataclass_fields__}


def _rollout_ctx(first_seen: float, history: bool) -> FeatureContext:
    """All traffic since `first_seen` is prompt v2; with `history`, refusals stepped up at
    T0 - 120 s (a change point the search finds), else the history is empty."""

    def read(metric: str, series: str, start: float, end: float) -> list[tuple[float, float, int]]:
        t, out = start - start % 60, []
        while t < end:
            out.append((t, 0.12 if t >= T0 - 120 else 0.03, 100))
            t += 60
        return out

    return FeatureContext(
        FEATURE,
        {},
        bad_labels={"prompt_version": {"v2": 40}},
        all_labels={"prompt_version": {"v2": 600}},
        baseline_labels={"prompt_version": {"v1": 900, "v2": 900}},
        rollouts=(Rollout("prompt_version", "v2", first_seen, 1800, 2000, 2000),),
        history=read if history else None,
    )


def test_rollout_moves_a_late_start_back_and_brings_its_change() -> None:
    corr = Correlator()
    corr.add_change(ChangeRecord(T0 - 1500, "prompt", FEATURE, "prompt v2 rolled out"))
    (up,) = corr.on_signal(sig("refusal_rate", T0, n=400), _rollout_ctx(T0 - 1500, False))
    inc = up.incident
    assert [(a.value, a.basis) for a in inc.attribution] == [("v2", "new_value")]
    assert inc.started_at == T0 - 1500
    assert inc.start_estimate is not None and inc.start_estimate.basis == "rollout"
    assert [c.description for c in inc.changes] == ["prompt v2 rolled out"]


def test_rollout_long_before_a_change_point_is_no_suspect() -> None:
    """v2 went out 50 minutes before refusals stepped up: it carried traffic without harm."""
    corr = Correlator()
    (up,) = corr.on_signal(sig("refusal_rate", T0, n=400), _rollout_ctx(T0 - 3000, True))
    inc = up.incident
    assert inc.start_estimate is not None and inc.start_estimate.basis == "changepoint"
    assert inc.attribution == ()
    near = Correlator()
    (up,) = near.on_signal(sig("refusal_rate", T0, n=400), _rollout_ctx(T0 - 600, True))
    assert [a.value for a in up.incident.attribution] == ["v2"]


def test_cusum_reset_is_the_start_when_the_search_finds_nothing() -> None:
    """The fused quality verdict fired at T0; its CUSUM left 0 at T0 - 1500 s. Without a
    significant change point that reset is the start (Page's estimate); a reset older than
    the search's lookback is ignored."""
    quiet = FeatureContext(FEATURE, {}, {}, {}, {}, excursions={"score:faithfulness": T0 - 1500})
    (up,) = Correlator().on_signal(sig("score:faithfulness", T0, n=64), quiet)
    inc = up.incident
    assert inc.started_at == T0 - 1500
    assert inc.start_estimate is not None and inc.start_estimate.basis == "cusum"
    too_old = T0 - CorrelationPolicy().changepoint_lookback_s - 600
    old = FeatureContext(FEATURE, {}, {}, {}, {}, excursions={"score:faithfulness": too_old})
    (up,) = Correlator().on_signal(sig("score:faithfulness", T0, n=64), old)
    assert up.incident.started_at == T0
    assert up.incident.start_estimate is not None
    assert up.incident.start_estimate.basis == "detection"


def test_rollout_after_a_cusum_reset_is_the_start() -> None:
    """A chance rise of the CUSUM began 6 minutes before the switch to v2: the rollout's
    first appearance is the start, not the reset."""
    c = FeatureContext(
        FEATURE,
        {},
        bad_labels={"prompt_version": {"v2": 40}},
        all_labels={"prompt_version": {"v2": 600}},
        baseline_labels={"prompt_version": {"v1": 1800}},
        rollouts=(Rollout("prompt_version", "v2", T0 - 1200, 1800, 2000, 2000),),
        excursions={"score:faithfulness": T0 - 1560},
    )
    (up,) = Correlator().on_signal(sig("score:faithfulness", T0, n=64), c)
    inc = up.incident
    assert inc.started_at == T0 - 1200
    assert inc.start_estimate is not None and inc.start_estimate.basis == "rollout"


def test_experiment_arm_on_half_the_traffic_is_not_a_rollout() -> None:
    """An arm that took 54% of calls: by timing alone it is no suspect (a drift that started
    an hour later would be blamed on it); it would be named only if the metric moved in it."""
    arm = Rollout("experiment", "arm-b", T0 - 600, 1800, 486, 900)
    assert attribute(_late_start((arm,))) == ()
    full = Rollout("experiment", "arm-b", T0 - 600, 1800, 880, 900)  # 98%: a rollout
    assert [a.basis for a in attribute(_late_start((full,)))] == ["new_value"]


def test_rollout_after_a_change_point_is_the_start() -> None:
    """The search put the start 20 minutes early (a chance rise); v2, first seen 5 minutes
    before the detection and named, is when the incident started."""
    corr = Correlator()
    c = _rollout_ctx(T0 - 300, True)
    early = T0 - 1200

    def read(metric: str, series: str, start: float, end: float) -> list[tuple[float, float, int]]:
        t, out = start - start % 60, []
        while t < end:
            out.append((t, 0.12 if t >= early else 0.03, 100))
            t += 60
        return out

    (up,) = corr.on_signal(sig("refusal_rate", T0, n=400), replace(c, history=read))
    inc = up.incident
    assert [a.value for a in inc.attribution] == ["v2"]
    assert inc.started_at == T0 - 300
    assert inc.start_estimate is not None and inc.start_estimate.basis == "rollout"


def test_rollout_after_the_first_signal_is_no_suspect() -> None:
    """v2 appeared a minute after refusals fired: it cannot have caused them."""
    (up,) = Correlator().on_signal(sig("refusal_rate", T0, n=400), _rollout_ctx(T0 + 60, False))
    assert up.incident.attribution == ()
    assert up.incident.start_estimate is not None
    assert up.incident.start_estimate.basis == "detection"


def test_a_named_rollout_stands_after_its_calls_age_out() -> None:
    """Hours into a long incident, v2 (rolled back since) is no longer in the retained
    buckets: the catalog has nothing to test it on, while segment pro's counts moved by
    chance. The rollout named at the start stays first; pro may follow it."""
    corr = Correlator()
    (up,) = corr.on_signal(sig("refusal_rate", T0, n=400), _rollout_ctx(T0 - 600, False))
    assert [a.value for a in up.incident.attribution] == ["v2"]
    later = FeatureContext(
        FEATURE,
        {},
        bad_labels={"segment": {"pro": 60, "free": 5}},
        all_labels={"segment": {"pro": 300, "free": 700}},
        baseline_labels={"segment": {"pro": 300, "free": 700}},
        baseline_bad_labels={"segment": {"pro": 3, "free": 7}},
        rollouts=(),
    )
    for k in range(1, 13):
        corr.tick(T0 + 300 * k, lambda feature, start: later)
    (inc,) = corr.open_incidents()
    assert [(a.label, a.value) for a in inc.attribution][:1] == [("prompt_version", "v2")]
    assert ("segment", "pro") in [(a.label, a.value) for a in inc.attribution]
    state = Correlator.from_state(corr.to_state())
    state.tick(T0 + 3900, lambda feature, start: later)
    assert [a.value for a in state.open_incidents()[0].attribution][:1] == ["v2"]


def test_a_rollout_on_a_quiet_feature_started_midway_through_the_gap() -> None:
    """The last call before v2 came 10 minutes before v2's first: the switch was somewhere
    in between, and the start is its middle (the attribution keeps the first call's time)."""
    c = _rollout_ctx(T0 - 1500, False)
    (r,) = c.rollouts or ()
    quiet = replace(c, rollouts=(replace(r, quiet_from=T0 - 2100),))
    (up,) = Correlator().on_signal(sig("refusal_rate", T0, n=400), quiet)
    inc = up.incident
    assert inc.started_at == T0 - 1800
    assert inc.start_estimate is not None and inc.start_estimate.basis == "rollout"
    assert [a.first_seen for a in inc.attribution] == ["2023-11-14T21:48:20.000Z"]  # T0 - 1500


def test_a_segment_series_without_history_hands_the_start_to_the_feature_series() -> None:
    """Quality fell 30 minutes before T0. The enterprise segment's quality fired first, at
    T0, and segments keep no quality history; the whole feature's fired later. The start is
    the feature series' change point, not the segment's detection."""

    fell = T0 - T0 % 60 - 1800  # on a bin's start

    def read(metric: str, series: str, start: float, end: float) -> list[tuple[float, float, int]]:
        if series:
            return []
        t, out = start - start % 60, []
        while t < end:
            wobble = 0.1 if int(t // 60) % 2 else -0.1
            out.append((t, (-1.0 if t >= fell else 0.0) + wobble, 10))
            t += 60
        return out

    c = FeatureContext(FEATURE, {}, {}, {}, {}, history=read)
    down = {"direction": Direction.DOWN, "layer": "quality"}
    seg = replace(sig("quality", T0, series="segment=enterprise", detector="fused"), **down)
    # The feature's series fires 5 min later, or 53 min later (past the 30 min during which
    # the first member's estimate is refined: with nothing placed, a late member still may).
    for joins in (300, 3180):
        corr = Correlator()
        (up,) = corr.on_signal(seg, c)
        assert up.incident.started_at == T0  # nothing to search yet
        corr.on_signal(replace(sig("quality", T0 + joins, detector="fused"), **down), c)
        inc = corr.get(up.incident.id)
        assert inc is not None and inc.started_at == fell, joins
        assert inc.start_estimate is not None and inc.start_estimate.basis == "changepoint"


def test_a_member_whose_history_shows_no_change_hands_the_start_to_the_next() -> None:
    """Refusals in the pro segment fired first, but their history shows no change the
    search can place; the feature's quality series, which fired 10 min later, fell 40
    minutes before T0. That change is the start."""
    fell = T0 - T0 % 60 - 2400

    def read(metric: str, series: str, start: float, end: float) -> list[tuple[float, float, int]]:
        t, out = start - start % 60, []
        while t < end:
            wobble = 0.1 if int(t // 60) % 2 else -0.1
            if series:
                out.append((t, 0.02 + wobble / 10, 50))
            else:
                out.append((t, (-1.0 if t >= fell else 0.0) + wobble, 10))
            t += 60
        return out

    c = FeatureContext(FEATURE, {}, {}, {}, {}, history=read)
    corr = Correlator()
    (up,) = corr.on_signal(sig("refusal_rate", T0, series="segment=pro", n=50), c)
    quality = sig("quality", T0 + 600, detector="fused")
    corr.on_signal(replace(quality, direction=Direction.DOWN, layer="quality"), c)
    inc = corr.get(up.incident.id)
    assert inc is not None and inc.started_at == fell
    assert inc.start_estimate is not None and inc.start_estimate.metric == "quality"


def test_members_of_other_families_that_changed_with_the_first_sharpen_its_start() -> None:
    """A retrieval drift: time to first token fired at T0, prompt size 5 min later, both
    having stepped up at `fell`; output tokens (2 h earlier) and cost also fired. Prompt
    size shares the start and corroborates it; output tokens changed at another time and
    are left out; cost is derived from the sizes and never asked."""
    fell = T0 - T0 % 60 - 1800
    rng = np.random.default_rng(3)
    minutes = np.arange(T0 - T0 % 60 - 6 * 3600, T0 + 3600, 60.0)
    steps = {
        "ttft_ms": fell,
        "input_tokens_per_request": fell,
        "output_tokens_per_request": fell - 7200,
        "cost_per_request_usd": fell - 3600,
    }
    noise = {m: rng.normal(0, 0.7, len(minutes)) for m in steps}
    series = {m: (minutes >= at) * 1.0 + noise[m] for m, at in steps.items()}
    asked: list[str] = []

    def read(metric: str, _series: str, start: float, end: float) -> list[tuple[float, float, int]]:
        asked.append(metric)
        keep = (minutes >= start) & (minutes < end)
        values = series[metric][keep]
        return [(float(t), float(v), 2) for t, v in zip(minutes[keep], values, strict=True)]

    c = FeatureContext(FEATURE, {}, {}, {}, {}, history=read)
    corr = Correlator()
    (up,) = corr.on_signal(sig("ttft_ms", T0, detector="logmean"), c)
    for i, metric in enumerate(("input_tokens_per_request", "output_tokens_per_request")):
        corr.on_signal(sig(metric, T0 + 300 + 60 * i, detector="logmean"), c)
    corr.on_signal(sig("cost_per_request_usd", T0 + 420, detector="logmean"), c)
    inc = corr.get(up.incident.id)
    assert inc is not None and inc.start_estimate is not None
    assert len(inc.metrics) == 4
    assert inc.start_estimate.metric == "ttft_ms"
    assert inc.start_estimate.corroborated_by == ("input_tokens_per_request",)
    assert inc.started_at is not None and abs(inc.started_at - fell) <= 120
    assert "cost_per_request_usd" not in asked
    rec = inc.to_record()["start_estimate"]
    assert rec["corroborated_by"] == ["input_tokens_per_request"]
    assert StartEstimate.from_record(rec).corroborated_by == ("input_tokens_per_request",)


def test_a_second_rollout_starts_after_the_first_episode_of_its_series_cleared() -> None:
    """On-call probe: a bad prompt rolled out, its incident paged, it was rolled back and its
    refusals cleared; 14 min later it rolled out again. The new incident's start went to the
    first rollout, 83 min earlier (the largest change in the 4 h searched), and its summary
    blamed the first rollout's change. The first episode is explained by its own incident:
    the search of the same series starts after it cleared."""
    base = T0 - T0 % 60
    first_on, first_off = base - 5400, base - 1800
    second_on = base + 1200

    def read(metric: str, series: str, start: float, end: float) -> list[tuple[float, float, int]]:
        t, out = start - start % 60, []
        while t < end:
            bad = first_on <= t < first_off or t >= second_on
            out.append((t, 0.25 if bad else 0.02, 30))
            t += 60
        return out

    c = FeatureContext(
        FEATURE, {}, {}, {}, {}, history=read, proportions=frozenset({"refusal_rate"})
    )
    # Past `reopen_s` after the first resolved: a new incident, not the first one reopened.
    corr = Correlator(CorrelationPolicy(cooldown_s=900.0, reopen_s=600.0))
    (old,) = corr.on_signal(sig("refusal_rate", first_on + 300, n=30), c)
    corr.on_signal(sig("refusal_rate", first_off + 300, "cleared"), c)
    corr.tick(first_off + 300 + 900, lambda feature, start: c)  # the first incident resolves
    assert corr.get(old.incident.id).status == "resolved"  # type: ignore[union-attr]
    ups = corr.on_signal(sig("refusal_rate", second_on + 180, n=30), c)
    new = corr.get(ups[-1].incident.id)
    assert new is not None and new.id != old.incident.id
    assert new.start_estimate is not None and new.start_estimate.basis == "changepoint"
    assert new.started_at == second_on
