"""Symptom families: the quantity each metric measures, which is what severity counts.

Several metrics often measure one quantity. When answers get longer, output tokens per
request, the mean output length, the spread of output lengths (cv) and the cost per request
all rise, from one cause; three latency quantiles rise in one latency spike; a 429 surge moves
every error metric. Counting metric names would let one noisy quantity corroborate itself and
page (every one of the 10 false pages of the independent evaluation was output-size metrics
agreeing with each other). So every metric declares its family here, once, and
`correlation.min_signals` counts distinct families (`correlator.severity`).

`METRIC_FAMILIES` is the table for the built-in metrics of the four layers (DESIGN.md "The
four layers"); a new built-in metric adds its line here (a test fails for a layer metric
without one). Quality scores (`score:<name>`) are all `quality`. Any other metric, such as a
custom `metric` event or an Alertmanager alert name, is a family of its own unless the config
puts it in one (`families:` globally or per feature; see `resolve_family`).

Derived families: `cost_per_request_usd` is priced input tokens plus priced output tokens,
so it rises with whichever of the two moves. It is therefore evidence of no independent
quantity: a derived family counts only when nothing but derived families fire (so a lone
cost rise is one symptom, the same as before), and it is never the second family that
makes a page. A cost that a user splits into input and output parts belongs in
`input_size` / `output_size`, not here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from types import MappingProxyType

__all__ = [
    "DERIVED_FAMILIES",
    "FAMILY_CHOICES",
    "METRIC_FAMILIES",
    "OWN",
    "Family",
    "counted_families",
    "default_family",
    "resolve_family",
]


class Family(StrEnum):
    """The independent quantities an LLM feature's metrics measure."""

    OUTPUT_SIZE = "output_size"  # how long the answers are: tokens, characters, their spread
    INPUT_SIZE = "input_size"  # how big the prompts are: input tokens (context stuffing)
    COST = "cost"  # money per call: derived from input and output size (see module doc)
    ERRORS = "errors"  # calls that fail or need retries: every error kind, availability
    LATENCY = "latency"  # how long calls take: quantiles, time to first token, time per token
    QUALITY = "quality"  # how good the answers are: every score of the feature
    COMPLIANCE = "compliance"  # whether the model did what was asked: refusals, format
    THROUGHPUT = "throughput"  # how many calls arrive


DERIVED_FAMILIES: frozenset[str] = frozenset({Family.COST})

CALL_FAMILIES: frozenset[str] = frozenset({Family.ERRORS, Family.COMPLIANCE})
"""The families whose metrics count anomalous calls (failed, refused, malformed): the flags
attribution compares per label value (`attribution.attribute`, `calls`)."""

OWN = "own"
"""Config value: the metric is a family of its own (undoes a default grouping)."""

FAMILY_CHOICES: tuple[str, ...] = (*(f.value for f in Family), OWN)
"""Every value a `families:` config entry accepts."""

METRIC_FAMILIES: Mapping[str, Family] = MappingProxyType(
    {
        # infra
        "latency_p50_ms": Family.LATENCY,
        "latency_p95_ms": Family.LATENCY,
        "latency_p99_ms": Family.LATENCY,
        "latency_per_output_token_ms": Family.LATENCY,
        "ttft_ms": Family.LATENCY,
        "throughput_rpm": Family.THROUGHPUT,
        "error_rate": Family.ERRORS,
        "input_tokens_per_request": Family.INPUT_SIZE,
        "output_tokens_per_request": Family.OUTPUT_SIZE,
        "cost_per_request_usd": Family.COST,
        # api
        "rate_limited_rate": Family.ERRORS,
        "auth_failure_rate": Family.ERRORS,
        "provider_error_rate": Family.ERRORS,
        "availability": Family.ERRORS,
        "retry_rate": Family.ERRORS,
        # behavioral
        "refusal_rate": Family.COMPLIANCE,
        "format_compliance_rate": Family.COMPLIANCE,
        "output_length_mean": Family.OUTPUT_SIZE,
        "output_length_cv": Family.OUTPUT_SIZE,
    }
)

_QUALITY_PREFIX = "score:"


def default_family(metric: str) -> str:
    """The family of a metric when the config says nothing: the table, `quality` for a score,
    otherwise the metric's own name (a family of its own)."""
    fam = METRIC_FAMILIES.get(metric)
    if fam is not None:
        return fam.value
    if metric.startswith(_QUALITY_PREFIX):
        return Family.QUALITY.value
    return metric


def resolve_family(metric: str, overrides: Sequence[Mapping[str, str]] = ()) -> str:
    """The family of `metric` given config maps, most specific first (a feature's
    `families`, then the global one). In each map an exact key wins over a `prefix*` glob
    (the longest prefix among globs); the first map with a match decides. `own` makes the
    metric a family of its own; no match anywhere falls back to `default_family`."""
    for mapping in overrides:
        chosen = mapping.get(metric)
        if chosen is None:
            globs = [k for k in mapping if k.endswith("*") and metric.startswith(k[:-1])]
            if globs:
                chosen = mapping[max(globs, key=len)]
        if chosen is not None:
            return metric if chosen == OWN else chosen
    return default_family(metric)


def counted_families(families: Iterable[str]) -> list[str]:
    """The families that count toward `min_signals`, in first-seen order.

    Derived families count only when nothing else is there: they corroborate nothing, but a
    lone cost rise is still one symptom (with `min_signals: 1` it pages as before)."""
    seen = list(dict.fromkeys(families))
    independent = [f for f in seen if f not in DERIVED_FAMILIES]
    return independent if independent else seen
