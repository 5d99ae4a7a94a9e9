"""eval/nab_eval.py without a NAB checkout: CSV -> events, signals -> scores, results files.

The last test replays a small synthetic NAB-shaped file through the real `llm-oncall replay`
process, so the conversion is checked against what the daemon accepts and emits, not only
against itself.
"""

from __future__ import annotations

import importlib.util
import random
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest

from daemon.ingest.events import MetricEvent, validate_one
from detectors.defaults import default_rules

REPO = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nab_eval", REPO / "eval" / "nab_eval.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["nab_eval"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


nab = _load()

T0 = datetime(2014, 4, 1, tzinfo=UTC).timestamp()
STEP = 300.0


def _stamp(i: int) -> str:
    return datetime.fromtimestamp(T0 + i * STEP, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _write_csv(path: Path, values: list[float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["timestamp,value"] + [f"{_stamp(i)},{v}" for i, v in enumerate(values)]
    path.write_text("\n".join(lines) + "\n")


def _signal(i: int, state: str, detector: str = "seasonal") -> dict[str, object]:
    ts = datetime.fromtimestamp(T0 + i * STEP, UTC).isoformat().replace("+00:00", "Z")
    return {"ts": ts, "feature": "nab", "metric": "nab", "detector": detector, "state": state}


def test_rows_become_metric_events_the_daemon_accepts(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    _write_csv(path, [1.5, 2.0, -3.25])
    rows = nab.read_rows(path)
    assert [r.text for r in rows] == [_stamp(0), _stamp(1), _stamp(2)]
    assert [r.ts for r in rows] == [T0, T0 + STEP, T0 + 2 * STEP]  # naive times read as UTC
    events = list(nab.to_events(rows))
    parsed = [validate_one(ev) for ev in events]
    assert all(isinstance(ev, MetricEvent) for ev in parsed)
    assert {(ev.feature, ev.layer, ev.name) for ev in parsed} == {("nab", "infra", "nab")}
    assert [ev.value for ev in parsed] == [1.5, 2.0, -3.25]
    # The metric name is in no layer's table: it gets the rule every custom metric gets.
    assert default_rules("infra", "nab") == default_rules("quality", "some_custom_metric")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("2014-04-01 00:05:00,abc", "f.csv:3: value 'abc' is not a number"),
        ("2014-04-01 00:05:00,nan", "f.csv:3: value 'nan' is not finite"),
        ("yesterday,1", "f.csv:3: timestamp 'yesterday' is not a date and time"),
        ("2014-04-01 00:05:00,1,2", "f.csv:3: expected 2 fields"),
    ],
)
def test_bad_lines_are_named(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "f.csv"
    path.write_text(f"timestamp,value\n2014-04-01 00:00:00,1\n{line}\n")
    with pytest.raises(ValueError, match=message):
        nab.read_rows(path)


def test_onset_and_firing_mappings(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    _write_csv(path, [0.0] * 12)
    rows = nab.read_rows(path)
    signals = [
        _signal(2, "firing"),
        _signal(3, "firing", detector="cusum"),  # a second detector joins: no new onset
        _signal(4, "cleared"),
        _signal(5, "cleared", detector="cusum"),  # episode ends before row 5
        {**_signal(7, "firing"), "ts": _signal(7, "firing")["ts"].replace("00Z", "30Z")},
        {**_signal(9, "firing"), "feature": "other"},  # not ours: ignored
    ]
    onset = nab.anomaly_scores(rows, signals, "onset")
    firing = nab.anomaly_scores(rows, signals, "firing")
    # A transition between two rows lands on the next row (7 min 30 s -> row 8).
    assert [i for i, s in enumerate(onset) if s] == [2, 8]
    # Still firing at the end of the data: every row to the end.
    assert [i for i, s in enumerate(firing) if s] == [2, 3, 4, 8, 9, 10, 11]
    with pytest.raises(ValueError, match="mapping must be one of"):
        nab.anomaly_scores(rows, signals, "peak")


def test_results_file_in_nab_layout(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    _write_csv(path, [1.0, 2.5, 3.0, 4.0])
    rows = nab.read_rows(path)
    labels = nab.window_labels(rows, [[f"{_stamp(1)}.000000", f"{_stamp(2)}.000000"]])
    assert labels == [0, 1, 1, 0]  # bounds inclusive
    out = nab.results_path(tmp_path / "results", "llmOncall", "realTweets/Twitter_volume_X.csv")
    assert out == tmp_path / "results/llmOncall/realTweets/llmOncall_Twitter_volume_X.csv"
    nab.write_results(out, rows, [0.0, 1.0, 0.0, 0.0], labels)
    assert out.read_text().splitlines() == [
        "timestamp,value,anomaly_score,label",
        f"{_stamp(0)},1.0,0,0",
        f"{_stamp(1)},2.5,1,1",
        f"{_stamp(2)},3.0,0,1",
        f"{_stamp(3)},4.0,0,0",
    ]
    with pytest.raises(ValueError, match="4 rows, 3 scores"):
        nab.write_results(out, rows, [0.0] * 3, labels)


def test_tally_counts_windows_and_false_detections(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    _write_csv(path, [0.0] * 100)
    rows = nab.read_rows(path)
    assert nab.probation_rows(len(rows)) == 15
    scores = [0.0] * 100
    for i in (3, 40, 41, 70, 90):
        scores[i] = 1.0
    windows = [[_stamp(35), _stamp(45)], [_stamp(60), _stamp(65)]]
    t = nab.tally(rows, scores, windows)
    assert (t.windows, t.hit, t.false, t.probation) == (2, 1, 2, 1)


def test_replayed_step_is_detected_and_written(tmp_path: Path) -> None:
    """A NAB-shaped file through the real replay process: quiet noise, then a 3x step."""
    rnd = random.Random(3)
    step_at = 400
    values = [10 + rnd.gauss(0, 1) for _ in range(step_at)]
    values += [30 + rnd.gauss(0, 1) for _ in range(100)]
    checkout = tmp_path / "NAB"
    _write_csv(checkout / "data" / "synthetic" / "step.csv", values)
    window = [f"{_stamp(step_at - 10)}.000000", f"{_stamp(step_at + 20)}.000000"]
    run = nab.run_file(checkout, tmp_path / "out", "synthetic/step.csv", [window], ["onset"])
    assert "replayed 500 events" in run.summary
    written = tmp_path / "out/results/llmOncall/synthetic/llmOncall_step.csv"
    lines = written.read_text().splitlines()
    assert lines[0] == "timestamp,value,anomaly_score,label" and len(lines) == 501
    alerts = [i for i, line in enumerate(lines[1:]) if line.split(",")[2] == "1"]
    assert alerts, "the default rule never fired on a 20-sigma step"
    assert step_at <= alerts[0] < step_at + 10  # fires on the step, not before it
    assert run.tallies["onset"].hit == 1
