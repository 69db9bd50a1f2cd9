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
reason), and never fails the others. A repeated ``event_id`` gets the stored answer and is not
counted again.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
import pandas as pd

from botfilter.errors import BotfilterError
from contract.schema import EVENTS, MESSAGES, SCORE_COLUMNS
from features.definitions import FEATURE_NAMES, LONGEST_WINDOW_S
from features.pipeline import CONTEXT_COLUMNS, Enrichers, build_features
from scoring.model import BotModel
from serving.models import event_columns
from serving.state import KeyRange, NewEvent, WindowState

NS = 1_000_000_000
_KINDS = {c.name: c.kind for c in (*EVENTS.columns, *MESSAGES.columns)}
_TS_COLUMNS = tuple(c for c in CONTEXT_COLUMNS if _KINDS.get(c) == "timestamp")
_INT_COLUMNS = tuple(c for c in CONTEXT_COLUMNS if _KINDS.get(c) == "int")
_BOOL_COLUMNS = tuple(c for c in CONTEXT_COLUMNS if _KINDS.get(c) == "bool")
_NAT = np.iinfo(np.int64).min
_UTC = pd.DatetimeTZDtype("ns", "UTC")
_REQUEST_COLUMNS = tuple(c.name for c in event_columns())
_COL = {name: i for i, name in enumerate(CONTEXT_COLUMNS)}
# Stored rows are JSON arrays in CONTEXT_COLUMNS order; the tag changes with that order and with
# the state's layout (which keys exist, what a stored event holds: bump STATE_LAYOUT when either
# changes), so a deployment never misreads state written by another one.
STATE_LAYOUT = 2
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

    def lap(self, stage: str, since: float) -> float:
        """Add the time since ``since`` to ``stage``; returns now."""
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - since
        return now


def rows_to_columns(rows: Sequence[tuple[Any, ...]]) -> dict[str, np.ndarray]:
    """Stored rows as the column arrays of ``features.pipeline.context_arrays``: timestamps as
    int64 ns (missing: INT64 min), integers and booleans as float64 (missing: NaN), text as
    object arrays of str or None."""
    n = len(rows)
    columns = zip(*rows, strict=True) if n else ((),) * len(CONTEXT_COLUMNS)
    out: dict[str, np.ndarray] = {}
    for name, values in zip(CONTEXT_COLUMNS, columns, strict=True):
        if name in _TS_COLUMNS:
            out[name] = np.fromiter((_NAT if v is None else v for v in values), np.int64, n)
        elif name in _INT_COLUMNS or name in _BOOL_COLUMNS:
            out[name] = np.fromiter((np.nan if v is None else v for v in values), np.float64, n)
        else:
            col = np.empty(n, dtype=object)
            col[:] = values
            out[name] = col
    return out


def columns_to_frame(cols: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """The event-context frame the contract's loader gives, from :func:`rows_to_columns`."""
    data: dict[str, Any] = {}
    for name in CONTEXT_COLUMNS:
        col = cols[name]
        if name in _TS_COLUMNS:
            data[name] = pd.arrays.DatetimeArray._from_sequence(col.view("M8[ns]"), dtype=_UTC)
        elif name in _INT_COLUMNS:
            data[name] = pd.array(col, dtype="Int64")
        elif name in _BOOL_COLUMNS:
            data[name] = pd.array(col, dtype="boolean")
        else:
            data[name] = col
    return pd.DataFrame(data, index=pd.RangeIndex(len(col)), copy=False)


def frame_to_rows(clean: pd.DataFrame) -> list[tuple[Any, ...]]:
    """Clean typed rows as JSON-ready tuples in CONTEXT_COLUMNS order (timestamps in ns)."""
    arr = np.empty((len(clean), len(CONTEXT_COLUMNS)), dtype=object)
    for j, name in enumerate(CONTEXT_COLUMNS):
        s = clean[name]
        if name in _TS_COLUMNS:
            ns = s.to_numpy(dtype="M8[ns]").view(np.int64)
            col = ns.astype(object)
            col[ns == _NAT] = None
        elif name in _INT_COLUMNS or name in _BOOL_COLUMNS:
            col = s.to_numpy(dtype=object, na_value=None)
        else:
            col = s.to_numpy(dtype=object)
            col[pd.isna(col)] = None
        arr[:, j] = col
    return list(map(tuple, arr.tolist()))


def validate_items(
    items: list[dict[str, Any]], columns: Sequence[str] = CONTEXT_COLUMNS
) -> tuple[dict[int, tuple[Any, ...]], dict[int, str]]:
    """The contract's rules, exactly as for files: the clean rows (tuples in ``columns`` order,
    as stored) and the reason of each failing item, both by item position."""
    from contract.validate import validate_event_rows

    # One object block; fromiter keeps a JSON array given as a value as one object.
    values = np.empty((len(items), len(_REQUEST_COLUMNS)), dtype=object)
    for j, n in enumerate(_REQUEST_COLUMNS):
        values[:, j] = np.fromiter((it.get(n) for it in items), object, len(items))
    try:
        clean, reasons = validate_event_rows(pd.DataFrame(values, columns=list(_REQUEST_COLUMNS)))
    except BotfilterError:
        # A JSON array or object as a value the reader does not turn into text (it does so
        # for the events' own columns only): judge its JSON text, as for a JSON Lines file.
        nested = np.frompyfunc(lambda v: isinstance(v, list | dict), 1, 1)(values).astype(bool)
        values[nested] = [json.dumps(v, ensure_ascii=False) for v in values[nested]]
        clean, reasons = validate_event_rows(pd.DataFrame(values, columns=list(_REQUEST_COLUMNS)))
    if list(columns) != list(CONTEXT_COLUMNS):
        raise ValueError("rows are built in CONTEXT_COLUMNS order")
    rows = dict(zip(clean.index.tolist(), frame_to_rows(clean), strict=True))
    return rows, {int(pos): str(reason) for pos, reason in reasons.items()}


def feature_block(
    cols: Mapping[str, np.ndarray], enrichers: Enrichers, ip: Mapping[str, np.ndarray]
) -> np.ndarray:
    """The (features x rows) float32 block of ``build_features`` for these columns."""
    return build_features(columns_to_frame(cols), enrichers, ip=ip).to_numpy().T


@dataclass
class ScoredRows:
    """Scores of some rows of a feature block."""

    bot_score: np.ndarray
    is_bot: np.ndarray
    reasons: list[list[str]]


def score_block(
    model: BotModel,
    block: np.ndarray,
    channel: np.ndarray,
    event_type: np.ndarray,
    rows: np.ndarray,
) -> ScoredRows:
    """``model`` on the block's columns ``rows`` (channel and type given for those rows)."""
    feats = pd.DataFrame(block[:, rows].T, columns=list(FEATURE_NAMES))
    ids = pd.Series(np.arange(len(rows)))
    df = model.score(ids, pd.Series(channel), pd.Series(event_type), feats)
    return ScoredRows(df["bot_score"].to_numpy(), df["is_bot"].to_numpy(), df["reasons"].tolist())


def _event_id_of(item: Any) -> str | None:
    value = item.get("event_id") if isinstance(item, dict) else None
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)


class IpMemo:
    """IP enrichment per distinct (ip, asn), remembered across requests.

    Enrichment is a pure function of an event's IP and given ASN, and a request's history comes
    from earlier events, mostly of the same networks: remembering it spares the enricher's fixed
    cost per call (most of a small request's enrichment) and enriching history rows again. The
    answers are rows of one int64 table, so any number of rows is a single gather.
    """

    def __init__(self, enrich: Any, max_entries: int = 100_000) -> None:
        self._enrich = enrich
        self._max = max_entries
        self._slot: dict[tuple[Any, Any], int] = {}
        self._table = np.empty((0, 0), dtype=np.int64)
        self._names: tuple[str, ...] = ()
        self._dtypes: tuple[np.dtype, ...] = ()

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
            slots = [get(k) for k in keys]  # type: ignore[misc]
        block = self._table[np.array(slots, dtype=np.intp)]
        return {
            name: block[:, j].astype(dtype)
            for j, (name, dtype) in enumerate(zip(self._names, self._dtypes, strict=True))
        }

    def _add(self, missing: list[tuple[Any, Any]]) -> None:
        ips = np.empty(len(missing), dtype=object)
        ips[:] = [k[0] for k in missing]
        asns = np.fromiter((np.nan if k[1] is None else k[1] for k in missing), np.float64)
        found = self._enrich(ips, asns)
        if not self._names:
            self._names = tuple(found)
            self._dtypes = tuple(found[n].dtype for n in self._names)
            self._table = np.empty((0, len(self._names)), dtype=np.int64)
        start = len(self._slot)
        end = start + len(missing)
        if end > len(self._table):
            size = max(self._max, end)
            grown = np.empty((size, len(self._names)), dtype=np.int64)
            grown[: len(self._table)] = self._table
            self._table = grown
        for j, name in enumerate(self._names):
            self._table[start:end, j] = found[name]
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
        clean, reasons = validate_items(items)
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
        c_id = _COL["event_id"]
        unique: dict[str, tuple[Any, ...]] = {}
        for row in clean.values():
            unique.setdefault(row[c_id], row)  # a repeated id is answered as its first
        ids = list(unique)
        rows = list(unique.values())
        ip_new = self.ip.enrich(rows)
        keys = self._keys(rows, ip_new)
        ranges = self._ranges(keys)
        t = out.lap("keys", t)
        found = self.state.lookup(ids, ranges)
        t = out.lap("lookup", t)

        results: dict[str, dict[str, Any]] = dict(found.scores)
        new = [i for i, eid in enumerate(ids) if eid not in results]
        if new:
            history = list(found.rows.values())
            h = len(history)
            cols = rows_to_columns(history + [rows[i] for i in new])
            ip_history = self.ip.enrich(history)
            ip = {k: np.concatenate([ip_history[k], v[new]]) for k, v in ip_new.items()}
            out.history_rows += h
            t = out.lap("frame", t)
            block = feature_block(cols, self.enrichers, ip)
            t = out.lap("features", t)
            new_idx = np.arange(h, h + len(new))
            threads = self.threads if len(new) >= self.PARALLEL_FROM else 1
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            model.threads = threads
            channels = cols["channel"][h:]
            scored = score_block(model, block, channels, cols["type"][h:], new_idx)
            t = out.lap("model", t)
            fresh = self._answers(ids, rows, keys, new, scored, model.version)
            stored = self.state.put(fresh)
            t = out.lap("store", t)
            for ev, channel in zip(fresh, channels.tolist(), strict=True):
                answer = results[ev.event_id] = stored[ev.event_id]
                if answer is ev.score:  # not answered first by a concurrent request
                    out.scored[channel] += 1
                    out.flagged[channel] += int(answer["is_bot"])
        for pos, row in clean.items():
            answers[pos] = results[row[c_id]]
        out.duplicates = len(clean) - len(new)

    @staticmethod
    def _answers(
        ids: list[str],
        rows: list[tuple[Any, ...]],
        keys: list[tuple[str, tuple[str, ...], int]],
        new: list[int],
        scored: ScoredRows,
        version: str,
    ) -> list[NewEvent]:
        """The new events to remember, each with its answer (keys in SCORE_COLUMNS order)."""
        fresh = []
        values = zip(
            new, scored.bot_score.tolist(), scored.is_bot.tolist(), scored.reasons, strict=True
        )
        for i, score, is_bot, reasons in values:
            eid = ids[i]
            # Reasons as a tuple: see serving.state on tuples.
            answer = dict(
                zip(SCORE_COLUMNS, (eid, score, is_bot, tuple(reasons), version), strict=True)
            )
            msg_key, bursts, t_ns = keys[i]
            fresh.append(NewEvent(eid, t_ns, rows[i], msg_key, bursts, answer))
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
            # Inline burst_key/message_key: this loop runs for every event of every request.
            t = r[c_tenant]
            prefixes = tenant_keys.get(t)
            if prefixes is None:
                if len(tenant_keys) > 10_000:
                    tenant_keys.clear()
                prefixes = tenant_keys[t] = (f"m:{len(t)}:{t}:", f"k:{len(t)}:{t}:")
            mk, tk = prefixes
            bursts = (f"{tk}prefix:{prefix_key}",) if version else ()
            if asn:
                bursts += (f"{tk}asn:{asn}",)
            out.append((mk + r[c_message], bursts, r[c_time]))
        return out

    @staticmethod
    def _ranges(keys: list[tuple[str, tuple[str, ...], int]]) -> list[KeyRange]:
        """History to fetch: each message up to its newest new event; each burst key over the
        longest window before its earliest new event, up to its newest one."""
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
        ranges: list[KeyRange] = [(k, None, hi) for k, hi in msg_hi.items()]  # type: ignore[misc]
        ranges += [(k, lo - window, hi) for k, (lo, hi) in span.items()]  # type: ignore[misc]
        return ranges


def history_retention_s(window_days: int) -> int:
    """How long a message's events are kept: the recompute window plus five days of clicks."""
    return (window_days + 5) * 86_400


def burst_retention_s(lateness_s: int = LONGEST_WINDOW_S) -> int:
    """How long burst keys keep an event: the longest window plus the lateness tolerated."""
    return LONGEST_WINDOW_S + lateness_s
