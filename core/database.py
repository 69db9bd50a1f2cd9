"""Database URLs, read the same way by the metrics store and the token store."""

from __future__ import annotations


def normalise_url(url: str) -> str:
    """Use the psycopg 3 driver for PostgreSQL URLs (``postgresql://`` or ``postgres://``)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url
