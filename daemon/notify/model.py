"""The records that travel through paging: a `Notification` in, a `DeliveryResult` out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Action", "DeliveryResult", "Notification"]

Action = Literal["trigger", "resolve", "acknowledge"]
ACTIONS: tuple[Action, ...] = ("trigger", "resolve", "acknowledge")


@dataclass(frozen=True)
class Notification:
    """One thing to tell receivers about one incident.

    `incident` is the contract incident record (DESIGN.md "Incident and signal records");
    `runbook` carries the feature's runbook fields (url, dashboard, owner, ...).
    """

    incident_id: str
    dedup_key: str
    action: Action
    incident: Mapping[str, Any]
    created_at: float
    runbook: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, got {self.action!r}")
        if not self.dedup_key:
            raise ValueError("dedup_key must not be empty")

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "incident_id": self.incident_id,
            "dedup_key": self.dedup_key,
            "action": self.action,
            "incident": dict(self.incident),
            "created_at": self.created_at,
            "runbook": dict(self.runbook) if self.runbook is not None else None,
        }

    @classmethod
    def from_json_dict(cls, d: Mapping[str, Any]) -> Notification:
        return cls(
            incident_id=d["incident_id"],
            dedup_key=d["dedup_key"],
            action=d["action"],
            incident=d["incident"],
            created_at=float(d["created_at"]),
            runbook=d.get("runbook"),
        )


@dataclass(frozen=True)
class DeliveryResult:
    """What one delivery attempt did.

    ok: the receiver accepted it. retry: a later attempt may succeed (408, 429, 5xx, timeout,
    connection error). Neither: a dead letter (other 4xx). `error` never holds a secret.
    """

    ok: bool
    retry: bool = False
    retry_after: float | None = None
    status: int | None = None
    error: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def success(cls, status: int | None = None) -> DeliveryResult:
        return cls(ok=True, status=status)
