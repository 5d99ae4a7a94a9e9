"""Which receivers get an incident: the `routes` config, or sensible defaults without it."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from config.receivers import RouteConfig, RouteMatch, effective_receivers

__all__ = ["RouteTarget", "Router"]


@dataclass(frozen=True)
class RouteTarget:
    """One receiver chosen for an incident, with what its route says about it."""

    receiver: str
    fallback: str | None = None
    renotify_s: float | None = None


class Router:
    """`route(incident)` → receiver names. First matching route wins unless `continue: true`.

    With no routes configured: `warning` → "low-urgency"; `prompt_model` → "ml";
    `provider` / `infra_retrieval` → "sre" (each when a receiver of that name exists), else the
    first receiver; with no receivers at all, the built-in log receiver. `watch` incidents get
    no receiver under the defaults (DESIGN.md: watch is never notified); an explicit route may
    still match them on purpose.
    """

    def __init__(self, receivers: Sequence[Any], routes: Sequence[RouteConfig]) -> None:
        self._names = [r.name for r in effective_receivers(receivers)]
        self._routes = list(routes)
        self._feature_re = [
            re.compile(r.match.feature_re) if r.match.feature_re else None for r in self._routes
        ]

    @property
    def receivers(self) -> list[str]:
        return list(self._names)

    def route(self, incident: Mapping[str, Any]) -> list[str]:
        return [t.receiver for t in self.targets(incident)]

    def targets(self, incident: Mapping[str, Any]) -> list[RouteTarget]:
        if not self._routes:
            default = self._default(incident)
            return [RouteTarget(default)] if default else []
        out: list[RouteTarget] = []
        seen: set[str] = set()
        for route, feature_re in zip(self._routes, self._feature_re, strict=True):
            if not _matches(route.match, feature_re, incident):
                continue
            if route.receiver not in seen:
                seen.add(route.receiver)
                out.append(RouteTarget(route.receiver, route.fallback, route.renotify_s))
            if not route.continue_:
                break
        return out

    def _default(self, incident: Mapping[str, Any]) -> str | None:
        severity = incident.get("severity")
        domain = incident.get("domain")
        if severity == "watch":
            return None
        names = set(self._names)
        if severity == "warning" and "low-urgency" in names:
            return "low-urgency"
        if domain == "prompt_model" and "ml" in names:
            return "ml"
        if domain in ("provider", "infra_retrieval") and "sre" in names:
            return "sre"
        return str(self._names[0])


def _matches(m: RouteMatch, feature_re: re.Pattern[str] | None, inc: Mapping[str, Any]) -> bool:
    if m.severity is not None and inc.get("severity") not in m.severity:
        return False
    if m.domain is not None and inc.get("domain") not in m.domain:
        return False
    feature = str(inc.get("feature", ""))
    if m.feature is not None and feature not in m.feature:
        return False
    if feature_re is not None and not feature_re.fullmatch(feature):
        return False
    if m.labels:
        values = _label_values(inc)
        for key, wanted in m.labels.items():
            if not values.get(key, set()) & set(wanted):
                return False
    return True


def _label_values(inc: Mapping[str, Any]) -> dict[str, set[str]]:
    """label → values seen in the incident: attribution rows, then signal metadata (a
    signal's `labels` map and its own string fields such as metric, layer, detector)."""
    out: dict[str, set[str]] = {}

    def add(key: Any, value: Any) -> None:
        if isinstance(value, str | int | float | bool):
            out.setdefault(str(key), set()).add(str(value))

    for row in inc.get("attribution") or []:
        if isinstance(row, Mapping) and "label" in row:
            add(row["label"], row.get("value"))
    for sig in inc.get("signals") or []:
        if not isinstance(sig, Mapping):
            continue
        for k, v in sig.items():
            if k == "labels" and isinstance(v, Mapping):
                for lk, lv in v.items():
                    add(lk, lv)
            elif isinstance(v, str):
                add(k, v)
    return out
