"""Grouping, severity, lifecycle, flapping, determinism and persistence of the correlator."""

from __future__ import annotations

import json
from typing import Any

from corr_helpers import FEATURE, T0, ctx, no_ctx, policy, run_ticks, sig, triggers

from correlator import CorrelationPolicy, Correlator, IncidentUpdate


def _open(corr: Correlator, feature: str = FEATURE) -> list[Any]:
    return [i for i in corr.incidents() if i.status == "open" and i.feature == feature]


# ---- grouping ---------------------------------------------------------------------------


def test_signals_within_window_join_one_incident() -> None:
    corr = Correlator()
    a = corr.on_signal(sig("latency_p95_ms", T0), ctx())
    b = corr.on_signal(sig("refusal_rate", T0 + 300), ctx())
    assert a[0].action == "open"
    assert b[0].incident.id == a[0].incident.id
    assert len(corr.incidents()) == 1
    assert {s.metric for s in corr.incidents()[0].signals} == {"latency_p95_ms", "refusal_rate"}


def test_other_feature_gets_its_own_incident() -> None:
    corr = Correlator()
    corr.on_signal(sig("latency_p95_ms", T0), ctx())
    corr.on_signal(sig("latency_p95_ms", T0 + 10, feature="search"), ctx("search"))
    assert {i.feature for i in corr.incidents()} == {FEATURE, "search"}


def test_signal_during_open_incident_joins_even_after_window() -> None:
    corr = Correlator()
    corr.on_signal(sig("latency_p95_ms", T0), ctx())
    up = corr.on_signal(sig("refusal_rate", T0 + 1.5 * 3600), ctx())
    assert len(corr.incidents()) == 1
    assert up[0].incident.id == corr.incidents()[0].id


def test_new_family_long_after_the_open_opens_its_own_incident() -> None:
    """An incident still open 3 h on (say a flapping latency series) does not swallow a
    refusal spike: a new symptom family past `new_incident_after_s` (2 h) opens its own."""
    corr = Correlator()
    corr.on_signal(sig("latency_p95_ms", T0), ctx())
    up = corr.on_signal(sig("refusal_rate", T0 + 3 * 3600), ctx())
    assert [i.metrics for i in corr.incidents()] == [
        frozenset({"latency_p95_ms"}),
        frozenset({"refusal_rate"}),
    ]
    assert up[-1].action == "open" and up[-1].incident.id == corr.incidents()[1].id
    # the same family as the old incident still joins it (one latency story)
    corr.on_signal(sig("latency_p99_ms", T0 + 3 * 3600 + 60), ctx())
    assert corr.incidents()[0].metrics == {"latency_p95_ms", "latency_p99_ms"}
    # and 0 turns the split off
    old = Correlator(CorrelationPolicy(new_incident_after_s=0))
    old.on_signal(sig("latency_p95_ms", T0), ctx())
    old.on_signal(sig("refusal_rate", T0 + 3 * 3600), ctx())
    assert len(old.incidents()) == 1


def test_new_series_after_resolve_opens_new_incident() -> None:
    corr = Correlator()
    corr.on_signal(sig("latency_p95_ms", T0), ctx())
    corr.on_signal(sig("latency_p95_ms", T0 + 60, "cleared"), ctx())
    run_ticks(corr, T0 + 120, T0 + 1200)
    assert corr.incidents()[0].status == "resolved"
    up = corr.on_signal(sig("refusal_rate", T0 + 1300), ctx())
    assert up[-1].action == "open"
    assert len(corr.incidents()) == 2


# ---- severity ---------------------------------------------------------------------------


def test_lone_latency_spike_is_watch_and_never_notifies() -> None:
    corr = Correlator()
    ups = corr.on_signal(sig("latency_p95_ms", T0), ctx())
    ups += corr.on_signal(sig("latency_p99_ms", T0 + 30), ctx())  # same family: one symptom
    ups += run_ticks(corr, T0 + 60, T0 + 1800)
    ups += corr.on_signal(sig("latency_p95_ms", T0 + 1900, "cleared"), ctx())
    ups += corr.on_signal(sig("latency_p99_ms", T0 + 1900, "cleared"), ctx())
    ups += run_ticks(corr, T0 + 1960, T0 + 4000)
    inc = corr.incidents()[0]
    assert inc.severity == "watch"
    assert inc.status == "resolved"
    assert not inc.paged
    assert all(u.notify is None for u in ups)


def test_latency_refusal_quality_within_ten_minutes_pages_once() -> None:
    corr = Correlator()
    ups = corr.on_signal(sig("latency_p95_ms", T0), ctx())
    ups += corr.on_signal(sig("refusal_rate", T0 + 240), ctx())
    ups += corr.on_signal(sig("score:faithfulness", T0 + 540, n=64), ctx())
    ups += run_ticks(corr, T0 + 600, T0 + 3600)
    inc = corr.incidents()[0]
    assert inc.severity == "critical"
    assert inc.paged
    assert len(triggers(ups)) == 1
    assert triggers(ups)[0].action == "escalate"


def test_lone_quality_is_warning_and_pages() -> None:
    corr = Correlator()
    ups = corr.on_signal(sig("score:faithfulness", T0), ctx())
    assert ups[0].incident.severity == "warning"
    assert ups[0].notify == "trigger"
    assert ups[0].incident.paged


def test_lone_signal_severities() -> None:
    cases = {
        "rate_limited_rate": "warning",
        "retry_rate": "watch",
        "refusal_rate": "watch",
        "throughput_rpm": "watch",
        "output_tokens_per_request": "watch",
    }
    for metric, expected in cases.items():
        corr = Correlator()
        up = corr.on_signal(sig(metric, T0), ctx())[0]
        assert up.incident.severity == expected, metric
        assert (up.notify == "trigger") == (expected != "watch"), metric


def test_page_alone_is_critical() -> None:
    corr = Correlator()
    up = corr.on_signal(sig("availability", T0, page_alone=True, series="provider=x"), ctx())[0]
    assert up.incident.severity == "critical"
    assert up.notify == "trigger"


def test_signals_not_together_within_window_do_not_add_up() -> None:
    corr = Correlator()
    corr.on_signal(sig("latency_p95_ms", T0), ctx())
    corr.on_signal(sig("latency_p95_ms", T0 + 60, "cleared"), ctx())
    # cleared 700 s before, not in the same window: no warning from the two. (Another family
    # in the cooldown opens its own incident: `test_a_new_family_in_the_cooldown_...`.)
    ups = corr.on_signal(sig("refusal_rate", T0 + 760), ctx())
    assert [i.severity for i in corr.incidents()] == ["watch", "watch"]
    assert ups[-1].incident.severity == "watch"


def test_escalation_pages_again_and_severity_never_drops() -> None:
    corr = Correlator()
    ups = corr.on_signal(sig("score:faithfulness", T0), ctx())
    ups += corr.on_signal(sig("refusal_rate", T0 + 60), ctx())
    assert [u.notify for u in ups] == ["trigger", "trigger"]
    assert ups[1].action == "escalate"
    assert ups[1].incident.severity == "critical"
    ups = corr.on_signal(sig("refusal_rate", T0 + 120, "cleared"), ctx())
    assert ups[-1].incident.severity == "critical"


# ---- lifecycle --------------------------------------------------------------------------


def test_resolve_exactly_after_cooldown() -> None:
    corr = Correlator(policy(cooldown_s=900))
    corr.on_signal(sig("score:faithfulness", T0), ctx())
    corr.on_signal(sig("score:faithfulness", T0 + 300, "cleared"), ctx())
    assert all(u.action != "resolve" for u in corr.tick(T0 + 300 + 899.999, no_ctx))
    ups = corr.tick(T0 + 300 + 900, no_ctx)
    res = [u for u in ups if u.action == "resolve"]
    assert len(res) == 1
    assert res[0].notify == "resolve"
    assert res[0].incident.resolved_at == T0 + 1200
    rec = res[0].incident.to_record()
    assert rec["status"] == "resolved"
    assert rec["resolved_at"] == "2023-11-14T22:33:20.000Z"


def test_resolved_at_does_not_depend_on_tick_cadence() -> None:
    corr = Correlator()
    corr.on_signal(sig("score:faithfulness", T0), ctx())
    corr.on_signal(sig("score:faithfulness", T0 + 300, "cleared"), ctx())
    ups = corr.tick(T0 + 5000, no_ctx)
    assert ups[0].incident.resolved_at == T0 + 1200


def test_reopen_inside_cooldown_keeps_incident_and_does_not_page_again() -> None:
    corr = Correlator()
    first = corr.on_signal(sig("score:faithfulness", T0), ctx())
    corr.on_signal(sig("score:faithfulness", T0 + 300, "cleared"), ctx())
    ups = run_ticks(corr, T0 + 360, T0 + 600)
    ups += corr.on_signal(sig("score:faithfulness", T0 + 700), ctx())
    assert ups[-1].action == "reopen"
    assert ups[-1].incident.id == first[0].incident.id
    assert ups[-1].incident.status == "open"
    assert triggers(ups) == []
    assert len(corr.incidents()) == 1


def test_renotify_interval() -> None:
    corr = Correlator(policy(renotify_s=3600))
    ups = corr.on_signal(sig("score:faithfulness", T0), ctx())
    ups += run_ticks(corr, T0 + 60, T0 + 3 * 3600)
    ren = [u for u in ups if u.action == "renotify"]
    assert [u.ts - T0 for u in ren] == [3600, 7200, 10800]
    assert all(u.notify == "trigger" for u in ren)


def test_no_renotify_while_only_waiting_out_the_cooldown() -> None:
    corr = Correlator(policy(renotify_s=600))
    ups = corr.on_signal(sig("score:faithfulness", T0), ctx())
    ups += corr.on_signal(sig("score:faithfulness", T0 + 300, "cleared"), ctx())
    ups += run_ticks(corr, T0 + 360, T0 + 1500)
    assert [(u.action, u.notify) for u in ups if u.notify] == [
        ("open", "trigger"),
        ("resolve", "resolve"),
    ]


def test_renotify_off() -> None:
    corr = Correlator(policy(renotify_s=0))
    ups = corr.on_signal(sig("score:faithfulness", T0), ctx())
    ups += run_ticks(corr, T0 + 60, T0 + 48 * 3600, step=600)
    assert len(triggers(ups)) == 1


def test_watch_incident_resolves_without_notify() -> None:
    corr = Correlator()
    corr.on_signal(sig("latency_p95_ms", T0), ctx())
    corr.on_signal(sig("latency_p95_ms", T0 + 60, "cleared"), ctx())
    ups = corr.tick(T0 + 2000, no_ctx)
    assert [(u.action, u.notify) for u in ups] == [("resolve", None)]


def test_tick_without_change_emits_nothing() -> None:
    corr = Correlator()
    corr.on_signal(sig("latency_p95_ms", T0), ctx())
    corr.tick(T0 + 60, no_ctx)
    assert corr.tick(T0 + 120, no_ctx) == []


# ---- flapping ---------------------------------------------------------------------------


def _flap(
    period: float, flips: int = 50, up_s: float = 60.0, renotify_s: float = 0
) -> tuple[Correlator, list[Any]]:
    corr = Correlator(policy(renotify_s=renotify_s))
    ups: list[IncidentUpdate] = []
    t = T0
    for _ in range(flips):
        ups += corr.on_signal(sig("score:faithfulness", t), ctx())
        ups += run_ticks(corr, t + 1, t + up_s - 1, step=30)
        ups += corr.on_signal(sig("score:faithfulness", t + up_s, "cleared"), ctx())
        ups += run_ticks(corr, t + up_s + 1, t + period - 1, step=60)
        t += period
    ups += run_ticks(corr, t, t + 3 * 86400, step=600)
    return corr, ups


def _receiver_consistent(ups: list[IncidentUpdate]) -> None:
    open_keys: set[str] = set()
    for u in ups:
        key = u.incident.dedup_key
        if u.notify == "trigger":
            open_keys.add(key)
        elif u.notify == "resolve":
            assert key in open_keys
            open_keys.discard(key)
    assert not open_keys or all(
        i.status == "open" for i in [u.incident for u in ups if u.incident.dedup_key in open_keys]
    )


def test_fast_flapping_is_one_incident_one_page() -> None:
    _, ups = _flap(period=120)
    assert len(triggers(ups)) <= 2
    assert len({u.incident.id for u in ups}) == 1
    _receiver_consistent(ups)


def test_slow_flapping_across_resolves_does_not_storm() -> None:
    corr, ups = _flap(period=2000)
    assert len(triggers(ups)) <= 2
    assert len({u.incident.id for u in ups}) == 1
    assert ups[-1].action == "resolve"
    assert ups[-1].notify == "resolve"
    assert corr.incidents() == []  # pruned after resolved_retention_s
    _receiver_consistent(ups)


def test_slow_flapping_with_renotify_only_adds_the_periodic_reminders() -> None:
    # 50 flips 2000 s apart keep one incident open ~28 h: the 4-hourly reminder is not a storm.
    _, ups = _flap(period=2000, renotify_s=14400)
    assert len([u for u in triggers(ups) if u.action != "renotify"]) <= 2
    assert len([u for u in ups if u.action == "renotify"]) <= 100000 / 14400 + 1
    _receiver_consistent(ups)


def test_flapping_incident_is_flagged_counted_and_reminds_while_it_holds() -> None:
    """A quality series that fired 3 times is flapping: the record says so, /metrics counts
    it, and while it waits out its long quiet period (nothing firing) it still reminds on
    the renotify schedule instead of going silent for hours."""
    corr = Correlator(policy(renotify_s=3600, flap_hold_s=4 * 3600, flap_hold_max_s=4 * 3600))
    ups: list[IncidentUpdate] = []
    for k in range(3):
        ups += corr.on_signal(sig("score:faithfulness", T0 + k * 300), ctx())
        ups += corr.on_signal(sig("score:faithfulness", T0 + k * 300 + 120, "cleared"), ctx())
    inc = corr.incidents()[0]
    assert inc.flapping and inc.to_record()["flapping"] is True
    assert corr.stats().flapping_open == 1
    ups += run_ticks(corr, T0 + 900, T0 + 3 * 3600, step=300)
    reminders = [u for u in ups if u.action == "renotify"]
    assert reminders and all(not u.incident.signals[0].firing for u in reminders)
    assert corr.incidents()[0].status == "open"  # still holding: 4 h quiet needed


def test_reopen_after_resolve_pages_again() -> None:
    corr = Correlator()
    ups = corr.on_signal(sig("score:faithfulness", T0), ctx())
    ups += corr.on_signal(sig("score:faithfulness", T0 + 60, "cleared"), ctx())
    ups += corr.tick(T0 + 960, no_ctx)
    assert ups[-1].notify == "resolve"
    ups = corr.on_signal(sig("score:faithfulness", T0 + 1500), ctx())
    assert [(u.action, u.notify) for u in ups] == [("reopen", "trigger")]
    assert ups[0].incident.reopens == 1


def test_retrigger_is_deferred_not_lost() -> None:
    corr = Correlator(policy(cooldown_s=300, retrigger_min_s=1200))
    corr.on_signal(sig("score:faithfulness", T0), ctx())
    corr.on_signal(sig("score:faithfulness", T0 + 10, "cleared"), ctx())
    assert corr.tick(T0 + 400, no_ctx)[0].notify == "resolve"
    ups = corr.on_signal(sig("score:faithfulness", T0 + 500), ctx())
    assert [(u.action, u.notify) for u in ups] == [("reopen", None)]
    later = run_ticks(corr, T0 + 560, T0 + 1300)
    assert [u.ts - T0 for u in triggers(later)] == [1220]


# ---- determinism and persistence --------------------------------------------------------


def _scenario() -> list[tuple[str, float, str]]:
    return [
        ("latency_p95_ms", T0, "firing"),
        ("refusal_rate", T0 + 120, "firing"),
        ("score:faithfulness", T0 + 400, "firing"),
        ("latency_p95_ms", T0 + 900, "cleared"),
        ("refusal_rate", T0 + 1500, "cleared"),
        ("refusal_rate", T0 + 1800, "firing"),
        ("score:faithfulness", T0 + 2400, "cleared"),
        ("refusal_rate", T0 + 3000, "cleared"),
        ("refusal_rate", T0 + 9000, "firing"),
        ("refusal_rate", T0 + 9100, "cleared"),
        ("latency_p95_ms", T0 + 20000, "firing"),
    ]


def _drive(corr: Correlator, events: list[tuple[str, float, str]], until: float) -> list[Any]:
    out: list[Any] = []
    t_tick = events[0][1]
    for metric, ts, state in events:
        while t_tick < ts:
            out += [
                (u.action, u.notify, u.ts, u.incident.to_record())
                for u in corr.tick(t_tick, no_ctx)
            ]
            t_tick += 60
        out += [
            (u.action, u.notify, u.ts, u.incident.to_record())
            for u in corr.on_signal(sig(metric, ts, state), ctx())
        ]
    while t_tick <= until:
        out += [
            (u.action, u.notify, u.ts, u.incident.to_record()) for u in corr.tick(t_tick, no_ctx)
        ]
        t_tick += 60
    return out


def test_deterministic_ids_and_updates() -> None:
    a = _drive(Correlator(), _scenario(), T0 + 30000)
    b = _drive(Correlator(), _scenario(), T0 + 30000)
    assert a == b
    assert len(a) > 5


def test_state_round_trip_mid_incident_gives_same_future() -> None:
    events = _scenario()
    head, tail = events[:4], events[4:]
    ref = Correlator()
    _drive(ref, head, T0 + 1000)
    state = json.loads(json.dumps(ref.to_state()))
    restored = Correlator.from_state(state)
    assert [i.to_record() for i in restored.incidents()] == [i.to_record() for i in ref.incidents()]
    assert restored.stats() == ref.stats()
    assert _drive(ref, tail, T0 + 30000) == _drive(restored, tail, T0 + 30000)


def test_restored_open_incident_is_not_paged_twice() -> None:
    corr = Correlator()
    corr.on_signal(sig("score:faithfulness", T0), ctx())
    restored = Correlator.from_state(json.loads(json.dumps(corr.to_state())))
    ups = restored.on_signal(sig("refusal_rate", T0 + 60), ctx())
    ups += run_ticks(restored, T0 + 120, T0 + 1200)
    assert [u.action for u in triggers(ups)] == ["escalate"]


def test_stats() -> None:
    corr = Correlator()
    corr.on_signal(sig("score:faithfulness", T0), ctx())
    corr.on_signal(sig("latency_p95_ms", T0, feature="search"), ctx("search"))
    st = corr.stats()
    assert st.open_by_severity_domain[("warning", "prompt_model")] == 1
    assert st.open_by_severity_domain[("watch", "infra_retrieval")] == 1
    assert st.active_signals_by_layer == {"infra": 1, "api": 0, "behavioral": 0, "quality": 1}
    assert st.muted_by_reason == {"silence": 0, "inhibited": 0}
    assert st.open_total == 2


def test_open_incident_reads_its_context_once_per_refresh_bin() -> None:
    """Ticks every 15 s read the feature context (two hours of label buckets) once per
    `refresh_s` bin, not on every tick; a joining signal still brings a fresh one."""
    corr = Correlator(policy(refresh_s=60.0))
    corr.on_signal(sig("latency_p95_ms", T0), ctx())
    reads: list[float] = []

    def counting(feature: str, onset: float) -> Any:
        reads.append(onset)
        return ctx(feature)

    start = 60.0 * (T0 // 60.0 + 1)  # the first tick of a bin
    corr.tick(start, counting)
    per_refresh = len(reads)  # the refresh may read a second context for the start estimate
    assert per_refresh >= 1
    for k in range(1, 16):  # the rest of four minutes of 15 s ticks
        corr.tick(start + 15.0 * k, counting)
    assert len(reads) == 4 * per_refresh
    corr.tick(start + 15.0 * 16, counting)  # the next bin
    assert len(reads) == 5 * per_refresh


def test_an_older_incident_refreshes_less_often() -> None:
    """Past `refresh_slow_after_s` the estimated start is settled and the evidence moves
    slowly: one context read per `refresh_slow_s` instead of per `refresh_s`."""
    corr = Correlator(policy(refresh_s=60.0, refresh_slow_after_s=3600.0, refresh_slow_s=600.0))
    corr.on_signal(sig("latency_p95_ms", T0), ctx())
    reads: list[float] = []

    def counting(feature: str, onset: float) -> Any:
        reads.append(onset)
        return ctx(feature)

    late = 600.0 * (T0 // 600.0 + 12)  # a slow-bin start, two hours after the incident opened
    corr.tick(late, counting)
    per_refresh = len(reads)
    assert per_refresh >= 1
    for k in range(1, 40):  # ten minutes of 15 s ticks: still inside the same slow bin
        corr.tick(late + 15.0 * k, counting)
    assert len(reads) == per_refresh
    corr.tick(late + 600.0, counting)
    assert len(reads) == 2 * per_refresh
