"""Online scoring: a micro-batch of events in, one answer per event out, as the batch job would.

Serving never re-implements a transform. For each request it rebuilds the event-context columns
the batch job would have seen for the new events (their stored history plus the new rows), runs
the same feature pipeline on them and scores the new rows with the same
:class:`scoring.model.BotModel`. Rows travel as tuples and numpy columns, never as pandas
frames: a request of one event must cost well under a millisecond outside the model.

The features are causal, so history rows beyond what an event needs, or after it, change
nothing; missing history would, hence the lookups below:

* every earlier event of the same (tenant, message), any age within the state's retention;
* events of the same tenant within ``LONGEST_WINDOW_S`` before each new event sharing its
  /24-/48 prefix or its ASN, which covers every burst group of the pipeline (IP, prefix, ASN,
  campaign-or-automation with ASN).

An event that breaks the contract is answered in its place with an error (the contract's own
reason, or :mod:`serving.screen`'s for an event over 4 KiB or an identifier that is not text),
and never fails the others. A repeated (``tenant_id``, ``event_id``) gets the stored
answer and is not counted again.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np

from contract.columns import value_text
from contract.schema import SCORE_COLUMNS
from contract.validate import validate_event_items
from features.definitions import LONGEST_WINDOW_S
from features.pipeline import (
    CONTEXT_COLUMNS,
    FLOAT_COLUMNS,
    TIMESTAMP_COLUMNS,
    Enrichers,
    feature_block,
    lookahead_complete,
)
from scoring.model import BotModel, ScoredRows
from serving.screen import id_problem, screen
from serving.state import KeyRangeTuple, NewEventTuple, WindowState

NS = 1_000_000_000
_NAT = np.iinfo(np.int64).min
_COL = {name: i for i, name in enumerate(CONTEXT_COLUMNS)}
# Stored rows are JSON arrays in CONTEXT_COLUMNS order; the tag changes with that order and with
# the state's layout (which keys exist, what a stored event holds: bump STATE_LAYOUT when either
# changes), so a deployment never misreads state written by another one.
STATE_LAYOUT = 5  # 4: events keyed by (tenant, event_id); 5: a Redis log per tenant
ROW_FORMAT = hashlib.sha1(json.dumps([STATE_LAYOUT, CONTEXT_COLUMNS]).encode()).hexdigest()[:8]


@dataclass
class Outcome:
    """The answers of one request, in order, with counts for the metrics."""

    items: list[dict[str, Any]]
    scored: Counter = field(default_factory=Counter)  # channel -> newly scored events
    flagged: Counter = field(default_factory=Counter)  # channel -> newly scored bots
    duplicates: int = 0
    errors: int = 0
    history_rows: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> wall time
    # The contract's clean row of each well-formed item (CONTEXT_COLUMNS order), by position:
    # what every later step reads (the lists, the score store), never the raw item, which may
    # hold anything the contract turned into text or trimmed. An item without a
    # recipient_domain has its message's, when an earlier event of the message gave it.
    clean: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    # The positions whose answer this request computed and stored first (an event's first
    # position in the request): every other answer came from the window state, as an earlier
    # request (perhaps of an earlier model, or another worker) gave and recorded it.
    answered_here: set[int] = field(default_factory=set)
    # Of those, the positions whose answer is not final: the event's look-ahead window had not
    # passed in what this worker had seen (features.pipeline.lookahead_complete), or the event
    # came later than the state's tolerated lateness behind its tenant's newest event, so its
    # history may have been trimmed (OnlineScorer.late_ns). They are not recorded: the batch job
    # scores them again, on their whole history, once their window has passed.
    provisional: set[int] = field(default_factory=set)

    def cleaned(self, names: Sequence[str]) -> list[dict[str, Any] | None]:
        """Each item's clean values of ``names``; None for an item the contract refused."""
        at = [_COL[name] for name in names]
        rows = self.clean
        return [
            {name: rows[pos][i] for name, i in zip(names, at, strict=True)} if pos in rows else None
            for pos in range(len(self.items))
        ]

    def tenants(self) -> set[str]:
        """The clean tenant ids of the well-formed items."""
        c_tenant = _COL["tenant_id"]
        return {row[c_tenant] for row in self.clean.values()}

    def recorded_times(self) -> list[tuple[str, int] | None]:
        """:meth:`tenant_times` of the final answers this request computed first; None for
        provisional (or late) answers and for the others, which the score store has already (a
        retry stored again was a second row, and after a reload it was the old model's answer
        stored under the new model's id)."""
        times = self.tenant_times()
        keep = self.answered_here - self.provisional
        return [tt if pos in keep else None for pos, tt in enumerate(times)]

    def tenant_times(self) -> list[tuple[str, int] | None]:
        """Each item's clean (tenant, occurred_at in ns); None for a refused item."""
        c_tenant, c_time = _COL["tenant_id"], _COL["occurred_at"]
        rows = self.clean
        return [
            (rows[pos][c_tenant], rows[pos][c_time]) if pos in rows else None
            for pos in range(len(self.items))
        ]

    def lap(self, stage: str, since: float) -> float:
        """Add the time since ``since`` to ``stage``; returns now."""
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - since
        return now


def state_id(tenant: str, event_id: str) -> str:
    """The state's key of an event: ``<len(tenant)>:<tenant>:<event_id>`` (the length keeps it
    unambiguous), so that tenants never share an event, its answer or its deduplication."""
    return f"{len(tenant)}:{tenant}:{event_id}"


def rows_to_columns(rows: Sequence[tuple[Any, ...]]) -> dict[str, np.ndarray]:
    """Stored rows as :func:`features.pipeline.context_arrays` gives a clean frame's columns:
    timestamps as int64 ns (missing: INT64 min), integers and the hidden-link flag as float64
    (missing: NaN), text as object arrays of str or None."""
    n = len(rows)
    columns = zip(*rows, strict=True) if n else ((),) * len(CONTEXT_COLUMNS)
    out: dict[str, np.ndarray] = {}
    for name, values in zip(CONTEXT_COLUMNS, columns, strict=True):
        if name in TIMESTAMP_COLUMNS:
            try:
                out[name] = np.fromiter(values, np.int64, n)  # the usual case: none missing
            except TypeError:
                out[name] = np.fromiter((_NAT if v is None else v for v in values), np.int64, n)
        elif name in FLOAT_COLUMNS or name == "is_hidden_link":
            out[name] = np.array(values, dtype=np.float64)  # None becomes NaN
        else:
            col = np.empty(n, dtype=object)
            col[:] = values
            out[name] = col
    return out


def _event_id_of(item: Any) -> str | None:
    """The event id a refused item is answered with: its text as sent, a number's digits (as
    the contract reads them), or None for anything else."""
    value = item.get("event_id") if isinstance(item, dict) else None
    if type(value) is str:
        return value
    return None if id_problem(value) else value_text(value)


class IpMemo:
    """IP enrichment per distinct (ip, asn), remembered across requests.

    Enrichment is a pure function of an event's IP and given ASN, and a request's history comes
    from earlier events, mostly of the same networks: remembering it spares the enricher's fixed
    cost per call (most of a small request's enrichment) and enriching history rows again. Each
    output is one array indexed by slot, so any number of rows is one gather per output.
    """

    def __init__(self, enrich: Any, max_entries: int = 100_000) -> None:
        self._enrich = enrich
        self._max = max_entries
        self._slot: dict[tuple[Any, Any], int] = {}
        self._columns: dict[str, np.ndarray] = {}

    def enrich(self, rows: Sequence[tuple[Any, ...]]) -> dict[str, np.ndarray]:
        """What ``enrichers.ip.enrich`` gives for the rows' ``ip`` and ``asn`` columns."""
        c_ip, c_asn = _COL["ip"], _COL["asn"]
        keys = [(r[c_ip], r[c_asn]) for r in rows]
        get = self._slot.get
        slots = [get(k, -1) for k in keys]
        if -1 in slots:
            missing = list(dict.fromkeys(k for k, s in zip(keys, slots, strict=True) if s < 0))
            if len(self._slot) + len(missing) > self._max:
                # Forget everything (cheaper than tracking what is old), then add all of these.
                self._slot.clear()
                missing = list(dict.fromkeys(keys))
            self._add(missing)
            slots = [self._slot[k] for k in keys]  # every key has a slot now
        at = np.array(slots, dtype=np.intp)
        return {name: column[at] for name, column in self._columns.items()}

    def _add(self, missing: list[tuple[Any, Any]]) -> None:
        ips = np.empty(len(missing), dtype=object)
        ips[:] = [k[0] for k in missing]
        asns = np.array([k[1] for k in missing], dtype=np.float64)  # None becomes NaN
        found = self._enrich(ips, asns)
        start = len(self._slot)
        end = start + len(missing)
        for name, values in found.items():
            column = self._columns.get(name)
            if column is None or end > len(column):
                grown = np.empty(max(self._max, end), dtype=values.dtype)
                if column is not None:
                    grown[: len(column)] = column
                self._columns[name] = column = grown
            column[start:end] = values
        self._slot.update(zip(missing, range(start, end), strict=True))


class OnlineScorer:
    """Scores micro-batches against shared window state (one instance per worker)."""

    # Below this many new events a request is scored on one thread: handing a few rows to a
    # thread pool costs more than it saves, and workers already use every core.
    PARALLEL_FROM = 256

    def __init__(self, state: WindowState, enrichers: Enrichers, threads: int = 1) -> None:
        self.state = state
        self.enrichers = enrichers
        self.threads = max(1, threads)
        self.ip = IpMemo(enrichers.ip.enrich)
        self._tenant_keys: dict[str, tuple[str, str]] = {}
        # How far behind its tenant's newest event (in the state) an event may come and still
        # read its whole history: the state trims burst keys to ``burst_s`` before the newest
        # event (the longest window plus this lateness) and messages to ``history_s``.
        self.late_ns = min(state.burst_s - LONGEST_WINDOW_S, state.history_s) * NS
        # One request at a time per worker: each sees the state the previous one left.
        self._lock = threading.Lock()

    def score(self, items: list[dict[str, Any]], model: BotModel) -> Outcome:
        """One answer per item, in order: a score, or an error naming the field and reason."""
        with self._lock:
            return self._score(items, model)

    # -- steps ---------------------------------------------------------------------------------
    def _score(self, items: list[dict[str, Any]], model: BotModel) -> Outcome:
        answers: list[dict[str, Any] | None] = [None] * len(items)
        out = Outcome(items=[])
        t = time.perf_counter()
        # An oversized event or one whose ids are not text never reaches the contract: it
        # stands there as a non-object (refused, whatever it holds) and gets its own reason.
        screened = screen(items)
        checked: Sequence[Any] = items
        if screened:
            checked = [None if pos in screened else item for pos, item in enumerate(items)]
        clean, reasons = validate_event_items(checked, CONTEXT_COLUMNS)
        reasons.update(screened)
        out.clean = clean
        for pos, reason in reasons.items():
            answers[pos] = {"event_id": _event_id_of(items[pos]), "error": reason}
        out.lap("contract", t)

        if clean:
            self._score_clean(clean, answers, model, out)
        out.errors = len(reasons)
        out.items = [a for a in answers if a is not None]
        if len(out.items) != len(items):  # every item gets exactly one answer
            raise RuntimeError("an event was left without an answer")
        return out

    def _score_clean(
        self,
        clean: dict[int, tuple[Any, ...]],
        answers: list[dict | None],
        model: BotModel,
        out: Outcome,
    ) -> None:
        t = time.perf_counter()
        c_id, c_tenant = _COL["event_id"], _COL["tenant_id"]
        # An event is (tenant, event_id): two tenants may use the same id. ``ids`` are the
        # state's keys; a repeated key is answered as its first.
        keyed = {pos: state_id(row[c_tenant], row[c_id]) for pos, row in clean.items()}
        unique = _first_rows(clean, keyed)
        ids = list(unique)
        rows = list(unique.values())
        keys = self._keys(rows, self.ip.enrich(rows))
        ranges = self._ranges(keys)
        t = out.lap("keys", t)
        found = self.state.lookup(ids, ranges, {row[c_tenant] for row in rows})
        if _with_message_domains(clean, found.rows.values()):
            rows = list(_first_rows(clean, keyed).values())  # with the domains filled in
        t = out.lap("lookup", t)

        results: dict[str, dict[str, Any]] = dict(found.scores)
        new = [i for i, eid in enumerate(ids) if eid not in results]
        here: set[str] = set()  # the keys whose answer this request stored first
        pending: set[str] = set()  # the new keys whose answer is not final
        if new:
            history = list(found.rows.values())
            h = len(history)
            context = history + [rows[i] for i in new]
            cols = rows_to_columns(context)
            ip = self.ip.enrich(context)  # the new rows' pairs were just remembered
            out.history_rows += h
            t = out.lap("frame", t)
            block = feature_block(cols, self.enrichers, ip)
            t = out.lap("features", t)
            new_idx = np.arange(h, h + len(new))
            threads = self.threads if len(new) >= self.PARALLEL_FROM else 1
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            model.threads = threads
            channels = cols["channel"][h:]
            scored = model.score_block(block, channels, cols["type"][h:], rows=new_idx)
            t = out.lap("model", t)
            fresh = self._answers(ids, rows, keys, new, scored, model.version)
            stored = self.state.put(fresh)
            t = out.lap("store", t)
            results.update(stored)
            # Count what this request answered first (not a concurrent request on another worker).
            first = np.fromiter((stored[ev[0]] is ev[5] for ev in fresh), bool, len(fresh))
            out.scored.update(channels[first].tolist())
            out.flagged.update(channels[first & scored.is_bot].tolist())
            here = {ev[0] for ev, mine in zip(fresh, first.tolist(), strict=True) if mine}
            complete = lookahead_complete(cols["tenant_id"], cols["occurred_at"])[h:]
            pending = {ids[i] for i, done in zip(new, complete.tolist(), strict=True) if not done}
            if found.newest:
                # Later than the lateness behind its tenant's newest event: the state may have
                # trimmed part of its history (burst keys, or its message's), so the answer is
                # given but not final; the batch job scores it on its whole history.
                late = self.late_ns
                floor = {tn: newest - late for tn, newest in found.newest.items()}
                pending.update(
                    ids[i] for i in new if keys[i][2] < floor.get(rows[i][c_tenant], _NAT)
                )
        for pos, key in keyed.items():
            answers[pos] = results[key]
            if key in here:
                out.answered_here.add(pos)
                if key in pending:
                    out.provisional.add(pos)
                here.discard(key)  # a repeat in the request is answered, not recorded
        out.duplicates = len(clean) - len(new)

    @staticmethod
    def _answers(
        ids: list[str],
        rows: list[tuple[Any, ...]],
        keys: list[tuple[str, tuple[str, ...], int]],
        new: list[int],
        scored: ScoredRows,
        version: str,
    ) -> list[NewEventTuple]:
        """The new events to remember (as :class:`NewEvent` tuples), each with its answer."""
        k_id, k_score, k_bot, k_reasons, k_version, k_kind = SCORE_COLUMNS
        c_id = _COL["event_id"]
        fresh = []
        values = zip(
            new,
            scored.bot_score.tolist(),
            scored.is_bot.tolist(),
            scored.reasons,
            scored.bot_kind.tolist(),
            strict=True,
        )
        for i, score, is_bot, reasons, kind in values:
            # Reasons as a tuple: see serving.state on tuples.
            answer = {
                k_id: rows[i][c_id],
                k_score: score,
                k_bot: is_bot,
                k_reasons: tuple(reasons),
                k_version: version,
                k_kind: kind,
            }
            msg_key, bursts, t_ns = keys[i]
            fresh.append((ids[i], t_ns, rows[i], msg_key, bursts, answer))
        return fresh

    def _keys(
        self, rows: list[tuple[Any, ...]], ip: Mapping[str, np.ndarray]
    ) -> list[tuple[str, tuple[str, ...], int]]:
        """Per row: its message key, its burst keys and ``occurred_at`` in ns.

        ``m:<len(tenant)>:<tenant>:<message_id>`` keys a message's history, and
        ``k:<len(tenant)>:<tenant>:<prefix|asn>:<value>`` one tenant's events of a /24 (/48)
        prefix or of an ASN. The pipeline's other burst groups need no key of their own: an IP's
        events are among its prefix's, and a send's events with an ASN among that ASN's, over
        the same window. The tenant's length keeps keys unambiguous.
        """
        c_tenant, c_message, c_time = _COL["tenant_id"], _COL["message_id"], _COL["occurred_at"]
        tenant_keys = self._tenant_keys
        out = []
        enriched = zip(
            ip["ip_version"].tolist(), ip["prefix_key"].tolist(), ip["asn"].tolist(), strict=True
        )
        for r, (version, prefix_key, asn) in zip(rows, enriched, strict=True):
            # Keys are built inline, no call per key: this loop runs for every event of every
            # request (the formats are in the docstring above).
            t = r[c_tenant]
            prefixes = tenant_keys.get(t)
            if prefixes is None:
                if len(tenant_keys) > 10_000:
                    tenant_keys.clear()
                prefixes = tenant_keys[t] = (f"m:{len(t)}:{t}:", f"k:{len(t)}:{t}:")
            mk, tk = prefixes
            bursts: tuple[str, ...] = (f"{tk}prefix:{prefix_key}",) if version else ()
            if asn:
                bursts += (f"{tk}asn:{asn}",)
            out.append((mk + r[c_message], bursts, r[c_time]))
        return out

    @staticmethod
    def _ranges(keys: list[tuple[str, tuple[str, ...], int]]) -> list[KeyRangeTuple]:
        """History to fetch: each message's every event; each burst key over the longest window
        before its earliest new event, up to its newest one."""
        window = LONGEST_WINDOW_S * NS
        msg_hi: dict[str, int] = {}
        span: dict[str, list[int]] = {}
        for msg, bursts, t in keys:
            hi = msg_hi.get(msg)
            if hi is None or t > hi:
                msg_hi[msg] = t
            for b in bursts:
                lo_hi = span.get(b)
                if lo_hi is None:
                    span[b] = [t, t]
                elif t < lo_hi[0]:
                    lo_hi[0] = t
                elif t > lo_hi[1]:
                    lo_hi[1] = t
        # Plain tuples: the state unpacks them like KeyRange, and thousands are built per request.
        # A message's later events too (written before, out of time order): an event whose
        # look-ahead window has passed reads them, as the batch job would.
        ranges: list[KeyRangeTuple] = [(k, None, None) for k in msg_hi]
        ranges += [(k, lo - window, hi) for k, (lo, hi) in span.items()]
        return ranges


def _first_rows(
    clean: dict[int, tuple[Any, ...]], keyed: dict[int, str]
) -> dict[str, tuple[Any, ...]]:
    """Each state key's row, its first in the request (a repeat is answered as the first)."""
    unique: dict[str, tuple[Any, ...]] = {}
    for pos, row in clean.items():
        unique.setdefault(keyed[pos], row)
    return unique


def _with_message_domains(
    clean: dict[int, tuple[Any, ...]], history: Iterable[Sequence[Any]]
) -> bool:
    """Give each clean row without a ``recipient_domain`` its message's, when another event of
    the same (tenant, message) told it, in this request or in the state (the message context
    its earlier events carried): in the batch job the message's domain decides a domain entry
    of the tenant's lists, whether or not an event repeats it. An event's own domain stays.
    ``clean`` is changed in place; whether any row was."""
    c_dom, c_tenant, c_msg = _COL["recipient_domain"], _COL["tenant_id"], _COL["message_id"]
    wanted = {(r[c_tenant], r[c_msg]) for r in clean.values() if r[c_dom] is None}
    if not wanted:
        return False
    known: dict[tuple[str, str], str] = {}
    for r in (*history, *clean.values()):
        key = (r[c_tenant], r[c_msg])
        if r[c_dom] is not None and key in wanted:
            known.setdefault(key, r[c_dom])
    if not known:
        return False
    for pos, r in clean.items():
        domain = known.get((r[c_tenant], r[c_msg])) if r[c_dom] is None else None
        if domain is not None:
            clean[pos] = (*r[:c_dom], domain, *r[c_dom + 1 :])
    return True


def history_retention_s(window_days: int) -> int:
    """How long a message's events are kept: the recompute window plus five days of clicks."""
    return (window_days + 5) * 86_400


def burst_retention_s(lateness_s: int = LONGEST_WINDOW_S) -> int:
    """How long burst keys keep an event: the longest window plus the lateness tolerated."""
    return LONGEST_WINDOW_S + lateness_s
