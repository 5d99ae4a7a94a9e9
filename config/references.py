"""Checks across settings: names that must refer to something that exists.

A rule on a misspelled metric (`latncy_p95_ms`, `scor:*`) validates field by field but can
never fire; a route to an unknown receiver can never page. These checks run on the validated
settings (the `Settings` model validator) and, when some fields did not validate, on the raw
file data too, so `check-config` reports field errors and reference errors in one pass.

Which metric names a rule may name (docs/detectors.md "Rules"):
- the metrics the daemon computes (the layer tables: `latency_p95_ms`, `availability`, ...)
  and the fused `quality` verdict;
- `score:<name>` for any score name (scores are the client's names), or `score:*`;
- a custom `metric` event's name when it is declared under `custom_metrics` (globally, or in
  the feature for that feature's rules). Custom names are the client's, so without the
  declaration a typo could not be told from a custom metric;
- a `prefix*` pattern only when it can match one of those.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

from config.receivers import effective_receivers, validate_routes

SCORE_PREFIX = "score:"


def computed_metrics() -> tuple[str, ...]:
    """Every metric name the daemon computes (the default-rule tables of `detectors`)."""
    from detectors.defaults import QUALITY_METRIC, default_table

    names = dict.fromkeys(metric for _, metric in default_table())
    names[QUALITY_METRIC] = None
    return tuple(names)


def _custom_matches(pattern: str, custom: Iterable[str]) -> bool:
    """Whether a rule's name or `prefix*` can match one of the declared custom names, which
    may be globs themselves."""
    glob = pattern.endswith("*")
    prefix = pattern[:-1] if glob else pattern
    for name in custom:
        if name.endswith("*"):
            declared = name[:-1]
            if prefix.startswith(declared) or (glob and declared.startswith(prefix)):
                return True
        elif (glob and name.startswith(prefix)) or name == pattern:
            return True
    return False


def rule_metric_error(pattern: str, custom: Sequence[str], known: Sequence[str]) -> str | None:
    """None when a rule's `metric` can name an existing metric; else the message, with the
    closest names (difflib) as a did-you-mean."""
    if pattern.endswith("*"):
        prefix = pattern[:-1]
        if (
            any(name.startswith(prefix) for name in known)
            or SCORE_PREFIX.startswith(prefix)
            or prefix.startswith(SCORE_PREFIX)
            or _custom_matches(pattern, custom)
        ):
            return None
        what = f"pattern {pattern!r} matches no known metric"
    else:
        if pattern in known or _custom_matches(pattern, custom):
            return None
        if pattern.startswith(SCORE_PREFIX) and len(pattern) > len(SCORE_PREFIX):
            return None
        what = f"unknown metric {pattern!r}"
    candidates = [*known, SCORE_PREFIX + "*", *custom]
    close = difflib.get_close_matches(pattern, candidates, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{what}{hint} (custom `metric` event names must be listed in custom_metrics)"


def rule_errors(
    global_rules: Sequence[tuple[str, str]],
    feature_rules: Mapping[str, Sequence[tuple[str, str]]],
    global_custom: Sequence[str],
    feature_custom: Mapping[str, Sequence[str]],
) -> list[str]:
    """Errors for rules naming no metric. Rules are (YAML path of `metric`, name) pairs.

    A global rule applies to every feature, so it may name a custom metric any feature
    declares; a feature's rule may name the global ones and its own."""
    known = computed_metrics()
    errors: list[str] = []
    everywhere = [*global_custom, *(n for names in feature_custom.values() for n in names)]
    for path, metric in global_rules:
        message = rule_metric_error(metric, everywhere, known)
        if message:
            errors.append(f"{path}: {message}")
    for feature, rules in feature_rules.items():
        custom = [*global_custom, *feature_custom.get(feature, ())]
        for path, metric in rules:
            message = rule_metric_error(metric, custom, known)
            if message:
                errors.append(f"{path}: {message}")
    return errors


# ---- the same checks on raw file data (when field validation failed) ---------------------


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _strings(value: Any) -> list[str]:
    return [v for v in _items(value) if isinstance(v, str) and v]


def _rules(value: Any, path: str) -> list[tuple[str, str]]:
    return [
        (f"{path}[{i}].metric", r["metric"])
        for i, r in enumerate(_items(value))
        if isinstance(r, dict) and isinstance(r.get("metric"), str) and r["metric"]
    ]


def raw_reference_errors(data: Mapping[str, Any], env_sections: Iterable[str]) -> list[str]:
    """The reference checks on the file's data as loaded, before or despite field errors:
    each check reads only what has the right shape and skips the rest (its field error is
    already reported). Sections set by a whole environment variable (`env_sections`, e.g.
    LLM_ONCALL_RECEIVERS='[...]') are not the file's, so checks that read them are skipped."""
    skip = set(env_sections)
    errors: list[str] = []
    if not {"receivers", "routes"} & skip:
        receivers = [
            SimpleNamespace(name=r["name"])
            for r in _items(data.get("receivers"))
            if isinstance(r, dict) and isinstance(r.get("name"), str)
        ]
        # A route whose receiver is missing or not a string has its own field error: it is
        # given a name known to exist here, so only real references are checked.
        known = effective_receivers(receivers)[0].name if receivers else "log"
        routes = []
        for r in _items(data.get("routes")):
            r = r if isinstance(r, dict) else {}
            receiver = r.get("receiver")
            fallback = r.get("fallback")
            routes.append(
                SimpleNamespace(
                    receiver=receiver if isinstance(receiver, str) else known,
                    fallback=fallback
                    if isinstance(fallback, str) and isinstance(receiver, str)
                    else None,
                )
            )
        errors += validate_routes(receivers, routes)  # type: ignore[arg-type]
    if not {"rules", "features", "custom_metrics"} & skip:
        features = data.get("features") if isinstance(data.get("features"), dict) else {}
        assert isinstance(features, dict)
        feature_rules: dict[str, list[tuple[str, str]]] = {}
        feature_custom: dict[str, list[str]] = {}
        for name, feature in features.items():
            if isinstance(feature, dict):
                feature_rules[str(name)] = _rules(feature.get("rules"), f"features.{name}.rules")
                feature_custom[str(name)] = _strings(feature.get("custom_metrics"))
        errors += rule_errors(
            _rules(data.get("rules"), "rules"),
            feature_rules,
            _strings(data.get("custom_metrics")),
            feature_custom,
        )
    return errors
