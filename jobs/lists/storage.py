"""The lists in the metrics store: entries per tenant, and an audit row for every change.

Two tables (``list_entries``, ``list_audit``, declared in :mod:`jobs.store.schema`, so the store
creates them on open like every other table); each change is written with its audit row
and the recompute it queues (:meth:`Store.enqueue`, one per channel the entry can touch) in one
transaction, so a change is never saved without its audit or its recompute.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import (
    delete,
    func,
    select,
    update,
)
from sqlalchemy.engine import Connection

from core.errors import BotfilterError
from core.text import has_controls
from jobs.lists.rules import Entry, channels_of, check_list, normalise, stored_value
from jobs.store import Store
from jobs.store.schema import list_audit, list_entries


def parse_expiry(value: str | None, now: datetime | None = None) -> datetime | None:
    """An expiry: ISO-8601 date or time (no offset = UTC), in the future; blank = none."""
    if value is None or not str(value).strip():
        return None
    try:
        stamp = pd.Timestamp(str(value).strip())
    except (ValueError, OverflowError):
        raise BotfilterError(f"expiry {value!r} is not a date (e.g. 2026-12-31)") from None
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    if stamp <= pd.Timestamp(now or datetime.now(UTC)):
        raise BotfilterError(f"expiry {value!r} is in the past")
    return stamp.to_pydatetime()


def _entry(row: Any) -> Entry:
    values = {c.name: row._mapping[c.name] for c in list_entries.columns}
    # An ip entry stored in IPv4-mapped form (before normalise took it to IPv4) reads, matches
    # and shows as its IPv4 form.
    values["value"] = stored_value(values["kind"], values["value"])
    return Entry(**values)


def as_dict(entry: Entry, now: datetime | None = None) -> dict[str, Any]:
    """An entry as JSON-ready values (with whether it is in force now)."""
    at = pd.Timestamp(now or datetime.now(UTC))
    return {
        "id": entry.id,
        "tenant_id": entry.tenant_id,
        "list": entry.list,
        "kind": entry.kind,
        "value": entry.value,
        "note": entry.note,
        "author": entry.author,
        "created_at": _iso(entry.created_at),
        "expires_at": _iso(entry.expires_at),
        "active": entry.active(at),
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else pd.Timestamp(value).isoformat(timespec="seconds")


def entries(store: Store, tenants: list[str] | None = None) -> list[Entry]:
    """Entries of these tenants (all when None), expired ones included, oldest first."""
    stmt = select(list_entries).order_by(list_entries.c.id)
    if tenants is not None:
        stmt = stmt.where(list_entries.c.tenant_id.in_(tenants))
    with store.read() as conn:
        return [_entry(r) for r in conn.execute(stmt)]


# Entry ids are the store's 64-bit row ids: a larger number names no entry (SQLite and
# PostgreSQL refuse to compare one, which surfaced as a 500).
_MAX_ID = 2**63 - 1


def check_note(note: str) -> str:
    """A note as stored: trimmed, at most 500 characters, no control characters but tab and
    newline (PostgreSQL refuses NUL in text, which surfaced as a 500)."""
    text = str(note or "").strip()[:500]
    if has_controls(text, allow="\t\n\r"):
        raise BotfilterError("note: control characters are not allowed")
    return text


def get_entry(store: Store, tenant: str, entry_id: int, conn: Connection | None = None) -> Entry:
    """One entry of ``tenant``; another tenant's entry is as unknown as a missing one."""
    if not 0 < entry_id <= _MAX_ID:
        raise LookupError(f"no list entry {entry_id} for tenant {tenant}")
    stmt = select(list_entries).where(
        list_entries.c.id == entry_id, list_entries.c.tenant_id == tenant
    )
    if conn is None:
        with store.read() as c:
            row = c.execute(stmt).first()
    else:
        row = conn.execute(stmt).first()
    if row is None:
        raise LookupError(f"no list entry {entry_id} for tenant {tenant}")
    return _entry(row)


def _audit(
    store: Store,
    conn: Connection,
    action: str,
    who: str,
    before: Entry | None,
    after: Entry | None,
) -> list[int]:
    """Queue the recompute of the entry's channels and write the audit row; the queue ids."""
    entry = after or before
    assert entry is not None and entry.id is not None
    what = f"{entry.list}list {action} {entry.kind} {entry.value}"
    queued = [store.enqueue(conn, entry.tenant_id, c, what) for c in channels_of(entry.kind)]
    conn.execute(
        list_audit.insert().values(
            tenant_id=entry.tenant_id,
            entry_id=entry.id,
            action=action,
            who=who[:100],
            at=datetime.now(UTC),
            before=None if before is None else json.dumps(as_dict(before)),
            after=None if after is None else json.dumps(as_dict(after)),
            queue_ids=json.dumps(queued),
        )
    )
    return queued


def build_entry(
    tenant: str,
    list_name: str,
    kind: str,
    value: str,
    note: str = "",
    author: str = "",
    expires_at: datetime | None = None,
) -> Entry:
    """A checked, normalised entry not yet stored (what a dry run is given)."""
    return Entry(
        tenant_id=tenant,
        list=check_list(list_name),
        kind=kind,
        value=normalise(kind, value),
        note=check_note(note),
        author=author[:100],
        expires_at=expires_at,
    )


def add_entry(store: Store, entry: Entry) -> tuple[Entry, list[int]]:
    """Store a new entry (from :func:`build_entry`); audited, queues its recompute."""
    now = datetime.now(UTC)
    with store.write() as conn:
        listed = conn.execute(
            select(list_entries.c.id, list_entries.c.value).where(
                list_entries.c.tenant_id == entry.tenant_id,
                list_entries.c.list == entry.list,
                list_entries.c.kind == entry.kind,
            )
        ).all()
        # the same value, or the same network stored in its IPv4-mapped form
        same = next((i for i, v in listed if stored_value(entry.kind, v) == entry.value), None)
        if same is not None:
            raise BotfilterError(
                f"{entry.kind} {entry.value} is already on the {entry.list} list (entry {same})"
            )
        values = {c.name: getattr(entry, c.name) for c in list_entries.columns if c.name != "id"}
        insert = list_entries.insert().values(**{**values, "created_at": now})
        new_id = int(conn.execute(insert.returning(list_entries.c.id)).scalar_one())
        stored = get_entry(store, entry.tenant_id, new_id, conn)
        queued = _audit(store, conn, "add", entry.author, None, stored)
    return stored, queued


def change_entry(
    store: Store,
    tenant: str,
    entry_id: int,
    who: str,
    *,
    expires_at: datetime | None,
    note: str | None = None,
) -> tuple[Entry, list[int]]:
    """Set an entry's expiry (None: never) and optionally its note; audited, queues."""
    values: dict[str, Any] = {"expires_at": expires_at}
    if note is not None:
        values["note"] = check_note(note)
    with store.write() as conn:
        before = get_entry(store, tenant, entry_id, conn)
        conn.execute(update(list_entries).where(list_entries.c.id == entry_id).values(**values))
        after = get_entry(store, tenant, entry_id, conn)
        queued = _audit(store, conn, "change", who, before, after)
    return after, queued


def delete_entry(store: Store, tenant: str, entry_id: int, who: str) -> list[int]:
    """Remove an entry; audited (the audit keeps it), queues its recompute."""
    with store.write() as conn:
        before = get_entry(store, tenant, entry_id, conn)
        conn.execute(delete(list_entries).where(list_entries.c.id == entry_id))
        return _audit(store, conn, "delete", who, before, None)


def expired(conn: Connection, since: datetime | None, until: datetime) -> list[Entry]:
    """The entries whose expiry passed in ``(since, until]`` (None: any time up to ``until``)."""
    stmt = select(list_entries).where(
        list_entries.c.expires_at.is_not(None), list_entries.c.expires_at <= until
    )
    if since is not None:
        stmt = stmt.where(list_entries.c.expires_at > since)
    return [_entry(r) for r in conn.execute(stmt.order_by(list_entries.c.id))]


def queue_expired(
    store: Store, conn: Connection, since: datetime | None, until: datetime
) -> list[int]:
    """Queue the recompute of each tenant's channels that an entry stopped applying to when
    its expiry passed, in ``(since, until]`` (None: any time up to ``until``), in the caller's
    write transaction; the queue ids. One queue entry per (tenant, channel), whatever number of
    its entries expired: an expiry changes the score, the API and the drill-down at once, and
    the metrics at the recompute it queues (the worker looks every cycle)."""
    what: dict[tuple[str, str], list[str]] = {}
    for entry in expired(conn, since, until):
        for channel in channels_of(entry.kind):
            said = f"{entry.list}list {entry.kind} {entry.value}"
            what.setdefault((entry.tenant_id, channel), []).append(said)
    return [
        store.enqueue(conn, tenant, channel, f"expired: {', '.join(said)}"[:1000])
        for (tenant, channel), said in sorted(what.items())
    ]


def next_expiry(store: Store, after: datetime) -> datetime | None:
    """The first expiry of any entry later than ``after`` (None: none is due)."""
    stmt = select(func.min(list_entries.c.expires_at)).where(list_entries.c.expires_at > after)
    with store.read() as conn:
        found = conn.execute(stmt).scalar()
    return None if found is None else pd.Timestamp(found).tz_convert("UTC").to_pydatetime()


def audit(store: Store, tenant: str, limit: int = 100) -> list[dict[str, Any]]:
    """A tenant's list changes, newest first: who, when, what, before and after."""
    stmt = (
        select(list_audit)
        .where(list_audit.c.tenant_id == tenant)
        .order_by(list_audit.c.id.desc())
        .limit(limit)
    )
    with store.read() as conn:
        rows = conn.execute(stmt).all()
    return [
        {
            "id": r.id,
            "entry_id": r.entry_id,
            "action": r.action,
            "who": r.who,
            "at": _iso(r.at),
            "before": None if r.before is None else json.loads(r.before),
            "after": None if r.after is None else json.loads(r.after),
            "queue_ids": json.loads(r.queue_ids),
        }
        for r in rows
    ]
