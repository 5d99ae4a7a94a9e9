"""The world randomizer: same seed, same bytes; and the truth file says what the events show.

Short worlds (half a day, nothing clean) keep this fast; the 14-day worlds run in
eval/worlds_eval.py.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from daemon.ingest.events import validate_items
from daemon.worlds import (
    DECOY_KINDS,
    FAULT_KINDS,
    Truth,
    World,
    draw_world,
    events,
    truth_records,
    write_world,
)

ROOT = Path(__file__).resolve().parents[2]


def busy_world(seed: int, days: float = 0.5, rpm: float = 25.0) -> World:
    """A short world whose features all run at `rpm`, so every injection holds enough calls
    to measure its effect."""
    world = draw_world(seed, days)
    for feat in world.features:
        feat.rpm = rpm
    return world


def calls_of(evs: list[dict[str, Any]], feature: str) -> list[dict[str, Any]]:
    return [e for e in evs if e["type"] == "llm_call" and e["feature"] == feature]


def during(
    evs: list[dict[str, Any]], t: Truth, world: World
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Calls inside `t`'s window, and calls outside every injection of its feature."""
    inside = [e for e in evs if t.start <= e["ts"] < t.end]
    spans = [(x.start - 600, x.end + 600) for x in world.truth if x.feature == t.feature]
    outside = [e for e in evs if not any(lo <= e["ts"] < hi for lo, hi in spans)]
    return inside, outside


def share(evs: list[dict[str, Any]], pred: Any) -> float:
    return sum(1 for e in evs if pred(e)) / max(1, len(evs))


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz", tmp_path / "c.jsonl.gz"
    ta, tb = tmp_path / "a.truth", tmp_path / "b.truth"
    write_world(5, 0.25, str(a), str(ta))
    write_world(5, 0.25, str(b), str(tb))
    write_world(6, 0.25, str(c))
    assert a.read_bytes() == b.read_bytes()
    assert ta.read_bytes() == tb.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    lines = gzip.decompress(a.read_bytes()).splitlines()
    assert len(lines) > 100


def test_cli_writes_events_the_contract_accepts_and_truth(tmp_path: Path) -> None:
    out, truth = tmp_path / "w.jsonl", tmp_path / "w.truth.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "simulate", "--seed", "3", "--days", "0.25",
         "--out", str(out), "--truth", str(truth)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    raw = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    accepted, rejected = validate_items(raw)
    assert rejected == []
    assert len(accepted) == len(raw)
    assert [e["ts"] for e in raw] == sorted(e["ts"] for e in raw) or _mostly_ordered(raw)
    recs = [orjson.loads(line) for line in truth.read_bytes().splitlines()]
    kinds = Counter(r["kind"] for r in recs if r["record"] == "injection")
    assert set(kinds) == set(FAULT_KINDS) | set(DECOY_KINDS)
    assert all(n == 1 for n in kinds.values())
    for r in recs:
        if r["record"] == "injection":
            assert r["end"] > r["start"]
            assert isinstance(r["must_page"], bool)
            assert r["must_page"] == (
                r["kind"] in FAULT_KINDS and r["kind"] != "slow_quality_decline"
            )


def _mostly_ordered(raw: list[dict[str, Any]]) -> bool:
    """Retries and scores may trail their hour by seconds: never beyond the allowed lateness."""
    newest = -1e18
    for e in raw:
        if e["ts"] < newest - 300:
            return False
        newest = max(newest, e["ts"])
    return True


def test_cli_rejects_bad_days(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "simulate", "--seed", "1", "--days", "0",
         "--out", str(tmp_path / "x.jsonl")],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--days" in done.stderr


@pytest.mark.parametrize("seed", [11, 12])
def test_truth_agrees_with_the_injected_effects(seed: int) -> None:
    world = busy_world(seed)
    evs = list(events(world))
    by_kind = {t.kind: t for t in world.truth}

    # Provider outage: the drawn failing share during the window, the base rate outside.
    t = by_kind["provider_outage"]
    inside, outside = during(calls_of(evs, t.feature), t, world)
    fail_in = share([e for e in inside if e["retries"] == 0], lambda e: e["status"] != 200)
    fail_out = share(outside, lambda e: e["status"] != 200)
    assert abs(fail_in - float(t.magnitude["fail_share"])) < 0.15
    assert fail_out < 0.03

    # Rate-limit storm: 429s, not 5xx.
    t = by_kind["rate_limit_storm"]
    inside, outside = during(calls_of(evs, t.feature), t, world)
    assert share(inside, lambda e: e["status"] == 429) > 0.5 * float(t.magnitude["share_429"])
    assert share(outside, lambda e: e["status"] == 429) < 0.02

    # Silent model update: model_version switches inside the window only, with no change event.
    t = by_kind["silent_model_update"]
    inside, outside = during(calls_of(evs, t.feature), t, world)
    assert t.attribution == ("model_version", t.magnitude["model_version"])
    assert {e["labels"]["model_version"] for e in inside} == {t.magnitude["model_version"]}
    assert t.magnitude["model_version"] not in {e["labels"]["model_version"] for e in outside}
    assert not [e for e in evs if e["type"] == "change" and e["kind"] == "model"]

    # Prompt regression: its change event, the new prompt_version, refusals up.
    t = by_kind["prompt_regression"]
    inside, outside = during(calls_of(evs, t.feature), t, world)
    new = t.magnitude["prompt_version"]
    changes = [
        e for e in evs
        if e["type"] == "change" and e.get("labels", {}).get("prompt_version") == new
    ]  # fmt: skip
    assert [c["ts"] for c in changes] == [t.start]
    assert {e["labels"]["prompt_version"] for e in inside} == {t.magnitude["prompt_version"]}
    ok_in = [e for e in inside if e["status"] == 200]
    ok_out = [e for e in outside if e["status"] == 200]
    assert share(ok_in, lambda e: e["refused"]) > 1.5 * share(ok_out, lambda e: e["refused"])

    # Retrieval drift: input tokens and time to first token up.
    t = by_kind["retrieval_drift"]
    inside, outside = during(calls_of(evs, t.feature), t, world)
    in_med = _median([e["input_tokens"] for e in inside if e["status"] == 200])
    out_med = _median([e["input_tokens"] for e in outside if e["status"] == 200])
    # The context cap (when the feature has one) can eat part of the rise.
    assert in_med > 1.15 * out_med
    ttft_in = _median([e["ttft_ms"] for e in inside if e["status"] == 200])
    ttft_out = _median([e["ttft_ms"] for e in outside if e["status"] == 200])
    assert ttft_in > 1.15 * ttft_out

    # Segment fault: confined to its segment.
    t = by_kind["segment_fault"]
    assert t.segment is not None and t.attribution == ("segment", t.segment)
    inside, _ = during(calls_of(evs, t.feature), t, world)
    seg = [e for e in inside if e["labels"]["segment"] == t.segment and e["retries"] == 0]
    rest = [e for e in inside if e["labels"]["segment"] != t.segment and e["retries"] == 0]
    if t.magnitude["variant"] == "errors":
        assert share(seg, lambda e: e["status"] != 200) > 0.15
        assert share(rest, lambda e: e["status"] != 200) < 0.05
    else:
        seg_ok = [e for e in seg if e["status"] == 200]
        rest_ok = [e for e in rest if e["status"] == 200]
        assert share(seg_ok, lambda e: e["refused"]) > 2 * share(rest_ok, lambda e: e["refused"])

    # Traffic peak: more calls per minute inside than in the hour before.
    t = by_kind["traffic_peak"]
    calls = calls_of(evs, t.feature)
    rate_in = len([e for e in calls if t.start <= e["ts"] < t.end]) / (t.end - t.start)
    before = [e for e in calls if t.start - 3600 <= e["ts"] < t.start]
    assert rate_in > 1.3 * len(before) / 3600

    # Score burst: its bad scores are there.
    t = by_kind["score_burst"]
    scores = [e for e in evs if e["type"] == "score" and e["feature"] == t.feature]
    low = [e for e in scores if t.start <= e["ts"] < t.end and "request_id" not in e
           and e["name"] == "judge" and e["value"] <= 0.2]  # fmt: skip
    assert len(low) == int(t.magnitude["count"])


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2]


def test_slow_quality_decline_lowers_golden_scores_after_the_ramp() -> None:
    world = busy_world(21, days=0.5)
    t = next(x for x in world.truth if x.kind == "slow_quality_decline")
    feat = next(f for f in world.features if f.name == t.feature)
    feat.golden_every_s = 300.0  # enough golden runs in a short window
    evs = list(events(world))
    gold = [
        e
        for e in evs
        if e["type"] == "score" and e["name"] == "golden" and e["feature"] == t.feature
    ]
    held = [e["value"] for e in gold if t.start + float(t.magnitude["ramp_s"]) <= e["ts"] < t.end]
    before = [e["value"] for e in gold if e["ts"] < t.start]
    if held and before:
        drop = 1 - (sum(held) / len(held)) / (sum(before) / len(before))
        assert drop > 0.5 * (1 - float(t.magnitude["quality_mult"]))


def test_truth_records_describe_features_and_bands() -> None:
    world = draw_world(7, 1.0)
    recs = truth_records(world)
    feats = [r for r in recs if r["record"] == "feature"]
    assert len(feats) == len(world.features)
    for r in feats:
        assert 0.5 <= r["rpm"] <= 120
        assert r["band"] in ("<2", "2-10", "10-50", ">50")
