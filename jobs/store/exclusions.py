"""Storage of the tenants' "exclude bots" switches: the current value per tenant and channel
(``tenant_settings``) and every change (``settings_history``). The rules for changing them live in
:mod:`jobs.exclusions`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Row, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from jobs.store.rows import now, select_frame
from jobs.store.schema import settings_history, tenant_settings

_CURRENT = select(tenant_settings).order_by(tenant_settings.c.tenant_id)


def current(conn: Connection) -> pd.DataFrame:
    """Current settings: tenant_id, exclude_bots_email, exclude_bots_sms, updated_at."""
    return select_frame(conn, _CURRENT, tenant_settings)


def switches(conn: Connection) -> dict[tuple[str, str], bool]:
    """``{(tenant_id, channel): exclude bots}`` for every tenant with a setting."""
    out: dict[tuple[str, str], bool] = {}
    for row in conn.execute(_CURRENT):
        out[(row.tenant_id, "email")] = bool(row.exclude_bots_email)
        out[(row.tenant_id, "sms")] = bool(row.exclude_bots_sms)
    return out


def locked(conn: Connection, tenant: str) -> Row[Any] | None:
    """The tenant's settings row, locked until the transaction ends (None: no setting yet).
    Two changes of one tenant at once then take turns: each read both channels and wrote both
    back, so on PostgreSQL the later one put back the earlier one's stale value (SQLite's
    writers queue up front anyway)."""
    query = select(tenant_settings).where(tenant_settings.c.tenant_id == tenant)
    return conn.execute(query.with_for_update()).first()


def record(
    conn: Connection, tenant: str, channel: str, enabled: bool, at: datetime, source: str
) -> bool:
    """Apply one channel's setting (the tenant's row locked, only that channel written), and
    append it to the history when it changes the value; returns the previous value.

    A tenant without a setting is off on both channels (where every tenant starts), so its
    first change reads "from off" on each channel: the first ``--email on --sms on`` recorded
    email "from –" and SMS "from off", the row the email change made being SMS's "before"."""
    column = f"exclude_bots_{channel}"
    row = locked(conn, tenant)
    previous = False if row is None else bool(getattr(row, column))
    made = None
    if row is None:  # a new tenant, off on the other channel; unless made meanwhile
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        values = {"exclude_bots_email": False, "exclude_bots_sms": False, column: bool(enabled)}
        made = conn.execute(
            insert(tenant_settings)
            .values(tenant_id=tenant, updated_at=at, **values)
            .on_conflict_do_nothing(index_elements=["tenant_id"])  # waits for the other maker
            .returning(tenant_settings.c.tenant_id)
        ).first()
        if made is None:
            row = locked(conn, tenant)
            previous = False if row is None else bool(getattr(row, column))
    if made is None:
        conn.execute(
            update(tenant_settings)
            .where(tenant_settings.c.tenant_id == tenant)
            .values({column: bool(enabled), "updated_at": at})
        )
    if bool(previous) == bool(enabled):
        # Nothing changed (off is every tenant's start): the history lists changes only, as the
        # console's page and the dashboard's "setting changed" markers read it.
        return previous
    conn.execute(
        settings_history.insert().values(
            tenant_id=tenant,
            channel=channel,
            enabled=bool(enabled),
            previous=previous,
            changed_at=at,
            recorded_at=now(),
            source=source,
        )
    )
    return previous


def history(conn: Connection, tenant: str | None = None) -> pd.DataFrame:
    """Every recorded setting change, oldest first."""
    stmt = select(settings_history).order_by(settings_history.c.id)
    if tenant is not None:
        stmt = stmt.where(settings_history.c.tenant_id == tenant)
    return select_frame(conn, stmt, settings_history)
