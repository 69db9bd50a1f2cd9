"""Building ``/score`` payloads from tables (tests, benchmark, examples)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from features.pipeline import event_context
from serving.models import event_columns


def _json_value(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value


def api_events(messages: pd.DataFrame, events: pd.DataFrame, sort: bool = True) -> list[dict]:
    """Clean events with their message context as ``/score`` items (JSON-ready dicts).

    ``sort`` orders them by (occurred_at, event_id), the order an ingestion pipeline sees them.
    Timestamps are ISO-8601 with nanoseconds, so nothing is rounded on the way.
    """
    ctx = event_context(messages, events)
    if sort:
        ctx = ctx.sort_values(["occurred_at", "event_id"], kind="stable")
    names = [c.name for c in event_columns() if c.name in ctx.columns]
    columns = [[_json_value(v) for v in ctx[n].astype(object).tolist()] for n in names]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]
