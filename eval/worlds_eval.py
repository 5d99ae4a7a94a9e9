"""The defaults on randomized worlds they were never tuned on (issue 9; docs/evaluation.md).

    python eval/worlds_eval.py                 # 16 tuning + 16 held-out worlds x 14 days
    python eval/worlds_eval.py --quick         # 2 + 2 worlds x 6 days, a smoke run
    python eval/worlds_eval.py --write-doc     # also replace the result blocks in the doc

Each world (`daemon.worlds.draw_world`) is generated in this process and piped into its own
`llm-oncall replay -` process (embedded defaults, `--incidents`, `--signals`); `--jobs` worlds
run at once (default: every core). The replay's incident records carry `notifications`, the
time and severity of every page, so time to detect and false pages are read, not guessed.

Scoring (the definitions the doc repeats):
- a must-page fault is *detected* when a critical notification of its feature falls in
  [start, end + 30 min]; a slow quality decline (expected severity warning) when any
  notification does. A fault swallowed by an incident that was already paged is a miss: no one
  was told anything new.
- time to detect: that notification's time minus the fault's start.
- triage: the detecting incident's domain equals the expected one; attribution: the expected
  (label, value) is the incident's first suspect (the report also gives "among the
  suspects"), and outages, 429 storms and retrieval drift name nothing.
- estimated start: the detecting incident's `started_at` against the true start (within 5
  min for steps, 15 min for the slow decline's ramp).
- swallowed: a must-page fault not paged while an incident of its feature that opened before
  the fault was open and took signals that fired in the fault's span.
- incidents per fault: non-watch incidents of the feature opened in the same span.
- false page: a critical notification that falls in no injection's span on its feature; a
  decoy page: one that falls in a decoy's span (permanent decoys: their first 2 h).
- clean-day noise: firing signal transitions before the first injection day, per feature-week.

Seeds: tuning worlds are 1-16, held-out worlds 1001-1016. Only tuning worlds may be looked at
while choosing defaults; the held-out figures are reported apart and are the acceptance figures.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from itertools import zip_longest
from pathlib import Path
from typing import Any

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from daemon.worlds import (  # noqa: E402 - after the path setup, like the other eval scripts
    BANDS,
    DAY,
    DECOY_KINDS,
    FAULT_KINDS,
    World,
    _change_events,
    band_of,
    draw_world,
    hour_events,
    hours,
)

TUNING_SEEDS = tuple(range(1, 17))
HELDOUT_SEEDS = tuple(range(1001, 1017))
QUICK_TUNING = (1, 2)
QUICK_HELDOUT = (1001, 1002)
SLACK_S = 1800.0
NAIVE_WINDOW_S = 300.0
WEEK = 7 * DAY


# --- the naive peer --------------------------------------------------------------------------

NAIVE_METRICS = (
    "calls", "error_rate", "rate_limited_rate", "latency_p95_ms", "input_tokens_mean",
    "output_tokens_mean", "cost_mean", "refusal_rate", "format_failure_rate", "judge_mean",
    "golden_mean", "feedback_mean",
)  # fmt: skip


class NaiveWindows:
    """Per feature, the 5-minute window values of the naive peer's metrics, filled from the
    generated arrays while the world streams to replay (the peer sees the same calls)."""

    def __init__(self, world: World) -> None:
        self.start = world.start
        self.n = math.ceil(world.days * DAY / NAIVE_WINDOW_S) + 1
        self.values = {
            f.name: {m: np.full(self.n, np.nan) for m in NAIVE_METRICS} for f in world.features
        }
        self._sums: dict[str, dict[str, np.ndarray]] = {
            f.name: defaultdict(lambda: np.zeros(self.n)) for f in world.features
        }

    def add(self, chunk: list[Any]) -> None:
        for calls, scores in chunk:
            s = self._sums[calls.feature]
            w = np.minimum(((calls.ts - self.start) // NAIVE_WINDOW_S).astype(np.int64), self.n - 1)
            ok = calls.status == 200

            def add(
                name: str, weights: Any, idx: np.ndarray = w, s: dict[str, np.ndarray] = s
            ) -> None:
                s[name] += np.bincount(idx, weights=weights, minlength=self.n)

            add("calls", None)
            add("err", calls.status != 200)
            add("rl", calls.status == 429)
            add("ok", ok)
            add("in", np.where(ok, calls.input_tokens, 0))
            add("out", np.where(ok, calls.output_tokens, 0))
            add("cost", np.where(ok, calls.cost_usd, 0.0))
            add("refused", calls.refused & ok)
            add("fmt_fail", (~calls.format_ok) & ok)
            lat = self.values[calls.feature]["latency_p95_ms"]
            for k in np.unique(w[ok]):
                lat[k] = float(np.percentile(calls.latency_ms[ok & (w == k)], 95))
            sw = np.minimum(
                ((scores.ts - self.start) // NAIVE_WINDOW_S).astype(np.int64), self.n - 1
            )
            for name in ("judge", "golden", "user_feedback"):
                m = scores.name == name
                add(f"{name}_n", m, sw)
                add(f"{name}_sum", np.where(m, scores.value, 0.0), sw)

    def finish(self) -> None:
        with np.errstate(invalid="ignore", divide="ignore"):
            for feat, s in self._sums.items():
                v = self.values[feat]
                calls, ok = s["calls"], s["ok"]
                v["calls"] = calls.copy()
                v["error_rate"] = np.where(calls > 0, s["err"] / calls, np.nan)
                v["rate_limited_rate"] = np.where(calls > 0, s["rl"] / calls, np.nan)
                for name, key in (("input_tokens_mean", "in"), ("output_tokens_mean", "out"),
                                  ("cost_mean", "cost"), ("refusal_rate", "refused"),
                                  ("format_failure_rate", "fmt_fail")):  # fmt: skip
                    v[name] = np.where(ok > 0, s[key] / ok, np.nan)
                for name, key in (("judge_mean", "judge"), ("golden_mean", "golden"),
                                  ("feedback_mean", "user_feedback")):  # fmt: skip
                    n = s[f"{key}_n"]
                    v[name] = np.where(n > 0, s[f"{key}_sum"] / n, np.nan)

    def pages(self) -> list[tuple[str, str, float]]:
        """(feature, metric, time) of every naive page: a window outside the first day's
        mean ± 3σ right after one inside (or the first window)."""
        first = int(DAY // NAIVE_WINDOW_S)
        out = []
        for feat, metrics in self.values.items():
            for metric, vals in metrics.items():
                base = vals[:first][~np.isnan(vals[:first])]
                if len(base) < 2:
                    continue
                mu, sd = float(base.mean()), float(base.std())
                outside = False
                for k in range(first, self.n):
                    x = vals[k]
                    if np.isnan(x):
                        continue
                    now_out = abs(x - mu) > 3 * sd
                    if now_out and not outside:
                        out.append((feat, metric, self.start + (k + 1) * NAIVE_WINDOW_S))
                    outside = now_out
        return out


# --- one world -------------------------------------------------------------------------------


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _metrics(rec: dict[str, Any]) -> str:
    return ", ".join(sorted({s["metric"] for s in rec["signals"]}))


def run_world(
    seed: int, days: float, n_features: int, keep: str | None, rescore: bool = False
) -> dict[str, Any]:
    """Generate, replay and score one world; returns plain data (it crosses processes).

    `rescore`: do not replay; read the incidents and signals an earlier `--keep` run left in
    `keep` (the world is regenerated for its truth and the naive peer, which is cheap)."""
    world = draw_world(seed, days, n_features)
    tmp = keep or tempfile.mkdtemp(prefix=f"worlds-{seed}-")
    inc_path = os.path.join(tmp, f"world{seed}.incidents.jsonl")
    sig_path = os.path.join(tmp, f"world{seed}.signals.jsonl")
    log_path = os.path.join(tmp, f"world{seed}.replay.txt")
    started = time.perf_counter()
    naive = NaiveWindows(world)
    n_events = 0
    if rescore:
        for chunk in hours(world):
            naive.add(chunk)
        out = Path(log_path).read_bytes()
    else:
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "daemon.cli", "replay", "-", "--incidents", inc_path,
                 "--signals", sig_path],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            )  # fmt: skip
            assert proc.stdin is not None
            changes = sorted(_change_events(world), key=lambda e: e["ts"])
            for chunk in hours(world):
                naive.add(chunk)
                batch = hour_events(world, chunk, changes)
                n_events += len(batch)
                proc.stdin.write(b"".join(orjson.dumps(ev) + b"\n" for ev in batch))
            proc.stdin.close()
            proc.wait()
        out = Path(log_path).read_bytes()
        if proc.returncode != 0:
            raise RuntimeError(f"replay of world {seed} failed: {out.decode()[-2000:]}")
    naive.finish()
    incidents = [orjson.loads(line) for line in Path(inc_path).read_bytes().splitlines()]
    signals = [orjson.loads(line) for line in Path(sig_path).read_bytes().splitlines()]
    result = score_world(world, incidents, signals, naive.pages())
    summary = out.decode().splitlines()
    result["events"] = n_events or _replayed_events(summary)
    result["seconds"] = time.perf_counter() - started
    result["replay_seconds"] = _replay_seconds(summary)
    first = summary.index(_summary_line(summary)) if _summary_line(summary) else 0
    result["replay_summary"] = summary[first : first + 3]
    result["reused"] = rescore
    if keep is None:
        for p in (inc_path, sig_path, log_path):
            os.unlink(p)
        os.rmdir(tmp)
    return result


def _kept(keep: str, seed: int, days: float) -> bool:
    """A complete replay of `seed` is in `keep`: its summary line was written at the end and
    spans the whole world (a replay whose input was cut short also writes one)."""
    log = Path(keep) / f"world{seed}.replay.txt"
    if not log.exists():
        return False
    words = _summary_line(log.read_text().splitlines()).split()
    if not words or words[0] != "replayed" or "h)" not in words:
        return False
    hours = float(words[words.index("h)") - 1].lstrip("("))
    return hours >= days * 24 - 1


def _summary_line(lines: list[str]) -> str:
    """The replay's own `replayed N events ...` line (log lines, such as a default rule
    disarming, may come before it: stderr shares the file)."""
    return next((line for line in lines if line.startswith("replayed ")), "")


def _replayed_events(summary: list[str]) -> int:
    """`replayed N events ... in S s` → N (the replay's own summary line)."""
    words = _summary_line(summary).split()
    return int(words[1]) if len(words) > 1 and words[0] == "replayed" else 0


def _replay_seconds(summary: list[str]) -> float:
    words = _summary_line(summary).split()
    for i, w in enumerate(words[:-1]):
        if w == "in" and words[i + 1].replace(".", "", 1).isdigit():
            return float(words[i + 1])
    return 0.0


NAMES_NOTHING = ("provider_outage", "rate_limit_storm", "retrieval_drift")
"""Fault kinds whose incident must name no label value (issue 11): every value moved alike."""


def score_world(
    world: World,
    incidents: list[dict[str, Any]],
    signals: list[dict[str, Any]],
    naive_pages: list[tuple[str, str, float]],
) -> dict[str, Any]:
    rpm = {f.name: f.rpm for f in world.features}
    pages: list[tuple[float, str, dict[str, Any]]] = []  # (time, severity, incident)
    for rec in incidents:
        for when, sev in rec.get("notifications", []):
            pages.append((_ts(when), sev, rec))
    spans = [(t, t.start, t.end + SLACK_S) for t in world.truth]

    injections = []
    for t, lo, hi in spans:
        mine = [
            (ts, sev, rec)
            for ts, sev, rec in pages
            if rec["feature"] == t.feature and lo <= ts <= hi
        ]
        hits = mine if t.expected_severity == "warning" else [p for p in mine if p[1] == "critical"]
        first = min(hits, key=lambda p: p[0]) if hits else None
        opened = [
            r for r in incidents
            if r["feature"] == t.feature and r["severity"] != "watch"
            and lo <= _ts(r["opened_at"]) <= hi
        ]  # fmt: skip
        near = [
            r for r in incidents
            if r["feature"] == t.feature and _ts(r["opened_at"]) <= hi
            and (r["resolved_at"] is None or _ts(r["resolved_at"]) >= lo)
        ]  # fmt: skip
        attr = first[2]["attribution"] if first else []
        started = first[2].get("started_at") if first else None
        # Swallowed: not paged while an incident of the feature opened before the fault was
        # still open and took signals that fired inside the fault's span.
        swallowed = first is None and any(
            r["feature"] == t.feature and _ts(r["opened_at"]) < lo
            and (r["resolved_at"] is None or _ts(r["resolved_at"]) > lo)
            and any(lo <= _ts(s["onset"]) <= hi for s in r["signals"])
            for r in incidents
        )  # fmt: skip
        entry = {
            "seed": world.seed, "kind": t.kind, "feature": t.feature, "rpm": rpm[t.feature],
            "band": band_of(rpm[t.feature]), "is_fault": t.is_fault, "must_page": t.must_page,
            "expected_severity": t.expected_severity, "start": t.start, "end": t.end,
            "magnitude": t.magnitude, "detected": first is not None,
            "ttd_s": first[0] - t.start if first else None,
            "domain": first[2]["domain"] if first else None, "expected_domain": t.domain,
            "attribution_expected": list(t.attribution) if t.attribution else None,
            "attribution_hit": (
                any([a["label"], a["value"]] == list(t.attribution) for a in attr)
                if t.attribution and first else None
            ),
            "attribution_first": (
                bool(attr) and [attr[0]["label"], attr[0]["value"]] == list(t.attribution)
                if t.attribution and first else None
            ),
            "start_error_s": _ts(started) - t.start if started else None,
            "ramp": "ramp_s" in t.magnitude,
            "swallowed": swallowed,
            "suspects": [f"{a['label']}={a['value']}" for a in attr],
            "incidents": len(opened),
            "near": [
                f"{r['severity']}/{r['domain']} opened "
                f"{(_ts(r['opened_at']) - t.start) / 60:+.0f} min ({_metrics(r)[:120]})"
                for r in near[:3]
            ],
            "naive_detected": any(
                f == t.feature and t.start <= ts <= t.end + SLACK_S for f, _, ts in naive_pages
            ),
        }  # fmt: skip
        injections.append(entry)

    def in_span(feature: str, ts: float) -> str | None:
        for t, lo, hi in spans:
            if t.feature == feature and lo <= ts <= hi:
                return t.kind
        return None

    false_pages, false_warnings = [], []
    for ts, sev, rec in pages:
        if in_span(rec["feature"], ts) is None:
            item = {"seed": world.seed, "feature": rec["feature"], "ts": ts,
                    "clean": ts < world.clean_end, "summary": rec["summary"][:200],
                    "metrics": sorted({s["metric"] for s in rec["signals"]})}  # fmt: skip
            (false_pages if sev == "critical" else false_warnings).append(item)
    clean_firing: Counter[str] = Counter()
    for s in signals:
        if s["state"] == "firing" and _ts(s["ts"]) < world.clean_end:
            clean_firing[s["metric"]] += 1
    naive_clean = sum(1 for _, _, ts in naive_pages if ts < world.clean_end)
    naive_false = sum(1 for f, _, ts in naive_pages if in_span(f, ts) is None)
    n_feat = len(world.features)
    return {
        "seed": world.seed,
        "features": [
            {"name": f.name, "rpm": f.rpm, "band": band_of(f.rpm)} for f in world.features
        ],
        "feature_weeks": n_feat * world.days * DAY / WEEK,
        "clean_feature_weeks": n_feat * (world.clean_end - world.start) / WEEK,
        "injections": injections,
        "false_pages": false_pages,
        "false_warnings": false_warnings,
        "pages": sum(1 for _, sev, _ in pages if sev == "critical"),
        "clean_firing": dict(clean_firing),
        "naive_pages": len(naive_pages),
        "naive_clean_pages": naive_clean,
        "naive_false_pages": naive_false,
        "naive_by_metric": dict(Counter(m for _, m, _ in naive_pages)),
    }


# --- report ----------------------------------------------------------------------------------


def _pct(k: int, n: int) -> str:
    return f"{k}/{n}" if n else "–"


def _q(values: list[float], q: float) -> str:
    if not values:
        return "–"
    return f"{float(np.percentile(np.asarray(values), q)) / 60:.1f}"


def _row(entries: list[dict[str, Any]]) -> str:
    n = len(entries)
    det = [e for e in entries if e["detected"]]
    ttd = [e["ttd_s"] for e in det]
    triage = sum(1 for e in det if e["domain"] == e["expected_domain"])
    with_attr = [e for e in det if e["attribution_expected"]]
    attr = sum(1 for e in with_attr if e.get("attribution_first", e["attribution_hit"]))
    inc = statistics.mean(e["incidents"] for e in entries) if entries else 0.0
    naive = sum(1 for e in entries if e["naive_detected"])
    return (
        f"| {_pct(len(det), n)} | {_q(ttd, 50)} | {_q(ttd, 90)} | {_pct(triage, len(det))} "
        f"| {_pct(attr, len(with_attr))} | {inc:.2f} | {_pct(naive, n)} |"
    )


def report(label: str, seeds: tuple[int, ...], results: list[dict[str, Any]], days: float) -> str:
    inj = [e for r in results for e in r["injections"]]
    faults = [e for e in inj if e["is_fault"]]
    decoys = [e for e in inj if not e["is_fault"]]
    fw = sum(r["feature_weeks"] for r in results)
    cfw = sum(r["clean_feature_weeks"] for r in results)
    feats = [f for r in results for f in r["features"]]
    lines = [
        f"{len(results)} worlds (seeds {seeds[0]}–{seeds[-1]}), {days:g} days each "
        f"(first {math.floor(days / 2)} clean), {len(feats)} features "
        f"({', '.join(f'{n} {b}' for b, n in sorted(Counter(f['band'] for f in feats).items()))}"
        f" calls/min), {fw:.1f} feature-weeks.",
        "",
        "**Faults by kind.** Recall: critical page in [start, end + 30 min] (slow quality "
        "decline: any notification, its expected severity is warning). Time to detect in "
        "minutes. Naive: the naive peer paged in the same span.",
        "",
        "| fault | recall | median TTD | p90 TTD | triage | attribution | incidents/fault "
        "| naive |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind in FAULT_KINDS:
        lines.append(f"| {kind} " + _row([e for e in faults if e["kind"] == kind]))
    lines.append("| **all faults** " + _row(faults))
    lines += [
        "",
        "**Faults by traffic band** (the feature's daily-average calls/min).",
        "",
        "| band | recall | median TTD | p90 TTD | triage | attribution | incidents/fault | naive |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, _, band in BANDS:
        lines.append(f"| {band} " + _row([e for e in faults if e["band"] == band]))
    fp = [p for r in results for p in r["false_pages"]]
    fwarn = [p for r in results for p in r["false_warnings"]]
    clean_fp = sum(1 for p in fp if p["clean"])
    pages = sum(r["pages"] for r in results)
    naive_pages = sum(r["naive_pages"] for r in results)
    naive_false = sum(r["naive_false_pages"] for r in results)
    naive_clean = sum(r["naive_clean_pages"] for r in results)
    decoy_paged = Counter(e["kind"] for e in decoys if e["detected"])
    decoy_n = Counter(e["kind"] for e in decoys)
    firing: Counter[str] = Counter()
    for r in results:
        firing.update(r["clean_firing"])
    total_firing = sum(firing.values())
    det = [e for e in faults if e["detected"]]
    named = [e for e in det if e["attribution_expected"]]
    among = sum(1 for e in named if e["attribution_hit"])
    first = sum(1 for e in named if e.get("attribution_first", e["attribution_hit"]))
    quiet = [e for e in det if e["kind"] in NAMES_NOTHING]
    quiet_ok = sum(1 for e in quiet if not e["suspects"])
    steps = [abs(e["start_error_s"]) for e in det if not e.get("ramp") and
             e.get("start_error_s") is not None]  # fmt: skip
    ramps = [abs(e["start_error_s"]) for e in det if e.get("ramp") and
             e.get("start_error_s") is not None]  # fmt: skip
    swallowed = [e for e in faults if e.get("swallowed")]
    lines += [
        "",
        "**Overall.**",
        "",
        "| what | value |",
        "|---|---|",
        f"| false pages (critical, outside every injection span) | {len(fp)} = "
        f"{len(fp) / fw:.2f} per feature-week ({clean_fp} on clean days) |",
        f"| false warnings (low-urgency notifications outside every span) | {len(fwarn)} |",
        "| decoy pages | "
        + ", ".join(f"{k} {decoy_paged[k]}/{decoy_n[k]}" for k in DECOY_KINDS)
        + " |",
        f"| critical pages in all | {pages} |",
        f"| firing signals on clean days | {total_firing} = {total_firing / cfw:.1f} per "
        "feature-week |",
        f"| naive peer pages | {naive_pages} ({naive_clean} on clean days, {naive_false} "
        f"outside every span = {naive_false / fw:.1f} per feature-week) |",
        f"| page reduction vs naive peer (all pages) | {naive_pages}/{pages} = "
        f"{naive_pages / pages if pages else float('inf'):.1f}× |",
        f"| attribution: expected value named first / among the suspects | "
        f"{_pct(first, len(named))} / {_pct(among, len(named))} |",
        f"| attribution empty on detected outages, 429 storms, retrieval drift | "
        f"{_pct(quiet_ok, len(quiet))} |",
        f"| `started_at` within 5 min of the true start (step faults) | "
        f"{_pct(sum(1 for x in steps if x <= 300), len(steps))}, median error "
        f"{_q(steps, 50)} min |",
        f"| `started_at` within 15 min of the true start (ramps) | "
        f"{_pct(sum(1 for x in ramps if x <= 900), len(ramps))}, median error "
        f"{_q(ramps, 50)} min |",
        f"| faults missed while an older incident of the feature was open | {len(swallowed)} |",
        "",
        "**Firing signals on clean days, per feature-week, by metric.**",
        "",
        "| metric | firing/feature-week |",
        "|---|---|",
    ]
    for metric, n in firing.most_common():
        lines.append(f"| {metric} | {n / cfw:.2f} |")
    lines += [
        "",
        "**Every miss** (must-page faults not paged; the slow decline if not notified).",
        "",
    ]
    misses = [e for e in faults if not e["detected"]]
    if not misses:
        lines.append("None.")
    for e in sorted(misses, key=lambda e: (e["kind"], e["seed"])):
        mag = ", ".join(
            f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
            for k, v in e["magnitude"].items()
        )
        near = "; ".join(e["near"]) or "no incident"
        lines.append(
            f"- {e['kind']}, world {e['seed']}, {e['feature']} at {e['rpm']:.1f} calls/min, "
            f"{(e['end'] - e['start']) / 60:.0f} min ({mag}): {near}"
        )
    wrong = [e for e in faults if e["detected"] and e["domain"] != e["expected_domain"]]
    if wrong:
        lines += ["", "**Wrong triage:** " + "; ".join(
            f"{e['kind']} (world {e['seed']}) → {e['domain']}" for e in wrong)]  # fmt: skip
    if fp:
        lines += ["", "**False pages** (first 15):", ""]
        for p in fp[:15]:
            when = datetime.fromtimestamp(p["ts"], UTC).strftime("%a %H:%M")
            lines.append(f"- world {p['seed']} {p['feature']} {when}: {', '.join(p['metrics'])}")
    return "\n".join(lines)


def cost_report(results: list[dict[str, Any]], elapsed: float, jobs: int, rescore: bool) -> str:
    """Where the suite's time goes: the replays (their own timing, wall clock per process)."""
    secs = sorted(r["replay_seconds"] for r in results)
    events = sum(r["events"] for r in results)
    worst = max(results, key=lambda r: r["replay_seconds"])
    run = "" if rescore else f", {elapsed / 60:.1f} min wall with {jobs} replays at once"
    return (
        f"{len(results)} worlds, {events:,} events{run}. Replay time per world (wall clock "
        f"inside each replay process, from its summary line): median "
        f"{statistics.median(secs):.0f} s, max {secs[-1]:.0f} s (world {worst['seed']}, "
        f"{worst['events']:,} events); sum {sum(secs) / 60:.1f} min, "
        f"{events / max(1e-9, sum(secs)):,.0f} events/s overall."
    )


def _git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
    done.check_returncode()
    return done.stdout.strip()


def _commit() -> str:
    try:
        head = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain")
        return head + (" (uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def replace_block(doc: str, name: str, body: str) -> str:
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    i, j = doc.index(begin) + len(begin), doc.index(end)
    return doc[:i] + "\n" + body.strip() + "\n" + doc[j:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 + 2 worlds x 6 days")
    ap.add_argument("--days", type=float, help="days per world (default 14; 6 with --quick)")
    ap.add_argument("--tuning", type=int, nargs="*", help="tuning seeds (default 1-16)")
    ap.add_argument("--heldout", type=int, nargs="*", help="held-out seeds (default 1001-1016)")
    ap.add_argument("--features", type=int, default=2, help="features per world (default 2)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--keep", help="keep each world's incidents and signals in this directory")
    ap.add_argument("--json", help="write every world's scored result here")
    ap.add_argument("--write-doc", action="store_true", help="update docs/evaluation.md")
    ap.add_argument(
        "--rescore", action="store_true",
        help="score the replays a --keep run left in that directory again, without replaying",
    )  # fmt: skip
    ap.add_argument(
        "--resume", action="store_true",
        help="with --keep: reuse the complete replays already there, replay the rest",
    )  # fmt: skip
    args = ap.parse_args()
    days = args.days or (6.0 if args.quick else 14.0)
    tuning = tuple(args.tuning) if args.tuning is not None else (
        QUICK_TUNING if args.quick else TUNING_SEEDS)  # fmt: skip
    heldout = tuple(args.heldout) if args.heldout is not None else (
        QUICK_HELDOUT if args.quick else HELDOUT_SEEDS)  # fmt: skip
    if (args.rescore or args.resume) and not args.keep:
        ap.error("--rescore and --resume need --keep DIR (where an earlier run kept replays)")
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
    started = time.perf_counter()
    seeds = list(tuning) + list(heldout)
    # Interleaved, so an interrupted run (resumed with --resume) has worlds of both splits.
    order = [s for pair in zip_longest(tuning, heldout) for s in pair if s is not None]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {
            s: pool.submit(
                run_world, s, days, args.features, args.keep,
                args.rescore or (args.resume and _kept(args.keep, s, days)),
            )
            for s in order
        }  # fmt: skip
        results = {}
        for s in order:
            results[s] = futures[s].result()
            r = results[s]
            print(f"world {s}: {r['events']} events, {r['seconds']:.0f} s, "
                  f"{sum(e['detected'] for e in r['injections'] if e['is_fault'])}/7 faults, "
                  f"{len(r['false_pages'])} false pages", file=sys.stderr, flush=True)  # fmt: skip
    elapsed = time.perf_counter() - started
    cmd = "python eval/worlds_eval.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    how = "scored again from kept replays" if args.rescore else "replayed"
    if args.resume and not args.rescore:
        how += f" ({sum(1 for s in seeds if results[s]['reused'])} reused from an earlier run)"
    head = (
        f"Run {datetime.now(UTC).strftime('%Y-%m-%d %H:%M')} UTC, commit {_commit()}, "
        f"`{cmd}`: {len(seeds)} worlds {how} in {elapsed / 60:.1f} min wall on "
        f"{os.cpu_count()} cores (--jobs {args.jobs})."
    )
    cost = cost_report([results[s] for s in seeds], elapsed, args.jobs, args.rescore)
    tun = report("tuning", tuning, [results[s] for s in tuning], days) if tuning else ""
    held = report("held-out", heldout, [results[s] for s in heldout], days) if heldout else ""
    print(head + "\n\n## Worlds: tuning\n\n" + tun + "\n\n## Worlds: held-out\n\n" + held)
    print("\n## Cost\n\n" + cost)
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(results, option=orjson.OPT_NON_STR_KEYS))
    if args.write_doc:
        path = ROOT / "docs" / "evaluation.md"
        doc = path.read_text()
        doc = replace_block(doc, "worlds-run", head)
        doc = replace_block(doc, "worlds-tuning", tun)
        doc = replace_block(doc, "worlds-heldout", held)
        doc = replace_block(doc, "worlds-cost", cost)
        path.write_text(doc)


if __name__ == "__main__":
    main()
