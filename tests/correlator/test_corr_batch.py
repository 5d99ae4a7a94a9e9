"""Signals that arrive together (one Alertmanager webhook) are settled once per incident
(`Correlator.on_signals`), and give the incidents that `on_signal` one by one gives."""

from __future__ import annotations

from typing import Any

from corr_helpers import FEATURE, T0, policy
from hypothesis import given, settings
from hypothesis import strategies as st

from correlator import Correlator, FeatureContext, HumanAction, IncidentUpdate, Signal
from correlator.families import DERIVED_FAMILIES
from correlator.severity import SeverityInput, assess, assess_any
from detectors.base import Direction

# Alert names of different symptom families (`correlator.families`), and one that pages alone.
ALERTS = ["VectorStoreSlow", "GpuDown", "latency_p95_ms", "error_rate", "refusal_rate"]


def alert(
    name: str,
    ts: float,
    state: str = "firing",
    *,
    fp: str = "",
    feature: str = FEATURE,
    page_alone: bool = False,
) -> Signal:
    """An Alertmanager alert as `daemon.ingest.alertmanager` makes it."""
    firing = state == "firing"
    return Signal(
        ts=ts,
        feature=feature,
        metric=name,
        layer="infra",
        detector="alertmanager",
        state="firing" if firing else "cleared",
        value=1.0 if firing else 0.0,
        baseline=0.0,
        score=1.0,
        direction=Direction.UP,
        series=fp or f"fp-{name}",
        page_alone=page_alone,
    )


class Contexts:
    """The pipeline's `context` for alerts (their series keep no history), counting reads."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, feature: str, onset: float) -> FeatureContext:
        self.calls += 1
        return FeatureContext(feature, {}, {}, {}, {}, history=lambda *_: [], start=onset)


def records(corr: Correlator) -> list[dict[str, Any]]:
    return [i.to_record() for i in corr.incidents()]


def one_by_one(corr: Correlator, signals: list[Signal]) -> list[IncidentUpdate]:
    contexts = Contexts()
    out: list[IncidentUpdate] = []
    for s in signals:
        out += corr.on_signal(s, contexts(s.feature, s.ts), contexts)
    return out


def test_a_webhook_of_many_alerts_is_one_refresh_and_one_update_per_incident() -> None:
    """Probe finding: 2,000 alerts for one feature each refreshed (context read, start,
    attribution, triage, summary) and copied the growing incident: quadratic, seconds of
    blocked event loop. Now each incident is looked at when it opens and once after the
    batch (each look reads one context, two when it splits the span at the start),
    whatever the number of alerts, and gets one update."""

    def webhook(n: int) -> list[Signal]:
        batch = [alert("GpuDown", T0 + i % 7, fp=f"fp{i}") for i in range(n)]
        return batch + [
            alert("VectorStoreSlow", T0 + 5, fp=f"v{i}", feature="other") for i in range(n)
        ]

    reads: dict[int, int] = {}
    for n in (30, 300):
        corr = Correlator(policy())
        contexts = Contexts()
        updates = corr.on_signals(webhook(n), contexts)
        reads[n] = contexts.calls
        assert [(u.incident.feature, u.action, len(u.incident.signals)) for u in updates] == [
            (FEATURE, "open", n),
            ("other", "open", n),
        ]
        contexts.calls = 0
        assert corr.on_signals(webhook(n), contexts) == []  # the group re-sent: no change
        reads[-n] = contexts.calls
    assert reads[30] == reads[300] <= 2 * 2 * 2
    assert reads[-30] == reads[-300] <= 2 * 2
    contexts = Contexts()
    Correlator(policy()).on_signals([alert("GpuDown", T0)], contexts)
    assert contexts.calls == 1  # a webhook of one alert: one read, as `on_signal` had


def test_batch_gives_the_records_of_one_by_one_same_instant() -> None:
    """Alerts of one rule evaluation share their startsAt: the start is placed from the
    alert that opened the incident, as one by one."""
    batch = [alert(name, T0, fp=f"{name}-{i}") for i in range(3) for name in reversed(ALERTS)]
    a, b = Correlator(policy()), Correlator(policy())
    a.on_signals(batch, Contexts())
    one_by_one(b, batch)
    assert records(a) == records(b)
    (inc,) = a.incidents()
    assert inc.start_estimate is not None and inc.start_estimate.metric == "refusal_rate"


def test_a_warning_then_critical_in_one_webhook_is_one_critical_page() -> None:
    """With no group wait, one by one paged warning and, an alert later, critical; the
    batch pages once, at the severity the alerts make together, as group_wait would."""
    batch = [alert("error_rate", T0), alert("GpuDown", T0 + 1, page_alone=True)]
    a, b = Correlator(policy()), Correlator(policy())
    batched = a.on_signals(batch, Contexts())
    single = one_by_one(b, batch)
    assert records(a) == records(b)
    assert [(u.action, u.notify, u.incident.severity) for u in single] == [
        ("open", "trigger", "warning"),
        ("escalate", "trigger", "critical"),
    ]
    assert [(u.action, u.notify, u.incident.severity) for u in batched] == [
        ("open", "trigger", "critical"),
    ]


def test_alerts_out_of_time_order_are_judged_together() -> None:
    """Alertmanager orders a group's alerts by labels, not by time. One by one, an alert
    that started before the one already joined was judged at its own start, before the
    other's onset, so two families firing together stayed `watch`; the batch judges every
    firing alert with all the others, in any order, as a sorted one by one would."""
    batch = [alert("VectorStoreSlow", T0), alert("GpuDown", T0 - 20)]
    a, b, c = Correlator(policy()), Correlator(policy()), Correlator(policy())
    a.on_signals(batch, Contexts())
    one_by_one(b, batch)
    one_by_one(c, sorted(batch, key=lambda s: s.ts))
    assert [i.severity for i in b.incidents()] == ["watch"]
    assert [i.severity for i in a.incidents()] == [i.severity for i in c.incidents()]
    assert [i.severity for i in a.incidents()] == ["critical"]


def test_a_resolve_inside_the_batch_comes_after_the_update_before_it() -> None:
    """An alert that clears the last member, then one (same feature) a cooldown later:
    the incident's update, then its resolve, then a new incident, as one by one."""
    pol = policy(cooldown_s=60, reopen_s=0)
    batch = [alert("GpuDown", T0), alert("GpuDown", T0 + 10, "cleared")]
    batch += [alert("VectorStoreSlow", T0 + 200)]
    a, b = Correlator(pol), Correlator(pol)
    a.on_signals(batch[:1], Contexts())
    b.on_signals(batch[:1], Contexts())
    batched = a.on_signals(batch[1:], Contexts())
    single = one_by_one(b, batch[1:])
    assert records(a) == records(b)
    assert (
        [u.action for u in batched] == [u.action for u in single] == ["update", "resolve", "open"]
    )


def test_a_failing_signal_costs_only_itself() -> None:
    """As when the pipeline wrapped each `on_signal`: the failure is kept for the caller to
    count and log, and the other alerts of the webhook still join."""
    corr = Correlator(policy())
    calls = 0

    def flaky(feature: str, onset: float) -> FeatureContext:
        nonlocal calls
        calls += 1
        if feature == "broken":
            raise RuntimeError("context read failed")
        return Contexts()(feature, onset)

    batch = [alert("GpuDown", T0, feature="broken"), alert("GpuDown", T0)]
    updates = corr.on_signals(batch, flaky)
    assert [u.incident.feature for u in updates] == [FEATURE]
    failures = corr.take_failures()
    assert [(f.stage, f.feature, f.metric) for f in failures] == [
        ("correlate", "broken", "GpuDown"),  # its first look
        ("correlate", "broken", "*"),  # its settling
    ]


# ---- properties ----------------------------------------------------------------------------

member = st.builds(
    SeverityInput,
    metric=st.sampled_from(["latency_p95_ms", "error_rate", "score:x", "GpuDown"]),
    layer=st.sampled_from(["infra", "api", "quality"]),
    onset=st.integers(0, 30).map(float),
    cleared=st.one_of(st.none(), st.integers(0, 40).map(float)),
    page_alone=st.sampled_from([False, False, False, True]),
    family=st.sampled_from(["latency", "errors", "quality", "cost", "other"]),
)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(member, max_size=8),
    st.lists(st.integers(0, 50).map(float), min_size=1, max_size=6),
    st.sampled_from([0.0, 5.0, 10.0]),
    st.integers(1, 3),
)
def test_assess_any_is_the_highest_assess(
    members: list[SeverityInput], times: list[float], window: float, min_signals: int
) -> None:
    """Integer times hit every boundary: an onset at a time, a clear exactly a window
    before it."""
    assert "cost" in DERIVED_FAMILIES  # one derived family among the sampled ones
    rank = {"watch": 0, "warning": 1, "critical": 2}
    expected = max((assess(members, t, window, min_signals) for t in times), key=rank.__getitem__)
    assert assess_any(members, times, window, min_signals) == expected


event = st.tuples(
    st.sampled_from([0.0, 0.0, 1.0, 30.0, 90.0, 400.0]),  # seconds after the previous alert
    st.sampled_from(ALERTS),
    st.integers(0, 2),  # fingerprint
    st.sampled_from(["firing", "firing", "cleared"]),
    st.sampled_from([FEATURE, "other"]),
)
policies = st.sampled_from(
    [
        {},
        {"cooldown_s": 60, "reopen_s": 120, "window_s": 60, "flap_fires": 2},
        {"group_wait_s": 30, "min_signals": 1},
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(event, max_size=6), st.lists(event, min_size=1, max_size=25), policies)
def test_batch_gives_the_records_of_one_by_one(
    before: list[Any], batch: list[Any], pol: dict[str, float]
) -> None:
    """Alerts in time order (as a group's alerts come, within the bounded lookback), some of
    them already in incidents, clears and re-fires included: the same incident records and
    the same incidents paged as `on_signal` one by one. (One by one may page an incident
    twice within the batch, warning then critical; the batch sends the last of those.)"""

    def signals(events: list[Any], t: float) -> tuple[list[Signal], float]:
        out = []
        for dt, name, fp, state, feature in events:
            t += dt
            page_alone = name == "GpuDown" and fp == 2
            out.append(
                alert(name, t, state, fp=f"{name}{fp}", feature=feature, page_alone=page_alone)
            )
        return out, t

    prior, t = signals(before, T0)
    sigs, _ = signals(batch, t)
    a, b = Correlator(policy(**pol)), Correlator(policy(**pol))
    one_by_one(a, prior)
    one_by_one(b, prior)
    batched = a.on_signals(sigs, Contexts())
    single = one_by_one(b, sigs)
    assert records(a) == records(b)

    def last_notice(updates: list[IncidentUpdate]) -> dict[str, tuple[str | None, str]]:
        return {u.incident.id: (u.notify, u.incident.severity) for u in updates if u.notify}

    assert last_notice(batched) == last_notice(single)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(event, min_size=1, max_size=6),
    st.lists(event, min_size=1, max_size=25),
    policies,
    st.sampled_from([0.0, 30.0, 600.0]),
)
def test_batch_after_a_manual_resolve_gives_the_records_of_one_by_one(
    before: list[Any], batch: list[Any], pol: dict[str, float], grace: float
) -> None:
    """Every open incident resolved by hand while members still fire, then a webhook: its
    alerts clear those members, re-send them, or fire others, before and after the grace
    (`Correlator._recheck`). The batch gives the records and pages of one by one: a reopen
    at the grace comes after what earlier alerts of the batch did, and members that clear
    give the resolved incident's record their clear times, without a page."""

    def signals(events: list[Any], t: float) -> tuple[list[Signal], float]:
        out = []
        for dt, name, fp, state, feature in events:
            t += dt
            out.append(alert(name, t, state, fp=f"{name}{fp}", feature=feature))
        return out, t

    prior, t = signals(before, T0)
    sigs, _ = signals(batch, t)
    a, b = (Correlator(policy(**pol, resolve_grace_s=grace)) for _ in range(2))
    one_by_one(a, prior)
    one_by_one(b, prior)
    for corr in (a, b):
        for inc in corr.open_incidents():
            corr.resolve(inc.id, HumanAction("alice", t, "rolled back"))
    batched = a.on_signals(sigs, Contexts())
    single = one_by_one(b, sigs)
    assert records(a) == records(b)

    def notices(updates: list[IncidentUpdate]) -> dict[str, tuple[str | None, str, str | None]]:
        return {
            u.incident.id: (u.notify, u.incident.severity, u.incident.reopen_reason)
            for u in updates
            if u.notify
        }

    assert notices(batched) == notices(single)
    assert [u for u in batched if u.incident.status == "resolved" and u.notify] == [
        u for u in single if u.incident.status == "resolved" and u.notify
    ]


def test_a_webhook_that_clears_still_firing_alerts_is_one_update_without_a_page() -> None:
    """Resolved by hand while 300 alerts fire; a webhook clears them all. One update (not
    300 copies of the incident), no page, the incident stays resolved with their clear
    times; with none left firing, the grace no longer reopens it."""
    corr = Correlator(policy(cooldown_s=600))
    corr.on_signals([alert("GpuDown", T0, fp=f"fp{i}") for i in range(300)], Contexts())
    (inc,) = corr.open_incidents()
    corr.resolve(inc.id, HumanAction("alice", T0 + 60, "rolled back"))
    assert corr.get(inc.id).still_firing is not None  # type: ignore[union-attr]
    contexts = Contexts()
    cleared = [alert("GpuDown", T0 + 120, "cleared", fp=f"fp{i}") for i in range(300)]
    updates = corr.on_signals(cleared, contexts)
    assert [(u.action, u.notify, u.incident.status) for u in updates] == [
        ("update", None, "resolved")
    ]
    assert contexts.calls == 0  # a resolved incident is not refreshed
    rec = updates[0].incident
    assert rec.still_firing is None and all(s.cleared == T0 + 120 for s in rec.signals)
    assert corr.tick(T0 + 3600, Contexts()) == []


def test_a_webhook_after_the_grace_reopens_once_then_joins() -> None:
    """Resolved by hand while an alert fires; the next webhook comes after the grace with
    another alert of the feature: the incident reopens and pages once, saying why, and the
    new alert joins it, as one by one."""
    pol = policy(cooldown_s=600)
    a, b = Correlator(pol), Correlator(pol)
    for corr in (a, b):
        corr.on_signals([alert("GpuDown", T0, page_alone=True)], Contexts())
        (inc,) = corr.open_incidents()
        corr.resolve(inc.id, HumanAction("alice", T0 + 60, "rolled back"))
    batch = [alert("error_rate", T0 + 700), alert("VectorStoreSlow", T0 + 701)]
    batched = a.on_signals(batch, Contexts())
    single = one_by_one(b, batch)
    assert records(a) == records(b)
    assert [(u.action, u.notify) for u in batched if u.notify] == [("reopen", "trigger")]
    assert [(u.action, u.notify) for u in single if u.notify] == [("reopen", "trigger")]
    (inc,) = a.incidents()
    assert inc.status == "open" and len(inc.signals) == 3
    assert (
        inc.reopen_reason
        == "GpuDown{fp-GpuDown} still firing 10 min after a manual resolve by alice"
    )


def test_a_webhook_re_sending_still_firing_alerts_changes_nothing() -> None:
    """Alertmanager re-sends a group's firing alerts with every notification: after a
    manual resolve that is the same firing, in a batch as one by one; the grace decides."""
    corr = Correlator(policy(cooldown_s=600))
    firing = [alert("GpuDown", T0, fp=f"fp{i}", page_alone=True) for i in range(30)]
    corr.on_signals(firing, Contexts())
    (inc,) = corr.open_incidents()
    corr.resolve(inc.id, HumanAction("alice", T0 + 60, "rolled back"))
    again = [alert("GpuDown", T0 + 300, fp=f"fp{i}", page_alone=True) for i in range(30)]
    assert corr.on_signals(again, Contexts()) == []
    assert corr.get(inc.id).status == "resolved"  # type: ignore[union-attr]
    back = corr.tick(T0 + 660, Contexts())
    assert [(u.action, u.notify) for u in back] == [("reopen", "trigger")]
