"""Inhibition: a provider incident mutes the incidents it explains (after Alertmanager's
inhibit rules, with the rule fixed by the design).

While an incident with domain `provider` is open, it mutes the other incidents of the same
feature whose domain is `prompt_model` or whose signals are all behavioral: 429s and 5xx make
answers shorter, refusals and fallbacks more common, and the provider page already covers
them. Target and source must differ, and a provider incident is never a target, so two
incidents cannot mute each other. A silenced source still inhibits (its fault still exists).

The correlator groups all co-occurring signals of a feature into one incident, so a second
incident of the same feature exists only when `CorrelationPolicy.split_after_s` is set (a
series firing long after the open incident's onset opens its own incident); that is where this
muter acts. It reads the current incidents through a callable, e.g.
`InhibitMuter(corr.open_incidents)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from correlator.incident import Incident


def _is_target(incident: Incident) -> bool:
    if incident.domain == "provider":
        return False
    if incident.domain == "prompt_model":
        return True
    return bool(incident.signals) and all(s.layer == "behavioral" for s in incident.signals)


class InhibitMuter:
    def __init__(self, incidents: Callable[[], Iterable[Incident]]) -> None:
        self._incidents = incidents

    def mutes(self, incident: Incident, now: float) -> str | None:
        if not _is_target(incident):
            return None
        sources = sorted(
            (
                src
                for src in self._incidents()
                if src.id != incident.id
                and src.feature == incident.feature
                and src.status == "open"
                and src.domain == "provider"
                and src.opened_at <= now
            ),
            key=lambda s: (s.opened_at, s.id),
        )
        return f"inhibited:{sources[0].id}" if sources else None
