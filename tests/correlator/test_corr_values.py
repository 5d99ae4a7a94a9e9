"""A firing member's numbers follow its series (probe: pages and records quoted the figure
of the moment a signal fired, and understated a growing outage 3-7x): `value` is the
series' current reading, `peak` its most extreme one, and the record is refreshed with
them once per refresh interval, not on every tick."""

from __future__ import annotations

from dataclasses import dataclass

from corr_helpers import FEATURE, T0, ctx, no_ctx, policy, sig

from correlator import Correlator, IncidentUpdate
from correlator.records import Readings


@dataclass(frozen=True)
class _Reading:
    value: float
    n: int | None


def _readings(rate: float, n: int = 400, series: str = "") -> Readings:
    return {(FEATURE, "rate_limited_rate", series): _Reading(rate, n)}


def _grow(
    corr: Correlator, rates: list[float], start: float, step: float = 15.0
) -> list[IncidentUpdate]:
    out: list[IncidentUpdate] = []
    for i, rate in enumerate(rates):
        out += corr.tick(start + i * step, no_ctx, _readings(rate))
    return out


def _member(corr: Correlator) -> dict[str, object]:
    (inc,) = corr.incidents()
    (member,) = inc.to_record()["signals"]
    return dict(member)


def test_value_and_peak_follow_the_series_while_it_fires() -> None:
    corr = Correlator(policy(refresh_s=60))
    corr.on_signal(sig("rate_limited_rate", T0, value=0.036, n=300), ctx())
    # The outage grows after detection, 15-s ticks.
    _grow(corr, [0.05, 0.12, 0.21, 0.19, 0.20, 0.21, 0.20, 0.18], T0 + 15)
    corr.tick(T0 + 180, no_ctx, _readings(0.17))  # a new refresh bin publishes
    m = _member(corr)
    assert m["value"] == 0.17 and m["n"] == 400
    assert m["peak"] == 0.21  # the most extreme reading, not the value at detection
    (inc,) = corr.incidents()
    assert "rate limited rate 17% vs 0.4%" in inc.summary
    provider = inc.triage[0].evidence
    assert "rate_limited_rate 17% vs baseline 0.4% over 400 calls (peak 21%)" in provider


def test_a_falling_metric_peaks_at_its_lowest() -> None:
    corr = Correlator(policy(refresh_s=60))
    corr.on_signal(sig("availability", T0, value=0.8, n=300), ctx())
    for i, v in enumerate([0.7, 0.58, 0.66, 0.75]):
        corr.tick(T0 + 60 * (i + 1), no_ctx, {(FEATURE, "availability", ""): _Reading(v, 200)})
    (inc,) = corr.incidents()
    (m,) = inc.signals
    assert (m.value, m.peak) == (0.75, 0.58)


def test_the_record_changes_once_per_refresh_interval_not_every_tick() -> None:
    corr = Correlator(policy(refresh_s=60))
    corr.on_signal(sig("rate_limited_rate", T0, value=0.036, n=300), ctx())
    rates = [0.04 + 0.005 * i for i in range(40)]  # a new number every 15-s tick for 10 min
    ups = _grow(corr, rates, T0 + 15)
    updates = [u for u in ups if u.action == "update"]
    assert 9 <= len(updates) <= 11  # one per minute
    assert all(u.notify is None for u in ups)  # a number's change pages nobody
    values = [u.incident.signals[0].value for u in updates]
    assert values == sorted(values) and values[-1] > 0.2


def test_a_cleared_member_keeps_its_last_reading_and_the_evidence_quotes_its_peak() -> None:
    corr = Correlator(policy(refresh_s=60, cooldown_s=900))
    corr.on_signal(sig("rate_limited_rate", T0, value=0.036, n=300), ctx())
    _grow(corr, [0.1, 0.25, 0.3, 0.25, 0.1, 0.01], T0 + 60, step=60)
    corr.on_signal(sig("rate_limited_rate", T0 + 420, "cleared", value=0.002), ctx())
    (inc,) = corr.incidents()
    (m,) = inc.signals
    assert (m.value, m.peak, m.peak_n) == (0.01, 0.3, 400)
    # A resolved outage reads as what it was, not as its recovery.
    assert "rate limited rate 30% vs 0.4%" in inc.summary
    assert "rate_limited_rate 30% vs baseline 0.4% over 400 calls (peak, now cleared)" in (
        inc.triage[0].evidence
    )


def test_a_reminder_carries_the_current_numbers() -> None:
    p = policy(refresh_s=60, refresh_slow_after_s=600, refresh_slow_s=3600, renotify_s=1800)
    corr = Correlator(p)
    first = corr.on_signal(sig("availability", T0, value=0.8, n=300), ctx())
    assert [u.notify for u in first] == ["trigger"]
    t = T0
    reminders: list[IncidentUpdate] = []
    while t < T0 + 1900:
        t += 15
        reading = {(FEATURE, "availability", ""): _Reading(0.8 - (t - T0) / 10_000, 250)}
        reminders += [u for u in corr.tick(t, no_ctx, reading) if u.action == "renotify"]
    (reminder,) = reminders
    # Due mid-way through a slow refresh bin: refreshed for the reminder, not an hour old.
    assert reminder.incident.signals[0].value == 0.8 - (reminder.ts - T0) / 10_000
    assert "availability 62% vs 99.9%" in reminder.incident.summary


def test_series_without_a_reading_keep_the_transition_value() -> None:
    corr = Correlator(policy(refresh_s=60))
    corr.on_signal(sig("rate_limited_rate", T0, value=0.036, n=300, series="provider=x"), ctx())
    _grow(corr, [0.2, 0.3], T0 + 60, step=60)  # readings of the whole feature, not provider=x
    corr.tick(T0 + 240, no_ctx, {})
    m = _member(corr)
    assert (m["value"], m["peak"]) == (0.036, 0.036)


def test_readings_survive_no_state_round_trip_but_the_published_numbers_do() -> None:
    corr = Correlator(policy(refresh_s=60))
    corr.on_signal(sig("rate_limited_rate", T0, value=0.036, n=300), ctx())
    _grow(corr, [0.2, 0.3], T0 + 60, step=60)
    back = Correlator.from_state(corr.to_state())
    assert back.incidents()[0].signals == corr.incidents()[0].signals
