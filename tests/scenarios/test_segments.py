"""Faults confined to one segment (issue 10), end to end through `replay`: per-segment
series (`segment=pro`) find what the feature's rates dilute, page, and name the segment; and
clean traffic whose segment shares drift fires nothing.

Same traffic as `test_incident_scenarios` (one feature; the simulator puts 30% of calls in
segment `pro`, 70% in `free`), at 5 calls/min: the evaluation worlds' segment faults live at
2-10 calls/min, where the feature-level tests missed them. A per-value rule learns a day of
its value's own calls before it tests (`detectors.factory.SPLIT_WARMUP_MIN`), so the fault
comes at 16:00 UTC on the second day (a Wednesday), 40 h in.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from correlator.records import rfc3339
from tests.scenarios import traffic as T

ROOT = Path(__file__).resolve().parents[2]
MIN = 60.0
F = T.FAULT_AT + 24 * 3600.0
RPM = 5.0


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def replay_cli(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`llm-oncall replay` as its own process on embedded defaults: (incidents, signals)."""
    inc, sig = path.with_suffix(".inc.jsonl"), path.with_suffix(".sig.jsonl")
    subprocess.run(
        [sys.executable, "-m", "daemon.cli", "replay", str(path), "--incidents", str(inc),
         "--signals", str(sig)],
        cwd=ROOT, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return _jsonl(inc), _jsonl(sig)


def test_refusals_x6_in_a_30_percent_segment_page_and_name_it(tmp_path: Path) -> None:
    """segment=pro (30% of traffic) refuses 6x as often (2% -> 12%) and its scores drop to
    0.8x for two hours; free is untouched. The feature's refusal rate moves 2.5x; pro's own
    series sees 6x. Refusals (compliance) and pro's quality verdict (quality) are two
    symptom families: a page, triage prompt_model, pro named first."""
    fault = T.segment_behavior(F, F + 120 * MIN, "pro", 6.0, 0.8)
    path = T.write_scenario(
        tmp_path / "seg_refusals.jsonl", hours=T.WARMUP_H + 27.0, rpm=RPM, transforms=[fault]
    )
    incidents, signals = replay_cli(path)
    records = [r for r in incidents if r["opened_at"] >= rfc3339(F)]
    early = [r for r in incidents if r["opened_at"] < rfc3339(F)]
    assert not T.paged(early), T.describe(early)
    paged = T.paged(records)
    assert len(paged) == 1, T.describe(incidents)
    inc = paged[0]
    assert (inc["severity"], inc["domain"]) == ("critical", "prompt_model"), T.describe([inc])
    assert inc["opened_at"] <= rfc3339(F + 120 * MIN)
    fired = {(s["metric"], s.get("series", "")) for s in inc["signals"]}
    assert ("refusal_rate", "segment=pro") in fired, fired
    assert not any(series == "segment=free" for _, series in fired), fired
    top = inc["attribution"][0]
    assert (top["label"], top["value"]) == ("segment", "pro"), inc["attribution"]
    assert top["basis"] == "moved" and top["bad_rate"] > top["rest_bad_rate"], top
    assert "suspect segment=pro" in inc["summary"]
    # The signal records name the series, as /metrics and the incident do.
    per_segment = [s for s in signals if s.get("series") == "segment=pro"]
    assert any(s["metric"] == "refusal_rate" and s["state"] == "firing" for s in per_segment)


def test_clean_traffic_with_drifting_segment_shares_fires_nothing(tmp_path: Path) -> None:
    """Three segments whose shares swing 3x over 6 hours, no fault, 52 hours (the per-value
    rules test from about 30 h on): no per-segment series fires, and nothing pages."""
    drift = T.drifting_segments(("free", "pro", "team"), 6 * 3600.0, 0.5)
    path = T.write_scenario(tmp_path / "seg_clean.jsonl", hours=52.0, rpm=RPM, transforms=[drift])
    incidents, signals = replay_cli(path)
    series = {s.get("series") for s in signals if s["state"] == "firing"}
    assert not {s for s in series if s and s.startswith("segment=")}, series
    assert not T.paged(incidents), T.describe(incidents)


def test_errors_in_a_27_percent_segment_page_alone_and_name_it(tmp_path: Path) -> None:
    """35% of segment=pro calls fail for an hour (the feature: ~10% failing, under the
    whole-feature availability rule's +10 points). pro's own availability pages alone,
    triage says provider, and pro is named from its own failures."""
    fault = T.segment_errors(F, F + 60 * MIN, "pro", 0.35)
    path = T.write_scenario(
        tmp_path / "seg_errors.jsonl", hours=T.WARMUP_H + 26.0, rpm=RPM, transforms=[fault]
    )
    incidents, _ = replay_cli(path)
    paged = T.paged([r for r in incidents if r["opened_at"] >= rfc3339(F)])
    assert len(paged) == 1, T.describe(incidents)
    inc = paged[0]
    assert (inc["severity"], inc["domain"]) == ("critical", "provider"), T.describe([inc])
    fired = {(s["metric"], s.get("series", "")) for s in inc["signals"]}
    assert ("availability", "segment=pro") in fired, fired
    top = inc["attribution"][0]
    assert (top["label"], top["value"]) == ("segment", "pro"), inc["attribution"]
    assert top.get("metric") in ("availability", "provider_error_rate"), top  # its failures
    assert top["bad_rate"] > 3 * top["rest_bad_rate"], top
    assert "on segment=pro" in inc["summary"]
