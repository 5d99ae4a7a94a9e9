"""Alertmanager webhook in: alerts from the rest of the stack become signals.

A vector store's latency alert or a GPU node going down is evidence for the infra/retrieval
answer of triage, so it should join the LLM incident rather than page separately. An alert
needs a `feature` label to know which incident it belongs to; `layer` defaults to infra and
the alert name becomes the metric.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, get_args

from correlator.records import Signal
from detectors.base import Direction, Layer


def _time(value: Any, fallback: float) -> float:
    if not isinstance(value, str) or value.startswith("0001-"):
        return fallback
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return fallback


def alertmanager_signals(doc: Any, now: float) -> tuple[list[Signal], list[dict[str, Any]]]:
    """Alertmanager webhook payload (version 4) → signals, and errors by alert index."""
    if not isinstance(doc, dict) or not isinstance(doc.get("alerts"), list):
        raise ValueError("body must be an Alertmanager webhook payload with an `alerts` list")
    signals: list[Signal] = []
    errors: list[dict[str, Any]] = []
    for i, alert in enumerate(doc["alerts"]):
        labels = alert.get("labels") or {} if isinstance(alert, dict) else {}
        feature = labels.get("feature")
        if not feature:
            errors.append({"index": i, "error": "labels.feature: required to join an incident"})
            continue
        layer = labels.get("layer", "infra")
        if layer not in get_args(Layer):
            errors.append({"index": i, "error": f"labels.layer: unknown layer {layer!r}"})
            continue
        firing = alert.get("status", doc.get("status")) == "firing"
        ts = _time(alert.get("startsAt") if firing else alert.get("endsAt"), now)
        signals.append(
            Signal(
                ts=ts,
                feature=feature,
                metric=labels.get("alertname", "alertmanager"),
                layer=layer,
                detector="alertmanager",
                state="firing" if firing else "cleared",
                value=1.0 if firing else 0.0,
                baseline=0.0,
                score=1.0,
                direction=Direction.UP,
                series=str(alert.get("fingerprint", "")),
                page_alone=labels.get("page_alone") == "true",
            )
        )
    return signals, errors
