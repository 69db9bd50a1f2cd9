"""Vectorised column parsers: a raw Arrow column of any type -> a typed Arrow column + problems.

Each parser takes what a reader produced (strings from CSV, JSON types from JSON Lines, whatever
a Parquet writer chose, or a pandas column turned into Arrow) and returns a :class:`Parsed`: the
typed values (null where the value is missing or broken), which rows had no value at all, and which
rows had a value that could not be used, each with its reason. The rules about *which* columns get
*which* parser, and the rules across columns, live in :mod:`contract.validate`.

Everything here works on whole columns with Arrow compute kernels or numpy; the only per-value
Python code runs on rare leftovers (timestamps Arrow cannot cast, IP strings the IPv4 regular
expression does not accept, floats that are not int64 integers), and then once per distinct
value. A value is judged alike whatever the other values of its column (and so whatever type
Arrow gives the column): e.g. ``7.0`` is ``"7"`` as text in a float column and among strings.

At the end, the same parsers for one JSON value at a time in plain Python (``*_value``), for the
online API's small batches; ``tests/unit/test_contract_items.py`` holds both to the same answers.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Timestamps outside [2000, 2100) are refused: they are almost always epoch seconds passed where
# milliseconds are expected (1970) or sentinel values, and they also overflow datetime64[ns].
TS_MIN = datetime(2000, 1, 1, tzinfo=UTC)
TS_MAX = datetime(2100, 1, 1, tzinfo=UTC)
_NS = 1_000_000_000
TS_MIN_NS = int(TS_MIN.timestamp()) * _NS
TS_MAX_NS = int(TS_MAX.timestamp()) * _NS
_MS_MIN, _MS_MAX = TS_MIN_NS // 1_000_000, TS_MAX_NS // 1_000_000

UTC_NS = pa.timestamp("ns", tz="UTC")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)  # naive timestamps are UTC

_TS_SHAPE = (
    r"^\d{4}-\d{2}-\d{2}"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(\.\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?$"  # group 1: fraction
)
# In text of that shape, an offset is there when a sign or Z follows the date (10 characters).
_DATE_LENGTH = 10
_OFFSET_MARK = "[Z+-]"
# integer text; a ".0" tail is accepted because pandas writes integer columns with gaps as floats
_INT_TEXT = r"^[+-]?\d{1,19}(?:\.0*)?$"
_DIGITS = r"^[+-]?\d+(?:\.0*)?$"
# removed before Arrow casts text to integers: it refuses a "+" sign and a ".0" tail
_SIGN_AND_TAIL = r"^\+|\.0*$"
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_LONGEST_INT = 19  # digits of int64's bounds: such text may not fit and is checked in Python
_LONGEST_MS = 16  # characters of epoch-milliseconds text that can be in range (sign included)
_CAST_CHUNK = 65_536

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
IPV4_RE = rf"^{_IPV4}$"
# Fewer addresses than this that are not IPv4 go straight to Python's ipaddress.
_IPV6_REGEX_FROM = 256
_H = r"[0-9a-fA-F]{1,4}"
# A sound subset of RFC 4291 text forms (every match is a valid address); anything it rejects is
# given to Python's ipaddress, so the accepted set is exactly what ipaddress accepts.
IPV6_RE = (
    "^(?:"
    rf"(?:{_H}:){{7}}{_H}"
    rf"|(?:{_H}:){{1,7}}:"
    rf"|(?:{_H}:){{1,6}}:{_H}"
    rf"|(?:{_H}:){{1,5}}(?::{_H}){{1,2}}"
    rf"|(?:{_H}:){{1,4}}(?::{_H}){{1,3}}"
    rf"|(?:{_H}:){{1,3}}(?::{_H}){{1,4}}"
    rf"|(?:{_H}:){{1,2}}(?::{_H}){{1,5}}"
    rf"|{_H}:(?::{_H}){{1,6}}"
    rf"|:(?:(?::{_H}){{1,7}}|:)"
    rf"|::(?:[fF]{{4}}(?::0{{1,4}})?:)?{_IPV4}"
    rf"|(?:{_H}:){{6}}{_IPV4}"
    rf"|(?:{_H}:){{1,5}}:{_IPV4}"
    ")$"
)

_TRUE = ("true", "t", "yes", "y", "1", "1.0")
_FALSE = ("false", "f", "no", "n", "0", "0.0")


class UnsupportedType(ValueError):
    """A column's storage type cannot hold values of its kind (e.g. a struct for a timestamp)."""


@dataclass
class Parsed:
    """A parsed column: typed ``values`` and boolean masks saying what was wrong where.

    ``missing`` marks rows without a value (null, or a blank string). ``problems`` lists
    ``(mask, reason)`` for rows whose value was present but unusable; ``reason`` is a string, or
    an object array holding a per-row reason at the masked positions.
    """

    values: pa.Array | pa.ChunkedArray
    missing: np.ndarray
    problems: list[tuple[np.ndarray, str | np.ndarray]] = field(default_factory=list)

    def add(self, mask: np.ndarray, reason: str | np.ndarray) -> None:
        """Record a problem when at least one row has it."""
        if mask.any():
            self.problems.append((mask, reason))


# --------------------------------------------------------------------------- helpers


def to_numpy_bool(arr: pa.Array | pa.ChunkedArray, null: bool = False) -> np.ndarray:
    """A boolean Arrow column as a numpy bool array, nulls replaced by ``null``."""
    if arr.null_count:  # (fill_null costs a call even when there is nothing to fill)
        arr = pc.fill_null(arr, null)
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=bool)


def plain(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """``arr`` with dictionary values as plain values (as it is otherwise)."""
    return arr.cast(arr.type.value_type) if pa.types.is_dictionary(arr.type) else arr


def decoded(table: pa.Table, keep: Collection[str] = ()) -> pa.Table:
    """``table`` with its dictionary columns, except those named in ``keep``, as plain values."""
    for i, column in enumerate(table.schema):
        if pa.types.is_dictionary(column.type) and column.name not in keep:
            value_type = column.type.value_type
            table = table.set_column(i, column.with_type(value_type), plain(table.column(i)))
    return table


def contiguous(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous array that starts at offset 0.

    pyarrow 23's ``if_else`` corrupts the offsets of a *sliced* string array (Parquet chunks are
    slices), so every array that may reach it goes through here first.
    """
    if isinstance(arr, pa.ChunkedArray):
        if arr.num_chunks == 0:
            return pa.array([], arr.type)
        arr = arr.chunk(0) if arr.num_chunks == 1 else arr.combine_chunks()
    if arr.offset != 0:
        arr = pa.concat_arrays([arr])
    return arr


def null_where(arr: pa.Array | pa.ChunkedArray, mask: np.ndarray | pa.Array) -> pa.Array:
    """``arr`` with nulls where ``mask`` is true."""
    arr = contiguous(arr)
    if isinstance(mask, np.ndarray):
        if not mask.any():
            return arr
        mask = pa.array(mask)
    return pc.if_else(contiguous(mask), pa.scalar(None, arr.type), arr)


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _decode_dictionary(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    if pa.types.is_dictionary(arr.type):
        return arr.cast(arr.type.value_type)
    return arr


def _float_to_int(arr: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """Integral floats -> int64; returns (ints with nulls, mask of values that are not integers
    within int64)."""
    values = contiguous(arr).to_numpy(zero_copy_only=False).astype(float)
    null = np.isnan(values)
    finite = np.isfinite(values)
    integral = finite & (np.floor(np.where(finite, values, 0)) == np.where(finite, values, 0))
    inside = np.where(integral, values, 0)
    fits = integral & (inside >= -(2.0**63)) & (inside < 2.0**63)
    bad = ~null & ~fits
    ints = np.where(fits, values, 0).astype(np.int64)
    return pa.array(ints, mask=~fits), bad


def _float_text(value: float) -> str:
    """A float as text: an integral one as its digits (``7.0`` -> ``"7"``), others as Python
    writes them. One rule for a float column and for a float among other types."""
    if value.is_integer():
        return str(int(value))
    return str(value)


def value_text(value: Any) -> str | None:
    """Any value as the text a column mixing types holds (ints as digits, booleans as
    true/false, nested values as JSON); None for a missing value."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return json_text(value)


# What an identifier may not be (PRODUCT.md: "Identifiers are strings"; a number is read as its
# digits): written as JSON text, ``{"a": 1}`` or ``true`` would become an id.
_NOT_IDS = {dict: "an object", list: "an array", tuple: "an array", bool: "a boolean"}


def id_problem(value: Any) -> str | None:
    """What ``value`` is when it cannot be an identifier (``an object``, ``an array``, ``a
    boolean``); None when it can (text, a number, missing)."""
    kind = _NOT_IDS.get(type(value))
    if kind is None and isinstance(value, np.bool_):
        return "a boolean"
    return kind


def identifier_reason(name: str, kind: str) -> str:
    """The quarantine reason for identifier ``name`` given as ``kind`` (the online API's words)."""
    return f"invalid identifier: {name} must be a string, not {kind}"


def json_text(value: Any) -> str:
    """``json.dumps`` of a parsed value, whatever its depth: a value nested past the
    interpreter's recursion limit (the API and JSON Lines accept 1,024 levels) is written
    without recursion, the same text (it failed a whole request with a 500, a whole run)."""
    try:
        return json.dumps(value, ensure_ascii=False, default=json_default)
    except RecursionError:
        return _deep_json(value)


class _Literal(str):
    """Text :func:`_deep_json` writes as it is (brackets, separators, keys)."""


def _deep_json(value: Any) -> str:
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Literal):
            out.append(item)
            continue
        if isinstance(item, dict):
            pairs = [(json.dumps(str(k), ensure_ascii=False) + ": ", v) for k, v in item.items()]
            opening, closing = "{", "}"
        elif isinstance(item, list | tuple):
            pairs = [("", v) for v in item]
            opening, closing = "[", "]"
        else:
            out.append(json.dumps(item, ensure_ascii=False, default=json_default))
            continue
        stack.append(_Literal(closing))
        for i in range(len(pairs) - 1, -1, -1):  # pushed last to first: popped in order
            stack.append(pairs[i][1])
            stack.append(_Literal(pairs[i][0]))
            if i:
                stack.append(_Literal(", "))
        stack.append(_Literal(opening))
    return "".join(out)


def json_default(value: Any) -> Any:
    """JSON for the non-JSON values a row can hold (timestamps, dates, decimals, bytes...)."""
    if isinstance(value, np.datetime64):
        import pandas as pd  # on use: reading Parquet parts never needs pandas

        return pd.Timestamp(value).isoformat()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def as_text(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Any primitive Arrow column as strings (ids written as numbers become their digits)."""
    arr = _decode_dictionary(arr)
    t = arr.type
    if pa.types.is_string(t):
        return arr
    if pa.types.is_large_string(t):
        return arr.cast(pa.string())  # one string type everywhere downstream
    if pa.types.is_null(t):
        return pa.nulls(len(arr), pa.string())
    if pa.types.is_floating(t):
        ints, bad = _float_to_int(arr)
        text = ints.cast(pa.string())
        if not bad.any():
            return text
        # the rare rest as Python writes it, so that text does not depend on the other values
        rest = np.flatnonzero(bad)
        floats = contiguous(arr).take(pa.array(rest)).to_pylist()
        shown = np.empty(len(text), dtype=object)
        shown[rest] = [_float_text(v) for v in floats]
        return pc.if_else(pa.array(bad), pa.array(shown, pa.string()), text)
    if pa.types.is_boolean(t):
        return pc.if_else(contiguous(arr), "true", "false")
    if pa.types.is_timestamp(t):
        return pc.strftime(arr, format="%Y-%m-%dT%H:%M:%S", locale="C")
    if pa.types.is_integer(t) or pa.types.is_date(t) or pa.types.is_decimal(t):
        return arr.cast(pa.string())
    raise UnsupportedType(str(t))


def _maybe_padded(arr: pa.Array) -> bool:
    """Whether any value of a string array may be blank or have whitespace at either end.

    Looks only at the first and last byte of each value, straight from the Arrow buffers: an
    empty value, a byte <= 0x20 (ASCII whitespace and controls) or a non-ASCII byte (Unicode
    spaces) at either end counts as "maybe". A clean column costs two gathers instead of a copy.
    """
    if len(arr) == 0:
        return False
    _, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int32, count=len(arr) + 1, offset=arr.offset * 4)
    starts, ends = offsets[:-1], offsets[1:]
    filled = ends > starts
    nulls = ~to_numpy_bool(pc.is_valid(arr)) if arr.null_count else False
    if not (filled | nulls).all():
        return True  # an empty (blank) value
    if data_buf is None or not filled.any():
        return False
    data = np.frombuffer(data_buf, dtype=np.uint8)
    first, last = data[starts[filled]], data[ends[filled] - 1]
    return bool(((first <= 0x20) | (first >= 0x80) | (last <= 0x20) | (last >= 0x80)).any())


def blank_to_null(
    text: pa.Array | pa.ChunkedArray, trim: bool = True
) -> pa.Array | pa.ChunkedArray:
    """Strings with surrounding whitespace removed (when ``trim``) and blanks made null."""
    chunks = text.chunks if isinstance(text, pa.ChunkedArray) else [text]
    if pa.types.is_string(text.type) and not any(_maybe_padded(c) for c in chunks):
        return text
    stripped = pc.utf8_trim_whitespace(text)
    result = stripped if trim else text
    blank = pc.equal(stripped, "")
    if not pc.any(blank).as_py():
        return result
    return null_where(result, blank)


def few_distinct(
    arr: pa.Array | pa.ChunkedArray, sample: int = 20_000, glance: int = 2_048
) -> bool:
    """Whether a column repeats a few values a lot (judged on its first ``sample`` rows).

    The first ``glance`` rows settle the clear cases (ids: nearly all distinct; a tenant or an
    event type: an eighth or fewer), and only the columns in between are judged on ``sample``
    rows: hashing 20,000 ids of every id column was 3% of scoring. The answer only chooses how
    values are converted or matched, never what they are.
    """
    if len(arr) < 1_000:  # too small to be worth a dictionary
        return False
    head = arr.slice(0, min(len(arr), glance))
    distinct = pc.count_distinct(head).as_py()
    if distinct <= len(head) // 8:
        return True
    if distinct >= len(head) - len(head) // 16 or len(arr) <= glance:
        return distinct <= len(head) // 2
    head = arr.slice(0, min(len(arr), sample))
    return pc.count_distinct(head).as_py() <= len(head) // 2


def matches(
    text: pa.Array | pa.ChunkedArray,
    pattern: str,
    ignore_case: bool = False,
    few: bool | None = None,
) -> np.ndarray:
    """Rows matching ``pattern``; a column of few distinct values (``few``: already known
    whether it has) is matched once per value."""
    if few_distinct(text) if few is None else few:
        encoded = pc.dictionary_encode(contiguous(text))
        hits = pc.match_substring_regex(encoded.dictionary, pattern, ignore_case=ignore_case)
        return to_numpy_bool(pc.take(hits, encoded.indices))
    return to_numpy_bool(pc.match_substring_regex(text, pattern, ignore_case=ignore_case))


def values_at(text: pa.Array, mask: np.ndarray, limit: int = 40) -> np.ndarray:
    """Object array with the (shortened) string values at ``mask``, for reasons naming a value."""
    out = np.empty(len(mask), dtype=object)
    picked = pc.utf8_slice_codeunits(text.filter(pa.array(mask)), 0, limit)
    out[mask] = picked.to_numpy(zero_copy_only=False)
    return out


# --------------------------------------------------------------------------- parsers


def parse_text(arr: pa.Array | pa.ChunkedArray, trim: bool = True) -> Parsed:
    """Free text or an identifier. Blank means missing."""
    text = blank_to_null(as_text(arr), trim=trim)
    return Parsed(text, to_numpy_bool(pc.is_null(text)))


def parse_choice(arr: pa.Array | pa.ChunkedArray, choices: tuple[str, ...], label: str) -> Parsed:
    """An enumeration, matched case-insensitively and returned in its canonical lower case.
    A value outside ``choices`` is ``LABEL: VALUE`` (e.g. ``unknown channel: fax``)."""
    parsed = parse_text(arr)
    lowered = pc.utf8_lower(parsed.values)
    known = to_numpy_bool(pc.is_in(lowered, value_set=pa.array(choices, pa.string())))
    bad = ~known & ~parsed.missing
    if bad.any():
        shown = values_at(parsed.values, bad)
        shown[bad] = [f"{label}: {value}" for value in shown[bad]]
        parsed.add(bad, shown)
        lowered = null_where(lowered, bad)
    parsed.values = contiguous(lowered)
    return parsed


def parse_ip(arr: pa.Array | pa.ChunkedArray) -> Parsed:
    """IPv4 or IPv6 text (compressed, full, IPv4-mapped), kept as given once validated."""
    parsed = parse_text(arr)
    text = parsed.values
    ok = matches(text, IPV4_RE) | parsed.missing
    if (~ok).sum() > _IPV6_REGEX_FROM:  # RE2 compiles the long IPv6 pattern on every call
        rest = np.flatnonzero(~ok)
        ok[rest[matches(text.take(pa.array(rest)), IPV6_RE)]] = True
    if not ok.all():
        rest = np.flatnonzero(~ok)
        leftovers = pc.unique(text.take(pa.array(rest))).to_pylist()
        valid = [v for v in leftovers if _python_ip(v)]
        if valid:
            ok[rest] = to_numpy_bool(
                pc.is_in(text.take(pa.array(rest)), value_set=pa.array(valid, pa.string()))
            )
    bad = ~ok
    if bad.any():
        parsed.add(bad, "invalid ip")
        parsed.values = null_where(text, bad)
    return parsed


def _python_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def parse_int(arr: pa.Array | pa.ChunkedArray, name: str) -> Parsed:
    """An integer: native ints, integral floats (ints with nulls often arrive as floats), or
    integer text (``"3"``, or ``"3.0"`` as pandas writes it). Anything else is
    ``invalid integer: NAME``."""
    arr = _decode_dictionary(arr)
    t = arr.type
    n = len(arr)
    bad = np.zeros(n, dtype=bool)
    if pa.types.is_integer(t):
        if pa.types.is_uint64(t):
            # compared as uint64: a plain 2**63 - 1 is an int64 scalar, and Arrow then casts
            # the column to int64, which fails on the very values looked for
            big = to_numpy_bool(pc.greater(arr, pa.scalar(2**63 - 1, pa.uint64())))
            bad |= big
            arr = null_where(arr, big)
        values = contiguous(arr).cast(pa.int64())
        missing = to_numpy_bool(pc.is_null(values)) & ~bad
    elif pa.types.is_floating(t):
        missing = to_numpy_bool(pc.is_nan(contiguous(arr)), null=True)
        values, bad = _float_to_int(arr)
    elif pa.types.is_null(t):
        values, missing = pa.nulls(n, pa.int64()), np.ones(n, dtype=bool)
    elif _is_text(t):
        text = blank_to_null(arr)
        missing = to_numpy_bool(pc.is_null(text))
        good = matches(text, _INT_TEXT)
        whole = _integer_text(null_where(text, ~good))
        lengths = pc.fill_null(pc.utf8_length(whole), 0).to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(lengths >= _LONGEST_INT):  # may not fit: the few checked alone
            good[i] = _INT_MIN <= int(whole[i].as_py()) <= _INT_MAX
        bad = ~good & ~missing
        values = null_where(whole, ~good).cast(pa.int64())
    elif pa.types.is_boolean(t):
        missing = to_numpy_bool(pc.is_null(arr))
        bad = ~missing
        values = pa.nulls(n, pa.int64())
    elif pa.types.is_decimal(t):  # warehouses export whole numbers as DECIMAL(38, 0)
        missing = to_numpy_bool(pc.is_null(arr))
        values, bad = _decimal_to_int(arr)
    else:
        raise UnsupportedType(str(t))
    parsed = Parsed(contiguous(values), missing)
    parsed.add(bad, f"invalid integer: {name}")
    return parsed


def _decimal_to_int(arr: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """Whole decimals -> int64; returns (ints with nulls, mask of values that are not integers
    within int64). Arrow casts the usual case at once; any value it refuses (a fraction, or
    past int64) sends the column value by value through Python."""
    try:
        return contiguous(arr).cast(pa.int64()), np.zeros(len(arr), dtype=bool)
    except pa.ArrowInvalid:
        pass
    ints: list[int | None] = []
    bad = np.zeros(len(arr), dtype=bool)
    for i, value in enumerate(arr.to_pylist()):
        whole = value is not None and value == value.to_integral_value()
        if whole and _INT_MIN <= int(value) <= _INT_MAX:
            ints.append(int(value))
        else:
            ints.append(None)
            bad[i] = value is not None
    return pa.array(ints, pa.int64()), bad


def _integer_text(text: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Text already matched as an integer (maybe with a ``+`` sign or a ``.0`` tail) as the
    digits Arrow casts."""
    return pc.replace_substring_regex(text, _SIGN_AND_TAIL, "")


def parse_bool(arr: pa.Array | pa.ChunkedArray, name: str) -> Parsed:
    """A boolean: native bools, 0/1, or true/false, t/f, yes/no, y/n, 1/0 in any case."""
    arr = _decode_dictionary(arr)
    t = arr.type
    n = len(arr)
    if pa.types.is_boolean(t):
        parsed = Parsed(contiguous(arr), to_numpy_bool(pc.is_null(arr)))
        return parsed
    if pa.types.is_null(t):
        return Parsed(pa.nulls(n, pa.bool_()), np.ones(n, dtype=bool))
    if pa.types.is_integer(t) or pa.types.is_floating(t) or _is_text(t):
        text = pc.utf8_lower(blank_to_null(as_text(arr)))
        missing = to_numpy_bool(pc.is_null(text))
        is_true = to_numpy_bool(pc.is_in(text, value_set=pa.array(_TRUE)))
        is_false = to_numpy_bool(pc.is_in(text, value_set=pa.array(_FALSE)))
        parsed = Parsed(pa.array(is_true, mask=~(is_true | is_false)), missing)
        parsed.add(~missing & ~is_true & ~is_false, f"invalid bool: {name}")
        return parsed
    raise UnsupportedType(str(t))


def parse_timestamp(arr: pa.Array | pa.ChunkedArray, name: str) -> Parsed:
    """A point in time as ``timestamp[ns, UTC]``.

    Accepted: Arrow timestamps (naive ones are UTC) and dates; integers, integral floats and
    digit strings as epoch milliseconds; ISO-8601 text ``YYYY-MM-DD[( |T)HH:MM[:SS[.fffffffff]]]``
    with an optional ``Z`` / ``±HH`` / ``±HHMM`` / ``±HH:MM`` offset (none means UTC), in any
    letter case. Problems: ``unparseable timestamp: NAME`` and, outside [2000, 2100),
    ``timestamp out of range: NAME``.
    """
    arr = _decode_dictionary(arr)
    t = arr.type
    n = len(arr)
    ns: np.ndarray = np.zeros(n, dtype=np.int64)
    ok: np.ndarray = np.zeros(n, dtype=bool)
    unparseable: np.ndarray = np.zeros(n, dtype=bool)
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        missing = to_numpy_bool(pc.is_null(arr))
        ns, ok, out_of_range = _native_ns(arr, missing)
    elif pa.types.is_integer(t) or pa.types.is_floating(t):
        huge = np.zeros(n, dtype=bool)
        if pa.types.is_floating(t):
            missing = to_numpy_bool(pc.is_nan(contiguous(arr)), null=True)
            ints, unparseable = _float_to_int(arr)
            # integral but beyond int64: out of range, as the same number written as digits
            floats = contiguous(arr).to_numpy(zero_copy_only=False).astype(float)
            huge = unparseable & np.isfinite(floats) & (np.abs(floats) >= 2.0**63)
            unparseable &= ~huge
        else:
            missing = to_numpy_bool(pc.is_null(arr))
            ints = contiguous(arr).cast(pa.int64(), safe=False)
        ms = np.asarray(pc.fill_null(ints, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
        usable = ~missing & ~unparseable & ~huge
        ok = usable & (ms >= _MS_MIN) & (ms < _MS_MAX)
        out_of_range = (usable & ~ok) | huge
        ns = np.where(ok, ms, 0) * 1_000_000
    elif pa.types.is_null(t):
        missing = np.ones(n, dtype=bool)
        out_of_range = np.zeros(n, dtype=bool)
    elif _is_text(t):
        missing, ns, ok, unparseable, out_of_range = _text_ns(arr)
    elif pa.types.is_boolean(t):
        missing = to_numpy_bool(pc.is_null(arr))
        unparseable = ~missing
        out_of_range = np.zeros(n, dtype=bool)
    else:
        raise UnsupportedType(str(t))
    values = pa.array(ns, type=pa.int64(), mask=~ok).cast(UTC_NS)
    parsed = Parsed(values, missing)
    parsed.add(unparseable, f"unparseable timestamp: {name}")
    parsed.add(out_of_range, f"timestamp out of range: {name}")
    return parsed


def _native_ns(
    arr: pa.Array | pa.ChunkedArray, missing: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arrow timestamps/dates -> (ns since epoch, ok, out_of_range) with a range check done in
    the column's own unit so that nothing overflows."""
    t = arr.type
    if pa.types.is_date(t):
        raw = contiguous(arr).cast(pa.date32()).cast(pa.int32()).cast(pa.int64())
        per_unit = 86_400 * _NS
    else:
        raw = contiguous(arr).cast(pa.int64())  # naive timestamps are UTC wall time: same integers
        per_unit = {"s": _NS, "ms": 1_000_000, "us": 1_000, "ns": 1}[t.unit]
    values = np.asarray(pc.fill_null(raw, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
    lo, hi = -(-TS_MIN_NS // per_unit), -(-TS_MAX_NS // per_unit)
    ok = ~missing & (values >= lo) & (values < hi)
    out_of_range = ~missing & ~ok
    return np.where(ok, values, 0) * per_unit, ok, out_of_range


def _text_ns(
    arr: pa.Array | pa.ChunkedArray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    text = pc.utf8_upper(blank_to_null(arr))
    n = len(text)
    missing = to_numpy_bool(pc.is_null(text))
    ns = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    out_of_range = np.zeros(n, dtype=bool)

    # Shaped text and digits exclude each other: digits are looked for among the rest only.
    few = few_distinct(text)
    shaped = matches(text, _TS_SHAPE, few=few)
    digits = np.zeros(n, dtype=bool)
    rest = np.flatnonzero(~missing & ~shaped)
    if len(rest):
        digits[rest] = matches(text.take(pa.array(rest)), _DIGITS)
    if digits.any():
        whole = _integer_text(null_where(text, ~digits))
        lengths = pc.fill_null(pc.utf8_length(whole), 0).to_numpy(zero_copy_only=False)
        short = digits & (lengths <= _LONGEST_MS)  # longer is out of range (and may overflow)
        picked = null_where(whole, ~short).cast(pa.int64())
        ms = np.asarray(pc.fill_null(picked, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
        in_range = short & (ms >= _MS_MIN) & (ms < _MS_MAX)
        ns[in_range] = ms[in_range] * 1_000_000
        ok |= in_range
        out_of_range |= digits & ~in_range

    unparseable = ~missing & ~digits & ~shaped
    if shaped.any():
        after_date = pc.utf8_slice_codeunits(text, _DATE_LENGTH)
        with_offset = shaped & matches(after_date, _OFFSET_MARK, few=few)
        for group, typ in ((with_offset, UTC_NS), (shaped & ~with_offset, pa.timestamp("ns"))):
            if not group.any():
                continue
            positions = np.flatnonzero(group)
            values, good, late = _cast_text(contiguous(text.take(pa.array(positions))), typ)
            ns[positions[good]] = values[good]
            ok[positions[good]] = True
            out_of_range[positions[late]] = True
            unparseable[positions[~good & ~late]] = True
    return missing, ns, ok, unparseable, out_of_range


def _cast_text(text: pa.Array, typ: pa.DataType) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cast well-shaped timestamp text chunk by chunk; a chunk Arrow refuses (a month 13, a year
    past 2262...) is parsed value by value. Returns (ns, ok, out_of_range)."""
    n = len(text)
    ns = np.zeros(n, dtype=np.int64)
    parsed = np.zeros(n, dtype=bool)
    for start in range(0, n, _CAST_CHUNK):
        piece = text.slice(start, _CAST_CHUNK)
        stop = start + len(piece)
        try:
            ns[start:stop] = piece.cast(typ).cast(pa.int64()).to_numpy(zero_copy_only=False)
            parsed[start:stop] = True
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            for i, value in enumerate(piece.to_pylist(), start=start):
                got = _python_ns(value)
                if got is not None:
                    ns[i], parsed[i] = got, True
    in_range = parsed & (ns >= TS_MIN_NS) & (ns < TS_MAX_NS)
    return ns, in_range, parsed & ~in_range


def _fullmatch(pattern: str) -> Any:
    """Python's matcher for an anchored pattern: ``fullmatch`` lets ``$`` match only at the very
    end, as RE2 does; ASCII ``\\d`` as RE2's."""
    return re.compile(pattern, re.ASCII).fullmatch


_TS_SHAPE_MATCH = _fullmatch(_TS_SHAPE)


def _python_ns(value: str) -> int | None:
    """One well-shaped timestamp text as ns since the epoch, as Arrow's cast reads it; also
    what the cast refuses but ``fromisoformat`` reads. None when it is not a real date and
    time; ``TS_MAX_NS`` when it is one outside the accepted range."""
    shape = _TS_SHAPE_MATCH(value)
    return None if shape is None else _shaped_ns(value, shape)


def _shaped_ns(value: str, shape: re.Match[str]) -> int | None:
    """:func:`_python_ns` of text matching ``_TS_SHAPE``."""
    start, end = shape.span(1)  # the fraction, dot included; (-1, -1) when there is none
    extra_ns = 0
    if end - start > 7:  # fromisoformat keeps 6 digits; Arrow keeps all 9
        extra_ns = int(value[start + 7 : end].ljust(3, "0"))
        value = value[: start + 7] + value[end:]
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        return None
    delta = stamp - (_EPOCH_NAIVE if stamp.tzinfo is None else _EPOCH)
    ns = ((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds) * 1_000
    ns += extra_ns
    if not TS_MIN_NS <= ns < TS_MAX_NS:
        return TS_MAX_NS  # parsed, but outside the accepted range
    return ns


# --------------------------------------------------------------------------- one value at a time
#
# The parsers above for a single value given as decoded JSON, in plain Python: for a handful of
# values Arrow's fixed cost per call dominates. Each returns what its column-wise parser gives
# for a column holding that value: the typed value (None when missing or broken) and the
# problem (None, or the reason). The regular expressions are the same patterns; anchored ones
# are used with ``fullmatch``, which, like RE2, lets ``$`` match only at the very end. Case
# mapping beyond ASCII goes to Arrow's own kernel (Python maps e.g. "İ" and "ß" differently).


_INT_TEXT_MATCH = _fullmatch(_INT_TEXT)
_DIGITS_MATCH = _fullmatch(_DIGITS)
_IPV4_MATCH = _fullmatch(IPV4_RE)
_IPV6_MATCH = _fullmatch(IPV6_RE)
_SIGN_AND_TAIL_RE = re.compile(_SIGN_AND_TAIL, re.ASCII)

Problem = str | None


def lower_text(text: str) -> str:
    """``utf8_lower`` of one string."""
    return text.lower() if text.isascii() else pc.utf8_lower(pa.scalar(text, pa.string())).as_py()


def upper_text(text: str) -> str:
    """``utf8_upper`` of one string."""
    return text.upper() if text.isascii() else pc.utf8_upper(pa.scalar(text, pa.string())).as_py()


def text_value(value: Any, trim: bool = True) -> str | None:
    """:func:`parse_text` of one value: its text (stripped when ``trim``), None when blank.

    ``str.strip`` removes exactly what ``utf8_trim_whitespace`` does (a unit test holds them
    to the same set of characters)."""
    text = value if type(value) is str else value_text(value)
    if text is None:
        return None
    stripped = text.strip()
    if not stripped:
        return None
    return stripped if trim else text


def choice_value(value: Any, choices: tuple[str, ...], label: str) -> tuple[str | None, Problem]:
    """:func:`parse_choice` of one value."""
    text = text_value(value)
    if text is None:
        return None, None
    lowered = lower_text(text)
    if lowered in choices:
        return lowered, None
    return None, f"{label}: {text[:40]}"  # values_at's 40 code points


def ip_value(value: Any) -> tuple[str | None, Problem]:
    """:func:`parse_ip` of one value."""
    text = text_value(value)
    if text is None or _IPV4_MATCH(text) or _IPV6_MATCH(text) or _python_ip(text):
        return text, None
    return None, "invalid ip"


def int_value(value: Any, name: str) -> tuple[int | None, Problem]:
    """:func:`parse_int` of one value."""
    kind = type(value)
    if kind is int:
        if _INT_MIN <= value <= _INT_MAX:
            return value, None
        return None, f"invalid integer: {name}"
    if value is None or (kind is float and value != value):
        return None, None
    if kind is float:
        if value.is_integer() and -(2.0**63) <= value < 2.0**63:
            return int(value), None
        return None, f"invalid integer: {name}"
    if kind is bool:
        return None, f"invalid integer: {name}"
    text = text_value(value)
    if text is None:
        return None, None
    if _INT_TEXT_MATCH(text):
        number = int(_SIGN_AND_TAIL_RE.sub("", text))
        if _INT_MIN <= number <= _INT_MAX:
            return number, None
    return None, f"invalid integer: {name}"


def bool_value(value: Any, name: str) -> tuple[bool | None, Problem]:
    """:func:`parse_bool` of one value."""
    if value is True or value is False:
        return value, None
    text = text_value(value)
    if text is None:
        return None, None
    lowered = lower_text(text)
    if lowered in _TRUE:
        return True, None
    if lowered in _FALSE:
        return False, None
    return None, f"invalid bool: {name}"


def _ms_value(ms: int, name: str) -> tuple[int | None, Problem]:
    if _MS_MIN <= ms < _MS_MAX:
        return ms * 1_000_000, None
    return None, f"timestamp out of range: {name}"


def timestamp_value(value: Any, name: str) -> tuple[int | None, Problem]:
    """:func:`parse_timestamp` of one value, as ns since the epoch (UTC)."""
    kind = type(value)
    if kind is int:
        return _ms_value(value, name)
    if value is None or (kind is float and value != value):
        return None, None
    if kind is float:
        if not value.is_integer():
            return None, f"unparseable timestamp: {name}"
        if abs(value) >= 2.0**63:
            return None, f"timestamp out of range: {name}"
        return _ms_value(int(value), name)
    if kind is bool:
        return None, f"unparseable timestamp: {name}"
    text = text_value(value)
    if text is None:
        return None, None
    text = upper_text(text)
    shape = _TS_SHAPE_MATCH(text)  # shaped text and digits exclude each other
    if shape is not None:
        ns = _shaped_ns(text, shape)
        if ns is None:
            return None, f"unparseable timestamp: {name}"
        if ns < TS_MAX_NS:  # _shaped_ns gives TS_MAX_NS for anything out of range
            return ns, None
        return None, f"timestamp out of range: {name}"
    if _DIGITS_MATCH(text):
        whole = _SIGN_AND_TAIL_RE.sub("", text)
        if len(whole) <= _LONGEST_MS:
            return _ms_value(int(whole), name)
        return None, f"timestamp out of range: {name}"
    return None, f"unparseable timestamp: {name}"
