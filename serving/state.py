"""Window state for the online API: the recent history that causal features need.

An event's features depend on every earlier event of its message (any age) and on the events of
the same tenant sharing a burst key (the scorer's: /24-/48 prefix and ASN, which cover the IP and
send groups) in the longest window. The API rebuilds that history for each request, so the state
keeps:

* one raw context row and one score per ``event_id`` (the score makes duplicates idempotent);
* per message, the ids of its events ordered by ``occurred_at`` (kept ``history_s``);
* per burst key, the ids of its events ordered by ``occurred_at``, trimmed to ``burst_s`` before
  the newest event seen on the key (the longest window plus the lateness tolerated).

Lookups are by time range, never "last N", so out-of-order events within the tolerated lateness
see the same history as in batch. :class:`MemoryState` serves one process; :class:`RedisState`
is shared by every worker and replica (sorted sets scored by ``occurred_at`` in microseconds).

Rows, the reasons of answers and (in process) each key's events are kept as tuples of plain
values: the garbage collector stops tracking such tuples and the dicts holding only them, so a
large history does not make every full collection a longer pause.
"""

from __future__ import annotations

import bisect
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

NS = 1_000_000_000
US = 1_000  # nanoseconds per microsecond: sorted-set scores are integer microseconds


class StateUnavailable(RuntimeError):
    """The shared state cannot be reached: the request cannot be answered causally."""


class KeyRange(NamedTuple):
    """Events of one key with ``lo_ns <= occurred_at <= hi_ns`` (``None``: unbounded).

    The state reads ranges by unpacking, so a plain ``(key, lo_ns, hi_ns)`` tuple does too."""

    key: str
    lo_ns: int | None = None
    hi_ns: int | None = None


class NewEvent(NamedTuple):
    """A scored event to remember: its raw row, keys and the answer given for it.

    The state reads events by unpacking, so a plain tuple in this order does too."""

    event_id: str
    t_ns: int
    row: tuple[Any, ...]  # JSON-ready raw context row
    message_key: str
    burst_keys: tuple[str, ...]
    score: dict[str, Any]


@dataclass(frozen=True)
class Lookup:
    """What the state knows for one request."""

    scores: dict[str, dict[str, Any]]  # stored answers of already-seen event ids
    rows: dict[str, tuple[Any, ...]]  # raw rows of the history events, by event id


class WindowState(ABC):
    """Recent events, keyed for causal feature reconstruction; shared by all requests."""

    kind: str = "abstract"
    local: bool = True  # operations never wait on the network

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
Items = tuple[tuple[int, str], ...]  # one key's (time, event id) pairs, sorted


def _between(items: Items, lo_ns: int | None, hi_ns: int | None) -> list[str]:
    """Ids of the (time, id) pairs with lo_ns <= time <= hi_ns (``items`` sorted)."""
    lo = 0 if lo_ns is None else bisect.bisect_left(items, (lo_ns, ""))
    hi = len(items) if hi_ns is None else bisect.bisect_right(items, (hi_ns, "\U0010ffff"))
    return [eid for _, eid in items[lo:hi]]


def _cut(items: Items, t_ns: int) -> int:
    """How many of the (sorted) pairs are before ``t_ns``."""
    return 0 if not items or items[0][0] >= t_ns else bisect.bisect_left(items, (t_ns, ""))


def _merge(
    new: dict[str, list[tuple[int, str]]],
    index: dict[str, Items],
    log: deque[tuple[int, str]],
    keep_ns: int | None,
) -> None:
    """Add each key's new (time, id) pairs to its sorted pairs in ``index`` and log the write;
    with ``keep_ns``, drop the pairs older than that before the key's newest one."""
    for key, added in new.items():
        if len(added) > 1:
            added.sort()
        items = index.get(key)
        if items is None:
            items = tuple(added)
        elif added[0] > items[-1]:  # the usual case: events come in time order
            items += tuple(added)
        else:
            items = tuple(sorted(items + tuple(added)))  # two sorted runs: a linear merge
        if keep_ns is not None and items[-1][0] - items[0][0] > keep_ns:
            items = items[_cut(items, items[-1][0] - keep_ns) :]
        index[key] = items
        log.append((added[-1][0], key))


class MemoryState(WindowState):
    """State in this process: the default for a single worker (and for tests).

    Each key maps to a tuple of (time, id) pairs kept sorted. Expiry is incremental: every write
    logs (time, key) for the keys it touched, and pops the log entries that fell out of
    retention, trimming their keys, so no sweep ever walks all keys. Keys hold tuples, not
    lists, and rows are tuples too: the garbage collector stops tracking all of them, so a full
    collection does not walk the whole history (a pause that would grow with it).
    """

    kind = "memory"

    def __init__(self, history_s: int, burst_s: int) -> None:
        super().__init__(history_s, burst_s)
        self._lock = threading.Lock()
        self._rows: dict[str, tuple[Any, ...]] = {}
        self._scores: dict[str, dict[str, Any]] = {}
        self._messages: dict[str, Items] = {}
        self._bursts: dict[str, Items] = {}
        self._message_log: deque[tuple[int, str]] = deque()
        self._burst_log: deque[tuple[int, str]] = deque()
        self._newest = -(2**63)
        self._generation = 0

    def lookup(self, event_ids: Sequence[str], ranges: Sequence[KeyRange]) -> Lookup:
        with self._lock:
            scores = {e: self._scores[e] for e in event_ids if e in self._scores}
            rows: dict[str, tuple[Any, ...]] = {}
            for key, lo_ns, hi_ns in ranges:
                items = self._messages.get(key)
                if items is None:
                    items = self._bursts.get(key)
                if items:
                    for eid in _between(items, lo_ns, hi_ns):
                        if eid not in rows:
                            rows[eid] = self._rows[eid]
            return Lookup(scores, rows)

    def put(self, events: Sequence[NewEvent]) -> dict[str, dict[str, Any]]:
        stored: dict[str, dict[str, Any]] = {}
        messages: dict[str, list[tuple[int, str]]] = {}
        bursts: dict[str, list[tuple[int, str]]] = {}
        with self._lock:
            scores, rows, newest = self._scores, self._rows, self._newest
            for eid, t_ns, row, message_key, burst_keys, score in events:
                known = scores.get(eid)
                if known is not None:
                    stored[eid] = known
                    continue
                stored[eid] = scores[eid] = score
                rows[eid] = row
                item = (t_ns, eid)
                added = messages.get(message_key)
                if added is None:
                    messages[message_key] = [item]
                else:
                    added.append(item)
                for key in burst_keys:
                    added = bursts.get(key)
                    if added is None:
                        bursts[key] = [item]
                    else:
                        added.append(item)
                if t_ns > newest:
                    newest = t_ns
            self._newest = newest
            _merge(messages, self._messages, self._message_log, None)
            # Burst keys relative to the key's newest event, as in Redis: late events keep theirs.
            _merge(bursts, self._bursts, self._burst_log, self.burst_s * NS)
            self._expire()
        return stored

    def _expire(self) -> None:
        """Trim the keys whose logged writes fell out of retention; drop emptied keys."""
        horizon = self._newest - self.history_s * NS
        while self._message_log and self._message_log[0][0] < horizon:
            _, key = self._message_log.popleft()
            items = self._messages.get(key)
            cut = _cut(items, horizon) if items is not None else 0
            if cut:
                for _, eid in items[:cut]:  # type: ignore[index]
                    self._rows.pop(eid, None)
                    self._scores.pop(eid, None)
                self._keep(self._messages, key, items[cut:])  # type: ignore[index]
        horizon = self._newest - self.burst_s * NS
        while self._burst_log and self._burst_log[0][0] < horizon:
            _, key = self._burst_log.popleft()
            items = self._bursts.get(key)
            cut = _cut(items, horizon) if items is not None else 0
            if cut:
                self._keep(self._bursts, key, items[cut:])  # type: ignore[index]

    @staticmethod
    def _keep(index: dict[str, Items], key: str, items: Items) -> None:
        if items:
            index[key] = items
        else:
            del index[key]

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


# --- Redis ---------------------------------------------------------------------------------
# Each script takes one JSON argument (and the write script a blob of values) and answers a flat
# array: a single round trip each, next to no client-side encoding of Redis commands, and no JSON
# inside JSON to escape. Times travel as strings, because Lua numbers would be formatted with 14
# significant digits. Redis serves every worker on one thread, so the write script issues as few
# commands as it can: one SET per event, and one ZADD per key with all of the request's new
# events on that key.
_LOOKUP_LUA = """
local d = cjson.decode(ARGV[1])
local p = d.p
-- MGET in chunks: one call per thousand keys instead of one per key (a call from Lua costs
-- more than the read itself).
local function mget(ids, from, to, emit)
  for s = from, to, 1000 do
    local e = math.min(s + 999, to)
    local keys = {}
    for j = s, e do keys[#keys + 1] = p .. 'e:' .. ids[j] end
    local got = redis.call('MGET', unpack(keys))
    for j = 1, #keys do emit(s + j - 1, got[j]) end
  end
end
local out = {}
mget(d.i, 1, #d.i, function(i, v) out[i] = v end)
local seen, members = {}, {}
for _, r in ipairs(d.r) do
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', p .. r[1], r[2], r[3])) do
    if not seen[m] then
      seen[m] = true
      members[#members + 1] = m
    end
  end
end
mget(members, 1, #members, function(j, entry)
  if entry then
    out[#out + 1] = members[j]
    out[#out + 1] = entry
  end
end)
return out
"""

_PUT_LUA = """
local d = cjson.decode(ARGV[1])
local p, h = d.p, d.h
local out, members, newest, order, message = {}, {}, {}, {}, {}
local blob, at = ARGV[2], 1
for i, e in ipairs(d.e) do
  local id, t, size = e[1], e[2], e[3]
  local value = string.sub(blob, at, at + size - 1)
  at = at + size
  if redis.call('SET', p .. 'e:' .. id, value, 'NX', 'EX', h) then
    out[i] = true
    message[e[4]] = true
    for j = 4, #e do
      local k = e[j]
      local m = members[k]
      if not m then
        m = {}
        members[k] = m
        order[#order + 1] = k
      end
      m[#m + 1] = t
      m[#m + 1] = id
      local tn = tonumber(t)
      if not newest[k] or newest[k] < tn then newest[k] = tn end
    end
  else
    out[i] = redis.call('GET', p .. 'e:' .. id) or false
  end
end
for _, k in ipairs(order) do
  local key, m = p .. k, members[k]
  for s = 1, #m, 4000 do
    redis.call('ZADD', key, unpack(m, s, math.min(s + 3999, #m)))
  end
  if message[k] then
    redis.call('EXPIRE', key, h)
  else
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. string.format('%.0f', newest[k] - d.b))
    redis.call('EXPIRE', key, d.bt)
  end
end
return out
"""


def _us(t_ns: int) -> int:
    return t_ns // US


class RedisState(WindowState):
    """State in Redis, shared by every worker and replica.

    Keys (all under ``prefix``): ``e:<id>`` the JSON array ``[answer, raw row]`` of an event
    (``SET NX``, expiring after ``history_s``); per message and per burst key a sorted set of
    event ids scored by ``occurred_at`` in microseconds. A request costs two round trips: a Lua
    script for the stored answers of its ids and the entries of every event in the requested
    ranges, and one for the writes (which also answers, for an id another worker stored first,
    that worker's answer).
    """

    kind = "redis"
    local = False
    CHUNK = 1_000  # events per write script: keeps each script's hold on Redis short

    def __init__(
        self,
        url: str,
        history_s: int,
        burst_s: int,
        prefix: str = "botfilter:",
    ) -> None:
        super().__init__(history_s, burst_s)
        import redis

        self.url = url
        self.prefix = prefix
        self._redis = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self._lookup = self._redis.register_script(_LOOKUP_LUA)
        self._put = self._redis.register_script(_PUT_LUA)
        self._gen_key = f"{prefix}model_generation"

    def _unavailable(self, exc: Exception) -> StateUnavailable:
        return StateUnavailable(f"window state in Redis at {_safe_url(self.url)}: {exc}")

    def ping(self) -> None:
        """Fail early, with the URL, when Redis cannot be reached."""
        from redis.exceptions import RedisError

        try:
            self._redis.ping()
        except RedisError as exc:
            raise self._unavailable(exc) from exc

    def lookup(self, event_ids: Sequence[str], ranges: Sequence[KeyRange]) -> Lookup:
        from redis.exceptions import RedisError

        payload = {
            "p": self.prefix,
            "i": list(event_ids),
            "r": [
                [
                    key,
                    "-inf" if lo_ns is None else str(_us(lo_ns) - 1),
                    "+inf" if hi_ns is None else str(_us(hi_ns) + 1),
                ]
                for key, lo_ns, hi_ns in ranges
            ],
        }
        try:
            reply = self._lookup(args=[orjson.dumps(payload)])
        except RedisError as exc:
            raise self._unavailable(exc) from exc
        # The entries of the requested ids (None: unknown), then (id, entry) of the history.
        n = len(event_ids)
        scores = {
            eid: orjson.loads(raw)[0]
            for eid, raw in zip(event_ids, reply[:n], strict=True)
            if raw is not None
        }
        ids, entries = reply[n::2], reply[n + 1 :: 2]
        rows = {
            m.decode(): tuple(orjson.loads(raw)[1]) for m, raw in zip(ids, entries, strict=True)
        }
        return Lookup(scores, rows)

    def put(self, events: Sequence[NewEvent]) -> dict[str, dict[str, Any]]:
        from redis.exceptions import RedisError

        stored: dict[str, dict[str, Any]] = {}
        try:
            for start in range(0, len(events), self.CHUNK):
                chunk = events[start : start + self.CHUNK]
                # Each event's value [answer, row] goes in one blob, as is (no JSON inside JSON to
                # escape), cut by the sizes the events carry: two arguments in all.
                values = [orjson.dumps((score, row)) for _, _, row, _, _, score in chunk]
                meta = {
                    "p": self.prefix,
                    "h": self.history_s,
                    "b": self.burst_s * 1_000_000,
                    "bt": self.burst_s + 60,
                    "e": [
                        [eid, str(t_ns // US), len(v), message_key, *burst_keys]
                        for (eid, t_ns, _, message_key, burst_keys, _), v in zip(
                            chunk, values, strict=True
                        )
                    ],
                }
                answers = self._put(args=[orjson.dumps(meta), b"".join(values)])
                for (eid, _, _, _, _, score), answer in zip(chunk, answers, strict=True):
                    # 1: stored by us; bytes: the entry of whoever stored the id first.
                    stored[eid] = score if answer == 1 else orjson.loads(answer)[0]
        except RedisError as exc:
            raise self._unavailable(exc) from exc
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
