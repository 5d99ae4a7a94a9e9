"""Issue 11's scenarios, end to end through `replay`: the estimated start (`started_at`),
before/after attribution, change selection, and incidents that do not swallow later faults.

Same traffic as `test_incident_scenarios` (one feature, 16 h warm-up, fault at 16:00 UTC on a
Tuesday); the faults here are built with transforms so the detection lags the change.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from correlator.records import rfc3339
from tests.scenarios import traffic as T

MIN = 60.0
F = T.FAULT_AT


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _after_fault(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["opened_at"] >= rfc3339(F)]


def _one(records: list[dict[str, Any]]) -> dict[str, Any]:
    found = _after_fault(records)
    assert len(found) == 1, T.describe(records)
    return found[0]


def _named(inc: dict[str, Any]) -> list[tuple[str, str]]:
    return [(a["label"], a["value"]) for a in inc["attribution"]]


# The default fused quality verdict finds these drops within minutes; these tests are about a
# detection that comes late, so they run the slower per-score detectors of the old defaults
# (what an operator gets with a `score:*` rule and the fused verdict switched off).
SLOW_QUALITY = """
rules:
  - {metric: quality, detector: fused, enabled: false}
  - {metric: "score:*", detector: seasonal,
     params: {for_n: 12, clear_n: 8, min_n: 30, min_rel_sigma: 0.03, direction: down}}
  - {metric: "score:*", detector: cusum, params: {k: 0.05, h: 4.0, min_n: 30, direction: down}}
"""


def test_silent_model_update_detected_late_still_names_the_new_version(tmp_path: Path) -> None:
    """Every call switches model_version at 16:00 and faithfulness drops 14%, no change event.
    The quality detectors need over half an hour; by then the hour "before detection" is
    mostly the new version, which v1 compared with itself and named the old one."""
    path = T.write_scenario(
        tmp_path / "silent_late.jsonl",
        hours=T.WARMUP_H + 3.5,
        transforms=[
            T.set_label(F, F + 150 * MIN, "model_version", "2026-11-20"),
            T.degrade_scores(F, F + 150 * MIN, 0.86),
        ],
    )
    inc = _one(T.run(path, T.settings(tmp_path, SLOW_QUALITY)).incidents)
    assert _ts(inc["opened_at"]) - F >= 30 * MIN  # detected late
    assert abs(_ts(inc["started_at"]) - F) <= 5 * MIN, inc["start_estimate"]
    assert inc["start_estimate"]["basis"] == "changepoint"
    assert _named(inc)[0] == ("model_version", "2026-11-20"), inc["attribution"]
    top = inc["attribution"][0]
    assert top["basis"] == "new_value" and top["baseline_share"] < 0.01 and top["z"] > 5
    assert "2026-08-06" not in {v for _, v in _named(inc)}
    assert "suspect silent model update (model_version=2026-11-20)" in inc["summary"]


def test_prompt_regression_rolled_back_before_detection_names_the_bad_version(
    tmp_path: Path,
) -> None:
    """v8 rolls out at 16:00 (change event) and is rolled back at 16:15 (change event back to
    v7); the quality detector fires only after the rollback. The suspect is v8 and its change;
    the rollback is context after the start, never the suspect."""

    def change(ts: float, description: str, version: str) -> dict[str, Any]:
        return {"type": "change", "ts": ts, "kind": "prompt", "feature": T.FEATURE,
                "description": description, "labels": {"prompt_version": version}}  # fmt: skip

    rollout = change(F, "prompt v8 rolled out", "v8")
    rollback = change(F + 15 * MIN, "rollback v8 -> v7", "v7")
    path = T.write_scenario(
        tmp_path / "rollback.jsonl",
        hours=T.WARMUP_H + 2.5,
        transforms=[
            T.set_label(F, F + 15 * MIN, "prompt_version", "v8"),
            T.degrade_scores(F, F + 15 * MIN, 0.8),
        ],
        extra=[rollout, rollback],
    )
    inc = _one(T.run(path, T.settings(tmp_path, SLOW_QUALITY)).incidents)
    assert _ts(inc["opened_at"]) > F + 15 * MIN  # detected after the rollback
    assert abs(_ts(inc["started_at"]) - F) <= 5 * MIN, inc["start_estimate"]
    assert _named(inc)[0] == ("prompt_version", "v8"), inc["attribution"]
    assert ("prompt_version", "v7") not in _named(inc)
    assert [c["description"] for c in inc["changes"]] == ["prompt v8 rolled out"]
    assert [c["description"] for c in inc["later_changes"]] == ["rollback v8 -> v7"]
    assert "suspect prompt change prompt v8 rolled out" in inc["summary"]
    assert "rollback" not in inc["summary"]


def test_fault_confined_to_one_segment_names_the_segment(tmp_path: Path) -> None:
    """30% of segment=pro calls fail with 503 for an hour; free is untouched."""
    path = T.write_scenario(
        tmp_path / "segment.jsonl",
        hours=T.WARMUP_H + 2.5,
        transforms=[T.segment_errors(F, F + 60 * MIN, "pro", 0.3)],
    )
    inc = _one(T.run(path).incidents)
    assert inc["paged"] is True
    assert abs(_ts(inc["started_at"]) - F) <= 5 * MIN, inc["start_estimate"]
    assert _named(inc) == [("segment", "pro")], inc["attribution"]
    top = inc["attribution"][0]
    assert top["basis"] == "moved" and top["bad_rate"] > 2 * top["rest_bad_rate"]
    assert "on segment=pro" in inc["summary"]


def test_longer_answers_in_one_segment_name_the_segment(tmp_path: Path) -> None:
    """segment=pro answers twice as long for an hour; no errors, refusals or score change, so
    no per-call flag singles pro out: the output length per label value does."""
    path = T.write_scenario(
        tmp_path / "segment_length.jsonl",
        hours=T.WARMUP_H + 2.5,
        transforms=[T.segment_longer_outputs(F, F + 60 * MIN, "pro", 2.0)],
    )
    inc = _one(T.run(path).incidents)
    assert abs(_ts(inc["started_at"]) - F) <= 5 * MIN, inc["start_estimate"]
    assert _named(inc) == [("segment", "pro")], inc["attribution"]
    top = inc["attribution"][0]
    assert top["metric"] == "output_length" and top["mean_after"] > 1.5 * top["rest_mean_after"]
    assert "suspect segment=pro" in inc["summary"]


def test_provider_outage_names_nothing_and_starts_on_time(tmp_path: Path) -> None:
    path = T.write_scenario(tmp_path / "outage.jsonl", [T.injection("provider_outage", 0, 30)])
    inc = _one(T.run(path).incidents)
    assert inc["domain"] == "provider"
    assert inc["attribution"] == []
    assert abs(_ts(inc["started_at"]) - F) <= 5 * MIN, inc["start_estimate"]


def test_flapping_series_does_not_hide_a_provider_outage(tmp_path: Path) -> None:
    """Latency flaps (5 slow minutes in every 40) for 8 h from 16:00, which holds its incident
    open for hours; a provider outage starts 6 h in. The outage opens its own incident and
    pages, with its own start and triage; the flapping incident is flagged.
    (Short version of issue 11's 24 h flap: the split does not depend on the flap's length.)"""
    flap = T.flapping_slow_calls(F, F + 8 * 60 * MIN, 300, 2400, 15_000.0)
    outage = T.injection("provider_outage", 6 * 60, 30)
    path = T.write_scenario(
        tmp_path / "flap_outage.jsonl", [outage], hours=T.WARMUP_H + 8.5, transforms=[flap]
    )
    records = _after_fault(T.run(path).incidents)
    flapping = [r for r in records if r["flapping"]]
    assert flapping, T.describe(records)
    assert all(r["severity"] == "watch" and not r["paged"] for r in flapping)
    out = [r for r in records if r["domain"] == "provider" and r["paged"]]
    assert len(out) == 1, T.describe(records)
    inc = out[0]
    assert abs(_ts(inc["started_at"]) - outage.start) <= 5 * MIN, inc["start_estimate"]
    assert {s["metric"] for s in inc["signals"]} & {"rate_limited_rate", "provider_error_rate"}
    assert not {s["metric"] for s in inc["signals"]} & {"latency_p95_ms", "latency_p99_ms"}
    # the flapping incident was open when the outage started: the split, not a resolve, did it
    assert any(
        _ts(r["opened_at"]) < outage.start
        and (r["resolved_at"] is None or _ts(r["resolved_at"]) > outage.start)
        for r in flapping
    ), T.describe(records)
