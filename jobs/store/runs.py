"""Job runs (``job_runs``: one row per recompute or worker cycle, from ``running`` to its end) and
the worker's small key-value state (``worker_state``, e.g. the last data fingerprint)."""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import or_, select, update
from sqlalchemy.engine import Connection

from jobs.store.rows import now, select_frame, upsert
from jobs.store.schema import job_runs, worker_state


def start(
    conn: Connection,
    kind: str,
    tenant: str | None = None,
    channels: Sequence[str] = (),
    as_of: datetime | None = None,
    window_start: datetime | None = None,
    batch_id: str | None = None,
) -> str:
    """Record a run as ``running``; returns its id.

    A recompute run holds its tenant's lock, so any other ``running`` recompute of that tenant
    belongs to a dead process: it is marked ``abandoned``; so is any other ``running`` cycle,
    a cycle holding the worker's lock (a stopped worker's stayed "running" for good: an audit).
    Their ``finished_at`` is when they were found so (the process's end is not known).
    """
    run_id = uuid.uuid4().hex
    if kind == "cycle":  # a cycle holds the worker's lock: another running one's process died
        conn.execute(
            update(job_runs)
            .where(job_runs.c.kind == kind, job_runs.c.status == "running")
            .values(
                status="abandoned",
                finished_at=now(),
                error="process ended before the cycle finished",
            )
        )
    if kind == "recompute" and tenant is not None:
        conn.execute(
            update(job_runs)
            .where(
                job_runs.c.kind == kind,
                job_runs.c.tenant_id == tenant,
                job_runs.c.status == "running",
            )
            .values(
                status="abandoned", finished_at=now(), error="process ended before the run finished"
            )
        )
    conn.execute(
        job_runs.insert().values(
            run_id=run_id,
            batch_id=batch_id or run_id,
            kind=kind,
            tenant_id=tenant,
            channels=",".join(channels),
            as_of=as_of,
            window_start=window_start,
            started_at=now(),
            status="running",
            host=socket.gethostname(),
            pid=os.getpid(),
        )
    )
    return run_id


def finish(
    conn: Connection,
    run_id: str,
    status: str = "succeeded",
    rows_in: int | None = None,
    rows_out: int | None = None,
    error: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Close a run."""
    values = {
        "status": status,
        "finished_at": now(),
        "rows_in": rows_in,
        "rows_out": rows_out,
        "error": error,
        "detail": json.dumps(detail, sort_keys=True, default=str) if detail else None,
    }
    conn.execute(update(job_runs).where(job_runs.c.run_id == run_id).values(**values))


def abandon_batch(conn: Connection, batch_id: str, error: str) -> int:
    """Mark the runs of ``batch_id`` still ``running`` as ``abandoned``; how many there were."""
    done = conn.execute(
        update(job_runs)
        .where(job_runs.c.batch_id == batch_id, job_runs.c.status == "running")
        .values(status="abandoned", finished_at=now(), error=error)
    )
    return int(done.rowcount or 0)


def stop_batch(conn: Connection, batch_id: str, error: str, interrupted: Sequence[str]) -> int:
    """Mark ``abandoned``, with ``error``, the runs of ``batch_id`` that a stop cut short: those
    still ``running`` (finished now) and those already closed as ``failed`` by the interruption
    itself, whose error starts with one of ``interrupted`` (e.g. ``KeyboardInterrupt``). A run
    that succeeded, or failed for its own reason, keeps its outcome. How many were marked."""
    cut = conn.execute(
        update(job_runs)
        .where(
            job_runs.c.batch_id == batch_id,
            job_runs.c.status == "failed",
            or_(*(job_runs.c.error.startswith(p, autoescape=True) for p in interrupted)),
        )
        .values(status="abandoned", error=error)
    )
    return int(cut.rowcount or 0) + abandon_batch(conn, batch_id, error)


def recorded(conn: Connection, tenant: str | None = None, kind: str | None = None) -> pd.DataFrame:
    """Recorded runs, oldest first."""
    stmt = select(job_runs).order_by(job_runs.c.started_at, job_runs.c.run_id)
    if tenant is not None:
        stmt = stmt.where(job_runs.c.tenant_id == tenant)
    if kind is not None:
        stmt = stmt.where(job_runs.c.kind == kind)
    return select_frame(conn, stmt, job_runs)


def get_state(conn: Connection, key: str) -> str | None:
    """A worker state value."""
    return conn.execute(select(worker_state.c.value).where(worker_state.c.key == key)).scalar()


def set_state(conn: Connection, key: str, value: str) -> None:
    """Set a worker state value."""
    upsert(conn, worker_state, {"key": key, "value": value, "updated_at": now()}, ["key"])
