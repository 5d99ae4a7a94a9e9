"""Four-layer metrics per feature over trailing windows, in fixed memory.

Events land in per-feature buckets of `tick_s` seconds keyed by their own timestamp (so a late
event still counts in the window it belongs to). At each tick the trailing window is the sum
of its buckets; buckets older than the retention are dropped, so memory depends on the number
of features, label values (capped) and the retention, never on the number of events.

Alongside the windows the aggregator keeps cumulative counters for `/metrics`: raw counts a
central Prometheus can sum across pods (DESIGN.md "State").
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from daemon.events import LlmCall, Score
from daemon.sketch import bucket_of, quantiles
from detectors.base import Layer, Sample

K = TypeVar("K", bound=Hashable)
V = TypeVar("V", int, float)

OTHER = "__other__"
MAX_COMBOS = 512  # distinct label sets counted whole per bucket
_NO_HEAD = ("", "", "")
_HEAD_NAMES = ("provider", "model", "endpoint")

# OpenTelemetry gen_ai.client.operation.duration advisory buckets, in seconds.
GEN_AI_DURATION_BUCKETS = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)

INFRA_METRICS = (
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "throughput_rpm",
    "error_rate",
    "input_tokens_per_request",
    "output_tokens_per_request",
    "cost_per_request_usd",
)
API_METRICS = (
    "rate_limited_rate",
    "auth_failure_rate",
    "provider_error_rate",
    "availability",
    "retry_rate",
)
BEHAVIORAL_METRICS = (
    "refusal_rate",
    "format_compliance_rate",
    "output_length_mean",
    "output_length_cv",
)


def status_class(status: int | None, error: str | None) -> str:
    """The status label of the request counter: 2xx, 429, auth (401/403), other 4xx, 5xx,
    error (status 0, or no status but an error string), or unknown (no status, no error:
    counted as success). 429 and auth get their own class because they answer triage's
    provider question, and Prometheus cannot split them out of 4xx later."""
    if status is None:
        return "error" if error else "unknown"
    if status == 0:
        return "error"
    if status == 429:
        return "429"
    if status == 401 or status == 403:
        return "auth"
    return f"{status // 100}xx"


class Totals:
    """Cumulative counters of one (feature, provider, model) for /metrics."""

    __slots__ = (
        "cost_usd",
        "duration",
        "duration_sum",
        "format_failures",
        "input_tokens",
        "output_tokens",
        "refusals",
        "requests",
        "retries",
    )

    def __init__(self) -> None:
        self.requests: dict[str, int] = {}  # status class → calls
        self.duration = [0] * (len(GEN_AI_DURATION_BUCKETS) + 1)  # last slot: +Inf
        self.duration_sum = 0.0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost_usd = 0.0
        self.refusals = 0
        self.format_failures = 0
        self.retries = 0


_SCALAR_FIELDS = (
    "calls",
    "failed",
    "rate_limited",
    "auth_failed",
    "provider_failed",
    "retried",
    "in_tok_sum",
    "in_tok_n",
    "out_tok_sum",
    "out_tok_n",
    "cost_sum",
    "cost_n",
    "refused",
    "refusal_n",
    "format_ok",
    "format_n",
    "chars_sum",
    "chars_sq",
    "chars_n",
)
"""The additive counters of a bucket, in snapshot order."""


class _Bucket:
    """Accumulators of one feature over one tick. Plain attributes: this is the hot path."""

    __slots__ = (*_SCALAR_FIELDS, "combos", "labels", "latency", "scores", "series")

    def __init__(self) -> None:
        self.calls = 0
        self.failed = 0
        self.rate_limited = 0
        self.auth_failed = 0
        self.provider_failed = 0
        self.retried = 0
        self.in_tok_sum = 0
        self.in_tok_n = 0
        self.out_tok_sum = 0
        self.out_tok_n = 0
        self.cost_sum = 0.0
        self.cost_n = 0
        self.refused = 0
        self.refusal_n = 0
        self.format_ok = 0
        self.format_n = 0
        self.chars_sum = 0
        self.chars_sq = 0
        self.chars_n = 0
        self.latency: dict[int, int] = {}
        # availability per (provider, model, endpoint): [ok, total]
        self.series: dict[tuple[str, str, str], list[int]] = {}
        # score name → [sum, n]
        self.scores: dict[str, list[float]] = {}
        # (provider, model, endpoint), label pairs → [all, bad]
        self.combos: dict[tuple[tuple[str, str, str], tuple[tuple[str, str], ...]], list[int]] = {}
        # label name → value → [all, bad], for label sets past MAX_COMBOS
        self.labels: dict[str, dict[str, list[int]]] = {}


class _Window:
    """A running sum of a feature's buckets [lo, hi), so a tick folds in the bucket that
    enters and folds out the one that leaves instead of re-merging the whole window.

    A late event that lands in a bucket already inside the window marks it dirty, and the
    next tick rebuilds it from the buckets; so does every REBUILD_TICKS-th tick, which bounds
    the rounding drift of float sums.
    """

    __slots__ = ("acc", "age", "dirty", "hi", "lo")

    def __init__(self, lo: int, hi: int) -> None:
        self.acc = _Bucket()
        self.lo = lo
        self.hi = hi
        self.dirty = False
        self.age = 0


REBUILD_TICKS = 240


def _fold_calls(dst: _Bucket, src: _Bucket, sign: int) -> None:
    """dst += sign × src over what the call metrics read (scalars, latency, series)."""
    for name in _SCALAR_FIELDS:
        setattr(dst, name, getattr(dst, name) + sign * getattr(src, name))
    lat = dst.latency
    for k, c in src.latency.items():
        v = lat.get(k, 0) + sign * c
        if v:
            lat[k] = v
        else:
            del lat[k]
    _fold_pairs(dst.series, src.series, sign)


def _fold_scores(dst: _Bucket, src: _Bucket, sign: int) -> None:
    _fold_pairs(dst.scores, src.scores, sign)


def _fold_pairs(dst: dict[K, list[V]], src: dict[K, list[V]], sign: int) -> None:
    """dst += sign × src for maps of [amount, count] pairs (availability's [ok, total],
    a score's [sum, n]); an entry whose count falls to zero leaves the window."""
    for key, (amount, count) in src.items():
        acc = dst.get(key)
        if acc is None:
            dst[key] = [sign * amount, sign * count]
            continue
        acc[0] += sign * amount
        acc[1] += sign * count
        if not acc[1]:
            del dst[key]


@dataclass(slots=True)
class _Feature:
    buckets: dict[int, _Bucket] = field(default_factory=dict)
    calls_win: _Window | None = None  # running sum of the call window
    scores_win: _Window | None = None  # running sum of the quality (score) window
    # Slow EW mean of each score, so the aggregator can call a score "bad" for attribution.
    score_ref: dict[str, float] = field(default_factory=dict)


class Aggregator:
    """Owns the per-feature buckets and the cumulative counters.

    Not thread-safe; the daemon calls it from the event loop only.
    """

    def __init__(
        self,
        tick_s: float = 15.0,
        window_s: float = 300.0,
        quality_window_s: float = 900.0,
        retention_s: float = 7200.0,
        max_label_values: int = 50,
        max_features: int = 1000,
        score_directions: Mapping[str, str] | None = None,
    ) -> None:
        if tick_s <= 0 or window_s < tick_s or quality_window_s < tick_s:
            raise ValueError("need 0 < tick_s <= window_s and tick_s <= quality_window_s")
        self.tick_s = tick_s
        self.window_s = window_s
        self.quality_window_s = quality_window_s
        self.retention_s = max(retention_s, window_s, quality_window_s)
        self.max_label_values = max_label_values
        self.max_features = max_features
        self.score_directions = dict(score_directions or {})
        self._features: dict[str, _Feature] = {}
        # Cumulative counters for /metrics by (feature, provider, model): one lookup per call.
        # Never reset; Prometheus computes rates and handles restarts.
        self.totals: dict[tuple[str, str, str], Totals] = {}
        self.score_hist: dict[tuple[str, str], list[float]] = {}

    # ---- ingest ---------------------------------------------------------------------------

    @property
    def features(self) -> list[str]:
        return list(self._features)

    def _feature(self, name: str) -> _Feature | None:
        feat = self._features.get(name)
        if feat is None:
            if len(self._features) >= self.max_features:
                return None
            feat = self._features[name] = _Feature()
        return feat

    def _bucket(self, feat: _Feature, ts: float) -> _Bucket:
        key = int(ts // self.tick_s)
        bucket = feat.buckets.get(key)
        if bucket is None:
            bucket = feat.buckets[key] = _Bucket()
        # A late event inside an evaluated window: that running sum must be rebuilt.
        for win in (feat.calls_win, feat.scores_win):
            if win is not None and win.lo <= key < win.hi:
                win.dirty = True
        return bucket

    def add_call(self, ev: LlmCall) -> bool:
        """Count one call; False when the feature cap is reached (the caller counts it)."""
        feat = self._feature(ev.feature)
        if feat is None:
            return False
        b = self._bucket(feat, ev.ts)
        status = ev.status
        b.calls += 1
        ok = (200 <= status < 300) if status is not None else not ev.error
        bad = not ok
        if not ok:
            b.failed += 1
            if status == 429:
                b.rate_limited += 1
            elif status == 401 or status == 403:
                b.auth_failed += 1
            elif status is None or status == 0 or status >= 500:
                b.provider_failed += 1
        latency = ev.latency_ms
        if ok and latency is not None:
            k = bucket_of(latency)
            b.latency[k] = b.latency.get(k, 0) + 1
        if ev.retries:
            b.retried += 1
        if ev.input_tokens is not None:
            b.in_tok_sum += ev.input_tokens
            b.in_tok_n += 1
        if ev.output_tokens is not None:
            b.out_tok_sum += ev.output_tokens
            b.out_tok_n += 1
        if ev.cost_usd is not None:
            b.cost_sum += ev.cost_usd
            b.cost_n += 1
        if ev.refused is not None:
            b.refusal_n += 1
            if ev.refused:
                b.refused += 1
                bad = True
        if ev.format_ok is not None:
            b.format_n += 1
            if ev.format_ok:
                b.format_ok += 1
            else:
                bad = True
        if ok and ev.output_chars is not None:
            # Successful calls only: a failed call's empty output says nothing about the
            # model's behaviour (the failure is counted by the error metrics).
            b.chars_sum += ev.output_chars
            b.chars_sq += ev.output_chars * ev.output_chars
            b.chars_n += 1
        provider = ev.provider or ""
        model = ev.model or ""
        skey = (provider, model, ev.endpoint or "")
        pair = b.series.get(skey)
        if pair is None:
            pair = b.series[skey] = [0, 0]
        pair[1] += 1
        if ok:
            pair[0] += 1
        self._count_combo(b, skey, ev.labels, bad)
        self._count_totals(ev, (ev.feature, provider, model), ok)
        return True

    def _count_combo(
        self,
        b: _Bucket,
        head: tuple[str, str, str],
        labels: dict[str, str] | None,
        bad: bool,
    ) -> None:
        """Count the call's whole label set as one key: traffic has few distinct label sets,
        so one dict update replaces one per label. Past MAX_COMBOS distinct sets in a bucket
        (high-cardinality labels), counting falls back to per-label counts with a cap."""
        key = (head, tuple(labels.items()) if labels else ())
        counts = b.combos.get(key)
        if counts is None:
            if len(b.combos) >= MAX_COMBOS:
                inc = 1 if bad else 0
                for name, value in zip(_HEAD_NAMES, head, strict=True):
                    if value:
                        self._count_label(b.labels, name, value, inc)
                for name, value in (labels or {}).items():
                    self._count_label(b.labels, name, value, inc)
                return
            counts = b.combos[key] = [0, 0]
        counts[0] += 1
        if bad:
            counts[1] += 1

    def _count_label(
        self, labels: dict[str, dict[str, list[int]]], name: str, value: str, inc: int
    ) -> None:
        values = labels.get(name)
        if values is None:
            if len(labels) >= self.max_label_values:
                return  # too many label names: keep the ones seen first
            values = labels[name] = {}
        counts = values.get(value)
        if counts is None:
            if len(values) >= self.max_label_values - 1:  # the cap includes __other__
                value = OTHER
                counts = values.get(OTHER)
            if counts is None:
                counts = values[value] = [0, 0]
        counts[0] += 1
        counts[1] += inc

    def _count_totals(self, ev: LlmCall, key: tuple[str, str, str], ok: bool) -> None:
        tot = self.totals.get(key)
        if tot is None:
            tot = self.totals[key] = Totals()
        cls = status_class(ev.status, ev.error)
        tot.requests[cls] = tot.requests.get(cls, 0) + 1
        if ok and ev.latency_ms is not None:
            # Successful calls only, like the latency quantiles: a few 30 s timeouts must not
            # own the p95 (failed calls are counted by status class).
            seconds = ev.latency_ms / 1000.0
            tot.duration[bisect.bisect_left(GEN_AI_DURATION_BUCKETS, seconds)] += 1
            tot.duration_sum += seconds
        if ev.input_tokens:
            tot.input_tokens += ev.input_tokens
        if ev.output_tokens:
            tot.output_tokens += ev.output_tokens
        if ev.cost_usd:
            tot.cost_usd += ev.cost_usd
        if ev.refused:
            tot.refusals += 1
        if ev.format_ok is False:
            tot.format_failures += 1
        if ev.retries:
            tot.retries += ev.retries

    def add_score(self, ev: Score) -> bool:
        feat = self._feature(ev.feature)
        if feat is None:
            return False
        b = self._bucket(feat, ev.ts)
        acc = b.scores.get(ev.name)
        if acc is None:
            acc = b.scores[ev.name] = [0.0, 0]
        acc[0] += ev.value
        acc[1] += 1
        # A score is "bad" when it is on the wrong side of its slow running mean; enough to
        # tell which label values the low scores come from, without a second threshold.
        ref = feat.score_ref.get(ev.name)
        higher_better = self.score_directions.get(ev.name, "higher") == "higher"
        bad = ref is not None and (ev.value < ref if higher_better else ev.value > ref)
        feat.score_ref[ev.name] = ev.value if ref is None else ref + 0.001 * (ev.value - ref)
        self._count_combo(b, _NO_HEAD, ev.labels, bad)
        hkey = (ev.feature, ev.name)
        hist = self.score_hist.get(hkey)
        if hist is None:
            hist = self.score_hist[hkey] = [0.0] * (len(SCORE_BUCKETS) + 2)
        hist[bisect.bisect_left(SCORE_BUCKETS, ev.value)] += 1
        hist[-1] += ev.value
        return True

    # ---- evaluation -----------------------------------------------------------------------

    def _span(self, feat: _Feature, start: float, end: float) -> list[_Bucket]:
        lo = int(start // self.tick_s)
        hi = int(end // self.tick_s)  # exclusive: the bucket starting at `end` is not included
        if hi - lo <= len(feat.buckets):
            return [b for k in range(lo, hi) if (b := feat.buckets.get(k)) is not None]
        return [b for k, b in feat.buckets.items() if lo <= k < hi]

    def evaluate(
        self, now: float, on_error: Callable[[str, Exception], None] | None = None
    ) -> list[Sample]:
        """The samples of every feature for the tick ending at `now`.

        With `on_error`, a feature whose samples cannot be computed is reported there and
        skipped, so it cannot take the other features down with it; its running windows are
        dropped and rebuilt from the buckets next tick (a half-folded window is not trusted).
        """
        out: list[Sample] = []
        for name, feat in self._features.items():
            if on_error is None:
                out.extend(self._evaluate_feature(name, feat, now))
                continue
            try:
                out.extend(self._evaluate_feature(name, feat, now))
            except Exception as exc:  # handed to the caller, who counts it
                feat.calls_win = feat.scores_win = None
                on_error(name, exc)
        return out

    def _window(
        self,
        feat: _Feature,
        win: _Window | None,
        now: float,
        length: float,
        fold: Callable[[_Bucket, _Bucket, int], None],
    ) -> _Window:
        lo = int((now - length) // self.tick_s)
        hi = int(now // self.tick_s)
        if win is not None and not win.dirty and win.age < REBUILD_TICKS:
            if (win.lo, win.hi) == (lo, hi):
                return win
            if (win.lo, win.hi) == (lo - 1, hi - 1):
                entering = feat.buckets.get(hi - 1)
                leaving = feat.buckets.get(lo - 1)
                if entering is not None:
                    fold(win.acc, entering, 1)
                if leaving is not None:
                    fold(win.acc, leaving, -1)
                win.lo, win.hi = lo, hi
                win.age += 1
                return win
        win = _Window(lo, hi)
        for b in self._span(feat, now - length, now):
            fold(win.acc, b, 1)
        return win

    def _evaluate_feature(self, name: str, feat: _Feature, now: float) -> list[Sample]:
        feat.calls_win = self._window(feat, feat.calls_win, now, self.window_s, _fold_calls)
        samples = self._call_samples(name, feat.calls_win.acc, now)
        feat.scores_win = self._window(
            feat, feat.scores_win, now, self.quality_window_s, _fold_scores
        )
        for sname, (total, n) in feat.scores_win.acc.scores.items():
            if n > 0:
                samples.append(Sample(now, name, "quality", f"score:{sname}", total / n, int(n)))
        return samples

    def _call_samples(self, name: str, w: _Bucket, now: float) -> list[Sample]:
        calls, failed, rl, auth, prov = (
            w.calls, w.failed, w.rate_limited, w.auth_failed, w.provider_failed,
        )  # fmt: skip
        retried, in_sum, in_n, out_sum, out_n = (
            w.retried, w.in_tok_sum, w.in_tok_n, w.out_tok_sum, w.out_tok_n,
        )  # fmt: skip
        cost, cost_n, refused, refusal_n = w.cost_sum, w.cost_n, w.refused, w.refusal_n
        fmt_ok, fmt_n, chars_sum, chars_sq, chars_n = (
            w.format_ok, w.format_n, w.chars_sum, w.chars_sq, w.chars_n,
        )  # fmt: skip
        latency, series = w.latency, w.series
        if calls == 0:
            return []
        out: list[Sample] = []

        def add(layer: Layer, metric: str, value: float, n: int, series: str = "") -> None:
            out.append(Sample(now, name, layer, metric, value, n, series))

        ok_n = sum(latency.values())
        if ok_n:
            p50, p95, p99 = quantiles(latency, (0.5, 0.95, 0.99))
            assert p50 is not None and p95 is not None and p99 is not None
            add("infra", "latency_p50_ms", p50, ok_n)
            add("infra", "latency_p95_ms", p95, ok_n)
            add("infra", "latency_p99_ms", p99, ok_n)
        add("infra", "throughput_rpm", calls * 60.0 / self.window_s, calls)
        add("infra", "error_rate", failed / calls, calls)
        if in_n:
            add("infra", "input_tokens_per_request", in_sum / in_n, in_n)
        if out_n:
            add("infra", "output_tokens_per_request", out_sum / out_n, out_n)
        if cost_n:
            add("infra", "cost_per_request_usd", cost / cost_n, cost_n)
        add("api", "rate_limited_rate", rl / calls, calls)
        add("api", "auth_failure_rate", auth / calls, calls)
        add("api", "provider_error_rate", prov / calls, calls)
        add("api", "retry_rate", retried / calls, calls)
        add("api", "availability", (calls - failed) / calls, calls)
        if len(series) > 1:
            for (s_prov, s_model, s_endp), (n_ok, total) in series.items():
                label = f"provider={s_prov},model={s_model},endpoint={s_endp}"
                add("api", "availability", n_ok / total, total, label)
        if refusal_n:
            add("behavioral", "refusal_rate", refused / refusal_n, refusal_n)
        if fmt_n:
            add("behavioral", "format_compliance_rate", fmt_ok / fmt_n, fmt_n)
        if chars_n:
            mean = chars_sum / chars_n
            add("behavioral", "output_length_mean", mean, chars_n)
            if chars_n > 1 and mean > 0:
                var = max(0.0, (chars_sq - chars_n * mean * mean) / (chars_n - 1))
                add("behavioral", "output_length_cv", math.sqrt(var) / mean, chars_n)
        return out

    def label_counts(
        self, feature: str, start: float, end: float, bad_only: bool = False
    ) -> dict[str, dict[str, int]]:
        """Label value counts of a feature's traffic over [start, end)."""
        feat = self._features.get(feature)
        out: dict[str, dict[str, int]] = {}
        if feat is None:
            return out
        idx = 1 if bad_only else 0
        cap = self.max_label_values
        for b in self._span(feat, start, end):
            for (head, pairs), counts in b.combos.items():
                n = counts[idx]
                if not n:
                    continue
                for lname, value in (*zip(_HEAD_NAMES, head, strict=True), *pairs):
                    if not value:
                        continue
                    acc = out.setdefault(lname, {})
                    if value not in acc and len(acc) >= cap - 1:
                        value = OTHER
                    acc[value] = acc.get(value, 0) + n
            for lname, values in b.labels.items():
                acc = out.setdefault(lname, {})
                for value, counts in values.items():
                    if counts[idx]:
                        acc[value] = acc.get(value, 0) + counts[idx]
        return out

    # ---- persistence ----------------------------------------------------------------------

    def to_state(self, since: float | None = None) -> dict[str, object]:
        """The open windows, so a restart does not forget the last minutes of traffic.

        `since` keeps only buckets from that time on: the daemon saves the evaluation windows
        (minutes) rather than the whole attribution retention (hours), which would make
        every snapshot tens of megabytes; after a restart attribution's "before" counts
        refill within the hour."""
        oldest = -math.inf if since is None else since // self.tick_s
        features: dict[str, object] = {}
        for name, feat in self._features.items():
            buckets = []
            for key, b in feat.buckets.items():
                if key < oldest:
                    continue
                buckets.append(
                    {
                        "k": key,
                        "s": [getattr(b, f) for f in _SCALAR_FIELDS],
                        "lat": [[k, c] for k, c in b.latency.items()],
                        "series": [[*k, *v] for k, v in b.series.items()],
                        "scores": b.scores,
                        "labels": b.labels,
                        "combos": [
                            [*h, [list(p) for p in pairs], *c] for (h, pairs), c in b.combos.items()
                        ],
                    }
                )
            features[name] = {"buckets": buckets, "score_ref": feat.score_ref}
        return {"v": 1, "tick_s": self.tick_s, "features": features}

    def load_state(self, state: Mapping[str, object]) -> None:
        if not state:
            return
        if state.get("v") != 1 or state.get("tick_s") != self.tick_s:
            raise ValueError("window snapshot is from another version or tick size")
        features = state["features"]
        assert isinstance(features, dict)
        for name, fstate in features.items():
            feat = self._features.setdefault(name, _Feature())
            feat.score_ref.update(fstate["score_ref"])
            for bstate in fstate["buckets"]:
                b = _Bucket()
                for f, v in zip(_SCALAR_FIELDS, bstate["s"], strict=True):
                    setattr(b, f, v)
                b.latency = {int(k): int(c) for k, c in bstate["lat"]}
                b.series = {(p, m, e): [ok, n] for p, m, e, ok, n in bstate["series"]}
                b.scores = {k: list(v) for k, v in bstate["scores"].items()}
                b.combos = {
                    ((p, m, e), tuple((k, v) for k, v in pairs)): [n_all, n_bad]
                    for p, m, e, pairs, n_all, n_bad in bstate.get("combos", [])
                }
                b.labels = {
                    n: {v: list(c) for v, c in vals.items()} for n, vals in bstate["labels"].items()
                }
                feat.buckets[int(bstate["k"])] = b

    def expire(self, now: float) -> None:
        """Drop buckets older than the retention; call once per tick.

        A feature keeps its slot (and its counters) once seen, so the feature cap is stable
        across idle hours and `/metrics` counters never go backwards.
        """
        oldest = int((now - self.retention_s) // self.tick_s)
        for feat in self._features.values():
            stale = [k for k in feat.buckets if k < oldest]
            for k in stale:
                del feat.buckets[k]


# Score histogram buckets: scores are mostly in [0, 1] or small integer scales (1-5, 1-10).
SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 2.0, 3.0, 4.0, 5.0, 10.0)
