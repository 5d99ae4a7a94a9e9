"""One contract suite that every detector kind passes (after river's `checks/common.py`)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import detectors
from detectors import (
    KINDS,
    Detector,
    Direction,
    Transition,
    build_detector,
    detector_from_state,
)

Stream = list[tuple[float, float, int | None]]
T0 = 1_767_571_200.0  # Monday 2026-01-05 00:00 UTC

# Small warm-ups so a short stream exercises warm-up, firing and clearing.
PARAMS: dict[str, dict[str, Any]] = {
    "static": {"threshold": 2.0, "for_s": 120.0, "clear": 1.5, "min_n": 5},
    "ewma": {"warmup": 30, "for_n": 3, "min_n": 5},
    "seasonal": {"warmup": 30, "for_n": 3, "min_n": 5},
    "rate": {"warmup": 30, "min_n": 30},
    "cusum": {"warmup": 30, "min_n": 5, "clear_n": 5},
    "burn_rate": {"slo": 0.99},
    # Fed per sample (no TickStats): each update is one minute's increment.
    "binomial": {"warmup": 30},
    "logmean": {"warmup": 30, "direction": "both"},
    "fused": {"min_obs": 30, "min_n": 5},
    "sequential": {"warmup": 30, "min_n": 5},
}
RATE_KINDS = {"rate", "burn_rate", "binomial"}


def stream(kind: str, seed: int = 7, n_ticks: int = 3000, tick_s: float = 60.0) -> Stream:
    """A noisy series with two sustained faults and some low-n samples."""
    rng = np.random.default_rng(seed)
    out: Stream = []
    for i in range(n_ticks):
        ts = T0 + i * tick_s
        fault = 900 <= i < 1000 or 2000 <= i < 2060
        n = int(rng.integers(40, 200)) if i % 50 else 2
        if kind in RATE_KINDS:
            p = 0.2 if fault else 0.02
            value = float(rng.binomial(n, p)) / n
        else:
            level = 1.0 + 0.1 * math.sin(2 * math.pi * i * tick_s / 86_400)
            value = level * (1.0 + 0.03 * float(rng.standard_normal()))
            if fault:
                value *= 2.5 if i < 1500 else 0.6
        out.append((ts, value, n))
    return out


def run(det: Detector, data: Stream) -> list[Transition]:
    out = []
    for ts, value, n in data:
        tr = det.update(ts, value, n)
        if tr is not None:
            out.append(tr)
    return out


def fresh(kind: str) -> Detector:
    return build_detector(kind, PARAMS[kind])


def reload(det: Detector) -> Detector:
    return detector_from_state(json.loads(json.dumps(det.to_state(), allow_nan=False)))


@pytest.fixture(params=sorted(KINDS))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_every_kind_is_covered() -> None:
    assert set(PARAMS) == set(KINDS)


def test_protocol_and_kind(kind: str) -> None:
    det = fresh(kind)
    assert isinstance(det, Detector)
    assert det.kind == kind
    assert det.firing is False
    state = det.to_state()
    assert state["kind"] == kind and "v" in state
    json.dumps(state, allow_nan=False)


def test_fires_and_clears_on_the_stream(kind: str) -> None:
    trs = run(fresh(kind), stream(kind))
    states = [t.state for t in trs]
    assert "firing" in states and "cleared" in states, kind
    # transitions alternate, starting with firing
    assert all(s == ("firing" if i % 2 == 0 else "cleared") for i, s in enumerate(states))
    for t in trs:
        assert isinstance(t.direction, Direction)
        assert math.isfinite(t.score) and math.isfinite(t.value)


def test_deterministic(kind: str) -> None:
    data = stream(kind)
    assert run(fresh(kind), data) == run(fresh(kind), data)


@pytest.mark.parametrize("split", [100, 950, 1200, 2030, 2900])
def test_state_round_trip_gives_identical_future(kind: str, split: int) -> None:
    data = stream(kind)
    whole = fresh(kind)
    expected = [t for t in run(whole, data) if t.ts >= data[split][0]]
    first = fresh(kind)
    run(first, data[:split])
    second = reload(first)
    assert second.firing == first.firing
    assert run(second, data[split:]) == expected
    assert second.to_state() == whole.to_state()


def _leaves(obj: object) -> int:
    if isinstance(obj, dict):
        return sum(_leaves(v) for v in obj.values())
    if isinstance(obj, list):
        return sum(_leaves(v) for v in obj)
    return 1


def test_bounded_memory(kind: str) -> None:
    """Once every hour-of-week bucket has been seen (8 days), the state stops growing."""
    data = stream(kind, n_ticks=8000, tick_s=180.0)  # 16.7 days
    det = fresh(kind)
    sizes: list[int] = []
    leaves: list[int] = []
    for i, (ts, value, n) in enumerate(data):
        det.update(ts, value, n)
        if i % 400 == 399 and ts - T0 > 8 * 86_400:
            sizes.append(len(json.dumps(det.to_state())))
        if i % 400 == 399 and ts - T0 > 8 * 86_400:
            leaves.append(_leaves(det.to_state()))
    assert len(sizes) >= 5
    # The same number of numbers forever; only their digits vary (counts are capped).
    assert len(set(leaves)) == 1
    assert max(sizes) <= sizes[0] * 1.25
    assert max(sizes) < 32_000


def test_warm_up_is_silent(kind: str) -> None:
    if kind == "static":
        pytest.skip("a static line has no baseline to learn")
    det = fresh(kind)
    for i in range(19):  # 19 x 15 s: inside every kind's warm-up (30 samples, or 300 s)
        value = 1.0 if kind in RATE_KINDS else (1.0 if i < 10 else 50.0)
        assert det.update(T0 + 15 * i, value, 100) is None


def test_non_finite_and_low_n_are_ignored(kind: str) -> None:
    data = stream(kind)
    det = fresh(kind)
    run(det, data[:1000])
    before = det.to_state()
    assert det.update(data[1000][0], float("nan"), 100) is None
    assert det.to_state() == before
    # burn_rate and the evidence kinds count every event: a window has no minimum n.
    if kind not in ("burn_rate", "binomial", "logmean"):
        assert det.update(data[1000][0], 0.5, 1) is None
        assert det.to_state() == before


def test_from_state_rejects_unknown_version(kind: str) -> None:
    det = fresh(kind)
    run(det, stream(kind)[:200])
    state = det.to_state() | {"v": 999}
    with pytest.raises(ValueError, match="version"):
        detector_from_state(state)


BAD_PARAMS: dict[str, list[tuple[str, Any]]] = {
    "static": [("threshold", math.inf), ("op", "sideways"), ("for_s", -1.0), ("min_n", -1)],
    "ewma": [
        ("threshold", 0.0),
        ("clear", 9.0),
        ("direction", "left"),
        ("for_n", 0),
        ("half_life", -3.0),
        ("alpha", 1.5),
        ("warmup", 1),
        ("min_rel_sigma", -0.1),
    ],
    "seasonal": [
        ("threshold", -1.0),
        ("direction", "sideways"),
        ("bucket_half_life", 0.0),
        ("global_half_life", -1.0),
        ("full_n", 0),
        ("smooth", "yes"),
    ],
    "rate": [
        ("direction", "both"),
        ("min_n", 0),
        ("min_ratio", 0.5),
        ("min_abs_diff", 1.5),
        ("prior_rate", 1.2),
        ("half_life", 0.0),
        ("clear_n", 0),
    ],
    "cusum": [("k", -0.1), ("h", 0.0), ("max_step", 0.01), ("direction", "both"), ("min_n", -2)],
    "fused": [
        ("direction", "both"),
        ("shift", 0.0),
        ("h", -1.0),
        ("budget_s", 0.0),
        ("half_life_s", math.inf),
        ("z_clip", 0.0),
        ("max_obs", 100.0),
        ("evidence_burst", 50.0),
        ("evidence_per_min", 0.0),
        ("burst_obs", 0.5),
        ("memory_obs", 1.0),
        ("min_obs", 1),
        ("max_sources", 0),
        ("min_n", -1),
    ],
    "sequential": [
        ("direction", "sideways"),
        ("budget_days", 0.0),
        ("budget_samples", 5),
        ("k", 0.0),
        ("level_half_life", -1.0),
        ("season_buckets", 0),
        ("week_weeks", math.inf),
        ("tail_memory", 3.0),
        ("warmup", 1),
        ("clear", 0.0),
        ("clear_n", 0),
    ],
    "burn_rate": [
        ("slo", 1.0),
        ("pairs", [[300, 3600, 14.4]]),
        ("pairs", []),
        ("slot_s", 0.0),
        ("value_is", "ugly"),
        ("min_events", -1.0),
    ],
}


def bad_cases() -> Iterator[tuple[str, str, Any]]:
    for kind, cases in BAD_PARAMS.items():
        for name, value in cases:
            yield kind, name, value


@pytest.mark.parametrize(("kind_", "name", "value"), list(bad_cases()))
def test_parameter_validation_names_the_parameter(kind_: str, name: str, value: Any) -> None:
    params = dict(PARAMS[kind_]) | {name: value}
    with pytest.raises(ValueError, match=name):
        build_detector(kind_, params)


def test_unknown_parameter_and_kind() -> None:
    with pytest.raises(ValueError, match="detector 'ewma': unknown parameter 'zz'"):
        build_detector("ewma", {"zz": 1})
    with pytest.raises(ValueError, match="unknown detector kind 'nope'"):
        build_detector("nope", {})
    with pytest.raises(ValueError, match="kind"):
        detector_from_state({"v": 1})


def test_public_api() -> None:
    for name in detectors.__all__:
        assert hasattr(detectors, name), name
    factories: list[Callable[..., Detector]] = list(KINDS.values())
    assert len(factories) == 10
