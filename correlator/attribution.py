"""Attribution: which label value changed when the incident started.

The span is split at the incident's estimated start (`started_at`, see
`correlator.changepoint`), not at the detection: a quality detector that fires 45 min after a
silent model switch would otherwise compare the new version with itself, and a version that
comes back after a rollback would look new. "Before" is the hour that ends at the start,
"after" runs from the start to now (`FeatureContext`).

Two questions per label (prompt_version, model_version, model, segment, experiment, ...):

- **new value** (a rollout): did the value not exist before, and does it hold a
  significantly large share of the traffic since? The pipeline keeps a catalog of when each
  label value was first seen (`FeatureContext.rollouts`): a value first seen within the
  change lookback before the start is tested, its share of all events from its first
  appearance against 0 in the hour before it (two-proportion z test). The split is at the
  value's own appearance, not at `started_at` (it must carry at least `ROLLOUT_MIN_SHARE`
  of the events since, and have appeared near the start: `correlator._rollouts_near`), so an
  estimate a few minutes late (the
  change-point search found nothing and the start is the detection) still sees the rollout,
  and a version that comes back after a rollback, known to the catalog from before, is never
  new. Without a catalog (`rollouts` None) the share after the start is tested against the
  hour before it, a value being new when that share was below `NEW_VALUE_MAX_BASELINE`.
  A new prompt or model version rolled out to everyone is the prime suspect, whatever the
  anomalous events say.
- **moved** (a fault in part of the traffic): did the anomalous rate of calls (errors,
  refusals, malformed outputs — the per-call flags the aggregator keeps per label value)
  rise within this value more than in the rest of the traffic? When the incident has a
  quality signal, the same on the share of scores below their running mean (`metric:
  "quality"`), counted apart from calls: pooled, a value that gets more scores per call
  looked worse whenever the calls' error rate moved (a 429 storm named a segment).
  Difference in differences, (rate after − before within the value) − (the same for the
  rest), over its standard error, and the value's own rise at least `MIN_LIFT` times the
  rest's. A provider outage raises every segment alike: nothing stands out, nothing is
  named. Asked only when the incident has a signal that counts such calls (`calls`: the
  error and compliance families): a retrieval drift that fired latency and input size once
  named a segment whose failures rose from 4.5% to 7.2% meanwhile, a real difference that
  was not what fired.
- **output length moved** (when the incident has an output-size signal: output length mean
  or output tokens per request): the same difference in differences on the mean output
  characters per value (`metric: "output_length"`), with each side's standard error from its
  own variance, one-sided in the direction the signal moved.

Both are one-sided z tests at level `alpha` with Bonferroni over every test made in the call,
so the false-suspect rate of one look is at most `alpha` whatever the number of labels and
values (CONVENTIONS 13). An incident is looked at again at every refresh while it fires, and
an answer found once stands, so the caller spends its level across looks (`look_alpha`).
When nothing passes, attribution is empty rather than a guess. New values rank first (by z),
then moved values (by z); top `top`.

`__other__` (the cap's overflow bucket) counts in the totals and is never named.

Per-value series (`split_suspects`). When a label value has series of its own
(`segment=pro`, docs/detectors.md "Per-segment tests") and one of them fired, the question is
asked on that series' own metric rather than on the pooled anomalous flag: did this value's
rate (its refusals, its failures) move since the start more than the rest of the feature's?
The same difference in differences as **moved**, read from the per-minute history of the
value and of the whole feature (the rest is their difference), split at the incident's
estimated start. On top of significance the value's rise must be at least `MIN_LIFT`
times the rest's: a provider outage fires every segment's availability alike, so none stands
out and none is named; a fault in one segment names it, first, ahead of the label-count
tests. (A start estimated late, from a member with no history such as a quality verdict,
leaves part of the fault in "before" and weakens the test; the label-count tests still run.)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from statistics import NormalDist

from correlator.incident import Attribution
from correlator.records import FeatureContext, HistoryFn, LabelCounts, rfc3339
from detectors.base import split_value

OTHER = "__other__"
_Counts = Mapping[str, int]
NEW_VALUE_MAX_BASELINE = 0.01
ROLLOUT_MIN_SHARE = 0.9
"""A value first seen shortly before an incident is its prime suspect by timing alone only
when it carries (nearly) all the traffic since (a rollout): then there is no rest to compare
it with. A canary or an experiment arm on part of the traffic is named only when the metric
moved within it more than in the rest (the "moved" tests), else an arm that took half the
traffic an hour before a retrieval drift would be blamed for it. 0.9 leaves room for calls
of the old version still in flight and retried after the switch."""
SPLIT_BASELINE_S = 3600.0
"""The span before the start that a firing value's rates are compared with (the same hour
the label counts' baseline covers)."""
MIN_LIFT = 2.0
"""A "moved" value's own rise (after the start minus before) must be at least this many times
the rest's. A fault confined to one value leaves the rest where it was; a provider outage or
a drift moves every value alike, and with thousands of calls a small difference between
values (retries of failed calls keep their segment, batches share one) is significant
without being that value's fault."""


def look_alpha(alpha: float, span_s: float, first_span_s: float) -> float:
    """The level of one look at an incident's attribution, `span_s` after its start, when
    the first look came `first_span_s` after it: `alpha`·6/(π²·j²) in the j-th doubling
    of the span since the first look, so the levels of the doublings sum to `alpha`.

    Each look is at most `alpha`, but an incident is looked at once a minute for its first
    hour and an answer found once stands: a provider outage at 1.4 calls a minute named the
    segment whose 5 of 34 calls failed against 1 of 94 in the rest (one-sided p 0.006), at a
    look an hour after the outage ended (held-out world 1005). Looks within one doubling
    share at least half their data, so they are counted as one (an approximation: the
    running maximum of a z over a doubling of its data exceeds a fixed threshold a few
    times more often than one look does). The first look keeps most of the level, 0.61 α:
    a fault in one segment is found when it is detected, not hours later."""
    j = 1
    if first_span_s > 0 and span_s > first_span_s:
        j += math.floor(math.log2(span_s / first_span_s))
    return alpha * 6.0 / (math.pi**2 * j * j)


@dataclass(frozen=True, slots=True)
class _Candidate:
    rank: int  # 0 new value, 1 moved
    z: float
    attr: Attribution


def _values(counts: LabelCounts, label: str) -> Mapping[str, int]:
    return counts.get(label, {})


def _total(values: Mapping[str, int]) -> int:
    return sum(max(v, 0) for v in values.values())


def _rate(bad: float, n: float) -> float:
    """Anomalous rate with half an event of smoothing, so a zero count has a variance."""
    return (bad + 0.5) / (n + 1.0)


def _pooled_var(bad: float, n: float, *sizes: float) -> float:
    """Variance of a difference of rates under "no difference": the rate pooled over both
    sides (`bad` of `n`), times the sum of 1/size. Each side's own rate (Wald) understates
    it when one side is small and happens to have no anomalous event: the 5 calls of the
    rest none of which failed, beside 29 of 67 of a night's segment in a 429 storm, gave z
    2.6 with each side's own rate and 1.6 pooled."""
    rate = _rate(bad, n)
    return rate * (1.0 - rate) * sum(1.0 / max(k, 1.0) for k in sizes)


def attribute(
    ctx: FeatureContext,
    min_support: int = 5,
    min_delta: float = 0.1,
    top: int = 3,
    alpha: float = 0.01,
    lengths: int = 0,
    scores: bool = False,
    calls: bool = True,
) -> tuple[Attribution, ...]:
    """Label values that changed at `ctx.start`, with their numbers; () when none did.

    `min_support`: events a value needs after the start to be tested; `min_delta`: the
    smallest share gain a new value needs (a value at 0.5% of traffic is not a rollout);
    `lengths`: +1 / -1 also tests the output length per value for a rise / fall (the
    incident has an output-size signal that went that way); 0 does not. `scores`: also test
    the low-score rate per value (the incident has a quality signal). `calls`: test the
    anomalous call rate per value (the incident has a signal that counts such calls: errors,
    refusals, malformed outputs). Each test asks about a quantity that fired: a retrieval
    drift fires latency and input size, and a segment whose failures happened to rise a
    little meanwhile is not its cause.
    """
    labels = sorted(set(ctx.all_labels) | set(ctx.baseline_labels))
    tests: list[tuple[str, str, str]] = []  # (kind, label, value), to count for Bonferroni
    # With the pipeline's catalog of values, "new" means first seen within the lookback
    # (`_rollout`); a value the catalog knows from before is never new, however absent it
    # was in the hour before the start (a version back after a rollback).
    rollouts = {(r.label, r.value): r for r in ctx.rollouts or ()}
    for r in rollouts.values():
        if r.value != OTHER and r.count_after >= min_support:
            tests.append(("rollout", r.label, r.value))
    per_label: list[tuple[str, _Counts, _Counts, _Counts, _Counts]] = []
    for label in labels:
        after = _values(ctx.all_labels, label)
        before = _values(ctx.baseline_labels, label)
        bad_after = _values(ctx.bad_labels, label)
        bad_before = _values(ctx.baseline_bad_labels, label)
        per_label.append((label, after, before, bad_after, bad_before))
        for value in sorted(after):
            if value == OTHER or after[value] < min_support:
                continue
            if ctx.rollouts is None:
                tests.append(("new", label, value))
            if calls:
                tests.append(("moved", label, value))
            if lengths:
                tests.append(("length", label, value))
    score_labels: list[tuple[str, _Counts, _Counts, _Counts, _Counts]] = []
    if scores:
        for label in sorted(set(ctx.score_labels) | set(ctx.baseline_score_labels)):
            s_after = _values(ctx.score_labels, label)
            score_labels.append(
                (
                    label,
                    s_after,
                    _values(ctx.baseline_score_labels, label),
                    _values(ctx.low_score_labels, label),
                    _values(ctx.baseline_low_score_labels, label),
                )
            )
            for value in sorted(s_after):
                if value != OTHER and s_after[value] >= min_support:
                    tests.append(("low_scores", label, value))
    if not tests:
        return ()
    z_crit = NormalDist().inv_cdf(1.0 - alpha / len(tests))

    found: dict[tuple[str, str], _Candidate] = {}
    for (label, value), r in rollouts.items():
        if value == OTHER or r.count_after < min_support:
            continue
        if r.count_after < ROLLOUT_MIN_SHARE * r.events_after:
            continue  # a canary or an experiment arm: a suspect only if it moved (below)
        cand = _new_value(
            label, value, r.count_after, r.events_after, 0, r.events_before, z_crit, min_delta
        )
        if cand is not None:
            attr = replace(cand.attr, first_seen=rfc3339(r.first_seen))
            found[(label, value)] = _Candidate(cand.rank, cand.z, attr)
    for label, *counts in per_label:
        for value, mine_a, mine_b in _sides(counts, min_support):
            for cand in (
                None
                if ctx.rollouts is not None
                else _new_value(label, value, *mine_a[:2], *mine_b[:2], z_crit, min_delta),
                _moved(label, value, mine_a, mine_b, z_crit, min_support) if calls else None,
                _moved_length(
                    label,
                    value,
                    ctx.lengths.get(label, {}),
                    ctx.baseline_lengths.get(label, {}),
                    z_crit,
                    min_support,
                    lengths,
                )
                if lengths
                else None,
            ):
                _keep_best(found, label, value, cand)
    for label, *counts in score_labels:
        for value, mine_a, mine_b in _sides(counts, min_support):
            cand = _moved(label, value, mine_a, mine_b, z_crit, min_support)
            if cand is not None:
                cand = _Candidate(cand.rank, cand.z, replace(cand.attr, metric="quality"))
            _keep_best(found, label, value, cand)
    order = sorted(found.items(), key=lambda kv: (kv[1].rank, -kv[1].z, kv[0]))
    return tuple(c.attr for _, c in order[:top])


def _sides(
    counts: list[_Counts], min_support: int
) -> Iterator[tuple[str, tuple[int, int, int, int], tuple[int, int, int, int]]]:
    """Per value of one label with `min_support` events after the start (never `__other__`):
    (value, (its events, all events, its anomalous, all anomalous) after the start, the same
    before), from the label's [after, before, anomalous after, anomalous before] counts."""
    after, before, bad_after, bad_before = counts
    n_a, n_b = _total(after), _total(before)
    nb_a, nb_b = _total(bad_after), _total(bad_before)
    for value in sorted(after):
        k_a = after[value]
        if value == OTHER or k_a < min_support:
            continue
        yield (
            value,
            (k_a, n_a, bad_after.get(value, 0), nb_a),
            (before.get(value, 0), n_b, bad_before.get(value, 0), nb_b),
        )


def _keep_best(
    found: dict[tuple[str, str], _Candidate], label: str, value: str, cand: _Candidate | None
) -> None:
    """Keep the strongest candidate per value: new values before moved ones, then by z."""
    if cand is None:
        return
    cur = found.get((label, value))
    if cur is None or (cand.rank, -cand.z) < (cur.rank, -cur.z):
        found[(label, value)] = cand


def _new_value(
    label: str,
    value: str,
    k_a: int,
    n_a: int,
    k_b: int,
    n_b: int,
    z_crit: float,
    min_delta: float,
) -> _Candidate | None:
    if n_a <= 0 or n_b <= 0:
        return None  # no traffic before the start: nothing can be "new" against it
    share_a, share_b = k_a / n_a, k_b / n_b
    if share_b >= NEW_VALUE_MAX_BASELINE or share_a - share_b < min_delta:
        return None
    pooled = (k_a + k_b) / (n_a + n_b)
    se = math.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / n_a + 1 / n_b))
    z = (share_a - share_b) / se
    if z < z_crit:
        return None
    attr = Attribution(
        label,
        value,
        round(share_a, 3),
        round(share_b, 3),
        "new_value",
        share_after=round(share_a, 3),
        z=round(z, 2),
        n=k_a,
    )
    return _Candidate(0, z, attr)


def _moved(
    label: str,
    value: str,
    after: tuple[int, int, int, int],
    before: tuple[int, int, int, int],
    z_crit: float,
    min_support: int,
) -> _Candidate | None:
    """Difference in differences of the anomalous rate: this value vs the rest."""
    k_a, n_a, b_a, _ = after
    if n_a - k_a < min_support or b_a < min_support:
        return None  # no rest to compare with (one provider), or too few anomalous events
    found = _diff_in_diff(label, value, after, before, min_support)
    if found is None or found[0] < z_crit:
        return None
    return _Candidate(1, *found)


def _diff_in_diff(
    label: str,
    value: str,
    after: tuple[int, int, int, int],
    before: tuple[int, int, int, int],
    min_support: int,
    metric: str | None = None,
) -> tuple[float, Attribution] | None:
    """(z, attribution) of a value's rise in a rate against the rest's, from (its events,
    all events, its anomalous, all anomalous) after the start and the same before; None
    when its rise is under `MIN_LIFT` times the rest's. The label-count test (`_moved`)
    and the per-value series test (`_split_moved`) share it; each checks its own support."""
    k_a, n_a, b_a, nb_a = after
    k_b, n_b, b_b, nb_b = before
    rest_a, rest_bad_a = n_a - k_a, nb_a - b_a
    r_va, r_oa = _rate(b_a, k_a), _rate(rest_bad_a, rest_a)
    var = _pooled_var(nb_a, n_a, k_a, rest_a)
    # Before the start: each side's own rate when it had traffic, else the label's pooled
    # rate (a value that is new has no "before" of its own).
    pooled_b = _rate(nb_b, n_b)
    rest_b = n_b - k_b
    own_b = [size for size in (k_b, rest_b) if size >= min_support]
    var += _pooled_var(nb_b, n_b, *own_b) if own_b else 0.0
    r_vb = _rate(b_b, k_b) if k_b >= min_support else pooled_b
    r_ob = _rate(nb_b - b_b, rest_b) if rest_b >= min_support else pooled_b
    lift, rest_lift = r_va - r_vb, r_oa - r_ob
    if n_b >= min_support and lift < MIN_LIFT * max(rest_lift, 0.0):
        return None  # (with no "before" at all only the rates after can be compared)
    z = (lift - rest_lift) / math.sqrt(var)
    attr = Attribution(
        label,
        value,
        round(b_a / nb_a, 3) if nb_a else 0.0,
        round(k_b / n_b, 3) if n_b else 0.0,
        "moved",
        share_after=round(k_a / n_a, 3) if n_a else None,
        bad_rate=round(b_a / k_a, 4),
        baseline_bad_rate=round(b_b / k_b, 4) if k_b else None,
        rest_bad_rate=round(rest_bad_a / rest_a, 4),
        z=round(z, 2),
        n=k_a,
        metric=metric,
    )
    return z, attr


def _mean_var(s: float, sq: float, n: float) -> tuple[float, float]:
    """Mean and variance of the mean from a (sum, sum of squares, n) triple."""
    mean = s / n
    var = max(0.0, (sq - n * mean * mean) / max(n - 1, 1))
    return mean, var / n


def _moved_length(
    label: str,
    value: str,
    after: Mapping[str, tuple[int, float, int]],
    before: Mapping[str, tuple[int, float, int]],
    z_crit: float,
    min_support: int,
    sign: int,
) -> _Candidate | None:
    """Difference in differences of the mean output length: this value vs the rest, in the
    direction `sign` (+1 longer, -1 shorter)."""
    mine = after.get(value)
    rest = [t for v, t in after.items() if v != value]
    if mine is None or mine[2] < min_support or not rest:
        return None
    rest_t = tuple(sum(t[i] for t in rest) for i in range(3))
    if rest_t[2] < min_support:
        return None
    m_va, v_va = _mean_var(*mine)
    m_oa, v_oa = _mean_var(*rest_t)
    var = v_va + v_oa
    pooled = tuple(sum(t[i] for t in before.values()) for i in range(3))
    if pooled[2] < min_support:
        return None  # no "before" to difference against
    m_pb, v_pb = _mean_var(*pooled)
    own_b = before.get(value)
    if own_b is not None and own_b[2] >= min_support:
        m_vb, v_vb = _mean_var(*own_b)
    else:
        m_vb, v_vb = m_pb, v_pb
    rest_b = tuple(pooled[i] - (own_b[i] if own_b else 0) for i in range(3))
    if rest_b[2] >= min_support:
        m_ob, v_ob = _mean_var(*rest_b)
    else:
        m_ob, v_ob = m_pb, v_pb
    var += v_vb + v_ob
    if var <= 0:
        return None
    lift, rest_lift = sign * (m_va - m_vb), sign * (m_oa - m_ob)
    if lift < MIN_LIFT * max(rest_lift, 0.0):
        return None
    z = (lift - rest_lift) / math.sqrt(var)
    if z < z_crit:
        return None
    n_a = mine[2] + rest_t[2]
    n_b = pooled[2]
    attr = Attribution(
        label,
        value,
        round(mine[2] / n_a, 3),
        round((own_b[2] if own_b else 0) / n_b, 3),
        "moved",
        share_after=round(mine[2] / n_a, 3),
        z=round(z, 2),
        n=mine[2],
        metric="output_length",
        mean_after=round(m_va, 1),
        mean_before=round(m_vb, 1),
        rest_mean_after=round(m_oa, 1),
    )
    return _Candidate(1, z, attr)


def split_suspects(
    fired: Sequence[tuple[str, str, bool]],
    ctx: FeatureContext,
    start: float,
    now: float,
    alpha: float = 0.01,
    min_support: int = 5,
) -> tuple[Attribution, ...]:
    """Label values whose own series fired and whose rate moved more than the rest's.

    `fired`: (metric, series, bad_is_down) of the incident's members, where
    `bad_is_down` says the metric's bad side is its complement (availability, format
    compliance). Only series of `ctx.split_labels` with a history count; one-sided z tests
    at `alpha`, Bonferroni over the series tested; strongest first."""
    if ctx.history is None or not ctx.split_labels:
        return ()
    tests: list[tuple[str, str, str, bool]] = []
    seen: set[tuple[str, str]] = set()
    values_fired: dict[tuple[str, str], set[str]] = {}
    for metric, series, down in fired:
        split = split_value(series, ctx.split_labels)
        if split is None or split[1] == OTHER:
            continue
        label, value = split
        values_fired.setdefault((metric, label), set()).add(value)
        if (metric, series) not in seen:
            seen.add((metric, series))
            tests.append((metric, label, value, down))
    # A metric that fired in two or more values of a label is not confined to one of them
    # (an outage fires every segment's availability): naming the one whose rise happened to
    # be largest would be a guess. Retries of failed calls keep their segment, so such
    # chance differences pass a binomial test more often than its level says.
    tests = [t for t in tests if len(values_fired[(t[0], t[1])]) == 1]
    if not tests:
        return ()
    z_crit = NormalDist().inv_cdf(1.0 - alpha / len(tests))
    best: dict[tuple[str, str], tuple[float, Attribution]] = {}
    for metric, label, value, down in tests:
        cand = _split_moved(ctx.history, metric, label, value, down, start, now, min_support)
        if cand is None or cand[0] < z_crit:
            continue
        cur = best.get((label, value))
        if cur is None or cand[0] > cur[0]:
            best[(label, value)] = cand
    order = sorted(best.values(), key=lambda c: (-c[0], c[1].label, c[1].value))
    return tuple(a for _, a in order)


def _split_moved(
    history: HistoryFn,
    metric: str,
    label: str,
    value: str,
    down: bool,
    start: float,
    now: float,
    min_support: int,
) -> tuple[float, Attribution] | None:
    lo = start - SPLIT_BASELINE_S
    mine = _bad_counts(history(metric, f"{label}={value}", lo, now), start, down)
    whole = _bad_counts(history(metric, "", lo, now), start, down)
    (n_va, b_va), (n_vb, b_vb) = mine
    (n_fa, b_fa), (n_fb, b_fb) = whole
    if n_va < min_support or n_fa - n_va < min_support or n_fb < min_support or b_fa < b_va:
        return None  # no "before" (aged out of the retained buckets): nothing to difference
    # (With a "before" of n_fb >= min_support calls the rest's rise is always compared.)
    return _diff_in_diff(
        label, value, (n_va, n_fa, b_va, b_fa), (n_vb, n_fb, b_vb, b_fb), min_support, metric
    )


def _bad_counts(
    bins: Sequence[tuple[float, float, float]], start: float, down: bool
) -> tuple[tuple[int, int], tuple[int, int]]:
    """((calls, bad) from `start` on, (calls, bad) before it) from (ts, rate, n) bins; the
    bad count of a bin is its rate times n, or its complement's for a metric whose bad side
    is down."""
    after = [0, 0]
    before = [0, 0]
    for ts, rate, n in bins:
        k = round(rate * n)
        acc = after if ts >= start else before
        acc[0] += int(n)
        acc[1] += int(n) - k if down else k
    return (after[0], after[1]), (before[0], before[1])
