"""Silences, inhibition, and resolves of paged-then-muted incidents."""

from __future__ import annotations

import json
from typing import Any

import pytest
from corr_helpers import FEATURE, T0, ctx, no_ctx, policy, run_ticks, sig, triggers

from correlator import (
    Correlator,
    InhibitMuter,
    Matcher,
    Muter,
    Silence,
    SilenceMuter,
)
from correlator.incident import Incident
from correlator.silences import CLOSED_VALUES, incident_values, load_silences


def _incident(corr: Correlator | None = None) -> Incident:
    corr = corr or Correlator()
    c = ctx(bad={"prompt_version": {"v42": 30}}, base={"prompt_version": {"v41": 100}})
    corr.on_signal(sig("score:faithfulness", T0), c)
    return corr.on_signal(sig("refusal_rate", T0 + 10), c)[-1].incident


def _silence(*matchers: Matcher, start: float = T0 - 10, end: float = T0 + 3600) -> Silence:
    return Silence("s1", tuple(matchers), start, end, "alice", "known issue")


@pytest.mark.parametrize(
    ("matcher", "hit"),
    [
        (Matcher("feature", FEATURE), True),
        (Matcher("feature", "search"), False),
        (Matcher("feature", "support-.*", is_regex=True), True),
        (Matcher("feature", "support", is_regex=True), False),  # anchored
        (Matcher("metric", "score:.*", is_regex=True), True),
        (Matcher("metric", "refusal_rate"), True),
        (Matcher("layer", "infra", is_equal=False), True),
        (Matcher("layer", "quality", is_equal=False), False),
        (Matcher("layer", "behavioral|quality", is_regex=True, is_equal=False), False),
        (Matcher("domain", "prompt_model"), True),
        (Matcher("severity", "critical"), True),
        (Matcher("severity", "warning"), False),
        (Matcher("prompt_version", "v42"), True),
        (Matcher("prompt_version", "v41"), False),
        (Matcher("segment", ""), True),  # absent label is ""
        (Matcher("segment", "", is_equal=False), False),
    ],
)
def test_matcher_kinds(matcher: Matcher, hit: bool) -> None:
    # The matcher alone: `segment=""` may not be a silence's only matcher (it matches the
    # empty string), but it is a fine one next to another.
    inc = _incident()
    assert matcher.matches(incident_values(inc, matcher.name)) is hit
    assert _silence(matcher, Matcher("feature", FEATURE)).matches(inc) is hit


def test_all_matchers_must_match() -> None:
    inc = _incident()
    s = _silence(Matcher("feature", FEATURE), Matcher("domain", "provider"))
    assert not s.matches(inc)


def test_silence_time_span() -> None:
    inc = _incident()
    muter = SilenceMuter([_silence(Matcher("feature", FEATURE), start=T0 + 100, end=T0 + 200)])
    assert muter.mutes(inc, T0 + 99) is None
    assert muter.mutes(inc, T0 + 100) == "silence:s1"
    assert muter.mutes(inc, T0 + 199.9) == "silence:s1"
    assert muter.mutes(inc, T0 + 200) is None


def test_silenced_incident_is_recorded_never_pages_then_pages_when_silence_ends() -> None:
    muter = SilenceMuter([_silence(Matcher("feature", FEATURE), end=T0 + 600)])
    corr = Correlator(muters=[muter])
    ups = corr.on_signal(sig("score:faithfulness", T0), ctx())
    assert ups[0].notify is None
    inc = ups[0].incident
    assert inc.muted is not None and (inc.muted.reason, inc.muted.by) == ("silence", "s1")
    assert inc.to_record()["muted"] == {"reason": "silence", "by": "s1"}
    assert not inc.paged
    assert corr.stats().muted_by_reason["silence"] == 1
    later = run_ticks(corr, T0 + 60, T0 + 900)
    assert [(u.ts - T0, u.action) for u in triggers(later)] == [(600, "update")]
    assert later[0].incident.muted is None


def test_expired_and_removed_silences() -> None:
    muter = SilenceMuter([_silence(Matcher("feature", FEATURE))])
    inc = _incident()
    assert muter.expire("s1", T0 + 50)
    assert muter.mutes(inc, T0 + 60) is None
    assert not muter.expire("s1", T0 + 70)
    assert muter.get("s1") is not None and muter.get("s1").ends_at == T0 + 50  # type: ignore[union-attr]
    assert muter.gc(T0 + 50 + 86400) == 1
    assert muter.list() == []
    muter.add(_silence(Matcher("feature", FEATURE)))
    assert muter.remove("s1") and not muter.remove("s1")


def test_silence_state_round_trip_and_validation() -> None:
    muter = SilenceMuter([_silence(Matcher("metric", "score:.*", is_regex=True))])
    back = SilenceMuter.from_state(json.loads(json.dumps(muter.to_state())))
    assert back.list() == muter.list()
    rec = back.list()[0].to_record(T0)
    assert rec["state"] == "active" and rec["starts_at"].endswith("Z")
    good = {
        "id": "x",
        "matchers": [{"name": "feature", "value": "a"}],
        "starts_at": "2023-11-14T22:13:20Z",
        "ends_at": T0 + 60,
    }
    assert Silence.from_dict(good).starts_at == T0
    with pytest.raises(ValueError, match=r"silence\.matchers: expected a non-empty list"):
        Silence.from_dict({**good, "matchers": []})
    with pytest.raises(ValueError, match=r"silence\.matchers\[0\]\.value"):
        Silence.from_dict({**good, "matchers": [{"name": "feature"}]})
    with pytest.raises(ValueError, match="bad regex"):
        Silence.from_dict({**good, "matchers": [{"name": "a", "value": "(", "is_regex": True}]})
    with pytest.raises(ValueError, match=r"silence\.ends_at: must be after starts_at"):
        Silence.from_dict({**good, "ends_at": T0 - 1})
    with pytest.raises(ValueError, match="needs a zone"):
        Silence.from_dict({**good, "starts_at": "2023-11-14T22:13:20"})


_GOOD = {
    "id": "x",
    "matchers": [{"name": "feature", "value": "a"}],
    "starts_at": T0,
    "ends_at": T0 + 60,
}


def _m(name: str, value: str, *, regex: bool = False, equal: bool = True) -> dict[str, Any]:
    return {"name": name, "value": value, "is_regex": regex, "is_equal": equal}


@pytest.mark.parametrize(
    "matchers",
    [
        [_m("feature", ".*", regex=True)],  # the probe's silence: muted everything
        [_m("feature", "x", equal=False)],  # Alertmanager refuses this too
        [_m("segment", "")],
        [_m("feature", ".*", regex=True), _m("prompt_version", "v9", equal=False)],
        [_m("severity", ".*", regex=True)],  # closed: matches every severity
        [_m("layer", "infra|api|behavioral|quality", regex=True)],
    ],
)
def test_a_silence_that_matches_every_incident_is_refused(matchers: list[dict[str, Any]]) -> None:
    with pytest.raises(ValueError, match=r"^silence\.matchers: at least one matcher must not"):
        Silence.from_dict({**_GOOD, "matchers": matchers})
    built = tuple(Matcher.from_dict(m) for m in matchers)
    with pytest.raises(ValueError, match="would silence every incident"):
        Silence("s", built, T0, T0 + 60)


@pytest.mark.parametrize(
    "matchers",
    [
        [_m("feature", ".+", regex=True)],  # does not match "" (as Alertmanager)
        [_m("severity", "critical", equal=False)],  # leaves critical out
        [_m("feature", ".*", regex=True), _m("segment", "", equal=False)],
        [_m("segment", ""), _m("domain", "provider")],
    ],
)
def test_a_silence_with_one_narrowing_matcher_is_kept(matchers: list[dict[str, Any]]) -> None:
    assert len(Silence.from_dict({**_GOOD, "matchers": matchers}).matchers) == len(matchers)


@pytest.mark.parametrize(
    ("matcher", "error"),
    [
        (
            _m("severity", "critcal"),
            r"matchers\[0\]\.value: severity 'critcal' is not one of critical, warning,"
            r" watch; did you mean 'critical'\?",
        ),
        (_m("severity", "Critical", equal=False), r"did you mean 'critical'"),
        (_m("domain", "provder"), r"domain 'provder' is not one of provider, prompt_model"),
        (_m("status", "closed"), r"status 'closed' is not one of open, resolved"),
        (_m("layer", "infr"), r"layer 'infr' is not one of infra, api, behavioral, quality"),
        (_m("severity", ""), r"severity '' is not one of"),
        (_m("severity", "crit", regex=True), r"severity regex 'crit' matches none of critical"),
        (_m("domain", "prov", regex=True, equal=False), r"domain regex 'prov' matches none"),
    ],
)
def test_a_matcher_on_a_closed_field_names_its_values(matcher: dict[str, Any], error: str) -> None:
    body = {**_GOOD, "matchers": [matcher, _m("feature", "a")]}
    with pytest.raises(ValueError, match=error):
        Silence.from_dict(body)
    with pytest.raises(ValueError, match=r"is not one of|matches none of"):
        Matcher.from_dict(matcher)


def test_closed_fields_accept_their_values_and_any_regex_that_matches_one() -> None:
    for name, values in CLOSED_VALUES.items():
        for value in values:
            Silence.from_dict({**_GOOD, "matchers": [_m(name, value)]})
    # A regex that still means something is kept, typo and all (documented).
    Silence.from_dict({**_GOOD, "matchers": [_m("severity", "critical|warnig", regex=True)]})
    # Open fields take any value: a feature or label value the daemon has not seen yet.
    Silence.from_dict({**_GOOD, "matchers": [_m("feature", "critcal")]})
    Silence.from_dict({**_GOOD, "matchers": [_m("metric", "latncy_p95_ms")]})


@pytest.mark.parametrize(
    ("patch", "error"),
    [
        (
            {"endsAt": T0 + 60},
            r"^silence: unknown field 'endsAt' \(did you mean 'ends_at'\?\); the fields are id,",
        ),
        ({"startsAt": T0}, r"unknown field 'startsAt' \(did you mean 'starts_at'\?\)"),
        ({"createdBy": "al"}, r"unknown field 'createdBy' \(did you mean 'created_by'\?\)"),
        ({"coment": "x"}, r"unknown field 'coment' \(did you mean 'comment'\?\)"),
        ({f"k{i}": 1 for i in range(8)}, r"unknown fields 'k0', .*'k4' and 3 more; the fields"),
        (
            {"matchers": [{"name": "feature", "value": "a.*", "isRegex": True}]},
            r"^silence\.matchers\[0\]: unknown field 'isRegex' \(did you mean 'is_regex'\?\)",
        ),
        (
            {"matchers": [{"name": "feature", "value": "a", "isEqual": False, "x": 1}]},
            r"unknown fields 'isEqual' \(did you mean 'is_equal'\?\), 'x'; the fields are name,",
        ),
    ],
)
def test_unknown_fields_are_refused_by_name(patch: dict[str, object], error: str) -> None:
    # Before: ignored, so `isRegex` made a literal matcher that never matched and `endsAt`
    # an error about ends_at being a NoneType.
    with pytest.raises(ValueError, match=error):
        Silence.from_dict({**_GOOD, **patch})


def test_a_missing_time_or_matcher_field_is_required() -> None:
    without_end = {k: v for k, v in _GOOD.items() if k != "ends_at"}
    with pytest.raises(ValueError, match=r"^silence\.ends_at: required \(Unix seconds or RFC"):
        Silence.from_dict(without_end)
    with pytest.raises(ValueError, match=r"^silence\.ends_at: required, got null"):
        Silence.from_dict({**_GOOD, "ends_at": None})
    with pytest.raises(ValueError, match=r"^silence\.starts_at: required"):
        Silence.from_dict({k: v for k, v in _GOOD.items() if k != "starts_at"})
    with pytest.raises(ValueError, match=r"^silence\.matchers\[0\]\.value: required$"):
        Silence.from_dict({**_GOOD, "matchers": [{"name": "feature"}]})


def test_a_stored_silence_the_rules_now_refuse_is_skipped_on_restore() -> None:
    """Rows written before these rules: skipped with an error each (the daemon logs
    `silence_skipped`), like rows beyond today's time bounds. A mute-everything silence from
    before thus ends at the upgrade: pages resume, which is the safe side for an alerter."""
    keep = Silence.from_dict(_GOOD).to_dict()
    rows = [{**keep, "id": "all", "matchers": [_m("feature", ".*", regex=True)]}, keep]
    rows.append({**keep, "id": "typo", "matchers": [_m("severity", "critcal")]})
    loaded, errors = load_silences({"silences": rows})
    assert [s.id for s in loaded] == ["x"]
    assert errors[0].startswith("silences[0].matchers: at least one matcher must not")
    assert errors[1].startswith("silences[2].matchers[0].value: severity 'critcal'")


def test_paged_then_silenced_still_resolves_at_receiver() -> None:
    muter = SilenceMuter()
    corr = Correlator(muters=[muter])
    ups = corr.on_signal(sig("score:faithfulness", T0), ctx())
    assert ups[0].notify == "trigger"
    muter.add(_silence(Matcher("feature", FEATURE), end=T0 + 86400))
    ups = corr.tick(T0 + 60, no_ctx)
    assert ups[0].incident.muted is not None and ups[0].notify is None
    ups = corr.on_signal(sig("score:faithfulness", T0 + 120, "cleared"), ctx())
    ups += run_ticks(corr, T0 + 180, T0 + 5 * 3600)  # no re-notification while muted
    assert [(u.action, u.notify) for u in ups if u.notify] == [("resolve", "resolve")]


def test_custom_muter_protocol() -> None:
    class Maintenance:
        def mutes(self, incident: Incident, now: float) -> str | None:
            return "maintenance:db-upgrade" if incident.feature == FEATURE else None

    m = Maintenance()
    assert isinstance(m, Muter)
    corr = Correlator(muters=[m])
    up = corr.on_signal(sig("score:faithfulness", T0), ctx())[0]
    assert up.notify is None
    assert up.incident.muted is not None and up.incident.muted.by == "maintenance:db-upgrade"


# ---- inhibition -------------------------------------------------------------------------


def _split_corr() -> Correlator:
    corr = Correlator(policy(split_after_s=600))
    corr.add_muter(InhibitMuter(corr.open_incidents))
    return corr


def test_provider_incident_inhibits_later_prompt_model_incident_of_same_feature() -> None:
    corr = _split_corr()
    a = corr.on_signal(sig("rate_limited_rate", T0, n=400), ctx())[0]
    assert a.incident.domain == "provider" and a.notify == "trigger"
    b = corr.on_signal(sig("score:faithfulness", T0 + 1200), ctx())[0]
    assert b.action == "open" and b.incident.id != a.incident.id
    assert b.incident.domain == "prompt_model"
    assert b.incident.muted is not None
    assert (b.incident.muted.reason, b.incident.muted.by) == ("inhibited", a.incident.id)
    assert b.notify is None
    assert corr.stats().muted_by_reason["inhibited"] == 1
    # another feature is not inhibited
    c = corr.on_signal(sig("score:faithfulness", T0 + 1200, feature="search"), ctx("search"))[0]
    assert c.incident.muted is None and c.notify == "trigger"
    # the provider incident ends: the inhibited one is unmuted and pages
    corr.on_signal(sig("rate_limited_rate", T0 + 1300, "cleared"), ctx())
    ups = run_ticks(corr, T0 + 1360, T0 + 2400)
    res = [u for u in ups if u.incident.id == a.incident.id and u.action == "resolve"]
    assert res and res[0].notify == "resolve"
    page = [u for u in triggers(ups) if u.incident.id == b.incident.id]
    assert len(page) == 1 and page[0].incident.muted is None
    assert page[0].ts == res[0].ts


def test_behavioral_only_incident_is_inhibited_but_provider_is_not() -> None:
    corr = _split_corr()
    a = corr.on_signal(sig("rate_limited_rate", T0, n=400), ctx())[0]
    b = corr.on_signal(sig("refusal_rate", T0 + 1200), ctx())[0]
    assert b.incident.muted is not None and b.incident.muted.by == a.incident.id
    assert corr.get(a.incident.id) is not None
    assert corr.get(a.incident.id).muted is None  # type: ignore[union-attr]


def test_default_grouping_joins_instead_of_second_incident() -> None:
    corr = Correlator()
    corr.add_muter(InhibitMuter(corr.open_incidents))
    corr.on_signal(sig("rate_limited_rate", T0, n=400), ctx())
    ups = corr.on_signal(sig("score:faithfulness", T0 + 1200), ctx())
    assert len(corr.incidents()) == 1
    assert ups[0].incident.muted is None and ups[0].incident.domain == "provider"
