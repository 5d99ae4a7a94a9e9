"""Score the default rule for custom `metric` events on the Numenta Anomaly Benchmark (NAB).

    git clone https://github.com/numenta/NAB /path/to/NAB
    python eval/nab_eval.py /path/to/NAB [--out out/nab] [--jobs 2] [--mapping onset|firing|both]
                                         [--split all|dev|held-out] [--files GLOB ...]

NAB is 58 labelled time series (`data/<category>/<file>.csv`, columns timestamp,value) and a
scorer that rewards early detections inside labelled anomaly windows and charges every
detection outside them. It is not our world (one number per 5 minutes, no calls, no labels),
which is the point: the defaults were never looked at on it, so it cannot be fitted to.

What this does, per data file, one `llm-oncall replay` process each (`--jobs` at a time):

1. every row becomes one `metric` event: feature `nab`, layer `infra`, name `nab`, the row's
   value, its timestamp read as UTC. `nab` is in no layer's table, so it gets the rule every
   unknown custom metric gets (`detectors.defaults._OTHER`, a two-sided seasonal baseline);
   nothing is configured, per file or otherwise: replay runs on embedded defaults, with any
   `LLM_ONCALL_*` environment variables removed so a stray setting cannot leak in;
2. the replay's `--signals` transitions become NAB's per-row `anomaly_score`, in [0, 1]:
   - `onset` (the default): 1 on the row where the metric goes from no detector firing to one
     firing, else 0. That is what a user gets from us: one alert per firing episode. NAB
     counts every row at or above the threshold as a detection, only the first one inside a
     window earns credit, and each one outside a window costs, so this is also the faithful
     reading of "one page per firing";
   - `firing`: 1 on every row while a detector fires. Reported for comparison: a long firing
     episode outside a window is then charged once per row;
3. the results go to `<out>/results/<detector>/<category>/<detector>_<file>.csv` (timestamp,
   value, anomaly_score, label; `label` is 1 inside NAB's combined windows), and NAB's own
   `run.py --score --normalize` scores them at threshold 0.5 (a 0/1 score has nothing to
   optimise: NAB's `--optimize` could only pick "all alerts" or "none", and picking "none"
   per profile would be tuning to the benchmark). `null` (the normalisation baseline) and
   `windowedGaussian` are rescored beside ours from the checkout's own result files; the
   latter must reproduce NAB's published figures, or the scorer's environment is not
   faithful and the run fails.

**Split.** `--split dev` / `--split held-out` score half of the files, fixed before any score
was looked at (issue 10): within each category, the files sorted by name, the 1st, 3rd, 5th …
are the development half (31 files), the 2nd, 4th … the held-out half (27 files). A detector is
designed while looking only at the development half; the held-out half is scored once at the
end. `--files GLOB` (repeatable, matched against `category/file.csv`) narrows further. The
score of a subset is NAB's normalisation restricted to its files: 100 x (ours - null) /
(perfect - null), each summed over the subset's per-file scores from NAB's scorer (for all 58
files this is exactly NAB's final score).

The scorer needs pandas, which the daemon does not: the script makes a virtualenv for it
(`--venv`, default `~/.cache/llm-oncall/nab-venv`, created once with pinned pandas/numpy) or
uses `--scorer-python` if you already have an interpreter with pandas. The NAB checkout is
only read; everything written goes under `--out`.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import json
import math
import os
import shutil
import subprocess
import sys
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

FEATURE = "nab"
LAYER = "infra"
METRIC = "nab"
DETECTOR = "llmOncall"  # NAB splits result file names on "_": no underscore here
DETECTOR_FIRING = "llmOncallFiring"
MAPPINGS = {"onset": DETECTOR, "firing": DETECTOR_FIRING}
THRESHOLD = 0.5
PROBATION = 0.15  # NAB's probationary share of each file (runner.py)
PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
CHECK_DETECTOR = "windowedGaussian"  # rescored to prove the scorer environment reproduces NAB
# Pinned so the scorer's arithmetic is the same everywhere; these reproduce NAB's published
# figures to the last printed digit on Python 3.11 (checked on every run, see above).
SCORER_REQUIREMENTS = ("pandas==2.2.3", "numpy==2.1.3")
MARKER = ".nab-eval"
NAB_TS_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True, slots=True)
class Row:
    """One NAB data row; `text` is the timestamp as written, echoed verbatim into results."""

    text: str
    ts: float
    value: float


# ---- which files ---------------------------------------------------------------------------

SPLITS = ("all", "dev", "held-out")


def split_of(files: Sequence[str]) -> dict[str, str]:
    """Each file's half: alternate files per category, by sorted name (first one is dev)."""
    halves: dict[str, str] = {}
    for _cat, group in groupby(sorted(files), key=lambda f: f.split("/")[0]):
        for i, name in enumerate(group):
            halves[name] = "dev" if i % 2 == 0 else "held-out"
    return halves


def select(files: Sequence[str], split: str, patterns: Sequence[str]) -> list[str]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    halves = split_of(files)
    chosen = [f for f in sorted(files) if split == "all" or halves[f] == split]
    if patterns:
        chosen = [f for f in chosen if any(fnmatch.fnmatchcase(f, p) for p in patterns)]
    return chosen


# ---- data file -> events ------------------------------------------------------------------


def parse_nab_ts(text: str) -> float:
    """NAB timestamps are naive ("2014-04-01 00:00:00"); they are read as UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def read_rows(path: Path) -> list[Row]:
    """The rows of a NAB data file, in file order; any bad line is an error naming it."""
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    if not lines or lines[0].strip() != "timestamp,value":
        raise ValueError(f"{path}:1: expected the header 'timestamp,value'")
    rows: list[Row] = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split(",")
        if len(parts) != 2:
            raise ValueError(f"{path}:{lineno}: expected 2 fields (timestamp,value), got {line!r}")
        text, raw = parts[0].strip(), parts[1].strip()
        try:
            ts = parse_nab_ts(text)
        except ValueError:
            raise ValueError(
                f"{path}:{lineno}: timestamp {text!r} is not a date and time"
            ) from None
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{path}:{lineno}: value {raw!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"{path}:{lineno}: value {raw!r} is not finite")
        rows.append(Row(text, ts, value))
    return rows


def to_events(rows: Iterable[Row]) -> Iterator[dict[str, Any]]:
    """One `metric` event per row (DESIGN.md event contract), all on one fixed feature/metric."""
    for row in rows:
        yield {
            "type": "metric",
            "ts": row.ts,
            "feature": FEATURE,
            "layer": LAYER,
            "name": METRIC,
            "value": row.value,
        }


def write_events(rows: Sequence[Row], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for ev in to_events(rows):
            fh.write(json.dumps(ev, separators=(",", ":")) + "\n")


# ---- signals -> NAB anomaly scores ---------------------------------------------------------


def _row_at(
    rows: Sequence[Row], index: dict[float, int], order: list[tuple[float, int]], ts: float
) -> int:
    """The row a transition at `ts` belongs to: the first row with that timestamp, else the
    first row (by time) after it, else one past the end."""
    hit = index.get(ts)
    if hit is not None:
        return hit
    i = bisect_left(order, (ts, -1))
    return order[i][1] if i < len(order) else len(rows)


def anomaly_scores(
    rows: Sequence[Row], signals: Iterable[dict[str, Any]], mapping: str
) -> list[float]:
    """Per-row scores from signal transitions (see the module doc for the two mappings).

    A row is "alerting" while at least one detector of the metric fires; with several rules
    per metric the onset is when the first of them starts, as a pager would see it.
    """
    if mapping not in MAPPINGS:
        raise ValueError(f"mapping must be one of {sorted(MAPPINGS)}, got {mapping!r}")
    index: dict[float, int] = {}
    for i, row in enumerate(rows):
        index.setdefault(row.ts, i)
    order = sorted((row.ts, i) for i, row in enumerate(rows))
    scores = [0.0] * len(rows)
    firing: set[tuple[str, str]] = set()
    start: int | None = None
    for sig in signals:
        if sig.get("feature") != FEATURE or sig.get("metric") != METRIC:
            continue
        key = (str(sig.get("detector")), str(sig.get("series", "")))
        at = _row_at(rows, index, order, datetime.fromisoformat(sig["ts"]).timestamp())
        if sig["state"] == "firing":
            if not firing and at < len(rows):
                start = at
                scores[at] = 1.0
            firing.add(key)
        elif sig["state"] == "cleared":
            firing.discard(key)
            if not firing and start is not None:
                if mapping == "firing":
                    for j in range(start, at):
                        scores[j] = 1.0
                start = None
        else:
            raise ValueError(f"signal state must be 'firing' or 'cleared', got {sig['state']!r}")
    if mapping == "firing" and start is not None:
        for j in range(start, len(rows)):
            scores[j] = 1.0
    return scores


def window_labels(rows: Sequence[Row], windows: Iterable[Sequence[str]]) -> list[int]:
    """1 for rows inside any of NAB's windows (bounds inclusive, as NAB's labeller has them)."""
    spans = [(parse_nab_ts(a), parse_nab_ts(b)) for a, b in windows]
    return [int(any(a <= row.ts <= b for a, b in spans)) for row in rows]


def write_results(
    path: Path, rows: Sequence[Row], scores: Sequence[float], labels: Sequence[int]
) -> None:
    """NAB's results format: timestamp,value,anomaly_score,label, one line per data row."""
    if not len(rows) == len(scores) == len(labels):
        raise ValueError(f"{path}: {len(rows)} rows, {len(scores)} scores, {len(labels)} labels")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("timestamp,value,anomaly_score,label\n")
        for row, score, label in zip(rows, scores, labels, strict=True):
            fh.write(f"{row.text},{row.value!r},{score:g},{label}\n")


def results_path(results_dir: Path, detector: str, relative: str) -> Path:
    """`<results>/<detector>/<category>/<detector>_<file>.csv` for data file `category/file`."""
    category, name = relative.split("/")
    return results_dir / detector / category / f"{detector}_{name}"


# ---- one data file through the daemon ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileRun:
    relative: str  # "category/file.csv", NAB's key
    rows: int
    tallies: dict[str, Tally]  # by mapping
    seconds: float
    summary: str  # the replay's printed summary


def replay_env() -> dict[str, str]:
    """The caller's environment without settings: replay must run on embedded defaults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_ONCALL_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_file(
    nab: Path, out: Path, relative: str, windows: list[list[str]], mappings: Sequence[str]
) -> FileRun:
    started = time.perf_counter()
    rows = read_rows(nab / "data" / relative)
    stem = relative.removesuffix(".csv")
    events = out / "events" / f"{stem}.jsonl"
    signals = out / "signals" / f"{stem}.jsonl"
    write_events(rows, events)
    signals.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "daemon.cli", "replay", str(events), "--signals", str(signals)]
    proc = subprocess.run(cmd, cwd=REPO, env=replay_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"replay of {relative} failed ({proc.returncode}): {proc.stderr}")
    with open(signals, encoding="utf-8") as fh:
        sigs = [json.loads(line) for line in fh if line.strip()]
    labels = window_labels(rows, windows)
    tallies: dict[str, Tally] = {}
    for mapping in mappings:
        scores = anomaly_scores(rows, sigs, mapping)
        tallies[mapping] = tally(rows, scores, windows)
        write_results(
            results_path(out / "results", MAPPINGS[mapping], relative), rows, scores, labels
        )
    events.unlink()  # the largest file here and cheap to rebuild
    return FileRun(relative, len(rows), tallies, time.perf_counter() - started, proc.stdout)


# ---- NAB's scorer --------------------------------------------------------------------------


def scorer_python(venv: Path) -> Path:
    """An interpreter with NAB's scoring dependencies, making the virtualenv on first use."""
    python = venv / "bin" / "python"
    stamp = venv / "requirements.txt"
    wanted = "\n".join(SCORER_REQUIREMENTS) + "\n"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"making the scorer's virtualenv in {venv} ({', '.join(SCORER_REQUIREMENTS)}) …")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *SCORER_REQUIREMENTS], check=True)
    stamp.write_text(wanted)
    return python


Scores = dict[str, dict[str, float]]  # detector -> profile -> normalised score


def run_scorer(nab: Path, out: Path, python: Path, detectors: Sequence[str], jobs: int) -> Scores:
    """NAB's own `run.py --score --normalize` over `<out>/results`; returns its final results."""
    results = out / "results"
    for name in ("null", CHECK_DETECTOR):
        # Copies, not links: the scorer appends columns to the files it scores.
        shutil.copytree(
            nab / "results" / name, results / name, ignore=shutil.ignore_patterns("*_scores.csv")
        )
    with open(nab / "config" / "thresholds.json", encoding="utf-8") as fh:
        published = json.load(fh)
    thresholds = {name: published[name] for name in ("null", CHECK_DETECTOR)}
    for det in detectors:
        thresholds[det] = {p: {"threshold": THRESHOLD, "score": 0.0} for p in PROFILES}
    thresholds_path = out / "thresholds.json"
    thresholds_path.write_text(json.dumps(thresholds, indent=2))
    names = ",".join(("null", CHECK_DETECTOR, *detectors))
    cmd = [
        str(python),
        "run.py",
        "--score",
        "--normalize",
        "--skipConfirmation",
        "-d",
        names,
        "--resultsDir",
        str(results),
        "-t",
        str(thresholds_path),
        "-n",
        str(jobs),
    ]
    log = out / "scorer.log"
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.run(cmd, cwd=nab, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"NAB's scorer failed ({proc.returncode}); see {log}")
    with open(results / "final_results.json", encoding="utf-8") as fh:
        final: Scores = json.load(fh)
    return final


def per_file_scores(path: Path) -> dict[str, float]:
    """`file -> raw score` from one of NAB's `<detector>_<profile>_scores.csv` files."""
    with open(path, encoding="utf-8") as fh:
        return {r["File"]: float(r["Score"]) for r in csv.DictReader(fh) if r["File"]}


def subset_scores(
    nab: Path,
    results: Path,
    detector: str,
    files: Sequence[str],
    windows: dict[str, list[list[str]]],
) -> dict[str, float]:
    """NAB's normalised score restricted to `files`, per profile (see the module doc)."""
    with open(nab / "config" / "profiles.json", encoding="utf-8") as fh:
        tp_weight = {p: float(v["CostMatrix"]["tpWeight"]) for p, v in json.load(fh).items()}
    perfect_n = sum(len(windows[f]) for f in files)
    out: dict[str, float] = {}
    for profile in PROFILES:
        ours = per_file_scores(results / detector / f"{detector}_{profile}_scores.csv")
        null = per_file_scores(results / "null" / f"null_{profile}_scores.csv")
        base = sum(null[f] for f in files)
        total = sum(ours[f] for f in files)
        out[profile] = 100.0 * (total - base) / (perfect_n * tp_weight[profile] - base)
    return out


def probation_rows(n: int) -> int:
    """Rows at the start of a file that NAB's scorer ignores (its Sweeper's rule)."""
    return int(min(math.floor(PROBATION * n), PROBATION * 5000))


@dataclass(frozen=True, slots=True)
class Tally:
    """What the detections did on one file, counted per window and per detection (NAB's own
    TP/FP/FN columns count records). A detection is a row at or above the threshold: an alert
    onset in the `onset` mapping, any row while firing in the `firing` one."""

    windows: int
    hit: int  # windows with at least one detection inside, after probation
    false: int  # detections outside every window, after probation
    probation: int  # detections NAB ignores

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.windows + other.windows,
            self.hit + other.hit,
            self.false + other.false,
            self.probation + other.probation,
        )


def tally(rows: Sequence[Row], scores: Sequence[float], windows: Iterable[Sequence[str]]) -> Tally:
    spans = [(parse_nab_ts(a), parse_nab_ts(b)) for a, b in windows]
    skip = probation_rows(len(rows))
    found = [i for i, s in enumerate(scores) if s >= THRESHOLD]
    hit = sum(any(i >= skip and a <= rows[i].ts <= b for i in found) for a, b in spans)
    outside = [i for i in found if not any(a <= rows[i].ts <= b for a, b in spans)]
    return Tally(
        windows=len(spans),
        hit=hit,
        false=sum(i >= skip for i in outside),
        probation=sum(i < skip for i in found),
    )


# ---- report --------------------------------------------------------------------------------


def table(ours: Scores, published: Scores) -> str:
    lines = ["| detector | standard | low FP | low FN |", "|---|---:|---:|---:|"]
    rows = [(f"**{name}** (ours)", s) for name, s in ours.items()]
    rows += sorted(published.items(), key=lambda kv: -kv[1]["standard"])
    for name, s in rows:
        cells = " | ".join(f"{s[p]:.1f}" for p in PROFILES)
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines)


def tally_table(runs: Sequence[FileRun], mapping: str) -> str:
    by_cat: dict[str, Tally] = {}
    for r in runs:
        cat = r.relative.split("/")[0]
        by_cat[cat] = by_cat.get(cat, Tally(0, 0, 0, 0)) + r.tallies[mapping]
    by_cat["all"] = sum(by_cat.values(), Tally(0, 0, 0, 0))
    lines = [
        "| category | windows | windows hit | false detections | in probation |",
        "|---|---:|---:|---:|---:|",
    ]
    for cat, t in by_cat.items():
        lines.append(f"| {cat} | {t.windows} | {t.hit} | {t.false} | {t.probation} |")
    return "\n".join(lines)


def prepare_out(out: Path) -> None:
    """`--out` is this script's: refuse a non-empty directory it did not make."""
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise SystemExit(f"{out} is not empty and was not made by this script; pick another --out")
    for sub in ("events", "signals", "results"):
        shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by eval/nab_eval.py; rewritten on every run\n")


def git_commit() -> str:
    proc = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    )
    return proc.stdout.strip() or "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("nab", type=Path, help="a checkout of github.com/numenta/NAB")
    ap.add_argument("--out", type=Path, default=REPO / "out" / "nab", help="work directory")
    ap.add_argument("--jobs", type=int, default=2, help="replay processes at a time")
    ap.add_argument("--mapping", choices=("onset", "firing", "both"), default="onset")
    ap.add_argument("--venv", type=Path, default=Path.home() / ".cache/llm-oncall/nab-venv")
    ap.add_argument("--scorer-python", type=Path, help="an interpreter that has pandas already")
    ap.add_argument("--split", choices=SPLITS, default="all", help="which half of the files")
    ap.add_argument(
        "--files", action="append", default=[], metavar="GLOB", help="only these category/file"
    )
    args = ap.parse_args(argv)

    nab: Path = args.nab.resolve()
    for need in (
        "run.py",
        "labels/combined_windows.json",
        "results/final_results.json",
        "config/thresholds.json",
        "results/null",
        f"results/{CHECK_DETECTOR}",
    ):
        if not (nab / need).exists():
            raise SystemExit(f"{nab} does not look like a NAB checkout: {need} is missing")
    out: Path = args.out.resolve()
    prepare_out(out)
    mappings = ("onset", "firing") if args.mapping == "both" else (args.mapping,)
    detectors = [MAPPINGS[m] for m in mappings]
    with open(nab / "labels" / "combined_windows.json", encoding="utf-8") as fh:
        windows: dict[str, list[list[str]]] = json.load(fh)
    corpus = sorted(p.relative_to(nab / "data").as_posix() for p in nab.glob("data/*/*.csv"))
    missing = [f for f in corpus if f not in windows]
    if missing:
        raise SystemExit(f"no windows in labels/combined_windows.json for {missing}")
    files = select(corpus, args.split, args.files)
    if not files:
        raise SystemExit(f"no NAB file matches --split {args.split} --files {args.files}")

    started = time.perf_counter()
    print(f"replaying {len(files)} NAB files, {args.jobs} at a time …", flush=True)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        runs = list(pool.map(lambda f: run_file(nab, out, f, windows[f], mappings), files))
    replay_s = time.perf_counter() - started
    notes = [
        (r.relative, line.strip())
        for r in runs
        for line in r.summary.splitlines()
        if line.startswith(("rejected", "not used"))
    ]
    for relative, note in notes:
        print(f"  {relative}: {note}")

    python = args.scorer_python or scorer_python(args.venv)
    final = run_scorer(nab, out, python, detectors, args.jobs)
    with open(nab / "results" / "final_results.json", encoding="utf-8") as fh:
        published: Scores = json.load(fh)
    check = final[CHECK_DETECTOR]
    off = [p for p in PROFILES if abs(check[p] - published[CHECK_DETECTOR][p]) > 0.005]
    if off:
        raise SystemExit(
            f"{CHECK_DETECTOR} rescored here gives {check}, NAB publishes "
            f"{published[CHECK_DETECTOR]}: the scorer's environment is not faithful"
        )
    results = out / "results"
    if len(files) < len(corpus):
        # The published detectors on the same files, from the checkout's per-file scores
        # (a detector whose score files do not cover every file is left out).
        for name in list(published):
            try:
                published[name] = subset_scores(nab, nab / "results", name, files, windows)
            except (OSError, KeyError):
                del published[name]
    if len(files) == len(corpus):
        for det in detectors:
            sub = subset_scores(nab, results, det, files, windows)
            if any(abs(sub[p] - final[det][p]) > 1e-6 for p in PROFILES):
                raise SystemExit(f"per-file sums {sub} disagree with NAB's total {final[det]}")
    elapsed = time.perf_counter() - started

    nab_commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=nab, capture_output=True, text=True
    ).stdout.strip()
    ours = {det: subset_scores(nab, results, det, files, windows) for det in detectors}
    print()
    print(
        f"NAB {nab_commit or '(not a git checkout)'}, llm-oncall {git_commit()}, "
        f"{datetime.now(UTC):%Y-%m-%d}, split {args.split}"
        f"{' files ' + ','.join(args.files) if args.files else ''}: "
        f"{len(files)} files, threshold {THRESHOLD}, "
        f"replay {replay_s:.0f} s, total {elapsed:.0f} s"
    )
    print(
        f"scorer check: {CHECK_DETECTOR} rescored here = published "
        f"({' / '.join(f'{check[p]:.2f}' for p in PROFILES)})"
    )
    print(f"{sum(r.rows for r in runs)} rows; a detection is a row scored >= {THRESHOLD}")
    for mapping in mappings:
        print(f"\n{MAPPINGS[mapping]} ({mapping} mapping), per category:\n")
        print(tally_table(runs, mapping))
    print()
    print(table(ours, published))
    halves: dict[str, dict[str, dict[str, float]]] = {}
    if args.split == "all" and not args.files:
        # Both halves from this one run, beside NAB's published detectors on the same files.
        split = split_of(files)
        for half in ("dev", "held-out"):
            chosen = [f for f in files if split[f] == half]
            halves[half] = {
                det: subset_scores(nab, results, det, chosen, windows) for det in detectors
            }
            for name in (CHECK_DETECTOR, "null"):
                halves[half][name] = subset_scores(nab, nab / "results", name, chosen, windows)
            print(f"\n{half} half ({len(chosen)} files):\n")
            print(
                table(
                    {d: halves[half][d] for d in detectors},
                    {n: halves[half][n] for n in (CHECK_DETECTOR, "null")},
                )
            )
    summary = {
        "nab_commit": nab_commit,
        "commit": git_commit(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "threshold": THRESHOLD,
        "split": args.split,
        "patterns": args.files,
        "scores": ours,
        "halves": halves,
        "files": [
            {"file": r.relative, "rows": r.rows, **{m: asdict(t) for m, t in r.tallies.items()}}
            for r in runs
        ],
        "replay_seconds": round(replay_s, 1),
        "seconds": round(elapsed, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nresults, signals and the scorer's log are under {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
