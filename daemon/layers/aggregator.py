"""Four-layer metrics per feature over trailing windows, in fixed memory.

Events land in per-feature buckets of `tick_s` seconds keyed by their own timestamp (so a late
event still counts in the window it belongs to). At each tick the trailing window is the sum
of its buckets; buckets older than the retention are dropped, so memory depends on the number
of features, label values (capped) and the retention, never on the number of events.

Alongside the windows the aggregator keeps cumulative counters for `/metrics`: raw counts a
central Prometheus can sum across pods (DESIGN.md "State").

Every dimension that grows with the input is capped (`Limits`, docs/ingest.md "Cardinality
caps"): features, providers, models, endpoints and their combinations per feature, score and
metric names, label names, label sets and the length of label values. What a cap does depends
on whether the data still means something once merged: a provider, model or endpoint past
its cap folds into `__other__` (the call still counts in the feature's totals, only the split
is lost); a score or metric name past its cap cannot be merged with other names (averaging
two scores is meaningless), so the event is counted as unused with a reason. Either way the
`capped` counter of the dimension goes up, and nothing is dropped silently.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from daemon.ingest.events import LlmCall, Score
from daemon.layers.sketch import bucket_of, quantiles
from detectors.base import Layer, Sample, ScoreObs, TickStats, split_value
from detectors.defaults import COST_LOG_SCALE, QUALITY_METRIC

K = TypeVar("K", bound=Hashable)
V = TypeVar("V", int, float)

OTHER = "__other__"
# Score labels that say what one quality observation is (docs/detectors.md "Fused quality").
RUN_LABEL = "run_id"  # scores of one golden run: one observation, their mean
CASE_LABEL = "case_id"  # a golden case: one observation of its own
MAX_COMBOS = 512  # default of Limits.label_sets: distinct label sets counted whole per bucket
_NO_HEAD = ("", "", "")
_OTHER_HEAD = (OTHER, OTHER, OTHER)
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
    "latency_per_output_token_ms",
    "ttft_ms",
)
# Per-call log statistics use log1p(cost in micro-dollars) (`COST_LOG_SCALE`): log1p of a few
# thousandths of a dollar would be nearly linear, and the test is meant for relative changes.
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


_COMPUTED = frozenset(INFRA_METRICS + API_METRICS + BEHAVIORAL_METRICS)


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


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps on every dimension that grows with the input (the `ingest.max_*` settings).

    A cap that folds values counts `__other__` as one of its values, so a capped dimension
    never holds more than its cap. Per-feature caps bound one feature; `series` bounds the
    total across features, so /metrics stays bounded when every feature is at its caps.
    """

    features: int = 200
    providers: int = 50  # per feature
    models: int = 50  # per feature
    endpoints: int = 50  # per feature
    series_per_feature: int = 100  # distinct provider/model/endpoint combinations
    score_names: int = 100  # per feature
    metric_names: int = 100  # per feature: `metric` events and Alertmanager alerts
    series: int = 2000  # all features: combinations + score names + metric names
    label_names: int = 20  # per event
    label_values: int = 50  # per label name, per feature and tick bucket
    label_sets: int = MAX_COMBOS  # distinct label sets per feature and tick bucket
    label_value_length: int = 200  # characters

    def __post_init__(self) -> None:
        bad = [name for name in self.__slots__ if getattr(self, name) < 1]
        if bad:
            raise ValueError(f"cardinality limits must be >= 1: {', '.join(bad)}")

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


CAPPED_DIMENSIONS = (
    "feature",
    "provider",
    "model",
    "endpoint",
    "series_per_feature",
    "score_name",
    "metric_name",
    "series",
    "label_name",
    "label_value",
    "label_set",
    "label_value_length",
    "description_length",
    "split_value",
    "changes",
)
"""The `dimension` values of llm_oncall_cardinality_capped_total, all exported from 0."""


def clip(value: str, limit: int) -> str:
    """A value cut to `limit` characters, the last one an ellipsis so a cut value is visibly
    not the original (two long values with the same prefix do merge: that is the cap)."""
    return value if len(value) <= limit else value[: limit - 1] + "…"


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

    def copy(self) -> Totals:
        """An independent copy, for a /metrics render off the event loop."""
        out = Totals.__new__(Totals)
        for name in Totals.__slots__:
            setattr(out, name, getattr(self, name))
        out.requests = dict(self.requests)
        out.duration = list(self.duration)
        return out


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
    "lpt_sum",
    "lpt_n",
    "ttft_sum",
    "ttft_n",
    "lpt_log",
    "ttft_log",
    "in_tok_log",
    "in_tok_log_n",
    "out_tok_log",
    "out_tok_log_n",
    "cost_log",
    "cost_log_n",
    "chars_log",
    "chars_log_n",
)
"""The additive counters of a bucket, in snapshot order (new ones go at the end: an older
snapshot's shorter list loads with the new counters at zero)."""


class _Fresh:
    """What arrived for one feature since the last tick, whatever bucket it belongs to.

    The evidence detectors (`binomial`, `logmean`) add these per-tick increments up over
    windows of their own, so each call counts once; a late event counts at the tick after it
    arrives. Per-call quantities are kept as [n, sum y, sum y^2, sum y^3] of y = log1p of
    each successful call's value (a failed call's sizes say nothing about the model), plus
    the open batch [calls, sum y] (`_add_log`).

    Batches. Calls that arrive within `BATCH_GAP_S` of the one before (a batch job, a
    fan-out, retries: 17% of gaps were under 1 ms in production traces) are near-identical
    requests, so they are one observation, not twenty: each batch enters the sums once, as
    the mean y of its calls. Counted per call, one batch of 20 long answers at 2 calls/min
    was a 14-sigma "shift" in a 5-minute window, and the learned overdispersion (a mean)
    cannot absorb a residual that rare and that large.
    """

    __slots__ = (
        "auth_failed", "calls", "chars", "cost", "failed", "format_n", "format_ok", "in_tok",
        "last_ts", "lpt", "out_tok", "provider_failed", "rate_limited", "refusal_n", "refused",
        "retried", "run", "series", "splits", "ttft",
    )  # fmt: skip

    def __init__(self) -> None:
        self.calls = self.failed = self.rate_limited = self.auth_failed = 0
        self.provider_failed = self.retried = self.refused = self.refusal_n = 0
        self.format_ok = self.format_n = 0
        self.series: dict[tuple[str, str, str], list[int]] = {}  # [ok, n]
        self.splits: dict[str, list[int]] = {}  # split series -> the S_* counters
        self.in_tok = [0.0] * 6
        self.out_tok = [0.0] * 6
        self.cost = [0.0] * 6
        self.chars = [0.0] * 6
        self.lpt = [0.0] * 6
        self.ttft = [0.0] * 6
        self.last_ts: float | None = None  # the last call's time, for batching
        self.run = 0  # calls in the open batch

    def join(self, ts: float) -> bool:
        """Whether a call at `ts` belongs to the open batch (and record it)."""
        last = self.last_ts
        self.last_ts = ts
        if last is not None and abs(ts - last) <= BATCH_GAP_S and self.run < BATCH_MAX:
            self.run += 1
            return True
        self.run = 1
        return False

    def to_state(self) -> dict[str, object]:
        out: dict[str, object] = {name: getattr(self, name) for name in _FRESH_FIELDS}
        out["series"] = [[*k, *v] for k, v in self.series.items()]
        out["splits"] = [[k, *v] for k, v in self.splits.items()]
        return out

    @classmethod
    def from_state(cls, state: Mapping[str, object]) -> _Fresh:
        fr = cls()
        for name in _FRESH_FIELDS:
            value = state[name]
            if isinstance(value, list):
                value = [float(x) for x in value]
                if len(value) == 4:  # snapshots from before batches: no open batch
                    value += [0.0, 0.0]
                if len(value) != 6:
                    raise ValueError(f"fresh counter {name} must have 4 or 6 sums")
            elif not isinstance(value, int):
                raise ValueError(f"fresh counter {name} must be an integer")
            setattr(fr, name, value)
        series = state["series"]
        assert isinstance(series, list)
        fr.series = {(p, m, e): [int(ok), int(n)] for p, m, e, ok, n in series}
        # Optional: snapshots from before the per-segment series have none.
        splits = state.get("splits", [])
        assert isinstance(splits, list)
        fr.splits = {str(k): _split_counts(v) for k, *v in splits}
        return fr


_FRESH_FIELDS = tuple(
    name for name in _Fresh.__slots__ if name not in ("series", "splits", "last_ts", "run")
)
BATCH_GAP_S = 0.01
"""Calls closer than this to the one before form one batch (`_Fresh`). Batches in traces
and in the evaluation worlds arrive within a few ms; at 1,000 calls/min independent calls
fall this close 15% of the time, which only merges a few pairs (a loss of power, never a
false alarm)."""
BATCH_MAX = 100  # calls per batch at most: at very high rates gaps chain without end

# Per label value of a split label (`Aggregator` "Per-segment series"): the counters of the
# k/n metrics tested per value, per bucket and per tick.
S_CALLS, S_FAILED, S_PROVIDER, S_REFUSAL_N, S_REFUSED, S_FORMAT_N, S_FORMAT_OK = range(7)
_SPLIT_ZERO = (0, 0, 0, 0, 0, 0, 0)
SPLIT_METRICS = ("availability", "provider_error_rate", "refusal_rate", "format_compliance_rate")
"""The k/n metrics with a series per split label value (and the fused `quality`)."""
_SPLIT_FIELDS: dict[str, tuple[int, int]] = {  # metric -> (numerator, denominator) index
    "availability": (S_FAILED, S_CALLS),  # failed; `_history_split` turns it into ok
    "provider_error_rate": (S_PROVIDER, S_CALLS),
    "refusal_rate": (S_REFUSED, S_REFUSAL_N),
    "format_compliance_rate": (S_FORMAT_OK, S_FORMAT_N),
}


def split_series(label: str, value: str) -> str:
    """The series name of one label value's tests, as signals, incidents and /metrics show
    it: `segment=pro`."""
    return f"{label}={value}"


def _count_split(
    acc: list[int], ok: bool, provider_failed: bool, refused: bool | None, format_ok: bool | None
) -> None:
    acc[S_CALLS] += 1
    if not ok:
        acc[S_FAILED] += 1
        if provider_failed:
            acc[S_PROVIDER] += 1
    if refused is not None:
        acc[S_REFUSAL_N] += 1
        if refused:
            acc[S_REFUSED] += 1
    if format_ok is not None:
        acc[S_FORMAT_N] += 1
        if format_ok:
            acc[S_FORMAT_OK] += 1


def _log1p(x: float) -> float:
    """log1p of a size or latency; inf for an integer past float range (only unvalidated
    events): the tick's sums become inf and the detector ignores them (non-finite), and the
    bucket leaves it out of its log sums (`_add_call_sizes`), which the snapshot must hold."""
    try:
        return math.log1p(x)
    except OverflowError:
        return math.inf


def _add_log(acc: list[float], y: float, join: bool) -> None:
    """Add one call's y = log1p(x) (`_log1p`) to the open batch (`join`), or close the open
    batch into the sums and open a new one with this call."""
    if join and acc[4]:
        acc[4] += 1.0
        acc[5] += y
        return
    _close_batch(acc)
    acc[4] = 1.0
    acc[5] = y


def _close_batch(acc: list[float]) -> None:
    k = acc[4]
    if not k:
        return
    m = acc[5] / k
    m2 = m * m
    acc[0] += 1.0
    acc[1] += m
    acc[2] += m2
    acc[3] += m2 * m
    acc[4] = acc[5] = 0.0


def _log_tick(acc: list[float]) -> TickStats:
    """The tick's sums, the open batch closed (a batch across a tick boundary is two)."""
    _close_batch(acc)
    return TickStats(int(acc[0]), 0, acc[1], acc[2], acc[3])


class _Bucket:
    """Accumulators of one feature over one tick. Plain attributes: this is the hot path."""

    __slots__ = (
        *_SCALAR_FIELDS,
        "combos",
        "labels",
        "latency",
        "queued",
        "score_obs",
        "scores",
        "series",
        "splits",
    )

    def __init__(self) -> None:
        self.queued = False  # in its feature's `to_compact` list
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
        # A float: a sum of squares of in-range output_chars (up to 1e9 each) passes 2**63
        # in ten events, and orjson cannot encode such an int (the snapshot would drop it).
        self.chars_sq = 0.0
        self.chars_n = 0
        self.lpt_sum = 0.0
        self.lpt_n = 0
        self.ttft_sum = 0.0
        self.ttft_n = 0
        # Sums of log1p of the same values: their history is the per-bin geometric mean, as
        # their `logmean` detector sees them (a heavy-tailed latency's plain bin mean swings
        # with one slow call).
        self.lpt_log = 0.0
        self.ttft_log = 0.0
        # The same for the sizes, over the successful calls their `logmean` detectors read.
        # Each with its own count: a bucket restored from a snapshot older than these sums
        # has sizes but no logs, and must read as no data, not as a level of 0.
        self.in_tok_log = 0.0
        self.in_tok_log_n = 0
        self.out_tok_log = 0.0
        self.out_tok_log_n = 0
        self.cost_log = 0.0
        self.cost_log_n = 0
        self.chars_log = 0.0
        self.chars_log_n = 0
        self.latency: dict[int, int] = {}
        # availability per (provider, model, endpoint): [ok, total]
        self.series: dict[tuple[str, str, str], list[int]] = {}
        # split series ("segment=pro") → the S_* counters of its calls
        self.splits: dict[str, list[int]] = {}
        # score name → [sum, n]
        self.scores: dict[str, list[float]] = {}
        # score name → observations the fused verdict counts (a golden run is one, whatever
        # its cases): the weight of the bucket's mean in the quality history
        self.score_obs: dict[str, int] = {}
        # (provider, model, endpoint), label pairs → [calls, bad calls, chars_sum, chars_sq,
        # chars_n, scores, low scores] (`LabelStats`): attribution compares label values by
        # their anomalous call rate, their low-score rate and their output length (for faults
        # that show as longer or shorter answers). Calls and scores count apart: pooled, a
        # value with more scores per call (about half of all scores are "low") would look
        # worse whenever the calls' error rate moved.
        self.combos: dict[
            tuple[tuple[str, str, str], tuple[tuple[str, str], ...]], list[float]
        ] = {}
        # label name → value → the same seven counters, for label sets past MAX_COMBOS
        self.labels: dict[str, dict[str, list[float]]] = {}


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
    if src.splits:
        _fold_splits(dst.splits, src.splits, sign)


def _fold_splits(dst: dict[str, list[int]], src: dict[str, list[int]], sign: int) -> None:
    """dst += sign × src for split counters; a value with no calls left leaves the window
    (every other counter counts a subset of its calls)."""
    for key, counts in src.items():
        acc = dst.get(key)
        if acc is None:
            dst[key] = [sign * c for c in counts]
            continue
        for i, c in enumerate(counts):
            acc[i] += sign * c
        if not acc[S_CALLS]:
            del dst[key]


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
    fresh: _Fresh = field(default_factory=_Fresh)  # since the last tick (evidence detectors)
    scores_win: _Window | None = None  # running sum of the quality (score) window
    # Slow EW mean of each score, so the aggregator can call a score "bad" for attribution.
    score_ref: dict[str, float] = field(default_factory=dict)
    # Values admitted under the caps, for the life of the process (like the feature slot
    # itself: /metrics counters of an admitted value never disappear or go backwards).
    providers: set[str] = field(default_factory=set)
    models: set[str] = field(default_factory=set)
    endpoints: set[str] = field(default_factory=set)
    series: set[tuple[str, str, str]] = field(default_factory=set)
    score_names: set[str] = field(default_factory=set)
    external: set[tuple[str, str]] = field(default_factory=set)  # (metric, series) fed in
    # Split label -> value -> series name, for the values tested (`Aggregator._split_keys`).
    split_names: dict[str, dict[str, str]] = field(default_factory=dict)
    # Per-call quality observations since the last tick per split series (score name ->
    # values), and the last tick each series had any: its fused sample goes on while its
    # scores are in the quality window, as the feature's does.
    split_quality: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    split_scored: dict[str, float] = field(default_factory=dict)
    # Quality observations since the last tick, for the fused verdict: per score name the
    # per-call (or per-case) values, and the open golden runs (name, run key) -> [sum, n,
    # fresh]. A run is handed over one tick after its last score, as one observation.
    quality_obs: dict[str, list[float]] = field(default_factory=dict)
    quality_runs: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    # Buckets past the retention, rolled up per minute (minute → the sum of its buckets'
    # counters, split series and scores; no labels, latencies or per-provider series), for
    # `MINUTE_HISTORY_S`: a slow quality decline or a fault in one segment at a call a minute
    # is detected 1-2 h after it began, and its change point needs the level before it,
    # older than the buckets.
    minutes: dict[int, _Bucket] = field(default_factory=dict)
    # Merged label counters of whole blocks of `LABEL_BLOCK` buckets, for `label_stats`;
    # a block's entry is dropped when any of its buckets takes an event or expires.
    label_blocks: dict[int, dict[str, dict[str, list[float]]]] = field(default_factory=dict)
    # Bucket keys in creation order (for expiry) and the keys of buckets that took events
    # since they were last compacted: `expire` reads these instead of every bucket.
    created: deque[int] = field(default_factory=deque)
    late: list[int] = field(default_factory=list)
    to_compact: list[int] = field(default_factory=list)
    # label → value → [first seen, last seen (bucket start times), events in the hour before
    # first seen, end of the last bucket with calls before first seen (first seen itself when
    # none in that hour): a switch to the value happened in that quiet gap], for the life of
    # the process and in snapshots: attribution asks whether a value existed before an
    # incident, which the 2-h bucket retention cannot answer for a rollback to a version last
    # seen 4 h ago. `watched_since`: the first bucket noted (after a restore without a
    # catalog, the restore), so values present from the start are never taken for rollouts.
    seen: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    watched_since: float | None = None


class Aggregator:
    """Owns the per-feature buckets and the cumulative counters.

    Per-segment series. A fault confined to one value of a label (a customer segment) is
    diluted in the feature's rates by that value's share of traffic, so for each label in
    `split_labels` the aggregator also counts, per bucket and per tick, each value's calls,
    failures, provider errors, refusals and format results (`_count_split`), and files its
    per-call scores apart: every tick each value yields the `SPLIT_METRICS` samples and a
    fused `quality` sample under the series `label=value` (docs/detectors.md "Per-segment
    tests"). At most `split_values` values per label and feature are tested (the first
    ones seen, for the life of the process, like providers); later values count at the
    feature level only (capped dimension `split_value`).

    Not thread-safe; the daemon calls it from the event loop only.
    """

    def __init__(
        self,
        tick_s: float = 15.0,
        window_s: float = 300.0,
        quality_window_s: float = 900.0,
        retention_s: float = 7200.0,
        limits: Limits | None = None,
        score_directions: Mapping[str, str] | None = None,
        score_direction: Callable[[str, str], str] | None = None,
        split_labels: Sequence[str] = ("segment",),
        split_values: int = 8,
    ) -> None:
        if tick_s <= 0 or window_s < tick_s or quality_window_s < tick_s:
            raise ValueError("need 0 < tick_s <= window_s and tick_s <= quality_window_s")
        if split_values < 1:
            raise ValueError("split_values must be >= 1")
        self.tick_s = tick_s
        self.window_s = window_s
        self.quality_window_s = quality_window_s
        self.retention_s = max(retention_s, window_s, quality_window_s)
        self._hour_buckets = max(1, round(3600.0 / tick_s))  # the catalog's "before" span
        self.limits = limits or Limits()
        self.max_label_values = self.limits.label_values
        self.max_features = self.limits.features
        # Events or values that hit a cap, by dimension (llm_oncall_cardinality_capped_total).
        self.capped: dict[str, int] = {}
        self._n_series = 0  # admitted under Limits.series, across features
        self.score_directions = dict(score_directions or {})
        # (feature, score name) -> "higher" | "lower"; per-feature config wins over global.
        self._score_direction = score_direction or (
            lambda _feature, name: self.score_directions.get(name, "higher")
        )
        self._features: dict[str, _Feature] = {}
        # Cumulative counters for /metrics by (feature, provider, model): one lookup per call.
        # Never reset; Prometheus computes rates and handles restarts.
        self.totals: dict[tuple[str, str, str], Totals] = {}
        self.score_hist: dict[tuple[str, str], list[float]] = {}
        # Per-segment series (class doc): labels whose values are tested one by one.
        self.split_labels = tuple(split_labels)
        self.split_values = split_values

    def reconfigure(
        self,
        limits: Limits,
        score_directions: Mapping[str, str],
        score_direction: Callable[[str, str], str],
    ) -> None:
        """New caps and score directions from a config reload; windows and counters stay.

        A lowered cap applies to what is admitted from now on: values already admitted keep
        their slots (as after a restart with a lower cap), so no series vanishes mid-window."""
        self.limits = limits
        self.max_label_values = limits.label_values
        self.max_features = limits.features
        self.score_directions = dict(score_directions)
        self._score_direction = score_direction

    # ---- ingest ---------------------------------------------------------------------------

    @property
    def features(self) -> list[str]:
        return list(self._features)

    def usage(self) -> dict[str, int]:
        """How full the global caps are, by the name of their limit."""
        return {"features": len(self._features), "series": self._n_series}

    def count_capped(self, dimension: str, n: int = 1) -> None:
        self.capped[dimension] = self.capped.get(dimension, 0) + n

    def _feature(self, name: str) -> _Feature | None:
        feat = self._features.get(name)
        if feat is None:
            if len(self._features) >= self.max_features:
                self.count_capped("feature")
                return None
            feat = self._features[name] = _Feature()
        return feat

    def admit_feature(self, name: str) -> bool:
        """Take a feature slot for an event that has no buckets (a change); False past the
        cap. Every event type shares the one feature cap, so no type can bypass it."""
        return self._feature(name) is not None

    def admit_external(self, feature: str, metric: str, series: str = "") -> str | None:
        """Admit a series fed from outside the aggregator (`metric` events, Alertmanager
        alerts). None when admitted, else the unused reason to count."""
        feat = self._feature(feature)
        if feat is None:
            return "feature_limit"
        return self._admit_name(feat.external, (metric, series), self.limits.metric_names, "metric")

    def _admit_name(self, names: set[K], key: K, cap: int, kind: str) -> str | None:
        """Take a slot for a score or metric name under its per-feature cap and the global
        series cap; None when admitted (or already), else the unused reason to count."""
        if key in names:
            return None
        if len(names) >= cap:
            self.count_capped(f"{kind}_name")
            return f"{kind}_name_limit"
        if self._n_series >= self.limits.series:
            self.count_capped("series")
            return "series_limit"
        names.add(key)
        self._n_series += 1
        return None

    @staticmethod
    def computes(metric: str) -> bool:
        """Whether the aggregator derives this metric (else it came from outside)."""
        return metric in _COMPUTED or metric.startswith("score:") or metric == QUALITY_METRIC

    def restore_external(self, feature: str, metric: str, series: str) -> None:
        """A series restored from a snapshot keeps its slot (even past a lowered cap)."""
        feat = self._features.setdefault(feature, _Feature())
        if (metric, series) not in feat.external:
            feat.external.add((metric, series))
            self._n_series += 1

    def _fold(self, values: set[str], value: str, cap: int, dimension: str) -> str:
        """`value` if admitted or there is room (it is then admitted), else __other__."""
        if value in values:
            return value
        limit = self.limits.label_value_length
        if len(value) > limit:
            self.count_capped("label_value_length")
            value = clip(value, limit)
            if value in values:
                return value
        if len(values) >= cap - 1:  # the cap counts __other__
            self.count_capped(dimension)
            value = OTHER
        values.add(value)
        return value

    def _admit_series(self, feat: _Feature, key: tuple[str, str, str]) -> tuple[str, str, str]:
        """The (provider, model, endpoint) a call is counted under, after the caps.

        Each value folds into __other__ past its own cap; a new combination past the
        per-feature or the global series cap folds whole into (__other__, __other__,
        __other__), which every feature may hold beyond the global cap (one per feature).
        Runs only when the key is not yet in the call's bucket, so steady traffic skips it.
        """
        if key in feat.series:
            return key
        lim = self.limits
        p, m, e = key
        folded = (
            self._fold(feat.providers, p, lim.providers, "provider"),
            self._fold(feat.models, m, lim.models, "model"),
            self._fold(feat.endpoints, e, lim.endpoints, "endpoint"),
        )
        if folded in feat.series or folded == _OTHER_HEAD:
            feat.series.add(folded)
            return folded
        if len(feat.series) >= lim.series_per_feature - 1:
            self.count_capped("series_per_feature")
            folded = _OTHER_HEAD
        elif self._n_series >= lim.series:
            self.count_capped("series")
            folded = _OTHER_HEAD
        else:
            self._n_series += 1
        feat.series.add(folded)
        return folded

    def clean_labels(self, labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        """Labels within the caps: at most `label_names` of them (the first ones given),
        names and values clipped to `label_value_length`."""
        lim = self.limits
        limit = lim.label_value_length
        out: list[tuple[str, str]] = []
        for name, value in labels.items():
            if len(out) >= lim.label_names:
                self.count_capped("label_name")
                break
            if len(name) > limit or len(value) > limit:
                self.count_capped("label_value_length")
                name, value = clip(name, limit), clip(value, limit)
            out.append((name, value))
        return tuple(out)

    def _bucket(self, feat: _Feature, ts: float) -> _Bucket:
        key = int(ts // self.tick_s)
        if feat.label_blocks:
            feat.label_blocks.pop(key // LABEL_BLOCK, None)
        bucket = feat.buckets.get(key)
        if bucket is None:
            bucket = feat.buckets[key] = _Bucket()
            if feat.created and key < feat.created[-1]:
                feat.late.append(key)  # out of order: `expire` checks it on its own
            feat.created.append(key)
        if not bucket.queued:
            bucket.queued = True
            feat.to_compact.append(key)
        # A late event inside an evaluated window: that running sum must be rebuilt.
        for win in (feat.calls_win, feat.scores_win):
            if win is not None and win.lo <= key < win.hi:
                win.dirty = True
        return bucket

    def add_call(self, ev: LlmCall) -> str | None:
        """Count one call; the unused reason when it cannot be (the caller counts it)."""
        feat = self._feature(ev.feature)
        if feat is None:
            return "feature_limit"
        b = self._bucket(feat, ev.ts)
        fr = feat.fresh
        status = ev.status
        b.calls += 1
        fr.calls += 1
        ok = (200 <= status < 300) if status is not None else not ev.error
        bad = not ok
        provider_failed = False
        if not ok:
            b.failed += 1
            fr.failed += 1
            if status == 429:
                b.rate_limited += 1
                fr.rate_limited += 1
            elif status == 401 or status == 403:
                b.auth_failed += 1
                fr.auth_failed += 1
            elif status is None or status == 0 or status >= 500:
                provider_failed = True
                b.provider_failed += 1
                fr.provider_failed += 1
        latency = ev.latency_ms
        if ok and latency is not None:
            k = bucket_of(latency)
            b.latency[k] = b.latency.get(k, 0) + 1
        if ev.retries:
            b.retried += 1
            fr.retried += 1
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
            fr.refusal_n += 1
            if ev.refused:
                b.refused += 1
                fr.refused += 1
                bad = True
        if ev.format_ok is not None:
            b.format_n += 1
            fr.format_n += 1
            if ev.format_ok:
                b.format_ok += 1
                fr.format_ok += 1
            else:
                bad = True
        join = fr.join(ev.ts)  # every call chains a batch, failed ones too
        if ok:
            # Successful calls only: a failed call's empty output says nothing about the
            # model's behaviour (the failure is counted by the error metrics).
            self._add_call_sizes(ev, b, fr, join)
        skey = (ev.provider or "", ev.model or "", ev.endpoint or "")
        pair = b.series.get(skey)
        if pair is None:
            skey = self._admit_series(feat, skey)
            pair = b.series.get(skey)
            if pair is None:
                pair = b.series[skey] = [0, 0]
        pair[1] += 1
        if ok:
            pair[0] += 1
        fpair = fr.series.get(skey)
        if fpair is None:
            fpair = fr.series[skey] = [0, 0]
        fpair[1] += 1
        if ok:
            fpair[0] += 1
        if ev.labels and self.split_labels:
            for key in self._split_keys(feat, ev.labels, admit=True):
                for store in (b.splits, fr.splits):  # the bucket's, and this tick's
                    acc = store.get(key)
                    if acc is None:
                        acc = store[key] = list(_SPLIT_ZERO)
                    _count_split(acc, ok, provider_failed, ev.refused, ev.format_ok)
        chars = ev.output_chars if ok else None
        self._count_combo(b, skey, ev.labels, bad, chars)
        self._count_totals(ev, (ev.feature, skey[0], skey[1]), ok)
        return None

    def _split_keys(self, feat: _Feature, labels: Mapping[str, str], admit: bool) -> list[str]:
        """The split series an event's labels put it in (`segment=pro`). A value not yet
        tested is admitted while its label has fewer than `split_values` (`admit`, calls
        only: a value is tested on its calls); past that the call is counted at the feature
        level only and the `split_value` cap counts it. Values are clipped like every label."""
        out: list[str] = []
        for label in self.split_labels:
            value = labels.get(label)
            if value is None:
                continue
            names = feat.split_names.get(label)
            if names is None:
                names = feat.split_names[label] = {}
            key = names.get(value)
            if key is None:
                limit = self.limits.label_value_length
                clipped = clip(value, limit) if len(value) > limit else value
                key = names.get(clipped)
                if key is None:
                    if not admit:
                        continue
                    if len(names) >= self.split_values:
                        self.count_capped("split_value")
                        continue
                    key = names[clipped] = split_series(label, clipped)
            out.append(key)
        return out

    @staticmethod
    def _add_call_sizes(ev: LlmCall, b: _Bucket, fr: _Fresh, join: bool) -> None:
        """A successful call's sizes: window sums, log sums for the history (the per-bin
        geometric mean, `_LOG_MEANS`), and per-call log statistics for the evidence detectors
        (a batch once, `_Fresh`). Latency is tested per output token (and as time to first
        token), so a burst of long answers is one symptom (output tokens), not two."""
        inf = math.inf
        if ev.output_chars is not None:
            b.chars_sum += ev.output_chars
            b.chars_sq += float(ev.output_chars) ** 2  # a float: see `_Bucket`
            b.chars_n += 1
            y = _log1p(ev.output_chars)
            if y != inf:
                b.chars_log += y
                b.chars_log_n += 1
            _add_log(fr.chars, y, join)
        if ev.input_tokens is not None:
            y = _log1p(ev.input_tokens)
            if y != inf:
                b.in_tok_log += y
                b.in_tok_log_n += 1
            _add_log(fr.in_tok, y, join)
        out_tok = ev.output_tokens
        if out_tok is not None:
            y = _log1p(out_tok)
            if y != inf:
                b.out_tok_log += y
                b.out_tok_log_n += 1
            _add_log(fr.out_tok, y, join)
            if ev.latency_ms is not None:
                lpt = ev.latency_ms / (out_tok if out_tok > 1 else 1)
                y = _log1p(lpt)
                b.lpt_sum += lpt
                b.lpt_n += 1
                b.lpt_log += y
                _add_log(fr.lpt, y, join)
        if ev.cost_usd is not None:
            y = _log1p(ev.cost_usd * COST_LOG_SCALE)
            if y != inf:
                b.cost_log += y
                b.cost_log_n += 1
            _add_log(fr.cost, y, join)
        if ev.ttft_ms is not None:
            y = _log1p(ev.ttft_ms)
            b.ttft_sum += ev.ttft_ms
            b.ttft_n += 1
            b.ttft_log += y
            _add_log(fr.ttft, y, join)

    def _count_combo(
        self,
        b: _Bucket,
        head: tuple[str, str, str],
        labels: dict[str, str] | None,
        bad: bool,
        chars: int | None = None,
        score: bool = False,
    ) -> None:
        """Count the call's (with `score`, the score's) whole label set as one key: traffic
        has few distinct label sets, so one dict update replaces one per label. Past
        `label_sets` distinct sets in a bucket (high-cardinality labels), counting falls back
        to per-label counts with a cap.

        Only label sets within the caps are stored, so a raw set found in the bucket needs no
        checks; a new one is cleaned (`clean_labels`) and looked up again."""
        key = (head, tuple(labels.items()) if labels else ())
        counts = b.combos.get(key)
        if counts is None and labels:
            key = (head, self.clean_labels(labels))
            counts = b.combos.get(key)
        if counts is None:
            if len(b.combos) >= self.limits.label_sets:
                self.count_capped("label_set")
                flag = 1 if bad else 0
                one = [0, 0, 0, 0.0, 0, 1, flag] if score else [1, flag, *_chars(chars), 0, 0]
                for name, value in (*zip(_HEAD_NAMES, head, strict=True), *key[1]):
                    if value:
                        self._count_label(b.labels, name, value, one)
                return
            counts = b.combos[key] = [0, 0, 0, 0.0, 0, 0, 0]
        if score:
            counts[5] += 1
            if bad:
                counts[6] += 1
            return
        counts[0] += 1
        if bad:
            counts[1] += 1
        if chars is not None:
            counts[2] += chars
            counts[3] += float(chars) ** 2  # a float, as `_Bucket.chars_sq`
            counts[4] += 1

    def _count_label(
        self,
        labels: dict[str, dict[str, list[float]]],
        name: str,
        value: str,
        add: list[float],
        count_capped: bool = True,
    ) -> None:
        """labels[name][value] += add (the seven `LabelStats` counters), within the caps."""
        values = labels.get(name)
        if values is None:
            if len(labels) >= self.limits.label_names + len(_HEAD_NAMES):
                if count_capped:
                    self.count_capped("label_name")
                return  # too many label names: keep the ones seen first
            values = labels[name] = {}
        counts = values.get(value)
        if counts is None:
            if len(values) >= self.max_label_values - 1:  # the cap includes __other__
                if count_capped:
                    self.count_capped("label_value")
                value = OTHER
                counts = values.get(OTHER)
            if counts is None:
                counts = values[value] = [0, 0, 0, 0.0, 0, 0, 0]
        for i, n in enumerate(add):
            counts[i] += n

    def _compact(self, b: _Bucket) -> None:
        """Fold a bucket's whole label sets into per-label counts.

        Whole sets only make counting fast while the bucket takes events; attribution reads
        per-label counts anyway (`label_counts`), so once a bucket is behind the clock its sets
        are folded. That bounds the 2 h of buckets attribution keeps by label names × values
        instead of by distinct label sets: high-cardinality traffic kept ~450 MB of sets per
        feature. A late event into a folded bucket starts a new set, folded at the next tick.
        """
        labels = b.labels
        for (head, pairs), counts in b.combos.items():
            for name, value in (*zip(_HEAD_NAMES, head, strict=True), *pairs):
                if value:
                    self._count_label(labels, name, value, counts, count_capped=False)
        b.combos = {}

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

    def add_score(self, ev: Score) -> str | None:
        """Count one score; the unused reason when it cannot be (the caller counts it)."""
        feat = self._feature(ev.feature)
        if feat is None:
            return "feature_limit"
        unused = self._admit_name(feat.score_names, ev.name, self.limits.score_names, "score")
        if unused is not None:
            return unused
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
        self._count_combo(b, _NO_HEAD, ev.labels, bad, score=True)
        if self._quality_observation(feat, ev):
            b.score_obs[ev.name] = b.score_obs.get(ev.name, 0) + 1
        hkey = (ev.feature, ev.name)
        hist = self.score_hist.get(hkey)
        if hist is None:
            hist = self.score_hist[hkey] = [0.0] * (len(SCORE_BUCKETS) + 2)
        hist[bisect.bisect_left(SCORE_BUCKETS, ev.value)] += 1
        hist[-1] += ev.value
        return None

    def _quality_observation(self, feat: _Feature, ev: Score) -> bool:
        """File one score for the fused quality verdict.

        A score tied to a call (`request_id`) or to a golden case (`case_id` label) is one
        observation. Any other score belongs to a batch: the scores of one name sharing a
        `run_id` label, or without one the same timestamp (a golden-run harness stamps its
        cases with the run's time), are one golden run, and the run is one observation, its
        mean: its cases share the run's conditions, so they are not independent evidence.
        A lone score with neither (its own timestamp) is a run of one. True when the score
        starts an observation (its own, or a run's first).

        A per-call score whose labels carry a tested split value is also an observation of
        that value's own verdict (a golden run is the whole feature's: not split).
        """
        labels = ev.labels or {}
        if ev.request_id is not None or CASE_LABEL in labels:
            obs = feat.quality_obs.get(ev.name)
            if obs is None:
                obs = feat.quality_obs[ev.name] = []
            obs.append(float(ev.value))
            if labels and feat.split_names:
                for split in self._split_keys(feat, labels, admit=False):
                    per = feat.split_quality.get(split)
                    if per is None:
                        per = feat.split_quality[split] = {}
                    vals = per.get(ev.name)
                    if vals is None:
                        vals = per[ev.name] = []
                    vals.append(float(ev.value))
            return True
        run = labels.get(RUN_LABEL)
        key = (ev.name, f"run:{run}" if run is not None else f"ts:{ev.ts!r}")
        acc = feat.quality_runs.get(key)
        if acc is None:
            feat.quality_runs[key] = [float(ev.value), 1.0, 1.0]
            return True
        acc[0] += ev.value
        acc[1] += 1.0
        acc[2] = 1.0
        return False

    def _quality_parts(self, feature: str, feat: _Feature) -> tuple[ScoreObs, ...]:
        """Hand over the observations since the last tick; runs that got a score this tick
        wait one more tick, so a run posted across a tick boundary stays one observation."""
        values = feat.quality_obs
        feat.quality_obs = {}
        runs = feat.quality_runs
        for key in [k for k, acc in runs.items() if not acc[2]]:
            total, n, _ = runs.pop(key)
            obs = values.get(key[0])
            if obs is None:
                obs = values[key[0]] = []
            obs.append(total / n)
        for acc in runs.values():
            acc[2] = 0.0
        return self._score_obs(feature, values)

    def _score_obs(self, feature: str, values: Mapping[str, list[float]]) -> tuple[ScoreObs, ...]:
        return tuple(
            ScoreObs(name, tuple(vals), self._score_direction(feature, name) != "lower")
            for name, vals in values.items()
        )

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
        fresh, feat.fresh = feat.fresh, _Fresh()
        samples = self._call_samples(name, feat.calls_win.acc, now, fresh)
        feat.scores_win = self._window(
            feat, feat.scores_win, now, self.quality_window_s, _fold_scores
        )
        for sname, (total, n) in feat.scores_win.acc.scores.items():
            if n > 0:
                samples.append(Sample(now, name, "quality", f"score:{sname}", total / n, int(n)))
        if feat.score_names:
            parts = self._quality_parts(name, feat)
            if parts or feat.scores_win.acc.scores:
                # Every tick while scores are in the quality window, so the fused series is
                # not taken for stale between two golden runs; `value` = observations.
                k = sum(len(p.values) for p in parts)
                samples.append(
                    Sample(now, name, "quality", QUALITY_METRIC, float(k), k, parts=parts)
                )
        if feat.split_names:
            self._split_samples(name, feat, feat.calls_win.acc, fresh, now, samples)
        return samples

    def _split_samples(
        self, name: str, feat: _Feature, w: _Bucket, fr: _Fresh, now: float, out: list[Sample]
    ) -> None:
        """The per-value series of the split labels that have at least two tested values
        (one value is the feature itself): the k/n metrics of `SPLIT_METRICS` while the value
        has calls in the window, and its fused quality verdict while it has per-call scores
        in the quality window. Each k/n sample carries the value's own per-tick counts."""
        tested = [
            key for names in feat.split_names.values() if len(names) > 1 for key in names.values()
        ]
        quality = feat.split_quality
        if quality:
            feat.split_quality = {}
            for key in quality:
                feat.split_scored[key] = now
        for key in tested:
            counts = w.splits.get(key)
            if counts is not None:
                calls, failed = counts[S_CALLS], counts[S_FAILED]
                f = fr.splits.get(key, _SPLIT_ZERO)
                f_calls = f[S_CALLS]
                out.append(Sample(
                    now, name, "api", "availability", (calls - failed) / calls, calls, key,
                    TickStats(f_calls, f_calls - f[S_FAILED]),
                ))  # fmt: skip
                out.append(Sample(
                    now, name, "api", "provider_error_rate", counts[S_PROVIDER] / calls, calls,
                    key, TickStats(f_calls, f[S_PROVIDER]),
                ))  # fmt: skip
                n = counts[S_REFUSAL_N]
                if n:
                    out.append(Sample(
                        now, name, "behavioral", "refusal_rate", counts[S_REFUSED] / n, n, key,
                        TickStats(f[S_REFUSAL_N], f[S_REFUSED]),
                    ))  # fmt: skip
                n = counts[S_FORMAT_N]
                if n:
                    out.append(Sample(
                        now, name, "behavioral", "format_compliance_rate",
                        counts[S_FORMAT_OK] / n, n, key, TickStats(f[S_FORMAT_N], f[S_FORMAT_OK]),
                    ))  # fmt: skip
            last = feat.split_scored.get(key)
            if last is not None and now - last <= self.quality_window_s:
                parts = self._score_obs(name, quality.get(key, {}))
                k = sum(len(p.values) for p in parts)
                out.append(Sample(
                    now, name, "quality", QUALITY_METRIC, float(k), k, key, parts=parts
                ))  # fmt: skip

    def _call_samples(self, name: str, w: _Bucket, now: float, fr: _Fresh) -> list[Sample]:
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

        def add(
            layer: Layer,
            metric: str,
            value: float,
            n: int,
            series: str = "",
            tick: TickStats | None = None,
        ) -> None:
            out.append(Sample(now, name, layer, metric, value, n, series, tick))

        f_calls = fr.calls

        ok_n = sum(latency.values())
        if ok_n:
            p50, p95, p99 = quantiles(latency, (0.5, 0.95, 0.99))
            assert p50 is not None and p95 is not None and p99 is not None
            add("infra", "latency_p50_ms", p50, ok_n)
            add("infra", "latency_p95_ms", p95, ok_n)
            add("infra", "latency_p99_ms", p99, ok_n)
        add("infra", "throughput_rpm", calls * 60.0 / self.window_s, calls)
        add("infra", "error_rate", failed / calls, calls, "", TickStats(f_calls, fr.failed))
        if in_n:
            add("infra", "input_tokens_per_request", in_sum / in_n, in_n, "", _log_tick(fr.in_tok))
        if out_n:
            add(
                "infra", "output_tokens_per_request", out_sum / out_n, out_n, "",
                _log_tick(fr.out_tok),
            )  # fmt: skip
        if cost_n:
            add("infra", "cost_per_request_usd", cost / cost_n, cost_n, "", _log_tick(fr.cost))
        if w.lpt_n:
            add(
                "infra", "latency_per_output_token_ms", w.lpt_sum / w.lpt_n, w.lpt_n, "",
                _log_tick(fr.lpt),
            )  # fmt: skip
        if w.ttft_n:
            add("infra", "ttft_ms", w.ttft_sum / w.ttft_n, w.ttft_n, "", _log_tick(fr.ttft))
        add("api", "rate_limited_rate", rl / calls, calls, "", TickStats(f_calls, fr.rate_limited))
        add("api", "auth_failure_rate", auth / calls, calls, "", TickStats(f_calls, fr.auth_failed))
        add(
            "api", "provider_error_rate", prov / calls, calls, "",
            TickStats(f_calls, fr.provider_failed),
        )  # fmt: skip
        add("api", "retry_rate", retried / calls, calls, "", TickStats(f_calls, fr.retried))
        add(
            "api", "availability", (calls - failed) / calls, calls, "",
            TickStats(f_calls, f_calls - fr.failed),
        )  # fmt: skip
        if len(series) > 1:
            for key, (n_ok, total) in series.items():
                label = f"provider={key[0]},model={key[1]},endpoint={key[2]}"
                f_ok, f_n = fr.series.get(key, (0, 0))
                add("api", "availability", n_ok / total, total, label, TickStats(f_n, f_ok))
        if refusal_n:
            add(
                "behavioral", "refusal_rate", refused / refusal_n, refusal_n, "",
                TickStats(fr.refusal_n, fr.refused),
            )  # fmt: skip
        if fmt_n:
            add(
                "behavioral", "format_compliance_rate", fmt_ok / fmt_n, fmt_n, "",
                TickStats(fr.format_n, fr.format_ok),
            )  # fmt: skip
        if chars_n:
            mean = chars_sum / chars_n
            add("behavioral", "output_length_mean", mean, chars_n, "", _log_tick(fr.chars))
            if chars_n > 1 and mean > 0:
                var = max(0.0, (chars_sq - chars_n * mean * mean) / (chars_n - 1))
                add("behavioral", "output_length_cv", math.sqrt(var) / mean, chars_n)
        return out

    def history(
        self,
        feature: str,
        metric: str,
        start: float,
        end: float,
        bin_s: float = 60.0,
        series: str = "",
        spreads: Callable[[str], tuple[float, float] | None] | None = None,
    ) -> list[tuple[float, float, int]]:
        """The metric per bin of `bin_s` over [start, end): (bin start, value, n) for the bins
        with data. The change-point search reads it (`correlator.changepoint`): a window
        value averages `window_s` of buckets and smears a step over minutes; bins do not.
        Metrics the aggregator does not compute (external ones) have no history here; of the
        series, only the split ones (`segment=pro`) of the `SPLIT_METRICS` have one.
        `spreads`: for the fused quality verdict, each score's (mean, deviation) as the
        verdict judges it (`_history_quality`)."""
        feat = self._features.get(feature)
        if feat is None or not self.computes(metric):
            return []
        per_bin = max(1, round(bin_s / self.tick_s))
        if series:
            split_fields = _SPLIT_FIELDS.get(metric)
            if split_fields is None:
                return []
            return self._history_split(feat, series, split_fields, metric, start, end, per_bin)
        if metric == QUALITY_METRIC:
            return self._history_quality(feature, feat, start, end, per_bin, spreads)
        fields = _history_fields(metric)
        if fields is not None:
            return self._history_ratio(feat, fields, metric, start, end, per_bin)
        grouped: dict[int, _Bucket] = {}
        for k in range(int(start // self.tick_s), int(end // self.tick_s)):
            b = feat.buckets.get(k)
            if b is None:
                continue
            acc = grouped.get(k // per_bin)
            if acc is None:
                acc = grouped[k // per_bin] = _Bucket()
            _fold_calls(acc, b, 1)
            _fold_scores(acc, b, 1)
        out: list[tuple[float, float, int]] = []
        width = per_bin * self.tick_s
        for g in sorted(grouped):
            point = _bin_value(grouped[g], metric)
            if point is not None:
                out.append((g * width, point[0], point[1]))
        return out

    def _history_quality(
        self,
        feature: str,
        feat: _Feature,
        start: float,
        end: float,
        per_bin: int,
        spreads: Callable[[str], tuple[float, float] | None] | None,
    ) -> list[tuple[float, float, int]]:
        """`history` of the fused quality verdict, which has no value of its own per bin: the
        feature's scores pooled into one series, each bucket's mean of a score weighted by
        the observations the verdict counts in it (a judge score is one, a golden run is one
        whatever its cases: weighting its cases would let one run drown an hour of judge
        scores), each standardized as the verdict judges it, (x - mean) / deviation from
        `spreads`, so a judge score and a thumbs-up (whose 0/1 spread is five times a judge's)
        add the same noise per observation. A score without a spread counts relative to its
        running mean (`score_ref`) in units of 10% of it. Lower-is-better scores are flipped:
        worse is always lower, as the verdict's direction."""
        refs = feat.score_ref
        sums: dict[int, list[float]] = {}
        for k, b in self._rolled_and_retained(feat, start, end):
            for name, (total, n) in b.scores.items():
                if not n:
                    continue
                w = b.score_obs.get(name) or n
                spread = spreads(name) if spreads is not None else None
                if spread is not None:
                    rel = (total / n - spread[0]) / spread[1]
                else:
                    ref = refs.get(name)
                    if not ref or ref <= 0:
                        continue
                    rel = (total / n / ref - 1.0) * 10.0
                if self._score_direction(feature, name) == "lower":
                    rel = -rel
                acc = sums.get(k // per_bin)
                if acc is None:
                    acc = sums[k // per_bin] = [0.0, 0.0]
                acc[0] += rel * w
                acc[1] += w
        width = per_bin * self.tick_s
        return [(g * width, t / w, int(w)) for g, (t, w) in sorted(sums.items()) if w]

    def _history_ratio(
        self,
        feat: _Feature,
        fields: tuple[str, str],
        metric: str,
        start: float,
        end: float,
        per_bin: int,
    ) -> list[tuple[float, float, int]]:
        """`history` of a metric that is one counter over another (`_history_fields`):
        two sums per bin instead of folding whole buckets (the search reads hours of
        buckets on every context refresh)."""
        num, den = fields
        sums = self._pair_sums(
            feat, start, end, per_bin, lambda b: (getattr(b, num), getattr(b, den))
        )
        width = per_bin * self.tick_s
        out: list[tuple[float, float, int]] = []
        for g in sorted(sums):
            top, n = sums[g]
            if not n:
                continue
            if metric == "availability":
                top = n - top  # failed → ok
            elif metric in _LOG_MEANS:
                # The bin's geometric mean, as the `logmean` detector sees a window: one
                # slow call barely moves it, and the record's levels read in milliseconds.
                unit = _LOG_UNITS.get(metric, 1.0)
                out.append((g * width, math.expm1(top / n) / unit, int(n)))
                continue
            elif metric == "throughput_rpm":
                # Counts per bin: weight 1 each (a Poisson count is its own observation).
                out.append((g * width, n * 60.0 / width, 1))
                continue
            out.append((g * width, float(top) / n, int(n)))
        return out

    def _pair_sums(
        self,
        feat: _Feature,
        start: float,
        end: float,
        per_bin: int,
        read: Callable[[_Bucket], tuple[float, float] | None],
    ) -> dict[int, list[float]]:
        """Bin index → [sum of numerators, sum of denominators] of the buckets over
        [start, end), two counters per bucket as `read` gives them (None: none here)."""
        sums: dict[int, list[float]] = {}
        for k, b in self._rolled_and_retained(feat, start, end):
            pair = read(b)
            if pair is None:
                continue
            acc = sums.get(k // per_bin)
            if acc is None:
                acc = sums[k // per_bin] = [0, 0]
            acc[0] += pair[0]
            acc[1] += pair[1]
        return sums

    def _history_split(
        self,
        feat: _Feature,
        series: str,
        fields: tuple[int, int],
        metric: str,
        start: float,
        end: float,
        per_bin: int,
    ) -> list[tuple[float, float, int]]:
        """`history` of one split series: its two counters summed per bin."""
        num, den = fields

        def read(b: _Bucket) -> tuple[float, float] | None:
            counts = b.splits.get(series)
            return None if counts is None else (counts[num], counts[den])

        sums = self._pair_sums(feat, start, end, per_bin, read)
        width = per_bin * self.tick_s
        out: list[tuple[float, float, int]] = []
        for g in sorted(sums):
            top, n = sums[g]
            if n:
                value = (n - top) / n if metric == "availability" else top / n
                out.append((g * width, value, int(n)))
        return out

    def is_split(self, series: str) -> bool:
        """Whether `series` names a split label value (`segment=pro`), not a provider/model/
        endpoint availability series."""
        return split_value(series, self.split_labels) is not None

    def label_stats(self, feature: str, start: float, end: float) -> LabelStats:
        """Every label counter of a feature's traffic over [start, end): label → value →
        [all, bad, chars_sum, chars_sq, chars_n] (`LabelStats` splits them for the
        correlator). Label values are capped per bucket; over a span of buckets they fold
        again here.

        The correlator asks for hours of buckets on every context refresh of an open
        incident. Whole blocks of `LABEL_BLOCK` buckets are merged once and kept until one of
        their buckets changes, so a refresh merges a dozen blocks and the two partial ends."""
        feat = self._features.get(feature)
        out: dict[str, dict[str, list[float]]] = {}
        if feat is None:
            return LabelStats(out)
        if not feat.buckets:
            return LabelStats(out)
        # An incident open for days asks from its start: begin at the oldest bucket kept.
        lo = max(int(start // self.tick_s), min(feat.buckets))
        hi = int(end // self.tick_s)  # exclusive, as `_span`
        first = -(-lo // LABEL_BLOCK)  # the first whole block
        last = hi // LABEL_BLOCK  # exclusive
        if first >= last:
            self._merge_buckets(out, feat, lo, hi)
            return LabelStats(out)
        self._merge_buckets(out, feat, lo, first * LABEL_BLOCK)
        for blk in range(first, last):
            merged = feat.label_blocks.get(blk)
            if merged is None:
                merged = {}
                self._merge_buckets(merged, feat, blk * LABEL_BLOCK, (blk + 1) * LABEL_BLOCK)
                feat.label_blocks[blk] = merged
            for lname, values in merged.items():
                for value, counts in values.items():
                    self._count_label(out, lname, value, counts, count_capped=False)
        self._merge_buckets(out, feat, last * LABEL_BLOCK, hi)
        return LabelStats(out)

    def _merge_buckets(
        self, out: dict[str, dict[str, list[float]]], feat: _Feature, lo: int, hi: int
    ) -> None:
        """Add the label counters of buckets [lo, hi) to `out` (folded under the caps again,
        as `_compact` folds a bucket's sets; counted there already, so not counted here)."""
        count = self._count_label
        for k in range(lo, hi):
            b = feat.buckets.get(k)
            if b is None:
                continue
            for (head, pairs), counts in b.combos.items():
                if not (counts[0] or counts[5]):
                    continue
                for lname, value in (*zip(_HEAD_NAMES, head, strict=True), *pairs):
                    if value:
                        count(out, lname, value, counts, False)
            for lname, values in b.labels.items():
                for value, counts in values.items():
                    if counts[0] or counts[5]:
                        count(out, lname, value, counts, False)

    def label_counts(
        self, feature: str, start: float, end: float, bad_only: bool = False
    ) -> dict[str, dict[str, int]]:
        """Label value counts of a feature's events (calls and scores) over [start, end)
        (anomalous calls and low scores only with `bad_only`)."""
        stats = self.label_stats(feature, start, end)
        if not bad_only:
            return stats.events()
        out: dict[str, dict[str, int]] = {}
        for counts in (stats.bad(), stats.low_scores()):
            for name, values in counts.items():
                mine = out.setdefault(name, {})
                for v, n in values.items():
                    mine[v] = mine.get(v, 0) + n
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
                        "splits": [[k, *v] for k, v in b.splits.items()],
                        "scores": b.scores,
                        "score_obs": b.score_obs,
                        "labels": b.labels,
                        "combos": [
                            [*h, [list(p) for p in pairs], *c] for (h, pairs), c in b.combos.items()
                        ],
                    }
                )
            features[name] = {
                "buckets": buckets,
                "score_ref": feat.score_ref,
                "fresh": feat.fresh.to_state(),
                "quality_obs": feat.quality_obs,
                "quality_runs": [[n, k, *acc] for (n, k), acc in feat.quality_runs.items()],
                "minutes": [
                    {
                        "k": m,
                        "s": [getattr(b, f) for f in _SCALAR_FIELDS],
                        "splits": [[k, *v] for k, v in b.splits.items()],
                        "scores": b.scores,
                        "score_obs": b.score_obs,
                    }
                    for m, b in sorted(feat.minutes.items())
                ],
                "seen": feat.seen,
                "watched_since": feat.watched_since,
            }
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
            if "fresh" in fstate:  # older snapshots: the increments of one tick are lost
                feat.fresh = _Fresh.from_state(fstate["fresh"])
            # Optional: snapshots before the fused quality verdict have none.
            for sname, vals in fstate.get("quality_obs", {}).items():
                feat.quality_obs.setdefault(sname, []).extend(float(v) for v in vals)
            for sname, key, total, n, fresh in fstate.get("quality_runs", []):
                feat.quality_runs[(sname, key)] = [float(total), float(n), float(fresh)]
            # Optional: snapshots before the minute rollups have none.
            for mstate in fstate.get("minutes", []):
                feat.minutes[int(mstate["k"])] = self._bucket_from_state(mstate)
            # Optional: snapshots before the catalog have none (watching restarts here).
            for lname, values in fstate.get("seen", {}).items():
                seen = feat.seen.setdefault(str(lname), {})
                for value, entry in values.items():
                    first, last, before, *gap = (float(x) for x in entry)
                    seen[str(value)] = [first, last, before, gap[0] if gap else first]
            if fstate.get("watched_since") is not None:
                feat.watched_since = float(fstate["watched_since"])
            for bstate in fstate["buckets"]:
                b = self._bucket_from_state(bstate)
                b.latency = {int(k): int(c) for k, c in bstate["lat"]}
                b.series = {(p, m, e): [ok, n] for p, m, e, ok, n in bstate["series"]}
                # Snapshots from before the output-length counters hold [all, bad] only.
                b.combos = {
                    ((p, m, e), tuple((k, v) for k, v in pairs)): _stat(counts)
                    for p, m, e, pairs, *counts in bstate.get("combos", [])
                }
                b.labels = {
                    n: {v: _stat(c) for v, c in vals.items()}
                    for n, vals in bstate["labels"].items()
                }
                key = int(bstate["k"])
                if key not in feat.buckets:
                    feat.created.append(key)
                feat.buckets[key] = b
                feat.label_blocks.clear()
                if b.combos:
                    b.queued = True
                    feat.to_compact.append(key)
                self._readmit(feat, b)

    @staticmethod
    def _bucket_from_state(bstate: Mapping[str, Any]) -> _Bucket:
        """A bucket's counters, split series and scores from a snapshot (a bucket's or a
        minute rollup's; the caller loads what else a bucket has)."""
        b = _Bucket()
        values = bstate["s"]
        if len(values) > len(_SCALAR_FIELDS):
            raise ValueError("window snapshot bucket has unknown counters")
        for f, v in zip(_SCALAR_FIELDS, values, strict=False):
            setattr(b, f, v)  # counters newer than the snapshot stay at zero
        # Optional: snapshots from before the per-segment series have none.
        b.splits = {str(k): _split_counts(v) for k, *v in bstate.get("splits", [])}
        b.scores = {k: list(v) for k, v in bstate["scores"].items()}
        # Optional: older snapshots count every score as an observation.
        b.score_obs = {k: int(v) for k, v in bstate.get("score_obs", {}).items()}
        return b

    def _readmit(self, feat: _Feature, b: _Bucket) -> None:
        """Values in restored buckets keep their slots (even past a lowered cap)."""
        for split in b.splits:
            label, _, value = split.partition("=")
            if label in self.split_labels:
                feat.split_names.setdefault(label, {}).setdefault(value, split)
        for key in b.series:
            if key not in feat.series:
                feat.series.add(key)
                feat.providers.add(key[0])
                feat.models.add(key[1])
                feat.endpoints.add(key[2])
                if key != _OTHER_HEAD:
                    self._n_series += 1
        for name in b.scores:
            if name not in feat.score_names:
                feat.score_names.add(name)
                self._n_series += 1

    def expire(self, now: float) -> None:
        """Drop buckets older than the retention and fold the label sets of buckets behind
        the clock (`_compact`); call once per tick.

        A feature keeps its slot (and its counters) once seen, so the feature cap is stable
        across idle hours and `/metrics` counters never go backwards.
        """
        oldest = int((now - self.retention_s) // self.tick_s)
        behind = int(now // self.tick_s) - 1  # the bucket being filled and the one before
        for feat in self._features.values():
            buckets, created = feat.buckets, feat.created
            # Keys are created in time order but for late events, which `late` holds.
            while created and created[0] < oldest:
                k = created.popleft()
                gone = buckets.pop(k, None)
                if gone is not None:
                    feat.label_blocks.pop(k // LABEL_BLOCK, None)
                    self._keep_minute(feat, k, gone)
            if feat.late:
                for k in [k for k in feat.late if k < oldest]:
                    gone = buckets.pop(k, None)
                    if gone is not None:
                        feat.label_blocks.pop(k // LABEL_BLOCK, None)
                        self._keep_minute(feat, k, gone)
                feat.late = [k for k in feat.late if k in buckets]
            if feat.minutes:
                horizon = int((now - MINUTE_HISTORY_S) // 60.0)
                for minute in [m for m in feat.minutes if m < horizon]:
                    del feat.minutes[minute]
            queue = feat.to_compact
            if queue and queue[0] < behind:
                keep = []
                for k in queue:
                    if k >= behind:
                        keep.append(k)
                        continue
                    b = buckets.get(k)
                    if b is not None:
                        b.queued = False
                        if b.combos:
                            self._compact(b)
                        self._note_seen(feat, k, b)
                feat.to_compact = keep

    def _keep_minute(self, feat: _Feature, key: int, b: _Bucket) -> None:
        """Fold an expiring bucket into its minute's rollup (`_Feature.minutes`)."""
        minute = int(key * self.tick_s // 60.0)
        acc = feat.minutes.get(minute)
        if acc is None:
            acc = feat.minutes[minute] = _Bucket()
        for name in _SCALAR_FIELDS:
            setattr(acc, name, getattr(acc, name) + getattr(b, name))
        if b.splits:
            _fold_splits(acc.splits, b.splits, 1)
        for name, (total, n) in b.scores.items():
            score = acc.scores.get(name)
            if score is None:
                score = acc.scores[name] = [0.0, 0]
            score[0] += total
            score[1] += n
        for name, obs in b.score_obs.items():
            acc.score_obs[name] = acc.score_obs.get(name, 0) + obs

    def _rolled_and_retained(
        self, feat: _Feature, start: float, end: float
    ) -> Iterator[tuple[int, _Bucket]]:
        """(tick index, bucket) over [start, end): the minute rollups of expired buckets,
        then the retained buckets. The history readers' one source, so a change-point search
        reaches back `MINUTE_HISTORY_S` for the counters and scores a rollup keeps."""
        for minute in sorted(feat.minutes):
            t = minute * 60.0
            if start <= t < end:
                yield int(t // self.tick_s), feat.minutes[minute]
        for k in range(int(start // self.tick_s), int(end // self.tick_s)):
            b = feat.buckets.get(k)
            if b is not None:
                yield k, b

    def _note_seen(self, feat: _Feature, key: int, b: _Bucket) -> None:
        """Update the first/last-seen catalog from a compacted bucket's label counters.

        Bounded like the counters: per label at most `label_values` values; a new value past
        that evicts the one seen longest ago (a high-cardinality label keeps churning, a
        version label keeps its few values)."""
        t = key * self.tick_s
        if feat.watched_since is None or t < feat.watched_since:
            feat.watched_since = t
        cap = self.limits.label_values
        before: float | None = None  # events in the hour before this bucket, once needed
        for name, values in b.labels.items():
            seen = feat.seen.get(name)
            if seen is None:
                seen = feat.seen[name] = {}
            for value, counts in values.items():
                if value == OTHER or not (counts[0] or counts[5]):
                    continue
                entry = seen.get(value)
                if entry is None:
                    if len(seen) >= cap:
                        del seen[min(seen, key=lambda v: seen[v][1])]
                    if before is None:
                        before = float(self._events_in(feat, key - self._hour_buckets, key))
                    seen[value] = [t, t, before, self._quiet_since(feat, key)]
                elif t > entry[1]:
                    entry[1] = t
                elif t < entry[0]:
                    entry[0] = t  # a late event into an older bucket

    def _quiet_since(self, feat: _Feature, key: int) -> float:
        """End of the last bucket before `key` (within the hour) that held calls, else the
        start of `key`: a value first seen in `key` was switched to somewhere after it."""
        for k in range(key - 1, key - self._hour_buckets - 1, -1):
            b = feat.buckets.get(k)
            if b is not None and b.calls:
                return (k + 1) * self.tick_s
        return key * self.tick_s

    def _events_in(self, feat: _Feature, lo: int, hi: int) -> int:
        """Events (calls and scores) in buckets [lo, hi): the largest per-label total of
        their counters, as every event carries at least its widest label."""
        out: dict[str, dict[str, list[float]]] = {}
        self._merge_buckets(out, feat, lo, hi)
        return int(max((sum(c[0] + c[5] for c in v.values()) for v in out.values()), default=0))

    def new_values(
        self, feature: str, since: float
    ) -> list[tuple[str, str, float, float, int, float]]:
        """(label, value, first seen, last seen, events in the hour before, end of the quiet
        gap before it began) of the values a feature first showed at or after `since`, when a
        whole hour of its traffic was watched before them: a value present when watching
        began is not known to be new."""
        feat = self._features.get(feature)
        if feat is None or feat.watched_since is None:
            return []
        lo = max(since, feat.watched_since + self._hour_buckets * self.tick_s)
        return [
            (name, value, entry[0], entry[1], int(entry[2]), entry[3])
            for name, values in sorted(feat.seen.items())
            for value, entry in sorted(values.items())
            if entry[0] >= lo
        ]


MINUTE_HISTORY_S = 6 * 3600.0
"""How long expired buckets are kept as minute rollups (`_Feature.minutes`): the change-point
search reads `changepoint_lookback_s` (4 h) before an incident's onset, and a slow decline is
detected up to 2 h after it began. About 0.5 KB a minute per feature, 200 KB over 6 h."""

LABEL_BLOCK = 40
"""Buckets per cached block of label counters (`Aggregator.label_stats`): 10 minutes at
15-s ticks, so a 3-hour span is about 18 blocks."""

# Score histogram buckets: scores are mostly in [0, 1] or small integer scales (1-5, 1-10).
SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 2.0, 3.0, 4.0, 5.0, 10.0)


# Metrics whose value is a share of calls (k of n): their history's bins are searched with
# a binomial likelihood (`correlator.changepoint`).
PROPORTIONS = frozenset(
    {
        "availability",
        "error_rate",
        "rate_limited_rate",
        "auth_failure_rate",
        "provider_error_rate",
        "retry_rate",
        "refusal_rate",
        "format_compliance_rate",
    }
)

_RATIOS: dict[str, tuple[str, str]] = {
    "error_rate": ("failed", "calls"),
    "rate_limited_rate": ("rate_limited", "calls"),
    "auth_failure_rate": ("auth_failed", "calls"),
    "provider_error_rate": ("provider_failed", "calls"),
    "retry_rate": ("retried", "calls"),
    "refusal_rate": ("refused", "refusal_n"),
    "format_compliance_rate": ("format_ok", "format_n"),
}
_LOG_MEANS: dict[str, tuple[str, str]] = {
    "ttft_ms": ("ttft_log", "ttft_n"),
    "latency_per_output_token_ms": ("lpt_log", "lpt_n"),
    "input_tokens_per_request": ("in_tok_log", "in_tok_log_n"),
    "output_tokens_per_request": ("out_tok_log", "out_tok_log_n"),
    "cost_per_request_usd": ("cost_log", "cost_log_n"),
    "output_length_mean": ("chars_log", "chars_log_n"),
}
"""Metrics whose history is the per-bin geometric mean (sum of log1p over n), as their
`logmean` detectors read them: a heavy-tailed size's plain bin mean swings with one long
prompt or answer. Their window values stay plain means (the dashboards' per-request
average)."""
_LOG_UNITS = {"cost_per_request_usd": COST_LOG_SCALE}
"""Units per metric unit of a log sum (cost: micro-dollars, as the detector's)."""

_QUANTILES = {"latency_p50_ms": 0.5, "latency_p95_ms": 0.95, "latency_p99_ms": 0.99}


def _history_fields(metric: str) -> tuple[str, str] | None:
    """(numerator, denominator) bucket counters of a metric that is a ratio of two sums
    (`Aggregator._history_ratio`); None for quantiles, spreads and scores (`_bin_value`)."""
    if metric in _RATIOS:
        return _RATIOS[metric]
    if metric == "availability":
        return "failed", "calls"
    if metric in _LOG_MEANS:
        return _LOG_MEANS[metric]
    if metric == "throughput_rpm":
        return "calls", "calls"
    return None


def _bin_value(b: _Bucket, metric: str) -> tuple[float, int] | None:
    """(value, n) over one merged bin, as `_call_samples` computes it, for the metrics that
    are not a ratio of two counters (those are `_history_fields`)."""
    if metric in _QUANTILES:
        ok_n = sum(b.latency.values())
        if not ok_n:
            return None
        (q,) = quantiles(b.latency, (_QUANTILES[metric],))
        return None if q is None else (float(q), ok_n)
    if metric == "output_length_cv":
        if b.chars_n < 2 or b.chars_sum <= 0:
            return None
        mean = b.chars_sum / b.chars_n
        var = max(0.0, (b.chars_sq - b.chars_n * mean * mean) / (b.chars_n - 1))
        return math.sqrt(var) / mean, b.chars_n
    if metric.startswith("score:"):
        acc = b.scores.get(metric.removeprefix("score:"))
        if not acc or not acc[1]:
            return None
        return acc[0] / acc[1], int(acc[1])
    return None


def _split_counts(raw: Sequence[object]) -> list[int]:
    """A split series' counters from a snapshot: exactly the seven S_* integers."""
    if len(raw) != len(_SPLIT_ZERO):
        raise ValueError(f"split counters must be {len(_SPLIT_ZERO)} integers")
    out = []
    for x in raw:
        if not isinstance(x, int):
            raise ValueError("split counters must be integers")
        out.append(x)
    return out


def _chars(chars: int | None) -> tuple[int, float, int]:
    # The square as a float: an int sum of squares of in-range lengths overflows what the
    # snapshot (orjson, 64-bit ints) can encode after ten calls.
    return (0, 0.0, 0) if chars is None else (chars, float(chars) ** 2, 1)


def _stat(counts: list[float]) -> list[float]:
    """A label counter from a snapshot, padded to the seven counters (the sum of squares, the
    fourth, stays a float: see `_chars`). Snapshots before scores counted apart hold five, the
    first two counting calls and scores together."""
    out: list[float] = [float(c) if i == 3 else int(c) for i, c in enumerate(counts[:7])]
    return out + [0] * (7 - len(out))


@dataclass(frozen=True, slots=True)
class LabelStats:
    """label → value → [calls, bad calls, chars_sum, chars_sq, chars_n, scores, low scores]
    over a span, split into the shapes the correlator's `FeatureContext` takes."""

    counters: Mapping[str, Mapping[str, list[float]]]

    def _pick(self, k: int) -> dict[str, dict[str, int]]:
        return {
            name: {v: int(c[k]) for v, c in values.items() if c[k]}
            for name, values in self.counters.items()
        }

    def all(self) -> dict[str, dict[str, int]]:
        return self._pick(0)

    def bad(self) -> dict[str, dict[str, int]]:
        return self._pick(1)

    def scores(self) -> dict[str, dict[str, int]]:
        return self._pick(5)

    def low_scores(self) -> dict[str, dict[str, int]]:
        return self._pick(6)

    def events(self) -> dict[str, dict[str, int]]:
        """Calls and scores: the traffic a rollout's share is of."""
        return {
            name: {v: int(c[0] + c[5]) for v, c in values.items() if c[0] or c[5]}
            for name, values in self.counters.items()
        }

    def lengths(self) -> dict[str, dict[str, tuple[int, float, int]]]:
        """(sum, sum of squares, n) of output characters per value with any."""
        return {
            name: {v: (int(c[2]), float(c[3]), int(c[4])) for v, c in values.items() if c[4]}
            for name, values in self.counters.items()
        }
