"""The fused quality verdict (`fused`, detectors/quality.py) on per-observation streams of
judge scores, user thumbs and golden runs (tests/detectors/quality_gen.py). The long version
with more traffic mixes and seeds is eval/quality_eval.py (figures in docs/detectors.md)."""

from __future__ import annotations

import json
import math

import pytest

from detectors import ScoreObs, build_detector, detector_from_state
from detectors.quality import QualityFusion, budget_threshold
from tests.detectors.quality_gen import DAY, T0, Mix, fused, run

BUSY = Mix(10.0, 0.2, 0.02, 30)  # the target mix: judge on 20% of calls, golden / 30 min
SMALL = Mix(2.0, 0.2, 0.02, 30)


def first_firing(trs: list[tuple[float, str]], after: float) -> float | None:
    """Minutes from `after` to the first firing; fails if anything fired before."""
    for ts, state in trs:
        if state == "firing":
            assert ts >= after, f"fired {(after - ts) / 60:.0f} min before the fault"
            return (ts - after) / 60.0
    return None


def test_threshold_is_the_budget_formula() -> None:
    assert budget_threshold(30 * DAY, 15.0) == pytest.approx(math.log(172_800))
    assert fused().h == pytest.approx(12.06, abs=0.01)
    assert build_detector("fused", {"budget_s": 7 * DAY}).h == pytest.approx(math.log(40_320))


@pytest.mark.parametrize("seed", [1, 2])
def test_clean_days_stay_quiet(seed: int) -> None:
    assert run(BUSY, seed, days=5.0) == []


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_ten_percent_decline_is_found_within_45_minutes_and_sooner_than_judge_alone(
    seed: int,
) -> None:
    onset = T0 + 3 * DAY + 3600 * (seed % 24)
    days = 3.2 + (seed % 24) / 24
    delay = first_firing(run(BUSY, seed, days, onset, 0.10), onset)
    assert delay is not None and delay <= 45
    judge_only = first_firing(run(BUSY, seed, days, onset, 0.10, sources=("judge",)), onset)
    assert judge_only is None or judge_only >= delay


@pytest.mark.parametrize("seed", [11, 12])
def test_excursion_start_is_near_a_step_and_survives_a_snapshot(seed: int) -> None:
    """The CUSUM's last reset before it fires is Page's estimate of the change time: the
    correlator's start when its change-point search finds nothing."""
    onset = T0 + 3 * DAY + 3600 * (seed % 24)
    det = fused()
    trs = run(BUSY, seed, 3.1 + (seed % 24) / 24, onset, 0.10, det=det)
    assert trs and trs[0][1] == "firing"
    began = det.excursion_start
    assert began is not None and abs(began - onset) <= 15 * 60
    again = detector_from_state(json.loads(json.dumps(det.to_state())))
    assert isinstance(again, QualityFusion) and again.excursion_start == began


def test_small_feature_decline_is_found_through_golden_runs() -> None:
    onset = T0 + 3 * DAY + 5 * 3600
    delay = first_firing(run(SMALL, 21, 3.4, onset, 0.10), onset)
    assert delay is not None and delay <= 75  # two golden runs at most, plus the judge


def test_one_hour_ramp_is_found() -> None:
    onset = T0 + 3 * DAY + 14 * 3600
    delay = first_firing(run(BUSY, 31, 3.8, onset, 0.10, ramp_s=3600.0), onset)
    assert delay is not None and delay <= 90


@pytest.mark.parametrize("seed", [41, 42, 43])
def test_a_burst_of_bad_scores_never_fires(seed: int) -> None:
    burst = T0 + 3 * DAY + 3600 * (seed % 24)
    assert run(Mix(10.0, 0.5, 0.05, 15), seed, 3.2 + (seed % 24) / 24, burst_at=burst) == []


def _warm(det: QualityFusion, start: float, higher: bool = True) -> float:
    """Two days of a judge (0.8 +/- 0.1, 4 a minute) and a golden run every 30 min."""
    ts = start
    for i in range(2 * 24 * 240):
        ts = start + 15.0 * i
        parts = [ScoreObs("judge", (0.8 + 0.1 * math.sin(i * 1.7),), higher)]
        if i % 120 == 0:
            parts.append(ScoreObs("golden", (0.9 + 0.01 * math.sin(i * 0.3),), higher))
        assert det.observe(ts, parts) is None
    return ts


def test_one_catastrophic_golden_run_or_score_never_fires() -> None:
    det = fused()
    ts = _warm(det, T0)
    before = det.statistic
    assert det.observe(ts + 15, [ScoreObs("golden", (0.0,))]) is None
    assert det.statistic <= before + det.max_obs
    assert det.observe(ts + 30, [ScoreObs("judge", (0.0,))]) is None
    assert not det.firing


def test_lower_is_better_scores_fire_on_the_way_up_only() -> None:
    up, down = fused(), fused()
    ts = _warm(up, T0, higher=False)
    _warm(down, T0, higher=False)
    fired_up = fired_down = False
    for i in range(1, 241):  # an hour
        t = ts + 15.0 * i
        wiggle = 0.1 * math.sin(i * 1.7)
        fired_up |= up.observe(t, [ScoreObs("judge", (0.92 + wiggle,), False)]) is not None
        fired_down |= down.observe(t, [ScoreObs("judge", (0.68 + wiggle,), False)]) is not None
    assert fired_up and up.firing
    assert not fired_down and not down.firing


def test_the_transition_reads_as_relative_quality() -> None:
    det = fused()
    ts = _warm(det, T0)
    tr = None
    for i in range(1, 241):
        tr = det.observe(ts + 15.0 * i, [ScoreObs("judge", (0.68 + 0.1 * math.sin(i * 1.7),))])
        if tr is not None:
            break
    assert tr is not None and tr.state == "firing" and tr.baseline == 1.0
    assert 0.75 < tr.value < 0.95  # -15% measured, within the noise
    assert det.source_baseline("judge") == pytest.approx(0.8, abs=0.01)
    assert det.source_baseline("nope") is None


def test_state_round_trips_mid_decline_and_stays_bounded() -> None:
    onset = T0 + 2 * DAY
    whole = fused()
    half = fused()
    ts = _warm(whole, T0)
    _warm(half, T0)
    names = [f"extra-{k}" for k in range(40)]  # more names than max_sources
    for i in range(1, 200):
        t = ts + 15.0 * i
        parts = [
            ScoreObs("judge", (0.7 + 0.1 * math.sin(i * 1.7),)),
            ScoreObs(names[i % 40], (1.0,)),
        ]
        a = whole.observe(t, parts)
        if i == 100:
            half = detector_from_state(json.loads(json.dumps(half.to_state(), allow_nan=False)))
            assert isinstance(half, QualityFusion)
        b = half.observe(t, parts)
        assert a == b
    assert half.to_state() == whole.to_state()
    assert len(whole.to_state()["sources"]) == whole.max_sources
    assert whole.ignored_sources > 0
    assert onset < ts + 15.0 * 200


def test_the_fused_verdict_is_in_the_quality_family() -> None:
    """Per-score signals (config rules on `score:*`) and the fused verdict are one symptom."""
    from correlator.families import resolve_family

    assert resolve_family("quality") == resolve_family("score:judge") == "quality"
