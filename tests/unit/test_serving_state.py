"""Window state in process: range lookups, idempotent writes, trimming, retention."""

from __future__ import annotations

import gc

from serving.state import KeyRange, MemoryState, NewEvent

S = 1_000_000_000
T0 = 1_800_000_000 * S


def ev(eid: str, t_s: float, msg: str = "m:a", bursts: tuple[str, ...] = ("k:ip",), score=None):
    t = T0 + int(t_s * S)
    return NewEvent(eid, t, (eid, t), msg, bursts, score or {"event_id": eid, "bot_score": t_s})


def test_lookup_by_time_range_not_arrival_order() -> None:
    state = MemoryState(history_s=3600, burst_s=1200)
    state.put([ev("c", 30), ev("a", 10)])
    state.put([ev("b", 20)])  # arrives late: still found by its time
    got = state.lookup([], [KeyRange("k:ip", T0 + 15 * S, T0 + 30 * S)])
    assert list(got.rows) == ["b", "c"]
    got = state.lookup([], [KeyRange("m:a", None, T0 + 20 * S)])
    assert list(got.rows) == ["a", "b"]
    assert got.rows["b"] == ("b", T0 + 20 * S)


def test_equal_times_are_ordered_by_event_id_and_bounds_are_inclusive() -> None:
    state = MemoryState(3600, 1200)
    state.put([ev("z", 5), ev("y", 5), ev("x", 4)])
    got = state.lookup([], [KeyRange("k:ip", T0 + 5 * S, T0 + 5 * S)])
    assert list(got.rows) == ["y", "z"]


def test_duplicate_ids_keep_the_first_answer_and_count_once() -> None:
    state = MemoryState(3600, 1200)
    first = state.put([ev("a", 1, score={"bot_score": 0.25})])
    again = state.put([ev("a", 1, score={"bot_score": 0.75})])
    assert first == {"a": {"bot_score": 0.25}}
    assert again == {"a": {"bot_score": 0.25}}
    assert state.size() == {"events": 1, "messages": 1, "burst_keys": 1}
    found = state.lookup(["a", "b"], [KeyRange("k:ip")])
    assert found.scores == {"a": {"bot_score": 0.25}}
    assert list(found.rows) == ["a"]


def test_burst_keys_keep_only_the_burst_retention_before_their_newest_event() -> None:
    state = MemoryState(history_s=10_000, burst_s=100)
    state.put([ev("old", 0), ev("mid", 50)])
    state.put([ev("new", 120)])  # 120 - 100 = 20: "old" leaves the burst key
    assert list(state.lookup([], [KeyRange("k:ip")]).rows) == ["mid", "new"]
    # ...but stays in its message's history, which is kept much longer.
    assert list(state.lookup([], [KeyRange("m:a")]).rows) == ["old", "mid", "new"]


def test_history_retention_prunes_rows_scores_and_empty_keys() -> None:
    state = MemoryState(history_s=100, burst_s=50)
    state.put([ev("a", 0, msg="m:1", bursts=("k:x",))])
    state.put([ev("b", 500, msg="m:2", bursts=("k:y",))])
    assert state.size() == {"events": 1, "messages": 1, "burst_keys": 1}
    assert state.lookup(["a"], [KeyRange("m:1"), KeyRange("k:x")]).scores == {}


def test_generation_counter_for_reloads() -> None:
    state = MemoryState(100, 50)
    assert state.generation() == 0
    assert state.bump_generation() == 1
    assert state.generation() == 1


def test_the_history_is_left_out_of_garbage_collection() -> None:
    state = MemoryState(3600, 1200)
    state.put([ev("a", 1), ev("b", 2, msg="m:b", bursts=("k:ip", "k:asn"))])
    state.put([ev("c", 0.5)])  # late: merged into the existing keys
    # A pass may visit a key's tuple before the pairs in it; the next one untracks it.
    gc.collect()
    gc.collect()
    held = [
        *state._messages.values(),
        *state._bursts.values(),
        *state._rows.values(),
        *state._scores.values(),
    ]
    assert len(held) == 2 + 2 + 3 + 3
    assert [gc.is_tracked(x) for x in held] == [False] * len(held)
