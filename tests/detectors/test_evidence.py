"""The evidence detectors (`binomial`, `logmean`) fed per-tick increments as the aggregator
sends them: the budget arithmetic, the exact tails, the targets of issue 10 on short
streams (the long version with clean weeks at 0.5-120 calls/min: eval/evidence_sim.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats
from scipy.special import ndtri

from detectors import BinomialDetector, TickStats, Transition, build_detector, default_rules
from detectors.evidence import _first_passage, window_alpha

T0 = 1_767_571_200.0  # Monday 2026-01-05 00:00 UTC
TICK = 15.0
H = 3600.0


def rate_stream(
    seed: int, hours: float, rpm: float, p: float, fault: tuple[float, float, float] | None
) -> list[tuple[float, TickStats]]:
    """Failures (k) of n calls per tick at a flat call rate; fault = (start_h, end_h, p)."""
    rng = np.random.default_rng(seed)
    ts = T0 + TICK * np.arange(int(hours * H / TICK))
    n = rng.poisson(rpm * TICK / 60.0, len(ts))
    rate = np.full(len(ts), p)
    if fault is not None:
        rate[(ts >= T0 + fault[0] * H) & (ts < T0 + fault[1] * H)] = fault[2]
    k = rng.binomial(n, rate)
    return [(float(t), TickStats(int(a), int(b))) for t, a, b in zip(ts, n, k, strict=True)]


def value_stream(
    seed: int, hours: float, rpm: float, fault: tuple[float, float, float] | None
) -> list[tuple[float, TickStats]]:
    """Lognormal per-call values (median 25, sigma 0.45 of log) as log1p sums per tick."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(int(hours * H / TICK)):
        t = T0 + TICK * i
        n = int(rng.poisson(rpm * TICK / 60.0))
        med = 25.0
        if fault is not None and fault[0] * H <= t - T0 < fault[1] * H:
            med *= fault[2]
        y = np.log1p(med * np.exp(0.45 * rng.standard_normal(n)))
        out.append((t, TickStats(n, 0, float(y.sum()), float((y**2).sum()), float((y**3).sum()))))
    return out


def firings(det_kind: str, params: dict[str, object], data, down: bool = False) -> list[Transition]:  # type: ignore[no-untyped-def]
    det = build_detector(det_kind, params)
    out = []
    for t, tick in data:
        if down:
            tick = TickStats(tick.n, tick.n - tick.k)
        tr = det.update(t, 0.0, tick.n, tick)
        if tr is not None and tr.state == "firing":
            out.append(tr)
    return out


def spec(layer: str, metric: str) -> dict[str, object]:
    rule = default_rules(layer, metric)[0]
    return dict(rule.params)


def test_window_thresholds_follow_the_budget() -> None:
    """budget 0.25 false firings per 30 days, three windows, one side: each threshold u
    solves (43,200 / 0.25) Psi(u) h(u^2 0.25 / W) = 0.25 / 3 (module doc of evidence)."""
    zs = []
    for w in (5, 30, 120):
        alpha = window_alpha(0.25, w, 3)
        u = -float(ndtri(alpha))
        rate = 43_200 / 0.25 * alpha * _first_passage(u * u * 0.25 / w)
        assert rate == pytest.approx(0.25 / 3, rel=1e-6)
        zs.append(u)
    assert zs == pytest.approx([4.75, 4.46, 4.16], abs=0.01)
    # Longer windows are read as often but move slower: fewer passages, a lower threshold;
    # a bigger budget lowers every threshold.
    assert zs[0] > zs[1] > zs[2]
    assert window_alpha(1.0, 30, 3) > window_alpha(0.25, 30, 3)
    det = build_detector("logmean", {"direction": "both"})
    one_sided = build_detector("logmean", {"direction": "up"})
    assert det._z[0] > one_sided._z[0]  # type: ignore[attr-defined]  # two sides split it


@pytest.mark.parametrize(("k", "n", "p"), [(5, 12, 0.005), (6, 50, 0.01), (2, 3, 0.005)])
def test_binomial_tail_is_exact(k: int, n: int, p: float) -> None:
    assert BinomialDetector.tail(k, n, p, 1.0) == pytest.approx(stats.binom.sf(k - 1, n, p))
    # with overdispersion the tail is the variance-matched beta-binomial: heavier
    over = BinomialDetector.tail(k, n, p, 2.0)
    rho = 1.0 / (n - 1)
    a, b = p * (1 / rho - 1), (1 - p) * (1 / rho - 1)
    assert over == pytest.approx(stats.betabinom.sf(k - 1, n, a, b))
    assert over > BinomialDetector.tail(k, n, p, 1.0)


# The targets are medians: <= 3 min at 10 calls/min, <= 10 min at 2 calls/min. The
# availability default discounts the two busiest minutes (`burst_minutes=2`) so a burst of
# 429s does not page alone, and its thresholds follow the budget's first-passage equation;
# over 8 seeds: 2.25-4.5 min (median 2.9) and 3.25-15 min (median 8.0).
@pytest.mark.parametrize(("rpm", "median_min"), [(10.0, 3.0), (2.0, 10.0)])
def test_provider_outage_is_found_at_low_traffic(rpm: float, median_min: float) -> None:
    """30% of calls failing against 0.5%; availability's binomial default (bad side = n-k)."""
    delays = []
    for seed in range(1, 9):
        data = rate_stream(seed, 8.0, rpm, 0.005, (6.0, 7.0, 0.3))
        fired = firings("binomial", spec("api", "availability"), data, down=True)
        assert fired and all(tr.ts >= T0 + 6 * H for tr in fired)
        # Availability fell: the signal says so (the change-point search reads the side).
        assert all(tr.direction == "down" for tr in fired)
        delays.append((fired[0].ts - (T0 + 6 * H)) / 60)
    assert float(np.median(delays)) <= median_min


def test_a_few_extra_429s_inside_one_minute_do_not_fire() -> None:
    data = rate_stream(3, 8.0, 10.0, 0.01, None)
    i = int(6 * H / TICK)
    t, tick = data[i]
    data[i] = (t, TickStats(tick.n + 6, tick.k + 6))  # six extra 429s in one tick
    assert firings("binomial", spec("api", "rate_limited_rate"), data) == []


def test_refusals_x4_at_10_calls_per_minute_are_found_within_45_minutes() -> None:
    """2% -> 8% at 10 calls/min: ~6 refusals over 6 expected after 10 minutes is not
    significant at this budget; the 30-minute window finds it (issue 10's 10-minute target
    for x3 is out of reach at a 2% base rate, docs/detectors.md)."""
    data = rate_stream(4, 8.0, 10.0, 0.02, (6.0, 7.0, 0.08))
    fired = firings("binomial", spec("behavioral", "refusal_rate"), data)
    assert fired and T0 + 6 * H <= fired[0].ts <= T0 + 6 * H + 45 * 60


@pytest.mark.parametrize("seed", [5, 6])
def test_latency_per_token_plus_40_percent_is_found_within_10_minutes(seed: int) -> None:
    data = value_stream(seed, 8.0, 10.0, (6.0, 7.0, 1.4))
    fired = firings("logmean", spec("infra", "latency_per_output_token_ms"), data)
    assert fired and T0 + 6 * H <= fired[0].ts <= T0 + 6 * H + 10 * 60


def test_state_round_trip_mid_stream_gives_identical_future() -> None:
    data = value_stream(7, 8.0, 10.0, (6.0, 7.0, 1.5))
    params = spec("infra", "input_tokens_per_request")
    a = build_detector("logmean", params)
    for t, tick in data[: len(data) // 2 + 240]:  # into the fault
        a.update(t, 0.0, tick.n, tick)
    b = type(a).from_state(json.loads(json.dumps(a.to_state())))
    rest = data[len(data) // 2 + 240 :]
    assert [a.update(t, 0.0, k.n, k) for t, k in rest] == [
        b.update(t, 0.0, k.n, k) for t, k in rest
    ]


@pytest.mark.parametrize("seed", [8, 9, 10])
def test_a_burst_of_429s_over_two_minutes_at_half_a_call_a_minute_does_not_page(
    seed: int,
) -> None:
    """The few_429s decoy at low traffic: 3-8 extra failed calls within 90 s straddle two
    minute slots; availability (pages alone) discounts the two busiest minutes."""
    data = rate_stream(seed, 10.0, 0.5, 0.005, None)
    i = int(8 * H / TICK)  # well after the warm-up (at 0.5 calls/min it takes ~6 h)
    for j in range(i - 240, i + 240):  # no stray failure within two hours (see binomial.py)
        t, tick = data[j]
        data[j] = (t, TickStats(tick.n, 0))
    for j, extra in ((i, 4), (i + 4, 3)):  # 4 in one minute, 3 in the next
        t, tick = data[j]
        data[j] = (t, TickStats(tick.n + extra, tick.k + extra))
    assert firings("binomial", spec("api", "availability"), data, down=True) == []


def test_logmean_does_not_test_a_window_of_a_few_calls() -> None:
    """A window mean of fewer than `min_calls` calls is owned by its largest call (a Pareto
    tail is exponential in log space): such a window is not tested, however far out."""
    det = build_detector("logmean", spec("infra", "output_tokens_per_request"))
    sigma2 = 0.45**2
    for n, expect_tested in ((3, False), (9, False), (10, True), (40, True)):
        # window sums [N, Y, E, V, K3]: every call 1.5 log units above its expectation
        sums = [float(n), 1.5 * n, 0.0, n * sigma2, 0.0]
        z, _ = det._window_z(0, sums)
        assert (z > 0.0) is expect_tested, (n, z)
    few = build_detector("logmean", {**spec("infra", "output_tokens_per_request"), "min_calls": 1})
    assert few._window_z(0, [3.0, 4.5, 0.0, 3 * sigma2, 0.0])[0] > 5.0
