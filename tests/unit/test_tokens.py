"""API tokens: stored hashed, scoped to tenants, revocable; the worker's cache; the CLI."""

from __future__ import annotations

import sqlite3

import pytest
from typer.testing import CliRunner

from core.errors import BotfilterError
from core.redact import one_line, redact
from core.tokens import ADMIN, Scope, TokenCache, TokenStore, hash_token


@pytest.fixture
def store(tmp_path) -> TokenStore:
    s = TokenStore(f"sqlite:///{tmp_path / 'metrics.db'}")
    yield s
    s.close()


def test_tokens_are_stored_hashed_and_scoped(store, tmp_path) -> None:
    token, info = store.create(["t2", "t1"], label="ingest")
    admin, admin_info = store.create([], admin=True)
    assert token.startswith("bf_") and len(token) == 46 and token != admin
    assert store.lookup(token) == Scope(admin=False, tenants=frozenset({"t1", "t2"}))
    assert store.lookup(admin) == ADMIN
    assert store.lookup("bf_" + "x" * 43) is None
    # Only the hash is in the database.
    raw = sqlite3.connect(tmp_path / "metrics.db").execute("SELECT * FROM api_tokens").fetchall()
    dump = repr(raw)
    assert token not in dump and admin not in dump and hash_token(token) in dump
    assert [i.token_id for i in store.list()] == [info.token_id, admin_info.token_id]
    assert store.list()[0].label == "ingest"


@pytest.mark.parametrize("label", ["line1\nline2", "ingest\x1b[31m", "tab\there"])
def test_a_label_is_one_line_of_text(store, label) -> None:
    """A newline in a label split its row of `tokens list` in two (and an escape sequence could
    colour or hide the rest of the terminal): refused, and no token is made."""
    with pytest.raises(BotfilterError) as refused:
        store.create(["t1"], label=label)
    assert str(refused.value) == "--label: one line of text, without control characters"
    assert store.list() == []


def test_revoked_tokens_stop_working_and_keep_the_api_closed(store) -> None:
    token, info = store.create(["t1"])
    revoked = store.revoke(info.token_id)
    assert revoked.revoked_at is not None and store.lookup(token) is None
    assert store.revoke(info.token_id).revoked_at == revoked.revoked_at  # idempotent
    assert store.any_created()  # revoking the last token never opens the API
    with pytest.raises(BotfilterError, match="no token with id 'nope'"):
        store.revoke("nope")


@pytest.mark.parametrize(
    "tenants, admin, message",
    [
        ([], False, "either --admin or for one or more --tenant"),
        (["t1"], True, "either --admin or for one or more --tenant"),
        ([" t1"], False, "surrounding whitespace"),
        ([""], False, "the tenant id is empty"),
        (["t\n1"], False, "control characters"),
    ],
)
def test_create_refuses_unusable_scopes(store, tenants, admin, message) -> None:
    with pytest.raises(BotfilterError, match=message):
        store.create(tenants, admin=admin)


@pytest.mark.parametrize("tenant", ["L" * 300, "acme\u200b", "日本", "t 1"])
def test_every_tenant_settings_accept_can_get_a_token(store, tenant, tmp_path) -> None:
    """`settings set --create` took a 300-character tenant id that `tokens create` refused
    (it allowed 200 printable characters), so that tenant could be reached by admin tokens
    only. Both now take the data contract's rule."""
    from core.settings import Settings
    from jobs.exclusions import set_exclusion
    from jobs.store import Store

    set_exclusion(Store.open(Settings(home=tmp_path / "home")), tenant, "email", True)
    _, info = store.create([tenant])
    assert info.scope.tenants == frozenset({tenant})


def test_cache_asks_the_store_once_per_ttl_and_sees_revocation(store) -> None:
    token, info = store.create(["t1"])
    now = [0.0]
    cache = TokenCache(store, ttl_s=5, clock=lambda: now[0])
    assert cache.required()
    for _ in range(100):
        assert cache.scope(token) == Scope(False, frozenset({"t1"}))
    assert cache.queries == 2  # required() once, the token once
    store.revoke(info.token_id)
    now[0] = 4.9
    assert cache.scope(token) is not None  # still cached
    now[0] = 5.0
    assert cache.scope(token) is None
    # Unknown tokens are cached too, and the cache is bounded.
    small = TokenCache(store, max_entries=10, clock=lambda: now[0])
    for i in range(50):
        assert small.scope(f"random-{i}") is None
    assert len(small) == 10


def test_cache_is_open_without_tokens_and_closes_when_one_is_created(store) -> None:
    now = [0.0]
    cache = TokenCache(store, ttl_s=5, clock=lambda: now[0])
    assert not cache.required()
    store.create(["t1"])
    assert not cache.required()  # until the answer expires
    now[0] = 5.0
    assert cache.required()
    assert TokenCache(None, static="s3cret").required()
    assert TokenCache(None, static="s3cret").scope("s3cret") == ADMIN
    assert TokenCache(None).scope("s3cret") is None and not TokenCache(None).required()


def test_cli_creates_lists_and_revokes(settings, monkeypatch) -> None:
    from botfilter.cli import app

    monkeypatch.setenv("BOTFILTER_HOME", str(settings.home))
    runner = CliRunner()
    done = runner.invoke(app, ["tokens", "create", "--tenant", "t1", "--label", "ingest"])
    assert done.exit_code == 0, done.output
    token = done.stdout.strip().splitlines()[-1]
    assert token.startswith("bf_")
    listed = runner.invoke(app, ["tokens", "list"])
    assert listed.exit_code == 0 and token not in listed.stdout
    token_id, scope = listed.stdout.splitlines()[1].split()[:2]
    assert scope == "t1" and "ingest" in listed.stdout
    done = runner.invoke(app, ["tokens", "revoke", token_id])
    assert done.exit_code == 0 and "revoked" in done.stdout
    assert TokenStore.open(settings).lookup(token) is None


@pytest.mark.parametrize(
    "text, shown",
    [
        ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://user:p@ss@cache/0 down", "redis://user:***@cache/0 down"),
        ("redis://cache:6379/0?password=hunter2&db=1", "redis://cache:6379/0?password=***&db=1"),
        ("at http://mlflow/?token=abc; key=1", "at http://mlflow/?token=***; key=1"),
        ("postgresql://u:pw@db/x and redis://h", "postgresql://u:***@db/x and redis://h"),
        ("no secret here", "no secret here"),
        ("dsn: password: s3cret", "dsn: password: ***"),
        ("--out /etc/passwd: is a file", "--out /etc/passwd: is a file"),
        ("https://hooks.example/v1/token=abc/x", "https://hooks.example/v1/token=***"),
        (r"C:\vault\token: is a file", r"C:\vault\token: is a file"),
    ],
)
def test_redact_masks_url_passwords_and_secret_parameters(text, shown) -> None:
    assert redact(text) == shown


def test_one_line_flattens_and_bounds() -> None:
    assert one_line("a\n  b\tredis://:x@h", limit=300) == "a b redis://:***@h"
    assert len(one_line("x" * 1000, limit=50)) == 50
