"""The custom-metric default (`SequentialDetector`) against its stated false-alarm budget.

Clean synthetic streams of the kinds a custom metric can be (Gaussian, heavy-tailed, AR(1)
autocorrelated, daily cycle, random walk plus noise, skewed): the number of firings per 8,640
samples (30 days at one sample per 5 minutes, the default budget's unit at that interval) must
stay within the budget of one. Then the other side: steps, spikes and drops are found, a
permanent shift stops firing after a bounded time, and the calibration matches its formulas.
The long version (two seeds, 100,000 samples per stream, more stream kinds) is
`python bench/bench_sequential_calibration.py`.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from detectors import SequentialDetector, Transition, build_detector, default_rules
from detectors.sequential import cusum_h, tail_threshold

T0 = 1_767_571_200.0  # Monday 2026-01-05 00:00 UTC
DT = 300.0
N = 40_000  # 139 days at 5 minutes
BUDGET_SAMPLES = 30 * 86_400 / DT  # 8,640


def clean(kind: str, rng: np.random.Generator, n: int = N) -> npt.NDArray[np.float64]:
    ts = T0 + DT * np.arange(n)
    e = rng.standard_normal(n)
    if kind == "gaussian":
        return 10.0 + e
    if kind == "student_t3":
        return 10.0 + rng.standard_t(3, n)
    if kind == "ar1":
        out = np.empty(n)
        acc = 0.0
        for i in range(n):
            acc = 0.8 * acc + e[i]
            out[i] = acc
        return 10.0 + out
    if kind == "daily":
        return 100.0 + 20.0 * np.sin(2 * np.pi * (ts % 86_400) / 86_400) + e
    if kind == "random_walk":
        return 50.0 + np.cumsum(0.2 * rng.standard_normal(n)) + e
    if kind == "lognormal":
        return np.exp(0.5 * e)
    raise ValueError(kind)


def firings(det: SequentialDetector, values: npt.NDArray[np.float64], t0: float = T0) -> list[int]:
    out = []
    for i, v in enumerate(values.tolist()):
        tr = det.update(t0 + DT * i, v)
        if tr is not None and tr.state == "firing":
            out.append(i)
    return out


@pytest.mark.parametrize(
    "kind", ["gaussian", "student_t3", "ar1", "daily", "random_walk", "lognormal"]
)
def test_clean_streams_stay_within_the_budget(kind: str) -> None:
    det = SequentialDetector()
    fired = firings(det, clean(kind, np.random.default_rng(2026)))
    per_budget = len(fired) / (N / BUDGET_SAMPLES)
    assert det.alpha == pytest.approx(1 / BUDGET_SAMPLES)
    assert per_budget <= 1.0, f"{kind}: {len(fired)} firings = {per_budget:.2f} per 8,640"


def test_the_default_for_custom_metrics_is_this_detector() -> None:
    (rule,) = default_rules("infra", "my_queue_depth")
    assert rule.kind == "sequential"
    assert isinstance(build_detector(rule.kind, rule.params), SequentialDetector)


def _with_fault(kind: str, at: int, size: float, length: int, seed: int = 7) -> list[int]:
    values = clean("gaussian", np.random.default_rng(seed), 6000)
    if kind == "step":
        values[at:] += size
    elif kind == "burst":
        values[at : at + length] += size
    return firings(SequentialDetector(), values)


@pytest.mark.parametrize(("size", "max_delay"), [(8.0, 0), (4.0, 3), (2.0, 12), (-2.0, 12)])
def test_steps_are_found_with_delays_that_shrink_with_size(size: float, max_delay: int) -> None:
    """A sustained shift of `size` sigma: a large one by the extreme test on its first
    sample, a small one by the CUSUM after about h / (|size| - k) samples."""
    fired = _with_fault("step", 4000, size, 0)
    assert fired and fired[0] >= 4000, fired
    assert fired[0] - 4000 <= max_delay
    # and the permanent shift becomes the baseline: one episode, nothing after it
    assert len(fired) == 1


def test_a_spike_fires_once_and_the_baseline_does_not_learn_it() -> None:
    values = clean("gaussian", np.random.default_rng(3), 6000)
    values[4000] += 12.0
    det = SequentialDetector()
    fired = firings(det, values)
    assert fired == [4000]
    assert det.baseline is not None and abs(det.baseline - 10.0) < 0.3


def test_a_permanent_shift_clears_in_bounded_time() -> None:
    values = clean("gaussian", np.random.default_rng(5), 6000)
    values[3000:] += 30.0  # 30 sigma, for good
    det = SequentialDetector()
    cleared: list[Transition] = []
    for i, v in enumerate(values.tolist()):
        tr = det.update(T0 + DT * i, v)
        if tr is not None and tr.state == "cleared":
            cleared.append(tr)
    # level half-life 3 h = 36 samples: 30 sigma decays to the 2-sigma calm band in about
    # log2(15) = 4 half-lives, then clear_n calm samples
    assert len(cleared) == 1
    assert cleared[0].ts - (T0 + DT * 3000) <= (4 * 36 + 2 * 12) * DT
    assert not det.firing


def test_warm_up_never_fires() -> None:
    det = SequentialDetector()
    for i in range(det.warmup):
        assert det.update(T0 + DT * i, 1.0 if i < 50 else 1000.0) is None


def test_calibration_follows_its_formulas() -> None:
    # Siegmund: ARL0 = (exp(2kb) - 2kb - 1) / (2k^2), b = h + 1.166
    for arl in (1e3, 34_560.0, 1e6):
        h = cusum_h(arl, 0.5)
        b = h + 1.166
        assert (math.exp(b) - b - 1) / 0.5 == pytest.approx(arl, rel=1e-6)
    # the tail threshold: the larger of an exponential and a Pareto tail beyond 2.5
    thr = tail_threshold(0.01, 0.5, 0.2, 1e-5)
    assert thr == pytest.approx(max(2.5 + 0.5 * math.log(1e3), 2.5 * 1e3**0.2))
    det = SequentialDetector()
    firings(det, clean("gaussian", np.random.default_rng(1), 400))
    assert det.alpha == pytest.approx(DT / (30 * 86_400))
    assert det.threshold == pytest.approx(cusum_h(4 / det.alpha, 0.5))
    # at 15-s samples the per-sample budget is 20x smaller, so h is larger
    fast = SequentialDetector()
    for i in range(400):
        fast.update(T0 + 15.0 * i, 10.0 + math.sin(i))
    assert fast.alpha == pytest.approx(15.0 / (30 * 86_400))
    assert fast.threshold > det.threshold
