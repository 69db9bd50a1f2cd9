"""What the API refuses in an event before the data contract reads it: its size and identifiers
that are not text.

An event larger than :data:`BYTES_PER_EVENT` would be scored and kept in the window state like
any other: a 30 MB user agent took 4 s to score, while every other tenant's request to the
worker waited (it scores one request at a time). An identifier that is an object, an array or a
boolean is not one: the contract would read it as its JSON text (``{"a": 1}``, ``true``).
Numbers stay accepted, read as their digits, as the contract reads ids written as numbers in
CSV and JSON Lines files. Both are answered in the event's place, like the contract's reasons.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from itertools import chain, repeat
from typing import Any

import orjson

from contract.columns import identifier_reason, json_default, json_text
from serving.models import event_columns

# The byte budget of one event, its JSON re-encoded without spaces (UTF-8): generous for a
# user agent and a URL.
BYTES_PER_EVENT = 4096
REASON_TOO_LARGE = f"event exceeds {BYTES_PER_EVENT} bytes"

# Every identifier an event carries: the text columns of the event model named ``*_id``.
ID_FIELDS: tuple[str, ...] = tuple(
    c.name for c in event_columns() if c.kind == "str" and c.name.endswith("_id")
)
# What an identifier may be: text, a number (read as its digits), or missing. ``bool`` is its
# own type here, not ``int``: booleans are refused.
_ID_TYPES = frozenset({str, int, float, type(None)})


def json_kind(value: Any) -> str:
    """What a decoded JSON value is, in words (``an object``, ``a boolean``...)."""
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, int | float) else "null"
    )


def id_problem(value: Any) -> str | None:
    """What ``value`` is when it cannot be an identifier (``an object``...); None when it can."""
    return None if type(value) in _ID_TYPES else json_kind(value)


def screen(items: Sequence[Any]) -> dict[int, str]:
    """By position, why each event object is refused before the contract reads it: larger than
    :data:`BYTES_PER_EVENT`, or an identifier that is not text. Items that are not objects are
    left to the contract."""
    reasons: dict[int, str] = {}
    sizes = _sizes(items)
    if max(sizes, default=0) > BYTES_PER_EVENT:
        reasons = {
            pos: REASON_TOO_LARGE
            for pos, n in enumerate(sizes)
            if n > BYTES_PER_EVENT and isinstance(items[pos], dict)
        }
    if _readable(items, ID_FIELDS):
        return reasons
    for name in ID_FIELDS:
        for pos, kind in bad_ids(items, name):
            if pos not in reasons:
                reasons[pos] = identifier_reason(name, kind)  # the contract's words
    return reasons


def bad_ids(items: Sequence[Any], name: str) -> Iterator[tuple[int, str]]:
    """Position and :func:`id_problem` of each object among ``items`` whose ``name`` cannot be
    an identifier."""
    if _readable(items, (name,)):
        return
    for pos, item in enumerate(items):
        if isinstance(item, dict):
            kind = id_problem(item.get(name))
            if kind is not None:
                yield pos, kind


def _readable(items: Sequence[Any], names: Sequence[str]) -> bool:
    """Whether every item is an object whose ``names`` can all be identifiers: the usual
    request, told by one pass in C (0.4 ms per 1,000 events; a pass per name took 1.5)."""
    values = chain.from_iterable(map(dict.get, items, repeat(name)) for name in names)
    try:
        return _ID_TYPES.issuperset(map(type, values))
    except TypeError:  # an item that is not an object
        return False


def _sizes(items: Sequence[Any]) -> list[int]:
    """Each item's size in bytes, as :func:`size` measures it."""
    try:
        return list(map(len, map(orjson.dumps, items)))
    except orjson.JSONEncodeError:
        return [size(item) for item in items]


def size(value: Any) -> int:
    """Bytes of ``value`` as JSON without spaces, in UTF-8. What orjson cannot write (integers
    beyond 64 bits, lone surrogates, nesting past 255 levels) is measured as the standard
    library writes it."""
    try:
        return len(orjson.dumps(value))
    except orjson.JSONEncodeError:
        pass
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=json_default)
    except RecursionError:  # deeper than the interpreter's limit (the API reads 1,024 levels)
        text = json_text(value)
    return len(text.encode("utf-8", "surrogatepass"))
