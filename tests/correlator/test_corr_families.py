"""Symptom families: severity counts the quantities that moved, not the metric names.

The false pages measured in the independent evaluation were all output-size metrics agreeing
with each other (output tokens, output length mean and cv, cost per request); these tests pin
the family rules that stop that, and the ones that must still page.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from corr_helpers import T0, ctx, policy, sig, triggers

from config.settings import load_settings
from correlator import Correlator, IncidentUpdate
from correlator.families import (
    FAMILY_CHOICES,
    METRIC_FAMILIES,
    Family,
    counted_families,
    default_family,
    resolve_family,
)
from correlator.records import Signal
from daemon.layers.aggregator import API_METRICS, BEHAVIORAL_METRICS, INFRA_METRICS
from daemon.layers.rules import RuleBook


def feed(corr: Correlator, *signals: Signal) -> list[IncidentUpdate]:
    ups: list[IncidentUpdate] = []
    for s in signals:
        ups += corr.on_signal(s, ctx())
    return ups


# ---- the table ------------------------------------------------------------------------------


def test_every_layer_metric_declares_its_family() -> None:
    """A built-in metric added to a layer without a family would count as a symptom of its
    own and could corroborate its own quantity: it must get a line in METRIC_FAMILIES."""
    for metric in (*INFRA_METRICS, *API_METRICS, *BEHAVIORAL_METRICS):
        assert metric in METRIC_FAMILIES, metric


def test_issue_family_table() -> None:
    groups = {
        Family.OUTPUT_SIZE: {"output_tokens_per_request", "output_length_mean", "output_length_cv"},
        Family.INPUT_SIZE: {"input_tokens_per_request"},
        Family.COST: {"cost_per_request_usd"},
        Family.ERRORS: {
            "error_rate",
            "rate_limited_rate",
            "auth_failure_rate",
            "provider_error_rate",
            "availability",
            "retry_rate",
        },
        Family.LATENCY: {"latency_p50_ms", "latency_p95_ms", "latency_p99_ms"},
        Family.COMPLIANCE: {"refusal_rate", "format_compliance_rate"},
        Family.THROUGHPUT: {"throughput_rpm"},
    }
    for fam, metrics in groups.items():
        assert {m for m, f in METRIC_FAMILIES.items() if f == fam} == metrics, fam
    assert default_family("score:faithfulness") == default_family("score:relevance") == "quality"
    assert default_family("vector_db_latency_ms") == "vector_db_latency_ms"  # its own


def test_derived_cost_counts_only_alone() -> None:
    assert counted_families(["cost"]) == ["cost"]
    assert counted_families(["cost", "output_size"]) == ["output_size"]
    assert counted_families(["latency", "cost", "errors", "latency"]) == ["latency", "errors"]


def test_resolve_family_precedence() -> None:
    feature = {"queue_*": "errors", "queue_wait_ms": "latency"}
    global_ = {"queue_wait_ms": "throughput", "q*": "quality", "score:user_*": "own"}
    maps = (feature, global_)
    assert resolve_family("queue_wait_ms", maps) == "latency"  # exact beats glob
    assert resolve_family("queue_depth", maps) == "errors"  # feature glob beats global
    assert resolve_family("qps", maps) == "quality"
    assert resolve_family("score:user_thumbs", maps) == "score:user_thumbs"  # own
    assert resolve_family("score:faithfulness", maps) == "quality"  # the table
    assert resolve_family("latency_p95_ms", ({"latency_p95_ms": "own"},)) == "latency_p95_ms"
    assert resolve_family("other", maps) == "other"


# ---- severity -------------------------------------------------------------------------------


def test_longer_outputs_are_one_symptom_a_watch() -> None:
    """Output tokens, output length cv and mean, and cost, all within a minute: one quantity
    (answers got longer). Before families this was critical and paged."""
    corr = Correlator()
    ups = feed(
        corr,
        sig("output_tokens_per_request", T0, detector="seasonal"),
        sig("output_length_cv", T0 + 15, detector="seasonal"),
        sig("cost_per_request_usd", T0 + 30, detector="seasonal"),
        sig("output_length_mean", T0 + 45, detector="seasonal"),
    )
    inc = corr.incidents()[0]
    assert len(corr.incidents()) == 1
    assert (inc.severity, inc.paged) == ("watch", False)
    assert not triggers(ups)
    fams = {s.metric: s.to_record()["family"] for s in inc.signals}
    assert fams == {
        "output_tokens_per_request": "output_size",
        "output_length_cv": "output_size",
        "output_length_mean": "output_size",
        "cost_per_request_usd": "cost",
    }
    assert inc.summary.endswith("; 1 symptom family: output_size")


def test_output_tokens_with_refusals_page() -> None:
    corr = Correlator()
    ups = feed(
        corr,
        sig("output_tokens_per_request", T0, detector="seasonal"),
        sig("refusal_rate", T0 + 120),
    )
    inc = corr.incidents()[0]
    assert (inc.severity, inc.paged) == ("critical", True)
    assert len(triggers(ups)) == 1
    assert inc.summary.endswith("; 2 symptom families: output_size, compliance")


def test_input_tokens_and_input_cost_are_one_family() -> None:
    """A custom input-cost metric put in `input_size` by config, and the built-in cost per
    request (derived), both count with input tokens once."""
    fam = resolve_family("input_cost_usd", ({"input_cost_usd": "input_size"},))
    for other in (
        replace(sig("input_cost_usd", T0 + 60), family=fam),
        sig("cost_per_request_usd", T0 + 60, detector="seasonal"),
    ):
        corr = Correlator()
        ups = feed(corr, sig("input_tokens_per_request", T0, detector="seasonal"), other)
        inc = corr.incidents()[0]
        assert (inc.severity, inc.paged) == ("watch", False), other.metric
        assert not triggers(ups)
        assert inc.summary.endswith("; 1 symptom family: input_size")


def test_cost_is_never_the_second_family() -> None:
    corr = Correlator()
    feed(corr, sig("latency_p95_ms", T0), sig("cost_per_request_usd", T0 + 60))
    assert corr.incidents()[0].severity == "watch"
    # Alone it is still one symptom: with min_signals 1 a lone cost rise pages as before.
    corr = Correlator(policy(min_signals=1))
    ups = feed(corr, sig("cost_per_request_usd", T0))
    assert corr.incidents()[0].severity == "critical" and triggers(ups)


def test_all_error_kinds_are_one_family() -> None:
    corr = Correlator()
    feed(
        corr,
        sig("rate_limited_rate", T0),
        sig("provider_error_rate", T0 + 30),
        sig("availability", T0 + 45, series="provider=openai"),
        sig("retry_rate", T0 + 60),
        sig("error_rate", T0 + 75, detector="static"),
    )
    inc = corr.incidents()[0]
    assert inc.severity == "warning"  # the lone-errors route, not a critical page
    assert inc.summary.endswith("; 1 symptom family: errors")


def test_quality_scores_are_one_family_unless_configured_apart() -> None:
    """Two scores of one feature falling together are one quality drop (the warning route);
    `own` in the config makes a score corroborate the others again."""
    corr = Correlator()
    feed(corr, sig("score:faithfulness", T0, n=64), sig("score:relevance", T0 + 60, n=64))
    assert corr.incidents()[0].severity == "warning"

    apart = {"score:relevance": "own"}
    corr = Correlator()
    feed(
        corr,
        sig("score:faithfulness", T0, n=64),
        replace(
            sig("score:relevance", T0 + 60, n=64),
            family=resolve_family("score:relevance", (apart,)),
        ),
    )
    assert corr.incidents()[0].severity == "critical"


CUSTOM_LATENCY = """
families:
  vector_db_latency_ms: latency
"""


def test_custom_metric_in_the_latency_family_counts_with_latency_once(tmp_path: Path) -> None:
    """The config puts a custom `metric` event in the latency family: with p95 it is one
    symptom (watch). Without the config it is a family of its own, and the two page."""
    cfg = tmp_path / "families.yaml"
    cfg.write_text(CUSTOM_LATENCY)
    book = RuleBook(load_settings(cfg))
    assert book.family_for("support-bot", "vector_db_latency_ms") == "latency"

    def run(family: str) -> Correlator:
        corr = Correlator()
        custom = replace(sig("vector_db_latency_ms", T0 + 30, detector="seasonal"), family=family)
        feed(corr, sig("latency_p95_ms", T0, detector="static"), custom)
        return corr

    inc = run(book.family_for("support-bot", "vector_db_latency_ms")).incidents()[0]
    assert (inc.severity, inc.paged) == ("watch", False)
    assert [s.family for s in inc.signals] == ["latency", "latency"]
    assert inc.summary.endswith("; 1 symptom family: latency")

    default = RuleBook(load_settings(None)).family_for("support-bot", "vector_db_latency_ms")
    inc = run(default).incidents()[0]
    assert (inc.severity, inc.paged) == ("critical", True)
    assert inc.summary.endswith("; 2 symptom families: latency, vector_db_latency_ms")


# ---- records and state ----------------------------------------------------------------------


def test_family_in_signal_record_and_state_round_trip() -> None:
    s = replace(sig("queue_ms", T0), family="latency")
    assert s.to_record()["family"] == "latency"
    assert "family" not in sig("queue_ms", T0).to_record()  # not stated: no field

    corr = Correlator()
    feed(corr, sig("latency_p95_ms", T0), s)
    state = corr.to_state()
    again = Correlator.from_state(state)
    assert again.incidents() == corr.incidents()
    # A state saved before families were stored: members get the built-in table's family.
    for inc in state["incidents"]:
        for m in inc["members"]:
            del m["family"]
    old = Correlator.from_state(state).incidents()[0]
    assert {s.metric: s.family for s in old.signals} == {
        "latency_p95_ms": "latency",
        "queue_ms": "queue_ms",
    }


def test_family_choices_are_the_families_and_own() -> None:
    assert set(FAMILY_CHOICES) == {f.value for f in Family} | {"own"}


@pytest.mark.parametrize("bad", ["latncy", "Latency", ""])
def test_unknown_family_in_config_names_the_yaml_path(tmp_path: Path, bad: str) -> None:
    from config.settings import ConfigError

    cfg = tmp_path / "bad.yaml"
    cfg.write_text(f"features:\n  bot:\n    families:\n      queue_ms: '{bad}'\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert f"features.bot.families.queue_ms: unknown family '{bad}'; one of: " in str(err.value)
