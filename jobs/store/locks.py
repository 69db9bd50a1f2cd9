"""Named exclusive locks that the OS or the server frees when a process dies.

PostgreSQL: a session-level ``pg_advisory_lock`` keyed by database, schema and name. SQLite: an
exclusive ``flock`` on one file per name in a folder next to the database file. Either way a
killed run never wedges a tenant.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from core.errors import BotfilterError


class LockTimeout(BotfilterError):
    """Another run held a lock for longer than the timeout."""


@contextlib.contextmanager
def hold(engine: Engine, path: Path | None, names: Iterable[str], limit: float) -> Iterator[None]:
    """Hold the locks ``names`` until the block ends: advisory locks when ``engine`` is
    PostgreSQL, else file locks next to the SQLite file ``path``.

    Taken in sorted order so two runs never deadlock. Raises :class:`LockTimeout` after ``limit``
    seconds (``0``: try once).
    """
    ordered = sorted(set(names))
    if engine.dialect.name == "postgresql":
        with _pg_locks(engine, ordered, limit):
            yield
    else:
        assert path is not None, "a SQLite store has a file"
        with _file_locks(path, ordered, limit):
            yield


@contextlib.contextmanager
def _pg_locks(engine: Engine, names: list[str], limit: float) -> Iterator[None]:
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        stmt = text(
            "SELECT pg_try_advisory_lock(hashtextextended("
            "current_database() || '/' || current_schema() || '/' || :k, 0))"
        )
        for name in names:

            def attempt(key: str = "botfilter:" + name) -> bool:
                return bool(conn.execute(stmt, {"k": key}).scalar())

            _wait(attempt, limit, name)
        yield
    finally:
        with contextlib.suppress(Exception):
            conn.execute(text("SELECT pg_advisory_unlock_all()"))
        conn.close()


@contextlib.contextmanager
def _file_locks(path: Path, names: list[str], limit: float) -> Iterator[None]:
    folder = path.with_name(path.name + ".locks")
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


def _wait(attempt: Callable[[], bool], limit: float, name: str) -> None:
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
