"""Who is calling: a token (API: ``Authorization: Bearer``; pages: the signed session) -> scope.

Tokens are those of ``botfilter tokens`` (:mod:`core.tokens`) plus the optional
``BOTFILTER_API_TOKEN`` admin token. The session keeps the token's SHA-256, never the token.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from pathlib import Path

from sqlalchemy import select

from core.tokens import ADMIN, Scope, TokenStore, api_tokens, hash_token

CACHE_TTL_S = 5.0  # a revoked token stops working within this time


class Auth:
    """Token hash -> :class:`Scope`, cached for a few seconds per hash."""

    def __init__(self, tokens: TokenStore, static: str | None = None) -> None:
        self.tokens = tokens
        self._static = hash_token(static) if static else None
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Scope | None]] = {}

    def scope_of_token(self, token: str | None) -> Scope | None:
        """The scope of a token (None: missing, unknown or revoked)."""
        return self.scope_of_hash(hash_token(token)) if token else None

    def scope_of_hash(self, token_hash: str | None) -> Scope | None:
        """The scope of a token's hash (None: unknown or revoked)."""
        if not token_hash:
            return None
        if self._static is not None and secrets.compare_digest(token_hash, self._static):
            return ADMIN
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(token_hash)
            if hit is not None and now - hit[0] < CACHE_TTL_S:
                return hit[1]
        scope = self.tokens.lookup_hash(token_hash)
        with self._lock:
            if len(self._cache) > 10_000:  # random tokens must not grow memory without bound
                self._cache.clear()
            self._cache[token_hash] = (now, scope)
        return scope

    def who(self, token_hash: str | None) -> str:
        """The author recorded in the settings history: ``token:<id>`` (ids are listed by
        ``botfilter tokens list``), or ``env-admin`` for ``BOTFILTER_API_TOKEN``."""
        if (
            self._static is not None
            and token_hash
            and secrets.compare_digest(token_hash, self._static)
        ):
            return "env-admin"
        with self.tokens.engine.connect() as conn:
            token_id = conn.execute(
                select(api_tokens.c.token_id).where(api_tokens.c.token_hash == token_hash)
            ).scalar()
        return f"token:{token_id}" if token_id else "unknown"

    def author(self, token_hash: str | None) -> str:
        """The author of a list entry: the token's label with its id (``who`` without one)."""
        who = self.who(token_hash)
        if not who.startswith("token:"):
            return who
        with self.tokens.engine.connect() as conn:
            label = conn.execute(
                select(api_tokens.c.label).where(api_tokens.c.token_hash == token_hash)
            ).scalar()
        return f"{label} ({who})" if label else who


def session_secret(home: Path) -> str:
    """The session-signing secret kept under the data home (created once, owner-only)."""
    path = Path(home) / "console_secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    return path.read_text().strip()
