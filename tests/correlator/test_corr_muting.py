"""Silences, inhibition, and resolves of paged-then-muted incidents."""

from __future__ import annotations

import json

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
    inc = _incident()
    assert _silence(matcher).matches(inc) is hit


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
