"""Build detectors by kind from config params, and rebuild them from snapshots.

`build_detector` checks parameter names against the constructor before calling it, so a typo
in a config file reads "detector 'ewma': unknown parameter 'treshold'" and a forgotten one
"detector 'static': missing parameter 'threshold'" instead of a TypeError from deep inside
(`ParameterError`); bad values are rejected by the constructors with a ValueError naming the
parameter. `detector_from_state` dispatches on the snapshot's `kind`; each
`from_state` refuses a state version it does not know (ValueError), and the daemon then
starts that series fresh with a warning.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from detectors.base import Detector
from detectors.binomial import BinomialDetector
from detectors.burnrate import BurnRateDetector
from detectors.cusum import CusumDetector
from detectors.ewma import EwmaDetector
from detectors.logmean import LogMeanDetector
from detectors.quality import QualityFusion
from detectors.rate import RateDetector
from detectors.seasonal import SeasonalDetector
from detectors.sequential import SequentialDetector
from detectors.static import StaticThreshold

KINDS: Mapping[str, type[Detector]] = MappingProxyType(
    {
        cls.kind: cls
        for cls in (
            StaticThreshold,
            EwmaDetector,
            SeasonalDetector,
            RateDetector,
            CusumDetector,
            BurnRateDetector,
            BinomialDetector,
            LogMeanDetector,
            QualityFusion,
            SequentialDetector,
        )
    }
)

_REQUIRED: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        kind: tuple(
            name
            for name, p in inspect.signature(cls.__init__).parameters.items()
            if name != "self"
            and p.default is inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        )
        for kind, cls in KINDS.items()
    }
)


class ParameterError(ValueError):
    """A parameter a detector kind does not know, lacks, or cannot take: `reason` says which
    without the kind (a config error already names the rule's detector), str() with it."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(f"detector {kind!r}: {reason}")
        self.kind = kind
        self.reason = reason


_PARAMS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        kind: frozenset(
            name for name in inspect.signature(cls.__init__).parameters if name != "self"
        )
        for kind, cls in KINDS.items()
    }
)


def _kind_class(kind: str) -> type[Detector]:
    cls = KINDS.get(kind)
    if cls is None:
        raise ValueError(f"unknown detector kind {kind!r}; known: {', '.join(sorted(KINDS))}")
    return cls


def parameters(kind: str) -> frozenset[str]:
    """The parameter names a detector kind accepts."""
    _kind_class(kind)
    return _PARAMS[kind]


def build_detector(kind: str, params: Mapping[str, Any]) -> Detector:
    cls = _kind_class(kind)
    allowed = _PARAMS[kind]
    for key in params:
        if key not in allowed:
            raise ParameterError(
                kind, f"unknown parameter {key!r}; known: {', '.join(sorted(allowed))}"
            )
    for name in _REQUIRED[kind]:
        if name not in params:
            raise ParameterError(kind, f"missing parameter {name!r}")
    try:
        return cls(**dict(params))
    except TypeError as exc:  # e.g. a str where a number goes
        raise ParameterError(kind, str(exc)) from None


def detector_from_state(state: Mapping[str, Any]) -> Detector:
    kind = state.get("kind")
    if not isinstance(kind, str):
        raise ValueError("detector state has no 'kind'")
    return _kind_class(kind).from_state(dict(state))


def migrate_state(
    state: Mapping[str, Any], kind: str, params: Mapping[str, Any]
) -> Detector | None:
    """A detector of `kind` built from a snapshot of another kind, where the learned baseline
    carries over (a `rate` profile into `binomial`); None where it does not (the caller
    starts the series fresh and says so)."""
    if state.get("kind") == "rate" and kind == "binomial":
        build_detector(kind, params)  # parameter errors read as for any config rule
        return BinomialDetector.from_rate_state(dict(state), dict(params))
    return None


# Kinds whose threshold is derived from a false-alarm budget, and the parameter that holds it:
# false firings per 30 days (evidence detectors), or clean seconds per false firing (fused).
_PER_PERIOD_BUDGET = frozenset({"binomial", "logmean"})
_BUDGET_SECONDS = frozenset({"fused"})
SPLIT_WARMUP_MIN = 1440
"""Learned minutes before a per-value evidence rule tests (the whole-feature default: 120).
A value holds a fraction of the feature's calls, so in its first hours its expected rate
rests on a handful of events, and a test against a rate that poorly known fires far more
often than its budget says (the tuning worlds: 3 per-segment firings on the first day of 8
worlds, none on the six clean days after). A day of its own history fills every hour of
the day's profile once."""


def _default(kind: str, name: str) -> Any:
    return inspect.signature(_kind_class(kind).__init__).parameters[name].default


def split_params(kind: str, params: Mapping[str, Any], values: int) -> dict[str, Any] | None:
    """The params of a rule run once per tested label value (docs/detectors.md "Per-segment
    tests"): the rule's false-alarm budget shared by the `values` tests, so all of them
    together fire falsely no more often than the rule on the whole feature (Bonferroni).

    binomial, logmean: `budget` / values, and at least `SPLIT_WARMUP_MIN` of warm-up; fused:
    `budget_s` x values, or with an explicit CUSUM threshold `h`, h + ln(values) (Lorden's
    bound, ARL0 >= e^h). None for kinds whose threshold is no budget (a static line, an
    EWMA): their false-alarm rate cannot be shared out, so they do not run per value."""
    if values < 1:
        raise ValueError(f"values must be >= 1, got {values!r}")
    out = dict(params)
    if kind in _PER_PERIOD_BUDGET:
        out["budget"] = float(params.get("budget", _default(kind, "budget"))) / values
        warmup = int(params.get("warmup", _default(kind, "warmup")))
        out["warmup"] = max(warmup, SPLIT_WARMUP_MIN)
        return out
    if kind in _BUDGET_SECONDS:
        h = params.get("h")
        if h is not None:
            out["h"] = float(h) + math.log(values)
        else:
            out["budget_s"] = float(params.get("budget_s", _default(kind, "budget_s"))) * values
        return out
    return None
