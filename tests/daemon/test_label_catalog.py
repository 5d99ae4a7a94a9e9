"""The catalog of label values (first and last seen) behind rollout attribution, the quality
history the change-point search reads, and scores counted apart from calls."""

from __future__ import annotations

from daemon.ingest.events import LlmCall, Score, validate_items
from daemon.layers.aggregator import _SCALAR_FIELDS, Aggregator, Limits

T0 = 1_767_225_600.0
HOUR = 3600.0


def _feed(agg: Aggregator, raw: list[dict[str, object]]) -> None:
    events, errors = validate_items(raw)
    assert not errors
    for ev in events:
        if isinstance(ev, LlmCall):
            agg.add_call(ev)
        else:
            assert isinstance(ev, Score)
            agg.add_score(ev)


def _calls(start: float, end: float, labels: dict[str, str], every: float = 30.0) -> list[dict]:
    out, t = [], start
    while t < end:
        out.append({"type": "llm_call", "ts": t, "feature": "f", "status": 200, "labels": labels})
        t += every
    return out


def _run(agg: Aggregator, raw: list[dict[str, object]], until: float) -> None:
    """Feed in time order and tick every 15 s, as the daemon does."""
    raw = sorted(raw, key=lambda e: float(e["ts"]))  # type: ignore[arg-type]
    t, i = T0, 0
    while t <= until:
        while i < len(raw) and float(raw[i]["ts"]) < t:  # type: ignore[arg-type]
            _feed(agg, [raw[i]])
            i += 1
        agg.expire(t)
        t += 15.0


def test_new_value_after_an_hour_of_watching_is_a_rollout_and_old_values_are_not() -> None:
    agg = Aggregator()
    raw = _calls(T0, T0 + 3 * HOUR, {"prompt_version": "v1"})
    raw += _calls(T0 + 3 * HOUR, T0 + 4 * HOUR, {"prompt_version": "v2"})
    raw += _calls(T0 + 4 * HOUR, T0 + 5 * HOUR, {"prompt_version": "v1"})  # the rollback
    _run(agg, raw, T0 + 5 * HOUR)
    new = agg.new_values("f", T0)
    assert [(label, value) for label, value, *_ in new] == [("prompt_version", "v2")]
    _, _, first, last, before, quiet = new[0]
    assert first == T0 + 3 * HOUR and T0 + 4 * HOUR - 60 <= last < T0 + 4 * HOUR
    assert before == 120  # an hour of calls every 30 s
    assert first - 30 <= quiet <= first  # a call every 30 s: no gap to speak of
    # v1 was there when watching began: never new, even after an hour away.
    assert agg.new_values("f", T0 + 3.5 * HOUR) == []


def test_catalog_survives_a_snapshot_and_stays_bounded() -> None:
    agg = Aggregator(limits=Limits(label_values=4))
    raw = _calls(T0, T0 + 2 * HOUR, {"prompt_version": "v1"})
    for i in range(10):  # ten request-like values, one every 5 minutes
        raw += _calls(T0 + 2 * HOUR + 300 * i, T0 + 2 * HOUR + 300 * i + 60, {"req": f"r{i}"})
    _run(agg, raw, T0 + 3 * HOUR)
    new = agg.new_values("f", T0)
    assert len([v for label, v, *_ in new if label == "req"]) == 4  # the cap, newest kept
    assert {v for label, v, *_ in new if label == "req"} == {"r6", "r7", "r8", "r9"}
    again = Aggregator(limits=Limits(label_values=4))
    again.load_state(agg.to_state(since=T0 + 3 * HOUR - 300))
    assert again.new_values("f", T0) == new


def test_scores_count_apart_from_calls_in_label_stats() -> None:
    agg = Aggregator()
    raw: list[dict[str, object]] = _calls(T0, T0 + 300, {"segment": "pro"}, every=10.0)
    raw += [
        {"type": "score", "ts": T0 + i, "feature": "f", "name": "judge", "value": 0.2,
         "labels": {"segment": "pro"}}
        for i in range(0, 300, 20)
    ]  # fmt: skip
    _run(agg, raw, T0 + 330)
    stats = agg.label_stats("f", T0, T0 + 330)
    assert stats.all() == {"segment": {"pro": 30}}
    assert stats.scores() == {"segment": {"pro": 15}}
    assert stats.events() == {"segment": {"pro": 45}}


def test_quality_history_is_the_scores_level_in_the_verdicts_units() -> None:
    agg = Aggregator()
    raw: list[dict[str, object]] = [
        {"type": "score", "ts": T0 + 20 * i, "feature": "f", "name": "judge",
         "value": 0.8 if i < 90 else 0.6}
        for i in range(120)
    ]  # fmt: skip
    _run(agg, raw, T0 + 2400)
    # With the verdict's spread of each score: standardized, 0.6 against 0.8 +- 0.1 is -2.
    hist = agg.history("f", "quality", T0, T0 + 2400, 300.0, spreads=lambda name: (0.8, 0.1))
    assert hist and all(n > 0 for _, _, n in hist)
    assert abs(hist[0][1]) < 1e-9 and abs(hist[-1][1] + 2.0) < 1e-9
    # Without one: relative to the running mean, in units of 10% of it.
    hist = agg.history("f", "quality", T0, T0 + 2400, 300.0)
    assert abs(hist[0][1]) < 0.1  # as usual
    assert -3.0 < hist[-1][1] < -2.0  # 0.6 against a running mean still near 0.8


def test_latency_history_is_the_geometric_mean_per_bin() -> None:
    """ttft and latency per token have a history (retrieval drifts start with them): the
    per-bin geometric mean, which one slow call among twenty barely moves."""
    agg = Aggregator()
    raw: list[dict[str, object]] = []
    for i in range(240):
        ttft = 20_000.0 if i % 20 == 7 else (300.0 if i < 120 else 600.0)
        raw.append({"type": "llm_call", "ts": T0 + 5 * i, "feature": "f", "status": 200,
                    "ttft_ms": ttft, "latency_ms": 2000.0, "output_tokens": 100})  # fmt: skip
    _run(agg, raw, T0 + 1200)
    hist = agg.history("f", "ttft_ms", T0, T0 + 1200, 300.0)
    assert [n for _, _, n in hist] == [60, 60, 60, 60]
    levels = [v for _, v, _ in hist]
    # 57 calls at 300 ms and 3 at 20 s: the plain mean is 1285 ms, the geometric ~370 ms.
    assert 300 < levels[0] < 400 and 300 < levels[1] < 400
    assert 600 < levels[2] < 800 and 600 < levels[3] < 800
    lpt = agg.history("f", "latency_per_output_token_ms", T0, T0 + 1200, 300.0)
    assert [round(v, 3) for _, v, _ in lpt] == [20.0] * 4


def test_size_histories_are_geometric_means_and_old_snapshots_read_as_no_data() -> None:
    """Tokens, cost and output length: the change-point search reads the per-bin geometric
    mean of the successful calls, the scale their `logmean` detectors test; one 40k-token
    prompt among twenty 400-token ones barely moves it. A bucket from a snapshot taken
    before the log sums existed has sizes but no logs: no point, not a geometric mean of 0."""
    agg = Aggregator()
    raw: list[dict[str, object]] = []
    for i in range(240):
        big = i % 20 == 7
        tokens = 40_000 if big else (400 if i < 120 else 800)
        raw.append({"type": "llm_call", "ts": T0 + 5 * i, "feature": "f", "status": 200,
                    "input_tokens": tokens, "output_tokens": 200, "output_chars": 900,
                    "cost_usd": 0.002})  # fmt: skip
    raw.append({"type": "llm_call", "ts": T0 + 6, "feature": "f", "status": 500,
                "input_tokens": 1, "output_tokens": 1, "cost_usd": 0.0})  # fmt: skip
    _run(agg, raw, T0 + 1200)
    hist = agg.history("f", "input_tokens_per_request", T0, T0 + 1200, 300.0)
    assert [n for _, _, n in hist] == [60, 60, 60, 60]  # the failed call is not a size
    levels = [v for _, v, _ in hist]
    # 57 prompts of 400 tokens and 3 of 40k: the plain mean is 2380, the geometric ~504.
    assert 400 < levels[0] < 550 and 400 < levels[1] < 550
    assert 800 < levels[2] < 1050 and 800 < levels[3] < 1050
    for metric, level in (("output_tokens_per_request", 200.0), ("cost_per_request_usd", 0.002),
                          ("output_length_mean", 900.0)):  # fmt: skip
        assert [round(v, 9) for _, v, _ in agg.history("f", metric, T0, T0 + 1200, 300.0)] == [
            level
        ] * 4, metric
    # A snapshot of before: its buckets hold the 25 counters up to ttft_log.
    state = agg.to_state()
    for feature in state["features"].values():  # type: ignore[attr-defined]
        for bucket in feature["buckets"]:
            bucket["s"] = bucket["s"][: _SCALAR_FIELDS.index("ttft_log") + 1]
    old = Aggregator()
    old.load_state(state)
    assert old.history("f", "input_tokens_per_request", T0, T0 + 1200, 300.0) == []


def test_scores_outlive_their_buckets_in_the_quality_history() -> None:
    """A slow decline detected 2 h after it began: its change point needs the level before,
    older than the 2-h buckets. Expired buckets stay as minute rollups for 6 h, in the
    snapshot too, and the quality history reads them as it read the buckets."""
    agg = Aggregator(retention_s=2 * HOUR)
    raw: list[dict[str, object]] = [
        {"type": "score", "ts": T0 + 60 * i + 1, "feature": "f", "name": "judge",
         "value": 0.8 if i < 180 else 0.6}
        for i in range(300)
    ]  # fmt: skip
    _run(agg, raw, T0 + 5 * HOUR)
    assert min(agg._features["f"].buckets) * 15.0 >= T0 + 3 * HOUR - 60  # buckets: 2 h
    hist = agg.history("f", "quality", T0, T0 + 5 * HOUR, 60.0, spreads=lambda name: (0.8, 0.1))
    assert len(hist) == 300 and all(n == 1 for _, _, n in hist)
    assert [round(v, 6) for _, v, _ in hist] == [0.0] * 180 + [-2.0] * 120
    again = Aggregator(retention_s=2 * HOUR)
    again.load_state(agg.to_state())
    spread = {"spreads": lambda name: (0.8, 0.1)}
    assert again.history("f", "quality", T0, T0 + 5 * HOUR, 60.0, **spread) == hist
    # Past SCORE_HISTORY_S (6 h) the minutes go.
    agg.expire(T0 + 7 * HOUR)
    assert agg.history("f", "quality", T0, T0 + HOUR, 60.0, spreads=lambda name: (0.8, 0.1)) == []


def test_rates_of_the_feature_and_of_a_segment_outlive_their_buckets() -> None:
    """A fault in segment pro at a call every 30 s, detected 2 h in: the feature's and the
    segment's failure rates reach back past the 2-h buckets through the minute rollups."""
    agg = Aggregator(retention_s=2 * HOUR)
    raw: list[dict[str, object]] = []
    for i in range(600):  # 5 h, pro and free alternating; pro fails from 3 h on
        seg = "pro" if i % 2 else "free"
        failing = seg == "pro" and i >= 360
        raw.append({"type": "llm_call", "ts": T0 + 30 * i + 1, "feature": "f",
                    "status": 500 if failing else 200, "labels": {"segment": seg}})  # fmt: skip
    _run(agg, raw, T0 + 5 * HOUR)
    whole = agg.history("f", "availability", T0, T0 + 5 * HOUR, 600.0)
    assert [n for _, _, n in whole] == [20] * 30
    assert [v for _, v, _ in whole] == [1.0] * 18 + [0.5] * 12
    pro = agg.history("f", "availability", T0, T0 + 5 * HOUR, 600.0, "segment=pro")
    assert [v for _, v, _ in pro] == [1.0] * 18 + [0.0] * 12
