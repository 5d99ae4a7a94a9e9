"""The on-call workflow in the pure correlator (issue 13): the group wait before the first
page, escalation on the same dedup key, and acknowledge / resolve / reopen by hand."""

from __future__ import annotations

import json

import pytest
from corr_helpers import T0, ctx, no_ctx, policy, run_ticks, sig, triggers

from correlator import Correlator, HumanAction, IncidentUpdate, rfc3339

ALICE = HumanAction("alice", T0 + 120, "looking")


def _outage(corr: Correlator) -> list[IncidentUpdate]:
    """The issue's outage: a warning-level signal, then 0.4 ms later the one that makes it
    critical (two families)."""
    out = corr.on_signal(sig("rate_limited_rate", T0), ctx())
    return out + corr.on_signal(sig("score:faithfulness", T0 + 0.0004), ctx())


def test_without_group_wait_the_first_signal_pages_before_its_partner() -> None:
    ups = _outage(Correlator(policy(group_wait_s=0)))
    pages = triggers(ups)
    assert [(p.incident.severity, p.action) for p in pages] == [
        ("warning", "open"),
        ("critical", "escalate"),
    ]
    # Even then the escalation updates the same page at the receiver.
    assert len({p.incident.dedup_key for p in pages}) == 1


def test_group_wait_sends_one_page_at_the_joint_severity_on_a_tick() -> None:
    corr = Correlator(policy(group_wait_s=30))
    assert triggers(_outage(corr)) == []
    assert triggers(corr.tick(T0 + 15, no_ctx)) == []
    pages = triggers(corr.tick(T0 + 30, no_ctx))
    assert [p.incident.severity for p in pages] == ["critical"]
    assert pages[0].incident.paged
    # Nothing more while it stays the same; a later escalation would reuse the key.
    assert triggers(run_ticks(corr, T0 + 45, T0 + 600, 15)) == []


def test_escalation_after_the_group_wait_updates_the_same_page() -> None:
    corr = Correlator(policy(group_wait_s=30))
    corr.on_signal(sig("rate_limited_rate", T0), ctx())
    first = triggers(corr.tick(T0 + 30, no_ctx))
    assert [p.incident.severity for p in first] == ["warning"]
    later = triggers(corr.on_signal(sig("score:faithfulness", T0 + 200), ctx()))
    assert [(p.incident.severity, p.action) for p in later] == [("critical", "escalate")]
    assert later[0].incident.dedup_key == first[0].incident.dedup_key


def test_an_incident_gone_within_the_group_wait_never_pages() -> None:
    corr = Correlator(policy(group_wait_s=30, cooldown_s=0))
    corr.on_signal(sig("rate_limited_rate", T0), ctx())
    corr.on_signal(sig("rate_limited_rate", T0 + 5, "cleared"), ctx())
    ups = corr.tick(T0 + 15, no_ctx) + run_ticks(corr, T0 + 30, T0 + 300, 15)
    assert [u.notify for u in ups if u.notify] == []
    assert corr.incidents()[0].status == "resolved" and not corr.incidents()[0].paged


def test_acknowledge_notifies_once_and_stops_reminders() -> None:
    corr = Correlator(policy(renotify_s=600))
    inc = triggers(_outage(corr))[0].incident
    ack = corr.acknowledge(inc.id, ALICE)
    assert [(u.action, u.notify) for u in ack] == [("acknowledge", "acknowledge")]
    assert ack[0].incident.acknowledged == ALICE
    assert ack[0].incident.to_record()["acknowledged"]["by"] == "alice"
    assert triggers(run_ticks(corr, T0 + 180, T0 + 3 * 3600, 60)) == []
    # A second ack would notify every receiver again and erase who took it: refused.
    with pytest.raises(ValueError, match="already acknowledged by alice"):
        corr.acknowledge(inc.id, HumanAction("bob", T0 + 4 * 3600))
    assert corr.get(inc.id).acknowledged == ALICE  # type: ignore[union-attr]
    # Unacknowledged, the same incident is reminded every 10 minutes.
    other = Correlator(policy(renotify_s=600))
    _outage(other)
    assert len(triggers(run_ticks(other, T0 + 180, T0 + 3 * 3600, 60))) >= 10


def test_acknowledged_before_the_group_wait_is_not_paged() -> None:
    corr = Correlator(policy(group_wait_s=30))
    corr.on_signal(sig("availability", T0, page_alone=True), ctx())
    iid = corr.incidents()[0].id
    assert [u.notify for u in corr.acknowledge(iid, HumanAction("alice", T0 + 5))] == [None]
    assert triggers(run_ticks(corr, T0 + 15, T0 + 600, 15)) == []


def test_manual_resolve_sends_the_resolve_and_reopen_pages_again() -> None:
    corr = Correlator(policy(cooldown_s=900))
    inc = triggers(_outage(corr))[0].incident
    done = corr.resolve(inc.id, HumanAction("bob", T0 + 300, "fixed upstream"))
    assert [(u.action, u.notify) for u in done] == [("resolve", "resolve")]
    rec = done[0].incident.to_record()
    assert rec["status"] == "resolved" and rec["resolved_by"]["comment"] == "fixed upstream"
    # Nothing cleared them: they are not recorded as cleared at the resolve.
    assert all(s["cleared"] is None for s in rec["signals"])
    assert rec["still_firing"]["signals"] == ["rate_limited_rate", "score:faithfulness"]
    # They clear within the grace: their true clear times, and nothing is left to check.
    for metric in ("rate_limited_rate", "score:faithfulness"):
        corr.on_signal(sig(metric, T0 + 350, "cleared"), ctx())
    rec = corr.get(inc.id).to_record()  # type: ignore[union-attr]
    assert {s["cleared"] for s in rec["signals"]} == {rfc3339(T0 + 350)}
    assert rec["status"] == "resolved" and rec["still_firing"] is None
    with pytest.raises(ValueError, match="already resolved"):
        corr.resolve(inc.id, HumanAction("bob", T0 + 301))
    with pytest.raises(ValueError, match="already resolved"):
        corr.acknowledge(inc.id, HumanAction("bob", T0 + 301))
    with pytest.raises(KeyError):
        corr.acknowledge("inc-unknown", ALICE)

    back = corr.reopen(inc.id, HumanAction("carol", T0 + 400, "still broken"))
    assert [(u.action, u.notify) for u in back] == [("reopen", "trigger")]
    assert back[0].incident.status == "open" and back[0].incident.resolved_by is None
    assert back[0].incident.dedup_key == inc.dedup_key
    # Held open for a cooldown from the reopen, then resolved as usual (members are quiet).
    assert [u.action for u in corr.tick(T0 + 400 + 899, no_ctx) if u.action == "resolve"] == []
    assert [u.notify for u in corr.tick(T0 + 400 + 900, no_ctx)] == ["resolve"]


def test_firing_again_after_a_manual_resolve_reopens_without_flapping() -> None:
    corr = Correlator()
    inc = triggers(_outage(corr))[0].incident
    corr.resolve(inc.id, HumanAction("bob", T0 + 300))
    corr.on_signal(sig("rate_limited_rate", T0 + 400, "cleared"), ctx())
    again = corr.on_signal(sig("rate_limited_rate", T0 + 600), ctx())
    assert [(u.action, u.notify) for u in again] == [("reopen", "trigger")]
    assert not again[0].incident.flapping and again[0].incident.resolved_by is None


def test_human_actions_survive_the_state_round_trip() -> None:
    corr = Correlator(policy(renotify_s=600))
    inc = triggers(_outage(corr))[0].incident
    corr.acknowledge(inc.id, ALICE)
    state = json.loads(json.dumps(corr.to_state()))
    back = Correlator.from_state(state, policy=policy(renotify_s=600))
    assert back.get(inc.id) == corr.get(inc.id)
    assert triggers(run_ticks(back, T0 + 180, T0 + 3 * 3600, 60)) == []
    # States saved before issue 13 have no such fields.
    for d in state["incidents"]:
        for key in ("acknowledged", "resolved_by", "hold_until"):
            d.pop(key)
    old = Correlator.from_state(state)
    assert old.get(inc.id).acknowledged is None  # type: ignore[union-attr]


def test_a_new_family_in_the_cooldown_of_an_acknowledged_incident_pages_on_its_own() -> None:
    """Probe finding: a retrieval drift paged and was acknowledged; it stopped, and 4 min
    after its signals cleared a provider outage began. The outage joined the acknowledged
    incident in its cooldown (its domain turned to provider) and nobody was paged. A family
    the incident does not have, firing while none of its members fires, is a new story."""
    corr = Correlator(policy(group_wait_s=0))
    drift = corr.on_signal(sig("input_tokens_per_request", T0), ctx())
    drift += corr.on_signal(sig("ttft_ms", T0 + 30), ctx())
    (first,) = {u.incident.id for u in drift}
    corr.acknowledge(first, HumanAction("alice", T0 + 120, "on it"))
    corr.on_signal(sig("input_tokens_per_request", T0 + 3600, "cleared"), ctx())
    corr.on_signal(sig("ttft_ms", T0 + 3610, "cleared"), ctx())
    outage = corr.on_signal(sig("availability", T0 + 3850, page_alone=True), ctx())
    pages = triggers(outage)
    assert [(p.action, p.incident.severity) for p in pages] == [("open", "critical")]
    assert pages[0].incident.id != first
    held = corr.get(first)
    assert held is not None and held.status == "open" and held.acknowledged is not None
    assert {s.metric for s in held.signals} == {"input_tokens_per_request", "ttft_ms"}
    # The drift's own family firing again in the cooldown is still the drift's incident.
    again = corr.on_signal(sig("input_tokens_per_request", T0 + 3900), ctx())
    assert {u.incident.id for u in again} == {first}


# ---- resolved by hand while members still fire ------------------------------------------

GRACE = 900.0  # the default grace: the cooldown


def _resolved_while_firing(
    corr: Correlator, at: float = T0 + 300
) -> tuple[str, list[IncidentUpdate]]:
    inc = triggers(_outage(corr))[0].incident
    return inc.id, corr.resolve(inc.id, HumanAction("alice", at, "rolled back"))


def test_still_firing_after_the_grace_reopens_and_pages_once_saying_why() -> None:
    """The probe's case: resolved while the regression goes on, and no detector transition
    ever comes. The resolve goes out; the page comes back once the grace has passed."""
    corr = Correlator(policy(cooldown_s=900, renotify_s=14400))
    iid, done = _resolved_while_firing(corr)
    assert [(u.action, u.notify) for u in done] == [("resolve", "resolve")]
    check = done[0].incident.to_record()["still_firing"]
    assert check == {
        "signals": ["rate_limited_rate", "score:faithfulness"],
        "reopens_at": rfc3339(T0 + 300 + GRACE),
    }
    # The data still drains: no page, still resolved, until the grace is over.
    quiet = run_ticks(corr, T0 + 315, T0 + 300 + GRACE - 1, 15)
    assert [u for u in quiet if u.notify] == []
    assert corr.get(iid).status == "resolved"  # type: ignore[union-attr]
    back = corr.tick(T0 + 300 + GRACE, no_ctx)
    assert [(u.action, u.notify) for u in back if u.notify] == [("reopen", "trigger")]
    inc = back[0].incident
    assert inc.status == "open" and not inc.flapping and inc.resolved_by is None
    assert inc.reopen_reason == (
        "rate_limited_rate, score:faithfulness still firing 15 min after a manual resolve by alice"
    )
    rec = inc.to_record()
    assert rec["reopen_reason"] == inc.reopen_reason and rec["still_firing"] is None
    assert all(s["cleared"] is None for s in rec["signals"])
    # Paged once: then it is an open incident like any other (reminders every renotify_s).
    later = run_ticks(corr, T0 + 300 + GRACE + 15, T0 + 3 * 3600, 15)
    assert triggers(later) == []


def test_members_that_clear_within_the_grace_stay_resolved() -> None:
    corr = Correlator(policy(cooldown_s=900))
    iid, _ = _resolved_while_firing(corr)
    first = corr.on_signal(sig("rate_limited_rate", T0 + 500, "cleared"), ctx())
    assert [(u.action, u.notify) for u in first] == [("update", None)]
    assert first[0].incident.to_record()["still_firing"]["signals"] == ["score:faithfulness"]
    corr.on_signal(sig("score:faithfulness", T0 + 1100, "cleared"), ctx())
    ups = run_ticks(corr, T0 + 1110, T0 + 3 * 3600, 15)
    assert [u for u in ups if u.notify] == []
    rec = corr.get(iid).to_record()  # type: ignore[union-attr]
    assert rec["status"] == "resolved" and rec["still_firing"] is None
    assert [s["cleared"] for s in rec["signals"]] == [rfc3339(T0 + 500), rfc3339(T0 + 1100)]


def test_the_reopen_names_only_the_members_still_firing() -> None:
    corr = Correlator(policy(cooldown_s=900, resolve_grace_s=600))
    _resolved_while_firing(corr)
    corr.on_signal(sig("rate_limited_rate", T0 + 500, "cleared"), ctx())
    back = triggers(corr.tick(T0 + 900, no_ctx))
    assert back[0].incident.reopen_reason == (
        "score:faithfulness still firing 10 min after a manual resolve by alice"
    )


def test_the_grace_ends_at_its_time_whatever_the_tick_cadence() -> None:
    """A clear arriving after the grace (before any tick) sees the incident reopened first,
    as a resolve is settled at its deadline before a later signal."""
    corr = Correlator(policy(cooldown_s=900))
    _resolved_while_firing(corr)
    ups = corr.on_signal(sig("rate_limited_rate", T0 + 300 + GRACE + 30, "cleared"), ctx())
    assert [(u.action, u.notify) for u in ups] == [("reopen", "trigger"), ("update", None)]


def test_another_signal_during_the_grace_reopens_at_once() -> None:
    """The fault is not over (a member still fires) and something else of the feature fires:
    that is more of it, not a new incident."""
    corr = Correlator(policy(cooldown_s=900))
    iid, _ = _resolved_while_firing(corr)
    ups = corr.on_signal(sig("latency_p95_ms", T0 + 400), ctx())
    assert [(u.action, u.notify) for u in ups] == [("reopen", "trigger")]
    inc = ups[0].incident
    assert inc.id == iid and len(corr.incidents()) == 1
    assert inc.reopen_reason == (
        "latency_p95_ms fired 100 s after a manual resolve by alice"
        " (rate_limited_rate, score:faithfulness still firing)"
    )


def test_reopened_by_hand_during_the_grace_stays_open_while_members_fire() -> None:
    corr = Correlator(policy(cooldown_s=900))
    iid, _ = _resolved_while_firing(corr)
    back = corr.reopen(iid, HumanAction("carol", T0 + 400, "not fixed"))
    assert [(u.action, u.notify) for u in back] == [("reopen", "trigger")]
    # Its members never cleared: no resolve after the reopen's hold, no second reopen.
    ups = run_ticks(corr, T0 + 415, T0 + 3 * 3600, 15)
    assert [u for u in ups if u.notify] == [] and corr.get(iid).status == "open"  # type: ignore[union-attr]


def test_the_grace_survives_a_restart() -> None:
    corr = Correlator(policy(cooldown_s=900))
    iid, _ = _resolved_while_firing(corr)
    run_ticks(corr, T0 + 315, T0 + 600, 15)
    state = json.loads(json.dumps(corr.to_state()))
    back = Correlator.from_state(state, policy=policy(cooldown_s=900))
    assert back.get(iid) == corr.get(iid)
    theirs = run_ticks(corr, T0 + 615, T0 + 3600, 15)
    ours = run_ticks(back, T0 + 615, T0 + 3600, 15)
    assert ours == theirs
    assert [(u.action, u.ts) for u in triggers(ours)] == [("reopen", T0 + 300 + GRACE)]


def test_a_repeat_of_a_signal_still_firing_is_not_a_new_fire() -> None:
    """Alertmanager re-sends a firing alert with every notification of its group: that is the
    same firing, and the grace decides, not the repeat."""
    corr = Correlator(policy(cooldown_s=900))
    iid, _ = _resolved_while_firing(corr)
    assert corr.on_signal(sig("rate_limited_rate", T0 + 400), ctx()) == []
    assert corr.get(iid).status == "resolved"  # type: ignore[union-attr]
    assert len(triggers(run_ticks(corr, T0 + 415, T0 + 300 + GRACE + 15, 15))) == 1
