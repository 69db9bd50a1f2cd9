"""Row plumbing shared by the store's concerns: frames in and out of tables, upserts, the clock."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np
import pandas as pd
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection


def now() -> datetime:
    """The current time, UTC."""
    return datetime.now(UTC)


def records(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    """Rows as dicts of plain Python values, missing as None."""
    names = list(columns)
    values = [_objects(frame[name]) for name in names]
    return [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]


def _objects(column: pd.Series) -> list[Any]:
    """A column's values as ``astype(object)`` gives them, missing as None. Plain numpy, not
    pandas' astype/where/notna: a recompute writes 110 tenants x 5 tables x ~25 columns of a
    few thousand rows each, where pandas' cost per call (5 s of a 2.65M-event recompute) was
    more than the values'. A timestamp column builds one Timestamp per distinct value."""
    if isinstance(column.dtype, pd.DatetimeTZDtype) or column.dtype.kind == "M":
        codes, uniques = pd.factorize(column)
        table = np.array([*uniques.astype(object), None], dtype=object)
        return cast(list[Any], table[codes].tolist())  # code -1 (missing): the None at the end
    values = column.to_numpy(dtype=object)
    missing = pd.isna(values)
    if missing.any():
        values[missing] = None
    out: list[Any] = values.tolist()
    return out


def insert_frame(conn: Connection, table: Table, frame: pd.DataFrame) -> int:
    """Insert a frame's rows (columns named like the table's); returns how many."""
    if frame.empty:
        return 0
    conn.execute(table.insert(), records(frame, [c.name for c in table.columns]))
    return len(frame)


def upsert(conn: Connection, table: Table, values: dict[str, Any], keys: list[str]) -> None:
    """Insert or update one row by its key."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table).values(**values)
    rest = {k: stmt.excluded[k] for k in values if k not in keys}
    conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=rest))


def select_frame(conn: Connection, stmt: Any, table: Table) -> pd.DataFrame:
    """The rows of ``stmt`` (a select of ``table``) as a frame with the table's columns."""
    rows = conn.execute(stmt).fetchall()
    return pd.DataFrame(rows, columns=[col.name for col in table.columns])
