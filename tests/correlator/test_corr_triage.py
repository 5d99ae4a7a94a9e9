"""Triage answers with numbers, the silent model update, attribution and change correlation."""

from __future__ import annotations

import math
from dataclasses import replace

from corr_helpers import FEATURE, T0, ctx, no_ctx, policy, sig

from correlator import ChangeRecord, Correlator, FeatureContext, attribute
from correlator.attribution import look_alpha
from correlator.incident import Incident


def _answers(inc: Incident) -> dict[str, tuple[bool, str]]:
    return {t.question: (t.answer, t.evidence) for t in inc.triage}


def test_provider_domain_with_numbers() -> None:
    corr = Correlator()
    ups = corr.on_signal(
        sig("rate_limited_rate", T0, value=0.31, baseline=0.004, n=412),
        ctx(metrics={"rate_limited_rate": (0.31, 0.004, 412)}),
    )
    inc = ups[0].incident
    assert inc.domain == "provider"
    ok, ev = _answers(inc)["provider"]
    assert ok
    assert "rate_limited_rate 31% vs baseline 0.4% over 412 calls" in ev
    assert [t.question for t in inc.triage] == ["provider", "prompt_model", "infra_retrieval"]
    assert inc.summary.endswith("(provider); 1 symptom family: errors")


def test_provider_no_answer_quotes_context_numbers() -> None:
    corr = Correlator()
    ups = corr.on_signal(
        sig("latency_p95_ms", T0),
        ctx(
            metrics={"rate_limited_rate": (0.002, 0.004, 500), "latency_p95_ms": (4200, 1100, 500)}
        ),
    )
    ok, ev = _answers(ups[0].incident)["provider"]
    assert not ok
    assert "rate_limited_rate 0.2% (baseline 0.4%) over 500 calls" in ev


def test_prompt_model_domain_with_prompt_change() -> None:
    corr = Correlator()
    corr.add_change(ChangeRecord(T0 - 900, "prompt", FEATURE, "v42"))
    ups = corr.on_signal(sig("score:faithfulness", T0, n=64), ctx())
    ups += corr.on_signal(sig("refusal_rate", T0 + 60, n=400), ctx())
    inc = ups[-1].incident
    assert inc.domain == "prompt_model"
    ok, ev = _answers(inc)["prompt_model"]
    assert ok
    assert "score:faithfulness 0.71 vs baseline 0.86 (-17%) over 64 scores" in ev
    assert "refusal_rate 12% vs baseline 3% over 400 calls" in ev
    assert "prompt change 'v42'" in ev and "15 min before onset" in ev
    assert inc.summary == (
        "support-bot: quality drop (faithfulness 0.71 vs 0.86) + refusal rate 12% vs 3%"
        " — suspect prompt change v42 (prompt_model); 2 symptom families: quality, compliance"
    )


def test_prompt_change_alone_makes_latency_prompt_model() -> None:
    corr = Correlator()
    corr.add_change(ChangeRecord(T0 - 600, "model", None, "gpt-x -> gpt-y"))
    inc = corr.on_signal(sig("latency_p95_ms", T0), ctx())[0].incident
    assert inc.domain == "prompt_model"


def test_infra_retrieval_when_quality_stable() -> None:
    corr = Correlator()
    c = ctx(metrics={"score:faithfulness": (0.85, 0.86, 120), "latency_p95_ms": (4200, 1100, 600)})
    corr.on_signal(sig("latency_p95_ms", T0, n=600), c)
    inc = corr.on_signal(sig("output_tokens_per_request", T0 + 30), c)[-1].incident
    assert inc.domain == "infra_retrieval"
    ok, ev = _answers(inc)["infra_retrieval"]
    assert ok
    assert "latency_p95_ms 4200 ms vs baseline 1100 ms (+282%) over 600 calls" in ev
    assert "quality stable: score:faithfulness 0.85 (baseline 0.86) over 120 scores" in ev
    assert not _answers(inc)["provider"][0]
    assert not _answers(inc)["prompt_model"][0]


def test_infra_retrieval_names_the_index_change_before_it() -> None:
    """On-call probe: a retrieval drift 13 s after an index rebuild was summarized as
    "suspect infrastructure/retrieval, quality stable", the change in no answer, while a
    prompt change goes straight into the summary."""
    corr = Correlator()
    corr.add_change(ChangeRecord(T0 - 3000, "deploy", FEATURE, "api v3.1"))
    corr.add_change(ChangeRecord(T0 - 600, "index", FEATURE, "kb rebuilt, chunk_size 2048"))
    corr.add_change(ChangeRecord(T0 - 300, "flag", FEATURE, "dark mode"))
    c = ctx(
        metrics={
            "score:faithfulness": (0.85, 0.86, 120),
            "input_tokens_per_request": (2040, 1200, 300),
        }
    )
    inc = corr.on_signal(sig("input_tokens_per_request", T0, n=300), c)[-1].incident
    assert inc.domain == "infra_retrieval"
    assert (
        "suspect infrastructure/retrieval: index change kb rebuilt, chunk_size 2048, quality stable"
        in inc.summary
    )
    ok, ev = _answers(inc)["infra_retrieval"]
    assert (
        ok
        and "index change 'kb rebuilt, chunk_size 2048'" in ev
        and "deploy change 'api v3.1'" in ev
    )
    assert "dark mode" not in ev


def test_infra_not_answered_when_quality_moved() -> None:
    corr = Correlator()
    c = ctx(metrics={"score:faithfulness": (0.70, 0.86, 120)})
    inc = corr.on_signal(sig("latency_p95_ms", T0), c)[0].incident
    ok, ev = _answers(inc)["infra_retrieval"]
    assert not ok
    assert "quality is not stable: score:faithfulness 0.7 (baseline 0.86)" in ev
    assert inc.domain == "unknown"
    assert "cause unknown (unknown)" in inc.summary


def test_unknown_domain() -> None:
    corr = Correlator()
    inc = corr.on_signal(sig("throughput_rpm", T0), ctx())[0].incident
    assert inc.domain == "unknown"
    assert not any(t.answer for t in inc.triage)


def test_triage_recomputed_as_signals_join() -> None:
    corr = Correlator()
    assert corr.on_signal(sig("score:faithfulness", T0), ctx())[0].incident.domain == "prompt_model"
    ups = corr.on_signal(sig("rate_limited_rate", T0 + 60, n=300), ctx())
    assert ups[-1].incident.domain == "provider"


SILENT_CTX = ctx(
    bad={"model_version": {"gpt-4o-2024-08-06": 46, "gpt-4o-2024-05-13": 1}},
    all_={"model_version": {"gpt-4o-2024-08-06": 380, "gpt-4o-2024-05-13": 20}},
    base={"model_version": {"gpt-4o-2024-05-13": 400}},
)


def test_silent_model_update_wording() -> None:
    corr = Correlator()
    inc = corr.on_signal(sig("score:faithfulness", T0, n=80), SILENT_CTX)[0].incident
    ok, ev = _answers(inc)["prompt_model"]
    assert ok
    assert "model_version=gpt-4o-2024-08-06 is 95% of traffic since the start vs 0% before" in ev
    assert "suspect a silent provider model update; pin the model version" in ev
    assert "suspect silent model update (model_version=gpt-4o-2024-08-06)" in inc.summary


def test_no_silent_update_claim_when_a_deploy_happened() -> None:
    corr = Correlator()
    corr.add_change(ChangeRecord(T0 - 1200, "deploy", FEATURE, "app 1.2.3"))
    inc = corr.on_signal(sig("score:faithfulness", T0, n=80), SILENT_CTX)[0].incident
    assert "silent" not in _answers(inc)["prompt_model"][1]
    assert [c.kind for c in inc.changes] == ["deploy"]


# ---- attribution ------------------------------------------------------------------------


def test_attribution_new_value_is_the_prime_suspect() -> None:
    """v42 did not exist in the hour before the start and carries 65% of the traffic after:
    a rollout, named first with its numbers; v41 (the old version) is not named."""
    c = ctx(
        bad={"prompt_version": {"v42": 40, "v41": 5, "__other__": 30}},
        all_={"prompt_version": {"v41": 70, "v42": 130, "__other__": 40}},
        base={"prompt_version": {"v41": 200, "__other__": 40}},
    )
    recs = [a.to_record() for a in attribute(c)]
    assert recs == [
        {
            "label": "prompt_version",
            "value": "v42",
            "anomalous_share": 0.542,
            "baseline_share": 0.0,
            "basis": "new_value",
            "share_after": 0.542,
            "z": recs[0]["z"],
            "n": 130,
        }
    ]
    assert recs[0]["z"] > 10


def _segments(bad_pro: int, bad_free: int) -> FeatureContext:
    """1000 calls before and after (30% pro); 2% anomalous in both segments before."""
    return FeatureContext(
        FEATURE,
        {},
        bad_labels={"segment": {"free": bad_free, "pro": bad_pro}},
        all_labels={"segment": {"free": 700, "pro": 300}},
        baseline_labels={"segment": {"free": 700, "pro": 300}},
        baseline_bad_labels={"segment": {"free": 14, "pro": 6}},
    )


def test_attribution_names_the_segment_where_the_rate_moved() -> None:
    attrs = attribute(_segments(bad_pro=60, bad_free=15))
    assert [(a.label, a.value, a.basis) for a in attrs] == [("segment", "pro", "moved")]
    a = attrs[0]
    assert (a.bad_rate, a.baseline_bad_rate, a.rest_bad_rate) == (0.2, 0.02, 0.0214)
    assert a.anomalous_share == 0.8 and a.baseline_share == 0.3 and a.z is not None


def test_attribution_names_nothing_when_every_segment_moved_alike() -> None:
    """A provider outage: 35% of calls fail in both segments. Nothing stands out."""
    assert attribute(_segments(bad_pro=105, bad_free=245)) == ()
    # and nothing moved at all
    assert attribute(_segments(bad_pro=6, bad_free=14)) == ()


def test_attribution_is_bonferroni_bounded_on_noise() -> None:
    """Many labels whose values move by chance only: the family-wise level keeps them out."""
    bad = {f"l{i}": {"x": 12 + (i % 3), "y": 10} for i in range(20)}
    all_ = {f"l{i}": {"x": 500, "y": 500} for i in range(20)}
    base = {f"l{i}": {"x": 500, "y": 500} for i in range(20)}
    c = FeatureContext(
        FEATURE, {}, bad, all_, base, {f"l{i}": {"x": 11, "y": 11} for i in range(20)}
    )
    assert attribute(c) == ()


def test_attribution_without_traffic_before_names_no_new_value() -> None:
    c = ctx(bad={"segment": {"free": 40, "pro": 2}}, all_={"segment": {"free": 100, "pro": 100}})
    attrs = attribute(c)
    # No "before": nothing is new; free's anomalous rate is far above pro's after the start.
    assert [(a.label, a.value, a.basis) for a in attrs] == [("segment", "free", "moved")]


def test_attribution_lands_on_incident_and_summary() -> None:
    corr = Correlator()
    c = ctx(bad={"prompt_version": {"v42": 30}}, base={"prompt_version": {"v41": 100}})
    inc = corr.on_signal(sig("score:faithfulness", T0), c)[0].incident
    assert inc.attribution[0].value == "v42"
    assert "suspect prompt_version=v42" in inc.summary


# ---- change correlation -----------------------------------------------------------------


def test_changes_in_and_out_of_lookback() -> None:
    corr = Correlator()
    corr.add_change(ChangeRecord(T0 - 7300, "prompt", FEATURE, "too old"))
    corr.add_change(ChangeRecord(T0 - 7000, "flag", FEATURE, "in lookback"))
    corr.add_change(ChangeRecord(T0 - 60, "index", None, "global"))
    corr.add_change(ChangeRecord(T0 - 60, "prompt", "other-feature", "not ours"))
    corr.add_change(ChangeRecord(T0 - 60, "prompt", "other-feature", "not ours"))  # dup
    corr.add_change(ChangeRecord(T0 + 600, "deploy", FEATURE, "after onset"))
    inc = corr.on_signal(sig("latency_p95_ms", T0), ctx())[0].incident
    # before the start (no history here: the start is the onset), most recent first
    assert [c.description for c in inc.changes] == ["global", "in lookback"]
    assert inc.domain == "infra_retrieval"  # neither is a prompt/model change
    ups = corr.tick(T0 + 660, no_ctx)
    # a change after the start is context, never one of the changes before it
    assert [c.description for c in ups[0].incident.changes] == ["global", "in lookback"]
    assert [c.description for c in ups[0].incident.later_changes] == ["after onset"]
    assert len(corr.changes()) == 5
    rec = ups[0].incident.to_record()
    assert rec["changes"][1] == {
        "ts": "2023-11-14T20:16:40.000Z",
        "kind": "flag",
        "description": "in lookback",
    }
    assert rec["later_changes"][0]["description"] == "after onset"


def _v42_rolled_back(corr: Correlator, rolled_out: float, tweaked: float) -> FeatureContext:
    """Prompt v42 rolled out at `rolled_out`, an unrelated tone tweak at `tweaked`, the
    rollback to v41 at T0 + 300; the context of traffic where v42 carries the bad calls."""
    corr.add_change(
        ChangeRecord(rolled_out, "prompt", FEATURE, "roll out v42", {"prompt_version": "v42"})
    )
    corr.add_change(ChangeRecord(tweaked, "prompt", FEATURE, "tone tweak", {"tone": "warm"}))
    corr.add_change(
        ChangeRecord(T0 + 300, "prompt", FEATURE, "rollback v42 -> v41", {"prompt_version": "v41"})
    )
    return ctx(
        bad={"prompt_version": {"v42": 40}},
        all_={"prompt_version": {"v41": 70, "v42": 130}},
        base={"prompt_version": {"v41": 200}},
    )


def test_summary_names_the_change_that_introduced_the_suspect_not_the_rollback() -> None:
    """v42 rolled out, then rolled back after the start (to v41), then an unrelated prompt
    tweak of another label before the start: the suspect is v42's change."""
    corr = Correlator()
    c = _v42_rolled_back(corr, T0 - 900, T0 - 300)
    corr.on_signal(sig("score:faithfulness", T0), c)
    inc = corr.tick(T0 + 600, lambda f, t: c)[-1].incident
    assert inc.attribution[0].value == "v42"
    assert [ch.description for ch in inc.changes] == ["tone tweak", "roll out v42"]
    assert [ch.description for ch in inc.later_changes] == ["rollback v42 -> v41"]
    assert "suspect prompt change roll out v42" in inc.summary


def test_old_prompt_change_does_not_implicate_prompt() -> None:
    corr = Correlator()
    corr.add_change(ChangeRecord(T0 - 7201, "prompt", FEATURE, "v41"))
    inc = corr.on_signal(sig("latency_p95_ms", T0), ctx())[0].incident
    assert inc.domain == "infra_retrieval"
    assert inc.changes == ()


def test_late_change_event_is_picked_up_on_tick() -> None:
    corr = Correlator()
    corr.on_signal(sig("latency_p95_ms", T0), ctx())
    corr.add_change(ChangeRecord(T0 - 300, "prompt", FEATURE, "v43"))
    ups = corr.tick(T0 + 60, no_ctx)
    assert ups[0].incident.domain == "prompt_model"
    assert "suspect prompt change v43" in ups[0].incident.summary


def test_change_store_is_bounded() -> None:
    corr = Correlator(policy(max_changes=10))
    for i in range(50):
        corr.add_change(ChangeRecord(T0 + i, "flag", None, f"c{i}"))
    assert corr.changes()[0].description == "c40"
    corr.tick(T0 + 2 * 86400, no_ctx)
    assert corr.changes() == []


def test_moved_needs_the_value_to_rise_well_above_the_rest() -> None:
    """An outage fails 35% of pro's calls and 30% of free's (retries keep their segment):
    with ten thousand calls the difference is significant, but pro rose about as much as
    the rest, so it is not named. A fault in pro alone is."""
    before = {"segment": {"pro": 3000, "free": 7000}}
    base_bad = {"segment": {"pro": 9, "free": 21}}
    outage = FeatureContext(
        FEATURE, {}, {"segment": {"pro": 1050, "free": 2100}}, before, before, base_bad
    )
    assert attribute(outage) == ()
    confined = FeatureContext(
        FEATURE, {}, {"segment": {"pro": 1050, "free": 30}}, before, before, base_bad
    )
    assert [(a.label, a.value, a.basis) for a in attribute(confined)] == [
        ("segment", "pro", "moved")
    ]


def test_failed_calls_name_a_value_only_for_a_signal_that_counts_them() -> None:
    """A retrieval drift fired ttft and input size; meanwhile the internal segment's
    failures rose from 3% to 15% (real, but not what fired). An incident of error signals
    names it; the drift's incident names nothing: no quantity that fired was compared."""
    before = {"segment": {"internal": 1000, "free": 3000}}
    base_bad = {"segment": {"internal": 30, "free": 90}}
    c = FeatureContext(
        FEATURE, {}, {"segment": {"internal": 150, "free": 90}}, before, before, base_bad
    )
    assert [a.value for a in attribute(c)] == ["internal"]
    assert attribute(c, calls=False) == ()
    drift = Correlator()
    drift.on_signal(sig("ttft_ms", T0, n=400), c)
    (up,) = drift.on_signal(sig("input_tokens_per_request", T0 + 60, n=400), c)
    assert up.incident.attribution == ()
    errors = Correlator()
    (up,) = errors.on_signal(sig("provider_error_rate", T0, n=400), c)
    assert [a.value for a in up.incident.attribution] == ["internal"]


def test_a_rest_of_five_calls_without_failures_is_no_evidence() -> None:
    """A 429 storm at night: the enterprise segment carried 67 of 72 calls and 29 failed; the
    other 5 calls happened not to. With each side's own rate that looked like z 2.6 (named);
    under "no difference" the rate is pooled and 5 calls say little. Fifty calls of the rest
    without a failure would."""
    before = {"segment": {"enterprise": 50, "free": 20}}
    base_bad = {"segment": {"enterprise": 0, "free": 0}}
    storm = FeatureContext(
        FEATURE,
        {},
        {"segment": {"enterprise": 29, "free": 0}},
        {"segment": {"enterprise": 67, "free": 5}},
        before,
        base_bad,
        rollouts=(),  # a catalog: only the two "moved" tests, so z must pass 2.33
    )
    assert attribute(storm, alpha=0.02) == ()
    confined = replace(storm, all_labels={"segment": {"enterprise": 67, "free": 50}})
    assert [a.value for a in attribute(confined, alpha=0.02)] == ["enterprise"]


def test_the_level_is_spent_over_the_doublings_of_the_span() -> None:
    """0.61 α at the first look and within its first doubling, then 6/(π² j²) α in the
    j-th: over every doubling the levels sum to α."""
    first = 0.01 * 6 / math.pi**2
    assert look_alpha(0.01, 300.0, 300.0) == look_alpha(0.01, 599.0, 300.0) == first
    assert look_alpha(0.01, 600.0, 300.0) == first / 4
    assert math.isclose(look_alpha(0.01, 300.0 * 2**9, 300.0), first / 100)
    assert look_alpha(0.01, 10.0, 0.0) == first  # no span yet at the first look
    assert sum(look_alpha(0.01, 300.0 * 2**k, 300.0) for k in range(200)) <= 0.01


def test_a_late_look_needs_more_evidence_than_the_first() -> None:
    """Attribution is re-tested at every refresh while the incident fires, and an answer once
    found stands. Pro's failures rising from 2% to 7% (z 3.3) name it at an incident's first
    look; an incident whose first look found nothing needs more by the time its span is ten
    times as long: a provider outage at 1.4 calls a minute named a segment (5 of its 34
    calls failed, 1 of the rest's 94) at a look an hour after the outage ended."""
    marginal = _segments(bad_pro=22, bad_free=14)
    fresh = Correlator()
    (up,) = fresh.on_signal(sig("provider_error_rate", T0, n=400), marginal)
    assert [a.value for a in up.incident.attribution] == ["pro"]

    looked = Correlator()
    (up,) = looked.on_signal(sig("provider_error_rate", T0, n=400), _segments(6, 14))
    assert up.incident.attribution == ()
    for k in range(1, 10):
        looked.tick(T0 + 60.0 * k, lambda feature, start: _segments(6, 14))
    looked.tick(T0 + 600.0, lambda feature, start: marginal)  # the 4th doubling: 0.038 α
    (inc,) = looked.open_incidents()
    assert inc.attribution == () and inc.status == "open"
    strong = _segments(bad_pro=60, bad_free=15)  # a fault in pro joins late: still named
    looked.tick(T0 + 660.0, lambda feature, start: strong)
    (inc,) = looked.open_incidents()
    assert [a.value for a in inc.attribution] == ["pro"]


def test_an_error_rate_made_of_provider_failures_is_the_provider() -> None:
    """Probe: a 5xx outage whose infra `error_rate` fired before any api-layer signal was
    paged as `prompt_model`, blaming a prompt change from 10 minutes before. The window's
    counts say the excess is provider errors: the provider. Errors the provider's counts
    do not explain (timeouts on our side) stay off that answer."""
    metrics = {
        "error_rate": (0.43, 0.05, 300),
        "provider_error_rate": (0.35, 0.01, 300),
        "rate_limited_rate": (0.0, 0.0, 300),
    }
    corr = Correlator()
    corr.add_change(ChangeRecord(T0 - 600, "prompt", FEATURE, "v43"))
    (up,) = corr.on_signal(
        sig("error_rate", T0, value=0.43, baseline=0.05, n=300), ctx(metrics=metrics)
    )
    assert up.incident.domain == "provider"
    ok, ev = _answers(up.incident)["provider"]
    assert ok and "provider_error_rate 35%" in ev and "error_rate 43% vs baseline 5%" in ev

    ours = {**metrics, "provider_error_rate": (0.02, 0.01, 300)}
    corr = Correlator()
    corr.add_change(ChangeRecord(T0 - 600, "prompt", FEATURE, "v43"))
    (up,) = corr.on_signal(
        sig("error_rate", T0, value=0.43, baseline=0.05, n=300), ctx(metrics=ours)
    )
    assert not _answers(up.incident)["provider"][0]
    assert up.incident.domain == "prompt_model"


def test_an_incident_quotes_a_bounded_number_of_changes_keeping_the_suspects() -> None:
    """Probe: a deploy pipeline sending a change a minute filled one incident with 766
    changes (a 1.5 MB record). At most `incident_max_changes` on each side of the start:
    before it, the change that introduced the suspect and the prompt changes first, then the
    most recent of the rest; after it, the earliest (the rollback)."""
    corr = Correlator(policy(incident_max_changes=5))
    c = _v42_rolled_back(corr, T0 - 5000, T0 - 4000)
    for i in range(60):
        corr.add_change(ChangeRecord(T0 - 3600 + 60 * i, "deploy", FEATURE, f"deploy {i}"))
    for i in range(20):
        corr.add_change(ChangeRecord(T0 + 400 + 60 * i, "deploy", FEATURE, f"later {i}"))
    corr.on_signal(sig("score:faithfulness", T0), c)
    inc = corr.tick(T0 + 1800, lambda f, t: c)[-1].incident
    assert inc.attribution[0].value == "v42"
    assert [ch.description for ch in inc.changes] == [
        "deploy 59", "deploy 58", "deploy 57", "tone tweak", "roll out v42",
    ]  # fmt: skip
    assert [ch.description for ch in inc.later_changes] == [
        "rollback v42 -> v41", "later 0", "later 1", "later 2", "later 3",
    ]  # fmt: skip
    assert "suspect prompt change roll out v42" in inc.summary
    assert inc.domain == "prompt_model"
