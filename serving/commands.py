"""CLI: ``botfilter serve``."""

from __future__ import annotations

import typer


def serve(
    port: int = typer.Option(3000, help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    workers: int = typer.Option(1, min=1, help="Worker processes (share state via Redis)."),
    access_log: bool = typer.Option(True, help="Log every request (BentoML access log)."),
) -> None:
    """Start the online scoring API (BentoML) with the @champion model."""
    from botfilter.settings import get_settings
    from serving.server import serve as run

    run(get_settings(), host=host, port=port, workers=workers, access_log=access_log)
