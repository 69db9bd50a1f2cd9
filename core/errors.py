"""User-facing errors, and the one place that turns any failure into one line on stderr.

The CLI (the front door, ``botfilter.cli.main``) prints every exception through :func:`one_line_error`:
one line, never a traceback (``BOTFILTER_DEBUG=1`` shows it), passwords and tokens masked.
"""

from __future__ import annotations

import errno

from core.redact import redact


class BotfilterError(Exception):
    """A problem the user can fix (bad file, missing column, no champion model...)."""


_LONGEST = 300  # characters of an unexpected error's message shown
# What the machine refuses mid-run (a disk filling up, a permission or a mount changing after the
# checks): the user's to fix, not a bug to report.
_MACHINE = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EMFILE}
)


def is_user_error(exc: BaseException) -> bool:
    """A :class:`BotfilterError`, or the machine refusing a file (see :data:`_MACHINE`)."""
    return isinstance(exc, BotfilterError) or (
        isinstance(exc, OSError) and exc.errno in _MACHINE and bool(exc.strerror)
    )


def one_line_error(exc: BaseException) -> str:
    """What the user reads about ``exc``: one line, secrets masked.

    A :class:`BotfilterError` is shown whole, and the machine refusing a file as the file and
    why (``/out/x.parquet: No space left on device``). Anything else is an internal failure: its type
    and the first line of its message (libraries such as SQLAlchemy put the statement and its
    parameters on the following lines), shortened."""
    text = str(exc)
    if isinstance(exc, BotfilterError):
        return redact(" ".join(text.split()))
    if isinstance(exc, OSError) and is_user_error(exc):
        where = f"{exc.filename}: " if exc.filename else ""
        return redact(" ".join(f"{where}{exc.strerror}".split()))
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    first = redact(first)
    if len(first) > _LONGEST:
        first = first[: _LONGEST - 1] + "…"
    name = type(exc).__name__
    detail = f"{name}: {first}" if first else name
    return f"internal error ({detail}); BOTFILTER_DEBUG=1 shows the traceback"
