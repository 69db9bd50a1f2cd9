"""The recompute queue: one entry per (tenant, channel) whose setting changed, until a recompute
applies it (``pending`` -> ``done``, with the run that did)."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import pandas as pd
from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection

from jobs.store.rows import now, select_frame
from jobs.store.schema import recompute_queue


def enqueue(conn: Connection, tenant: str, channel: str, reason: str) -> int:
    """Queue a 30-day recompute of one tenant's channel; returns the entry id."""
    stmt = recompute_queue.insert().values(
        tenant_id=tenant, channel=channel, requested_at=now(), reason=reason, status="pending"
    )
    return int(conn.execute(stmt.returning(recompute_queue.c.id)).scalar_one())


def pending(conn: Connection) -> pd.DataFrame:
    """Queue entries not yet applied, oldest first."""
    stmt = (
        select(recompute_queue)
        .where(recompute_queue.c.status == "pending")
        .order_by(recompute_queue.c.id)
    )
    return select_frame(conn, stmt, recompute_queue)


def entries(conn: Connection) -> pd.DataFrame:
    """The whole recompute queue, oldest first."""
    return select_frame(
        conn, select(recompute_queue).order_by(recompute_queue.c.id), recompute_queue
    )


def has_pending(conn: Connection) -> bool:
    """Whether a setting change waits to be applied."""
    stmt = select(func.count()).where(recompute_queue.c.status == "pending")
    return bool(conn.execute(stmt).scalar())


def last_id(conn: Connection) -> int:
    """Id of the newest queue entry, applied or not (0 when none)."""
    return int(conn.execute(select(func.max(recompute_queue.c.id))).scalar() or 0)


def complete(
    conn: Connection, tenant: str, channels: Sequence[str], seen: Collection[int], run_id: str
) -> int:
    """Mark done by ``run_id`` a tenant's pending entries among ``seen``: those its snapshot
    read. Not every id below the largest: PostgreSQL numbers entries when they are written,
    not when they commit, so a lower id can commit after the snapshot, its setting unread."""
    result = conn.execute(
        update(recompute_queue)
        .where(
            recompute_queue.c.tenant_id == tenant,
            recompute_queue.c.channel.in_(list(channels)),
            recompute_queue.c.status == "pending",
            recompute_queue.c.id.in_(sorted(seen)),
        )
        .values(status="done", run_id=run_id, done_at=now())
    )
    return int(result.rowcount or 0)
