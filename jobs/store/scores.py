"""Stored scores, keyed by (tenant_id, event_id) and the model's content id (``model_id``).

They are kept as Parquet batches in ``score_batches``, one row per scoring run (or API flush),
tenant and model: a million scores write and read in a fraction of a second this way. A batch
without a ``model_id`` (stored before scores were keyed by content) is never reused.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import delete, func, select
from sqlalchemy.engine import Connection

from jobs.metrics.compute import parse_reasons, top_reasons
from jobs.store.rows import now
from jobs.store.schema import score_batches

SCORE_BATCH_COLUMNS = ("event_id", "bot_score", "is_bot", "top_reason", "bot_kind")
# A provisional score (its look-ahead window had not passed in the data it was made from) carries
# how far its tenant's data reached then, in ns since the epoch; a final one, null.
PROVISIONAL = "provisional_until"


def read(
    conn: Connection,
    tenants: Sequence[str],
    model_id: str,
    since: datetime | None = None,
    columns: Sequence[str] = SCORE_BATCH_COLUMNS,
) -> pd.DataFrame:
    """Stored scores of the model ``model_id`` for these tenants, from batches that may hold
    events at or after ``since``; with ``tenant_id`` and ``model_version``, one row per
    (tenant_id, event_id), the first stored."""
    t = score_batches
    stmt = select(t.c.tenant_id, t.c.model_version, t.c.data).where(
        t.c.model_id == model_id, t.c.tenant_id.in_(list(tenants))
    )
    if since is not None:
        stmt = stmt.where((t.c.last_occurred >= since) | t.c.last_occurred.is_(None))
    stmt = stmt.order_by(t.c.created_at, t.c.batch_id)
    batches = list(conn.execute(stmt))
    frames = []
    for tenant, version, blob in batches:
        batch = pq.ParquetFile(io.BytesIO(blob))
        have = set(batch.schema_arrow.names)
        frame = batch.read(columns=[c for c in [*columns, PROVISIONAL] if c in have]).to_pandas()
        if "bot_kind" in columns and "bot_kind" not in have:
            frame["bot_kind"] = ""  # a batch stored before scores carried a kind
        if PROVISIONAL not in frame.columns:
            frame[PROVISIONAL] = np.nan  # final: stored before scores could be provisional
        frames.append(frame.assign(tenant_id=tenant, model_version=version))
    if not frames:
        names = [*columns, PROVISIONAL, "tenant_id", "model_version"]
        return pd.DataFrame({c: pd.Series(dtype=object) for c in names})
    out = pd.concat(frames, ignore_index=True)
    out[PROVISIONAL] = out[PROVISIONAL].astype(np.float64)
    if out["event_id"].is_unique:  # the common case, and much cheaper than pairs
        return out
    # A duplicate is (tenant_id, event_id): the same id in two tenants is two events. The first
    # stored is kept, except that a final score beats a provisional one, and a provisional one
    # made from more data beats one made from less (a later run revised it).
    rank = out[PROVISIONAL].fillna(np.inf)
    order = np.lexsort((np.arange(len(out)), -rank.to_numpy()))
    out = out.iloc[order]
    out = out.drop_duplicates(["tenant_id", "event_id"], keep="first")
    return out.sort_index().reset_index(drop=True)


def versions(conn: Connection, tenants: Sequence[str]) -> dict[str, int]:
    """Stored scores per model id for these tenants (batches without one left out)."""
    t = score_batches
    stmt = (
        select(t.c.model_id, func.sum(t.c.events))
        .where(t.c.tenant_id.in_(list(tenants)), t.c.model_id.is_not(None))
        .group_by(t.c.model_id)
    )
    return {str(v): int(n) for v, n in conn.execute(stmt)}


def batches(
    frame: pd.DataFrame,
    tenant_ids: Sequence[str] | np.ndarray,
    occurred: pd.Series | None = None,
    model_id: str | None = None,
) -> list[dict[str, Any]]:
    """``score_batches`` rows for scores (event_id, bot_score, is_bot, reasons, model_version):
    one Parquet batch per tenant and model. See ``Store.save_scores``."""
    data = frame.reset_index(drop=True).assign(tenant_id=np.asarray(tenant_ids, dtype=object))
    if model_id is not None:
        data["model_id"] = model_id
    elif "model_id" not in data.columns:
        data["model_id"] = data["model_version"]
    if occurred is not None:
        data["occurred"] = pd.Series(occurred).to_numpy(dtype="datetime64[ns]")
    else:
        data["occurred"] = np.datetime64("NaT", "ns")
    rows = []
    keys = ["tenant_id", "model_id", "model_version"]
    for (tenant, key, version), group in data.groupby(keys, sort=True):
        reasons = _reasons_array(group["reasons"])
        table = pa.table(
            {
                "event_id": pa.array(group["event_id"].astype(str).tolist(), pa.string()),
                "bot_score": pa.array(group["bot_score"].to_numpy(np.float64)),
                "is_bot": pa.array(group["is_bot"].to_numpy(bool)),
                "reasons": reasons,
                "top_reason": pa.array(
                    top_reasons(pd.Series(reasons, dtype=pd.ArrowDtype(reasons.type))),
                    pa.string(),
                ),
                "bot_kind": pa.array(
                    group["bot_kind"].fillna("").astype(str).tolist()
                    if "bot_kind" in group.columns
                    else [""] * len(group),
                    pa.string(),
                ),
            }
        )
        if PROVISIONAL in group.columns and group[PROVISIONAL].notna().any():
            until = group[PROVISIONAL].to_numpy(dtype=np.float64)
            table = table.append_column(
                PROVISIONAL,
                pa.array(np.nan_to_num(until).astype(np.int64), pa.int64(), mask=np.isnan(until)),
            )
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        when = group["occurred"]
        rows.append(
            {
                "batch_id": uuid.uuid4().hex,
                "tenant_id": str(tenant),
                "model_version": str(version),
                "model_id": str(key),
                "events": len(group),
                "first_occurred": None if when.isna().all() else when.min(),
                "last_occurred": None if when.isna().all() else when.max(),
                "created_at": now(),
                "data": buf.getvalue(),
            }
        )
    return rows


def clear(conn: Connection, tenant: str) -> int:
    """Drop every stored score of a tenant; returns how many scores were dropped."""
    t = score_batches
    n = conn.execute(select(func.sum(t.c.events)).where(t.c.tenant_id == tenant)).scalar()
    conn.execute(delete(t).where(t.c.tenant_id == tenant))
    return int(n or 0)


def _reasons_array(values: pd.Series) -> Any:
    """Reasons as an Arrow list<string> array (Arrow columns, lists, arrays as they are; text
    parsed)."""
    kind = pa.list_(pa.string())
    if isinstance(values.dtype, pd.ArrowDtype):
        return pa.chunked_array(pa.array(values)).combine_chunks().cast(kind).fill_null([])
    items = values.to_numpy(dtype=object)
    if not any(isinstance(v, str) for v in items):
        try:
            return pa.array(items, kind, from_pandas=True).fill_null([])
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
    return pa.array([parse_reasons(v) for v in items], kind)
