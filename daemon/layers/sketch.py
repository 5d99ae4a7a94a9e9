"""Latency quantiles in fixed memory: a log-bucket histogram with a relative-error guarantee.

Bucket i holds values in (γ^(i-1), γ^i] with γ = (1+α)/(1-α); reporting 2γ^i/(γ+1) for a
value in that bucket is off by at most α relative (the DDSketch construction, Masson et al.
2019). With α = 1% a window of any size costs at most a few hundred counters, and windows
merge by adding counters, which is what trailing windows over buckets need.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

ALPHA = 0.01
GAMMA = (1 + ALPHA) / (1 - ALPHA)
_INV_LOG_GAMMA = 1.0 / math.log(GAMMA)
MIN_VALUE = 1e-3  # below 1 µs (in ms) everything counts as zero


def bucket_of(value: float) -> int:
    """Bucket index of a value (0 holds zero and values below MIN_VALUE)."""
    if value <= MIN_VALUE:
        return 0
    return math.ceil(math.log(value) * _INV_LOG_GAMMA) + 10_000


def value_of(index: int) -> float:
    if index == 0:
        return 0.0
    return 2.0 * GAMMA ** (index - 10_000) / (GAMMA + 1.0)


def quantiles(hist: dict[int, int], qs: Iterable[float]) -> list[float | None]:
    """Nearest-rank quantiles (rank ⌈q·n⌉) of a merged histogram; None when empty."""
    total = sum(hist.values())
    qs = list(qs)
    if total == 0:
        return [None for _ in qs]
    keys = sorted(hist)
    out: list[float | None] = []
    for q in qs:
        rank = max(1, math.ceil(q * total))
        seen = 0
        for k in keys:
            seen += hist[k]
            if seen >= rank:
                out.append(value_of(k))
                break
    return out
