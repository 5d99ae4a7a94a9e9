"""Per-layer default rules: what watches each metric when the config says nothing.

The on-call practice behind these (DESIGN.md, "The four layers"):

- infra: static lines, because latency and error budgets are absolute. p95 > 10 s or p99 >
  20 s for two minutes, error rate > 5% for two minutes, each with a lower clear level and a
  minimum number of calls (error rate: 100 calls in the window, because 3 failures in 49 calls
  at night crossed 5% and paged in the incident eval). Token and cost inflation get an
  upward seasonal baseline (they are the infra_retrieval triage signal: a retrieval change
  that stuffs the context shows up here first; the hour profile keeps the daily swing out of
  sigma, so 20% is found, not only 50%).
  p95 also gets an upward seasonal rule for relative regressions far below the static line
  (3 sigma for 48 samples = 12 minutes: a sustained 1.8x is found, a 3-minute spike, which
  holds a 5-minute window's p95 up for ~8 minutes, is not). The token and cost rules trust a
  young hour bucket less (`full_n=480`: two hours of its samples) and keep the old EWMA's
  480-sample global memory: on a first day a provider outage (failed calls carry 0 output
  tokens) would otherwise become the hour's expectation, and the recovery would fire.
  Throughput and p50 have no default: a traffic dip is usually the users, not a fault.
- api: rate detectors (seasonal: an hour-of-week k/n profile) on the k/n error kinds. Auth
  failures page alone (any burst of 401/403 means a key or permission broke) with a small
  effect floor; an availability collapse pages alone through static rules: below 80% over
  >= 100 calls, or below 50% over >= 10 calls (a small feature's outage), for two minutes.
  All error kinds are one symptom for severity, so without these a 35% 429/5xx surge on its
  own would only reach the warning route.
- behavioral: refusals up and format compliance down as rates; output length mean (both
  ways) and its coefficient of variation (up) against a seasonal baseline.
- quality: one fused verdict per feature (`quality`, detector `fused`) over all its scores,
  each score's direction from its config (higher is better by default); no per-score
  default (see `_QUALITY`).
- anything else (custom `metric` events, one value per sample, no call count): the
  sequential residual detector (`detectors/sequential.py`), both directions. It learns the
  stream's level, a daily and weekly profile only where they reduce its error, its noise
  tail and autocorrelation, and derives its thresholds from a budget of one false firing per
  30 days of clean data per series (or per 1,000 samples, whichever is rarer);
  docs/detectors.md has the math.

Every value here is a starting point an operator overrides per metric in the config.
Windows are the aggregator's: 5-minute call windows and 15-minute score windows every 15 s,
so sample counts below read as 4 samples = 1 minute.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from detectors.base import Layer


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """One default detector on one metric; `params` go to `build_detector(kind, params)`."""

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)
    page_alone: bool = False


def _rule(kind: str, page_alone: bool = False, **params: Any) -> RuleSpec:
    return RuleSpec(kind, MappingProxyType(params), page_alone)


# fmt: off
_TABLE: Mapping[tuple[str, str], tuple[RuleSpec, ...]] = MappingProxyType({
    # ---- infra ---------------------------------------------------------------------------
    ("infra", "latency_p50_ms"):           (),
    ("infra", "latency_p95_ms"):           (_rule("static", threshold=10_000.0, op="above",
                                                  for_s=120.0, clear=8_000.0, min_n=20),
                                            _rule("seasonal", direction="up", threshold=3.0,
                                                  for_n=48, min_n=20, min_rel_sigma=0.03)),
    ("infra", "latency_p99_ms"):           (_rule("static", threshold=20_000.0, op="above",
                                                  for_s=120.0, clear=16_000.0, min_n=50),),
    ("infra", "throughput_rpm"):           (),
    ("infra", "error_rate"):               (_rule("static", threshold=0.05, op="above",
                                                  for_s=120.0, clear=0.03, min_n=100),),
    ("infra", "input_tokens_per_request"): (_rule("seasonal", direction="up", threshold=3.0,
                                                  for_n=8, min_n=20, min_rel_sigma=0.03, full_n=480,
                                                  global_half_life=480.0),),
    ("infra", "output_tokens_per_request"): (_rule("seasonal", direction="up", threshold=3.0,
                                                   for_n=8, min_n=20, min_rel_sigma=0.03,
                                                   full_n=480, global_half_life=480.0),),
    ("infra", "cost_per_request_usd"):     (_rule("seasonal", direction="up", threshold=3.0,
                                                  for_n=8, min_n=20, min_rel_sigma=0.03, full_n=480,
                                                  global_half_life=480.0),),
    # ---- api -----------------------------------------------------------------------------
    ("api", "rate_limited_rate"):          (_rule("rate", direction="up", min_n=30,
                                                  min_ratio=2.0, min_abs_diff=0.02),),
    ("api", "auth_failure_rate"):          (_rule("rate", page_alone=True, direction="up",
                                                  min_n=30, min_ratio=2.0,
                                                  min_abs_diff=0.005),),
    ("api", "provider_error_rate"):        (_rule("rate", direction="up", min_n=30,
                                                  min_ratio=2.0, min_abs_diff=0.01),),
    ("api", "availability"):               (_rule("rate", direction="down", min_n=30,
                                                  min_ratio=2.0, min_abs_diff=0.01),
                                            _rule("static", page_alone=True, threshold=0.5,
                                                  op="below", for_s=120.0, clear=0.8,
                                                  min_n=10),
                                            _rule("static", page_alone=True, threshold=0.8,
                                                  op="below", for_s=120.0, clear=0.95,
                                                  min_n=100)),
    ("api", "retry_rate"):                 (_rule("rate", direction="up", min_n=30,
                                                  min_ratio=2.0, min_abs_diff=0.02),),
    # ---- behavioral ----------------------------------------------------------------------
    ("behavioral", "refusal_rate"):        (_rule("rate", direction="up", min_n=30,
                                                  min_ratio=1.5, min_abs_diff=0.01),),
    ("behavioral", "format_compliance_rate"): (_rule("rate", direction="down", min_n=30,
                                                     min_ratio=1.5, min_abs_diff=0.01),),
    ("behavioral", "output_length_mean"):  (_rule("seasonal", direction="both", for_n=12,
                                                  min_n=20, min_rel_sigma=0.03),),
    ("behavioral", "output_length_cv"):    (_rule("seasonal", direction="up", for_n=12,
                                                  min_n=20, min_rel_sigma=0.03),),
})
# fmt: on

# Quality scores: every score of a feature feeds one fused verdict, the `quality` metric
# (detectors/quality.py): a CUSUM of the log-likelihood ratio of a 10% decline over all
# scores, its threshold from a budget of one false firing per feature per 30 days of 15-s
# ticks. The per-score series (`score:<name>`, the 15-minute window means) keep their samples
# for triage and /metrics but get no default detector: a lone per-score signal would open
# incidents the fused verdict does not, and the fused one is faster on every score mix
# (docs/detectors.md, "The quality default"). A config rule on `score:*` brings per-score detectors
# back; `direction` is filled in from the score's configured direction.
_QUALITY: tuple[RuleSpec, ...] = ()
QUALITY_METRIC = "quality"
_FUSED: tuple[RuleSpec, ...] = (_rule("fused", shift=0.1, budget_s=30 * 86_400.0, tick_s=15.0),)

# Custom `metric` events, fed per sample: no `n`, so no minimum. Parameters are the
# detector's own defaults (the false-alarm budget is its `budget_days=30`).
_OTHER: tuple[RuleSpec, ...] = (_rule("sequential", direction="both"),)


def default_rules(
    layer: Layer | str,
    metric: str,
    *,
    higher_is_better: bool | None = None,
    direction: str | None = None,
) -> tuple[RuleSpec, ...]:
    """The default detectors for one metric of one layer.

    For quality scores the alerting side is the bad one: `direction="down"` (higher is
    better, the default) or `"up"` (lower is better); say it with either `direction` or
    `higher_is_better` (both given must agree). Unknown metrics get the sequential residual
    detector.
    """
    if direction is not None and direction not in ("up", "down"):
        raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
    if direction is None:
        direction = "up" if higher_is_better is False else "down"
    elif higher_is_better is not None and (direction == "down") != higher_is_better:
        raise ValueError(f"direction {direction!r} contradicts higher_is_better={higher_is_better}")
    if metric == QUALITY_METRIC and layer == "quality":
        return _FUSED
    if metric.startswith("score:"):
        return tuple(_rule(r.kind, r.page_alone, **r.params, direction=direction) for r in _QUALITY)
    return _TABLE.get((layer, metric), _OTHER)


def default_table() -> Mapping[tuple[str, str], tuple[RuleSpec, ...]]:
    """The whole per-layer table (for docs and `check-config`)."""
    return _TABLE
