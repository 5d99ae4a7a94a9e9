"""Synthetic LLM traffic with injected faults: the demo's input and the evals' corpus.

Traffic follows a daily and weekly cycle with Poisson arrivals and heavy-tailed latency, so
"normal variance" is realistic enough that a detector tuned to flat noise would page on it.
Faults are the ones the triage question tells apart; decoys are what must not page.
Deterministic for a seed, and it streams: a week of traffic never sits in memory.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FAULT_KINDS = (
    "provider_outage",  # 429/5xx surge → provider
    "prompt_regression",  # prompt change event, quality drop, refusals up → prompt_model
    "silent_model_update",  # model_version label shift, quality drop, no change event
    "retrieval_drift",  # latency and input tokens up, quality stable → infra_retrieval
)
DECOY_KINDS = (
    "latency_spike",  # 3 minutes of slow calls alone: watch, never a page
    "score_burst",  # a handful of bad scores: nothing
    "traffic_peak",  # a 2x traffic surge with healthy calls: nothing
)
EXPECTED_DOMAIN = {
    "provider_outage": "provider",
    "prompt_regression": "prompt_model",
    "silent_model_update": "prompt_model",
    "retrieval_drift": "infra_retrieval",
}


@dataclass(frozen=True, slots=True)
class Injection:
    kind: str
    feature: str
    start: float
    end: float

    @property
    def is_fault(self) -> bool:
        return self.kind in FAULT_KINDS


@dataclass(slots=True)
class FeatureProfile:
    name: str
    rpm: float = 60.0  # mean calls per minute at the daily average
    latency_ms: float = 900.0
    score_share: float = 0.3  # share of calls that get an evaluation score
    refusal: float = 0.02
    format_fail: float = 0.01
    error: float = 0.004
    prompt_version: str = "v7"
    model_version: str = "2026-08-06"
    state: dict[str, Any] = field(default_factory=dict)


def _diurnal(ts: float) -> float:
    """Traffic multiplier: peak mid-afternoon UTC, trough at night, weekends at 60%."""
    hour = (ts / 3600.0) % 24
    day = int(ts // 86400 + 4) % 7  # 0 = Sunday (the epoch was a Thursday)
    daily = 1.0 + 0.6 * math.sin((hour - 9.0) / 24.0 * 2 * math.pi)
    return daily * (0.6 if day in (0, 6) else 1.0)


def generate(
    start: float,
    hours: float,
    features: list[FeatureProfile],
    injections: list[Injection],
    seed: int = 7,
    step_s: float = 10.0,
) -> Iterator[dict[str, Any]]:
    """Events in timestamp order (within a step), including `change` events for faults that
    come with one."""
    rng = np.random.default_rng(seed)
    end = start + hours * 3600.0
    announced: set[int] = set()
    t = start
    while t < end:
        for i, inj in enumerate(injections):
            if inj.kind == "prompt_regression" and i not in announced and t >= inj.start:
                announced.add(i)
                yield {
                    "type": "change", "ts": inj.start, "kind": "prompt",
                    "feature": inj.feature, "description": "prompt v8 rolled out",
                    "labels": {"prompt_version": "v8"},
                }  # fmt: skip
        for prof in features:
            active = {inj.kind for inj in injections
                      if inj.feature == prof.name and inj.start <= t < inj.end}  # fmt: skip
            yield from _step(rng, prof, t, step_s, active)
        t += step_s


def _step(
    rng: np.random.Generator, prof: FeatureProfile, t: float, step_s: float, active: set[str]
) -> Iterator[dict[str, Any]]:
    rate = prof.rpm / 60.0 * step_s * _diurnal(t)
    if "traffic_peak" in active:
        rate *= 2.0
    n = int(rng.poisson(rate))
    if n == 0:
        return
    offsets = np.sort(rng.uniform(0, step_s, n))
    lat = prof.latency_ms * np.exp(rng.standard_t(5, n) * 0.25)
    prompt = "v8" if "prompt_regression" in active else prof.prompt_version
    model_version = "2026-11-20" if "silent_model_update" in active else prof.model_version
    quality_hit = ("prompt_regression" in active) or ("silent_model_update" in active)
    for j in range(n):
        ts = round(t + float(offsets[j]), 3)
        status = 200
        u = rng.random()
        if "provider_outage" in active and u < 0.35:
            status = 429 if rng.random() < 0.6 else 503
        elif u < prof.error:
            status = 500
        latency = float(lat[j])
        if "latency_spike" in active or "retrieval_drift" in active:
            latency *= 2.5 if "latency_spike" in active else 1.8
        in_tok = int(rng.normal(1200, 150))
        if "retrieval_drift" in active:
            in_tok = int(in_tok * 1.7)
        refusal_p = prof.refusal * (4.0 if "prompt_regression" in active else 1.0)
        refused = bool(rng.random() < refusal_p)
        out_chars = max(1, int(rng.normal(900, 250)))
        ok = status == 200
        event: dict[str, Any] = {
            "type": "llm_call", "ts": ts, "feature": prof.name, "provider": "openai",
            "model": "gpt-4o", "endpoint": "chat", "status": status,
            "latency_ms": round(latency, 1) if ok else round(latency * 0.2, 1),
            "input_tokens": max(1, in_tok), "output_tokens": out_chars // 4 if ok else 0,
            "cost_usd": round(in_tok * 2.5e-6 + out_chars / 4 * 1e-5, 6) if ok else 0.0,
            "refused": refused if ok else False,
            "format_ok": bool(rng.random() >= prof.format_fail) if ok else True,
            "output_chars": out_chars if ok else 0,
            "request_id": f"{prof.name}-{int(ts * 1000)}-{j}",
            "labels": {"prompt_version": prompt, "model_version": model_version,
                       "segment": "free" if rng.random() < 0.7 else "pro"},
        }  # fmt: skip
        if not ok:
            event["error"] = "rate limited" if status == 429 else "upstream error"
        yield event
        if ok and rng.random() < prof.score_share:
            score = float(np.clip(rng.normal(0.85, 0.08), 0.0, 1.0))
            if quality_hit:
                score *= 0.78
            yield {
                "type": "score", "ts": ts, "feature": prof.name, "name": "faithfulness",
                "value": round(score, 4), "request_id": event["request_id"],
                "labels": event["labels"],
            }  # fmt: skip
    if "score_burst" in active and rng.random() < 0.5:
        for _ in range(3):
            yield {"type": "score", "ts": round(t + step_s / 2, 3), "feature": prof.name,
                   "name": "faithfulness", "value": 0.1}  # fmt: skip


def default_scenario(start: float, hours: float) -> tuple[list[FeatureProfile], list[Injection]]:
    """Three features over `hours`, one fault of each kind and the decoys, spread out."""
    feats = [
        FeatureProfile("support-bot", rpm=90),
        FeatureProfile("search-summarizer", rpm=60, latency_ms=1400),
        FeatureProfile("code-review", rpm=30, latency_ms=2500),
    ]
    h = 3600.0
    warm = min(24 * h, hours * h * 0.5)  # let baselines learn first
    span = hours * h - warm
    slots = [warm + span * k / 8 for k in range(8)]
    injections = [
        Injection("latency_spike", "support-bot", start + slots[0], start + slots[0] + 180),
        Injection("provider_outage", "support-bot", start + slots[1], start + slots[1] + 1800),
        Injection("score_burst", "search-summarizer", start + slots[2],
                  start + slots[2] + 60),
        Injection("prompt_regression", "search-summarizer", start + slots[3],
                  start + slots[3] + 5400),
        Injection("traffic_peak", "code-review", start + slots[4], start + slots[4] + 1800),
        Injection("silent_model_update", "code-review", start + slots[5],
                  start + slots[5] + 5400),
        Injection("retrieval_drift", "support-bot", start + slots[6], start + slots[6] + 3600),
    ]  # fmt: skip
    return feats, injections
