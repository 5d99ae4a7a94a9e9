"""Per-layer default rules: what watches each metric when the config says nothing.

The on-call practice behind these (DESIGN.md, "The four layers"):

- infra: static lines, because latency and error budgets are absolute. p95 > 10 s or p99 >
  20 s for two minutes (each watches its first day and disarms, with a log line, if the
  feature's normal p95 or p99 reaches its clear level: a default is no budget for a
  workload of long generations), error rate > 5% for two minutes, each with a lower clear
  level and a minimum number of calls (p95: 20, p99: 50; at low traffic a window's p99 is
  its slowest call; error rate: 100 calls, because 3 failures in 49 calls at night crossed
  5%).
  Relative regressions of per-call quantities use `logmean` (the mean of each call's log
  against a seasonal per-call baseline, evidence over 5/30/120 minutes): input and output
  tokens, cost, and latency, which is tested per output token and as time to first token
  (`ttft_ms`), not raw: latency is mostly generation time, so a burst of long answers moves
  output tokens alone instead of two symptoms. Throughput and p50 have no default: a traffic
  dip is usually the users, not a fault.
- api: `binomial` (exact binomial or beta-binomial tails over 5/30/120-minute windows of the
  calls themselves, against the hour's expected rate) on the k/n error kinds. Auth
  failures page alone (any burst of 401/403 means a key or permission broke) with a small
  effect floor; an availability collapse pages alone: the binomial rule once failures are
  3x the expected rate and 10 points above it (an outage at 2 calls/min is invisible to any
  minimum-n line), and the static lines below 80% over >= 100 calls or below 50% over >= 10
  calls for two minutes. The binomial availability rule discounts the two busiest minutes'
  excess (`burst_minutes=2`): paging alone, it must not page on a burst of 429s shorter
  than two minutes. All error kinds are one symptom for severity, so without these a
  35% 429/5xx surge on its own would only reach the warning route.
- behavioral: refusals up and format compliance down as `binomial` (effect floor 1.5x and
  0.3 points: refusal rates run from 0.2% to 5%, and a 1-point floor hid a 5.8x rise from
  0.24% in one evaluation world); output length mean both
  ways as `logmean`. `output_length_cv` is no longer a default symptom: the spread of a
  heavy-tailed length is owned by its largest call, and a longer-answers shift already
  shows in the mean (the per-call log variance is part of the logmean baseline).
- quality: one fused verdict per feature (`quality`, detector `fused`) over all its scores,
  each score's direction from its config (higher is better by default); no per-score
  default (see `_QUALITY`).
- anything else (custom `metric` events, one value per sample, no call count): the
  sequential residual detector (`detectors/sequential.py`), both directions. It learns the
  stream's level, a daily and weekly profile only where they reduce its error, its noise
  tail and autocorrelation, and derives its thresholds from a budget of one false firing per
  30 days of clean data per series (or per 1,000 samples, whichever is rarer);
  docs/detectors.md has the math.

Every value here is a starting point an operator overrides per metric in the config. The
evidence detectors' thresholds all follow from `BUDGET` (docs/detectors.md). For the other
kinds windows are the aggregator's: 5-minute call windows and 15-minute score windows every
15 s, so sample counts below read as 4 samples = 1 minute.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from detectors.base import Layer

BUDGET = 0.25
"""False firings per series per 30 days of clean traffic that the evidence detectors'
thresholds are derived from (docs/detectors.md "False-alarm budget"). A feature has at most
13 default evidence series, so 13 x 0.25 / 30 days = 0.76 a week at worst."""
ARM_S = 86_400.0
"""The latency lines' first day only watches (`detectors.static`): a default budget that the
feature's normal traffic reaches is disarmed, with a log line, instead of firing daily."""
COST_LOG_SCALE = 1e6  # the aggregator's log1p(cost in micro-dollars); daemon.layers too


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
                                                  for_s=120.0, clear=8_000.0, min_n=20,
                                                  arm_s=ARM_S),),
    ("infra", "latency_p99_ms"):           (_rule("static", threshold=20_000.0, op="above",
                                                  for_s=120.0, clear=16_000.0, min_n=50,
                                                  arm_s=ARM_S),),
    ("infra", "latency_per_output_token_ms"): (_rule("logmean", direction="up", budget=BUDGET),),
    ("infra", "ttft_ms"):                  (_rule("logmean", direction="up", budget=BUDGET),),
    ("infra", "throughput_rpm"):           (),
    ("infra", "error_rate"):               (_rule("static", threshold=0.05, op="above",
                                                  for_s=120.0, clear=0.03, min_n=100),),
    ("infra", "input_tokens_per_request"): (_rule("logmean", direction="up", budget=BUDGET),),
    ("infra", "output_tokens_per_request"): (_rule("logmean", direction="up", budget=BUDGET),),
    ("infra", "cost_per_request_usd"):     (_rule("logmean", direction="up",
                                                  unit_scale=COST_LOG_SCALE, budget=BUDGET),),
    # ---- api -----------------------------------------------------------------------------
    ("api", "rate_limited_rate"):          (_rule("binomial", direction="up", min_ratio=2.0,
                                                  min_abs_diff=0.02, budget=BUDGET),),
    ("api", "auth_failure_rate"):          (_rule("binomial", page_alone=True, direction="up",
                                                  min_ratio=2.0, min_abs_diff=0.005,
                                                  budget=BUDGET),),
    ("api", "provider_error_rate"):        (_rule("binomial", direction="up", min_ratio=2.0,
                                                  min_abs_diff=0.01, budget=BUDGET),),
    ("api", "availability"):               (_rule("binomial", page_alone=True,
                                                  direction="down", min_ratio=3.0,
                                                  min_abs_diff=0.1, burst_minutes=2,
                                                  budget=BUDGET),
                                            _rule("static", page_alone=True, threshold=0.5,
                                                  op="below", for_s=120.0, clear=0.8,
                                                  min_n=10),
                                            _rule("static", page_alone=True, threshold=0.8,
                                                  op="below", for_s=120.0, clear=0.95,
                                                  min_n=100)),
    ("api", "retry_rate"):                 (_rule("binomial", direction="up", min_ratio=2.0,
                                                  min_abs_diff=0.02, budget=BUDGET),),
    # ---- behavioral ----------------------------------------------------------------------
    ("behavioral", "refusal_rate"):        (_rule("binomial", direction="up", min_ratio=1.5,
                                                  min_abs_diff=0.003, budget=BUDGET),),
    ("behavioral", "format_compliance_rate"): (_rule("binomial", direction="down",
                                                     min_ratio=1.5, min_abs_diff=0.003,
                                                     budget=BUDGET),),
    ("behavioral", "output_length_mean"):  (_rule("logmean", direction="both", budget=BUDGET),),
    ("behavioral", "output_length_cv"):    (),
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
