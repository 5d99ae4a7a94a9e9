"""Suppression behind one method (after Alertmanager's `Muter`).

Silences, inhibition and anything else that should keep an incident from paging (a
maintenance window, a feature switched off) implement `Muter`. The correlator asks its muters
in order on every change and every tick; the first reason wins and is recorded on the incident
(`muted`), so a muted incident stays visible. A muted incident never triggers a page; if it was
paged before being muted, its resolve still goes out.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from correlator.incident import Incident


@runtime_checkable
class Muter(Protocol):
    def mutes(self, incident: Incident, now: float) -> str | None:
        """The reason the incident is muted at `now` ("silence:<id>", "inhibited:<incident
        id>"), or None."""
        ...
