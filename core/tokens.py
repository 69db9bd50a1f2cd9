"""API tokens scoped to tenants: created, listed and revoked by ``botfilter tokens``.

A token is ``bf_`` and 43 characters of ``secrets.token_urlsafe(32)`` (256 random bits). Only
its SHA-256 is stored, in the ``api_tokens`` table of the metrics store database (SQLite under
the data home, or PostgreSQL with ``BOTFILTER_DATABASE_URL``); the token itself is shown once,
at creation. Each token carries a scope: ``admin`` (every tenant, and ``/reload``) or a set of
tenant ids. Revoking keeps the row (with ``revoked_at``), so the table never empties by
revocation: once a token has been created, the API asks for one.

:func:`TokenStore.lookup` is the reusable question "what may this token do?"
(token -> :class:`Scope` or None); :class:`TokenCache` answers it in an API worker without a
database query per request (cached per token hash for a few seconds, so a revocation takes
effect within that time).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from core.database import normalise_url
from core.errors import BotfilterError
from core.redact import one_line
from core.text import check_tenant_id, has_controls

PREFIX = "bf_"
TABLE = "api_tokens"
CACHE_TTL_S = 5.0  # how long a worker trusts an answer: the longest a revoked token still works
CACHE_MAX = 10_000  # distinct token hashes a worker remembers (random tokens cannot grow it)

metadata = MetaData()
api_tokens = Table(
    TABLE,
    metadata,
    Column("token_id", String(16), primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("admin", Boolean, nullable=False),
    Column("tenants", Text, nullable=False),  # tenant ids, one per line (empty for admin)
    Column("label", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)


@dataclass(frozen=True)
class Scope:
    """What a token may do: every tenant (``admin``) or the listed ones."""

    admin: bool
    tenants: frozenset[str] = frozenset()

    def allows(self, tenant: str) -> bool:
        """Whether requests may name ``tenant``."""
        return self.admin or tenant in self.tenants

    def outside(self, tenants: set[str]) -> list[str]:
        """The tenants of ``tenants`` this scope does not cover, sorted."""
        return [] if self.admin else sorted(tenants - self.tenants)


ADMIN = Scope(admin=True)


@dataclass(frozen=True)
class TokenInfo:
    """A stored token, without the token."""

    token_id: str
    scope: Scope
    label: str | None
    created_at: datetime
    revoked_at: datetime | None


def hash_token(token: str) -> str:
    """The stored form of a token: SHA-256, hex (the token has 256 random bits: no salt
    or slow hash is needed against guessing)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class TokenStore:
    """The ``api_tokens`` table in the metrics store database."""

    def __init__(self, url: str, *, schema: str | None = None) -> None:
        self.url = normalise_url(url)
        try:
            parsed = make_url(self.url)
        except ArgumentError as exc:
            raise BotfilterError(
                f"token store URL {one_line(url)!r} is not a database URL"
            ) from exc
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(self.url, connect_args={"timeout": 30})
        elif backend == "postgresql":
            args = {"options": f"-csearch_path={schema}", "connect_timeout": 5} if schema else {}
            self.engine = create_engine(self.url, pool_pre_ping=True, connect_args=args)
        else:
            raise BotfilterError("the token store must be sqlite:/// or postgresql://")
        for attempt in range(3):
            try:
                metadata.create_all(self.engine)
                break
            except SQLAlchemyError as exc:
                # Workers starting together may race to create the table: look again.
                if attempt == 2:
                    raise BotfilterError(f"cannot open the token store: {one_line(exc)}") from exc
                time.sleep(0.2)

    @classmethod
    def open(cls, settings: Any) -> TokenStore:
        """The table in the database of ``settings.metrics_db_url``."""
        if settings.database_url is None:
            settings.ensure_home()
        return cls(settings.metrics_db_url)

    def create(
        self, tenants: list[str], *, admin: bool = False, label: str | None = None
    ) -> tuple[str, TokenInfo]:
        """A new token (shown to the caller once) and its stored record."""
        if admin == bool(tenants):
            raise BotfilterError("a token is either --admin or for one or more --tenant")
        clean = sorted({check_tenant_id(t) for t in tenants})
        if label is not None and has_controls(label):  # a newline split `tokens list`'s row
            raise BotfilterError("--label: one line of text, without control characters")
        token = PREFIX + secrets.token_urlsafe(32)
        info = TokenInfo(
            token_id=secrets.token_hex(6),
            scope=Scope(admin=admin, tenants=frozenset(clean)),
            label=label,
            created_at=datetime.now(UTC),
            revoked_at=None,
        )
        with self.engine.begin() as conn:
            conn.execute(
                insert(api_tokens).values(
                    token_id=info.token_id,
                    token_hash=hash_token(token),
                    admin=admin,
                    tenants="\n".join(clean),
                    label=label,
                    created_at=info.created_at,
                )
            )
        return token, info

    def list(self) -> list[TokenInfo]:
        """Every token ever created, oldest first (revoked ones included)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(api_tokens).order_by(api_tokens.c.created_at)).all()
        return [_info(r) for r in rows]

    def revoke(self, token_id: str) -> TokenInfo:
        """Mark a token revoked (workers stop accepting it within :data:`CACHE_TTL_S`)."""
        with self.engine.begin() as conn:
            row = conn.execute(select(api_tokens).where(api_tokens.c.token_id == token_id)).first()
            if row is None:
                raise BotfilterError(f"no token with id {token_id!r} (see `botfilter tokens list`)")
            if row.revoked_at is None:
                conn.execute(
                    update(api_tokens)
                    .where(api_tokens.c.token_id == token_id)
                    .values(revoked_at=datetime.now(UTC))
                )
            row = conn.execute(select(api_tokens).where(api_tokens.c.token_id == token_id)).one()
        return _info(row)

    def lookup(self, token: str) -> Scope | None:
        """The scope of a token, or None when it is unknown or revoked."""
        return self.lookup_hash(hash_token(token))

    def lookup_hash(self, token_hash: str) -> Scope | None:
        """:meth:`lookup` by the token's hash."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(api_tokens).where(
                    api_tokens.c.token_hash == token_hash, api_tokens.c.revoked_at.is_(None)
                )
            ).first()
        return None if row is None else _info(row).scope

    def any_created(self) -> bool:
        """Whether a token was ever created (then the API requires one)."""
        with self.engine.connect() as conn:
            return bool(conn.execute(select(func.count()).select_from(api_tokens)).scalar())

    def close(self) -> None:
        self.engine.dispose()


def _info(row: Any) -> TokenInfo:
    tenants = frozenset(t for t in row.tenants.split("\n") if t)
    created = row.created_at
    revoked = row.revoked_at
    # SQLite gives naive datetimes back: they were written in UTC.
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    if revoked is not None and revoked.tzinfo is None:
        revoked = revoked.replace(tzinfo=UTC)
    return TokenInfo(row.token_id, Scope(bool(row.admin), tenants), row.label, created, revoked)


class TokenCache:
    """Token -> scope in an API worker, without a database query per request.

    Answers (known, unknown and revoked alike) are kept per token hash for ``ttl_s``; at most
    ``max_entries`` hashes, the least recently used forgotten first, so callers sending random
    tokens cannot grow a worker's memory. ``static`` is the ``BOTFILTER_API_TOKEN`` admin token,
    checked without the database. Whether the API requires a token at all (``required``) is
    re-read with the same period.
    """

    def __init__(
        self,
        store: TokenStore | None,
        static: str | None = None,
        ttl_s: float = CACHE_TTL_S,
        max_entries: int = CACHE_MAX,
        clock: Any = time.monotonic,
    ) -> None:
        self.store = store
        self._static = hash_token(static) if static else None
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[float, Scope | None]] = OrderedDict()
        self._required = False
        self._required_at: float | None = None
        self.queries = 0  # database lookups made (tests)

    def required(self) -> bool:
        """Whether requests must carry a token: ``BOTFILTER_API_TOKEN`` is set, or a token was
        ever created in the store (re-read every ``ttl_s`` until then; once true, always)."""
        if self._static is not None or self._required:
            return True
        if self.store is None:
            return False
        now = self._clock()
        if self._required_at is not None and now - self._required_at < self.ttl_s:
            return False
        self.queries += 1
        self._required = self.store.any_created()
        self._required_at = now
        return self._required

    def cached(self, token: str) -> tuple[bool, Scope | None]:
        """(found, scope) from the cache alone: ``found`` False means ask :meth:`scope`."""
        h = hash_token(token)
        if self._static is not None and secrets.compare_digest(h, self._static):
            return True, ADMIN
        with self._lock:
            hit = self._cache.get(h)
            if hit is not None and self._clock() - hit[0] < self.ttl_s:
                self._cache.move_to_end(h)
                return True, hit[1]
        return False, None

    def scope(self, token: str) -> Scope | None:
        """The token's scope (None: unknown or revoked), from the cache or the store."""
        found, scope = self.cached(token)
        if found:
            return scope
        h = hash_token(token)
        self.queries += 1
        scope = self.store.lookup_hash(h) if self.store is not None else None
        with self._lock:
            self._cache[h] = (self._clock(), scope)
            self._cache.move_to_end(h)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        return scope

    def __len__(self) -> int:
        return len(self._cache)
