"""The change store's bounds (correlator/changes.py): one feature's changes never push out
another's, the changes for every feature have a bound of their own, the oldest past the
change lookback go first, and every change a bound drops is counted."""

from __future__ import annotations

import random

from corr_helpers import FEATURE, T0, no_ctx, policy, sig

from correlator import ChangeDrop, ChangeRecord, Correlator

LOOKBACK = 7200.0


def flag(ts: float, i: int, feature: str | None = "noisy-ci") -> ChangeRecord:
    return ChangeRecord(ts, "flag", feature, f"ci {i}")


def test_a_flood_for_one_feature_does_not_push_out_another_features_change() -> None:
    """The probe's repro: support-bot's prompt change, then 1,000 flag changes for noisy-ci.
    Before: one shared list of 1,000 kept only noisy-ci's, and nothing counted the loss."""
    corr = Correlator()
    prompt = ChangeRecord(T0 - 60, "prompt", FEATURE, "v42")
    assert corr.add_change(prompt, now=T0)
    for i in range(1000):
        corr.add_change(flag(T0 + i * 0.001, i), now=T0)
    kept = corr.changes()
    assert prompt in kept
    assert sum(c.feature == "noisy-ci" for c in kept) == 200  # max_changes_per_feature
    assert next(c.description for c in kept if c.feature == "noisy-ci") == "ci 800"  # oldest kept
    assert corr.take_change_drops() == {ChangeDrop("noisy-ci", "per_feature", False): 800}
    assert corr.take_change_drops() == {}  # taken once


def test_the_changes_for_every_feature_are_bounded_on_their_own() -> None:
    corr = Correlator(policy(max_global_changes=50))
    corr.add_change(ChangeRecord(T0 - 60, "prompt", FEATURE, "v42"), now=T0)
    for i in range(120):
        corr.add_change(flag(T0 + i, i, feature=None), now=T0 + i)
    kept = corr.changes()
    assert sum(c.feature is None for c in kept) == 50
    assert any(c.feature == FEATURE for c in kept)
    assert corr.take_change_drops() == {ChangeDrop(None, "global", False): 70}


def test_over_the_total_the_longest_list_pays_so_each_keeps_its_share() -> None:
    corr = Correlator(policy(max_changes=10, max_changes_per_feature=8))
    for i in range(8):
        corr.add_change(ChangeRecord(T0 + i, "deploy", "a", f"a{i}"), now=T0 + 10)
    for i in range(8):
        corr.add_change(ChangeRecord(T0 + 10 + i, "deploy", "b", f"b{i}"), now=T0 + 20)
    kept = corr.changes()
    assert len(kept) == 10
    assert sum(c.feature == "a" for c in kept) == 5 and sum(c.feature == "b" for c in kept) == 5
    assert corr.take_change_drops() == {
        ChangeDrop("a", "total", False): 3,
        ChangeDrop("b", "total", False): 3,
    }


def test_over_the_total_changes_past_the_lookback_go_before_any_inside_it() -> None:
    """The list with most changes pays only once no list holds one past the change lookback:
    those can no longer be a new incident's suspect."""
    corr = Correlator(policy(max_changes=6))
    now = T0 + 3 * 3600
    for i in range(2):  # support-bot's, 3 h old: past the 2-h lookback
        corr.add_change(ChangeRecord(T0 + i, "prompt", FEATURE, f"old {i}"), now=now)
    for i in range(6):  # noisy-ci's list is the longest from its fourth change on
        corr.add_change(flag(now - 60 + i, i), now=now)
    kept = corr.changes()
    assert [c.description for c in kept] == [f"ci {i}" for i in range(6)]
    assert corr.take_change_drops() == {ChangeDrop(FEATURE, "total", True): 2}
    corr.add_change(flag(now, 6), now=now)  # nothing past the lookback left: the longest pays
    assert corr.take_change_drops() == {ChangeDrop("noisy-ci", "total", False): 1}


def test_a_full_list_drops_its_oldest_and_says_whether_it_had_left_the_lookback() -> None:
    corr = Correlator(policy(max_changes_per_feature=3))
    now = T0 + LOOKBACK + 600
    corr.add_change(ChangeRecord(T0, "deploy", FEATURE, "past the lookback"), now=now)
    for i in range(3):
        corr.add_change(ChangeRecord(now - 60 + i, "deploy", FEATURE, f"d{i}"), now=now)
    assert corr.take_change_drops() == {ChangeDrop(FEATURE, "per_feature", True): 1}
    # An older change than all three in a full list is the one dropped: not kept.
    assert not corr.add_change(ChangeRecord(now - 600, "deploy", FEATURE, "older"), now=now)
    assert corr.take_change_drops() == {ChangeDrop(FEATURE, "per_feature", False): 1}
    assert not corr.add_change(ChangeRecord(now - 60, "deploy", FEATURE, "d0"), now=now)  # dup
    assert corr.take_change_drops() == {}


def test_retention_is_not_counted_and_a_lowered_bound_applies_at_the_next_tick() -> None:
    corr = Correlator()
    for i in range(10):
        corr.add_change(flag(T0 + i, i), now=T0 + 10)
    corr.policy = policy(max_changes_per_feature=4)  # a config reload
    corr.tick(T0 + 20, no_ctx)
    assert len(corr.changes()) == 4
    assert corr.take_change_drops() == {ChangeDrop("noisy-ci", "per_feature", False): 6}
    corr.tick(T0 + 2 * 86400, no_ctx)  # past change_retention_s
    assert corr.changes() == [] and corr.take_change_drops() == {}


def test_state_round_trip_keeps_every_list_and_applies_the_current_bounds() -> None:
    corr = Correlator()
    corr.add_change(ChangeRecord(T0 - 60, "prompt", FEATURE, "v42", {"prompt_version": "v42"}))
    for i in range(100):
        corr.add_change(flag(T0 + i, i))
    corr.add_change(flag(T0, 0, feature=None))
    state = corr.to_state()
    again = Correlator.from_state(state)
    assert again.changes() == corr.changes()
    assert again.take_change_drops() == {}
    smaller = Correlator.from_state(state, policy=policy(max_changes_per_feature=10))
    assert len(smaller.changes()) == 1 + 10 + 1
    assert smaller.take_change_drops() == {ChangeDrop("noisy-ci", "per_feature", False): 90}


def test_an_incident_quotes_its_features_and_the_global_changes_only() -> None:
    corr = Correlator()
    corr.add_change(ChangeRecord(T0 - 600, "prompt", FEATURE, "v42"))
    corr.add_change(ChangeRecord(T0 - 300, "index", None, "reindex"))
    for i in range(300):
        corr.add_change(flag(T0 - 900 + i, i))
    ups = corr.on_signal(sig("latency_p95_ms", T0), None)
    assert [c.description for c in ups[0].incident.changes] == ["reindex", "v42"]


def test_random_adds_keep_every_bound_and_say_truly_which_changes_are_kept() -> None:
    """Random order, duplicates, old and new changes in four lists under small bounds, one by
    one and in batches: `add_changes` answers exactly the new changes there afterwards,
    every bound holds, and every change that went is counted once."""
    rng = random.Random(5)
    pol = policy(max_changes_per_feature=7, max_global_changes=5, max_changes=16)
    corr = Correlator(pol)
    new = dropped = 0
    for step in range(2000):
        now = T0 + step
        batch = [
            ChangeRecord(
                now - rng.choice([0, 60, 3600, 3 * 3600]) - rng.randrange(100),
                "deploy",
                rng.choice(["a", "b", "c", None]),
                f"d{rng.randrange(400)}",
            )
            for _ in range(rng.choice([1, 1, 1, 5, 30]))
        ]
        before = {c.key for c in corr.changes()}
        kept = [c.key for c in corr.add_changes(batch, now=now)]
        after = {c.key for c in corr.changes()}
        fresh = {c.key for c in batch} - before
        assert len(kept) == len(set(kept)) and set(kept) == fresh & after
        new += len(fresh)
        dropped += sum(corr.take_change_drops().values())
        assert new - dropped == len(after)  # each change that went counted once
        lists = [[c for c in corr.changes() if c.feature == f] for f in ("a", "b", "c", None)]
        assert all(len(lst) <= 7 for lst in lists[:3]) and len(lists[3]) <= 5
        assert len(after) <= 16
    assert len(corr.changes()) == 16 and dropped > 1000
