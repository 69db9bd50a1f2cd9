"""CLI: ``botfilter console``."""

from __future__ import annotations

import typer


def console(
    port: int = typer.Option(8080, min=1, max=65535, help="Port to listen on (1-65535)."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind (use TLS in front otherwise)."),
) -> None:
    """Start the tenant console and management API (OpenAPI at /api/docs) over the metrics store."""
    # Imported on use: uvicorn and the console app (FastAPI, pandas) add 2.7 s to `--help`.
    import uvicorn

    from console.app import create_app
    from core.listen import check_listen
    from core.settings import get_settings

    settings = get_settings()
    check_listen(host, port)  # before the banner: uvicorn's own lines, exit 3, otherwise
    app = create_app(settings)
    typer.echo(f"botfilter console on http://{host}:{port}/ (log in with a token)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
