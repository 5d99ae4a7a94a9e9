"""The seasonal rate detector and the seasonal token/cost/latency defaults.

A k/n metric with a strong daily cycle (a bad rate of 3% at night, 1% by day) and a weekend
shift: the hour profile makes the night normal at night and abnormal in the afternoon."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from detectors import (
    RateDetector,
    RuleSpec,
    Transition,
    build_detector,
    default_rules,
    hour_of_week,
)
from tests.detectors.gen import (
    LevelSpec,
    RateSpec,
    Series,
    Shift,
    at,
    level_series,
    rate_series,
    ticks,
)
from tests.detectors.test_statistical import delay_after, run_defaults

REFUSAL = ("behavioral", "refusal_rate")
LATENCY = ("infra", "latency_p95_ms")
# Bad rate 0.02 x (1 - 0.5 cos(hour - 14 h)): 1.0% at 14:00, 3.0% at 02:00; weekends 1.3x.
CYCLE = RateSpec(p=0.02, daily_amp=-0.5, weekend_factor=1.3, n_peak=1500)
NIGHT_RATE = 0.02 * (1 + 0.5 * 0.966)  # 03:00 (cos 165 degrees)
# p95 over 5-minute windows every 15 s: 15% noise correlated over 20 ticks.
P95 = LevelSpec(base=2500, daily_amp=0.2, noise_rel=0.15, corr_ticks=20)


def cycle(seed: int, days: float, spec: RateSpec = CYCLE) -> Series:
    return rate_series(np.random.default_rng(seed), ticks(days), spec)


def run(det: RateDetector, data: Series) -> list[Transition]:
    out = []
    for ts, value, n in data:
        tr = det.update(ts, value, n)
        if tr is not None:
            out.append(tr)
    return out


# The `rate` kind with the parameters it shipped with as the refusal default (the default is
# now `binomial`, tests/detectors/test_evidence.py); the kind stays available for config rules.
FORMER_REFUSAL = {"direction": "up", "min_n": 30, "min_ratio": 1.5, "min_abs_diff": 0.01}
# The seasonal p95 rule that was the default for relative latency regressions (now `logmean`
# on latency per output token and on ttft_ms); kept as a test of the `seasonal` kind.
FORMER_P95 = RuleSpec(
    "seasonal",
    {"direction": "up", "threshold": 3.0, "for_n": 48, "min_n": 20, "min_rel_sigma": 0.03},
)


def run_spec(spec: RuleSpec, data: Series) -> list[tuple[str, Transition]]:
    det = build_detector(spec.kind, spec.params)
    out = []
    for ts, value, n in data:
        tr = det.update(ts, value, n)
        if tr is not None:
            out.append((det.kind, tr))
    return out


def default_refusal_detector(**changes: object) -> RateDetector:
    det = build_detector("rate", FORMER_REFUSAL | changes)
    assert isinstance(det, RateDetector)
    return det


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_daily_and_weekly_rate_cycle_gives_zero_signals_in_fourteen_days(seed: int) -> None:
    assert run_defaults(REFUSAL, cycle(seed, 14)) == []


@pytest.mark.parametrize("seed", [51, 52, 53])
def test_rate_jump_3x_at_noon_is_found_on_a_daily_cycle(seed: int) -> None:
    onset = at(8, 12.0)  # Tuesday noon, second week: ~1.1% -> ~3.4%, the night-time level
    spec = replace(CYCLE, shifts=(Shift(onset, 3600, 3.0),))
    events = run_defaults(REFUSAL, cycle(seed, 9, spec))
    # Worse than the window rate rule, and said so in docs/detectors.md: with ~6,000 calls a
    # minute the binomial default fires for a few minutes on the first Saturday night
    # (this world's 1.3x weekend step, met before the hour-of-week profile has a Saturday).
    first_weekend = (at(5, 0.0), at(7, 0.0))
    early = [tr for _, tr in events if tr.ts < onset]
    assert all(first_weekend[0] <= tr.ts < first_weekend[1] for tr in early)
    assert len(early) <= 6  # up to three short firings (seeds 51-53)
    delay = delay_after([e for e in events if e[1].ts >= onset], onset)
    # <= 3 min (was 2 with the window rate rule): the binomial default wants the excess in
    # two minutes, not one (the busiest minute counts for at most one event more than the
    # second busiest), so a burst inside one minute cannot fire it alone.
    assert delay is not None and delay <= 3 * 60


@pytest.mark.parametrize("seed", [81, 82])
def test_night_rate_is_normal_at_night_but_not_in_the_afternoon(seed: int) -> None:
    """The 03:00 refusal rate (2.9%) at 14:00 (normally 1%) fires; every night before, the
    same rate at 03:00 did not."""
    spec = RateSpec(p=0.02, daily_amp=-0.5, n_peak=1500)
    data = cycle(seed, 10, spec)
    onset = at(9, 14.0)
    rng = np.random.default_rng(seed + 1000)
    bad = (data.ts >= onset) & (data.ts < onset + 1800)
    assert data.n is not None
    value = data.value.copy()
    value[bad] = rng.binomial(data.n[bad], NIGHT_RATE) / data.n[bad]
    trs = run(default_refusal_detector(), Series(data.ts, value, data.n))
    assert [t.state for t in trs] == ["firing", "cleared"]
    fired = trs[0]
    assert onset <= fired.ts <= onset + 2 * 60 and fired.direction == "up"
    assert fired.baseline is not None and fired.baseline == pytest.approx(0.01, rel=0.25)
    assert onset + 1800 <= trs[1].ts <= onset + 1800 + 10 * 60


def test_hour_profile_separates_night_and_day() -> None:
    det = default_refusal_detector()
    run(det, cycle(5, 8, RateSpec(p=0.02, daily_amp=-0.5, n_peak=1500)))
    night, day = det.expected(at(8, 2.0)), det.expected(at(8, 14.0))
    assert night is not None and day is not None
    assert night == pytest.approx(0.03, rel=0.15)
    assert day == pytest.approx(0.01, rel=0.15)
    flat = default_refusal_detector(seasonal=False)
    run(flat, cycle(5, 8, RateSpec(p=0.02, daily_amp=-0.5, n_peak=1500)))
    assert flat.expected(at(8, 2.0)) == flat.expected(at(8, 14.0))


def test_blending_starts_global_then_hour_of_day_then_hour_of_week() -> None:
    # warm-up (raw learning) covers day 0 up to 06:00
    det = RateDetector(warmup=48, full_n=4, for_n=1, min_n=10, threshold=50.0, clear=1.0)
    t0 = at(0, 0.0)
    # Day 0: 1% at every hour but 05:00, where it is 5%.
    for i in range(24 * 8):  # 8 samples an hour
        ts = t0 + 450 * i
        det.update(ts, 0.05 if int(ts // 3600) % 24 == 5 else 0.01, 1000)
    mid5 = at(1, 5.5)  # Tuesday 05:30: hour-of-day known, hour-of-week not
    assert hour_of_week(mid5) == 29
    e = det.expected(mid5)
    assert e is not None and e == pytest.approx(0.05, rel=0.01)
    # A bucket seen once weighs 1/full_n: one Tuesday 05:00 sample at 4% (also pooled into
    # the 05:00 hour of day: 8 x 50 + 40 of 9 x 1000) moves the expectation a quarter of the
    # way from the hour of day to the hour of week.
    det.update(at(1, 5.49), 0.04, 1000)
    e = det.expected(mid5)
    day = 440 / 9000
    assert e is not None and e == pytest.approx(day + 0.25 * (0.04 - day), rel=0.01)


def test_learning_is_winsorized_around_the_expectation() -> None:
    det = RateDetector(prior_rate=0.02, prior_n=100_000, for_n=1, min_ratio=10.0)
    det.update(at(0, 14.5), 0.05, 1000)  # z ~ 6 but under the effect size: learned, clipped
    state = det.to_state()
    k = hour_of_week(at(0, 14.5))
    # clipped at 2 binomial sigmas: 20 + 2 sqrt(20 x 0.98) = 28.85 events, not 50
    assert state["week"][0][k] == pytest.approx(20 + 2 * math.sqrt(19.6), rel=1e-6)


def test_rate_state_round_trip_mid_stream_gives_identical_future() -> None:
    onset = at(9, 14.0)
    spec = replace(CYCLE, shifts=(Shift(onset, 3600, 3.0),))
    data = list(cycle(3, 10, spec))
    split = next(i for i, (ts, _, _) in enumerate(data) if ts >= onset + 600)  # while firing
    whole = default_refusal_detector()
    expected = [t for t in (whole.update(*row) for row in data) if t is not None]
    first = default_refusal_detector()
    before = [t for t in (first.update(*row) for row in data[:split]) if t is not None]
    assert first.firing
    second = RateDetector.from_state(json.loads(json.dumps(first.to_state(), allow_nan=False)))
    after = [t for t in (second.update(*row) for row in data[split:]) if t is not None]
    assert before + after == expected
    assert second.to_state() == whole.to_state()
    assert second.to_state()["v"] == 2


def test_version_1_state_is_migrated_to_an_empty_hour_profile() -> None:
    old = RateDetector(prior_rate=0.02, prior_n=5000, for_n=1, seasonal=False)
    old.update(at(0, 1.0), 0.3, 200)  # firing
    v1 = old.to_state()
    v1 = {k: v for k, v in v1.items() if k not in ("week", "day", "last")} | {"v": 1}
    v1["params"] = {
        k: v for k, v in v1["params"].items() if k not in ("seasonal", "bucket_half_life", "full_n")
    }
    det = RateDetector.from_state(v1)
    assert det.seasonal and det.firing
    assert det.baseline == pytest.approx(0.02)
    assert det.expected(at(3, 14.0)) == pytest.approx(0.02)
    state = det.to_state()
    assert state["v"] == 2 and state["bad"] == v1["bad"] and state["trials"] == v1["trials"]
    assert state["week"][2] == [0] * 168 and state["day"][2] == [0] * 24
    with pytest.raises(ValueError, match="version 3"):
        RateDetector.from_state(state | {"v": 3})


def test_non_seasonal_state_has_no_profile() -> None:
    det = RateDetector(seasonal=False)
    state = det.to_state()
    assert state["week"] == [[], [], []] and state["day"] == [[], [], []]
    assert len(json.dumps(state)) < 600
    with pytest.raises(ValueError, match="seasonal"):
        RateDetector(seasonal="no")  # type: ignore[arg-type]


def test_prior_rate_still_skips_the_warm_up_and_is_protected_per_hour() -> None:
    det = RateDetector(prior_rate=0.02, prior_n=1000, for_n=1, half_life=10)
    tr = det.update(at(0, 14.0), 0.3, 200)
    assert tr is not None and tr.state == "firing"
    for i in range(1, 400):  # 100 minutes firing: no level learns anything
        det.update(at(0, 14.0) + 15 * i, 0.3, 200)
    state = det.to_state()
    assert state["week"][2] == [0] * 168 and state["day"][2] == [0] * 24
    assert det.baseline == pytest.approx(0.02)


# ---- seasonal tokens, cost and latency -------------------------------------------------


@pytest.mark.parametrize(
    "metric", ["input_tokens_per_request", "output_tokens_per_request", "cost_per_request_usd"]
)
def test_token_and_cost_defaults_are_per_call_log_means_upward(metric: str) -> None:
    (rule,) = default_rules("infra", metric)
    assert rule.kind == "logmean" and rule.params["direction"] == "up"


@pytest.mark.parametrize("seed", [91, 92, 93])
def test_token_inflation_of_20_percent_is_found(seed: int) -> None:
    key = ("infra", "input_tokens_per_request")
    onset = at(9, 14.0)
    spec = LevelSpec(base=1800, daily_amp=0.05, noise_rel=0.05, shifts=(Shift(onset, 3600, 1.2),))
    data = level_series(np.random.default_rng(seed), ticks(10), spec)
    delay = delay_after(run_defaults(key, data), onset)
    assert delay is not None and delay <= 10 * 60


def p95(seed: int, days: float, *shifts: Shift) -> Series:
    spec = replace(P95, shifts=shifts)
    return level_series(np.random.default_rng(seed), ticks(days), spec)


@pytest.mark.parametrize("seed", [11, 12])
def test_latency_fourteen_clean_days_with_window_correlated_noise_are_quiet(seed: int) -> None:
    assert run_spec(FORMER_P95, p95(seed, 14)) == []


@pytest.mark.parametrize("seed", [101, 102, 103])
def test_latency_regression_of_1_8x_for_an_hour_is_found(seed: int) -> None:
    onset = at(9, 11.0)
    events = run_spec(FORMER_P95, p95(seed, 10, Shift(onset, 3600, 1.8)))
    delay = delay_after(events, onset)
    assert delay is not None and delay <= 30 * 60
    assert all(kind == "seasonal" for kind, _ in events)  # far below the 10 s static line


@pytest.mark.parametrize("seed", [111, 112, 113])
def test_latency_spike_of_three_minutes_is_ignored(seed: int) -> None:
    # A 3-minute 2.5x spike of slow calls holds the 5-minute window's p95 up for ~8 minutes.
    spikes = [Shift(at(8 + d, h), 480, 2.5) for d, h in ((0, 14.0), (1, 3.0), (1, 20.5))]
    assert run_spec(FORMER_P95, p95(seed, 10, *spikes)) == []
    assert run_defaults(LATENCY, p95(seed, 10, *spikes)) == []  # the static line neither
