"""API tokens in the metrics store database, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from core.tokens import ADMIN, Scope, TokenCache, TokenStore, hash_token
from jobs.store import Store

pytestmark = pytest.mark.integration


def test_tokens_live_beside_the_metrics_tables(store_url: str) -> None:
    metrics = Store(store_url)  # the metrics store's own tables first, as in a deployment
    tokens = TokenStore(store_url)
    scoped, info = tokens.create(["t1", "t2"], label="ingest")
    admin, _ = tokens.create([], admin=True)
    again = TokenStore(store_url)  # another worker: the table exists, nothing is lost
    assert again.lookup(scoped) == Scope(False, frozenset({"t1", "t2"}))
    assert again.lookup(admin) == ADMIN
    with tokens.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT token_hash FROM api_tokens")).scalars().all()
    assert sorted(stored) == sorted([hash_token(scoped), hash_token(admin)])
    cache = TokenCache(again, ttl_s=0)
    assert cache.required() and cache.scope(scoped) is not None
    tokens.revoke(info.token_id)
    assert cache.scope(scoped) is None and again.lookup(scoped) is None
    assert [i.revoked_at is not None for i in again.list()] == [True, False]
    for s in (tokens, again):
        s.close()
    metrics.close()
