"""CLI: ``botfilter console``."""

from __future__ import annotations

from pathlib import Path

import typer


def console(
    port: int = typer.Option(8080, help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind (use TLS in front otherwise)."),
    data: Path = typer.Option(
        None,
        help="The worker's data directory: lets the drill-down show each bot interaction's "
        "network and user agent.",
    ),
) -> None:
    """Start the tenant console and management API (OpenAPI at /api/docs) over the metrics store."""
    import uvicorn

    from botfilter.errors import BotfilterError
    from botfilter.settings import get_settings
    from console.app import create_app

    if data is not None and not data.is_dir():
        raise BotfilterError(f"--data {data}: not a directory")
    settings = get_settings()
    app = create_app(settings, data_dir=data)
    typer.echo(f"botfilter console on http://{host}:{port}/ (log in with a token)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
