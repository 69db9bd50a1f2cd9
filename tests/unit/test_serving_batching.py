"""Natural micro-batching: waiting requests are merged, answers go back to their request."""

from __future__ import annotations

import threading
import time

import pytest

from serving.batching import Coalescer


def _blocked_coalescer(max_items: int = 100):
    """A coalescer whose first batch blocks until released, so that others queue behind it."""
    release = threading.Event()
    started = threading.Event()
    calls: list[list[int]] = []

    def fn(items: list[int]) -> list[int]:
        calls.append(list(items))
        if len(calls) == 1:
            started.set()
            release.wait(5)
        if -1 in items:
            raise ValueError("boom")
        return [i * 10 for i in items]

    return Coalescer(fn, max_items), calls, started, release


def _run(co: Coalescer, items: list[int], out: dict, key: str) -> threading.Thread:
    def target() -> None:
        try:
            out[key] = co.submit(items)
        except Exception as exc:  # recorded for the assertions
            out[key] = exc

    th = threading.Thread(target=target)
    th.start()
    return th


def _wait_queued(co: Coalescer, n: int) -> None:
    deadline = time.monotonic() + 5
    while len(co._queue) < n:
        assert time.monotonic() < deadline, "requests did not queue"
        time.sleep(0.001)


def test_idle_request_runs_alone_and_in_order() -> None:
    co = Coalescer(lambda items: [i + 1 for i in items], 10)
    assert co.submit([1, 2, 3]) == [2, 3, 4]
    assert (co.batches, co.merged_requests) == (1, 1)


def test_waiting_requests_are_merged_and_split_back() -> None:
    co, calls, started, release = _blocked_coalescer()
    out: dict = {}
    first = _run(co, [1], out, "first")
    assert started.wait(5)
    others = [_run(co, [2, 3], out, "a"), _run(co, [4], out, "b")]
    _wait_queued(co, 2)
    release.set()
    for th in [first, *others]:
        th.join(5)
    assert out == {"first": [10], "a": [20, 30], "b": [40]}
    assert calls == [[1], [2, 3, 4]]
    assert (co.batches, co.merged_requests) == (2, 3)


def test_merged_batches_respect_the_item_limit() -> None:
    co, calls, started, release = _blocked_coalescer(max_items=3)
    out: dict = {}
    threads = [_run(co, [1], out, "first")]
    assert started.wait(5)
    for key, items in (("a", [2, 3]), ("b", [4, 5]), ("c", [6])):
        threads.append(_run(co, items, out, key))
        _wait_queued(co, len(threads) - 1)
    release.set()
    for th in threads:
        th.join(5)
    assert calls == [[1], [2, 3], [4, 5, 6]]
    assert out["c"] == [60]


def test_a_failing_request_fails_alone_not_the_requests_merged_with_it() -> None:
    """A merged batch that fails is run again request by request: only the request that fails
    gets the error. Before, every request merged with it failed too, so one tenant's malformed
    event turned other tenants' requests into 500s."""
    co, calls, started, release = _blocked_coalescer()
    out: dict = {}
    first = _run(co, [1], out, "first")
    assert started.wait(5)
    others = [_run(co, [-1], out, "bad"), _run(co, [7], out, "good")]
    _wait_queued(co, 2)
    release.set()
    for th in [first, *others]:
        th.join(5)
    assert out["first"] == [10]
    assert isinstance(out["bad"], ValueError) and out["good"] == [70]
    assert calls == [[1], [-1, 7], [-1], [7]]
    assert co.submit([8]) == [80]  # the coalescer keeps working afterwards


def test_a_wrong_answer_count_is_an_error() -> None:
    co = Coalescer(lambda items: items[:-1], 10)
    with pytest.raises(RuntimeError, match="1 answers for 2 items"):
        co.submit([1, 2])


def test_submit_if_idle_runs_at_once_or_declines_without_blocking() -> None:
    co, calls, started, release = _blocked_coalescer()
    out: dict = {}
    first = _run(co, [1, 2], out, "first")
    assert started.wait(5)
    began = time.monotonic()
    assert co.submit_if_idle([3]) is None  # busy: declined, nothing queued
    assert time.monotonic() - began < 1 and len(co._queue) == 0
    release.set()
    first.join(5)
    assert out["first"] == [10, 20]
    assert co.submit_if_idle([4, 5]) == [40, 50]
    assert calls == [[1, 2], [4, 5]]
    with pytest.raises(ValueError, match="boom"):
        co.submit_if_idle([-1])
    assert co.submit_if_idle([6]) == [60]  # a failure leaves it idle


def test_many_concurrent_requests_each_get_their_answers_and_the_line_empties() -> None:
    """Sixty threads at once: each gets its own answers, nobody is left waiting, and the
    coalescer ends idle with an empty line."""

    def fn(items: list[int]) -> list[int]:
        time.sleep(0.0005)  # long enough for others to queue behind
        return [i * 2 for i in items]

    co = Coalescer(fn, 7)
    out: dict = {}
    threads = [_run(co, list(range(k, k + 1 + k % 3)), out, str(k)) for k in range(60)]
    for th in threads:
        th.join(10)
    assert not any(th.is_alive() for th in threads)
    assert out == {str(k): [2 * i for i in range(k, k + 1 + k % 3)] for k in range(60)}
    assert co.merged_requests == 60 and co.batches < 60  # some were merged
    assert not co._busy and not co._queue
