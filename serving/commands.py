"""CLI: ``botfilter serve``."""

from __future__ import annotations

import typer


def serve(
    port: int = typer.Option(3000, min=1, max=65535, help="Port to listen on (1-65535)."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    workers: int = typer.Option(1, min=1, help="Worker processes (share state via Redis)."),
    access_log: bool = typer.Option(True, help="Log every request (BentoML access log)."),
) -> None:
    """Start the online scoring API (BentoML) with the @champion model."""
    # Imported on use: pydantic-settings and the server (BentoML, mlflow) would load into
    # `botfilter --help`, which imports this module (serving.server: several seconds).
    from core.settings import get_settings
    from serving.server import serve as run

    run(get_settings(), host=host, port=port, workers=workers, access_log=access_log)


tokens_app = typer.Typer(
    help="API tokens: each acts for some tenants, or for all (--admin). Stored hashed.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain click help: see botfilter/cli.py
)


@tokens_app.command("create")
def tokens_create(
    tenant: list[str] = typer.Option(
        [], "--tenant", help="A tenant the token may act for (repeat for several)."
    ),
    admin: bool = typer.Option(False, help="Every tenant, and /reload."),
    label: str = typer.Option(None, help="A note to recognise the token by in `tokens list`."),
) -> None:
    """Create a token and print it once: only its SHA-256 is kept."""
    # Imported on use: pydantic-settings and core.tokens (SQLAlchemy) add 0.45 s to `--help`.
    from core.settings import get_settings
    from core.tokens import TokenStore

    store = TokenStore.open(get_settings())
    try:
        token, info = store.create(tenant, admin=admin, label=label)
    finally:
        store.close()
    scope = "admin (every tenant)" if admin else ", ".join(sorted(info.scope.tenants))
    typer.echo(f"token {info.token_id} for {scope}; shown once, keep it now:", err=True)
    typer.echo(token)


@tokens_app.command("list")
def tokens_list() -> None:
    """Every token created: id, scope, label, created and revoked times (never the token)."""
    # Imported on use: pydantic-settings and core.tokens (SQLAlchemy) add 0.45 s to `--help`.
    from core.settings import get_settings
    from core.tokens import TokenStore

    store = TokenStore.open(get_settings())
    try:
        infos = store.list()
    finally:
        store.close()
    if not infos:
        typer.echo("no tokens: the API is open unless BOTFILTER_API_TOKEN is set")
        return
    typer.echo(
        "id            scope                      created (UTC)        revoked (UTC)        label"
    )
    for i in infos:
        scope = "admin" if i.scope.admin else ",".join(sorted(i.scope.tenants))
        revoked = i.revoked_at.strftime("%Y-%m-%d %H:%M:%S") if i.revoked_at else "-"
        created = i.created_at.strftime("%Y-%m-%d %H:%M:%S")
        typer.echo(f"{i.token_id:<13} {scope:<26} {created:<20} {revoked:<20} {i.label or ''}")


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: str = typer.Argument(..., help="The token's id, from `botfilter tokens list`."),
) -> None:
    """Revoke a token: API workers refuse it within a few seconds (their cache's lifetime)."""
    # Imported on use: pydantic-settings and core.tokens (SQLAlchemy) add 0.45 s to `--help`.
    from core.settings import get_settings
    from core.tokens import CACHE_TTL_S, TokenStore

    store = TokenStore.open(get_settings())
    try:
        info = store.revoke(token_id)
    finally:
        store.close()
    typer.echo(
        f"token {info.token_id} revoked at {info.revoked_at:%Y-%m-%d %H:%M:%S} UTC; "
        f"API workers refuse it within {CACHE_TTL_S:g} s"
    )
