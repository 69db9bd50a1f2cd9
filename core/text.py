"""Text that can become a key or a stored value (the standard library only)."""

from __future__ import annotations

import re

_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")


def has_controls(text: str, allow: str = "") -> bool:
    """Whether ``text`` holds a control character (U+0000-U+001F, U+007F) other than those in
    ``allow``: a NUL or newline in an id is a key no data can match, and PostgreSQL refuses
    NUL in text."""
    if allow:
        text = text.translate({ord(ch): None for ch in allow})
    return _CONTROLS.search(text) is not None
