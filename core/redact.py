"""Secrets out of text that people or API clients see.

Connection URLs end up in error messages (a Redis URL with ``?password=``, a database URL with
``user:password@``, a tracking URI with a token in its query). :func:`redact` masks the
password of every ``scheme://user:password@`` and the value of every secret-looking query
parameter in a piece of text; :func:`one_line` also flattens it to a single line for a status
body or a CLI error.
"""

from __future__ import annotations

import re

# ``scheme://[user]:password@host``: the password runs to the last ``@`` followed by a host (a
# password may hold ``@``, and SQLAlchemy and MLflow take ``/``, ``?`` and ``#`` in it too,
# which an audit found shown in clear). A path holding ``@`` after a port is masked as well:
# masking too much is the safe side.
_USERINFO = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:@/\s?#]*):(?P<pw>\S*)@(?=[^\s@/?#]*(?:[/?#\s]|$))"
)
# ``password=...``, ``token: ...`` and friends, in a query string, a DSN or keyword arguments,
# quoted or not (up to a separator, a blank or a closing quote). ``NAME:`` not as the last part
# of a path (``/etc/passwd: is a file`` lost the words after it); ``NAME=`` anywhere.
_SECRET_NAMES = (  # with any prefix: ``sslpassword``, ``db_password``, ``refresh_token``
    r"(?:[a-z_]*(?:password|passwd|pwd|secret|token|api[_-]?key)|auth|authorization)"
)
_SECRET_PARAM = re.compile(
    rf"(?i)(?P<key>(?:\b{_SECRET_NAMES}\s*=|(?<![/\\])\b{_SECRET_NAMES}\s*:)\s*['\"]?)"
    r"[^\s&#;,'\")]+"
)


def redact(text: str) -> str:
    """``text`` with URL passwords and secret query parameters replaced by ``***``."""
    text = _USERINFO.sub(lambda m: f"{m['head']}:***@", text)
    return _SECRET_PARAM.sub(lambda m: f"{m['key']}***", text)


def one_line(text: object, limit: int = 300) -> str:
    """:func:`redact` of ``str(text)`` on one line, at most ``limit`` characters."""
    flat = " ".join(redact(str(text)).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
