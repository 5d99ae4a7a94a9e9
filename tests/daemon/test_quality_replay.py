"""The fused quality verdict end to end through the CLI (`llm-oncall replay` in its own
process): judge scores per call, user thumbs, golden runs sent as batches, a lower-is-better
score from the config; a burst of bad scores stays quiet, a decline of every score fires the
one `quality` signal."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import orjson

from correlator.records import rfc3339

T0 = 1_795_000_000.0 - (1_795_000_000.0 % 15)
H = 3600.0
BURST_AT, DECLINE_AT, DECLINE_END = T0 + 7 * H, T0 + 10 * H, T0 + 11.5 * H


def write_events(path: Path) -> None:
    rng = random.Random(5)
    rows: list[dict[str, object]] = []
    ts = T0
    i = 0
    while ts < T0 + 13 * H:
        ts += rng.expovariate(6 / 60.0)  # 6 calls a minute
        i += 1
        f = 0.85 if DECLINE_AT <= ts < DECLINE_END else 1.0
        rid = f"r{i}"
        rows.append({"type": "llm_call", "ts": ts, "feature": "bot", "status": 200,
                     "latency_ms": 900.0, "request_id": rid})  # fmt: skip
        if rng.random() < 0.5:
            judge = min(1.0, max(0.0, rng.gauss(0.8 * f, 0.1)))
            rows.append({"type": "score", "ts": ts + 0.001, "feature": "bot", "name": "judge",
                         "value": round(judge, 4), "request_id": rid})  # fmt: skip
        if rng.random() < 0.3:
            tox = min(1.0, max(0.0, rng.gauss(0.1, 0.03)))
            rows.append({"type": "score", "ts": ts + 0.002, "feature": "bot", "name": "toxicity",
                         "value": round(tox, 4), "request_id": rid})  # fmt: skip
        if rng.random() < 0.05:
            up = 1.0 if rng.random() < 0.75 * f else 0.0
            rows.append({"type": "score", "ts": ts + 0.003, "feature": "bot",
                         "name": "user_feedback", "value": up, "request_id": rid})  # fmt: skip
    run_ts = T0 + 600.0
    while run_ts < T0 + 13 * H:  # a golden run of 12 cases every 30 minutes, one timestamp
        f = 0.85 if DECLINE_AT <= run_ts < DECLINE_END else 1.0
        for _ in range(12):
            g = min(1.0, max(0.0, rng.gauss(0.9 * f, 0.05)))
            rows.append({"type": "score", "ts": run_ts, "feature": "bot", "name": "golden",
                         "value": round(g, 4)})  # fmt: skip
        run_ts += 1800.0
    for k in range(8):  # a burst: 8 terrible judge scores within 40 s, no request ids
        rows.append({"type": "score", "ts": BURST_AT + 5 * k, "feature": "bot", "name": "judge",
                     "value": 0.05})  # fmt: skip
    rows.sort(key=lambda r: float(r["ts"]))  # type: ignore[arg-type]
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))


def test_fused_quality_verdict_through_the_replay_cli(tmp_path: Path) -> None:
    events = tmp_path / "quality.jsonl"
    write_events(events)
    cfg = tmp_path / "config.yaml"
    cfg.write_text("scores:\n  toxicity: lower\n")
    signals = tmp_path / "signals.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "replay", str(events), "--config", str(cfg),
         "--signals", str(signals)],
        capture_output=True, check=True,
    )  # fmt: skip
    assert b"replayed" in proc.stdout
    sigs = [orjson.loads(line) for line in signals.read_bytes().splitlines()]
    quality = [s for s in sigs if s["layer"] == "quality"]
    assert {(s["metric"], s["detector"]) for s in quality} == {("quality", "fused")}
    firing = [s for s in quality if s["state"] == "firing"]
    assert firing, "the decline was not found"
    # Nothing before the decline (the burst included), then found within 45 minutes.
    assert rfc3339(DECLINE_AT) <= firing[0]["ts"] <= rfc3339(DECLINE_AT + 45 * 60)
    assert firing[0]["baseline"] == 1.0 and 0.7 < firing[0]["value"] < 0.95
    assert firing[0]["direction"] == "down"
    assert any(s["state"] == "cleared" and s["ts"] > rfc3339(DECLINE_END) for s in quality)


def test_a_snapshot_from_before_the_fused_verdict_restarts_learning_with_a_log_line() -> None:
    """Old snapshots hold per-score seasonal/cusum states on `score:<name>`; the current rules
    have none there: the states are dropped with a warning (logged as state_restore_partial
    by the daemon), and the fused `quality` series starts fresh."""
    from config.settings import load_settings
    from daemon.pipeline import Pipeline
    from detectors import build_detector

    old = [
        build_detector("seasonal", {"for_n": 12, "min_n": 30, "direction": "down"}).to_state(),
        build_detector("cusum", {"k": 0.05, "h": 4.0, "min_n": 30}).to_state(),
    ]
    pipe = Pipeline(load_settings(None))
    entry = {"key": ["bot", "score:judge", ""], "layer": "quality", "states": old}
    warnings = pipe.restore_series([entry])
    assert len(warnings) == 2
    assert all("not in the current rules" in w and "bot/score:judge" in w for w in warnings)
