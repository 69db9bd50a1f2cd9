"""Where the lists meet the scores: the batch recompute's scores frame and the API's answers.

Both go through :func:`jobs.lists.rules.override_reasons` and :func:`apply_to_scores` (one
definition of the rule); this module only gathers each side's event columns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from contract.parts import TenantParts
from contract.tables import CleanTables, Tables
from contract.validate import validate_raw
from jobs.lists.rules import AsnLookup, Entry, apply_to_scores, override_reasons
from jobs.lists.storage import entries as stored_entries
from jobs.metrics import event_positions
from jobs.store import Store
from scoring.scores_file import read_scores, write_scores

log = logging.getLogger("botfilter.serving")

COLUMNS = ("ip", "asn", "user_agent")
#: What the list step reads of each answered API event (its clean values).
ANSWER_FIELDS = ("tenant_id", *COLUMNS, "recipient_domain")
_lookup: AsnLookup | None = None
_lookup_lock = threading.Lock()


def default_asn_lookup() -> AsnLookup:
    """ASN from IP with the vendored reference (built once per process, on first need)."""
    global _lookup
    with _lookup_lock:
        if _lookup is None:
            from features.enrichment.ip import IpEnricher
            from features.enrichment.reference import load_reference

            enricher = IpEnricher(load_reference())
            _lookup = lambda ips, asns: enricher.enrich(ips, asns)["asn"]  # noqa: E731
        return _lookup


def event_frame(
    data: CleanTables[pd.DataFrame], scores: pd.DataFrame, entries: Sequence[Entry]
) -> pd.DataFrame:
    """The columns the entries need, for each scores row (by tenant_id and event_id; a row
    without its event gets missing values and so matches nothing)."""
    kinds = {e.kind for e in entries}
    e = data.events
    pos = event_positions(e, scores)
    found = pos >= 0
    out = pd.DataFrame({"tenant_id": scores["tenant_id"].to_numpy(dtype=object)})
    for col in COLUMNS:
        if col in e.columns:
            values = np.full(len(scores), None, dtype=object)
            values[found] = e[col].to_numpy(dtype=object)[pos[found]]
            out[col] = values
    if "domain" in kinds and "recipient_domain" in data.messages.columns:
        m = data.messages
        keys = pd.MultiIndex.from_arrays([m["tenant_id"], m["message_id"]])
        msg = np.full(len(scores), -1, dtype=np.int64)
        wanted = pd.MultiIndex.from_arrays(
            [
                scores["tenant_id"].to_numpy(dtype=object)[found],
                e["message_id"].to_numpy(dtype=object)[pos[found]],
            ]
        )
        msg[found] = keys.get_indexer(wanted)
        domains = np.append(m["recipient_domain"].to_numpy(dtype=object), np.array([None]))
        out["recipient_domain"] = domains[msg]
    return out


def apply_lists(
    store: Store,
    data: CleanTables[pd.DataFrame],
    scores: pd.DataFrame,
    tenants: Sequence[str],
    at: pd.Timestamp | None = None,
    asn_lookup: AsnLookup | None = None,
) -> pd.DataFrame:
    """The recompute's ``scores`` (with ``tenant_id``) with the tenants' lists applied."""
    now = pd.Timestamp.now(tz="UTC") if at is None else at
    live = [e for e in stored_entries(store, list(tenants)) if e.active(now)]
    if not live or scores.empty:
        return scores
    if asn_lookup is None and any(e.kind == "asn" for e in live):
        asn_lookup = default_asn_lookup()
    reasons = override_reasons(event_frame(data, scores, live), live, now, asn_lookup)
    return apply_to_scores(scores, reasons)


class FileOverrides(NamedTuple):
    """What :func:`apply_lists_to_file` changed in a scores file."""

    decided: int  # rows the lists decided (their reasons now lead with the list)
    bots: int  # bots in the file after the lists less bots before (negative: allowed ones)


def apply_lists_to_file(store: Store, data_dir: Path, path: Path) -> FileOverrides:
    """``botfilter score``'s scores file with the tenants' lists in force applied, as the API
    applies them to its answers (PRODUCT.md: the lists override the model, and ``reasons`` name
    the list that decided): the rows overridden, and how that changed the file's bots. The
    file is read and written again only when one of its tenants has an entry, and only those
    tenants' data is validated again."""
    now = pd.Timestamp.now(tz="UTC")
    listed = sorted({e.tenant_id for e in stored_entries(store) if e.active(now)})
    if not listed:
        return FileOverrides(0, 0)
    scores = read_scores(path)
    mine = scores["tenant_id"].isin(listed).to_numpy() if "tenant_id" in scores.columns else None
    if mine is None or not mine.any():
        return FileOverrides(0, 0)
    rows = scores.loc[mine].reset_index(drop=True)
    applied = apply_lists(store, _clean_of(data_dir, set(listed)), rows, listed, at=now)
    before, after = rows["reasons"].tolist(), applied["reasons"].tolist()
    changed = sum(1 for a, b in zip(before, after, strict=True) if list(a) != list(b))
    if not changed:
        return FileOverrides(0, 0)
    bots = int(
        applied["is_bot"].to_numpy(dtype=bool).sum() - rows["is_bot"].to_numpy(dtype=bool).sum()
    )
    for column in ("is_bot", "bot_kind", "reasons"):
        values = scores[column].to_numpy(dtype=object).copy()
        values[mine] = applied[column].to_numpy(dtype=object)
        scores[column] = values.astype(bool) if column == "is_bot" else values
    write_scores(scores, path)
    return FileOverrides(changed, bots)


def _clean_of(data_dir: Path, tenants: set[str]) -> Tables:
    """The clean messages and events of ``tenants``, validated part by part (whole tenants, so
    as ``botfilter score`` validated them); the other parts are passed over unread."""
    parts = TenantParts(data_dir, contract_only=True)
    messages: list[pd.DataFrame] = []
    events: list[pd.DataFrame] = []
    for i in range(len(parts)):
        named = parts.tenants(i)
        if named is not None and not tenants.intersection(named):
            parts.skip(i)
            continue
        clean = validate_raw(parts.raw(i))
        messages.append(clean.messages[clean.messages["tenant_id"].isin(tenants)])
        events.append(clean.events[clean.events["tenant_id"].isin(tenants)])
    return Tables(pd.concat(messages, ignore_index=True), pd.concat(events, ignore_index=True))


class ListCache:
    """The API's view of the lists: every tenant's entries, reread at most every ``ttl_s``.

    A change made in the console reaches the API within ``ttl_s`` seconds; a store that cannot
    be read keeps the last entries known (scoring never fails on the lists)."""

    def __init__(self, open_store: Callable[[], Store], ttl_s: float = 5.0) -> None:
        self._open_store = open_store
        self.ttl_s = ttl_s
        self._store: Store | None = None
        self._entries: dict[str, list[Entry]] = {}
        self._read_at = -float("inf")
        self._lock = threading.Lock()

    def of(self, tenants: set[str]) -> list[Entry]:
        """The in-force entries of these tenants."""
        now = time.monotonic()
        if now - self._read_at >= self.ttl_s and self._lock.acquire(blocking=False):
            try:
                self._refresh()
            finally:
                self._read_at = time.monotonic()
                self._lock.release()
        at = pd.Timestamp.now(tz="UTC")
        return [e for t in tenants for e in self._entries.get(t, ()) if e.active(at)]

    def _refresh(self) -> None:
        try:
            if self._store is None:
                self._store = self._open_store()
            found: dict[str, list[Entry]] = {}
            for entry in stored_entries(self._store):
                found.setdefault(entry.tenant_id, []).append(entry)
            self._entries = found
        except Exception as exc:  # keep the last known lists; the next request retries
            log.warning("cannot read the lists: %s", exc)


def apply_to_answers(
    items: Sequence[dict[str, Any] | None],
    answers: list[dict[str, Any]],
    entries: Sequence[Entry],
    asn_lookup: AsnLookup | None = None,
) -> list[dict[str, Any]]:
    """The API's answers (one per item, same order) with the lists applied: a forced answer is
    a new dict (answers may be shared with the window state, which keeps the model's).

    ``items``: each event's :data:`ANSWER_FIELDS` as the contract cleaned them (None for a
    refused event), never the request's raw values."""
    if not entries:
        return answers
    kept = [
        (i, item)
        for i, (item, answer) in enumerate(zip(items, answers, strict=True))
        if item is not None and "error" not in answer
    ]
    if not kept:
        return answers
    rows = [i for i, _ in kept]
    frame = pd.DataFrame({col: [item[col] for _, item in kept] for col in ANSWER_FIELDS})
    reasons = override_reasons(frame, entries, None, asn_lookup)
    forced = [k for k, r in enumerate(reasons) if r is not None]
    if not forced:
        return answers
    picked = [answers[rows[k]] for k in forced]
    scores = pd.DataFrame(
        {
            "is_bot": [bool(a["is_bot"]) for a in picked],
            "reasons": [a["reasons"] for a in picked],
            "bot_kind": [a.get("bot_kind", "") for a in picked],
        }
    )
    scores = apply_to_scores(scores, reasons[forced])
    out = list(answers)
    changed = zip(forced, scores["is_bot"], scores["reasons"], scores["bot_kind"], strict=True)
    for k, is_bot, listed, kind in changed:
        answer = {**answers[rows[k]], "is_bot": bool(is_bot), "reasons": list(listed)}
        if "bot_kind" in answer:
            answer["bot_kind"] = kind
        out[rows[k]] = answer
    return out
