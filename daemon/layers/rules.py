"""Which detectors watch which series: configured rules over per-layer defaults.

Precedence, most specific first: a feature's own rules for a metric, then global `rules`,
then the per-layer defaults of `detectors.defaults`. Rules for a metric replace the defaults
for that metric (so an operator can swap a default EWMA for a static line) rather than adding
to them; `enabled: false` switches a metric off.

A split series (one value of a label in `aggregation.split_labels`, e.g. `segment=pro`) runs
its metric's rules whose threshold comes from a false-alarm budget, each with the budget
divided by the number of values that can be tested (`detectors.factory.split_params`), so
the values together spend no more than the whole-feature rule; rules of other kinds (static
lines) do not run per value. It has the same symptom family as its metric: a segment's
refusals and the feature's are one symptom.

The symptom family of each metric (what `correlation.min_signals` counts) is resolved here
too, with the same precedence: a feature's `families`, then the global `families`, then the
built-in table of `correlator.families`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from config.settings import RuleConfig, Settings
from correlator.families import resolve_family
from detectors.base import Detector, Layer, split_value
from detectors.defaults import default_rules
from detectors.factory import build_detector, split_params


@dataclass(frozen=True, slots=True)
class Rule:
    kind: str
    params: dict[str, Any]
    page_alone: bool

    def build(self) -> Detector:
        return build_detector(self.kind, self.params)


class RuleBook:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._cache: dict[tuple[str, Layer, str, bool], tuple[Rule, ...]] = {}
        agg = settings.aggregation
        self.split_labels = frozenset(agg.split_labels)
        # Values that can be tested per metric: the Bonferroni divisor of a split rule.
        self.split_tests = max(1, len(agg.split_labels) * agg.split_values)

    def is_split(self, series: str) -> bool:
        """Whether `series` is one value of a split label (`segment=pro`)."""
        return split_value(series, self.split_labels) is not None

    def rules_for(
        self, feature: str, layer: Layer, metric: str, series: str = ""
    ) -> tuple[Rule, ...]:
        split = bool(series) and self.is_split(series)
        key = (feature, layer, metric, split)
        rules = self._cache.get(key)
        if rules is None:
            rules = self._resolve(feature, layer, metric)
            if split:
                rules = self._split(rules)
            self._cache[key] = rules
        return rules

    def _split(self, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        out = []
        for rule in rules:
            params = split_params(rule.kind, rule.params, self.split_tests)
            if params is not None:
                out.append(Rule(rule.kind, params, rule.page_alone))
        return tuple(out)

    def family_for(self, feature: str, metric: str) -> str:
        """The symptom family a signal of this feature and metric counts in. Asked once per
        detector transition, not per sample, so it is not cached."""
        return resolve_family(metric, self._settings.family_maps(feature))

    def _resolve(self, feature: str, layer: Layer, metric: str) -> tuple[Rule, ...]:
        for configured in (self._settings.feature(feature).rules, self._settings.rules):
            matching = [r for r in configured if _matches(r, metric)]
            if matching:
                return tuple(
                    Rule(r.detector, dict(r.params), r.page_alone) for r in matching if r.enabled
                )
        direction = "higher"
        if metric.startswith("score:"):
            direction = self._settings.score_direction(feature, metric.removeprefix("score:"))
        return tuple(
            Rule(spec.kind, dict(spec.params), spec.page_alone)
            for spec in default_rules(layer, metric, higher_is_better=direction == "higher")
        )


def _matches(rule: RuleConfig, metric: str) -> bool:
    # "score:*" style globs let one rule cover every score name.
    if rule.metric.endswith("*"):
        return metric.startswith(rule.metric[:-1])
    return rule.metric == metric
