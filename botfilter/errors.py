"""User-facing errors, and the one place that turns any failure into one line on stderr.

The CLI (:func:`botfilter.cli.main`) prints every exception through :func:`one_line_error`:
one line, never a traceback (``BOTFILTER_DEBUG=1`` shows it), passwords and tokens masked.
"""

from __future__ import annotations

import re


class BotfilterError(Exception):
    """A problem the user can fix (bad file, missing column, no champion model...)."""


# user:password@ in a URL (postgresql://u:pw@h, redis://:pw@h)
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)[^@\s/]*@")
# password=... in a query string, a DSN or keyword arguments
_KEY_SECRET = re.compile(
    r"(?i)(?P<head>\b(?:password|passwd|pwd|token|secret|api[_-]?key|access[_-]?token)"
    r"\s*[=:]\s*['\"]?)[^\s&;,'\")]+"
)
MASK = "***"


def mask_secrets(text: str) -> str:
    """``text`` with the passwords and tokens of URLs and ``key=value`` pairs replaced by ***."""
    text = _URL_PASSWORD.sub(rf"\g<head>{MASK}@", text)
    return _KEY_SECRET.sub(rf"\g<head>{MASK}", text)


_LONGEST = 300  # characters of an unexpected error's message shown


def one_line_error(exc: BaseException) -> str:
    """What the user reads about ``exc``: one line, secrets masked.

    A :class:`BotfilterError` is shown whole. Anything else is an internal failure: its type
    and the first line of its message (libraries such as SQLAlchemy put the statement and its
    parameters on the following lines), shortened."""
    text = str(exc)
    if isinstance(exc, BotfilterError):
        return mask_secrets(" ".join(text.split()))
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    first = mask_secrets(first)
    if len(first) > _LONGEST:
        first = first[: _LONGEST - 1] + "…"
    name = type(exc).__name__
    detail = f"{name}: {first}" if first else name
    return f"internal error ({detail}); BOTFILTER_DEBUG=1 shows the traceback"
