"""Fitting an incident into a receiver's body limit, least useful parts first.

A receiver that refuses a body for its size answers 400 or 413, which is permanent: the
page, or worse its resolve, would be a dead letter and the incident would stay open there.
The record is unbounded in practice (a deployer sending 8,000 change events during one
incident made a 2 MB webhook body), so every sender that carries the record's lists shrinks
its body instead of refusing it, and says what it dropped.

The order is how much a responder misses each part: the changes after the start (context
only) first, then the tails of long lists, then long evidence texts, then whole lists; the
triage answers ("whose problem is this?") go last.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from daemon.notify.http import dumps, truncate

__all__ = ["shrink_to_fit"]

# A step changes `part` in place and says whether it changed anything.
_Step = Callable[[dict[str, Any]], bool]
_EVIDENCE_CHARS = 2000
_KEPT_TEXT_CHARS = 1024  # strings kept by the last resort (PagerDuty's summary limit)


def _cap(key: str, n: int) -> _Step:
    def step(part: dict[str, Any]) -> bool:
        items = part.get(key)
        if isinstance(items, list) and len(items) > n:
            part[key] = items[:n]
            return True
        return False

    return step


def _drop(key: str) -> _Step:
    def step(part: dict[str, Any]) -> bool:
        return part.pop(key, None) is not None

    return step


def _cut_evidence(part: dict[str, Any]) -> bool:
    triage = part.get("triage")
    if not isinstance(triage, list):
        return False
    # New dicts: the triage entries may be shared with the notification being sent.
    cut = [
        {**t, "evidence": truncate(t["evidence"], _EVIDENCE_CHARS)}
        if isinstance(t, Mapping) and isinstance(t.get("evidence"), str)
        else t
        for t in triage
    ]
    if cut == triage:
        return False
    part["triage"] = cut
    return True


_STEPS: tuple[tuple[str, _Step], ...] = (
    ("later_changes beyond 10", _cap("later_changes", 10)),
    ("signals beyond 20", _cap("signals", 20)),
    ("changes beyond 10", _cap("changes", 10)),
    ("attribution beyond 3", _cap("attribution", 3)),
    ("long evidence", _cut_evidence),
    ("later_changes", _drop("later_changes")),
    ("changes", _drop("changes")),
    ("signals", _drop("signals")),
    ("attribution", _drop("attribution")),
    ("runbook", _drop("runbook")),
    ("triage", _drop("triage")),
)


def shrink_to_fit(
    doc: dict[str, Any],
    part: dict[str, Any],
    limit: int,
    *,
    note: dict[str, Any] | None = None,
    keep: Sequence[str] = (),
) -> dict[str, Any]:
    """`doc` encoded in at most `limit` bytes (as `dumps` encodes it), or as close as the
    last resort gets.

    `part` is the dict inside `doc` that holds the incident's lists (PagerDuty's
    `custom_details`, a webhook's `incident`); it is changed in place, so pass a copy of
    anything shared. What was dropped is written to `note["truncated"]` (`note` defaults
    to `part`). When every step is not enough, `part` keeps only its `keep` keys, strings
    cut to 1024 characters. Returns `doc`."""
    if len(dumps(doc)) <= limit:
        return doc
    note = part if note is None else note
    size = f"{limit / 1000:g} KB"
    dropped: list[str] = []
    for label, step in _STEPS:
        if not step(part):
            continue
        dropped.append(label)
        note["truncated"] = f"dropped to fit {size}: " + ", ".join(dropped)
        if len(dumps(doc)) <= limit:
            return doc
    kept = {
        k: truncate(v, _KEPT_TEXT_CHARS) if isinstance(v, str) else v
        for k, v in part.items()
        if k in keep
    }
    part.clear()
    part.update(kept)
    note["truncated"] = f"details dropped to fit {size}"
    return doc
