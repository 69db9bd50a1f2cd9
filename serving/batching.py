"""Natural micro-batching: requests that arrive while one is being scored are scored together.

Scoring a request has a fixed cost (contract validation, frame building, model call) that does
not grow with its size, so under load the worker merges every request waiting in line into one
micro-batch. An idle worker scores a request at once: nothing ever waits for a timer. There is
no extra thread: the first waiting caller scores the line (leader/follower), which also keeps
requests of one worker in arrival order, as the causal features expect.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Job(Generic[T, R]):
    items: list[T]
    result: list[R] | None = None
    error: BaseException | None = None
    done: bool = False
    merged_with: int = field(default=1)

    def outcome(self) -> list[R]:
        """The answers, or the batch's error raised here."""
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class Coalescer(Generic[T, R]):
    """Run ``fn`` over the concatenated items of every waiting request, split the answers back.

    ``fn`` must return exactly one answer per item, in order. ``max_items`` bounds a merged
    batch (a single larger request is still run alone).
    """

    def __init__(self, fn: Callable[[list[T]], list[R]], max_items: int) -> None:
        self._fn = fn
        self._max = max_items
        self._cond = threading.Condition()
        self._queue: deque[_Job[T, R]] = deque()
        self._busy = False
        self.batches = 0
        self.merged_requests = 0

    def submit(self, items: list[T]) -> list[R]:
        """Answers for ``items``, computed alone or merged with requests waiting alongside."""
        job: _Job[T, R] = _Job(list(items))
        with self._cond:
            self._queue.append(job)
            while not job.done:
                if self._busy:
                    self._cond.wait()
                    continue
                batch = self._take()
                self._busy = True
                self._cond.release()
                try:
                    self._run(batch)
                finally:
                    self._cond.acquire()
                    self._busy = False
                    self._cond.notify_all()
        return job.outcome()

    def submit_if_idle(self, items: list[T]) -> list[R] | None:
        """Answers for ``items`` computed at once on this thread, or None (nothing done) when
        another batch is running or waiting: never blocks."""
        with self._cond:
            if self._busy or self._queue:
                return None
            self._busy = True
        job: _Job[T, R] = _Job(list(items))
        try:
            self._run([job])
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
        return job.outcome()

    def _take(self) -> list[_Job[T, R]]:
        batch = [self._queue.popleft()]
        total = len(batch[0].items)
        while self._queue and total + len(self._queue[0].items) <= self._max:
            job = self._queue.popleft()
            total += len(job.items)
            batch.append(job)
        return batch

    def _run(self, batch: list[_Job[T, R]]) -> None:
        merged: list[Any] = [item for job in batch for item in job.items]
        try:
            answers = self._fn(merged)
            if len(answers) != len(merged):
                raise RuntimeError(f"{len(answers)} answers for {len(merged)} items")
        except Exception as exc:
            if len(batch) > 1:
                # One request's failure must not become its neighbours': each request is run
                # again alone, so only the one that fails gets the error. (The window state
                # keeps the answers a first run gave, so the others' answers are the same.)
                for job in batch:
                    self._run([job])
                return
            batch[0].error, batch[0].done = exc, True
            return
        except BaseException as exc:  # interrupted: every merged request fails with the batch
            for job in batch:
                job.error, job.done = exc, True
            return
        start = 0
        for job in batch:
            job.result = answers[start : start + len(job.items)]
            job.merged_with = len(batch)
            job.done = True
            start += len(job.items)
        self.batches += 1
        self.merged_requests += len(batch)
