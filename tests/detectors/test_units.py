"""Focused behaviour of each detector and of the defaults table."""

from __future__ import annotations

import calendar
import math

import pytest
from scipy.stats import binom, norm

from detectors import (
    BurnRateDetector,
    CusumDetector,
    EwmaDetector,
    RateDetector,
    RuleSpec,
    SeasonalDetector,
    build_detector,
    default_rules,
    hour_of_week,
)
from detectors.defaults import default_table
from detectors.rate import arcsine_z

T0 = 1_767_571_200.0  # Monday 2026-01-05 00:00 UTC


def test_hour_of_week_starts_monday_utc() -> None:
    assert hour_of_week(T0) == 0
    assert hour_of_week(T0 + 3599) == 0
    assert hour_of_week(T0 + 14 * 3600) == 14
    assert hour_of_week(T0 - 1) == 167  # Sunday 23:xx
    sat_1430 = calendar.timegm((2026, 1, 10, 14, 30, 0))
    assert hour_of_week(sat_1430) == 5 * 24 + 14
    assert hour_of_week(0) == 72  # the epoch: Thursday 00:00


@pytest.mark.parametrize(
    ("k", "n", "p0"),
    [(5, 30, 0.03), (9, 100, 0.03), (24, 200, 0.03), (8, 30, 0.1), (20, 1000, 0.01), (18, 50, 0.2)],
)
def test_arcsine_z_tracks_the_exact_binomial_tail(k: int, n: int, p0: float) -> None:
    exact = float(norm.isf(binom.sf(k - 1, n, p0)))
    z = arcsine_z(k, n, p0)
    assert exact - 0.6 <= z <= exact + 0.1  # close, and never more alarming than exact


def test_rate_min_n_and_effect_size() -> None:
    det = RateDetector(prior_rate=0.02, prior_n=10_000, for_n=1)
    assert det.update(T0, 3 / 5, 5) is None  # 3 refusals of 5: too few requests
    assert det.update(T0 + 15, 0.08, 200) is not None  # 4x over 200 requests fires
    big = RateDetector(prior_rate=0.02, prior_n=10_000_000, for_n=1, min_abs_diff=0.0)
    # 2.2% vs 2.0% over a million requests is very significant and not worth a page.
    assert big.update(T0, 0.022, 1_000_000) is None
    assert big.firing is False


def test_rate_down_direction_tests_the_bad_side() -> None:
    det = RateDetector(direction="down", prior_rate=0.995, prior_n=50_000, for_n=2)
    assert det.baseline == pytest.approx(0.995)
    assert det.update(T0, 0.99, 500) is None  # 2x failures, under the 1% absolute floor
    assert det.update(T0 + 15, 0.95, 500) is None
    tr = det.update(T0 + 30, 0.95, 500)
    assert tr is not None and tr.state == "firing" and tr.direction == "down"
    assert tr.baseline == pytest.approx(0.995, abs=1e-4)


def test_rate_baseline_is_protected_while_firing() -> None:
    det = RateDetector(prior_rate=0.02, prior_n=1000, for_n=1, half_life=10)
    det.update(T0, 0.3, 200)
    assert det.firing
    for i in range(200):
        det.update(T0 + 15 * (i + 1), 0.3, 200)
    assert det.baseline == pytest.approx(0.02)


def test_ewma_single_spike_never_fires_and_flat_series_tolerates_wiggle() -> None:
    det = EwmaDetector(warmup=10, for_n=3)
    for i in range(100):
        det.update(T0 + i, 100.0)
    assert det.update(T0 + 100, 101.0) is None  # 1% wiggle on a flat series: floor on sigma
    assert det.update(T0 + 101, 1e6) is None  # one spike
    assert det.update(T0 + 102, 100.0) is None
    assert det.baseline == pytest.approx(100.0, rel=0.05)
    trs = [det.update(T0 + 103 + i, 200.0) for i in range(3)]
    assert trs[:2] == [None, None]
    assert trs[2] is not None and trs[2].direction == "up" and trs[2].baseline is not None


def test_ewma_direction_filter() -> None:
    det = EwmaDetector(warmup=10, for_n=1, direction="up")
    for i in range(50):
        det.update(T0 + i, 100.0 + (i % 3))
    assert det.update(T0 + 50, 10.0) is None
    assert det.update(T0 + 51, 300.0) is not None


def test_seasonal_blends_in_the_daily_profile() -> None:
    det = SeasonalDetector(warmup=20, for_n=1, full_n=4)
    # two days of a strong daily cycle at 15-min ticks
    for i in range(2 * 96):
        ts = T0 + 900 * i
        det.update(ts, 100.0 + 50.0 * math.sin(2 * math.pi * i / 96))
    ts = T0 + 2 * 86_400 + 6 * 3600  # 06:00, the daily peak
    assert det.update(ts, 150.0) is None
    assert det.baseline == pytest.approx(150.0, rel=0.05)


def test_cusum_needs_enough_scores() -> None:
    det = CusumDetector(warmup=10, seasonal=False)
    for i in range(50):
        det.update(T0 + 15 * i, 0.8, 100)
    for i in range(500):
        assert det.update(T0 + 15 * (50 + i), 0.1, 10) is None  # n < 30: ignored
    assert det.statistic == 0.0


def test_burn_rate_fast_pair_fires_and_clears() -> None:
    det = BurnRateDetector(slo=0.999)
    ts = T0
    for _ in range(240):  # an hour of clean traffic at 15 s
        assert det.update(ts, 0.0, 100) is None
        ts += 15
    fired = None
    for i in range(240):  # 2% errors = 20x the 0.1% budget
        tr = det.update(ts, 0.02, 100)
        ts += 15
        if tr is not None:
            fired = i
            assert tr.state == "firing" and tr.score > 14.4
            break
    assert fired is not None
    # the 1 h window reaches 14.4x after about 14.4/20 of an hour
    assert 40 * 60 <= fired * 15 <= 50 * 60
    cleared = None
    for i in range(100):
        tr = det.update(ts, 0.0, 100)
        ts += 15
        if tr is not None:
            assert tr.state == "cleared"
            cleared = i
            break
    assert cleared is not None and cleared * 15 <= 300  # the 5-minute window recovers


def test_burn_rate_short_burst_does_not_fire() -> None:
    det = BurnRateDetector(slo=0.995)
    ts = T0
    for i in range(6 * 240):
        bad = 0.5 if 600 <= i < 608 else 0.001  # a 2-minute burst of 50% errors
        assert det.update(ts, bad, 100) is None
        ts += 15


def test_burn_rate_good_fraction_input_and_gaps() -> None:
    det = BurnRateDetector(slo=0.99, value_is="good")
    assert det.baseline == pytest.approx(0.99)
    det.update(T0, 1.0, 100)
    # a gap longer than every window resets the ring
    assert det.update(T0 + 10 * 86_400, 1.0, 100) is None
    assert det.to_state()["sum_tot"][-1] == pytest.approx(100.0)


def test_defaults_build_and_follow_the_practice() -> None:
    for (_layer, _metric), specs in default_table().items():
        for spec in specs:
            assert isinstance(spec, RuleSpec)
            build_detector(spec.kind, spec.params)
    assert default_rules("infra", "throughput_rpm") == ()
    assert default_rules("infra", "latency_p50_ms") == ()
    (p95,) = default_rules("infra", "latency_p95_ms")
    assert p95.kind == "static" and p95.params["threshold"] == 10_000
    # Relative latency regressions: per output token and time to first token, per call.
    for metric in ("latency_per_output_token_ms", "ttft_ms"):
        (rel,) = default_rules("infra", metric)
        assert rel.kind == "logmean" and rel.params["direction"] == "up"
    assert default_rules("behavioral", "output_length_cv") == ()
    auth = default_rules("api", "auth_failure_rate")
    assert auth[0].kind == "binomial" and auth[0].page_alone
    avail = default_rules("api", "availability")
    assert [r.kind for r in avail] == ["binomial", "static", "static"]
    # Collapse pages alone: below 50% on a small feature, below 80% with enough calls.
    assert all(r.page_alone and r.params["op"] == "below" for r in avail[1:])
    assert [(r.params["threshold"], r.params["min_n"]) for r in avail[1:]] == [
        (0.5, 10),
        (0.8, 100),
    ]
    # Quality: one fused verdict per feature; the per-score series have no default detector
    # (their directions travel with the observations, see test_quality.py).
    assert default_rules("quality", "score:helpfulness") == ()
    assert default_rules("quality", "score:toxicity", higher_is_better=False) == ()
    (fused,) = default_rules("quality", "quality")
    assert fused.kind == "fused" and fused.params["budget_s"] == 30 * 86_400.0
    assert build_detector(fused.kind, fused.params).h == pytest.approx(math.log(172_800))
    with pytest.raises(ValueError, match="direction"):
        default_rules("quality", "score:x", direction="up", higher_is_better=True)
    (custom,) = default_rules("behavioral", "my_custom_metric")
    assert custom.kind == "sequential" and custom.params["direction"] == "both"
