"""Which answers of a stream of API requests are final: helpers for the tests that compare the
online API with the batch job once features look ahead (features.definitions.LOOKAHEAD_S)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from features.definitions import LOOKAHEAD_S


def final_answers(requests: Sequence[Sequence[dict[str, Any]]]) -> set[tuple[str, str]]:
    """The (tenant_id, event_id) that requests sent in time order answer finally: the events
    at least LOOKAHEAD_S before their tenant's latest event in the same request (in time order,
    what the API has seen of a tenant reaches no further)."""
    out: set[tuple[str, str]] = set()
    for items in requests:
        frame = pd.DataFrame(
            {
                "tenant": [i["tenant_id"] for i in items],
                "event": [i["event_id"] for i in items],
                "t": pd.to_datetime([i["occurred_at"] for i in items], utc=True, format="ISO8601"),
            }
        )
        reach = frame.groupby("tenant")["t"].transform("max")
        done = frame["t"] + pd.Timedelta(seconds=LOOKAHEAD_S) <= reach
        out |= set(zip(frame.loc[done, "tenant"], frame.loc[done, "event"], strict=True))
    return out


def pending_events(events: pd.DataFrame) -> set[tuple[str, str]]:
    """The (tenant_id, event_id) of ``events`` whose look-ahead window has not passed in them:
    those a batch scoring of ``events`` answers provisionally."""
    reach = events.groupby("tenant_id")["occurred_at"].transform("max")
    late = events["occurred_at"] + pd.Timedelta(seconds=LOOKAHEAD_S) > reach
    return set(zip(events.loc[late, "tenant_id"], events.loc[late, "event_id"], strict=True))


def chunks(items: Sequence[dict[str, Any]], size: int) -> list[Sequence[dict[str, Any]]]:
    """``items`` as requests of ``size``."""
    return [items[lo : lo + size] for lo in range(0, len(items), size)]
