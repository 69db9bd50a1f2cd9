"""Text that can become a key or a stored value (the standard library only)."""

from __future__ import annotations

import re

_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")


def check_tenant_id(tenant: str) -> str:
    """``tenant`` when it is an id the data contract can hold (not blank, no control
    characters: a newline or NUL would be stored as a key no data can ever match), typed without
    surrounding whitespace (the contract trims it from the data's ids, so ``" t1 "`` would name
    a tenant no data has), else :class:`core.errors.BotfilterError`. The one rule for every place
    a tenant id is typed in (settings, tokens), so a tenant the data can hold can always be
    given settings and tokens."""
    from core.errors import BotfilterError

    if not tenant or not tenant.strip():
        raise BotfilterError("the tenant id is empty")
    if tenant != tenant.strip():
        raise BotfilterError(f"tenant id {tenant!r}: remove the surrounding whitespace")
    if has_controls(tenant):
        raise BotfilterError(f"tenant id {tenant!r}: control characters are not allowed")
    return tenant


def has_controls(text: str, allow: str = "") -> bool:
    """Whether ``text`` holds a control character (U+0000-U+001F, U+007F) other than those in
    ``allow``: a NUL or newline in an id is a key no data can match, and PostgreSQL refuses
    NUL in text."""
    if allow:
        text = text.translate({ord(ch): None for ch in allow})
    return _CONTROLS.search(text) is not None
