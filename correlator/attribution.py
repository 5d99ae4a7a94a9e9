"""Attribution: which label values are over-represented in the anomalous traffic.

Rule, per label name (prompt_version, model_version, model, segment, experiment, ...):

- share of a value = its count / all counts of that label (the `__other__` overflow bucket
  counts in the total but is never reported).
- **anomalous basis**: the value's share among the bad events since onset (`bad_labels`) is
  compared with its share in the hour before onset (`baseline_labels`; when there was no
  traffic before onset, with all traffic since onset, `all_labels`, instead). Kept when the
  value has at least `min_support` bad events and its share rose by at least `min_delta`.
- **post-onset basis**: a value that (nearly) did not exist before onset (baseline share below
  1%) but makes up at least `min_delta` of all traffic since onset, with `min_support` events,
  is reported too: a new prompt_version rolled out to everyone is the prime suspect even when
  the bad events do not single it out among post-onset traffic.
- ranked by smoothed lift (share ratio with add-½ counts, so a value absent from the baseline
  gets a large but finite lift), then by share delta; top `top`. Shares rounded to 3 decimals.
"""

from __future__ import annotations

from collections.abc import Mapping

from correlator.incident import Attribution
from correlator.records import FeatureContext, LabelCounts

OTHER = "__other__"
NEW_VALUE_MAX_BASELINE = 0.01


def _totals(counts: LabelCounts, label: str) -> tuple[Mapping[str, int], int]:
    values = counts.get(label, {})
    return values, sum(max(v, 0) for v in values.values())


def _lift(k: int, n: int, kb: int, nb: int) -> float:
    return ((k + 0.5) / (n + 1.0)) / ((kb + 0.5) / (nb + 1.0))


def attribute(
    ctx: FeatureContext, min_support: int = 5, min_delta: float = 0.1, top: int = 3
) -> tuple[Attribution, ...]:
    ranked: dict[tuple[str, str], tuple[float, float, Attribution]] = {}

    def offer(key: tuple[str, str], lift: float, delta: float, attr: Attribution) -> None:
        cur = ranked.get(key)
        if cur is None or (lift, delta) > (cur[0], cur[1]):
            ranked[key] = (lift, delta, attr)

    labels = sorted(set(ctx.bad_labels) | set(ctx.all_labels))
    for label in labels:
        bad, n_bad = _totals(ctx.bad_labels, label)
        base, n_base = _totals(ctx.baseline_labels, label)
        allv, n_all = _totals(ctx.all_labels, label)
        ref, n_ref = (base, n_base) if n_base > 0 else (allv, n_all)
        if n_bad > 0 and n_ref > 0:
            for value in sorted(bad):
                k = bad[value]
                if value == OTHER or k < min_support:
                    continue
                share = k / n_bad
                ref_share = ref.get(value, 0) / n_ref
                if share - ref_share < min_delta:
                    continue
                attr = Attribution(label, value, round(share, 3), round(ref_share, 3), "anomalous")
                offer(
                    (label, value),
                    _lift(k, n_bad, ref.get(value, 0), n_ref),
                    share - ref_share,
                    attr,
                )
        if n_all > 0 and n_base > 0:
            for value in sorted(allv):
                k = allv[value]
                if value == OTHER or k < min_support:
                    continue
                base_share = base.get(value, 0) / n_base
                share = k / n_all
                if base_share >= NEW_VALUE_MAX_BASELINE or share - base_share < min_delta:
                    continue
                attr = Attribution(
                    label, value, round(share, 3), round(base_share, 3), "post_onset"
                )
                offer(
                    (label, value),
                    _lift(k, n_all, base.get(value, 0), n_base),
                    share - base_share,
                    attr,
                )

    order = sorted(ranked.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))
    return tuple(item[1][2] for item in order[:top])
