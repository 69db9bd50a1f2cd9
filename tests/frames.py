"""Builders of tiny metric frames shared by the metric, store and recompute tests (unit and
integration). Imported only by tests/conftest.py, which hands them out as fixtures."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from jobs.metrics import MESSAGE_COLUMNS, Partitions, Window, compute_partitions
from jobs.store import Store

MSG_COLS = list(MESSAGE_COLUMNS)


def ts(values: list[str | None]) -> pd.Series:
    """Text times as a UTC series (None as NaT)."""
    return pd.Series(
        [pd.Timestamp(v, tz="UTC") if v else pd.NaT for v in values], dtype="datetime64[ns, UTC]"
    )


def messages(rows: list[tuple]) -> pd.DataFrame:
    """Message rows in MESSAGE_COLUMNS order, times parsed."""
    frame = pd.DataFrame(rows, columns=MSG_COLS)
    frame["sent_at"] = ts(list(frame["sent_at"]))
    frame["delivered_at"] = ts(list(frame["delivered_at"]))
    return frame.astype({c: object for c in MSG_COLS[:7]})


def events(rows: list[tuple]) -> pd.DataFrame:
    """(event_id, message_id, type, occurred_at[, tenant]) rows."""
    rows = [r if len(r) == 5 else (*r, "t1") for r in rows]
    frame = pd.DataFrame(
        rows, columns=["event_id", "message_id", "type", "occurred_at", "tenant_id"]
    )
    frame["occurred_at"] = ts(list(frame["occurred_at"]))
    return frame


def scores(bots: dict[str, bool], reasons: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """A scores table: bots 0.9, people 0.1, model m/1."""
    reasons = reasons or {}
    return pd.DataFrame(
        {
            "event_id": list(bots),
            "bot_score": [0.9 if b else 0.1 for b in bots.values()],
            "is_bot": list(bots.values()),
            "reasons": [reasons.get(k, []) for k in bots],
            "model_version": "m/1",
        }
    )


def tenant_scores() -> pd.DataFrame:
    """Event e1 scored in two tenants: a bot in t1, a person in t2."""
    return pd.DataFrame(
        {
            "tenant_id": ["t1", "t2"],
            "event_id": ["e1", "e1"],
            "bot_score": [0.95, 0.05],
            "is_bot": [True, False],
            "reasons": [["ua_is_crawler"], []],
            "model_version": "labels",
            "bot_kind": ["crawler", ""],
        }
    )


def computed(tenant: str = "t1", email_on: bool = True) -> Partitions:
    """One tenant's partitions of two emails and an SMS (March 2024), email filter as given."""
    m = messages(
        [
            ("m1", tenant, "email", "c1", None, "k1", "a.com", "2024-03-10", "2024-03-10 00:01"),
            ("m2", tenant, "email", "c1", None, "k2", "b.com", "2024-03-11", "2024-03-11 00:01"),
            ("s1", tenant, "sms", "c2", None, "k2", None, "2024-03-11", "2024-03-11 00:01"),
        ]
    )
    e = events(
        [
            ("e1", "m1", "open", "2024-03-10 00:02", tenant),
            ("e2", "m1", "click", "2024-03-10 00:03", tenant),
            ("e3", "m2", "click", "2024-03-11 05:00", tenant),
            ("e4", "s1", "click", "2024-03-11 00:02", tenant),
        ]
    )
    s = scores({"e1": True, "e2": False, "e3": True, "e4": True})
    window = Window.ending("2024-03-31", 30)
    return compute_partitions(m, e, s, {(tenant, "email"): email_on}, window, tenants=[tenant])


def write(store: Store, parts: Partitions, tenant: str = "t1", channels=("email", "sms")) -> int:
    """Store one tenant's computed partitions (only the given channels)."""
    summary = parts.summary.assign(
        window_start=parts.window.start,
        as_of=parts.window.end,
        computed_at=datetime.now(UTC),
        run_id="r1",
        model_version="m/1",
    )
    stored = {name: parts.stored(name) for name in parts.frames}
    with store.write() as conn:
        return store.replace_partitions(
            conn,
            tenant,
            channels,
            parts.window.first_date,
            parts.window.last_date,
            {n: f.loc[f["channel"].isin(channels)] for n, f in stored.items()},
            summary.loc[summary["channel"].isin(channels)],
        )
