"""The store's tables and views, and the one step that creates or migrates them.

Eight tables (settings and their history, the recompute queue, score batches, the partition
summary, the window's events for the console, job runs, worker state) plus ``store_meta``, and one ``part_<module>`` table per module
of :data:`jobs.metrics.MODULES`; the module tables themselves are SQL views over those, generated
from the metric spec by :func:`view_sql`. A new table joins :data:`metadata` here and is created by
:func:`create` on the next open.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateTable
from sqlalchemy.types import TypeDecorator

from jobs.metrics.spec import COUNTS, MODULES, PARTITION_KEY, RATES, Module
from jobs.store.rows import upsert

SCHEMA_VERSION = "1"


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on both back ends (SQLite keeps naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> datetime | None:
        if value is None:
            return None
        ts = pd.Timestamp(value)
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        dt = ts.to_pydatetime(warn=False)
        return dt.replace(tzinfo=None) if dialect.name == "sqlite" else dt

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

store_meta = Table(
    "store_meta",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text, nullable=False),
)

tenant_settings = Table(
    "tenant_settings",
    metadata,
    Column("tenant_id", String, primary_key=True),
    Column("exclude_bots_email", Boolean, nullable=False),
    Column("exclude_bots_sms", Boolean, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

settings_history = Table(
    "settings_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String, nullable=False, index=True),
    Column("channel", String(10), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("previous", Boolean),
    Column("changed_at", UTCDateTime, nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
    Column("source", String(20), nullable=False),
)

# Tables whose ids people see or act on (the console's entry ids, audit ids, queue ids in the
# CLI and the status page) never reuse one: PostgreSQL's sequences never do, and SQLite without
# AUTOINCREMENT gives a deleted newest row's id to the next row (a stale DELETE of an old entry
# id then removed another entry, and the audit mixed the two under one id).
recompute_queue = Table(
    "recompute_queue",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String, nullable=False),
    Column("channel", String(10), nullable=False),
    Column("requested_at", UTCDateTime, nullable=False),
    Column("reason", Text, nullable=False),
    Column("status", String(10), nullable=False),  # pending | done
    Column("run_id", String(32)),
    Column("done_at", UTCDateTime),
    Index("ix_recompute_queue_pending", "status", "tenant_id"),
    sqlite_autoincrement=True,
)

score_batches = Table(
    "score_batches",
    metadata,
    # Scores keyed by (tenant_id, event_id, model_id), kept as Parquet batches: one row per
    # scoring run (or API flush) and tenant. A million scores write and read in a fraction of a
    # second this way, where a million-row table costs seconds of per-row inserts on SQLite.
    # ``model_id`` is the model's content id (scoring.registry): a label such as botfilter/1 can
    # name another model in another registry. Batches stored before it existed have none and
    # are never reused.
    Column("batch_id", String(32), primary_key=True),
    Column("tenant_id", String, nullable=False),
    Column("model_version", String, nullable=False),  # the label, for people
    Column("model_id", String),
    Column("events", BigInteger, nullable=False),
    Column("first_occurred", UTCDateTime),
    Column("last_occurred", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    # Parquet: event_id, bot_score, is_bot, reasons (list), top_reason (its first, for reports),
    # bot_kind ("" for people; absent from batches stored before it)
    Column("data", LargeBinary, nullable=False),
    Index("ix_score_batches_tenant_model", "tenant_id", "model_id"),
)

metric_partitions = Table(
    "metric_partitions",
    metadata,
    Column("tenant_id", String, primary_key=True),
    Column("channel", String(10), primary_key=True),
    Column("send_date", Date, primary_key=True),
    Column("bot_filter_applied", Boolean, nullable=False),
    Column("messages", BigInteger, nullable=False),
    Column("delivered", BigInteger, nullable=False),
    Column("events", BigInteger, nullable=False),
    Column("window_start", UTCDateTime, nullable=False),
    Column("as_of", UTCDateTime, nullable=False),
    Column("computed_at", UTCDateTime, nullable=False),
    Column("run_id", String(32), nullable=False),
    Column("model_version", Text, nullable=False),
)

job_runs = Table(
    "job_runs",
    metadata,
    Column("run_id", String(32), primary_key=True),
    Column("batch_id", String(32), nullable=False),
    Column("kind", String(20), nullable=False),  # recompute | cycle
    Column("tenant_id", String),
    Column("channels", String(20)),
    Column("as_of", UTCDateTime),
    Column("window_start", UTCDateTime),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("status", String(12), nullable=False),  # running|succeeded|failed|abandoned|idle
    Column("rows_in", BigInteger),
    Column("rows_out", BigInteger),
    Column("error", Text),
    Column("detail", Text),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Index("ix_job_runs_tenant", "tenant_id", "status"),
)

worker_state = Table(
    "worker_state",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# Tenant allow and block lists (jobs.lists.storage): the entries and every change to them.
list_entries = Table(
    "list_entries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String, nullable=False),
    Column("list", String(5), nullable=False),  # allow | block
    Column("kind", String(10), nullable=False),  # ip | asn | user_agent | domain
    Column("value", Text, nullable=False),
    Column("note", Text, nullable=False),
    Column("author", String(100), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime),
    Index("ix_list_entries_tenant", "tenant_id", "list", "kind", "value", unique=True),
    sqlite_autoincrement=True,
)

list_audit = Table(
    "list_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String, nullable=False, index=True),
    Column("entry_id", Integer, nullable=False),
    Column("action", String(10), nullable=False),  # add | change | delete
    Column("who", String(100), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("before", Text),  # the entry as JSON, None for an add
    Column("after", Text),  # the entry as JSON, None for a delete
    Column("queue_ids", Text, nullable=False),  # the recomputes it queued, JSON list
    sqlite_autoincrement=True,
)


window_events = Table(
    "window_events",
    metadata,
    # The events of a tenant's window as Parquet batches, one per (module, key, channel): what
    # the console's drill-down and list dry run read (jobs.store.window_events).
    Column("tenant_id", String, primary_key=True),
    Column("module", String(12), primary_key=True),  # campaigns | automations | other
    Column("key", String, primary_key=True),  # the campaign or automation id ("" for other)
    Column("channel", String(10), primary_key=True),
    Column("run_id", String(32), nullable=False),
    Column("events", BigInteger, nullable=False),
    Column("bots", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),  # every column, zstd
    Column("matches", LargeBinary, nullable=False),  # what a list dry run reads, uncompressed
)


def _partition_table(module: Module) -> Table:
    """The store table holding a module's partition rows."""
    cols: list[Column] = []
    for name in PARTITION_KEY:
        cols.append(Column(name, Date if name == "send_date" else String, primary_key=True))
    for name in module.keys:
        cols.append(Column(name, Date if name == "date" else String, primary_key=True))
    for name in module.counts:
        cols.append(Column(name, BigInteger, nullable=COUNTS[name].email_only))
    cols.append(Column("bot_filter_applied", Boolean, nullable=False))
    return Table(f"part_{module.table}", metadata, *cols)


PARTITION_TABLES: dict[str, Table] = {name: _partition_table(m) for name, m in MODULES.items()}


def view_sql(module: Module) -> str:
    """``SELECT`` of a module table over its partition table, generated from the metric spec."""
    keys = ["tenant_id", *module.keys, "channel"]
    exprs = []
    for col in module.table_columns(comparison=True):
        if col in keys:
            exprs.append(col)
        elif col in COUNTS:
            exprs.append(f"SUM({col}) AS {col}")
        elif col in RATES:
            r = RATES[col]
            exprs.append(
                f"CASE WHEN SUM({r.denominator}) > 0 THEN "
                f"CAST(SUM({r.numerator}) AS FLOAT) / SUM({r.denominator}) END AS {col}"
            )
        elif col == "bot_filter_applied":
            exprs.append(
                "MIN(CASE WHEN bot_filter_applied THEN 1 ELSE 0 END) = 1 AS bot_filter_applied"
            )
        else:  # pragma: no cover - the spec names only these kinds of columns
            raise ValueError(f"no SQL for column {col}")
    return f"SELECT {', '.join(exprs)} FROM part_{module.table} GROUP BY {', '.join(keys)}"


def _add_model_id(conn: Connection) -> None:
    """Stores made before scores were keyed by model content get the ``model_id`` column (their
    old batches keep none, so they are never taken for any model's scores)."""
    names = {c["name"] for c in inspect(conn).get_columns("score_batches")}
    if "model_id" not in names:
        conn.exec_driver_sql("ALTER TABLE score_batches ADD COLUMN model_id VARCHAR")
        conn.exec_driver_sql(
            "CREATE INDEX IF NOT EXISTS ix_score_batches_tenant_model "
            "ON score_batches (tenant_id, model_id)"
        )


#: The tables whose ids are never reused (``sqlite_autoincrement``), for the SQLite migration.
NEVER_REUSED = (list_entries, list_audit, recompute_queue)


def _autoincrement_ids(conn: Connection) -> None:
    """SQLite stores made before :data:`NEVER_REUSED` took AUTOINCREMENT get it: SQLite cannot
    add it in place, so each such table is made anew under another name, its rows copied (ids
    kept), the old one dropped, the new one renamed and its indexes made again, all in the
    caller's transaction. Once done it costs one look at ``sqlite_master`` per table."""
    if conn.dialect.name != "sqlite":
        return
    quote = conn.dialect.identifier_preparer.quote
    for table in NEVER_REUSED:
        sql = conn.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table.name,)
        ).scalar()
        if sql is None or "AUTOINCREMENT" in sql.upper():
            continue
        new = f"{table.name}__autoincrement"
        created = str(CreateTable(table).compile(dialect=conn.dialect)).strip()
        prefix = f"CREATE TABLE {quote(table.name)} "
        if not created.startswith(prefix):  # pragma: no cover - SQLAlchemy's own DDL
            raise RuntimeError(f"unexpected DDL for {table.name}: {created[:80]}")
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {new}")
        conn.exec_driver_sql(f"CREATE TABLE {new} {created[len(prefix) :]}")
        columns = ", ".join(quote(c.name) for c in table.columns)
        conn.exec_driver_sql(f"INSERT INTO {new} ({columns}) SELECT {columns} FROM {table.name}")
        conn.exec_driver_sql(f"DROP TABLE {table.name}")  # its indexes go with it
        conn.exec_driver_sql(f"ALTER TABLE {new} RENAME TO {table.name}")
        for index in table.indexes:
            index.create(conn)
        if table is list_entries:
            # An entry deleted while it was the newest has its id in the audit only: the next
            # entry must not take that id either.
            audited = int(conn.execute(select(func.max(list_audit.c.entry_id))).scalar() or 0)
            kept = int(conn.execute(select(func.max(list_entries.c.id))).scalar() or 0)
            if audited > kept:
                conn.exec_driver_sql(
                    "DELETE FROM sqlite_sequence WHERE name = ?", (list_entries.name,)
                )
                conn.exec_driver_sql(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)",
                    (list_entries.name, audited),
                )


def create(conn: Connection) -> None:
    """Create missing tables, migrate older stores and (re)create the views when the spec
    changed. Call inside a write transaction."""
    views = {name: view_sql(m) for name, m in MODULES.items()}
    digest = hashlib.sha256(json.dumps(views, sort_keys=True).encode()).hexdigest()
    if conn.dialect.name == "postgresql":
        # Two processes creating the schema at once would collide on pg_type.
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(current_schema()))"))
    metadata.create_all(conn)
    _add_model_id(conn)
    _autoincrement_ids(conn)
    current = conn.execute(select(store_meta.c.value).where(store_meta.c.key == "views")).scalar()
    if current != digest:
        for name, sql in views.items():
            conn.exec_driver_sql(f"DROP VIEW IF EXISTS {name}")
            conn.exec_driver_sql(f"CREATE VIEW {name} AS {sql}")
        upsert(conn, store_meta, {"key": "views", "value": digest}, ["key"])
        upsert(conn, store_meta, {"key": "schema", "value": SCHEMA_VERSION}, ["key"])
