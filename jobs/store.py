"""The metrics store (SQLAlchemy 2): settings and their history, the recompute queue, stored
scores, metric partitions, job runs. SQLite file under the data home by default, PostgreSQL when
``BOTFILTER_DATABASE_URL=postgresql://...``.

Consistency rules:

* **Atomic writes.** A recompute replaces a tenant's partitions of the window's send dates, marks
  the queue entries it applied and closes its job run in ONE transaction (:meth:`Store.write`).
  SQLite runs it under ``BEGIN IMMEDIATE`` in WAL mode; PostgreSQL under READ COMMITTED. Readers
  use one snapshot (:meth:`Store.read`: a SQLite read transaction, PostgreSQL REPEATABLE READ), so
  they see the old numbers or the new ones, never a mix.
* **One run per tenant at a time.** :meth:`Store.locks` takes one lock per tenant, in sorted
  order, for the whole run: a session-level ``pg_advisory_lock`` on PostgreSQL (scoped to the
  database and schema), an exclusive ``flock`` on a file next to the SQLite database. Both are
  released by the server or the kernel when the process dies, so a killed run never wedges a
  tenant; its job run, left ``running``, is marked ``abandoned`` by the next run that takes the
  lock.

The module tables are SQL views over the partition tables, generated from :mod:`jobs.metrics`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import socket
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.types import TypeDecorator

from botfilter.errors import BotfilterError
from jobs.metrics import (
    COUNTS,
    MODULES,
    PARTITION_KEY,
    RATES,
    Module,
    coerce,
    parse_reasons,
    top_reasons,
)

SCHEMA_VERSION = "1"
SCORE_BATCH_COLUMNS = ("event_id", "bot_score", "is_bot", "top_reason")


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
    # Parquet: event_id, bot_score, is_bot, reasons (list), top_reason (its first, for reports)
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


def normalise_url(url: str) -> str:
    """Use the psycopg 3 driver for PostgreSQL URLs (``postgresql://`` or ``postgres://``)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _now() -> datetime:
    return datetime.now(UTC)


def _records(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    """Rows as dicts of plain Python values, missing as None."""
    out = frame[list(columns)].astype(object)
    out = out.where(pd.notna(out), None)
    return out.to_dict("records")


def _add_model_id(conn: Connection) -> None:
    """Stores made before scores were keyed by model content get the ``model_id`` column (their
    old batches keep none, so they are never taken for any model's scores)."""
    from sqlalchemy import inspect

    names = {c["name"] for c in inspect(conn).get_columns("score_batches")}
    if "model_id" not in names:
        conn.exec_driver_sql("ALTER TABLE score_batches ADD COLUMN model_id VARCHAR")
        conn.exec_driver_sql(
            "CREATE INDEX IF NOT EXISTS ix_score_batches_tenant_model "
            "ON score_batches (tenant_id, model_id)"
        )


class Store:
    """The metrics store. Build with :meth:`open` (from settings) or ``Store(url)``."""

    def __init__(self, url: str, *, schema: str | None = None, lock_timeout: float = 900.0):
        self.url = normalise_url(url)
        try:
            parsed = make_url(self.url)
        except ArgumentError as exc:
            raise BotfilterError(f"metrics store URL {url!r} is not a database URL") from exc
        self.dialect = parsed.get_backend_name()
        self.schema = schema
        self.lock_timeout = lock_timeout
        if self.dialect == "sqlite":
            if not parsed.database or parsed.database == ":memory:":
                raise BotfilterError("the SQLite metrics store must be a file (sqlite:///path)")
            self.path: Path | None = Path(parsed.database)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.engine = self._sqlite_engine()
        elif self.dialect == "postgresql":
            self.path = None
            args = {"options": f"-csearch_path={schema}"} if schema else {}
            self.engine = create_engine(self.url, pool_pre_ping=True, connect_args=args)
        else:
            raise BotfilterError(f"metrics store {url!r}: use sqlite:/// or postgresql://")
        self._init_schema()

    @classmethod
    def open(cls, settings: Any) -> Store:
        """The store named by ``settings.metrics_db_url``."""
        if settings.database_url is None:
            settings.ensure_home()
        return cls(settings.metrics_db_url)

    def _sqlite_engine(self) -> Engine:
        engine = create_engine(self.url, connect_args={"timeout": 120})

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event below issue BEGIN itself (pysqlite would defer it).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")  # readers keep their snapshot during writes
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=120000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            immediate = conn.get_execution_options().get("botfilter_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine

    def _init_schema(self) -> None:
        """Create missing tables and (re)create the views when the spec changed."""
        views = {name: view_sql(m) for name, m in MODULES.items()}
        digest = hashlib.sha256(json.dumps(views, sort_keys=True).encode()).hexdigest()
        try:
            with self.write() as conn:
                if self.dialect == "postgresql":
                    # Two processes creating the schema at once would collide on pg_type.
                    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(current_schema()))"))
                metadata.create_all(conn)
                _add_model_id(conn)
                current = conn.execute(
                    select(store_meta.c.value).where(store_meta.c.key == "views")
                ).scalar()
                if current != digest:
                    for name, sql in views.items():
                        conn.exec_driver_sql(f"DROP VIEW IF EXISTS {name}")
                        conn.exec_driver_sql(f"CREATE VIEW {name} AS {sql}")
                    self._put(conn, store_meta, {"key": "views", "value": digest}, ["key"])
                    self._put(conn, store_meta, {"key": "schema", "value": SCHEMA_VERSION}, ["key"])
        except OperationalError as exc:
            raise BotfilterError(
                f"cannot open the metrics store {self.safe_url}: {exc.orig}"
            ) from exc

    @property
    def safe_url(self) -> str:
        """The URL without a password, for messages."""
        return make_url(self.url).render_as_string(hide_password=True)

    def close(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()

    # --- transactions and locks ---------------------------------------------------------------

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction (SQLite: BEGIN IMMEDIATE, so writers queue up front)."""
        with self.engine.connect() as conn:
            conn.execution_options(botfilter_write=True)
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """One read snapshot: every query inside sees the same committed state."""
        with self.engine.connect() as conn:
            if self.dialect == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def locks(self, names: Iterable[str], timeout: float | None = None) -> Iterator[None]:
        """Hold exclusive named locks (e.g. ``tenant:acme``) until the block ends.

        Taken in sorted order so two runs never deadlock. Raises :class:`LockTimeout` after
        ``timeout`` seconds (``0``: try once).
        """
        ordered = sorted(set(names))
        limit = self.lock_timeout if timeout is None else timeout
        if self.dialect == "postgresql":
            with self._pg_locks(ordered, limit):
                yield
        else:
            with self._file_locks(ordered, limit):
                yield

    @contextlib.contextmanager
    def _pg_locks(self, names: list[str], limit: float) -> Iterator[None]:
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            for name in names:
                key = "botfilter:" + name
                stmt = text(
                    "SELECT pg_try_advisory_lock(hashtextextended("
                    "current_database() || '/' || current_schema() || '/' || :k, 0))"
                )
                _wait(
                    lambda key=key, stmt=stmt: bool(conn.execute(stmt, {"k": key}).scalar()),
                    limit,
                    name,
                )
            yield
        finally:
            with contextlib.suppress(Exception):
                conn.execute(text("SELECT pg_advisory_unlock_all()"))
            conn.close()

    @contextlib.contextmanager
    def _file_locks(self, names: list[str], limit: float) -> Iterator[None]:
        assert self.path is not None
        folder = self.path.with_name(self.path.name + ".locks")
        folder.mkdir(exist_ok=True)
        handles = []
        try:
            for name in names:
                digest = hashlib.sha256(name.encode()).hexdigest()[:32]
                handle = open(folder / f"{digest}.lock", "a+")  # noqa: SIM115 - held across yield
                handles.append(handle)

                def attempt(handle: Any = handle) -> bool:
                    try:
                        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        return False
                    return True

                _wait(attempt, limit, name)
            yield
        finally:
            for handle in handles:
                handle.close()  # closing the descriptor releases its flock

    # --- helpers ------------------------------------------------------------------------------

    def _put(self, conn: Connection, table: Table, values: dict[str, Any], keys: list[str]) -> None:
        """Insert or update one row by its key."""
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        stmt = insert(table).values(**values)
        rest = {k: stmt.excluded[k] for k in values if k not in keys}
        conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=rest))

    def _insert(self, conn: Connection, table: Table, frame: pd.DataFrame) -> int:
        """Insert a frame's rows (columns named like the table's)."""
        if frame.empty:
            return 0
        conn.execute(table.insert(), _records(frame, [c.name for c in table.columns]))
        return len(frame)

    # --- settings and queue -------------------------------------------------------------------

    def tenant_settings(self, conn: Connection | None = None) -> pd.DataFrame:
        """Current settings: tenant_id, exclude_bots_email, exclude_bots_sms, updated_at."""
        with _maybe(self.read, conn) as c:
            rows = c.execute(select(tenant_settings).order_by(tenant_settings.c.tenant_id))
            frame = pd.DataFrame(rows.fetchall(), columns=[c.name for c in tenant_settings.c])
        return frame

    def exclusions(self, conn: Connection | None = None) -> dict[tuple[str, str], bool]:
        """``{(tenant_id, channel): exclude bots}`` for every tenant with a setting."""
        out: dict[tuple[str, str], bool] = {}
        for row in self.tenant_settings(conn).itertuples(index=False):
            out[(row.tenant_id, "email")] = bool(row.exclude_bots_email)
            out[(row.tenant_id, "sms")] = bool(row.exclude_bots_sms)
        return out

    def record_setting(
        self,
        conn: Connection,
        tenant: str,
        channel: str,
        enabled: bool,
        at: datetime,
        source: str,
    ) -> bool | None:
        """Apply one channel's setting, append it to the history; returns the previous value."""
        row = conn.execute(
            select(tenant_settings).where(tenant_settings.c.tenant_id == tenant)
        ).first()
        current = {"email": False, "sms": False}
        previous = None
        if row is not None:
            current = {"email": bool(row.exclude_bots_email), "sms": bool(row.exclude_bots_sms)}
            previous = current[channel]
        current[channel] = bool(enabled)
        values = {
            "tenant_id": tenant,
            "exclude_bots_email": current["email"],
            "exclude_bots_sms": current["sms"],
            "updated_at": at,
        }
        self._put(conn, tenant_settings, values, ["tenant_id"])
        conn.execute(
            settings_history.insert().values(
                tenant_id=tenant,
                channel=channel,
                enabled=bool(enabled),
                previous=previous,
                changed_at=at,
                recorded_at=_now(),
                source=source,
            )
        )
        return previous

    def settings_history(self, tenant: str | None = None) -> pd.DataFrame:
        """Every recorded setting change, oldest first."""
        stmt = select(settings_history).order_by(settings_history.c.id)
        if tenant is not None:
            stmt = stmt.where(settings_history.c.tenant_id == tenant)
        return self._frame(stmt, settings_history)

    def enqueue(self, conn: Connection, tenant: str, channel: str, reason: str) -> int:
        """Queue a 30-day recompute of one tenant's channel; returns the entry id."""
        result = conn.execute(
            recompute_queue.insert().values(
                tenant_id=tenant,
                channel=channel,
                requested_at=_now(),
                reason=reason,
                status="pending",
            )
        )
        return int(result.inserted_primary_key[0])

    def pending(self, conn: Connection | None = None) -> pd.DataFrame:
        """Queue entries not yet applied, oldest first."""
        stmt = (
            select(recompute_queue)
            .where(recompute_queue.c.status == "pending")
            .order_by(recompute_queue.c.id)
        )
        return self._frame(stmt, recompute_queue, conn)

    def queue(self) -> pd.DataFrame:
        """The whole recompute queue, oldest first."""
        return self._frame(select(recompute_queue).order_by(recompute_queue.c.id), recompute_queue)

    def has_pending(self) -> bool:
        """Whether a setting change waits to be applied."""
        with self.read() as conn:
            stmt = select(func.count()).where(recompute_queue.c.status == "pending")
            return bool(conn.execute(stmt).scalar())

    def last_queue_id(self) -> int:
        """Id of the newest queue entry, applied or not (0 when none)."""
        with self.read() as conn:
            return int(conn.execute(select(func.max(recompute_queue.c.id))).scalar() or 0)

    # --- scores -------------------------------------------------------------------------------

    def _score_batches(
        self,
        tenants: Sequence[str],
        model_id: str,
        since: datetime | None = None,
        columns: Sequence[str] = SCORE_BATCH_COLUMNS,
    ) -> pd.DataFrame:
        """Stored scores of the model ``model_id`` for these tenants, from batches that may hold
        events at or after ``since``; with ``tenant_id`` and ``model_version``, one row per
        (tenant_id, event_id), the first stored."""
        import pyarrow.parquet as pq

        t = score_batches
        stmt = select(t.c.tenant_id, t.c.model_version, t.c.data).where(
            t.c.model_id == model_id, t.c.tenant_id.in_(list(tenants))
        )
        if since is not None:
            stmt = stmt.where((t.c.last_occurred >= since) | t.c.last_occurred.is_(None))
        stmt = stmt.order_by(t.c.created_at, t.c.batch_id)
        with self.read() as conn:
            batches = list(conn.execute(stmt))
        frames = []
        for tenant, version, blob in batches:
            frame = pq.read_table(io.BytesIO(blob), columns=list(columns)).to_pandas()
            frames.append(frame.assign(tenant_id=tenant, model_version=version))
        if not frames:
            names = [*columns, "tenant_id", "model_version"]
            return pd.DataFrame({c: pd.Series(dtype=object) for c in names})
        out = pd.concat(frames, ignore_index=True)
        if out["event_id"].is_unique:  # the common case, and much cheaper than pairs
            return out
        # A duplicate is (tenant_id, event_id): the same id in two tenants is two events.
        return out.drop_duplicates(["tenant_id", "event_id"], keep="first", ignore_index=True)

    def stored_score_ids(
        self, tenants: Sequence[str], model_id: str, since: datetime | None = None
    ) -> pd.DataFrame:
        """(tenant_id, event_id) of the stored scores of ``model_id`` for these tenants."""
        frame = self._score_batches(tenants, model_id, since, columns=["event_id"])
        return frame[["tenant_id", "event_id"]]

    def score_versions(self, tenants: Sequence[str]) -> dict[str, int]:
        """Stored scores per model id for these tenants (batches without one left out)."""
        t = score_batches
        stmt = (
            select(t.c.model_id, func.sum(t.c.events))
            .where(t.c.tenant_id.in_(list(tenants)), t.c.model_id.is_not(None))
            .group_by(t.c.model_id)
        )
        with self.read() as conn:
            return {str(v): int(n) for v, n in conn.execute(stmt)}

    def load_scores(
        self,
        tenants: Sequence[str],
        model_id: str,
        since: datetime | None = None,
        reasons: bool = False,
    ) -> pd.DataFrame:
        """Stored scores of one model: tenant_id, event_id, bot_score, is_bot, top_reason,
        model_version (its label), and the full ``reasons`` lists when asked."""
        columns = [*SCORE_BATCH_COLUMNS, *(["reasons"] if reasons else [])]
        frame = self._score_batches(tenants, model_id, since, columns)
        frame["is_bot"] = frame["is_bot"].astype(bool)
        frame["bot_score"] = frame["bot_score"].astype(np.float64)
        return frame

    def save_scores(
        self,
        frame: pd.DataFrame,
        tenant_ids: Sequence[str] | np.ndarray,
        occurred: pd.Series | None = None,
        model_id: str | None = None,
    ) -> int:
        """Store scores (event_id, bot_score, is_bot, reasons, model_version), one batch per
        tenant and model; ``occurred`` (the events' times) lets loads skip old batches.

        ``model_id`` keys them (default: the frame's ``model_id`` column, else its
        ``model_version``: only for callers that name their own models). Callers store only
        events without a score of that model; a later duplicate is ignored on load."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if frame.empty:
            return 0
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
                }
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
                    "created_at": _now(),
                    "data": buf.getvalue(),
                }
            )
        with self.write() as conn:
            conn.execute(score_batches.insert(), rows)
        return len(data)

    def clear_scores(self, tenant: str) -> int:
        """Forget every stored score of a tenant (the next recompute scores it afresh); returns
        how many scores were dropped."""
        t = score_batches
        with self.write() as conn:
            n = conn.execute(select(func.sum(t.c.events)).where(t.c.tenant_id == tenant)).scalar()
            conn.execute(delete(t).where(t.c.tenant_id == tenant))
        return int(n or 0)

    # --- partitions ---------------------------------------------------------------------------

    def replace_partitions(
        self,
        conn: Connection,
        tenant: str,
        channels: Sequence[str],
        first: date,
        last: date,
        frames: Mapping[str, pd.DataFrame],
        summary: pd.DataFrame,
    ) -> int:
        """Replace one tenant's partitions of send dates ``first..last`` for ``channels``.

        ``frames`` are stored partition rows per module table; ``summary`` the
        ``metric_partitions`` rows. Call inside :meth:`write`; returns rows written.
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
            written += self._insert(conn, table, frames[name])
        self._insert(conn, metric_partitions, summary)
        return written

    def read_partitions(
        self,
        table: str,
        tenant: str | None = None,
        since: date | None = None,
        until: date | None = None,
        conn: Connection | None = None,
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
        return coerce(self._frame(stmt, t, conn), module)

    def partition_summary(self, tenant: str | None = None) -> pd.DataFrame:
        """The ``metric_partitions`` rows: what each stored partition was computed with."""
        stmt = select(metric_partitions).order_by(*[metric_partitions.c[k] for k in PARTITION_KEY])
        if tenant is not None:
            stmt = stmt.where(metric_partitions.c.tenant_id == tenant)
        return self._frame(stmt, metric_partitions)

    def read_view(self, table: str, tenant: str | None = None) -> pd.DataFrame:
        """A module table as the SQL view over all stored partitions computes it."""
        module = MODULES[table]
        keys = ["tenant_id", *module.keys, "channel"]
        sql = f"SELECT * FROM {table}"
        params: dict[str, Any] = {}
        if tenant is not None:
            sql += " WHERE tenant_id = :tenant"
            params["tenant"] = tenant
        sql += " ORDER BY " + ", ".join(keys)
        with self.read() as conn:
            result = conn.execute(text(sql), params)
            frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
        return coerce(frame, module)

    # --- job runs -----------------------------------------------------------------------------

    def start_run(
        self,
        kind: str,
        tenant: str | None = None,
        channels: Sequence[str] = (),
        as_of: datetime | None = None,
        window_start: datetime | None = None,
        batch_id: str | None = None,
    ) -> str:
        """Record a run as ``running`` (own transaction); returns its id.

        A recompute run holds its tenant's lock, so any other ``running`` recompute of that
        tenant belongs to a dead process: it is marked ``abandoned``.
        """
        run_id = uuid.uuid4().hex
        with self.write() as conn:
            if kind == "recompute" and tenant is not None:
                conn.execute(
                    update(job_runs)
                    .where(
                        job_runs.c.kind == kind,
                        job_runs.c.tenant_id == tenant,
                        job_runs.c.status == "running",
                    )
                    .values(status="abandoned", error="process ended before the run finished")
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
                    started_at=_now(),
                    status="running",
                    host=socket.gethostname(),
                    pid=os.getpid(),
                )
            )
        return run_id

    def finish_run(
        self,
        run_id: str,
        status: str = "succeeded",
        rows_in: int | None = None,
        rows_out: int | None = None,
        error: str | None = None,
        detail: Mapping[str, Any] | None = None,
        conn: Connection | None = None,
    ) -> None:
        """Close a run (inside the caller's transaction when ``conn`` is given)."""
        values = {
            "status": status,
            "finished_at": _now(),
            "rows_in": rows_in,
            "rows_out": rows_out,
            "error": error,
            "detail": json.dumps(detail, sort_keys=True, default=str) if detail else None,
        }
        with _maybe(self.write, conn) as c:
            c.execute(update(job_runs).where(job_runs.c.run_id == run_id).values(**values))

    def complete_queue(
        self, conn: Connection, tenant: str, channels: Sequence[str], upto: int, run_id: str
    ) -> int:
        """Mark a tenant's pending entries up to id ``upto`` done by ``run_id``."""
        result = conn.execute(
            update(recompute_queue)
            .where(
                recompute_queue.c.tenant_id == tenant,
                recompute_queue.c.channel.in_(list(channels)),
                recompute_queue.c.status == "pending",
                recompute_queue.c.id <= upto,
            )
            .values(status="done", run_id=run_id, done_at=_now())
        )
        return int(result.rowcount or 0)

    def job_runs(self, tenant: str | None = None, kind: str | None = None) -> pd.DataFrame:
        """Recorded runs, oldest first."""
        stmt = select(job_runs).order_by(job_runs.c.started_at, job_runs.c.run_id)
        if tenant is not None:
            stmt = stmt.where(job_runs.c.tenant_id == tenant)
        if kind is not None:
            stmt = stmt.where(job_runs.c.kind == kind)
        return self._frame(stmt, job_runs)

    # --- worker state -------------------------------------------------------------------------

    def get_state(self, key: str) -> str | None:
        """A worker state value (e.g. the last data fingerprint)."""
        with self.read() as conn:
            stmt = select(worker_state.c.value).where(worker_state.c.key == key)
            return conn.execute(stmt).scalar()

    def set_state(self, key: str, value: str, conn: Connection | None = None) -> None:
        """Set a worker state value."""
        with _maybe(self.write, conn) as c:
            self._put(c, worker_state, {"key": key, "value": value, "updated_at": _now()}, ["key"])

    def _frame(self, stmt: Any, table: Table, conn: Connection | None = None) -> pd.DataFrame:
        with _maybe(self.read, conn) as c:
            rows = c.execute(stmt).fetchall()
        return pd.DataFrame(rows, columns=[col.name for col in table.columns])


class LockTimeout(BotfilterError):
    """Another run held a lock for longer than the timeout."""


def _wait(attempt: Any, limit: float, name: str) -> None:
    """Retry ``attempt`` until it succeeds or ``limit`` seconds pass."""
    deadline = time.monotonic() + limit
    delay = 0.01
    while not attempt():
        if time.monotonic() >= deadline:
            raise LockTimeout(
                f"{name} is locked by another run (waited {limit:.0f} s); try again later"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


@contextlib.contextmanager
def _maybe(factory: Any, conn: Connection | None) -> Iterator[Connection]:
    """Use the caller's connection, or a fresh transaction from ``factory``."""
    if conn is not None:
        yield conn
    else:
        with factory() as c:
            yield c


def _reasons_array(values: pd.Series) -> Any:
    """Reasons as an Arrow list<string> array (Arrow columns, lists, arrays as they are; text
    parsed)."""
    import pyarrow as pa

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
