"""Attribution from per-value series (`correlator.attribution.split_suspects`): a value whose
own series fired is named when its rate moved more than the rest's, and not when every value
moved alike (an outage)."""

from __future__ import annotations

from collections.abc import Callable

from correlator.attribution import split_suspects
from correlator.records import FeatureContext

START = 10_000.0
NOW = START + 3600.0
# Per minute: pro 3 calls, free 7 calls, for 2 h (one before the start, one after).
PRO, FREE = 3, 7


def _ctx(rate: Callable[[str, float], float]) -> FeatureContext:
    """A context whose history gives each minute's failure rate per segment from `rate`."""

    def bins(segment: str | None, lo: float, hi: float) -> list[tuple[float, float, int]]:
        out = []
        t = lo
        while t < hi:
            if segment is None:
                bad = PRO * rate("pro", t) + FREE * rate("free", t)
                out.append((t, 1.0 - bad / (PRO + FREE), PRO + FREE))
            else:
                n = PRO if segment == "pro" else FREE
                out.append((t, 1.0 - rate(segment, t), n))
            t += 60.0
        return out

    def history(metric: str, series: str, lo: float, hi: float) -> list[tuple[float, float, int]]:
        assert metric == "availability"
        return bins(series.partition("=")[2] or None, lo, hi)

    return FeatureContext("f", {}, {}, {}, {}, history=history, start=START,
                          split_labels=("segment",))  # fmt: skip


def test_a_fault_in_one_segment_names_it() -> None:
    ctx = _ctx(lambda seg, t: 1 / 3 if seg == "pro" and t >= START else 0.0)
    got = split_suspects([("availability", "segment=pro", True)], ctx, START, NOW)
    assert [(a.label, a.value, a.metric) for a in got] == [("segment", "pro", "availability")]
    a = got[0]
    assert a.basis == "moved" and a.bad_rate is not None and a.rest_bad_rate is not None
    assert abs(a.bad_rate - 1 / 3) < 0.001 and a.rest_bad_rate == 0.0
    assert a.share_after == 0.3 and a.z is not None and a.z > 8


def test_an_outage_of_every_segment_names_none() -> None:
    ctx = _ctx(lambda seg, t: 3 / 7 if t >= START else 0.0)
    fired = [
        ("availability", "segment=pro", True),
        ("availability", "segment=free", True),
    ]
    assert split_suspects(fired, ctx, START, NOW) == ()


def test_only_split_labels_count() -> None:
    ctx = _ctx(lambda seg, t: 0.4 if seg == "pro" and t >= START else 0.01)
    provider = [("availability", "provider=a,model=b,endpoint=c", True)]
    assert split_suspects(provider, ctx, START, NOW) == ()
    assert split_suspects([("availability", "segment=__other__", True)], ctx, START, NOW) == ()


def test_one_metric_firing_in_two_segments_names_neither() -> None:
    """A 429 storm fired two segments' availability, one of them a little harder by chance
    (retries keep their segment): the fault is not confined to one value, nothing is named."""
    ctx = _ctx(lambda seg, t: (2 / 3 if seg == "pro" else 1 / 7) if t >= START else 0.0)
    alone = split_suspects([("availability", "segment=pro", True)], ctx, START, NOW)
    assert [a.value for a in alone] == ["pro"]
    both = [("availability", "segment=pro", True), ("availability", "segment=free", True)]
    assert split_suspects(both, ctx, START, NOW) == ()


def test_a_held_answer_is_dropped_once_a_second_value_fires() -> None:
    """Pro's availability fired first and alone: pro is named and the answer held. When
    free's availability fires too the fault is not pro's alone, and the held answer goes."""
    from corr_helpers import sig

    from correlator import Correlator

    ctx = _ctx(lambda seg, t: (1 / 3 if seg == "pro" else 1 / 7) if t >= START else 0.0)
    corr = Correlator()
    first = sig("availability", START + 1800, series="segment=pro", feature="f", n=30)
    (up,) = corr.on_signal(first, ctx, lambda feature, start: ctx)
    assert [(a.label, a.value) for a in up.incident.attribution] == [("segment", "pro")]
    second = sig("availability", START + 1920, series="segment=free", feature="f", n=70)
    ups = corr.on_signal(second, ctx, lambda feature, start: ctx)
    assert ups and all(u.incident.attribution == () for u in ups)
