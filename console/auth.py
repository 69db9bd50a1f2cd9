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


class Sessions:
    """The console's live sessions, by a random id kept in the signed cookie.

    A signed cookie alone stays valid until it expires: logout must end the session here, or a
    copy of the cookie taken before logout kept opening and changing the tenant's pages (an
    audit). Held by this process: restarting the console ends every session (people log in
    again), the safe side of the trade."""

    def __init__(self, hours: float, most: int = 100_000) -> None:
        self._seconds = hours * 3600
        self._most = most
        self._until: dict[str, float] = {}  # in order of start: the oldest go first when full
        self._lock = threading.Lock()

    def start(self) -> str:
        """A new live session's id."""
        sid = secrets.token_urlsafe(24)
        now = time.monotonic()
        with self._lock:
            for old in [s for s, until in self._until.items() if until <= now]:
                del self._until[old]
            while len(self._until) >= self._most:
                del self._until[next(iter(self._until))]
            self._until[sid] = now + self._seconds
        return sid

    def live(self, sid: object) -> bool:
        """Whether ``sid`` names a session that was started here and has not ended."""
        with self._lock:
            until = self._until.get(sid) if isinstance(sid, str) else None
        return until is not None and until > time.monotonic()

    def end(self, sid: object) -> None:
        """End the session (logout)."""
        if isinstance(sid, str):
            with self._lock:
                self._until.pop(sid, None)
