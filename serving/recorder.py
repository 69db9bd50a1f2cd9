"""Score once: the API's answers go to the score store, off the request path.

Every answer the API gives is what the batch recompute would compute for that event (the
parity the API's tests prove), so the recompute takes them from the store, keyed by
(tenant_id, event_id) and the model's content id, and scores only what the API never answered.

:meth:`ScoreRecorder.record` costs a counter and a queue append on the request's thread: no
parsing, no I/O, never an exception. One writer thread per worker turns the queued answers into
store batches, a flush per :attr:`flush_s` seconds or :attr:`flush_events` answers. The queue is
bounded in events: when the store cannot keep up (or is down), answers beyond
:attr:`max_pending` are dropped and counted, and the recompute scores those events itself.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from jobs.store import Store

log = logging.getLogger("botfilter.serving")

#: Of each event of a request: the contract's clean (tenant_id, occurred_at in ns), or None
#: where it refused the event (its answer is an error).
TenantTime = tuple[str, int] | None
#: One queued request: its events' tenant and time, its answers (same order) and the model
#: that answered.
Entry = tuple[Sequence[TenantTime], Sequence[dict[str, Any]], Any]


class ScoreRecorder:
    """Writes the API's answers to the score store from a background thread."""

    def __init__(
        self,
        open_store: Callable[[], Any],
        max_pending: int = 200_000,
        flush_events: int = 20_000,
        flush_s: float = 1.0,
    ) -> None:
        self._open_store = open_store
        self.max_pending = max_pending
        self.flush_events = flush_events
        self.flush_s = flush_s
        self._queue: queue.SimpleQueue[Entry | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending = 0
        self.recorded = 0  # answers written to the store
        self.dropped = 0  # answers not recorded (queue full, store failing)
        self._store: Any = None
        self._failing = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="botfilter-recorder", daemon=True)
        self._thread.start()

    # -- the request path ----------------------------------------------------------------------
    def record(
        self, events: Sequence[TenantTime], answers: Sequence[dict[str, Any]], model: Any
    ) -> None:
        """Queue one request's answers (never blocks, never raises); ``events``: each answered
        event's clean tenant and time (``serving.scorer.Outcome.tenant_times``)."""
        try:
            n = len(answers)
            with self._lock:
                if self._closed or self._pending + n > self.max_pending:
                    self.dropped += n
                    return
                self._pending += n
            self._queue.put((events, answers, model))
        except Exception:  # recording must never cost a request its answer
            pass

    # -- the writer ----------------------------------------------------------------------------
    def _run(self) -> None:
        batch: list[Entry] = []
        size, started = 0, 0.0
        while True:
            wait = max(0.0, started + self.flush_s - time.monotonic()) if batch else None
            try:
                entry = self._queue.get(timeout=wait)
            except queue.Empty:  # the oldest queued answer has waited flush_s: write
                self._write(batch, size)
                batch, size = [], 0
                continue
            if entry is None:  # closing: write what is left and stop
                if batch:
                    self._write(batch, size)
                return
            if not batch:
                started = time.monotonic()
            batch.append(entry)
            size += len(entry[1])
            if size >= self.flush_events:
                self._write(batch, size)
                batch, size = [], 0

    def _write(self, batch: list[Entry], size: int) -> None:
        try:
            if self._store is None:
                self._store = self._open_store()
            frame = answers_frame(batch)
            written, refused = 0, 0
            # Tenant by tenant: rows the store refuses for one tenant (an id too long for its
            # index) cost that tenant's answers only, not every tenant's in the flush.
            for (model_id, _), rows in frame.groupby(["model_id", "tenant_id"], sort=False):
                try:
                    written += self._store.save_scores(
                        rows, rows["tenant_id"], rows["occurred_at"], model_id=model_id
                    )
                except Exception as exc:
                    refused += len(rows)
                    self._warn(exc)
            self.recorded += written
            self.dropped += refused
            if self._failing and not refused:
                log.info("score recorder: writing to the store again")
                self._failing = False
        except Exception as exc:  # the store is down or refuses: drop, say so once per streak
            self.dropped += size
            self._warn(exc)
        finally:
            with self._lock:
                self._pending -= size

    def _warn(self, exc: Exception) -> None:
        if not self._failing:
            log.warning("score recorder: cannot write to the store (%s)", type(exc).__name__)
            log.debug("score recorder: the failure", exc_info=True)
        self._failing = True

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued and stop the writer (waits at most ``timeout`` seconds)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)


def answers_frame(batch: Sequence[Entry]) -> pd.DataFrame:
    """The scored answers of queued requests as a scores table with ``tenant_id``,
    ``occurred_at`` and ``model_id`` (the answering model's content id)."""
    rows = []
    for events, answers, model in batch:
        key = model.model_id
        for event, answer in zip(events, answers, strict=True):
            if event is None or "bot_score" not in answer:  # refused: nothing was scored
                continue
            tenant, t_ns = event
            rows.append(
                (
                    tenant,
                    answer["event_id"],
                    answer["bot_score"],
                    answer["is_bot"],
                    list(answer["reasons"]),
                    answer["model_version"],
                    answer.get("bot_kind", ""),
                    t_ns,
                    key,
                )
            )
    names = ["tenant_id", "event_id", "bot_score", "is_bot", "reasons", "model_version", "bot_kind"]
    frame = pd.DataFrame(rows, columns=[*names, "occurred_at", "model_id"])
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"].astype("int64"), unit="ns", utc=True)
    return frame


def store_opener(settings: Any) -> Callable[[], Any]:
    """Opens the configured score store (the metrics store) on first use, in the writer."""

    def open_store() -> Any:
        return Store.open(settings)

    return open_store
