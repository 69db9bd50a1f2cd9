"""User-facing errors, and the one place that turns any failure into one line on stderr.

The CLI (the front door, ``botfilter.cli.main``) prints every exception through :func:`one_line_error`:
one line, never a traceback (``BOTFILTER_DEBUG=1`` shows it), passwords and tokens masked.
"""

from __future__ import annotations

from core.redact import redact


class BotfilterError(Exception):
    """A problem the user can fix (bad file, missing column, no champion model...)."""


_LONGEST = 300  # characters of an unexpected error's message shown


def one_line_error(exc: BaseException) -> str:
    """What the user reads about ``exc``: one line, secrets masked.

    A :class:`BotfilterError` is shown whole. Anything else is an internal failure: its type
    and the first line of its message (libraries such as SQLAlchemy put the statement and its
    parameters on the following lines), shortened."""
    text = str(exc)
    if isinstance(exc, BotfilterError):
        return redact(" ".join(text.split()))
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    first = redact(first)
    if len(first) > _LONGEST:
        first = first[: _LONGEST - 1] + "…"
    name = type(exc).__name__
    detail = f"{name}: {first}" if first else name
    return f"internal error ({detail}); BOTFILTER_DEBUG=1 shows the traceback"
