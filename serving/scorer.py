"""Online scoring: a micro-batch of events in, one answer per event out, as the batch job would.

Serving never re-implements a transform. For each request it rebuilds the event-context frame
the batch job would have seen for the new events (their stored history plus the new rows), runs
the same :func:`features.pipeline.build_features` on it and scores the new rows with the same
:class:`scoring.model.BotModel`. The features are causal, so history rows beyond what an event
needs, or after it, change nothing; missing history would, hence the lookups below:

* every earlier event of the same (tenant, message), any age within the state's retention;
* events of the same tenant within ``LONGEST_WINDOW_S`` before each new event sharing its IP,
  /24-/48 prefix, ASN, or (campaign-or-automation, ASN) — the burst keys of the pipeline.

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
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
import pandas as pd

from botfilter.errors import BotfilterError
from contract.schema import EVENTS, MESSAGES, SCORE_COLUMNS
from features.definitions import LONGEST_WINDOW_S
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
# Stored rows are JSON arrays in CONTEXT_COLUMNS order; the tag changes with that order, so a
# deployment with other columns never misreads rows written by an older one.
ROW_FORMAT = hashlib.sha1(json.dumps(CONTEXT_COLUMNS).encode()).hexdigest()[:8]


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


def rows_to_frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    """Event-context frame from stored rows, with the dtypes the contract's loader gives."""
    n = len(rows)
    arr = np.empty((n, len(CONTEXT_COLUMNS)), dtype=object)
    if n:
        arr[:] = rows
    data: dict[str, Any] = {}
    for j, name in enumerate(CONTEXT_COLUMNS):
        col = arr[:, j]
        if name in _TS_COLUMNS:
            ns = np.where(np.equal(col, None), _NAT, col).astype(np.int64)
            data[name] = pd.arrays.DatetimeArray._from_sequence(ns.view("M8[ns]"), dtype=_UTC)
        elif name in _INT_COLUMNS:
            data[name] = pd.array(col, dtype="Int64")
        elif name in _BOOL_COLUMNS:
            data[name] = pd.array(col, dtype="boolean")
        else:
            data[name] = col
    return pd.DataFrame(data, index=pd.RangeIndex(n), copy=False)


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


def _event_id_of(item: Any) -> str | None:
    value = item.get("event_id") if isinstance(item, dict) else None
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)


class OnlineScorer:
    """Scores micro-batches against shared window state (one instance per worker)."""

    # Below this many new events a request is scored on one thread: handing a few rows to a
    # thread pool costs more than it saves, and workers already use every core.
    PARALLEL_FROM = 256

    def __init__(self, state: WindowState, enrichers: Enrichers, threads: int = 1) -> None:
        self.state = state
        self.enrichers = enrichers
        self.threads = max(1, threads)
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
        clean = self._validate(items, answers)
        out.lap("contract", t)

        if len(clean):
            self._score_clean(clean, answers, model, out)
        out.errors = sum(1 for a in answers if a is not None and "error" in a)
        out.items = [a for a in answers if a is not None]
        if len(out.items) != len(items):  # every item gets exactly one answer
            raise RuntimeError("an event was left without an answer")
        return out

    def _validate(self, items: list[dict[str, Any]], answers: list[dict | None]) -> pd.DataFrame:
        """The contract's rules, exactly as for files; failures are answered in place with the
        contract's reason. Returns the clean typed rows indexed by item position."""
        from contract.validate import validate_event_rows

        # One object block: the contract's reader infers each column's type from the values.
        # One object block; fromiter keeps a JSON array given as a value as one object.
        values = np.empty((len(items), len(_REQUEST_COLUMNS)), dtype=object)
        for j, n in enumerate(_REQUEST_COLUMNS):
            values[:, j] = np.fromiter((it.get(n) for it in items), object, len(items))
        frame = pd.DataFrame(values, columns=list(_REQUEST_COLUMNS))
        try:
            clean, reasons = validate_event_rows(frame)
        except BotfilterError:
            # A JSON array or object as a value the reader does not turn into text (it does so
            # for the events' own columns only): judge its JSON text, as for a JSON Lines file.
            nested = np.frompyfunc(lambda v: isinstance(v, list | dict), 1, 1)(values).astype(bool)
            values[nested] = [json.dumps(v, ensure_ascii=False) for v in values[nested]]
            clean, reasons = validate_event_rows(
                pd.DataFrame(values, columns=list(_REQUEST_COLUMNS))
            )
        for pos, reason in reasons.items():
            answers[int(pos)] = {"event_id": _event_id_of(items[int(pos)]), "error": str(reason)}
        return clean

    def _score_clean(
        self, clean: pd.DataFrame, answers: list[dict | None], model: BotModel, out: Outcome
    ) -> None:
        t = time.perf_counter()
        ids = clean["event_id"].tolist()
        seen: set[str] = set()
        first = [j for j, eid in enumerate(ids) if not (eid in seen or seen.add(eid))]
        unique = clean if len(first) == len(ids) else clean.iloc[first]
        rows = frame_to_rows(unique)
        keys = self._keys(rows)
        ranges = self._ranges(keys)
        t = out.lap("keys", t)
        unique_ids = [r[_COL["event_id"]] for r in rows]
        found = self.state.lookup(unique_ids, ranges)
        t = out.lap("lookup", t)

        new_mask = np.array([e not in found.scores for e in unique_ids], dtype=bool)
        results: dict[str, dict[str, Any]] = dict(found.scores)
        if new_mask.any():
            new_pos = np.flatnonzero(new_mask)
            history = list(found.rows.values())
            frame = rows_to_frame(history + [rows[i] for i in new_pos])
            out.history_rows += len(history)
            t = out.lap("frame", t)
            feats = build_features(frame, self.enrichers)
            t = out.lap("features", t)
            new_idx = np.arange(len(history), len(frame))
            sub = frame.iloc[new_idx]
            threads = self.threads if len(new_idx) >= self.PARALLEL_FROM else 1
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            model.threads = threads
            scores = model.score(sub["event_id"], sub["channel"], sub["type"], feats.iloc[new_idx])
            t = out.lap("model", t)
            columns = [scores[c].tolist() for c in SCORE_COLUMNS]
            fresh = []
            for j, values in enumerate(zip(*columns, strict=True)):
                answer = dict(zip(SCORE_COLUMNS, values, strict=True))
                answer["reasons"] = tuple(answer["reasons"])  # see serving.state on tuples
                i = int(new_pos[j])
                msg_key, bursts, t_ns = keys[i]
                fresh.append(NewEvent(answer["event_id"], t_ns, rows[i], msg_key, bursts, answer))
            stored = self.state.put(fresh)
            t = out.lap("store", t)
            channels = sub["channel"].tolist()
            for ev, channel in zip(fresh, channels, strict=True):
                results[ev.event_id] = stored[ev.event_id]
                if stored[ev.event_id] is ev.score:  # not answered first by a concurrent request
                    out.scored[channel] += 1
                    out.flagged[channel] += int(ev.score["is_bot"])
        for pos, eid in zip(clean.index.tolist(), ids, strict=True):
            answers[int(pos)] = results[eid]
        out.duplicates = len(ids) - int(new_mask.sum())

    def _keys(self, rows: list[tuple[Any, ...]]) -> list[tuple[str, tuple[str, ...], int]]:
        """Per row: its message key, its burst keys and ``occurred_at`` in ns.

        ``m:<len(tenant)>:<tenant>:<message_id>`` keys a message's history; a burst group (one
        tenant's events sharing an IP, a /24-/48 prefix, an ASN, or a send with an ASN) is
        ``k:<len(tenant)>:<tenant>:<ip|prefix|asn|send>:<value>``, the send's value being
        ``<asn>:<campaign or automation id>``. The tenant's length keeps keys unambiguous.
        """
        ips = np.fromiter((r[_COL["ip"]] for r in rows), object, len(rows))
        given = np.fromiter((r[_COL["asn"]] for r in rows), object, len(rows))
        ip = self.enrichers.ip.enrich(ips, given)
        has_ip = (ip["ip_version"] != 0).tolist()
        ip_key, prefix_key, asns = (
            ip["ip_key"].tolist(),
            ip["prefix_key"].tolist(),
            ip["asn"].tolist(),
        )
        c_tenant, c_message, c_time = _COL["tenant_id"], _COL["message_id"], _COL["occurred_at"]
        c_campaign, c_automation = _COL["campaign_id"], _COL["automation_id"]
        out = []
        for i, r in enumerate(rows):
            # Inline burst_key/message_key: this loop runs for every event of every request.
            t = r[c_tenant]
            tk = f"k:{len(t)}:{t}:"
            bursts: list[str] = []
            if has_ip[i]:
                bursts.append(f"{tk}ip:{ip_key[i]}")
                bursts.append(f"{tk}prefix:{prefix_key[i]}")
            if asns[i] != 0:
                bursts.append(f"{tk}asn:{asns[i]}")
                send = r[c_campaign] if r[c_campaign] is not None else r[c_automation]
                if send is not None:
                    bursts.append(f"{tk}send:{asns[i]}:{send}")
            out.append((f"m:{len(t)}:{t}:{r[c_message]}", tuple(bursts), r[c_time]))
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
