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

Rooms: :mod:`~jobs.store.database` (URL, engine, transactions), :mod:`~jobs.store.schema`
(tables, views, migrations), :mod:`~jobs.store.locks`, :mod:`~jobs.store.exclusions` (the
tenants' switches and their history), :mod:`~jobs.store.queue`, :mod:`~jobs.store.scores`,
:mod:`~jobs.store.partitions`, :mod:`~jobs.store.window_events` (the console's event
batches), :mod:`~jobs.store.runs` (job runs, worker state) and
:mod:`~jobs.store.rows` (frames in and out of tables). Each takes a connection; :class:`Store`
below only chooses the transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from core.errors import BotfilterError

# Aliased because Store has methods named exclusions(), locks() and queue().
from jobs.store import exclusions as _exclusions
from jobs.store import locks as _locks
from jobs.store import partitions as _partitions
from jobs.store import queue as _queue
from jobs.store import runs as _runs
from jobs.store import scores as _scores
from jobs.store import window_events as _window_events
from jobs.store.database import Database, normalise_url, using
from jobs.store.locks import LockTimeout
from jobs.store.schema import (
    PARTITION_TABLES,
    SCHEMA_VERSION,
    create,
    job_runs,
    metadata,
    metric_partitions,
    recompute_queue,
    score_batches,
    settings_history,
    store_meta,
    tenant_settings,
    view_sql,
    window_events,
    worker_state,
)
from jobs.store.scores import SCORE_BATCH_COLUMNS

if TYPE_CHECKING:
    from core.settings import Settings

__all__ = [
    "PARTITION_TABLES",
    "SCHEMA_VERSION",
    "SCORE_BATCH_COLUMNS",
    "LockTimeout",
    "Store",
    "job_runs",
    "metadata",
    "metric_partitions",
    "normalise_url",
    "recompute_queue",
    "score_batches",
    "settings_history",
    "store_meta",
    "tenant_settings",
    "view_sql",
    "window_events",
    "worker_state",
]


class Store(Database):
    """The metrics store. Build with :meth:`open` (from settings) or ``Store(url)``.

    Methods that take ``conn`` run inside the caller's transaction (:meth:`write`); the others
    open their own.
    """

    def __init__(self, url: str, *, schema: str | None = None, lock_timeout: float = 900.0):
        super().__init__(url, schema=schema)
        self.lock_timeout = lock_timeout
        try:
            with self.write() as conn:
                create(conn)
        except OperationalError as exc:
            raise BotfilterError(
                f"cannot open the metrics store {self.safe_url}: {exc.orig}"
            ) from exc

    @classmethod
    def open(cls, settings: Settings) -> Store:
        """The store named by ``settings.metrics_db_url``."""
        if settings.database_url is None:
            settings.ensure_home()
        return cls(settings.metrics_db_url)

    @contextlib.contextmanager
    def locks(self, names: Iterable[str], timeout: float | None = None) -> Iterator[None]:
        """Hold exclusive named locks (e.g. ``tenant:acme``) until the block ends.

        Taken in sorted order so two runs never deadlock. Raises :class:`LockTimeout` after
        ``timeout`` seconds (``0``: try once).
        """
        limit = self.lock_timeout if timeout is None else timeout
        with _locks.hold(self.engine, self.path, names, limit):
            yield

    # --- settings and queue -------------------------------------------------------------------

    def tenant_settings(self, conn: Connection | None = None) -> pd.DataFrame:
        """Current settings: tenant_id, exclude_bots_email, exclude_bots_sms, updated_at."""
        with using(conn, self.read) as c:
            return _exclusions.current(c)

    def exclusions(self, conn: Connection | None = None) -> dict[tuple[str, str], bool]:
        """``{(tenant_id, channel): exclude bots}`` for every tenant with a setting."""
        with using(conn, self.read) as c:
            return _exclusions.switches(c)

    #: Apply one channel's setting inside the caller's transaction (``conn`` first).
    record_setting = staticmethod(_exclusions.record)
    lock_setting = staticmethod(_exclusions.locked)

    def settings_history(self, tenant: str | None = None) -> pd.DataFrame:
        """Every recorded setting change, oldest first."""
        with self.read() as conn:
            return _exclusions.history(conn, tenant)

    #: Queue a recompute of one tenant's channel inside the caller's transaction.
    enqueue = staticmethod(_queue.enqueue)

    def pending(self, conn: Connection | None = None) -> pd.DataFrame:
        """Queue entries not yet applied, oldest first."""
        with using(conn, self.read) as c:
            return _queue.pending(c)

    def queue(self) -> pd.DataFrame:
        """The whole recompute queue, oldest first."""
        with self.read() as conn:
            return _queue.entries(conn)

    def has_pending(self) -> bool:
        """Whether a setting change waits to be applied."""
        with self.read() as conn:
            return _queue.has_pending(conn)

    def last_queue_id(self) -> int:
        """Id of the newest queue entry, applied or not (0 when none)."""
        with self.read() as conn:
            return _queue.last_id(conn)

    #: Mark a tenant's pending entries done, inside the caller's (write) transaction.
    complete_queue = staticmethod(_queue.complete)

    # --- scores -------------------------------------------------------------------------------

    def stored_score_ids(
        self, tenants: Sequence[str], model_id: str, since: datetime | None = None
    ) -> pd.DataFrame:
        """(tenant_id, event_id) of the stored scores of ``model_id`` for these tenants."""
        with self.read() as conn:
            frame = _scores.read(conn, tenants, model_id, since, columns=["event_id"])
        return frame[["tenant_id", "event_id"]]

    def score_versions(self, tenants: Sequence[str]) -> dict[str, int]:
        """Stored scores per model id for these tenants (batches without one left out)."""
        with self.read() as conn:
            return _scores.versions(conn, tenants)

    def load_scores(
        self,
        tenants: Sequence[str],
        model_id: str,
        since: datetime | None = None,
        reasons: bool = False,
    ) -> pd.DataFrame:
        """Stored scores of one model: tenant_id, event_id, bot_score, is_bot, top_reason,
        model_version (its label), ``provisional_until`` (NaN for a final score, else how far
        the tenant's data reached, ns, when it was made) and the full ``reasons`` lists when
        asked."""
        columns = [*SCORE_BATCH_COLUMNS, *(["reasons"] if reasons else [])]
        with self.read() as conn:
            frame = _scores.read(conn, tenants, model_id, since, columns)
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
        """Store scores (event_id, bot_score, is_bot, reasons, model_version, bot_kind), one batch per
        tenant and model; ``occurred`` (the events' times) lets loads skip old batches.

        ``model_id`` keys them (default: the frame's ``model_id`` column, else its
        ``model_version``: only for callers that name their own models). Callers store only
        events without a score of that model; a later duplicate is ignored on load."""
        if frame.empty:
            return 0
        rows = _scores.batches(frame, tenant_ids, occurred, model_id)  # Parquet, before the lock
        with self.write() as conn:
            conn.execute(score_batches.insert(), rows)
        return len(frame)

    def clear_scores(self, tenant: str) -> int:
        """Forget every stored score of a tenant (the next recompute scores it afresh); returns
        how many scores were dropped."""
        with self.write() as conn:
            return _scores.clear(conn, tenant)

    # --- partitions ---------------------------------------------------------------------------

    #: Replace one tenant's partitions of a send-date range, inside :meth:`write`.
    replace_partitions = staticmethod(_partitions.replace)

    def read_partitions(
        self,
        table: str,
        tenant: str | None = None,
        since: date | None = None,
        until: date | None = None,
        conn: Connection | None = None,
    ) -> pd.DataFrame:
        """Stored partition rows of a module table (send dates ``since..until`` inclusive)."""
        with using(conn, self.read) as c:
            return _partitions.read(c, table, tenant, since, until)

    def partition_summary(self, tenant: str | None = None) -> pd.DataFrame:
        """The ``metric_partitions`` rows: what each stored partition was computed with."""
        with self.read() as conn:
            return _partitions.summary(conn, tenant)

    def read_view(self, table: str, tenant: str | None = None) -> pd.DataFrame:
        """A module table as the SQL view over all stored partitions computes it."""
        with self.read() as conn:
            return _partitions.read_view(conn, table, tenant)

    # --- the window's events (the console's drill-down and list dry run) -------------------

    #: Replace one tenant's window events of some channels, inside :meth:`write`.
    replace_window_events = staticmethod(_window_events.replace)

    def window_events(
        self,
        tenant: str,
        module: str | None = None,
        key: str | None = None,
        columns: Sequence[str] | None = None,
        conn: Connection | None = None,
    ) -> pd.DataFrame:
        """The stored window events of one campaign or automation, or all the tenant's."""
        with using(conn, self.read) as c:
            return _window_events.read(c, tenant, module, key, columns)

    def window_events_content(self, tenant: str) -> tuple[Any, ...]:
        """What identifies the tenant's stored window events (for caches)."""
        with self.read() as conn:
            return _window_events.content(conn, tenant)

    def window_events_size(self, tenant: str | None = None) -> dict[str, int]:
        """Batches, events and bytes of the stored window events."""
        with self.read() as conn:
            return _window_events.size(conn, tenant)

    # --- job runs and worker state ------------------------------------------------------------

    def start_run(
        self,
        kind: str,
        tenant: str | None = None,
        channels: Sequence[str] = (),
        as_of: datetime | None = None,
        window_start: datetime | None = None,
        batch_id: str | None = None,
    ) -> str:
        """Record a run as ``running`` (own transaction); returns its id. Marks a ``running``
        recompute of the same tenant ``abandoned`` (:func:`jobs.store.runs.start`)."""
        with self.write() as conn:
            return _runs.start(conn, kind, tenant, channels, as_of, window_start, batch_id)

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
        with using(conn, self.write) as c:
            _runs.finish(c, run_id, status, rows_in, rows_out, error, detail)

    def abandon_batch(self, batch_id: str, error: str) -> int:
        """Mark the runs of a batch still ``running`` as ``abandoned`` (their process died)."""
        with self.write() as conn:
            return _runs.abandon_batch(conn, batch_id, error)

    def stop_batch(self, batch_id: str, error: str, interrupted: Sequence[str]) -> int:
        """Mark the runs of a batch that a stop cut short ``abandoned`` with ``error``
        (:func:`jobs.store.runs.stop_batch`)."""
        with self.write() as conn:
            return _runs.stop_batch(conn, batch_id, error, interrupted)

    def job_runs(self, tenant: str | None = None, kind: str | None = None) -> pd.DataFrame:
        """Recorded runs, oldest first."""
        with self.read() as conn:
            return _runs.recorded(conn, tenant, kind)

    def get_state(self, key: str) -> str | None:
        """A worker state value (e.g. the last data fingerprint)."""
        with self.read() as conn:
            return _runs.get_state(conn, key)

    def set_state(self, key: str, value: str, conn: Connection | None = None) -> None:
        """Set a worker state value."""
        with using(conn, self.write) as c:
            _runs.set_state(c, key, value)
