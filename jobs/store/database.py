"""The store's database: the URL, the SQLAlchemy engine and its two kinds of transaction.

SQLite runs in WAL mode and a write transaction starts with ``BEGIN IMMEDIATE``, so writers queue
up front; a read is one snapshot (a SQLite read transaction, PostgreSQL REPEATABLE READ). The
concern modules (:mod:`jobs.store.queue`, :mod:`jobs.store.scores`, ...) take the connection of
one of these transactions and never open their own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError

from core.database import normalise_url
from core.errors import BotfilterError

Transaction = Callable[[], contextlib.AbstractContextManager[Connection]]


class Database:
    """A SQLite file or a PostgreSQL database (optionally one schema of it)."""

    def __init__(self, url: str, *, schema: str | None = None):
        self.url = normalise_url(url)
        try:
            parsed = make_url(self.url)
        except ArgumentError as exc:
            raise BotfilterError(f"metrics store URL {url!r} is not a database URL") from exc
        self.dialect = parsed.get_backend_name()
        self.schema = schema
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

    @property
    def safe_url(self) -> str:
        """The URL without a password, for messages."""
        return make_url(self.url).render_as_string(hide_password=True)

    def close(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()

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
def using(conn: Connection | None, transaction: Transaction) -> Iterator[Connection]:
    """The caller's connection, or a fresh ``transaction`` (``Database.read`` or ``.write``)."""
    if conn is not None:
        yield conn
    else:
        with transaction() as c:
            yield c
