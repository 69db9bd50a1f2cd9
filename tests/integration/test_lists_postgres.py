"""Tenant lists on a PostgreSQL metrics store: tables in the store's schema, the audit and the
queued recomputes in one transaction, tenant walls."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from core.errors import BotfilterError
from jobs.lists import storage as lists
from jobs.store import Store

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.fixture
def pg_store(pg_url: str):
    schema = f"bf_lists_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    store = Store(pg_url, schema=schema)
    try:
        yield store
    finally:
        store.close()
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


def test_lists_on_postgres(pg_store: Store) -> None:
    entry = lists.build_entry("t1", "block", "ip", "203.0.113.7/24", "scanner", "ops")
    stored, queued = lists.add_entry(pg_store, entry)
    assert stored.value == "203.0.113.0/24" and len(queued) == 2
    assert pg_store.queue()["channel"].tolist() == ["email", "sms"]
    with pytest.raises(BotfilterError, match="already on the block list"):
        lists.add_entry(pg_store, entry)
    assert len(pg_store.queue()) == 2  # the refused add queued nothing
    with pytest.raises(LookupError):
        lists.delete_entry(pg_store, "t2", stored.id, "intruder")
    assert [e.id for e in lists.entries(pg_store, ["t1"])] == [stored.id]
    assert lists.entries(pg_store, ["t2"]) == []
    lists.delete_entry(pg_store, "t1", stored.id, "ops")
    assert [a["action"] for a in lists.audit(pg_store, "t1")] == ["delete", "add"]
    assert lists.audit(pg_store, "t2") == []
    with pg_store.read() as conn:
        where = (
            conn.execute(
                sa.text(
                    "SELECT table_schema FROM information_schema.tables WHERE table_name = 'list_entries'"
                )
            )
            .scalars()
            .all()
        )
    # other tests' schemas in the shared database may hold their own list_entries
    assert pg_store.schema in where and "public" not in where


def test_ids_out_of_range_and_control_characters_are_user_errors_on_postgres(
    pg_store: Store,
) -> None:
    """PostgreSQL refuses NUL in text and numbers past 64 bits: a note with NUL and an entry id
    of 2**63 were 500s in the console. They are now a one-line error and an unknown entry."""
    with pytest.raises(BotfilterError, match="control characters"):
        lists.build_entry("t1", "block", "ip", "203.0.113.7", "a\x00b", "ops")
    stored, _ = lists.add_entry(pg_store, lists.build_entry("t1", "block", "ip", "203.0.113.7"))
    with pytest.raises(BotfilterError, match="control characters"):
        lists.change_entry(pg_store, "t1", stored.id, "ops", expires_at=None, note="a\x00b")
    for huge in (2**63, 10**30):
        with pytest.raises(LookupError):
            lists.get_entry(pg_store, "t1", huge)
        with pytest.raises(LookupError):
            lists.delete_entry(pg_store, "t1", huge, "ops")


def test_domain_entries_ids_and_expiries_on_postgres(pg_store: Store) -> None:
    """A domain entry queues SMS too (the contract keeps recipient_domain on SMS messages); a
    deleted entry's id is never given again; an expiry queues its own tenant's channels once."""
    from datetime import UTC, datetime, timedelta

    entry = lists.build_entry("t1", "block", "domain", "carrier.net", "", "ops")
    stored, queued = lists.add_entry(pg_store, entry)
    queue = pg_store.queue().set_index("id")
    assert list(queue.loc[queued, "channel"]) == ["email", "sms"]
    lists.delete_entry(pg_store, "t1", stored.id, "ops")
    again, _ = lists.add_entry(pg_store, lists.build_entry("t1", "block", "ip", "::ffff:10.0.0.1"))
    assert again.id != stored.id and again.value == "10.0.0.1/32"
    now = datetime.now(UTC)
    soon = now + timedelta(minutes=1)
    lists.change_entry(pg_store, "t1", again.id, "ops", expires_at=soon)
    lists.add_entry(pg_store, lists.build_entry("t2", "block", "asn", "AS64500"))
    with pg_store.write() as conn:
        assert lists.queue_expired(pg_store, conn, now, now + timedelta(seconds=30)) == []
        ids = lists.queue_expired(pg_store, conn, now, soon + timedelta(seconds=1))
    queue = pg_store.queue().set_index("id")
    assert list(queue.loc[ids, "channel"]) == ["email", "sms"]
    assert set(queue.loc[ids, "tenant_id"]) == {"t1"}  # only the tenant whose entry expired
    assert lists.next_expiry(pg_store, now) == soon
