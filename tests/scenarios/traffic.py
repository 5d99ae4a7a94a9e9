"""Scenario traffic: `daemon.simulate.generate` with a fixed seed, written to JSONL, and the
small transforms the simulator has no fault kind for (a lone quality drop, flapping 429s).

Every scenario uses one feature at a moderate rate and starts at Tuesday 2026-11-17 00:00 UTC,
so a fault injected after `WARMUP_H` hours lands on a weekday afternoon, near the daily peak.
The warm-up is long enough for every default detector: the rate detectors and the EWMAs need
~240 samples (1 h at one sample per 15 s), the seasonal and CUSUM quality detectors ~120, and
the seasonal profile has seen most hours of the day once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from config.settings import Settings, load_settings
from correlator import IncidentUpdate
from daemon.ingest.events import iter_lines, open_input
from daemon.pipeline import Pipeline
from daemon.replay import ReplayResult, replay
from daemon.simulate import FeatureProfile, Injection, generate

START = 1_794_873_600.0  # Tuesday 2026-11-17 00:00:00 UTC
H = 3600.0
WARMUP_H = 16.0
FAULT_AT = START + WARMUP_H * H  # 16:00 UTC, an hour after the daily traffic peak
FEATURE = "support-bot"
SEED = 11

CONTRACT_KEYS = frozenset(
    {
        "id",
        "dedup_key",
        "feature",
        "status",
        "severity",
        "paged",
        "domain",
        "opened_at",
        "resolved_at",
        "signals",
        "triage",
        "changes",
        "attribution",
        "summary",
    }
)
SIGNAL_KEYS = frozenset(
    {"metric", "layer", "detector", "onset", "cleared", "value", "baseline", "score", "direction"}
)

Event = dict[str, Any]
Transform = Callable[[Event], Event | None]


def profile(rpm: float = 40.0) -> FeatureProfile:
    return FeatureProfile(FEATURE, rpm=rpm, latency_ms=900.0)


def injection(kind: str, start_min: float, minutes: float) -> Injection:
    """A fault or decoy on the scenario feature, `start_min` minutes after the warm-up."""
    t = FAULT_AT + start_min * 60.0
    return Injection(kind, FEATURE, t, t + minutes * 60.0)


def write_scenario(
    path: Path,
    injections: Iterable[Injection] = (),
    *,
    hours: float = WARMUP_H + 3.0,
    rpm: float = 40.0,
    seed: int = SEED,
    transforms: Iterable[Transform] = (),
    extra: Iterable[Event] = (),
) -> Path:
    """Generate the scenario's events into `path` (JSONL); transforms may edit or drop events;
    `extra` events (change events) are written in time order among them."""
    fns = list(transforms)
    pending = sorted(extra, key=lambda e: e["ts"])
    events: Iterator[Event] = generate(START, hours, [profile(rpm)], list(injections), seed=seed)
    with open(path, "wb") as fh:
        for ev in events:
            while pending and pending[0]["ts"] <= ev["ts"]:
                fh.write(orjson.dumps(pending.pop(0)) + b"\n")
            out: Event | None = ev
            for fn in fns:
                out = fn(out)
                if out is None:
                    break
            if out is not None:
                fh.write(orjson.dumps(out) + b"\n")
    return path


# ---- transforms -----------------------------------------------------------------------------


def degrade_scores(
    start: float, end: float, factor: float, name: str = "faithfulness"
) -> Transform:
    """Multiply one score's values by `factor` on [start, end): a quality drop and nothing else
    (no label shift, no change event, calls untouched)."""

    def fn(ev: Event) -> Event:
        if ev["type"] == "score" and ev["name"] == name and start <= ev["ts"] < end:
            ev = ev | {"value": round(ev["value"] * factor, 4)}
        return ev

    return fn


def flapping_429s(
    start: float, end: float, on_s: float, period_s: float, share: float
) -> Transform:
    """On [start, end), every `period_s` the first `on_s` seconds turn `share` of the calls
    into 429s (deterministically, by request id), so rate_limited_rate crosses its line
    again and again."""

    def fn(ev: Event) -> Event:
        if ev["type"] != "llm_call" or not start <= ev["ts"] < end:
            return ev
        if (ev["ts"] - start) % period_s >= on_s or ev.get("status") != 200:
            return ev
        if (hash_id(ev["request_id"]) % 1000) / 1000.0 >= share:
            return ev
        return ev | {
            "status": 429,
            "error": "rate limited",
            "latency_ms": round(ev["latency_ms"] * 0.2, 1),
            "output_tokens": 0,
            "output_chars": 0,
            "cost_usd": 0.0,
            "refused": False,
        }

    return fn


def slow_calls(start: float, end: float, latency_ms: float) -> Transform:
    """Successful calls on [start, end) take `latency_ms`: a latency spike past the static
    p95 line (the simulator's `latency_spike`, 2.5x of ~1 s, stays far below it)."""

    def fn(ev: Event) -> Event:
        if ev["type"] == "llm_call" and ev.get("status") == 200 and start <= ev["ts"] < end:
            ev = ev | {"latency_ms": latency_ms}
        return ev

    return fn


def longer_outputs(start: float, end: float, share: float, factor: float) -> Transform:
    """On [start, end), `share` of the successful calls (chosen by request id) answer `factor`
    times longer: output characters and tokens scale, and so does the output part of the cost
    (the simulator prices output at $1e-5 a token). The mean output length and tokens rise,
    the spread of lengths (cv) widens, cost per request rises. Latency is left alone: this is
    the output-size family by itself (latency per token is issue 10 point 2)."""

    def fn(ev: Event) -> Event:
        if ev["type"] != "llm_call" or ev.get("status") != 200 or not start <= ev["ts"] < end:
            return ev
        if (hash_id(ev["request_id"]) % 1000) / 1000.0 >= share:
            return ev
        tokens = int(ev["output_tokens"] * factor)
        extra_cost = (tokens - ev["output_tokens"]) * 1e-5
        return ev | {
            "output_chars": int(ev["output_chars"] * factor),
            "output_tokens": tokens,
            "cost_usd": round(ev["cost_usd"] + extra_cost, 6),
        }

    return fn


def hash_id(text: str) -> int:
    """A stable hash (Python's `hash` of a str is salted per process)."""
    import zlib

    return zlib.crc32(text.encode())


# ---- running ------------------------------------------------------------------------------


def settings(tmp_path: Path, yaml_text: str | None = None) -> Settings:
    if yaml_text is None:
        return load_settings(None)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml_text)
    return load_settings(cfg)


def run(path: Path, cfg: Settings | None = None) -> ReplayResult:
    return replay(str(path), cfg or load_settings(None))


@dataclass(slots=True)
class Driven:
    records: list[dict[str, Any]]
    updates: list[IncidentUpdate]

    def triggers(self, incident_id: str | None = None) -> list[IncidentUpdate]:
        return [
            u
            for u in self.updates
            if u.notify == "trigger" and (incident_id is None or u.incident.id == incident_id)
        ]


def drive(path: Path, cfg: Settings | None = None) -> Driven:
    """The replay loop on a `Pipeline` driven here, keeping every `IncidentUpdate` (replay
    keeps only the final records): what the pager would have been asked to send."""
    pipe = Pipeline(cfg or load_settings(None))
    updates: list[IncidentUpdate] = []
    for events, rejected in iter_lines(open_input(str(path))):
        assert not rejected, rejected[:3]
        if events:
            updates.extend(pipe.ingest(events).updates)
    assert pipe.watermark is not None
    updates.extend(pipe.advance(pipe.watermark).updates)
    records = sorted(
        (inc.to_record() for inc in pipe.correlator.incidents()),
        key=lambda r: (r["opened_at"], r["id"]),
    )
    return Driven(records, updates)


# ---- reading records ----------------------------------------------------------------------


def answer(rec: dict[str, Any], question: str) -> dict[str, Any]:
    return next(t for t in rec["triage"] if t["question"] == question)


def paged(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["paged"]]


def describe(records: Iterable[dict[str, Any]]) -> str:
    """Assertion messages: one line per incident."""
    return "\n".join(
        f"{r['opened_at']} [{r['severity']}/{r['domain']}] paged={r['paged']} "
        f"muted={r.get('muted')} {r['summary']}"
        for r in records
    )


def set_label(start: float, end: float, label: str, value: str) -> Transform:
    """Calls and scores on [start, end) carry `label=value` (a model or prompt version
    switched for all traffic, with or without a change event)."""

    def fn(ev: Event) -> Event:
        if ev["type"] in ("llm_call", "score") and start <= ev["ts"] < end:
            ev = ev | {"labels": {**ev.get("labels", {}), label: value}}
        return ev

    return fn


def segment_errors(start: float, end: float, segment: str, share: float) -> Transform:
    """On [start, end), `share` of the calls of one segment fail with a 503 (by request id);
    the other segment is untouched."""

    def fn(ev: Event) -> Event:
        if ev["type"] != "llm_call" or not start <= ev["ts"] < end:
            return ev
        if ev.get("labels", {}).get("segment") != segment or ev.get("status") != 200:
            return ev
        if (hash_id(ev["request_id"]) % 1000) / 1000.0 >= share:
            return ev
        return ev | {"status": 503, "error": "upstream error", "output_tokens": 0,
                     "output_chars": 0, "cost_usd": 0.0, "refused": False}  # fmt: skip

    return fn


def flapping_slow_calls(
    start: float, end: float, on_s: float, period_s: float, latency_ms: float
) -> Transform:
    """On [start, end), the first `on_s` seconds of every `period_s` make every successful call
    take `latency_ms`: the p95 latency crosses its line and clears again, for hours."""

    def fn(ev: Event) -> Event:
        if ev["type"] != "llm_call" or ev.get("status") != 200:
            return ev
        if not start <= ev["ts"] < end or (ev["ts"] - start) % period_s >= on_s:
            return ev
        return ev | {"latency_ms": latency_ms}

    return fn


def segment_longer_outputs(start: float, end: float, segment: str, factor: float) -> Transform:
    """On [start, end), successful calls of one segment answer `factor` times longer (output
    characters and tokens): no errors, no refusals, only length."""

    def fn(ev: Event) -> Event:
        if ev["type"] != "llm_call" or not start <= ev["ts"] < end or ev.get("status") != 200:
            return ev
        if ev.get("labels", {}).get("segment") != segment:
            return ev
        return ev | {
            "output_chars": int(ev["output_chars"] * factor),
            "output_tokens": int(ev["output_tokens"] * factor),
        }

    return fn


def segment_behavior(
    start: float, end: float, segment: str, refusal_mult: float, quality_mult: float,
    base_refusal: float = 0.02,
) -> Transform:  # fmt: skip
    """On [start, end), one segment's model misbehaves: its successful calls refuse
    `refusal_mult` times as often (by request id, on top of the simulator's `base_refusal`)
    and its per-call scores are `quality_mult` times lower; the other segment is untouched
    (the evaluation worlds' `segment_fault`, variant behavior)."""
    extra = (refusal_mult - 1.0) * base_refusal / (1.0 - base_refusal)

    def fn(ev: Event) -> Event:
        if not start <= ev["ts"] < end or ev.get("labels", {}).get("segment") != segment:
            return ev
        if ev["type"] == "score" and "request_id" in ev:
            return ev | {"value": round(ev["value"] * quality_mult, 4)}
        if ev["type"] != "llm_call" or ev.get("status") != 200 or ev.get("refused"):
            return ev
        if (hash_id(ev["request_id"]) % 10_000) / 10_000.0 < extra:
            return ev | {"refused": True}
        return ev

    return fn


def drifting_segments(values: tuple[str, ...], period_s: float, swing: float) -> Transform:
    """Calls and their scores (by request id) are spread over `values`, with shares that
    drift: value i's weight is 1 + swing x sin(2 pi t / period_s + 2 pi i / len(values)),
    so each share moves by a factor of up to (1 + swing) / (1 - swing) over a period, and
    nothing else about the traffic changes."""
    import math

    def fn(ev: Event) -> Event:
        rid = ev.get("request_id")
        if ev["type"] not in ("llm_call", "score") or rid is None:
            return ev
        phase = 2 * math.pi * ev["ts"] / period_s
        k = len(values)
        w = [1 + swing * math.sin(phase + 2 * math.pi * i / k) for i in range(k)]
        u = (hash_id(rid) % 10_000) / 10_000.0 * sum(w)
        pick = values[-1]
        for value, wi in zip(values, w, strict=True):
            if u < wi:
                pick = value
                break
            u -= wi
        return ev | {"labels": {**ev.get("labels", {}), "segment": pick}}

    return fn
