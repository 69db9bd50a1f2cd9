"""Window state for the online API: the recent history that causal features need.

An event's features depend on every earlier event of its message (any age) and on the events of
the same tenant sharing a burst key (the scorer's: /24-/48 prefix and ASN, which cover the IP and
send groups) in the longest window. The API rebuilds that history for each request, so the state
keeps:

* one raw context row and one score per event, keyed by the scorer's
  ``serving.scorer.state_id`` of (tenant, ``event_id``) (the score makes duplicates idempotent);
* per message, the ids of its events ordered by ``occurred_at`` (kept ``history_s``);
* per burst key, the ids of its events ordered by ``occurred_at``, trimmed to ``burst_s`` before
  the newest event seen on the key (the longest window plus the lateness tolerated).

Lookups are by time range, never "last N", so out-of-order events within the tolerated lateness
see the same history as in batch. Expiry trims every key of a tenant from the newest event *of the
tenant*, so the lateness counts from that: a lookup reports each tenant's newest time, and the
scorer does not take an answer computed further behind it as final (its history may be trimmed).
:class:`MemoryState` serves one process; :class:`RedisState` is shared by every worker and
replica: one log of scored events per tenant in Redis, which each worker replays into its own
:class:`MemoryState`. Tenants are walls: no Redis key holds two
tenants' events, and a request reads only its own tenants' logs, so one tenant's flood is never
replayed for another tenant's request.

Rows, the reasons of answers and each key's events are kept as tuples of plain values: the
garbage collector stops tracking such tuples and the dicts holding only them, so a large history
does not make every full collection a longer pause.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from core.errors import BotfilterError
from core.redact import one_line, redact

NS = 1_000_000_000
log = logging.getLogger("botfilter.serving")


class StateUnavailable(RuntimeError):
    """The shared state cannot be reached: the request cannot be answered causally.

    The message names the state and why (secrets masked), for logs and the command line; API
    clients get :data:`PUBLIC_UNAVAILABLE` instead, which names no host."""


PUBLIC_UNAVAILABLE = "the shared window state cannot be reached: retry later"


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


# What the state reads (by unpacking): a KeyRange / NewEvent, or a plain tuple in its order.
KeyRangeTuple = tuple[str, int | None, int | None]
NewEventTuple = tuple[str, int, tuple[Any, ...], str, tuple[str, ...], dict[str, Any]]


@dataclass(frozen=True)
class Lookup:
    """What the state knows for one request."""

    scores: dict[str, dict[str, Any]]  # stored answers of already-seen event ids
    rows: dict[str, tuple[Any, ...]]  # raw rows of the history events, by event id
    # Of the tenants asked for, the newest occurred_at (ns) the state has seen of each (a tenant
    # it has seen nothing of is left out). Every trim of a tenant's keys, per key (relative to
    # the key's newest event) or by expiry (relative to this), removed only events older than
    # this minus the retention: an event more than the lateness (``burst_s`` less the longest
    # window) behind it may have read a trimmed history.
    newest: dict[str, int]


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
    def lookup(
        self,
        event_ids: Sequence[str],
        ranges: Sequence[KeyRangeTuple],
        tenants: Collection[str] = (),
    ) -> Lookup:
        """Stored scores of ``event_ids``, the rows of every event in ``ranges`` and the newest
        time seen of each of ``tenants`` (see :class:`Lookup`)."""

    @abstractmethod
    def put(self, events: Sequence[NewEventTuple]) -> dict[str, dict[str, Any]]:
        """Remember ``events``; return the stored score per id (the first writer's wins)."""

    @abstractmethod
    def generation(self) -> int:
        """Model generation: bumped by ``/reload`` so every worker picks the new model up."""

    @abstractmethod
    def bump_generation(self) -> int:
        """Increment and return the model generation."""

    def follow(self, every_s: float) -> None:  # noqa: B027 - optional hook
        """Keep up with other writers in the background, every ``every_s`` (shared states)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def describe(self) -> str:
        """Short label for logs (never shown to API clients: it may name a host)."""
        return self.kind

    def unready(self) -> str | None:
        """Why the state cannot serve a request now (None: it can). Quick: a readiness probe
        calls it."""
        return None


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


def _tenant_of(key: str) -> str:
    """The tenant of a state key (``m:`` / ``k:<len(tenant)>:<tenant>:...``, see
    ``serving.scorer.Scorer._keys``)."""
    size, _, rest = key[2:].partition(":")
    return rest[: int(size)]


def _merge(
    new: dict[str, list[tuple[int, str]]],
    index: dict[str, Items],
    logs: dict[str, deque[tuple[int, str]]],
    keep_ns: int | None,
) -> None:
    """Add each key's new (time, id) pairs to its sorted pairs in ``index`` and log the write in
    its tenant's log; with ``keep_ns``, drop the pairs older than that before the key's newest
    one."""
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
        tenant = _tenant_of(key)
        log = logs.get(tenant)
        if log is None:
            log = logs[tenant] = deque()
        log.append((added[-1][0], key))


class MemoryState(WindowState):
    """State in this process: the default for a single worker (and for tests).

    Each key maps to a tuple of (time, id) pairs kept sorted. Expiry is incremental: every write
    logs (time, key) for the keys it touched, and pops the log entries that fell out of
    retention, trimming their keys, so no sweep ever walks all keys. Retention runs per tenant,
    from the newest event *that tenant* sent: one tenant's clock (a client whose timestamps run
    ahead) never expires another tenant's history or deduplication. Keys hold tuples, not
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
        # Per tenant: its logs of writes and the newest occurred_at it sent.
        self._message_log: dict[str, deque[tuple[int, str]]] = {}
        self._burst_log: dict[str, deque[tuple[int, str]]] = {}
        self._newest: dict[str, int] = {}
        self._generation = 0

    def lookup(
        self,
        event_ids: Sequence[str],
        ranges: Sequence[KeyRangeTuple],
        tenants: Collection[str] = (),
    ) -> Lookup:
        with self._lock:
            seen = self._newest
            newest = {t: seen[t] for t in tenants if t in seen}
            scores = {e: self._scores[e] for e in event_ids if e in self._scores}
            rows: dict[str, tuple[Any, ...]] = {}
            for key, lo_ns, hi_ns in ranges:
                items = self._messages.get(key)
                if items is None:
                    items = self._bursts.get(key)
                if items:
                    for eid in _between(items, lo_ns, hi_ns):
                        # A key's log entry may wait behind a newer one (writes out of time
                        # order), so it can still name an event whose message's history
                        # expired it: that event is out of retention, not in the window.
                        if eid not in rows and (row := self._rows.get(eid)) is not None:
                            rows[eid] = row
            return Lookup(scores, rows, newest)

    def put(self, events: Sequence[NewEventTuple]) -> dict[str, dict[str, Any]]:
        stored: dict[str, dict[str, Any]] = {}
        messages: dict[str, list[tuple[int, str]]] = {}
        bursts: dict[str, list[tuple[int, str]]] = {}
        with self._lock:
            scores, rows, newest = self._scores, self._rows, self._newest
            touched: set[str] = set()
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
                tenant = _tenant_of(message_key)
                touched.add(tenant)
                if t_ns > newest.get(tenant, -(2**63)):
                    newest[tenant] = t_ns
            _merge(messages, self._messages, self._message_log, None)
            # Burst keys relative to the key's newest event, as in Redis: late events keep theirs.
            _merge(bursts, self._bursts, self._burst_log, self.burst_s * NS)
            for tenant in touched:
                self._expire(tenant)
        return stored

    def _expire(self, tenant: str) -> None:
        """Trim ``tenant``'s keys whose logged writes fell out of its retention; drop emptied
        keys."""
        newest = self._newest[tenant]
        horizon = newest - self.history_s * NS
        log = self._message_log.get(tenant)
        while log and log[0][0] < horizon:
            _, key = log.popleft()
            items = self._messages.get(key)
            if items is not None and (cut := _cut(items, horizon)):
                for _, eid in items[:cut]:
                    self._rows.pop(eid, None)
                    self._scores.pop(eid, None)
                self._keep(self._messages, key, items[cut:])
        horizon = newest - self.burst_s * NS
        log = self._burst_log.get(tenant)
        while log and log[0][0] < horizon:
            _, key = log.popleft()
            items = self._bursts.get(key)
            if items is not None and (cut := _cut(items, horizon)):
                self._keep(self._bursts, key, items[cut:])

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
# One write, atomic: for each tenant of the write, append its events to that tenant's log
# (KEYS[i]) as one entry, and answer the entry's id with every entry logged there between the
# writer's last read of that log and it. ARGV: the expiry in seconds, the oldest entry id to keep,
# the writer's tag, then per log its entry (a JSON array) and the writer's last read of it. The
# writer replays those entries before its own, so an id some other worker logged first gets that
# worker's answer here too: a log's first occurrence of an id is the answer everywhere.
_PUT_LUA = """
local out = {}
for i, log in ipairs(KEYS) do
  local id = redis.call('XADD', log, 'MINID', '~', ARGV[2], '*', 'o', ARGV[3], 'v', ARGV[2 + 2 * i])
  redis.call('EXPIRE', log, ARGV[1])
  out[i] = {id, redis.call('XRANGE', log, '(' .. ARGV[3 + 2 * i], '(' .. id)}
end
return out
"""

_START = b"0-0"  # the read position of a log not read yet: from its first entry


def _tenant_of_id(event_id: str) -> str | None:
    """The tenant of a state event id (``<len(tenant)>:<tenant>:<event_id>``, see
    ``serving.scorer.state_id``); None for an id not of that form."""
    size, sep, rest = event_id.partition(":")
    if sep and size.isascii() and size.isdigit():
        n = int(size)
        if len(rest) > n and rest[n] == ":":
            return rest[:n]
    return None


# A request's keys mostly share a tenant, or a few tenants interleaved: a key is first tried
# against the key heads ("<len(tenant)>:<tenant>:") of the first _RECENT_HEADS tenants met, and
# only then parsed.
_RECENT_HEADS = 8


def _tenants(event_ids: Sequence[str], ranges: Sequence[KeyRangeTuple]) -> set[str]:
    """The tenants a lookup concerns: those of its ranges' keys and of its event ids."""
    tenants: set[str] = set()
    heads: tuple[str, ...] = ()  # str.startswith tries them all in one call
    for key, _, _ in ranges:
        if not key.startswith(heads, 2):
            tenant = _tenant_of(key)
            tenants.add(tenant)
            if len(heads) < _RECENT_HEADS:
                heads += (f"{len(tenant)}:{tenant}:",)
    for eid in event_ids:
        if not eid.startswith(heads):
            found = _tenant_of_id(eid)
            if found is not None:
                tenants.add(found)
                if len(heads) < _RECENT_HEADS:
                    heads += (f"{len(found)}:{found}:",)
    return tenants


def _by_tenant(events: Sequence[NewEventTuple]) -> dict[str, list[NewEventTuple]]:
    """The events of each tenant (from its message key), in their order."""
    groups: dict[str, list[NewEventTuple]] = {}
    recent: dict[str, list[NewEventTuple]] = {}  # head -> its tenant's events
    head, group = "\0", []  # matches no key: a key's third character is a digit
    for event in events:
        key = event[3]
        if not key.startswith(head, 2):
            for h, g in recent.items() if len(groups) <= _RECENT_HEADS else ():
                if key.startswith(h, 2):
                    head, group = h, g
                    break
            else:
                tenant = _tenant_of(key)
                head = f"{len(tenant)}:{tenant}:"
                group = groups.setdefault(tenant, [])
                if len(recent) < _RECENT_HEADS:
                    recent[head] = group
        group.append(event)
    return groups


def _glob_escaped(text: str) -> str:
    """``text`` matched literally by a Redis glob pattern (``SCAN MATCH``)."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


class RedisState(WindowState):
    """State shared through Redis by every worker and replica.

    Redis holds one log of scored events per tenant, ``{prefix}log:<len(tenant)>:<tenant>`` (the
    length keeps two tenants' keys apart whatever their ids hold): a stream with one entry per
    write of that tenant's events, as a JSON array of :class:`NewEvent` tagged with the writer,
    trimmed to ``history_s`` and expiring after it. Tenants are walls: no key holds two tenants'
    events, and a request reads its own tenants' logs only, so one tenant's flood is never
    replayed for another tenant's request. The model generation is the one key all tenants
    share (model state, not tenant data).

    Every worker replays the logs, each in order, into its own :class:`MemoryState`, which keeps
    the first occurrence of an event id: so the first writer's answer is the answer on every
    worker. Before each lookup a worker reads what was logged since its last read in the logs of
    the lookup's tenants (one ``XREAD`` naming them all; a tenant not read yet from its log's
    start), so lookups never cross the network and each history row is decoded once per worker,
    not once per request that needs it. A write is one script that appends one entry to each of
    its tenants' logs and returns, per log, the entries logged since the writer's last read of
    it, which it replays first: an event another worker scored at the same moment is answered as
    that worker answered it.

    A new worker finds the logs (``SCAN``) and replays them all at start (:meth:`catch_up`):
    memory per worker is that of the in-process state. A served worker also replays every log
    it knows in the background (:meth:`follow`), looking for new tenants' logs every
    :attr:`RESCAN_EVERY` turns, so a quiet spell does not leave its next request a backlog to
    replay.
    """

    kind = "redis"
    local = False
    CHUNK = 1_000  # events per script call (and so per log entry): keeps each hold on Redis short
    READ = 1_000  # entries per log per XREAD
    FOLLOW_READ = 10  # entries per log per XREAD of the follower (one hold of the read lock)
    STREAMS = 500  # logs named per XREAD when reading them all (start, follower)
    RESCAN_EVERY = 10  # follower turns between looks for logs of tenants this worker has not read

    def __init__(
        self,
        url: str,
        history_s: int,
        burst_s: int,
        prefix: str = "botfilter:",
    ) -> None:
        super().__init__(history_s, burst_s)
        # redis is imported on use in this class only: an API without BOTFILTER_REDIS_URL (the
        # in-memory state) and `botfilter serve --help` never load it (0.5 s, -X importtime).
        import redis

        self.url = url
        self.prefix = prefix
        self._redis = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self._put_sha = hashlib.sha1(_PUT_LUA.encode()).hexdigest()
        # Reads and writes of the window go over one connection of their own (see _command).
        self._conn = self._redis.connection_pool.make_connection()
        self._conn_lock = threading.Lock()
        self._gen_key = f"{prefix}model_generation"
        self._log_prefix = f"{prefix}log:"
        self._mirror = MemoryState(history_s, burst_s)
        self._origin = os.urandom(8).hex().encode()  # marks this instance's own log entries
        # Per tenant whose log this worker has read or written: the last entry replayed.
        self._read_to: dict[str, bytes] = {}
        self._read_lock = threading.Lock()
        self._stop = threading.Event()
        self._follower: threading.Thread | None = None
        self._probe: Any = None

    def log_key(self, tenant: str) -> str:
        """The key of ``tenant``'s log."""
        return f"{self._log_prefix}{len(tenant)}:{tenant}"

    def _tenant_of_log(self, name: bytes) -> str | None:
        """The tenant whose log ``name`` is; None for a key of another form."""
        try:
            text = name.decode()
        except UnicodeDecodeError:
            return None
        size, sep, tenant = text[len(self._log_prefix) :].partition(":")
        if not text.startswith(self._log_prefix) or not sep or str(len(tenant)) != size:
            return None
        return tenant

    def _unavailable(self, exc: Exception) -> StateUnavailable:
        return StateUnavailable(one_line(f"window state in Redis at {redact(self.url)}: {exc}"))

    def unready(self) -> str | None:
        """A ``PING`` on a connection of its own with a 1 s timeout: a probe must not wait on
        the request path's connection or its 10 s timeout."""
        from redis.exceptions import RedisError

        if self._probe is None:
            import redis

            self._probe = redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
        try:
            self._probe.ping()
        except (RedisError, OSError) as exc:
            return str(self._unavailable(exc))
        return None

    def ping(self) -> None:
        """Fail early, with the URL, when Redis cannot be reached."""
        from redis.exceptions import RedisError

        try:
            self._redis.ping()
        except RedisError as exc:
            raise self._unavailable(exc) from exc

    def _command(self, *args: Any) -> Any:
        """One command's reply, on this state's own connection.

        Every request makes two round trips, and redis-py's client path (connection pool,
        retries, observability hooks) costs several times what the round trip itself does. A
        connection that failed is dropped (a reply may be half read) and reopened on next use.
        """
        from redis.exceptions import ResponseError

        with self._conn_lock:
            try:
                self._conn.send_command(*args)
                return self._conn.read_response()
            except ResponseError:
                raise
            except BaseException:
                self._conn.disconnect()
                raise

    def _replay(self, entries: list[Any]) -> int:
        """Put the events of other writers' log entries into the mirror, in log order; returns
        how many it read. Our own entries are in the mirror already."""
        events: list[Any] = []
        for _, (_, origin, _, value) in entries:  # fields o, v
            if origin != self._origin:
                events += orjson.loads(value)
        if events:
            self._mirror.put([_new_event(*e) for e in events])
        return len(events)

    def _log_names(self) -> list[bytes]:
        """The keys of every tenant's log under the prefix (``SCAN``: a few round trips)."""
        from redis.exceptions import RedisError

        pattern = f"{_glob_escaped(self._log_prefix)}*"
        names: list[bytes] = []
        cursor: Any = b"0"
        try:
            while True:
                cursor, page = self._command("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
                names += page
                if int(cursor) == 0:
                    return names
        except RedisError as exc:
            raise self._unavailable(exc) from exc

    def _discover(self) -> set[str]:
        """The tenants that have a log now."""
        tenants = (self._tenant_of_log(name) for name in self._log_names())
        return {tenant for tenant in tenants if tenant is not None}

    def _adopt(self, found: set[str]) -> None:
        """Forget the read position of the tenants whose log was gone during the ``SCAN`` that
        found ``found`` (it expired): if one comes back, its entries are all newer than that and
        are read from its start. ``_read_lock`` held."""
        for tenant in [t for t in self._read_to if t not in found]:
            del self._read_to[tenant]

    def catch_up(self) -> int:
        """Find every tenant's log and replay what other writers logged there since the last
        read; returns how many events it read. Not on the request path: a request reads its own
        tenants' logs only."""
        with self._read_lock:
            found = self._discover()
            self._adopt(found)
            return self._read(found)

    def _read_once(self, tenants: Sequence[str], count: int) -> tuple[int, list[str]]:
        """One ``XREAD`` naming ``tenants``' logs (distinct), of up to ``count`` entries of each
        since this worker's last read of it (a log not read yet: from its start), replayed;
        returns how many events it read and the tenants whose log may hold more. ``_read_lock``
        held."""
        from redis.exceptions import RedisError

        read_to = self._read_to
        logs = {self.log_key(t).encode(): t for t in tenants}
        positions = [read_to.get(t, _START) for t in tenants]
        try:
            reply = self._command("XREAD", "COUNT", count, "STREAMS", *logs, *positions)
        except RedisError as exc:
            raise self._unavailable(exc) from exc
        if not reply:
            return 0, []
        # RESP3 answers {stream: entries}, RESP2 [[stream, entries], ...]
        streams = list(reply.items()) if isinstance(reply, dict) else reply
        added = self._replay([e for _, entries in streams for e in entries])
        more = []
        for name, entries in streams:
            tenant = logs[name]
            read_to[tenant] = entries[-1][0]
            if len(entries) >= count:
                more.append(tenant)
        return added, more

    def _read(self, tenants: Collection[str]) -> int:
        """Replay what others logged in ``tenants``' logs since this worker's last read of each;
        returns how many events it read. One ``XREAD`` names every log (up to :attr:`STREAMS`),
        and a log that filled its :attr:`READ` entries is read again. ``_read_lock`` held."""
        todo = list(tenants)
        added = 0
        while todo:
            part, todo = todo[: self.STREAMS], todo[self.STREAMS :]
            while part:
                read, part = self._read_once(part, self.READ)
                added += read
        return added

    def follow(self, every_s: float) -> None:
        """Replay every tenant's log this worker knows every ``every_s``, on a background
        thread, and look for new tenants' logs every :attr:`RESCAN_EVERY` turns (the first
        turn included).

        A worker that gets no requests for a while would otherwise replay all that was logged
        meanwhile on its next request (measured: an idle worker's first 1,000-event request took
        2.0 s after the other worker had logged 30,000 events). The thread takes the lock for
        one ``XREAD`` of :attr:`FOLLOW_READ` entries per log at a time, and leaves the rest of a
        turn while a request is reading or writing (that request catches up its own tenants
        itself): a request never waits behind the replay of another tenant's whole backlog.
        """
        if self._follower is not None:
            return

        def run() -> None:
            failing = False
            turns = self.RESCAN_EVERY  # look for logs on the first turn
            while not self._stop.wait(every_s):
                rescan = turns >= self.RESCAN_EVERY
                try:
                    # The SCAN takes a few round trips: never while holding up requests.
                    found = self._discover() if rescan else None
                    if not self._read_lock.acquire(blocking=False):
                        continue
                    try:
                        if found is not None:
                            self._adopt(found)
                        todo = list(self._read_to if found is None else found)
                    finally:
                        self._read_lock.release()
                    turns = 0 if rescan else turns + 1
                    while todo and not self._stop.is_set():
                        if not self._read_lock.acquire(blocking=False):
                            break
                        try:
                            part, todo = todo[: self.STREAMS], todo[self.STREAMS :]
                            _, more = self._read_once(part, self.FOLLOW_READ)
                            todo = more + todo
                        finally:
                            self._read_lock.release()
                    failing = False
                except Exception as exc:  # the thread must outlive an outage: requests retry
                    if not failing:  # and report it too: once per outage is enough here
                        log.warning("cannot follow the shared log: %s", one_line(exc))
                    failing = True

        self._follower = threading.Thread(target=run, name="botfilter-log-follower", daemon=True)
        self._follower.start()

    def lookup(
        self,
        event_ids: Sequence[str],
        ranges: Sequence[KeyRangeTuple],
        tenants: Collection[str] = (),
    ) -> Lookup:
        logs = _tenants(event_ids, ranges)
        if logs:
            with self._read_lock:
                self._read(logs)
        # The mirror is what the request reads, and it trims as it replays: its newest times.
        return self._mirror.lookup(event_ids, ranges, tenants)

    def _calls(self, events: Sequence[NewEventTuple]) -> list[list[tuple[str, Any]]]:
        """The script calls of a write: each up to :attr:`CHUNK` events, as (tenant, events)
        entries of distinct tenants."""
        calls: list[list[tuple[str, Any]]] = []
        call: list[tuple[str, Any]] = []
        size = 0
        for tenant, group in _by_tenant(events).items():
            for start in range(0, len(group), self.CHUNK):
                chunk = group[start : start + self.CHUNK]
                if call and size + len(chunk) > self.CHUNK:
                    calls.append(call)
                    call, size = [], 0
                call.append((tenant, chunk))
                size += len(chunk)
        if call:
            calls.append(call)
        return calls

    def put(self, events: Sequence[NewEventTuple]) -> dict[str, dict[str, Any]]:
        from redis.exceptions import NoScriptError, RedisError

        stored: dict[str, dict[str, Any]] = {}
        calls = self._calls(events)
        with self._read_lock:
            try:
                for call in calls:
                    args: list[Any] = [len(call), *(self.log_key(t) for t, _ in call)]
                    args += [
                        str(self.history_s),
                        str(int((time.time() - self.history_s) * 1000)),  # oldest entry kept
                        self._origin,
                    ]
                    for tenant, chunk in call:
                        # NewEvent tuples as JSON arrays
                        args += [
                            orjson.dumps(chunk, default=tuple),
                            self._read_to.get(tenant, _START),
                        ]
                    try:
                        logged = self._command("EVALSHA", self._put_sha, *args)
                    except NoScriptError:  # first write since Redis started: load the script
                        logged = self._command("EVAL", _PUT_LUA, *args)
                    # What others logged first comes first; the mirror keeps an id's first
                    # answer and returns it.
                    self._replay([e for _, between in logged for e in between])
                    own = call[0][1] if len(call) == 1 else [e for _, c in call for e in c]
                    stored.update(self._mirror.put(own))
                    for (tenant, _), (entry_id, _) in zip(call, logged, strict=True):
                        self._read_to[tenant] = entry_id
            except RedisError as exc:
                # An entry may have been logged without our hearing of it: from now on, take
                # the entries logged under the old tag as another writer's (the mirror keeps an
                # id once), so the next read replays it.
                self._origin = os.urandom(8).hex().encode()
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
        self._stop.set()
        if self._follower is not None:
            self._follower.join(timeout=5)
        self._conn.disconnect()
        self._redis.close()
        if self._probe is not None:
            self._probe.close()

    def describe(self) -> str:
        return f"redis {redact(self.url)} ({self.prefix}*, a log per tenant)"

    def delete_all(self) -> int:
        """Delete this state's keys, every tenant's log and the model generation (tests and
        benchmarks); returns how many existed."""
        with self._read_lock:
            names: list[Any] = [*self._log_names(), self._gen_key]
            self._read_to.clear()
        return sum(
            int(self._redis.unlink(*names[i : i + 1000])) for i in range(0, len(names), 1000)
        )


def _new_event(
    eid: str, t_ns: int, row: list[Any], message_key: str, bursts: list[str], score: dict
) -> NewEvent:
    """A logged event (JSON arrays) as the tuples :class:`MemoryState` keeps, its answer as the
    scorer made it (reasons as a tuple: see the module docstring)."""
    reasons = score.get("reasons")
    if type(reasons) is list:
        score["reasons"] = tuple(reasons)
    return NewEvent(eid, t_ns, tuple(row), message_key, tuple(bursts), score)


def make_state(
    redis_url: str | None,
    history_s: int,
    burst_s: int,
    prefix: str = "botfilter:",
    wait_s: float = 5.0,
) -> WindowState:
    """Redis state when a URL is configured (pinged for up to ``wait_s``, then caught up with
    the shared log), else in process."""
    if not redis_url:
        return MemoryState(history_s, burst_s)

    state = RedisState(redis_url, history_s, burst_s, prefix)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            state.ping()
            started = time.perf_counter()
            replayed = state.catch_up()
            log.info(
                "replayed %d logged events of the shared window state in %.1f s",
                replayed,
                time.perf_counter() - started,
            )
            return state
        except StateUnavailable as exc:
            if time.monotonic() > deadline:
                raise BotfilterError(one_line(f"cannot reach Redis: {exc}")) from exc
            time.sleep(0.2)
