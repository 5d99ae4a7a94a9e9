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
from daemon.replay import ReplayResult, replay

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


def _outage_lines(start: float) -> list[bytes]:
    """Three hours of support-bot at 60 calls/min with a 30-min provider outage at 2 h."""
    from daemon.simulate import FeatureProfile, Injection, generate

    feats = [FeatureProfile("support-bot", rpm=60)]
    outage = Injection("provider_outage", "support-bot", start + 2 * 3600, start + 2.5 * 3600)
    return [orjson.dumps(ev) + b"\n" for ev in generate(start, 3.0, feats, [outage], seed=1)]


def _provider_incidents(result: ReplayResult) -> list[dict[str, object]]:
    return [r for r in result.incidents if r["domain"] == "provider" and r["paged"]]


def test_a_lone_far_ahead_event_is_set_aside_as_future(tmp_path: Path) -> None:
    """A 2099 line among 2026 events, or one written hours ahead of its neighbours, must not
    drag replay's clock (every later event would be late and the outage lost): it is counted
    as `future`, as the live daemon counts an event too far ahead of its clock."""
    lines = _outage_lines(T0)
    clean = replay(_write(tmp_path / "clean.jsonl", lines), load_settings(None))
    assert len(_provider_incidents(clean)) == 1 and "future" not in clean.unused
    far = {"type": "llm_call", "ts": "2099-01-01T00:00:00Z", "feature": "support-bot"}
    ahead = {"type": "llm_call", "ts": T0 + 5 * 3600, "feature": "support-bot"}
    for name, bad, at in (("2099", far, 3000), ("ahead", ahead, 3000), ("first", far, 0)):
        path = _write(
            tmp_path / f"{name}.jsonl", [*lines[:at], orjson.dumps(bad) + b"\n", *lines[at:]]
        )
        result = replay(path, load_settings(None))
        assert result.unused == {"future": 1}, name
        assert result.events == len(lines) + 1
        assert result.last_ts == clean.last_ts and result.first_ts == clean.first_ts
        assert [r["opened_at"] for r in _provider_incidents(result)] == [
            r["opened_at"] for r in _provider_incidents(clean)
        ], name
    proc = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "replay", str(tmp_path / "2099.jsonl")],
        capture_output=True,
        check=True,
    )
    assert "not used: 1 future" in proc.stdout.decode()


def test_a_real_gap_between_bursts_moves_the_clock(tmp_path: Path) -> None:
    """Capture files have gaps of hours or days: the events after a gap confirm the jump, so
    both halves replay (one outage in each) and nothing is counted late or future."""
    day = 86400.0 + 3 * 3600
    lines = _outage_lines(T0) + _outage_lines(T0 + day)
    result = replay(_write(tmp_path / "gap.jsonl", lines), load_settings(None))
    assert result.unused == {}
    assert len(_provider_incidents(result)) == 2
    assert result.last_ts is not None and result.last_ts > T0 + day + 2.9 * 3600


def test_clock_guard_rules() -> None:
    """The hold-and-confirm rule on its own: contradiction, confirmation, the end of input."""
    from daemon.ingest.events import Event, validate_one
    from daemon.replay import ClockGuard

    def ev(ts: float) -> Event:
        return validate_one({"type": "llm_call", "ts": ts, "feature": "f"})

    def run(times: list[float]) -> tuple[list[float], list[float]]:
        aside: list[Event] = []
        guard = ClockGuard(300.0, aside.append)
        passed = guard.feed([ev(t) for t in times]) + guard.finish()
        return [e.ts for e in passed], [e.ts for e in aside]

    t = T0
    # A pair of bad lines is still contradicted by the stream going on where it was.
    assert run([t, t + 1, 4e9, 4e9, t + 2, t + 3]) == ([t, t + 1, t + 2, t + 3], [4e9, 4e9])
    # Three events at a later time confirm it; a straggler behind them is the pipeline's
    # to judge (late), not the guard's.
    later = t + 86400
    assert run([t, later, later + 1, later + 2, t + 5]) == (
        [t, later, later + 1, later + 2, t + 5],
        [],
    )
    # A bad line, then a real gap: the bad line goes, the gap's events move the clock.
    assert run([t, 4e9, later, later + 1, later + 2]) == ([t, later, later + 1, later + 2], [4e9])
    # At the very end a jump goes on only when the file has made as long a one before (an
    # hourly series' last hour); a file of one or two events is too short to judge.
    assert run([t, t + 1, t + 2, 4e9]) == ([t, t + 1, t + 2], [4e9])
    hourly = [t + h * 3600 for h in range(6)]
    assert run(hourly) == (hourly, [])
    assert run([*hourly, 4e9]) == (hourly, [4e9])
    assert run([t]) == ([t], []) and run([t, t + 1000]) == ([t, t + 1000], [])


def _write(path: Path, lines: list[bytes]) -> str:
    path.write_bytes(b"".join(lines))
    return str(path)


def test_replay_cli_paths_it_cannot_use_are_one_line_errors(tmp_path: Path) -> None:
    """A directory or missing input, or an output in a missing directory: one line naming the
    path, exit 1 (as check-config and simulate), and last run's output is not truncated."""
    events = _write(
        tmp_path / "in.jsonl", [orjson.dumps({"type": "llm_call", "ts": T0, "feature": "f"})]
    )
    previous = tmp_path / "incidents.jsonl"
    previous.write_text("last run\n")
    missing_dir = tmp_path / "nope" / "x.jsonl"
    cases = [
        ([str(tmp_path)], f"cannot read {tmp_path}: Is a directory"),
        ([str(tmp_path / "missing.jsonl"), "--incidents", str(previous)], "cannot read"),
        ([events, "--incidents", str(missing_dir)], f"cannot write {missing_dir}: No such file"),
        ([events, "--signals", str(tmp_path)], f"cannot write {tmp_path}: Is a directory"),
    ]
    for args, message in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "daemon.cli", "replay", *args], capture_output=True
        )
        err = proc.stderr.decode()
        assert proc.returncode == 1, err
        assert err.startswith("llm-oncall: ") and message in err, err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert previous.read_text() == "last run\n"
