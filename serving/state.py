"""Window state for the online API: the recent history that causal features need.

An event's features depend on every earlier event of its message (any age) and on the events of
the same tenant sharing a burst key (IP, prefix, ASN, send+ASN) in the longest window. The API
rebuilds exactly that history for each request, so the state keeps:

* one raw context row and one score per ``event_id`` (the score makes duplicates idempotent);
* per message, the ids of its events ordered by ``occurred_at`` (kept ``history_s``);
* per burst key, the ids of its events ordered by ``occurred_at``, trimmed to ``burst_s`` before
  the newest event seen on the key (the longest window plus the lateness tolerated).

Lookups are by time range, never "last N", so out-of-order events within the tolerated lateness
see the same history as in batch. :class:`MemoryState` serves one process; :class:`RedisState`
is shared by every worker and replica (sorted sets scored by ``occurred_at`` in microseconds).
"""

from __future__ import annotations

import bisect
import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

NS = 1_000_000_000
US = 1_000  # nanoseconds per microsecond: sorted-set scores are integer microseconds


class StateUnavailable(RuntimeError):
    """The shared state cannot be reached: the request cannot be answered causally."""


@dataclass(frozen=True)
class KeyRange:
    """Events of one key with ``lo_ns <= occurred_at <= hi_ns`` (``None``: unbounded)."""

    key: str
    lo_ns: int | None = None
    hi_ns: int | None = None


@dataclass(frozen=True)
class NewEvent:
    """A scored event to remember: its raw row, keys and the answer given for it."""

    event_id: str
    t_ns: int
    row: Any  # JSON-ready raw context row
    message_key: str
    burst_keys: tuple[str, ...]
    score: dict[str, Any]


@dataclass(frozen=True)
class Lookup:
    """What the state knows for one request."""

    scores: dict[str, dict[str, Any]]  # stored answers of already-seen event ids
    rows: dict[str, Any]  # raw rows of the history events, by event id


class WindowState(ABC):
    """Recent events, keyed for causal feature reconstruction; shared by all requests."""

    kind: str = "abstract"

    def __init__(self, history_s: int, burst_s: int) -> None:
        if history_s <= 0 or burst_s <= 0:
            raise ValueError("retention must be positive")
        self.history_s = history_s
        self.burst_s = burst_s

    @abstractmethod
    def lookup(self, event_ids: Sequence[str], ranges: Sequence[KeyRange]) -> Lookup:
        """Stored scores of ``event_ids`` and the rows of every event in ``ranges``."""

    @abstractmethod
    def put(self, events: Sequence[NewEvent]) -> dict[str, dict[str, Any]]:
        """Remember ``events``; return the stored score per id (the first writer's wins)."""

    @abstractmethod
    def generation(self) -> int:
        """Model generation: bumped by ``/reload`` so every worker picks the new model up."""

    @abstractmethod
    def bump_generation(self) -> int:
        """Increment and return the model generation."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def describe(self) -> str:
        """Short label for health output and logs."""
        return self.kind


# --- in process -------------------------------------------------------------------------------
class _Index:
    """Event ids of one key ordered by (time, id), for range lookups and trimming."""

    __slots__ = ("items", "newest")

    def __init__(self) -> None:
        self.items: list[tuple[int, str]] = []
        self.newest = -(2**63)

    def add(self, t_ns: int, event_id: str) -> None:
        item = (t_ns, event_id)
        if not self.items or item > self.items[-1]:  # the usual case: events arrive in order
            self.items.append(item)
        else:
            i = bisect.bisect_left(self.items, item)
            if i == len(self.items) or self.items[i] != item:
                self.items.insert(i, item)
        if t_ns > self.newest:
            self.newest = t_ns

    def between(self, lo_ns: int | None, hi_ns: int | None) -> list[str]:
        items = self.items
        lo = 0 if lo_ns is None else bisect.bisect_left(items, (lo_ns, ""))
        hi = len(items) if hi_ns is None else bisect.bisect_right(items, (hi_ns, "\U0010ffff"))
        return [eid for _, eid in items[lo:hi]]

    def trim_before(self, t_ns: int) -> list[str]:
        if not self.items or self.items[0][0] >= t_ns:
            return []
        cut = bisect.bisect_left(self.items, (t_ns, ""))
        gone = [eid for _, eid in self.items[:cut]]
        del self.items[:cut]
        return gone


class MemoryState(WindowState):
    """State in this process: the default for a single worker (and for tests)."""

    kind = "memory"
    PRUNE_EVERY = 5_000  # stored events between sweeps of expired rows and empty keys

    def __init__(self, history_s: int, burst_s: int) -> None:
        super().__init__(history_s, burst_s)
        self._lock = threading.Lock()
        self._rows: dict[str, dict[str, Any] | list[Any]] = {}
        self._scores: dict[str, dict[str, Any]] = {}
        self._messages: dict[str, _Index] = {}
        self._bursts: dict[str, _Index] = {}
        self._newest = -(2**63)
        self._since_prune = 0
        self._generation = 0

    def lookup(self, event_ids: Sequence[str], ranges: Sequence[KeyRange]) -> Lookup:
        with self._lock:
            scores = {e: self._scores[e] for e in event_ids if e in self._scores}
            rows: dict[str, Any] = {}
            for r in ranges:
                index = self._messages.get(r.key)
                if index is None:
                    index = self._bursts.get(r.key)
                if index is None:
                    continue
                for eid in index.between(r.lo_ns, r.hi_ns):
                    if eid not in rows:
                        rows[eid] = self._rows[eid]
            return Lookup(scores, rows)

    def put(self, events: Sequence[NewEvent]) -> dict[str, dict[str, Any]]:
        stored: dict[str, dict[str, Any]] = {}
        with self._lock:
            for ev in events:
                if ev.event_id in self._scores:
                    stored[ev.event_id] = self._scores[ev.event_id]
                    continue
                self._scores[ev.event_id] = ev.score
                self._rows[ev.event_id] = ev.row
                self._messages.setdefault(ev.message_key, _Index()).add(ev.t_ns, ev.event_id)
                for key in ev.burst_keys:
                    index = self._bursts.setdefault(key, _Index())
                    index.add(ev.t_ns, ev.event_id)
                    index.trim_before(index.newest - self.burst_s * NS)
                self._newest = max(self._newest, ev.t_ns)
                stored[ev.event_id] = ev.score
            self._since_prune += len(events)
            if self._since_prune >= self.PRUNE_EVERY:
                self._prune()
        return stored

    def _prune(self) -> None:
        """Drop events past the history retention, and keys with nothing left."""
        self._since_prune = 0
        horizon = self._newest - self.history_s * NS
        for key, index in list(self._messages.items()):
            for eid in index.trim_before(horizon):
                self._rows.pop(eid, None)
                self._scores.pop(eid, None)
            if not index.items:
                del self._messages[key]
        burst_horizon = self._newest - self.burst_s * NS
        for key, index in list(self._bursts.items()):
            index.trim_before(burst_horizon)
            if not index.items:
                del self._bursts[key]

    def generation(self) -> int:
        return self._generation

    def bump_generation(self) -> int:
        with self._lock:
            self._generation += 1
            return self._generation

    def size(self) -> dict[str, int]:
        """Counts of stored events and keys (for tests and health output)."""
        with self._lock:
            return {
                "events": len(self._rows),
                "messages": len(self._messages),
                "burst_keys": len(self._bursts),
            }


# --- Redis ------------------------------------------------------------------------------------
def _us(t_ns: int) -> int:
    return t_ns // US


class RedisState(WindowState):
    """State in Redis, shared by every worker and replica.

    Keys (all under ``prefix``): ``r:<id>`` raw row JSON and ``s:<id>`` score JSON (``SET NX``,
    expiring after ``history_s``); per message and per burst key a sorted set of event ids scored
    by ``occurred_at`` in microseconds. A request costs three round trips: one pipeline for the
    stored scores and the id ranges, one ``MGET`` for rows this worker has not cached yet, one
    pipeline for the writes. Rows never change once written, so each worker caches them.
    """

    kind = "redis"

    def __init__(
        self,
        url: str,
        history_s: int,
        burst_s: int,
        prefix: str = "botfilter:",
        cache_rows: int = 100_000,
    ) -> None:
        super().__init__(history_s, burst_s)
        import redis

        self.url = url
        self.prefix = prefix
        self._redis = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self._gen_key = f"{prefix}model_generation"
        self._cache: dict[str, Any] = {}
        self._cache_max = cache_rows

    def _unavailable(self, exc: Exception) -> StateUnavailable:
        return StateUnavailable(f"window state in Redis at {_safe_url(self.url)}: {exc}")

    def ping(self) -> None:
        """Fail early, with the URL, when Redis cannot be reached."""
        from redis.exceptions import RedisError

        try:
            self._redis.ping()
        except RedisError as exc:
            raise self._unavailable(exc) from exc

    def _remember(self, event_id: str, row: Any) -> None:
        if len(self._cache) >= self._cache_max:
            # Oldest first (dicts keep insertion order): drop the older half at once.
            for old in list(self._cache)[: self._cache_max // 2]:
                del self._cache[old]
        self._cache[event_id] = row

    def lookup(self, event_ids: Sequence[str], ranges: Sequence[KeyRange]) -> Lookup:
        from redis.exceptions import RedisError

        p = self.prefix
        try:
            pipe = self._redis.pipeline(transaction=False)
            if event_ids:
                pipe.mget([f"{p}s:{e}" for e in event_ids])
            for r in ranges:
                lo = "-inf" if r.lo_ns is None else _us(r.lo_ns) - 1
                hi = "+inf" if r.hi_ns is None else _us(r.hi_ns) + 1
                pipe.zrangebyscore(f"{p}{r.key}", lo, hi)
            out = pipe.execute()
            scores: dict[str, dict[str, Any]] = {}
            if event_ids:
                for eid, raw in zip(event_ids, out[0], strict=True):
                    if raw is not None:
                        scores[eid] = json.loads(raw)
                out = out[1:]
            ids = list(dict.fromkeys(m.decode() for members in out for m in members))
            rows: dict[str, Any] = {}
            missing = []
            for eid in ids:
                row = self._cache.get(eid)
                if row is None:
                    missing.append(eid)
                else:
                    rows[eid] = row
            if missing:
                raws = self._redis.mget([f"{p}r:{e}" for e in missing])
                for eid, raw in zip(missing, raws, strict=True):
                    if raw is not None:  # None: expired with its retention, no longer history
                        rows[eid] = json.loads(raw)
                        self._remember(eid, rows[eid])
        except RedisError as exc:
            raise self._unavailable(exc) from exc
        return Lookup(scores, rows)

    def put(self, events: Sequence[NewEvent]) -> dict[str, dict[str, Any]]:
        from redis.exceptions import RedisError

        if not events:
            return {}
        p = self.prefix
        newest: dict[str, int] = {}
        messages: dict[str, dict[str, int]] = {}
        bursts: dict[str, dict[str, int]] = {}
        try:
            pipe = self._redis.pipeline(transaction=False)
            for ev in events:
                pipe.set(f"{p}s:{ev.event_id}", json.dumps(ev.score), nx=True, ex=self.history_s)
            for ev in events:
                row = json.dumps(ev.row, separators=(",", ":"))
                pipe.set(f"{p}r:{ev.event_id}", row, nx=True, ex=self.history_s)
                messages.setdefault(ev.message_key, {})[ev.event_id] = _us(ev.t_ns)
                for key in ev.burst_keys:
                    bursts.setdefault(key, {})[ev.event_id] = _us(ev.t_ns)
                    newest[key] = max(newest.get(key, ev.t_ns), ev.t_ns)
            for key, members in messages.items():
                pipe.zadd(f"{p}{key}", members)
                pipe.expire(f"{p}{key}", self.history_s)
            for key, members in bursts.items():
                pipe.zadd(f"{p}{key}", members)
                # Trimmed from the newest event of the key in this batch: a late batch never
                # removes what newer events still need.
                horizon = _us(newest[key]) - self.burst_s * 1_000_000
                pipe.zremrangebyscore(f"{p}{key}", "-inf", f"({horizon}")
                pipe.expire(f"{p}{key}", self.burst_s + 60)
            won = pipe.execute()[: len(events)]
            stored = {ev.event_id: ev.score for ev, ok in zip(events, won, strict=True) if ok}
            lost = [ev for ev, ok in zip(events, won, strict=True) if not ok]
            if lost:
                # Another request stored these ids first: answer as it did.
                raws = self._redis.mget([f"{p}s:{ev.event_id}" for ev in lost])
                for ev, raw in zip(lost, raws, strict=True):
                    stored[ev.event_id] = json.loads(raw) if raw is not None else ev.score
        except RedisError as exc:
            raise self._unavailable(exc) from exc
        for ev in events:
            self._remember(ev.event_id, ev.row)
        return stored

    def generation(self) -> int:
        from redis.exceptions import RedisError

        try:
            raw = self._redis.get(self._gen_key)
        except RedisError as exc:
            raise self._unavailable(exc) from exc
        return int(raw) if raw is not None else 0

    def bump_generation(self) -> int:
        from redis.exceptions import RedisError

        try:
            return int(self._redis.incr(self._gen_key))
        except RedisError as exc:
            raise self._unavailable(exc) from exc

    def close(self) -> None:
        self._redis.close()

    def describe(self) -> str:
        return f"redis {_safe_url(self.url)} ({self.prefix}*)"

    def delete_all(self, batch: int = 1_000) -> int:
        """Delete every key under this state's prefix (tests and benchmarks); returns the count."""
        n = 0
        keys: list[Any] = []
        for key in self._redis.scan_iter(match=f"{self.prefix}*", count=batch):
            keys.append(key)
            if len(keys) >= batch:
                n += self._redis.unlink(*keys)
                keys = []
        if keys:
            n += self._redis.unlink(*keys)
        self._cache.clear()
        return n


def _safe_url(url: str) -> str:
    """The URL without a password, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def make_state(
    redis_url: str | None,
    history_s: int,
    burst_s: int,
    prefix: str = "botfilter:",
    wait_s: float = 5.0,
) -> WindowState:
    """Redis state when a URL is configured (pinged for up to ``wait_s``), else in process."""
    if not redis_url:
        return MemoryState(history_s, burst_s)
    from botfilter.errors import BotfilterError

    state = RedisState(redis_url, history_s, burst_s, prefix)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            state.ping()
            return state
        except StateUnavailable as exc:
            if time.monotonic() > deadline:
                raise BotfilterError(f"cannot reach Redis: {exc}") from exc
            time.sleep(0.2)
