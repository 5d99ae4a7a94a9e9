"""Randomized traffic worlds: the evaluation corpus that defaults cannot be fitted to.

`daemon.simulate` draws one narrow world (Poisson arrivals, one latency shape, 30–90 calls per
minute); defaults that look perfect there were never tested on the traffic real features send:
a few calls a minute, batches of near-identical requests, token counts piled at a context cap
or clustered on a handful of prompt templates, power-law output tails. Here each seed draws a
whole world instead, every parameter from a documented range (the `RANGES` comments below and
docs/evaluation.md), and injects faults and decoys whose truth is written beside the events.

Deterministic per seed and streaming: traffic is generated one hour at a time with numpy
(vectorized per hour, not per call), so a 14-day world never sits in memory.

Structure of a world of D days: the first half is clean (baselines learn there; the eval counts
firing signals on those days); the second half holds one injection of each fault kind and each
decoy kind, each in its own time slot, on a randomly chosen feature.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

WORLD_START = 1_793_577_600.0  # Monday 2026-11-02T00:00Z; days of the week matter (weekend dip)
H = 3600.0
DAY = 86400.0

FAULT_KINDS = (
    "provider_outage",
    "rate_limit_storm",
    "prompt_regression",
    "silent_model_update",
    "retrieval_drift",
    "slow_quality_decline",
    "segment_fault",
)
DECOY_KINDS = (
    "latency_spike",
    "score_burst",
    "few_429s",
    "benign_prompt_change",
    "traffic_peak",
    "benign_shift",
)
PERMANENT_KINDS = ("benign_prompt_change", "benign_shift")
# How long after its start a permanent decoy is "its" window: a page inside it is a decoy page,
# a page later is an ordinary false page.
PERMANENT_WINDOW_S = 2 * H

# Traffic bands of the evaluation (calls per minute, daily average).
BANDS = ((0.0, 2.0, "<2"), (2.0, 10.0, "2-10"), (10.0, 50.0, "10-50"), (50.0, math.inf, ">50"))

MAX_LATENCY_MS = 600_000.0  # a client's own timeout caps what a call can take


def band_of(rpm: float) -> str:
    for lo, hi, name in BANDS:
        if lo <= rpm < hi:
            return name
    return BANDS[-1][2]


@dataclass(frozen=True, slots=True)
class Truth:
    """One injection as the evaluation scores it.

    `must_page`: a critical page is the right answer. `expected_severity` is "critical" for the
    must-page faults, "warning" for a lone quality decline (the design's low-urgency route), and
    "none" for decoys. `attribution` is the (label, value) the incident should name, or None when
    no label value explains the fault. `magnitude` holds the drawn effect sizes.
    """

    kind: str
    feature: str
    start: float
    end: float
    magnitude: dict[str, float | str]
    domain: str | None
    attribution: tuple[str, str] | None
    must_page: bool
    expected_severity: str
    segment: str | None = None
    permanent: bool = False

    @property
    def is_fault(self) -> bool:
        return self.kind in FAULT_KINDS

    def to_record(self) -> dict[str, Any]:
        rec = asdict(self)
        rec["attribution"] = list(self.attribution) if self.attribution else None
        return rec


# --- per-call size distributions -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SizeDist:
    """A positive per-call quantity drawn from one of several families.

    - "lognormal": median · exp(σ·Z), σ in 0.3–1.2;
    - "pareto": lognormal body (σ 0.3) with a Pareto tail (index 1.3–2.5) on 3–15% of calls;
    - "templates": 2–5 request templates of near-fixed size (±2%) plus a long lognormal tail
      (σ 1.0) on 3–15% of calls — what real LLM traces look like.
    `cap`, when set, clips values: input tokens pile at a context limit.
    """

    family: str
    median: float
    sigma: float = 0.5
    tail_share: float = 0.0
    tail_index: float = 2.0
    sizes: tuple[float, ...] = ()
    weights: tuple[float, ...] = ()
    cap: float | None = None

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.family == "lognormal":
            x = self.median * np.exp(self.sigma * rng.standard_normal(n))
        elif self.family == "pareto":
            x = self.median * np.exp(0.3 * rng.standard_normal(n))
            tail = rng.random(n) < self.tail_share
            k = int(tail.sum())
            if k:
                x[tail] = self.median * (1.0 + rng.pareto(self.tail_index, k)) * 1.5
        else:
            idx = rng.choice(len(self.sizes), size=n, p=np.asarray(self.weights))
            x = np.asarray(self.sizes)[idx] * (1.0 + 0.02 * rng.standard_normal(n))
            tail = rng.random(n) < self.tail_share
            k = int(tail.sum())
            if k:
                x[tail] = self.median * np.exp(1.0 * rng.standard_normal(k) + 0.5)
        return x


def _draw_size(rng: np.random.Generator, median_lo: float, median_hi: float) -> SizeDist:
    median = float(np.exp(rng.uniform(math.log(median_lo), math.log(median_hi))))
    family = str(rng.choice(["lognormal", "pareto", "templates"]))
    if family == "lognormal":
        return SizeDist("lognormal", median, sigma=float(rng.uniform(0.3, 1.2)))
    if family == "pareto":
        return SizeDist(
            "pareto", median, tail_share=float(rng.uniform(0.03, 0.15)),
            tail_index=float(rng.uniform(1.3, 2.5)),
        )  # fmt: skip
    k = int(rng.integers(2, 6))
    sizes = tuple(float(median * np.exp(rng.uniform(-1.2, 1.2))) for _ in range(k))
    weights = rng.dirichlet(np.ones(k) * 1.5)
    return SizeDist(
        "templates", median, sizes=sizes, weights=tuple(float(w) for w in weights),
        tail_share=float(rng.uniform(0.03, 0.15)),
    )  # fmt: skip


# --- features and worlds ---------------------------------------------------------------------


@dataclass(slots=True)
class Segment:
    name: str
    share: float  # base share of traffic
    phase: float  # the mix drifts slowly: share · exp(0.4·sin(2πt/period + phase))
    period_s: float
    input_mult: float
    output_mult: float
    quality_mult: float


@dataclass(slots=True)
class Experiment:
    name: str
    start: float
    end: float
    share: float
    output_mult: float
    quality_mult: float


@dataclass(slots=True)
class FeatureWorld:
    """Everything drawn for one feature. Ranges are in the comments (documented in
    docs/evaluation.md)."""

    name: str
    rpm: float  # daily-average calls per minute, log-uniform 0.5–120
    daily_ratio: float  # peak/trough of the daily cycle, 2–5
    peak_hour: float  # 0–24 UTC
    weekend: float  # weekend traffic multiplier, 0.3–0.9
    gamma_shape: float  # per-minute rate multiplier ~ Gamma(k, 1/k), k log-uniform 2–50
    batch_share: float  # share of calls arriving in batches of near-identical requests, 0–0.4
    batch_size: float  # mean batch size, 2–15
    input: SizeDist  # tokens; median 100–4000, capped at a context limit on half the features
    output: SizeDist  # tokens; median 30–800
    ttft: SizeDist  # ms; median 150–1500
    ms_per_token: float  # generation time per output token, 8–40 ms
    err_5xx: float  # base provider error rate 0.05–0.8%
    err_429: float  # base rate-limit rate 0.02–0.5%
    retry_prob: float  # chance a failed call is retried, 0.2–0.8
    refusal: float  # 0.2–5%
    format_fail: float  # 0.2–5%
    judge_share: float  # share of calls with a judge score, 5–50%
    feedback_share: float  # share of calls with user feedback, 0.5–5%
    golden_every_s: float  # golden runs every 15–60 min
    golden_cases: int  # cases per golden run, 8–30
    golden_phase: float
    quality: float  # base judge score 0.65–0.9
    golden_quality: float  # base golden score 0.7–0.95
    thumbs_up: float  # base share of positive feedback 0.6–0.9
    price_in: float
    price_out: float
    provider: str
    model: str
    prompt_version: str
    model_version: str
    segments: list[Segment]
    experiments: list[Experiment]
    seed: int = 0
    injections: list[Truth] = field(default_factory=list)


@dataclass(slots=True)
class World:
    seed: int
    days: float
    start: float
    features: list[FeatureWorld]
    truth: list[Truth]

    @property
    def end(self) -> float:
        return self.start + self.days * DAY

    @property
    def clean_end(self) -> float:
        return self.start + clean_days(self.days) * DAY


def clean_days(days: float) -> float:
    return math.floor(days / 2)


FEATURE_NAMES = (
    "support-bot", "search-summarizer", "code-assist", "doc-qa", "email-drafter",
    "sql-helper", "ticket-triage", "translator", "chat", "extractor",
)  # fmt: skip
SEGMENT_NAMES = ("free", "pro", "enterprise", "internal", "trial")


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(math.log(lo), math.log(hi))))


def _draw_feature(rng: np.random.Generator, name: str, start: float, days: float) -> FeatureWorld:
    inp = _draw_size(rng, 100, 4000)
    if rng.random() < 0.5:
        # A context cap at the 96–99.5th percentile: that share of calls piles exactly at it.
        q = float(rng.uniform(96, 99.5))
        cap = float(np.percentile(inp.sample(rng, 4000), q))
        inp = SizeDist(inp.family, inp.median, inp.sigma, inp.tail_share, inp.tail_index,
                       inp.sizes, inp.weights, cap=cap)  # fmt: skip
    out = _draw_size(rng, 30, 800)
    ttft_median = _loguniform(rng, 150, 1500)
    ttft = (
        SizeDist("lognormal", ttft_median, sigma=float(rng.uniform(0.2, 0.6)))
        if rng.random() < 0.6
        else SizeDist("pareto", ttft_median, tail_share=float(rng.uniform(0.02, 0.08)),
                      tail_index=float(rng.uniform(1.5, 3.0)))
    )  # fmt: skip
    n_seg = int(rng.integers(2, 5))
    shares = rng.dirichlet(np.ones(n_seg) * 2.0)
    segments = [
        Segment(
            SEGMENT_NAMES[i],
            float(shares[i]),
            float(rng.uniform(0, 2 * math.pi)),
            float(rng.uniform(2, 6)) * DAY,
            float(np.exp(rng.uniform(-0.3, 0.3))),
            float(np.exp(rng.uniform(-0.3, 0.3))),
            float(rng.uniform(0.97, 1.03)),
        )
        for i in range(n_seg)
    ]
    experiments = []
    for k in range(int(rng.integers(0, 4))):
        e_start = start + rng.uniform(0.03, 0.9) * days * DAY
        experiments.append(
            Experiment(
                f"exp-{name[:4]}-{k}",
                e_start,
                e_start + rng.uniform(0.5, 3.0) * DAY,
                float(rng.uniform(0.1, 0.5)),
                float(rng.uniform(0.9, 1.1)),
                float(rng.uniform(0.98, 1.02)),
            )
        )
    provider = str(rng.choice(["openai", "anthropic", "google", "azure"]))
    return FeatureWorld(
        name=name,
        rpm=_loguniform(rng, 0.5, 120.0),
        daily_ratio=float(rng.uniform(2.0, 5.0)),
        peak_hour=float(rng.uniform(0, 24)),
        weekend=float(rng.uniform(0.3, 0.9)),
        gamma_shape=_loguniform(rng, 2.0, 50.0),
        batch_share=float(rng.uniform(0.0, 0.4)),
        batch_size=float(rng.uniform(2.0, 15.0)),
        input=inp,
        output=out,
        ttft=ttft,
        ms_per_token=float(rng.uniform(8, 40)),
        err_5xx=_loguniform(rng, 0.0005, 0.008),
        err_429=_loguniform(rng, 0.0002, 0.005),
        retry_prob=float(rng.uniform(0.2, 0.8)),
        refusal=_loguniform(rng, 0.002, 0.05),
        format_fail=_loguniform(rng, 0.002, 0.05),
        judge_share=_loguniform(rng, 0.05, 0.5),
        feedback_share=_loguniform(rng, 0.005, 0.05),
        golden_every_s=float(rng.uniform(15, 60)) * 60.0,
        golden_cases=int(rng.integers(8, 31)),
        golden_phase=float(rng.uniform(0, 1)),
        quality=float(rng.uniform(0.65, 0.9)),
        golden_quality=float(rng.uniform(0.7, 0.95)),
        thumbs_up=float(rng.uniform(0.6, 0.9)),
        price_in=float(rng.choice([1.5e-7, 5e-7, 2.5e-6, 3e-6])),
        price_out=float(rng.choice([6e-7, 2e-6, 1e-5, 1.5e-5])),
        provider=provider,
        model=f"{provider}-model-{int(rng.integers(1, 5))}",
        prompt_version=f"p{int(rng.integers(1, 20))}",
        model_version=f"2026-{int(rng.integers(1, 10)):02d}-{int(rng.integers(1, 28)):02d}",
        segments=segments,
        experiments=experiments,
        seed=int(rng.integers(0, 2**31)),
    )


# Fault and decoy magnitudes (ranges documented in docs/evaluation.md). Durations are capped at
# 80% of a slot so injections never overlap on short worlds.
def _draw_injection(
    rng: np.random.Generator, kind: str, feat: FeatureWorld, t: float, slot_s: float
) -> Truth:
    def dur(lo_min: float, hi_min: float) -> float:
        return min(float(rng.uniform(lo_min, hi_min)) * 60.0, 0.8 * slot_s)

    name = feat.name
    if kind == "provider_outage":
        mag: dict[str, float | str] = {"fail_share": float(rng.uniform(0.2, 0.6))}
        return Truth(kind, name, t, t + dur(10, 40), mag, "provider", None, True, "critical")
    if kind == "rate_limit_storm":
        mag = {"share_429": float(rng.uniform(0.15, 0.5))}
        return Truth(kind, name, t, t + dur(15, 60), mag, "provider", None, True, "critical")
    if kind == "prompt_regression":
        new = f"{feat.prompt_version}-r{int(rng.integers(2, 9))}"
        mag = {
            "prompt_version": new,
            "refusal_mult": float(rng.uniform(3, 6)),
            "format_mult": float(rng.uniform(3, 6)),
            "quality_mult": float(rng.uniform(0.8, 0.92)),
            "output_mult": float(rng.uniform(0.7, 1.4)),
        }
        return Truth(kind, name, t, t + dur(60, 240), mag, "prompt_model",
                     ("prompt_version", new), True, "critical")  # fmt: skip
    if kind == "silent_model_update":
        new = f"2026-12-{int(rng.integers(1, 28)):02d}"
        mag = {
            "model_version": new,
            "quality_mult": float(rng.uniform(0.8, 0.92)),
            "output_mult": float(rng.uniform(1.2, 1.6)),
            "format_mult": float(rng.uniform(2, 4)),
        }
        return Truth(kind, name, t, t + dur(120, 360), mag, "prompt_model",
                     ("model_version", new), True, "critical")  # fmt: skip
    if kind == "retrieval_drift":
        mag = {
            "input_mult": float(rng.uniform(1.4, 2.0)),
            "ttft_mult": float(rng.uniform(1.3, 1.8)),
        }
        return Truth(kind, name, t, t + dur(120, 240), mag, "infra_retrieval", None, True,
                     "critical")  # fmt: skip
    if kind == "slow_quality_decline":
        # Ramp to the full drop over the first hour, then held.
        mag = {"quality_mult": float(rng.uniform(0.85, 0.92)), "ramp_s": 3600.0}
        return Truth(kind, name, t, t + dur(180, 240), mag, "prompt_model", None, False,
                     "warning")  # fmt: skip
    if kind == "segment_fault":
        # A segment holding at least 20% of traffic (the largest if none does).
        big = [s for s in feat.segments if s.share >= 0.2] or [
            max(feat.segments, key=lambda s: s.share)
        ]
        seg = big[int(rng.integers(0, len(big)))]
        variant = str(rng.choice(["errors", "behavior"]))
        mag = {"variant": variant, "segment_share": seg.share}
        if variant == "errors":
            mag["fail_share"] = float(rng.uniform(0.3, 0.7))
            domain = "provider"
        else:
            mag["refusal_mult"] = float(rng.uniform(4, 8))
            mag["quality_mult"] = float(rng.uniform(0.75, 0.88))
            domain = "prompt_model"
        return Truth(kind, name, t, t + dur(60, 180), mag, domain, ("segment", seg.name), True,
                     "critical", segment=seg.name)  # fmt: skip
    if kind == "latency_spike":
        mag = {"latency_mult": float(rng.uniform(2, 4))}
        return Truth(kind, name, t, t + dur(2, 5), mag, None, None, False, "none")
    if kind == "score_burst":
        mag = {"count": float(rng.integers(3, 11))}
        return Truth(kind, name, t, t + 60.0, mag, None, None, False, "none")
    if kind == "few_429s":
        mag = {"count": float(rng.integers(3, 9))}
        return Truth(kind, name, t, t + 90.0, mag, None, None, False, "none")
    if kind == "benign_prompt_change":
        new = f"{feat.prompt_version}-b{int(rng.integers(2, 9))}"
        mag = {"prompt_version": new, "output_mult": float(rng.uniform(0.97, 1.03))}
        return Truth(kind, name, t, t + PERMANENT_WINDOW_S, mag, None, None, False, "none",
                     permanent=True)  # fmt: skip
    if kind == "traffic_peak":
        mag = {"traffic_mult": float(rng.uniform(2, 3))}
        return Truth(kind, name, t, t + dur(30, 120), mag, None, None, False, "none")
    if kind == "benign_shift":
        variant = str(rng.choice(["traffic", "shorter_prompts"]))
        mag = {"variant": variant}
        if variant == "traffic":
            mag["traffic_mult"] = float(rng.uniform(1.5, 2.5))
        else:
            mag["input_mult"] = float(rng.uniform(0.85, 0.92))
        return Truth(kind, name, t, t + PERMANENT_WINDOW_S, mag, None, None, False, "none",
                     permanent=True)  # fmt: skip
    raise ValueError(f"unknown injection kind {kind!r}")


def draw_world(seed: int, days: float = 14.0, n_features: int = 2) -> World:
    """The world of `seed`: features, their traffic shapes, and the injections.

    The first `floor(days/2)` days are clean; the rest holds each fault and decoy kind once, in
    shuffled order, one per slot, on a random feature. (Under 2 days nothing is clean: short
    worlds are for tests.)
    """
    if not days > 0:
        raise ValueError(f"--days must be positive, got {days}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x9E3779B9]))
    start = WORLD_START
    names = list(rng.choice(FEATURE_NAMES, size=n_features, replace=False))
    features = [_draw_feature(rng, str(n), start, days) for n in names]
    kinds = list(FAULT_KINDS + DECOY_KINDS)
    rng.shuffle(kinds)
    first = start + clean_days(days) * DAY
    slot = (start + days * DAY - first) / len(kinds)
    truth = []
    for i, kind in enumerate(kinds):
        feat = features[int(rng.integers(0, n_features))]
        t = first + i * slot + float(rng.uniform(0.05, 0.15)) * slot
        inj = _draw_injection(rng, kind, feat, round(t, 3), slot)
        feat.injections.append(inj)
        truth.append(inj)
    return World(seed, days, start, features, truth)


# --- traffic ---------------------------------------------------------------------------------


def _season(feat: FeatureWorld, ts: np.ndarray) -> np.ndarray:
    """Daily cycle with peak/trough `daily_ratio`, normalized to a daily mean of 1; weekends
    scaled by `weekend`."""
    a = math.log(feat.daily_ratio) / 2.0
    hour = (ts / H) % 24.0
    daily = np.exp(a * np.cos(2 * math.pi * (hour - feat.peak_hour) / 24.0)) / float(np.i0(a))
    dow = ((ts - WORLD_START) // DAY).astype(np.int64) % 7  # 0 = Monday
    return daily * np.where(dow >= 5, feat.weekend, 1.0)


def _active(inj: Truth, ts: np.ndarray) -> np.ndarray:
    if inj.permanent:
        return ts >= inj.start
    return (ts >= inj.start) & (ts < inj.end)


@dataclass(slots=True)
class CallChunk:
    """One hour of one feature's calls as arrays (the eval's naive peer reads these directly)."""

    feature: str
    ts: np.ndarray
    status: np.ndarray
    latency_ms: np.ndarray
    ttft_ms: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    cost_usd: np.ndarray
    refused: np.ndarray
    format_ok: np.ndarray
    output_chars: np.ndarray
    retries: np.ndarray
    segment: np.ndarray  # index into the feature's segments
    experiment: np.ndarray  # index into experiments, -1 = none
    prompt_version: np.ndarray  # object array of strings
    model_version: np.ndarray
    quality: np.ndarray  # latent per-call quality the scores are drawn around


@dataclass(slots=True)
class ScoreChunk:
    feature: str
    ts: np.ndarray
    name: np.ndarray  # object array
    value: np.ndarray
    call_index: np.ndarray  # index into the hour's calls, -1 for golden runs and bursts


def _hour_calls(
    feat: FeatureWorld, rng: np.random.Generator, t0: float
) -> tuple[CallChunk, ScoreChunk]:
    minutes = t0 + 60.0 * np.arange(60)
    lam = feat.rpm * _season(feat, minutes + 30.0)
    lam = lam * rng.gamma(feat.gamma_shape, 1.0 / feat.gamma_shape, 60)
    for inj in feat.injections:
        mult = inj.magnitude.get("traffic_mult")
        if isinstance(mult, float):
            lam = np.where(_active(inj, minutes + 30.0), lam * mult, lam)
    # Singles (Poisson within the minute) and batches of near-identical requests.
    n_single = rng.poisson(lam * (1.0 - feat.batch_share))
    n_batch = rng.poisson(lam * feat.batch_share / feat.batch_size)
    single_ts = np.repeat(minutes, n_single) + rng.uniform(0, 60, int(n_single.sum()))
    b_start = np.repeat(minutes, n_batch) + rng.uniform(0, 60, int(n_batch.sum()))
    b_sizes = 1 + rng.geometric(1.0 / feat.batch_size, len(b_start))
    nb = int(b_sizes.sum())
    b_ts = np.repeat(b_start, b_sizes) + rng.uniform(0, 0.002, nb) * rng.integers(0, 2, nb)
    n = len(single_ts) + nb
    ts = np.concatenate([single_ts, b_ts])
    batch_id = np.concatenate(
        [np.full(len(single_ts), -1), np.repeat(np.arange(len(b_start)), b_sizes)]
    )

    # Segment mix drifts slowly; a batch shares its segment and its sizes.
    seg_w = np.array(
        [s.share * math.exp(0.4 * math.sin(2 * math.pi * t0 / s.period_s + s.phase))
         for s in feat.segments]
    )  # fmt: skip
    seg_w /= seg_w.sum()
    segment = rng.choice(len(feat.segments), size=n, p=seg_w)
    inp = feat.input.sample(rng, n)
    out = feat.output.sample(rng, n)
    ttft = feat.ttft.sample(rng, n)
    if nb:
        is_b = batch_id >= 0
        first_of = np.searchsorted(batch_id[is_b], np.arange(len(b_start)))
        lead = np.flatnonzero(is_b)[first_of]
        src = lead[batch_id[is_b]]
        jitter = 1.0 + 0.01 * rng.standard_normal(nb)
        inp[is_b] = inp[src] * jitter
        out[is_b] = out[src] * jitter
        segment[is_b] = segment[src]
    seg_in = np.array([s.input_mult for s in feat.segments])[segment]
    seg_out = np.array([s.output_mult for s in feat.segments])[segment]
    quality = feat.quality * np.array([s.quality_mult for s in feat.segments])[segment]
    inp = inp * seg_in
    out = out * seg_out

    experiment = np.full(n, -1)
    for k, ex in enumerate(feat.experiments):
        on = (ts >= ex.start) & (ts < ex.end) & (rng.random(n) < ex.share) & (experiment < 0)
        experiment[on] = k
        out = np.where(on, out * ex.output_mult, out)
        quality = np.where(on, quality * ex.quality_mult, quality)

    prompt = np.full(n, feat.prompt_version, dtype=object)
    model_version = np.full(n, feat.model_version, dtype=object)
    refusal_p = np.full(n, feat.refusal)
    format_p = np.full(n, feat.format_fail)
    fail_p = np.zeros(n)  # injected provider failures (5xx / timeouts)
    rl_p = np.zeros(n)  # injected 429s
    lat_mult = np.ones(n)
    ttft_mult = np.ones(n)
    for inj in feat.injections:
        on = _active(inj, ts)
        if inj.segment is not None:
            names = np.array([s.name for s in feat.segments])
            on &= names[segment] == inj.segment
        if not on.any():
            continue
        m = inj.magnitude
        kind = inj.kind
        if kind == "provider_outage" or (kind == "segment_fault" and m["variant"] == "errors"):
            fail_p = np.where(on, float(m["fail_share"]), fail_p)
        elif kind == "rate_limit_storm":
            rl_p = np.where(on, float(m["share_429"]), rl_p)
        elif kind in ("prompt_regression", "benign_prompt_change"):
            prompt[on] = m["prompt_version"]
        elif kind == "silent_model_update":
            model_version[on] = m["model_version"]
        elif kind == "retrieval_drift":
            inp = np.where(on, inp * float(m["input_mult"]), inp)
            ttft_mult = np.where(on, ttft_mult * float(m["ttft_mult"]), ttft_mult)
        elif kind == "slow_quality_decline":
            ramp = np.clip((ts - inj.start) / float(m["ramp_s"]), 0.0, 1.0)
            quality = np.where(on, quality * (1.0 - (1.0 - float(m["quality_mult"])) * ramp),
                               quality)  # fmt: skip
        elif kind == "latency_spike":
            lat_mult = np.where(on, lat_mult * float(m["latency_mult"]), lat_mult)
        elif kind == "benign_shift" and "input_mult" in m:
            inp = np.where(on, inp * float(m["input_mult"]), inp)
        if "refusal_mult" in m:
            refusal_p = np.where(on, np.minimum(refusal_p * float(m["refusal_mult"]), 0.9),
                                 refusal_p)  # fmt: skip
        if "format_mult" in m:
            format_p = np.where(on, np.minimum(format_p * float(m["format_mult"]), 0.9), format_p)
        if "output_mult" in m:
            out = np.where(on, out * float(m["output_mult"]), out)
        if "quality_mult" in m and kind != "slow_quality_decline":
            quality = np.where(on, quality * float(m["quality_mult"]), quality)

    if feat.input.cap is not None:
        inp = np.minimum(inp, feat.input.cap)
    in_tok = np.maximum(1, np.rint(inp)).astype(np.int64)
    out_tok = np.maximum(1, np.rint(out)).astype(np.int64)

    # Status: base 5xx and 429 rates plus the injected ones; a few 429s decoy is exact.
    u = rng.random(n)
    status = np.full(n, 200, dtype=np.int64)
    five = u < feat.err_5xx + fail_p
    status[five] = rng.choice(np.array([500, 502, 503, 529, 0]), size=int(five.sum()))
    rl = (~five) & (u < feat.err_5xx + fail_p + feat.err_429 + rl_p)
    status[rl] = 429
    retries = np.zeros(n, dtype=np.int64)
    cols: dict[str, np.ndarray] = {
        "in_tok": in_tok, "out_tok": out_tok, "ttft": ttft, "segment": segment,
        "experiment": experiment, "prompt": prompt, "model_version": model_version,
        "quality": quality, "refusal_p": refusal_p, "format_p": format_p,
        "lat_mult": lat_mult, "ttft_mult": ttft_mult, "fail_p": fail_p, "rl_p": rl_p,
    }  # fmt: skip
    for inj in feat.injections:
        if inj.kind == "few_429s" and t0 <= inj.start < t0 + H:
            # A handful of 429s in 90 s, on top of whatever traffic there is. They are
            # ordinary requests (sizes drawn as the feature's own), so their retries answer
            # like any call: with 0-token requests every retry was a 0-length answer, and the
            # decoy looked like an output-length collapse as well as a 429 burst.
            cnt = int(inj.magnitude["count"])
            extra = {
                "in_tok": np.maximum(1, np.rint(feat.input.sample(rng, cnt))).astype(np.int64),
                "out_tok": np.maximum(1, np.rint(feat.output.sample(rng, cnt))).astype(np.int64),
                "ttft": feat.ttft.sample(rng, cnt), "segment": np.zeros(cnt, np.int64),
                "experiment": np.full(cnt, -1),
                "prompt": np.full(cnt, feat.prompt_version, dtype=object),
                "model_version": np.full(cnt, feat.model_version, dtype=object),
                "quality": np.full(cnt, feat.quality), "refusal_p": np.zeros(cnt),
                "format_p": np.zeros(cnt), "lat_mult": np.ones(cnt), "ttft_mult": np.ones(cnt),
                "fail_p": np.zeros(cnt), "rl_p": np.zeros(cnt),
            }  # fmt: skip
            cols = {k: np.concatenate([v, extra[k]]) for k, v in cols.items()}
            ts = np.concatenate([ts, inj.start + np.sort(rng.uniform(0, inj.end - inj.start, cnt))])
            status = np.concatenate([status, np.full(cnt, 429)])
            retries = np.concatenate([retries, np.zeros(cnt, np.int64)])
    # Retries: a failed call is retried after 0.5–5 s with the same request (and may fail again
    # at the same rates), which is how storms look from the application's side.
    failed = np.flatnonzero((status != 200) & (rng.random(len(ts)) < feat.retry_prob))
    if len(failed):
        ur = rng.random(len(failed))
        fail = feat.err_5xx + cols["fail_p"][failed]
        r_status = np.where(
            ur < fail, 503, np.where(ur < fail + feat.err_429 + cols["rl_p"][failed], 429, 200)
        )
        cols = {k: np.concatenate([v, v[failed]]) for k, v in cols.items()}
        ts = np.concatenate([ts, ts[failed] + rng.uniform(0.5, 5.0, len(failed))])
        status = np.concatenate([status, r_status])
        retries = np.concatenate([retries, np.ones(len(failed), dtype=np.int64)])
    n = len(ts)
    ok = status == 200
    in_tok, out_tok, ttft = cols["in_tok"], cols["out_tok"], cols["ttft"]
    segment, experiment, quality = cols["segment"], cols["experiment"], cols["quality"]
    prompt, model_version = cols["prompt"], cols["model_version"]
    refusal_p, format_p = cols["refusal_p"], cols["format_p"]
    lat_mult, ttft_mult = cols["lat_mult"], cols["ttft_mult"]

    refused = ok & (rng.random(n) < refusal_p)
    out_tok = np.where(refused, np.minimum(out_tok, rng.integers(15, 60, n)), out_tok)
    format_ok = ~(ok & (rng.random(n) < format_p))
    # Latency is time to first token (grows with the prompt) plus generation time.
    ttft_ms = ttft * ttft_mult * (1.0 + in_tok / 20000.0)
    gen_ms = out_tok * feat.ms_per_token * np.exp(0.15 * rng.standard_normal(n))
    latency = (ttft_ms + gen_ms) * lat_mult
    timeout = status == 0
    latency = np.where(ok, latency, np.where(timeout, 30000.0, ttft_ms * 0.3))
    # A Pareto-tailed output can be millions of tokens; no client waits past 10 minutes (one
    # call of world 1015 was 42 h, which the daemon rightly rejected as out of range).
    latency = np.minimum(latency, MAX_LATENCY_MS)
    out_tok = np.where(ok, out_tok, 0)
    chars_per_tok = rng.uniform(3.5, 4.5, n)
    out_chars = np.rint(out_tok * chars_per_tok).astype(np.int64)
    cost = np.where(ok, in_tok * feat.price_in + out_tok * feat.price_out, 0.0)
    quality = np.where(refused, quality * 0.7, quality)

    order = np.argsort(ts, kind="stable")
    calls = CallChunk(
        feature=feat.name, ts=ts[order], status=status[order], latency_ms=latency[order],
        ttft_ms=np.where(ok, ttft_ms, 0.0)[order], input_tokens=in_tok[order],
        output_tokens=out_tok[order], cost_usd=cost[order], refused=refused[order],
        format_ok=format_ok[order], output_chars=out_chars[order], retries=retries[order],
        segment=segment[order], experiment=experiment[order], prompt_version=prompt[order],
        model_version=model_version[order], quality=quality[order],
    )  # fmt: skip
    return calls, _hour_scores(feat, rng, t0, calls)


def _quality_factor(feat: FeatureWorld, ts: np.ndarray) -> np.ndarray:
    """The whole-feature quality multiplier at `ts` (golden runs see this, not segments)."""
    f = np.ones(len(ts))
    for inj in feat.injections:
        m = inj.magnitude
        if inj.segment is not None or "quality_mult" not in m:
            continue
        on = _active(inj, ts)
        q = float(m["quality_mult"])
        if inj.kind == "slow_quality_decline":
            ramp = np.clip((ts - inj.start) / float(m["ramp_s"]), 0.0, 1.0)
            f = np.where(on, f * (1.0 - (1.0 - q) * ramp), f)
        else:
            f = np.where(on, f * q, f)
    return f


def _hour_scores(
    feat: FeatureWorld, rng: np.random.Generator, t0: float, calls: CallChunk
) -> ScoreChunk:
    n = len(calls.ts)
    ok = calls.status == 200
    judged = ok & (rng.random(n) < feat.judge_share)
    j_idx = np.flatnonzero(judged)
    j_val = np.clip(calls.quality[j_idx] + 0.12 * rng.standard_normal(len(j_idx)), 0.0, 1.0)
    fb = ok & (rng.random(n) < feat.feedback_share)
    f_idx = np.flatnonzero(fb)
    p_up = np.clip(feat.thumbs_up * calls.quality[f_idx] / feat.quality, 0.0, 1.0)
    f_val = (rng.random(len(f_idx)) < p_up).astype(np.float64)
    parts_ts = [calls.ts[j_idx] + 0.001, calls.ts[f_idx] + 0.002]
    parts_name = [np.full(len(j_idx), "judge", dtype=object),
                  np.full(len(f_idx), "user_feedback", dtype=object)]  # fmt: skip
    parts_val = [j_val, f_val]
    parts_idx = [j_idx, f_idx]
    # Golden runs: a batch of cases scored at one instant.
    every = feat.golden_every_s
    first = math.ceil((t0 - feat.golden_phase * every) / every) * every + feat.golden_phase * every
    runs = np.arange(first, t0 + H, every)
    if len(runs):
        g_ts = np.repeat(runs, feat.golden_cases)
        g_val = np.clip(
            feat.golden_quality * _quality_factor(feat, g_ts)
            + 0.06 * rng.standard_normal(len(g_ts)), 0.0, 1.0,
        )  # fmt: skip
        parts_ts.append(g_ts)
        parts_name.append(np.full(len(g_ts), "golden", dtype=object))
        parts_val.append(g_val)
        parts_idx.append(np.full(len(g_ts), -1))
    for inj in feat.injections:
        if inj.kind == "score_burst" and t0 <= inj.start < t0 + H:
            cnt = int(inj.magnitude["count"])
            parts_ts.append(inj.start + np.sort(rng.uniform(0, 60, cnt)))
            parts_name.append(np.full(cnt, "judge", dtype=object))
            parts_val.append(rng.uniform(0.0, 0.2, cnt))
            parts_idx.append(np.full(cnt, -1))
    ts = np.concatenate(parts_ts)
    order = np.argsort(ts, kind="stable")
    return ScoreChunk(
        feat.name, ts[order], np.concatenate(parts_name)[order],
        np.concatenate(parts_val)[order], np.concatenate(parts_idx)[order],
    )  # fmt: skip


def hours(world: World) -> Iterator[list[tuple[CallChunk, ScoreChunk]]]:
    """Per simulated hour, each feature's calls and scores (arrays)."""
    rngs = [
        np.random.default_rng(np.random.SeedSequence([f.seed, world.seed])) for f in world.features
    ]
    t0 = world.start
    while t0 < world.end:
        yield [_hour_calls(f, rng, t0) for f, rng in zip(world.features, rngs, strict=True)]
        t0 += H


def _change_events(world: World) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for inj in world.truth:
        m = inj.magnitude
        if inj.kind in ("prompt_regression", "benign_prompt_change"):
            out.append({"type": "change", "ts": inj.start, "kind": "prompt", "feature": inj.feature,
                        "description": f"prompt {m['prompt_version']} rolled out",
                        "labels": {"prompt_version": str(m["prompt_version"])}})  # fmt: skip
            if inj.kind == "prompt_regression":
                feat = next(f for f in world.features if f.name == inj.feature)
                out.append({"type": "change", "ts": inj.end, "kind": "prompt",
                            "feature": inj.feature,
                            "description": f"rolled back to prompt {feat.prompt_version}",
                            "labels": {"prompt_version": feat.prompt_version}})  # fmt: skip
        elif inj.kind == "benign_shift" and m.get("variant") == "shorter_prompts":
            out.append({"type": "change", "ts": inj.start, "kind": "deploy", "feature": inj.feature,
                        "description": "prompt compression deploy"})  # fmt: skip
    return out


def events(world: World) -> Iterator[dict[str, Any]]:
    """The world as contract events, in timestamp order within each hour."""
    changes = sorted(_change_events(world), key=lambda e: e["ts"])
    for chunk in hours(world):
        yield from hour_events(world, chunk, changes)


def hour_events(
    world: World, chunk: list[tuple[CallChunk, ScoreChunk]], changes: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One hour's events of every feature, merged in timestamp order. `changes` is consumed."""
    feats = {f.name: f for f in world.features}
    rows: list[tuple[float, int, dict[str, Any]]] = []
    seq = 0
    for calls, scores in chunk:
        feat = feats[calls.feature]
        seg_names = [s.name for s in feat.segments]
        exp_names = [e.name for e in feat.experiments]
        ts = np.round(calls.ts, 3).tolist()
        status = calls.status.tolist()
        lat = np.round(calls.latency_ms, 1).tolist()
        ttft = np.round(calls.ttft_ms, 1).tolist()
        inp = calls.input_tokens.tolist()
        out = calls.output_tokens.tolist()
        cost = np.round(calls.cost_usd, 7).tolist()
        refused = calls.refused.tolist()
        fmt = calls.format_ok.tolist()
        chars = calls.output_chars.tolist()
        retries = calls.retries.tolist()
        seg = calls.segment.tolist()
        exp = calls.experiment.tolist()
        prompt = calls.prompt_version.tolist()
        model_v = calls.model_version.tolist()
        rid_base = f"{feat.name}-{int(ts[0] if ts else 0)}"
        labels_of: list[dict[str, str]] = []
        for i in range(len(ts)):
            labels = {"prompt_version": prompt[i], "model_version": model_v[i],
                      "segment": seg_names[seg[i]]}  # fmt: skip
            if exp[i] >= 0:
                labels["experiment"] = exp_names[exp[i]]
            labels_of.append(labels)
            ev: dict[str, Any] = {
                "type": "llm_call", "ts": ts[i], "feature": feat.name, "provider": feat.provider,
                "model": feat.model, "endpoint": "chat", "status": status[i],
                "latency_ms": lat[i], "input_tokens": inp[i], "output_tokens": out[i],
                "cost_usd": cost[i], "output_chars": chars[i], "retries": retries[i],
                "request_id": f"{rid_base}-{i}", "labels": labels,
            }  # fmt: skip
            if status[i] == 200:
                ev["ttft_ms"] = ttft[i]
                ev["refused"] = refused[i]
                ev["format_ok"] = fmt[i]
            else:
                ev["error"] = (
                    "rate limited"
                    if status[i] == 429
                    else ("timeout" if status[i] == 0 else "upstream error")
                )
            rows.append((ts[i], seq, ev))
            seq += 1
        s_ts = np.round(scores.ts, 3).tolist()
        s_val = np.round(scores.value, 4).tolist()
        s_name = scores.name.tolist()
        s_idx = scores.call_index.tolist()
        for i in range(len(s_ts)):
            sev: dict[str, Any] = {"type": "score", "ts": s_ts[i], "feature": feat.name,
                                   "name": s_name[i], "value": s_val[i]}  # fmt: skip
            if s_idx[i] >= 0:
                sev["request_id"] = f"{rid_base}-{s_idx[i]}"
                sev["labels"] = labels_of[s_idx[i]]
            rows.append((s_ts[i], seq, sev))
            seq += 1
    if rows:
        end = max(r[0] for r in rows)
        while changes and changes[0]["ts"] <= end:
            ch = changes.pop(0)
            rows.append((ch["ts"], -1, ch))
    rows.sort(key=lambda r: (r[0], r[1]))
    return [r[2] for r in rows]


def truth_records(world: World) -> list[dict[str, Any]]:
    """The truth file's lines: one per feature (its drawn traffic) and one per injection."""
    recs: list[dict[str, Any]] = [
        {
            "record": "world",
            "seed": world.seed,
            "days": world.days,
            "start": world.start,
            "clean_end": world.clean_end,
            "end": world.end,
        }
    ]
    for f in world.features:
        recs.append({
            "record": "feature", "feature": f.name, "rpm": f.rpm, "band": band_of(f.rpm),
            "input_family": f.input.family, "output_family": f.output.family,
            "input_cap": f.input.cap, "judge_share": f.judge_share,
            "golden_every_s": f.golden_every_s, "segments": [s.name for s in f.segments],
            "experiments": [e.name for e in f.experiments],
        })  # fmt: skip
    for t in world.truth:
        recs.append({"record": "injection", **t.to_record()})
    return recs


def write_world(
    seed: int, days: float, out: str, truth: str | None = None, n_features: int = 2
) -> int:
    """`llm-oncall simulate`: the events to `out` (gzip when it ends in .gz, stdout for "-"),
    the truth to `truth`. Returns the number of events. Gzip output has a fixed mtime so the
    same seed gives the same bytes."""
    import gzip
    import sys
    from contextlib import ExitStack

    import orjson

    if n_features < 1 or n_features > len(FEATURE_NAMES):
        raise ValueError(f"--features must be between 1 and {len(FEATURE_NAMES)}")
    world = draw_world(seed, days, n_features)
    changes = sorted(_change_events(world), key=lambda e: e["ts"])
    count = 0
    with ExitStack() as stack:
        fh: Any
        if out == "-":
            fh = sys.stdout.buffer
        else:
            fh = stack.enter_context(open(out, "wb"))
            if out.endswith(".gz"):
                # No name and no time in the header: the same seed gives the same bytes.
                fh = stack.enter_context(
                    gzip.GzipFile(filename="", mode="wb", compresslevel=5, mtime=0, fileobj=fh)
                )
        for chunk in hours(world):
            batch = hour_events(world, chunk, changes)
            fh.write(b"".join(orjson.dumps(ev) + b"\n" for ev in batch))
            count += len(batch)
    if truth:
        with open(truth, "wb") as tf:
            for rec in truth_records(world):
                tf.write(orjson.dumps(rec) + b"\n")
    return count
