"""Replay in simulated time: a known latency breach fires and clears at the expected ticks."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import orjson

from config.settings import load_settings
from correlator.records import rfc3339
from daemon.pipeline import STALE_CHECK_S
from daemon.replay import replay

T0 = 1_795_000_000.0 - (1_795_000_000.0 % 15)  # tick-aligned
BREACH, END = T0 + 3600, T0 + 3600 + 1200

CONFIG = """
features:
  checkout-bot:
    rules:
      - {metric: latency_p95_ms, detector: static,
         params: {threshold: 10000, op: above, for_s: 120, clear: 8000}}
"""


def write_breach_file(path: Path) -> None:
    """One call per second for 2 h; 15 s latency between BREACH and END, 800 ms otherwise."""
    with open(path, "wb") as fh:
        for i in range(7200):
            ts = T0 + i
            slow = BREACH <= ts < END
            ev = {
                "type": "llm_call",
                "ts": ts,
                "feature": "checkout-bot",
                "status": 200,
                "latency_ms": 15000.0 if slow else 800.0 + (i % 10),
            }
            fh.write(orjson.dumps(ev) + b"\n")


def test_latency_breach_fires_and_clears_on_time(tmp_path: Path) -> None:
    events = tmp_path / "breach.jsonl"
    write_breach_file(events)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG)
    out = io.BytesIO()
    result = replay(str(events), load_settings(cfg), signals_out=out)
    assert result.events == 7200 and result.rejected_total == 0
    sigs = [orjson.loads(line) for line in out.getvalue().splitlines()]
    p95 = [s for s in sigs if s["metric"] == "latency_p95_ms"]
    # A 300 s window at 1 call/s: p95 (rank 285 of 300) turns slow once 16 slow calls are in
    # the window, i.e. at the tick BREACH+30; `for_s: 120` holds it until BREACH+150. After
    # END the window holds 15 slow calls at END+285, so p95 drops back under the clear level.
    assert [(s["state"], s["ts"]) for s in p95] == [
        ("firing", rfc3339(BREACH + 150)),
        ("cleared", rfc3339(END + 285)),
    ]
    firing = p95[0]
    assert firing["detector"] == "static" and firing["layer"] == "infra"
    assert firing["baseline"] == 10000 and firing["direction"] == "up"
    assert abs(firing["value"] - 15000) / 15000 <= 0.02


def test_replay_cli_reads_gzip_and_stdin_and_reports_bad_lines(tmp_path: Path) -> None:
    import gzip

    good = orjson.dumps({"type": "llm_call", "ts": T0, "feature": "f", "latency_ms": 5})
    body = good + b"\n" + b"{broken\n" + good.replace(b"5}", b"-5}") + b"\n"
    gz = tmp_path / "in.jsonl.gz"
    gz.write_bytes(gzip.compress(body))
    for args, stdin in (([str(gz)], None), (["-"], body)):
        proc = subprocess.run(
            [sys.executable, "-m", "daemon.cli", "replay", *args],
            input=stdin,
            capture_output=True,
            check=True,
        )
        text = proc.stdout.decode()
        assert "replayed 1 events" in text
        assert "line 2: line is not valid JSON" in text
        assert "line 3: latency_ms: Input should be greater than or equal to 0 (got -5)" in text


def test_custom_infra_metric_answers_the_infra_retrieval_question(tmp_path: Path) -> None:
    """`metric` events go to detectors per sample; a custom infra metric going up with quality
    stable is infra/retrieval evidence, not "unknown"."""
    import random

    rng = random.Random(5)
    path = tmp_path / "metrics.jsonl"
    with open(path, "wb") as fh:
        for i in range(12_000):  # 50 h at one sample per 15 s
            ts = T0 + i * 15
            slow = 10_000 <= i < 10_120  # 30 minutes
            lat = 100 + rng.gauss(0, 5) + (80 if slow else 0)
            fh.write(
                orjson.dumps(
                    {
                        "type": "metric",
                        "ts": ts,
                        "feature": "rag",
                        "layer": "infra",
                        "name": "retrieval_latency_ms",
                        "value": lat,
                    }
                )
                + b"\n"
            )
            fh.write(
                orjson.dumps(
                    {
                        "type": "metric",
                        "ts": ts,
                        "feature": "rag",
                        "layer": "quality",
                        "name": "groundedness",
                        "value": 0.9 + rng.gauss(0, 0.01),
                    }
                )
                + b"\n"
            )
    result = replay(str(path), load_settings(None))
    (inc,) = result.incidents
    assert inc["domain"] == "infra_retrieval"
    assert inc["severity"] == "watch" and inc["paged"] is False  # a lone infra signal
    q3 = next(t for t in inc["triage"] if t["question"] == "infra_retrieval")
    assert q3["answer"] is True and "retrieval_latency_ms" in q3["evidence"]


def test_a_feature_that_goes_quiet_while_firing_resolves(tmp_path: Path) -> None:
    """Absent data resolves (as in Prometheus): checkout-bot breaches, then stops sending;
    another feature keeps the clock going."""
    path = tmp_path / "quiet.jsonl"
    stop = BREACH + 600
    with open(path, "wb") as fh:
        for i in range(4 * 3600):
            ts = T0 + i
            other = {
                "type": "llm_call",
                "ts": ts,
                "feature": "other",
                "status": 200,
                "latency_ms": 500.0,
            }
            fh.write(orjson.dumps(other) + b"\n")
            if ts < stop:
                slow = ts >= BREACH
                ev = {
                    "type": "llm_call",
                    "ts": ts,
                    "feature": "checkout-bot",
                    "status": 200,
                    "latency_ms": 15000.0 if slow else 800.0,
                }
                fh.write(orjson.dumps(ev) + b"\n")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG)
    out = io.BytesIO()
    result = replay(str(path), load_settings(cfg), signals_out=out)
    p95 = [orjson.loads(x) for x in out.getvalue().splitlines()]
    p95 = [s for s in p95 if s["metric"] == "latency_p95_ms" and s["feature"] == "checkout-bot"]
    assert [s["state"] for s in p95] == ["firing", "cleared"]
    # The last tick whose 300 s window still holds checkout-bot calls is stop+285 (its last
    # sample); the series is stale once that sample is older than 2 × 900 s (twice the
    # longest window), i.e. at the first tick after stop+2085; stale series are looked for
    # once a minute (`STALE_CHECK_S`), so the clear comes at most a minute after that.
    cleared = datetime.fromisoformat(p95[1]["ts"].replace("Z", "+00:00")).timestamp()
    assert stop + 2100 <= cleared <= stop + 2100 + STALE_CHECK_S
    assert p95[1]["value"] > 10000  # cleared for lack of data, not because it recovered
    (inc,) = [r for r in result.incidents if r["feature"] == "checkout-bot"]
    assert inc["status"] == "resolved"


def test_incident_records_carry_when_they_notified(tmp_path: Path) -> None:
    """Replay's records list each notification's time and severity (the evaluation reads time
    to detect from them): present exactly when the incident paged, never before it opened."""
    from daemon.simulate import FeatureProfile, Injection, generate

    feats = [FeatureProfile("support-bot", rpm=60)]
    outage = Injection("provider_outage", "support-bot", T0 + 2 * 3600, T0 + 2.5 * 3600)
    path = tmp_path / "outage.jsonl"
    with open(path, "wb") as fh:
        for ev in generate(T0, 3.0, feats, [outage], seed=1):
            fh.write(orjson.dumps(ev) + b"\n")
    result = replay(str(path), load_settings(None))
    assert any(r["paged"] for r in result.incidents)
    for rec in result.incidents:
        assert bool(rec["notifications"]) == rec["paged"]
        for when, severity in rec["notifications"]:
            assert when >= rec["opened_at"]
            assert severity in ("warning", "critical")
    assert any(sev == "critical" for r in result.incidents for _, sev in r["notifications"])
