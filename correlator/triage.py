"""Triage: the three questions in order, each answered with numbers, and the summary line.

1. provider — is any api-layer signal (rate limits, provider errors, availability, auth
   failures, retries) part of the incident, or an error-rate signal whose excess over its
   baseline is at least half provider-side failures (5xx, 429, auth)? → domain `provider`.
2. prompt_model — is a quality or behavioral signal part of it, or was there a prompt/model
   change in the lookback before onset? → `prompt_model`. A quality drop that coincides with a
   model_version over-represented in the anomalous traffic while no internal change (prompt,
   model, deploy) happened in the lookback points at a silent provider model update.
3. infra_retrieval — latency, token or cost inflation while quality is stable (no quality
   signal, and no quality metric in the context both `quality_stable_tol` and three
   standard errors away from its baseline)? → `infra_retrieval`.

The domain is the first question answered yes, else `unknown`. All three are always answered
so the page shows the whole picture.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from correlator.families import counted_families, default_family
from correlator.incident import Attribution, ChangeRef, Domain, MemberSignal, TriageAnswer
from correlator.records import FeatureContext, MetricSnapshot, rfc3339
from detectors.base import Direction

PROMPT_MODEL_CHANGE_KINDS = frozenset({"prompt", "model"})
INTERNAL_CHANGE_KINDS = frozenset({"prompt", "model", "deploy"})
# Changes that can inflate latency, tokens or cost with quality stable: a rebuilt index or new
# chunking returns longer contexts, a deploy or config change retrieves more or slower.
INFRA_CHANGE_KINDS = frozenset({"index", "deploy", "config"})
MODEL_LABELS = ("model_version", "model")
SCORE_SD = 0.25
"""A generous per-score standard deviation, as a share of the score's scale, for telling a
moved window mean from chance (judge scores on 0-1 run at 0.1-0.2)."""
INFLATION_FAMILIES_PREFIX = ("latency_", "input_tokens", "output_tokens", "cost_")
# Infra metrics that say nothing about retrieval or infrastructure slowing down.
NOT_INFLATION = frozenset({"throughput_rpm", "error_rate"})


def _is_inflation(s: MemberSignal) -> bool:
    """Latency, token or cost inflation, and any other infra-layer signal going up (custom
    `metric` events such as a retrieval latency, or an Alertmanager alert from the stack)."""
    if s.layer != "infra" or s.metric in NOT_INFLATION:
        return False
    return s.metric.startswith(INFLATION_FAMILIES_PREFIX) or s.direction == Direction.UP


API_CONTEXT_METRICS = (
    "rate_limited_rate",
    "provider_error_rate",
    "auth_failure_rate",
    "availability",
    "retry_rate",
)
SUMMARY_MAX = 512


PROVIDER_ERROR_METRICS = ("provider_error_rate", "rate_limited_rate", "auth_failure_rate")


def _provider_errors(
    signals: Sequence[MemberSignal], metrics: Mapping[str, MetricSnapshot]
) -> str | None:
    """The evidence that a rising error rate is the provider's, or None.

    `error_rate` is an infra metric (every failed call), and its detector often fires
    before the api-layer ones, which need more calls: a 5xx outage then opened as
    `unknown`, or as `prompt_model` when a prompt change was in the lookback, and paged the
    wrong route (probe). The window's own counts tell them apart: when provider-side
    failures (5xx, 429, auth) account for at least half the error rate's excess over its
    baseline, the errors are the provider's."""
    if not any(s.metric == "error_rate" and s.direction == Direction.UP for s in signals):
        return None
    err = metrics.get("error_rate")
    if err is None:
        return None
    excess = err.value - (err.baseline or 0.0)
    parts = []
    provider = 0.0
    for name in PROVIDER_ERROR_METRICS:
        m = metrics.get(name)
        if m is not None:
            provider += max(m.value - (m.baseline or 0.0), 0.0)
            if m.value > 0:
                parts.append(f"{name} {fmt_value(name, m.value)}")
    if excess <= 0 or provider < 0.5 * excess:
        return None
    return (
        f"error_rate {fmt_value('error_rate', err.value)}"
        f" vs baseline {fmt_value('error_rate', err.baseline)}, of which provider-side"
        f" failures: {', '.join(parts)}"
    )


# ---- number formatting ------------------------------------------------------------------


def _is_share(metric: str) -> bool:
    return metric.endswith("_rate") or metric == "availability"


def fmt_value(metric: str, value: float | None) -> str:
    """A metric value the way a person reads it: shares in %, ms, $, else 3 significant."""
    if value is None:
        return "n/a"
    if _is_share(metric):
        return f"{value * 100:.3g}%"
    if metric.endswith("_ms"):
        return f"{value:.0f} ms"
    if metric.endswith("_usd"):
        return f"${value:.3g}"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _rel(value: float, baseline: float | None) -> str:
    if baseline is None or baseline == 0:
        return ""
    return f" ({(value - baseline) / abs(baseline) * 100:+.0f}%)"


def _unit(layer: str) -> str:
    return "scores" if layer == "quality" else "calls"


def _n_of(sig: MemberSignal, metrics: Mapping[str, MetricSnapshot]) -> int | None:
    n = sig.shown[1]
    if n is not None or not sig.firing:
        return n  # a cleared signal's peak is not the context's current window
    snap = metrics.get(sig.metric)
    return None if snap is None else snap.n


def signal_evidence(sig: MemberSignal, metrics: Mapping[str, MetricSnapshot]) -> str:
    """e.g. "rate_limited_rate 31% vs baseline 0.4% over 412 calls (peak 35%)": the current
    value while the signal fires, with its peak when that reads differently; once cleared,
    its peak (the value at the clear is the recovery's)."""
    text = f"{sig.metric}"
    if sig.series:
        text += f"{{{sig.series}}}"
    shown = sig.shown[0]
    text += f" {fmt_value(sig.metric, shown)}"
    if sig.baseline is not None:
        text += f" vs baseline {fmt_value(sig.metric, sig.baseline)}"
        if not _is_share(sig.metric):
            text += _rel(shown, sig.baseline)
    n = _n_of(sig, metrics)
    if n is not None:
        text += f" over {n} {_unit(sig.layer)}"
    if sig.cleared is not None:
        text += " (peak, now cleared)" if sig.peak is not None else " (cleared)"
    elif sig.peak is not None and fmt_value(sig.metric, sig.peak) != fmt_value(sig.metric, shown):
        text += f" (peak {fmt_value(sig.metric, sig.peak)})"
    return text


def _snapshot_evidence(snap: MetricSnapshot) -> str:
    text = f"{snap.metric} {fmt_value(snap.metric, snap.value)}"
    if snap.baseline is not None:
        text += f" (baseline {fmt_value(snap.metric, snap.baseline)})"
    if snap.n is not None:
        text += f" over {snap.n} {_unit(snap.layer)}"
    return text


def _ago(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.3g} h"
    return f"{seconds / 60:.0f} min"


def change_evidence(ch: ChangeRef, onset: float) -> str:
    when = onset - ch.ts
    rel = f"{_ago(when)} before onset" if when >= 0 else f"{_ago(-when)} after onset"
    desc = f" '{ch.description}'" if ch.description else ""
    return f"{ch.kind} change{desc} at {rfc3339(ch.ts)} ({rel})"


# ---- the three questions ----------------------------------------------------------------


def _distinct(signals: Sequence[MemberSignal]) -> list[MemberSignal]:
    """One signal per (metric, series), the most extreme score; ordered by onset. Two
    detectors on one series (say EWMA and CUSUM) tell one story in the evidence."""
    best: dict[tuple[str, str], MemberSignal] = {}
    for s in sorted(signals, key=lambda s: (s.onset, s.metric, s.series, s.detector)):
        key = (s.metric, s.series)
        if key not in best or abs(s.score) > abs(best[key].score):
            best[key] = s
    return sorted(best.values(), key=lambda s: (s.onset, s.metric, s.series, s.detector))


@dataclass(frozen=True, slots=True)
class TriageResult:
    answers: tuple[TriageAnswer, ...]
    domain: Domain
    silent_model_update: Attribution | None


def _quality_unstable(
    metrics: Mapping[str, MetricSnapshot], tol: float
) -> tuple[list[str], list[str]]:
    """(stable, unstable) evidence strings for the quality metrics in the context."""
    stable: list[str] = []
    unstable: list[str] = []
    for name in sorted(metrics):
        snap = metrics[name]
        if snap.layer != "quality" or snap.baseline is None:
            continue
        dev = abs(snap.value - snap.baseline)
        scale = abs(snap.baseline) or 1.0
        # A window mean of n scores strays from its baseline by chance: at 14 judge scores
        # per window (sd 0.12 each) 5% is crossed all the time, which sent every retrieval
        # drift of the evaluation worlds to `unknown`. Moved means past `tol` AND past
        # three standard errors of a generous per-score sd (a quarter of the scale).
        noise = 3.0 * SCORE_SD * scale / math.sqrt(snap.n) if snap.n else math.inf
        moved = dev > tol * scale and dev > noise
        (unstable if moved else stable).append(_snapshot_evidence(snap))
    return stable, unstable


def triage(
    signals: Sequence[MemberSignal],
    ctx: FeatureContext | None,
    changes: Sequence[ChangeRef],
    attribution: Sequence[Attribution],
    onset: float,
    lookback_s: float,
    quality_stable_tol: float = 0.05,
) -> TriageResult:
    metrics: Mapping[str, MetricSnapshot] = {} if ctx is None else ctx.metrics
    ordered = _distinct(signals)
    last_onset = max((s.onset for s in ordered), default=onset)
    before = [c for c in changes if onset - lookback_s <= c.ts <= last_onset]
    lookback_txt = _ago(lookback_s)

    # (1) provider
    api = [s for s in ordered if s.layer == "api"]
    provider_errors = _provider_errors(ordered, metrics)
    if api:
        q1 = TriageAnswer("provider", True, "; ".join(signal_evidence(s, metrics) for s in api))
    elif provider_errors is not None:
        q1 = TriageAnswer("provider", True, provider_errors)
    else:
        ctx_api = [
            _snapshot_evidence(metrics[m])
            for m in API_CONTEXT_METRICS
            if m in metrics and (metrics[m].value != 0 or (metrics[m].baseline or 0) != 0)
        ]
        ev = "no api-layer signal"
        if ctx_api:
            ev += "; " + ", ".join(ctx_api)
        q1 = TriageAnswer("provider", False, ev)

    # (2) prompt_model
    qual = [s for s in ordered if s.layer == "quality"]
    behav = [s for s in ordered if s.layer == "behavioral"]
    pm_changes = [c for c in before if c.kind in PROMPT_MODEL_CHANGE_KINDS]
    internal = [c for c in before if c.kind in INTERNAL_CHANGE_KINDS]
    silent: Attribution | None = None
    if qual and not internal:
        for a in attribution:
            if a.label in MODEL_LABELS:
                silent = a
                break
    parts = [signal_evidence(s, metrics) for s in qual + behav]
    parts += [change_evidence(c, onset) for c in pm_changes]
    if silent is not None:
        parts.append(
            f"{silent.label}={silent.value} is {silent.anomalous_share * 100:.0f}% of"
            f" {'traffic since the start' if silent.basis == 'new_value' else 'anomalous traffic'}"
            f" vs {silent.baseline_share * 100:.0f}% before, with no prompt/model/deploy"
            f" change in the {lookback_txt} before onset: suspect a silent provider model"
            " update; pin the model version"
        )
    if qual or behav or pm_changes:
        q2 = TriageAnswer("prompt_model", True, "; ".join(parts))
    else:
        stable, unstable = _quality_unstable(metrics, quality_stable_tol)
        ev = f"no quality or behavioral signal; no prompt/model change in the {lookback_txt}"
        ev += " before onset"
        if stable or unstable:
            ev += "; " + ", ".join(stable + unstable)
        q2 = TriageAnswer("prompt_model", False, ev)

    # (3) infra_retrieval
    inflation = [s for s in ordered if _is_inflation(s)]
    stable, unstable = _quality_unstable(metrics, quality_stable_tol)
    if not inflation:
        q3 = TriageAnswer("infra_retrieval", False, "no latency, token or cost inflation signal")
    elif qual or unstable:
        bad = [signal_evidence(s, metrics) for s in qual] + unstable
        q3 = TriageAnswer(
            "infra_retrieval",
            False,
            "; ".join(signal_evidence(s, metrics) for s in inflation)
            + "; but quality is not stable: "
            + ", ".join(bad),
        )
    else:
        quality_txt = (
            "quality stable: " + ", ".join(stable) if stable else "no quality signal or score drift"
        )
        infra_changes = [change_evidence(c, onset) for c in before if c.kind in INFRA_CHANGE_KINDS]
        q3 = TriageAnswer(
            "infra_retrieval",
            True,
            "; ".join([*(signal_evidence(s, metrics) for s in inflation), quality_txt,
                       *infra_changes]),
        )  # fmt: skip

    answers = (q1, q2, q3)
    domain: Domain = "unknown"
    for ans in answers:
        if ans.answer:
            domain = ans.question
            break
    return TriageResult(answers, domain, silent)


# ---- summary ----------------------------------------------------------------------------


def _phrase(sig: MemberSignal) -> str:
    base = "" if sig.baseline is None else f" vs {fmt_value(sig.metric, sig.baseline)}"
    val = fmt_value(sig.metric, sig.shown[0])
    if sig.layer == "quality":
        name = sig.metric.removeprefix("score:")
        word = "drop" if str(sig.direction) == "down" else "shift"
        return f"quality {word} ({name} {val}{base})"
    name = sig.metric.replace("_", " ")
    for suffix in (" ms", " usd"):
        name = name.removesuffix(suffix)
    return f"{name} {val}{base}"


_LAYER_ORDER: dict[str, dict[str, int]] = {
    "provider": {"api": 0, "infra": 1, "behavioral": 2, "quality": 3},
    "prompt_model": {"quality": 0, "behavioral": 1, "api": 2, "infra": 3},
    "infra_retrieval": {"infra": 0, "api": 1, "behavioral": 2, "quality": 3},
    "unknown": {"quality": 0, "behavioral": 1, "api": 2, "infra": 3},
}


def introducing_change(
    changes: Sequence[ChangeRef], attribution: Sequence[Attribution]
) -> ChangeRef | None:
    """The change that introduced a suspect value: the most recent change (before the start;
    the caller passes only those) whose labels set an attributed label to its value, e.g.
    `prompt_version=v8` for the suspect prompt_version v8. Suspects in rank order."""
    for a in attribution:
        hits = [c for c in changes if (a.label, a.value) in c.labels]
        if hits:
            return max(hits, key=lambda c: c.ts)
    return None


def families_phrase(signals: Sequence[MemberSignal]) -> str:
    """e.g. "2 symptom families: errors, latency": the independent quantities among the
    incident's signals (what `min_signals` counts), in order of onset, so a reader sees why
    an incident with many signals is only a watch, or why it paged."""
    ordered = sorted(signals, key=lambda s: (s.onset, s.metric, s.series, s.detector))
    fams = counted_families(s.family or default_family(s.metric) for s in ordered)
    noun = "family" if len(fams) == 1 else "families"
    return f"{len(fams)} symptom {noun}: {', '.join(fams)}"


def summarize(
    feature: str,
    signals: Sequence[MemberSignal],
    result: TriageResult,
    changes: Sequence[ChangeRef],
    attribution: Sequence[Attribution],
    onset: float,
    lookback_s: float,
) -> str:
    """The one line a person reads first: the signals the domain is about come first."""
    seen: set[str] = set()
    phrases: list[str] = []
    order = _LAYER_ORDER[result.domain]
    for s in sorted(signals, key=lambda s: (order.get(s.layer, 9), s.onset, s.metric)):
        if s.metric in seen:
            continue
        seen.add(s.metric)
        phrases.append(_phrase(s))
    if len(phrases) > 3:
        phrases = [*phrases[:3], f"{len(phrases) - 3} more"]
    head = f"{feature}: " + " + ".join(phrases)
    last_onset = max((s.onset for s in signals), default=onset)
    pm_changes = [
        c
        for c in changes
        if c.kind in PROMPT_MODEL_CHANGE_KINDS and onset - lookback_s <= c.ts <= last_onset
    ]
    if result.domain == "provider":
        provider_attr = next(
            (a for a in attribution if a.label in ("provider", "model", "endpoint")), None
        ) or next((a for a in attribution if a.basis == "moved"), None)
        cause = "suspect provider errors/rate limits"
        if provider_attr is not None:
            cause += f" on {provider_attr.label}={provider_attr.value}"
    elif result.domain == "prompt_model":
        introduced = introducing_change(changes, attribution)
        if introduced is not None or pm_changes:
            ch = introduced or max(pm_changes, key=lambda c: c.ts)
            cause = f"suspect {ch.kind} change" + (f" {ch.description}" if ch.description else "")
        elif result.silent_model_update is not None:
            a = result.silent_model_update
            cause = f"suspect silent model update ({a.label}={a.value})"
        elif attribution:
            cause = f"suspect {attribution[0].label}={attribution[0].value}"
        else:
            cause = "suspect prompt/model behaviour"
    elif result.domain == "infra_retrieval":
        infra = [
            c
            for c in changes
            if c.kind in INFRA_CHANGE_KINDS and onset - lookback_s <= c.ts <= last_onset
        ]
        cause = "suspect infrastructure/retrieval"
        if infra:  # the most recent before the start, as for a prompt or model change
            ch = max(infra, key=lambda c: c.ts)
            cause += f": {ch.kind} change" + (f" {ch.description}" if ch.description else "")
        cause += ", quality stable"
    else:
        cause = "cause unknown"
    line = f"{head} — {cause} ({result.domain}); {families_phrase(signals)}"
    if len(line) > SUMMARY_MAX:
        line = line[: SUMMARY_MAX - 1] + "…"
    return line
