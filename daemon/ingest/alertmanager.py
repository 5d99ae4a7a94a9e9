"""Alertmanager webhook in: alerts from the rest of the stack become signals.

A vector store's latency alert or a GPU node going down is evidence for the infra/retrieval
answer of triage, so it should join the LLM incident rather than page separately. An alert
needs a `feature` label to know which incident it belongs to; `layer` defaults to infra and
the alert name becomes the metric.

An alert without a `feature` label goes to `alertmanager.default_feature` when one is
configured; otherwise it is dropped, answered 200 and counted (events_unused, reason
`alert_no_feature`). A 4xx would make Alertmanager retry the whole group forever.

Times come from Alertmanager's clock, ours decides what is "now". An alert cannot have
started, or ended, after we received it: a `startsAt` (firing) or `endsAt` (resolved) later
than the receive time is that clock running ahead, so the alert is taken as starting or
ending now, and listed in `clamped` for the caller to count (and to log when it is further
ahead than the ingest tolerance: a clock to fix). Kept at its own time, a firing alert
dated 10 minutes (or 7000 years) ahead opened an incident "in the future" that resolved that
much later, or never; dropped like a future `/v1/events` event, a real firing alert would
be lost.

A time far in the past is bounded too, by `lookback_s` (the daemon passes
`correlation.window_s`, 10 minutes): one earlier than that before the receipt is taken as
that long before it, and listed in `backdated` for the caller to count. What an
Alertmanager or PagerDuty user expects of an alert firing since Friday, received now (a
silence expired, a route was added, an inhibiting alert resolved): a problem of now, paged
now, that joins the LLM incident it explains. Kept at its own time it opened an incident
dated Friday, past `new_incident_after_s` at birth, so the LLM symptoms that fired a minute
later split off into an incident and page of their own; and one whose series had been in
an incident resolved since reopened that old incident. Inside the window the correlator
tells "before" from "together" and the start estimate reads the onset, so a startsAt there
(a group's usual delay of seconds to minutes) is kept as given. The firing alert's own
`startsAt` stays in the incident as its signal's `reported_onset`. A resolved alert whose
`endsAt` is older than the window clears its series at the window's start at the earliest,
so the incident resolves one cooldown after that, not days back; and a resolved alert never
opens or pages anything: it only clears a series the daemon saw firing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal, get_args

from correlator.records import Signal
from daemon.ingest.events import CONTROL_CHARS, CONTROL_MSG, TS_MAX, TS_MIN
from detectors.base import Direction, Layer

MAX_NAME = 200  # as an event's feature and metric names


@dataclass(frozen=True, slots=True)
class ClampedTime:
    """An alert time outside the span its receipt allows: later than the receive time (taken
    as it), or earlier than the lookback before it (taken as the lookback's start)."""

    index: int  # the alert's position in the payload
    feature: str
    alertname: str
    field: Literal["startsAt", "endsAt"]
    given: float  # the time the alert carried, Unix seconds

    def ahead_s(self, now: float) -> float:
        return self.given - now


@dataclass(frozen=True, slots=True)
class AlertBatch:
    """One webhook payload: signals, errors by alert index, indexes of alerts dropped for
    having no feature (and no `default_feature`), the times taken as the receive time
    (`clamped`) and those taken as the lookback's start (`backdated`)."""

    signals: list[Signal] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)
    clamped: list[ClampedTime] = field(default_factory=list)
    backdated: list[ClampedTime] = field(default_factory=list)


class _AlertError(ValueError):
    """One alert that cannot become a signal; the message names the field."""


class _NoFeature(_AlertError):
    """A well-formed alert with no feature to join and no default feature: dropped, not bad."""


def _time(value: Any, fallback: float) -> float:
    """An RFC 3339 time, or `fallback` for the zero time, a missing or unreadable one."""
    if not isinstance(value, str) or value.startswith("0001-"):
        return fallback
    try:
        ts = datetime.fromisoformat(value).timestamp()
    except (ValueError, OverflowError):
        return fallback
    return ts if TS_MIN <= ts <= TS_MAX else fallback


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    names = {str: "string", list: "array", dict: "object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _name(labels: dict[str, str], key: str, default: str | None = None) -> str:
    """A label that names something in /metrics or an incident: non-empty, short, printable."""
    value = labels.get(key, default)
    if not value:
        raise _AlertError(f"labels.{key}: required to join an incident")
    if len(value) > MAX_NAME:
        raise _AlertError(f"labels.{key}: at most {MAX_NAME} characters (got {len(value)})")
    if CONTROL_CHARS.search(value):
        raise _AlertError(f"labels.{key}: {CONTROL_MSG} (got {value[:60]!r})")
    return value


def alertmanager_signals(
    doc: Any, now: float, default_feature: str | None = None, *, lookback_s: float
) -> AlertBatch:
    """Alertmanager webhook payload (version 4), received at `now` → an `AlertBatch`, every
    alert time within [`now` - `lookback_s`, `now`] (module doc).

    A body that is not a payload at all raises ValueError (400); a bad alert is one error
    naming its field, and the other alerts still count.
    """
    if not isinstance(doc, dict):
        raise ValueError(f"body must be an Alertmanager webhook payload object (got {_kind(doc)})")
    alerts = doc.get("alerts")
    if not isinstance(alerts, list):
        raise ValueError(f"alerts: must be an array of alerts (got {_kind(alerts)})")
    group_status = doc.get("status")
    batch = AlertBatch()
    for i, alert in enumerate(alerts):
        try:
            sig = _signal(alert, group_status, now, default_feature)
        except _NoFeature:
            batch.dropped.append(i)
            continue
        except _AlertError as exc:
            batch.errors.append({"index": i, "error": str(exc)})
            continue
        when: Literal["startsAt", "endsAt"] = "startsAt" if sig.state == "firing" else "endsAt"
        if sig.ts > now:
            batch.clamped.append(ClampedTime(i, sig.feature, sig.metric, when, sig.ts))
            sig = replace(sig, ts=now)
        elif sig.ts < now - lookback_s:
            batch.backdated.append(ClampedTime(i, sig.feature, sig.metric, when, sig.ts))
            reported = sig.ts if sig.state == "firing" else None
            sig = replace(sig, ts=now - lookback_s, reported_onset=reported)
        batch.signals.append(sig)
    return batch


def _signal(alert: Any, group_status: Any, now: float, default_feature: str | None) -> Signal:
    if not isinstance(alert, dict):
        raise _AlertError(f"alert: must be an object (got {_kind(alert)})")
    labels = alert.get("labels")
    if labels is None:
        labels = {}
    if not isinstance(labels, dict):
        raise _AlertError(f"labels: must be an object of strings (got {_kind(labels)})")
    for key, value in labels.items():
        if not isinstance(value, str):
            raise _AlertError(f"labels.{key}: must be a string (got {_kind(value)})")
    if not labels.get("feature") and default_feature is None:
        raise _NoFeature("labels.feature: missing and no alertmanager.default_feature")
    feature = _name(labels, "feature", default_feature)
    layer = labels.get("layer", "infra")
    if layer not in get_args(Layer):
        raise _AlertError(f"labels.layer: unknown layer {layer!r}")
    metric = _name(labels, "alertname", "alertmanager")
    status = alert.get("status", group_status)
    if status not in ("firing", "resolved"):
        raise _AlertError(f"status: must be 'firing' or 'resolved' (got {str(status)[:60]!r})")
    fingerprint = alert.get("fingerprint", "")
    if not isinstance(fingerprint, str) or CONTROL_CHARS.search(fingerprint):
        raise _AlertError(f"fingerprint: must be a printable string (got {_kind(fingerprint)})")
    firing = status == "firing"
    ts = _time(alert.get("startsAt") if firing else alert.get("endsAt"), now)
    return Signal(
        ts=ts,
        feature=feature,
        metric=metric,
        layer=layer,
        detector="alertmanager",
        state="firing" if firing else "cleared",
        value=1.0 if firing else 0.0,
        baseline=0.0,
        score=1.0,
        direction=Direction.UP,
        series=fingerprint,
        page_alone=labels.get("page_alone") == "true",
    )
