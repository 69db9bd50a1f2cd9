"""Secrets out of text that people or API clients see.

Connection URLs end up in error messages (a Redis URL with ``?password=``, a database URL with
``user:password@``, a tracking URI with a token in its query). :func:`redact` masks the
password of every ``scheme://user:password@`` and the value of every secret-looking query
parameter in a piece of text; :func:`one_line` also flattens it to a single line for a status
body or a CLI error.
"""

from __future__ import annotations

import re

# ``scheme://[user]:password@``: the password runs to the authority's last ``@`` (a password
# may itself hold ``@``), never past the end of the authority.
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:@/\s?#]*):(?P<pw>[^/\s?#]*)@")
# ``password=...``, ``token: ...`` and friends, in a query string, a DSN or keyword arguments,
# quoted or not (up to a separator, a blank or a closing quote). ``NAME:`` not as the last part
# of a path (``/etc/passwd: is a file`` lost the words after it); ``NAME=`` anywhere.
_SECRET_NAMES = (
    r"(?:password|passwd|pwd|secret|client_secret|token|access[_-]?token|api[_-]?key|auth|"
    r"authorization)"
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
