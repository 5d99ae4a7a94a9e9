"""Property tests: open incidents of one feature overlap in time only when a new symptom family
split off long after the older one opened, and never share a family;
the receiver never gets a resolve for something it does not have open; state round-trips
at any point without changing the future."""

from __future__ import annotations

import json
from typing import Any

from corr_helpers import T0, ctx, no_ctx, policy, sig
from hypothesis import given, settings
from hypothesis import strategies as st

from correlator import Correlator, Incident, IncidentUpdate

METRICS = ["latency_p95_ms", "refusal_rate", "score:faithfulness", "rate_limited_rate"]
FEATURES = ["a", "b"]

step = st.tuples(
    st.floats(min_value=0, max_value=2500, allow_nan=False),
    st.sampled_from(["tick", "firing", "cleared"]),
    st.sampled_from(FEATURES),
    st.sampled_from(METRICS),
)
policies = st.sampled_from(
    [
        {},
        {"cooldown_s": 120, "reopen_s": 300, "flap_hold_s": 600, "window_s": 60},
        {"cooldown_s": 0, "reopen_s": 0, "renotify_s": 0},
        {"min_signals": 1, "renotify_s": 600, "retrigger_min_s": 0},
    ]
)


def _families(inc: Incident) -> set[str]:
    return {s.family for s in inc.signals}


def _apply(
    corr: Correlator, t: float, kind: str, feature: str, metric: str
) -> list[IncidentUpdate]:
    if kind == "tick":
        return corr.tick(t, no_ctx)
    return corr.on_signal(sig(metric, t, kind, feature=feature), ctx(feature))


@settings(max_examples=200, deadline=None)
@given(st.lists(step, max_size=60), policies)
def test_no_two_open_incidents_of_a_feature_overlap(
    steps: list[Any], pol: dict[str, float]
) -> None:
    corr = Correlator(policy(**pol))
    t = T0
    receiver: set[str] = set()
    for dt, kind, feature, metric in steps:
        t += dt
        ups = _apply(corr, t, kind, feature, metric)
        for u in ups:
            if u.notify == "trigger":
                assert u.incident.status == "open"
                assert u.incident.severity != "watch" and u.incident.muted is None
                receiver.add(u.incident.dedup_key)
            elif u.notify == "resolve":
                assert u.incident.dedup_key in receiver
                receiver.discard(u.incident.dedup_key)
            if u.action == "open":
                for other in corr.incidents():
                    if other.feature != u.incident.feature or other.id == u.incident.id:
                        continue
                    if other.status == "open":
                        # Only a new symptom family splits off: long after the other
                        # opened, or while none of the other's members fires (its cooldown).
                        age = u.incident.opened_at - other.opened_at
                        cooling = all(s.cleared is not None for s in other.signals)
                        assert cooling or age > corr.policy.new_incident_after_s > 0
                        assert not _families(other) & _families(u.incident)
                    else:
                        assert other.resolved_at is not None
                        assert other.resolved_at <= u.incident.opened_at
        incs = corr.incidents()
        for f in FEATURES:
            opens = [i for i in incs if i.feature == f and i.status == "open"]
            # Open incidents of one feature never tell the same family's story twice.
            fams = [_families(i) for i in opens]
            assert sum(len(x) for x in fams) == len(set().union(*fams))
        for i in incs:
            assert (i.status == "open") == (i.resolved_at is None)
            assert i.resolved_at is None or i.resolved_at >= i.opened_at
            assert len(i.dedup_key) <= 255


def _trace(corr: Correlator, steps: list[Any], t: float) -> tuple[list[Any], float]:
    out: list[Any] = []
    for dt, kind, feature, metric in steps:
        t += dt
        out += [
            (u.action, u.notify, u.ts, u.incident.to_record())
            for u in _apply(corr, t, kind, feature, metric)
        ]
    return out, t


@settings(max_examples=100, deadline=None)
@given(st.lists(step, max_size=40), st.lists(step, max_size=40), policies)
def test_state_round_trip_anywhere(head: list[Any], tail: list[Any], pol: dict[str, float]) -> None:
    ref = Correlator(policy(**pol))
    _, t = _trace(ref, head, T0)
    restored = Correlator.from_state(json.loads(json.dumps(ref.to_state())))
    assert restored.policy == ref.policy
    assert _trace(ref, tail, t) == _trace(restored, tail, t)
