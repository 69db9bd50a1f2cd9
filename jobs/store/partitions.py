"""Metric partitions: per (tenant_id, channel, send_date) the additive counts of every module
(``part_<module>``) and what they were computed with (``metric_partitions``), and the module views
over them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import pandas as pd
from sqlalchemy import delete, select, text
from sqlalchemy.engine import Connection

from jobs.metrics.compute import coerce
from jobs.metrics.spec import MODULES, PARTITION_KEY
from jobs.store.rows import insert_frame, select_frame
from jobs.store.schema import PARTITION_TABLES, metric_partitions


def replace(
    conn: Connection,
    tenant: str,
    channels: Sequence[str],
    first: date,
    last: date,
    frames: Mapping[str, pd.DataFrame],
    summary: pd.DataFrame,
) -> int:
    """Replace one tenant's partitions of send dates ``first..last`` for ``channels``.

    ``frames`` are stored partition rows per module table; ``summary`` the ``metric_partitions``
    rows. Call inside a write transaction; returns rows written.
    """
    for name, frame in [*frames.items(), ("metric_partitions", summary)]:
        outside = (frame["tenant_id"] != tenant) | ~frame["channel"].isin(list(channels))
        dates = frame["send_date"]
        outside |= (dates < first) | (dates > last)
        if outside.any():  # they would survive the delete below and collide next time
            raise ValueError(f"{name}: rows outside {tenant} {channels} {first}..{last}")
    written = 0
    for table in [*PARTITION_TABLES.values(), metric_partitions]:
        conn.execute(
            delete(table).where(
                table.c.tenant_id == tenant,
                table.c.channel.in_(list(channels)),
                table.c.send_date >= first,
                table.c.send_date <= last,
            )
        )
    for name, table in PARTITION_TABLES.items():
        written += insert_frame(conn, table, frames[name])
    insert_frame(conn, metric_partitions, summary)
    return written


def read(
    conn: Connection,
    table: str,
    tenant: str | None = None,
    since: date | None = None,
    until: date | None = None,
) -> pd.DataFrame:
    """Stored partition rows of a module table (send dates ``since..until`` inclusive)."""
    module = MODULES[table]
    t = PARTITION_TABLES[table]
    stmt = select(t)
    if tenant is not None:
        stmt = stmt.where(t.c.tenant_id == tenant)
    if since is not None:
        stmt = stmt.where(t.c.send_date >= since)
    if until is not None:
        stmt = stmt.where(t.c.send_date <= until)
    stmt = stmt.order_by(*[t.c[k] for k in [*PARTITION_KEY, *module.keys]])
    return coerce(select_frame(conn, stmt, t), module)


def summary(conn: Connection, tenant: str | None = None) -> pd.DataFrame:
    """The ``metric_partitions`` rows: what each stored partition was computed with."""
    stmt = select(metric_partitions).order_by(*[metric_partitions.c[k] for k in PARTITION_KEY])
    if tenant is not None:
        stmt = stmt.where(metric_partitions.c.tenant_id == tenant)
    return select_frame(conn, stmt, metric_partitions)


def read_view(conn: Connection, table: str, tenant: str | None = None) -> pd.DataFrame:
    """A module table as the SQL view over all stored partitions computes it."""
    module = MODULES[table]
    keys = ["tenant_id", *module.keys, "channel"]
    sql = f"SELECT * FROM {table}"
    params: dict[str, Any] = {}
    if tenant is not None:
        sql += " WHERE tenant_id = :tenant"
        params["tenant"] = tenant
    sql += " ORDER BY " + ", ".join(keys)
    result = conn.execute(text(sql), params)
    frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    return coerce(frame, module)
