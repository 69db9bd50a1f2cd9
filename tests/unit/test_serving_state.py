"""Window state in process: range lookups, idempotent writes, trimming, retention."""

from __future__ import annotations

import gc

from serving.state import KeyRange, MemoryState, NewEvent

S = 1_000_000_000
T0 = 1_800_000_000 * S


def ev(
    eid: str, t_s: float, msg: str = "m:1:t:a", bursts: tuple[str, ...] = ("k:1:t:ip",), score=None
):
    t = T0 + int(t_s * S)
    return NewEvent(eid, t, (eid, t), msg, bursts, score or {"event_id": eid, "bot_score": t_s})


def test_lookup_by_time_range_not_arrival_order() -> None:
    state = MemoryState(history_s=3600, burst_s=1200)
    state.put([ev("c", 30), ev("a", 10)])
    state.put([ev("b", 20)])  # arrives late: still found by its time
    got = state.lookup([], [KeyRange("k:1:t:ip", T0 + 15 * S, T0 + 30 * S)])
    assert list(got.rows) == ["b", "c"]
    got = state.lookup([], [KeyRange("m:1:t:a", None, T0 + 20 * S)])
    assert list(got.rows) == ["a", "b"]
    assert got.rows["b"] == ("b", T0 + 20 * S)


def test_equal_times_are_ordered_by_event_id_and_bounds_are_inclusive() -> None:
    state = MemoryState(3600, 1200)
    state.put([ev("z", 5), ev("y", 5), ev("x", 4)])
    got = state.lookup([], [KeyRange("k:1:t:ip", T0 + 5 * S, T0 + 5 * S)])
    assert list(got.rows) == ["y", "z"]


def test_duplicate_ids_keep_the_first_answer_and_count_once() -> None:
    state = MemoryState(3600, 1200)
    first = state.put([ev("a", 1, score={"bot_score": 0.25})])
    again = state.put([ev("a", 1, score={"bot_score": 0.75})])
    assert first == {"a": {"bot_score": 0.25}}
    assert again == {"a": {"bot_score": 0.25}}
    assert state.size() == {"events": 1, "messages": 1, "burst_keys": 1}
    found = state.lookup(["a", "b"], [KeyRange("k:1:t:ip")])
    assert found.scores == {"a": {"bot_score": 0.25}}
    assert list(found.rows) == ["a"]


def test_burst_keys_keep_only_the_burst_retention_before_their_newest_event() -> None:
    state = MemoryState(history_s=10_000, burst_s=100)
    state.put([ev("old", 0), ev("mid", 50)])
    state.put([ev("new", 120)])  # 120 - 100 = 20: "old" leaves the burst key
    assert list(state.lookup([], [KeyRange("k:1:t:ip")]).rows) == ["mid", "new"]
    # ...but stays in its message's history, which is kept much longer.
    assert list(state.lookup([], [KeyRange("m:1:t:a")]).rows) == ["old", "mid", "new"]


def test_history_retention_prunes_rows_scores_and_empty_keys() -> None:
    state = MemoryState(history_s=100, burst_s=50)
    state.put([ev("a", 0, msg="m:1:t:1", bursts=("k:1:t:x",))])
    state.put([ev("b", 500, msg="m:1:t:2", bursts=("k:1:t:y",))])
    assert state.size() == {"events": 1, "messages": 1, "burst_keys": 1}
    assert state.lookup(["a"], [KeyRange("m:1:t:1"), KeyRange("k:1:t:x")]).scores == {}


def test_one_tenants_clock_never_expires_another_tenants_history() -> None:
    """Retention runs from each tenant's own newest event: an event another tenant dates 100
    days ahead (a client clock running ahead, or on purpose) used to expire every other tenant's
    history and deduplication, so their next answers changed."""
    state = MemoryState(history_s=3600, burst_s=1200)
    state.put([ev("1:t:e1", 0, score={"bot_score": 0.25}), ev("1:t:e2", 10)])
    ahead = ev("1:u:x", 100 * 86_400, msg="m:1:u:a", bursts=("k:1:u:ip",))
    state.put([ahead])
    assert state.put([ev("1:t:e1", 0, score={"bot_score": 0.75})]) == {
        "1:t:e1": {"bot_score": 0.25}
    }
    got = state.lookup(["1:t:e1"], [KeyRange("m:1:t:a"), KeyRange("k:1:t:ip")])
    assert got.scores == {"1:t:e1": {"bot_score": 0.25}}
    assert list(got.rows) == ["1:t:e1", "1:t:e2"]
    # the tenant's own clock still expires its own history
    state.put([ev("1:t:e3", 5_000, msg="m:1:t:b")])
    assert state.lookup(["1:t:e1"], [KeyRange("m:1:t:a")]).scores == {}
    assert state.size() == {"events": 2, "messages": 2, "burst_keys": 2}


def test_a_key_naming_an_expired_event_is_read_without_it() -> None:
    """One write of events 50 days apart: the old ones' message expires them at once, while a
    burst key of one of them waits in the log behind the newer event's key. Looking it up
    raised KeyError (a 500 for that tenant from then on; with Redis, after restarts too)."""
    day = 86_400
    state = MemoryState(history_s=40 * day, burst_s=1200)
    state.put(
        [
            ev("1:t:e1", 0, msg="m:1:t:a", bursts=()),
            ev("1:t:e2", 50 * day, msg="m:1:t:b", bursts=("k:1:t:p",)),
            ev("1:t:e3", 1, msg="m:1:t:a", bursts=("k:1:t:x",)),
        ]
    )
    got = state.lookup(["1:t:e3"], [KeyRange("k:1:t:x", T0 - 600 * S, T0 + 10 * S)])
    assert got.rows == {} and got.scores == {}
    assert list(state.lookup([], [KeyRange("k:1:t:p")]).rows) == ["1:t:e2"]


def test_generation_counter_for_reloads() -> None:
    state = MemoryState(100, 50)
    assert state.generation() == 0
    assert state.bump_generation() == 1
    assert state.generation() == 1


def test_the_history_is_left_out_of_garbage_collection() -> None:
    state = MemoryState(3600, 1200)
    state.put([ev("a", 1), ev("b", 2, msg="m:1:t:b", bursts=("k:1:t:ip", "k:1:t:asn"))])
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


def test_lookup_reports_each_tenants_newest_time_which_bounds_every_trim() -> None:
    """Expiry trims every key of a tenant from the newest event *of the tenant*, not of the key:
    a key whose own newest event is recent may still have lost the history a late event needs.
    The lookup reports the tenant's newest time, from which the scorer tells such events."""
    state = MemoryState(history_s=10_000, burst_s=1200)
    for i in range(31):  # one write per event: 0 .. 3000
        state.put([ev(f"x{i}", 100 * i, bursts=("k:1:t:x",))])
    state.put([ev("y", 4000, bursts=("k:1:t:y",))])  # the tenant moves on elsewhere
    # 1900 .. 2500 is what an event at 2500 needs (500 s behind its key's newest, 3000) ...
    got = state.lookup([], [KeyRange("k:1:t:x", T0 + 1900 * S, T0 + 2500 * S)], {"t", "other"})
    assert got.rows == {}  # ... trimmed to 4000 - 1200 = 2800 by the tenant's expiry
    assert got.newest == {"t": T0 + 4000 * S}  # a tenant never seen is left out
    assert state.lookup([], []).newest == {}  # no tenant asked for
