"""Default static lines watch their first `arm_s` of data and disarm when the series'
normal values reach their clear level (`detectors.static`, issue 10: p95/p99 lines fired
tens of times a feature-week on workloads of long generations)."""

from __future__ import annotations

import pytest

from detectors import build_detector, default_rules
from detectors.static import StaticThreshold

DAY = 86_400.0


def run(det: StaticThreshold, values: list[tuple[float, float]]) -> list[str]:
    out = []
    for ts, v in values:
        tr = det.update(ts, v, 100)
        if tr is not None:
            out.append(tr.state)
    return out


def test_a_line_inside_the_normal_range_disarms_and_says_why() -> None:
    det = StaticThreshold(10_000.0, "above", for_s=120.0, clear=8_000.0, min_n=20, arm_s=DAY)
    normal = [(t * 15.0, 9_000.0 if t % 500 == 0 else 4_000.0) for t in range(6_000)]
    assert run(det, normal) == []
    assert det.disarmed is not None and "9000" in det.disarmed
    later = [(DAY + t * 15.0, 30_000.0) for t in range(100)]
    assert run(det, later) == []  # disarmed for good


def test_a_line_with_headroom_arms_after_a_day_and_fires() -> None:
    det = StaticThreshold(10_000.0, "above", for_s=120.0, clear=8_000.0, min_n=20, arm_s=DAY)
    early = [(t * 15.0, 4_000.0) for t in range(5_760)]
    early[100] = (early[100][0], 7_000.0)  # high but inside the clear level
    assert run(det, early) == []
    assert det.disarmed is None
    breach = [(DAY + t * 15.0, 12_000.0) for t in range(20)]
    assert run(det, breach) == ["firing"]


def test_a_breach_while_arming_is_not_fired_and_disarms() -> None:
    det = StaticThreshold(10_000.0, "above", for_s=0.0, clear=8_000.0, arm_s=3_600.0)
    assert run(det, [(0.0, 4_000.0), (60.0, 12_000.0), (120.0, 4_000.0)]) == []
    assert run(det, [(3_700.0, 12_000.0)]) == []
    assert det.disarmed is not None


def test_configured_lines_are_armed_at_once() -> None:
    det = StaticThreshold(10_000.0, "above", for_s=0.0, clear=8_000.0)
    assert run(det, [(0.0, 12_000.0)]) == ["firing"]


@pytest.mark.parametrize("metric", ["latency_p95_ms", "latency_p99_ms"])
def test_default_latency_lines_arm_for_a_day(metric: str) -> None:
    (spec,) = default_rules("infra", metric)
    assert spec.params["arm_s"] == DAY
    det = build_detector(spec.kind, dict(spec.params))
    assert isinstance(det, StaticThreshold) and det.arm_s == DAY


def test_state_round_trips_and_v1_state_loads_armed() -> None:
    det = StaticThreshold(10_000.0, "above", for_s=0.0, clear=8_000.0, arm_s=60.0)
    run(det, [(0.0, 9_000.0), (61.0, 1.0)])
    again = StaticThreshold.from_state(det.to_state())
    assert again.disarmed == det.disarmed is not None
    v1 = {"v": 1, "kind": "static", "threshold": 5.0, "op": "above", "for_s": 0.0,
          "clear": 4.0, "min_n": 1, "firing": False, "pending_since": None}  # fmt: skip
    old = StaticThreshold.from_state(v1)
    assert run(old, [(0.0, 6.0)]) == ["firing"]
