"""Synthetic quality-score streams for the fused verdict (tests and eval/quality_eval.py).

They follow daemon/worlds.py's score model: per-call latent quality (base 0.65-0.9, drifting
by 2% over four days), judge scores = latent + N(0, 0.12) clipped to [0, 1] on `judge_share`
of calls, user thumbs (0/1, P(up) proportional to the latent quality) on `feedback_share` of
calls, golden runs of `cases` cases (N(golden, 0.06)) every `golden_min` minutes, at Poisson
calls with a daily cycle. A fault multiplies every quality by (1 - decline), as a step or a
ramp; a score burst adds 1-3 judge scores in [0, 0.2] per tick for one minute. Observations
go to `QualityFusion.observe` per 15-s tick, one part per score name, as the aggregator hands
them over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from detectors.base import ScoreObs
from detectors.defaults import default_rules
from detectors.factory import build_detector
from detectors.quality import QualityFusion

TICK = 15.0
DAY = 86_400.0
T0 = 1_793_577_600.0  # a Monday


@dataclass(frozen=True)
class Mix:
    rpm: float
    judge_share: float
    feedback_share: float
    golden_min: float | None
    cases: int = 15


def fused() -> QualityFusion:
    (spec,) = default_rules("quality", "quality")
    det = build_detector(spec.kind, spec.params)
    assert isinstance(det, QualityFusion)
    return det


def run(
    mix: Mix,
    seed: int,
    days: float,
    fault_at: float | None = None,
    decline: float = 0.0,
    ramp_s: float = 0.0,
    burst_at: float | None = None,
    sources: tuple[str, ...] = ("judge", "golden", "user_feedback"),
    det: QualityFusion | None = None,
) -> list[tuple[float, str]]:
    """Transitions (ts, state) of the default fused detector (or `det`) over one stream."""
    rng = np.random.default_rng(seed)
    det = fused() if det is None else det
    base = float(rng.uniform(0.65, 0.9))
    golden = float(rng.uniform(0.7, 0.95))
    thumbs = float(rng.uniform(0.6, 0.9))
    phase = float(rng.uniform(0, 2 * math.pi))
    peak = float(rng.uniform(0, 24))
    g_phase = float(rng.uniform(0, 1))
    out: list[tuple[float, str]] = []
    n_ticks = int(days * DAY / TICK)
    g_every = None if mix.golden_min is None else mix.golden_min * 60.0
    next_golden = None if g_every is None else T0 + g_phase * g_every
    for i in range(n_ticks):
        ts = T0 + (i + 1) * TICK
        hour = (ts / 3600.0) % 24
        season = math.exp(0.5 * math.cos(2 * math.pi * (hour - peak) / 24)) / 1.0635
        drift = 1.0 + 0.02 * math.sin(2 * math.pi * ts / (4 * DAY) + phase)
        f = 1.0
        if fault_at is not None and ts >= fault_at:
            ramp = 1.0 if ramp_s <= 0 else min(1.0, (ts - fault_at) / ramp_s)
            f = 1.0 - decline * ramp
        calls = int(rng.poisson(mix.rpm * season * TICK / 60.0))
        parts: list[ScoreObs] = []
        if calls:
            q = np.clip(base * drift * f * (1 + 0.03 * rng.standard_normal(calls)), 0, 1)
            if "judge" in sources:
                j = q[rng.random(calls) < mix.judge_share]
                if len(j):
                    vals = np.clip(j + 0.12 * rng.standard_normal(len(j)), 0, 1)
                    parts.append(ScoreObs("judge", tuple(np.round(vals, 4).tolist())))
            if "user_feedback" in sources:
                fb = q[rng.random(calls) < mix.feedback_share]
                if len(fb):
                    up = rng.random(len(fb)) < np.clip(thumbs * fb / base, 0, 1)
                    parts.append(ScoreObs("user_feedback", tuple(up.astype(float).tolist())))
        if burst_at is not None and burst_at <= ts < burst_at + 60.0:
            # The aggregator hands over one part per score name and tick: merge.
            k = int(rng.integers(1, 4))
            bad = tuple(rng.uniform(0, 0.2, k).tolist())
            judge = [p for p in parts if p.name == "judge"]
            parts = [p for p in parts if p.name != "judge"]
            parts.append(ScoreObs("judge", (judge[0].values if judge else ()) + bad))
        if "golden" in sources and next_golden is not None and g_every is not None:
            while next_golden <= ts:
                g = np.clip(golden * f * drift + 0.06 * rng.standard_normal(mix.cases), 0, 1)
                parts.append(ScoreObs("golden", (float(np.mean(g)),)))
                next_golden += g_every
        if not parts:
            continue
        tr = det.observe(ts, tuple(parts))
        if tr is not None:
            out.append((tr.ts, tr.state))
    return out
