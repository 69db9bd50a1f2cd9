"""Every rule of the data contract, checked on whole columns, with a quarantine for broken rows.

A broken row is never dropped silently and never fails the run: it goes to the quarantine with
``table``, ``row_number`` (0-based record of the input file), ``record`` (the original row as
JSON) and ``reason``. A row breaking several rules gets the first reason in this order: the
columns in schema order (for each: missing, then its value rules), then the rules across columns,
then the rules against the message. Reasons are short and stable; those naming a value show at
most 40 characters of it.

Normalisation (before the rules)
  - Text: surrounding whitespace is stripped (except from ``user_agent``, kept byte for byte);
    an empty or blank string is the same as a missing value (CSV cannot tell them apart, and the
    contract says "empty" for missing optional values such as ``delivered_at``).
  - Identifiers (text columns named ``*_id``) are text; numbers given for them become their
    digits (``7`` -> ``"7"``), surrounding whitespace is stripped as from any text
    (``" 0001 "`` -> ``"0001"``).
  - Enumerations (``channel``, ``type``, ``label``) match in any case and become lower case;
    ``http_method`` becomes upper case; ``recipient_domain`` lower case.
  - Timestamps become UTC: ISO-8601 with ``Z``/``±HH``/``±HHMM``/``±HH:MM`` offsets, ISO-8601 without
    an offset (= UTC), integer epoch milliseconds (numbers or digit strings), native timestamps.
  - Booleans: true/false, t/f, yes/no, y/n, 1/0, 1.0/0.0 (any case) or native booleans.
  - Integers: native, integral floats, integer text (``"3"``, or ``"3.0"`` as pandas writes an
    integer column with gaps); ``asn`` also as ``AS13335``. Epoch milliseconds alike.
  - ``ip`` is validated but kept as given (IPv4 dotted quad, IPv6 in any RFC 4291 text form,
    IPv4-mapped IPv6 included; the enrichment stage resolves it).

Rules and their reasons
  Every table
    - a required field missing or blank ................ ``missing required field: FIELD``
    - a timestamp that is not one ........................ ``unparseable timestamp: FIELD``
    - a timestamp before 2000 or from 2100 (usually epoch seconds given as milliseconds)
                                                         ``timestamp out of range: FIELD``
    - a non-integer integer field ........................ ``invalid integer: FIELD``
    - a non-boolean boolean field ........................ ``invalid bool: FIELD``
    - a control character (U+0000-U+001F, U+007F) inside a text field other than
      ``user_agent`` and ``url`` (identifiers become keys of the metrics store, and PostgreSQL
      cannot store a NUL) ................................ ``control character in FIELD``
    - rows the reader could not split into fields ........ ``wrong number of CSV fields``,
      ``unparseable JSON line``, ``JSON line is not an object``, ``invalid UTF-8 text``
    - an identifier given as an object, an array or a boolean (a JSON line, a pandas row; the
      reader sets the row aside, so this reason comes before any other; an identifier column
      stored as booleans, every value) ............. ``invalid identifier: FIELD must be a
      string, not an object`` (``an array``, ``a boolean``): the online API's words
  messages
    - ``channel`` not email/sms .......................... ``unknown channel: VALUE``
    - ``link_count`` < 0 ................................. ``negative link_count``
    - ``recipient_domain`` with ``@`` or whitespace (an address, not a domain)
                                                         ``invalid recipient_domain``
    - both ``campaign_id`` and ``automation_id`` ......... ``both campaign_id and automation_id set``
    - ``delivered_at`` before ``sent_at`` ................ ``delivered_at before sent_at``
    - a message is (``tenant_id``, ``message_id``): two tenants may use the same id.
      Such a pair repeated with different values in any schema column -> every row of it
                                                         ``conflicting duplicate message_id``;
      repeated with identical values -> kept once, the others counted as duplicates.
  events
    - ``type`` not open/click ............................ ``unknown type: VALUE``
    - ``ip`` neither IPv4 nor IPv6 ....................... ``invalid ip``
    - ``link_position`` < 0, or >= the message's ``link_count`` when known
                                                         ``link_position out of range``
    - ``http_method`` not an HTTP token (RFC 9110) ....... ``invalid http_method``
    - ``asn`` outside [0, 2^32) .......................... ``asn out of range``
    - ``label`` not bot/human ............................ ``invalid label: VALUE``
    - no kept message with its (``tenant_id``, ``message_id``): ``quarantined message`` when
      that message is in the quarantine, ``tenant mismatch with message`` when only another
      tenant has a message with that id, else ``unknown message``
    - an open of an SMS message .......................... ``open on sms message``
    - ``occurred_at`` before the message's ``sent_at`` ... ``event before message sent``
    - a repeated (``tenant_id``, ``event_id``) is a duplicate delivery of one event, which
      counts once: the first occurrence that passes every rule is kept, later ones with
      identical values are counted as duplicates (not quarantined), later ones with different
      values in any schema column -> ...................... ``conflicting duplicate event_id``.
      The same ``event_id`` in two tenants is two events.
  segments
    - a repeated (tenant_id, segment_id, contact_id) is kept once, the others are duplicates.
  settings
    - a ``tenant_id`` repeated with different values -> every row of it
      ``conflicting duplicate tenant_id`` (the tenant keeps the default: bots not excluded);
      repeated with identical values -> kept once, the others are duplicates.

Not rules (on purpose): an event before ``delivered_at`` (delivery receipts lag), events of
undelivered messages (the metrics leave them out), ``recipient_domain`` on SMS, unknown
``bot_kind`` values (the list is open).

Duplicates are looked for only among rows that pass every rule, so a broken copy is quarantined
and a good copy is kept. For every table ``read == kept + quarantined + duplicates``
(:class:`contract.counts.TableReport` raises otherwise).

Entry points: :func:`contract.load` (read a data directory, then :func:`validate_raw`),
:func:`validate_tables` (pandas frames by table name), :func:`validate_event_rows` (the
online API's batches: events with their message context; the same rule code, one row at a time
semantics) and :func:`validate_event_items` (the same for decoded JSON items, answered as
Python tuples; small batches value by value in Python). Clean tables keep the input row order
and every schema column (absent optional ones all null), then the extra input columns: text as
object (``str`` or ``None``), timestamps as ``datetime64[ns, UTC]``,
``link_count``/``link_position``/``asn`` as ``Int64``, booleans as ``boolean``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from itertools import compress
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from contract.columns import (
    UTC_NS,
    Parsed,
    UnsupportedType,
    bool_value,
    choice_value,
    contiguous,
    few_distinct,
    identifier_reason,
    int_value,
    ip_value,
    lower_text,
    matches,
    parse_bool,
    parse_choice,
    parse_int,
    parse_ip,
    parse_text,
    parse_timestamp,
    plain,
    text_value,
    timestamp_value,
    to_numpy_bool,
    upper_text,
)
from contract.counts import Report, TableReport
from contract.readers import (
    REASON_JSON_OBJECT,
    REASON_UTF8,
    RawTable,
    check_required_columns,
    column_from_values,
    empty_raw,
    identifier_problem,
    raw_from_pandas,
    records_json,
    unencodable,
    write_parquet,
)
from contract.schema import (
    EVENTS,
    MESSAGE_CONTEXT,
    MESSAGES,
    QUARANTINE_COLUMNS,
    REQUIRED_TABLES,
    SEGMENTS,
    SETTINGS,
    TABLES,
    Column,
    TableSchema,
    is_identifier,
)
from core.errors import BotfilterError

REASON_UNKNOWN_MESSAGE = "unknown message"
REASON_QUARANTINED_MESSAGE = "quarantined message"
REASON_TENANT_MISMATCH = "tenant mismatch with message"
REASON_OPEN_ON_SMS = "open on sms message"
REASON_BEFORE_SENT = "event before message sent"
REASON_POSITION = "link_position out of range"
REASON_BOTH_SOURCES = "both campaign_id and automation_id set"
REASON_DELIVERED_BEFORE_SENT = "delivered_at before sent_at"

_CHOICE_LABELS = {"channel": "unknown channel", "type": "unknown type", "label": "invalid label"}
_HTTP_TOKEN = r"^[!#$%&'*+.^_`|~0-9A-Z-]+$"
_MAX_ASN = 2**32 - 1


# --------------------------------------------------------------------------- verdicts


class _Verdicts:
    """Per row: does it still pass, and if not, the first reason it failed."""

    def __init__(self, n: int) -> None:
        self.ok = np.ones(n, dtype=bool)
        self.reason = np.empty(n, dtype=object)

    def flag(self, mask: np.ndarray, reason: str | np.ndarray) -> None:
        hit = mask & self.ok
        if hit.any():
            self.reason[hit] = reason if isinstance(reason, str) else reason[hit]
            self.ok[hit] = False


# --------------------------------------------------------------------------- column rules


@dataclass(frozen=True)
class _Rules:
    """What a column checks beyond its kind, read from :data:`_RULES` by the column-wise and the
    one-value validators alike. Patterns avoid ``\\d``/``\\s``/``\\w``, which RE2 and Python
    read differently beyond ASCII."""

    trim: bool = True  # text: strip surrounding whitespace
    ip: bool = False  # text: an IPv4 or IPv6 address
    case: str | None = None  # text: "lower" or "upper", before the patterns
    pattern: str | None = None  # text: must match this (anchored) pattern...
    forbidden: str | None = None  # text: ...and must not contain this one...
    reason: str = ""  # ...else this reason
    prefix: str | None = None  # integer given as text: a pattern removed first
    low: int | None = None  # integer: bounds, both included
    high: int | None = None
    out_of_range: str = ""
    # text: control characters refused (identifiers end up as keys in the metrics store, and
    # PostgreSQL cannot store a NUL in text; a newline in a tenant id breaks every listing)
    controls: bool = True


_CONTROLS = r"[\x00-\x1f\x7f]"

_RULES: dict[str, _Rules] = {
    "user_agent": _Rules(trim=False, controls=False),  # kept byte for byte
    "url": _Rules(controls=False),  # free text, never a key
    "ip": _Rules(ip=True),
    "http_method": _Rules(case="upper", pattern=_HTTP_TOKEN, reason="invalid http_method"),
    "recipient_domain": _Rules(
        case="lower", forbidden=r"[@\t\n\f\r ]", reason="invalid recipient_domain"
    ),
    "link_count": _Rules(low=0, out_of_range="negative link_count"),
    "link_position": _Rules(low=0, out_of_range=REASON_POSITION),
    # "AS13335" notation
    "asn": _Rules(
        prefix=r"^[\t\n\f\r ]*(?i:as)", low=0, high=_MAX_ASN, out_of_range="asn out of range"
    ),
}
_PLAIN = _Rules()
# Text columns that validate_raw_arrow takes as dictionaries (contract.parts reads a few-valued
# text column so): each distinct value is parsed once, tenants are coded from the dictionaries
# (_arrow_codes), and the clean table keeps the dictionary, which features.coded takes as codes
# without hashing the rows again. Not the ids of messages and events (nearly all distinct).
CODED: dict[str, tuple[str, ...]] = {
    "events": ("tenant_id", "type", "user_agent", "url", "http_method", "label", "bot_kind"),
    "messages": ("tenant_id", "channel", "campaign_id", "automation_id", "recipient_domain"),
}


def _may_hold_controls(arr: pa.Array | pa.ChunkedArray) -> bool:
    """Whether any byte of the text's data buffers is a control character (U+0000-U+001F,
    U+007F are single bytes in UTF-8 and never part of another character). One vectorised
    pass over the bytes, so that clean columns skip the regex; a buffer may hold bytes outside
    the array's slice, which only costs that regex."""
    for chunk in getattr(arr, "chunks", [arr]):
        if not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)):
            return True  # (not text: let the regex decide)
        data = chunk.buffers()[2]
        if data is None:
            continue
        raw = np.frombuffer(data, dtype=np.uint8)
        if ((raw < 0x20) | (raw == 0x7F)).any():
            return True
    return False


def _control_reason(name: str) -> str:
    return f"control character in {name}"


def _choice_label(name: str) -> str:
    return _CHOICE_LABELS.get(name, f"invalid {name}")


_ARROW_TYPES = {"str": pa.string(), "timestamp": UTC_NS, "int": pa.int64(), "bool": pa.bool_()}


def _parse_column(column: Column, arr: pa.Array | pa.ChunkedArray) -> Parsed:
    if pa.types.is_dictionary(arr.type):
        return _parse_distinct(column, arr)
    name = column.name
    rules = _RULES.get(name, _PLAIN)
    if pa.types.is_null(arr.type) and column.kind in _ARROW_TYPES:  # every parser: all missing
        return Parsed(pa.nulls(len(arr), _ARROW_TYPES[column.kind]), np.ones(len(arr), bool))
    if column.kind == "str":
        if pa.types.is_boolean(arr.type) and is_identifier(column):
            return _boolean_identifiers(column, arr)
        if column.choices:
            return parse_choice(arr, column.choices, _choice_label(name))
        if rules.ip:
            return parse_ip(arr)
        parsed = parse_text(arr, trim=rules.trim)
        if rules.controls and _may_hold_controls(parsed.values):
            parsed.add(matches(parsed.values, _CONTROLS), _control_reason(name))
        if rules.case:
            case = pc.utf8_upper if rules.case == "upper" else pc.utf8_lower
            parsed.values = case(parsed.values)
        if rules.pattern:
            parsed.add(~matches(parsed.values, rules.pattern) & ~parsed.missing, rules.reason)
        if rules.forbidden:
            parsed.add(matches(parsed.values, rules.forbidden), rules.reason)
        return parsed
    if column.kind == "timestamp":
        return parse_timestamp(arr, name)
    if column.kind == "bool":
        return parse_bool(arr, name)
    if column.kind == "int":
        arr = plain(arr)
        if rules.prefix and (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            arr = pc.replace_substring_regex(arr, rules.prefix, "")
        parsed = parse_int(arr, name)
        out = np.zeros(len(parsed.missing), dtype=bool)
        if rules.low is not None:
            out |= to_numpy_bool(pc.less(parsed.values, rules.low))
        if rules.high is not None:
            out |= to_numpy_bool(pc.greater(parsed.values, rules.high))
        parsed.add(out, rules.out_of_range)
        return parsed
    raise UnsupportedType(column.kind)


def _boolean_identifiers(column: Column, arr: pa.Array | pa.ChunkedArray) -> Parsed:
    """An identifier column stored as booleans (a Parquet file's, or JSON Lines whose every id
    is one): each value is refused, as a boolean among text ids is (PRODUCT.md: identifiers are
    strings; ``true`` is not an id)."""
    missing = to_numpy_bool(pc.is_null(arr))
    parsed = Parsed(pa.nulls(len(arr), pa.string()), missing)
    parsed.add(~missing, identifier_reason(column.name, "a boolean"))
    return parsed


def _parse_distinct(column: Column, arr: pa.Array | pa.ChunkedArray) -> Parsed:
    """:func:`_parse_column` of a dictionary column: each distinct value is parsed once and the
    rows keep their codes. The values come back as a dictionary of distinct parsed values
    (trimming can make two values one), a missing value as a null row."""
    arr = contiguous(arr)
    n = len(arr.dictionary)
    # every value once, and a last slot for the rows without one
    parsed = _parse_column(
        column, pa.concat_arrays([arr.dictionary, pa.nulls(1, arr.type.value_type)])
    )
    rows = pc.fill_null(arr.indices, n).to_numpy(zero_copy_only=False)
    distinct = pc.dictionary_encode(contiguous(parsed.values))
    codes = distinct.indices.take(pa.array(rows))  # null where the parsed value is
    values = pa.DictionaryArray.from_arrays(codes, distinct.dictionary)
    return Parsed(
        values,
        parsed.missing[rows],
        [
            (mask[rows], reason if isinstance(reason, str) else reason[rows])
            for mask, reason in parsed.problems
        ],
    )


def _value_parser(column: Column) -> Callable[[Any], tuple[Any, str | None]]:
    """:func:`_parse_column` for one value: ``value -> (typed value or None, problem)``."""
    name = column.name
    rules = _RULES.get(name, _PLAIN)
    if column.kind == "str":
        if column.choices:
            return partial(choice_value, choices=column.choices, label=_choice_label(name))
        if rules.ip:
            return ip_value
        return partial(
            _text_rules,
            rules=rules,
            case=_CASES.get(rules.case or ""),
            control=_control_reason(name),
        )
    if column.kind == "timestamp":
        return partial(timestamp_value, name=name)
    if column.kind == "bool":
        return partial(bool_value, name=name)
    if column.kind == "int":
        return partial(_int_rules, name=name, rules=rules)
    raise UnsupportedType(column.kind)


_CASES = {"lower": lower_text, "upper": upper_text}


@functools.cache
def _python_pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _text_rules(
    value: Any, rules: _Rules, case: Callable[[str], str] | None, control: str
) -> tuple[str | None, str | None]:
    text = text_value(value, trim=rules.trim)
    if text is None:
        return None, None
    if rules.controls and _python_pattern(_CONTROLS).search(text):
        return None, control
    if case is not None:
        text = case(text)
    if (rules.pattern and not _python_pattern(rules.pattern).fullmatch(text)) or (
        rules.forbidden and _python_pattern(rules.forbidden).search(text)
    ):
        return None, rules.reason
    return text, None


def _int_rules(value: Any, name: str, rules: _Rules) -> tuple[int | None, str | None]:
    if rules.prefix and type(value) is str:
        value = _python_pattern(rules.prefix).sub("", value)
    number, problem = int_value(value, name)
    if number is not None and (
        (rules.low is not None and number < rules.low)
        or (rules.high is not None and number > rules.high)
    ):
        return None, rules.out_of_range
    return number, problem


def _object_text(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Strings as an object array of Python str/None. Few distinct values share one object
    (saves memory); mostly distinct values skip the de-duplication hash (saves time)."""
    if len(arr) == 0:
        return np.empty(0, dtype=object)
    if few_distinct(arr):
        return arr.to_pandas(deduplicate_objects=True).to_numpy(dtype=object)
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=object)


_NULLABLE = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
_NAT = np.iinfo(np.int64).min


def _typed(column: Column, arr: pa.Array | pa.ChunkedArray) -> pd.Series:
    """A parsed Arrow column in its clean pandas dtype (str: object of str/None; timestamp:
    datetime64[ns, UTC]; int: Int64; bool: boolean)."""
    if column.kind == "str":
        return pd.Series(_object_text(arr), dtype=object, copy=False)
    if column.kind == "timestamp":
        ns = pc.fill_null(arr.cast(pa.int64()), _NAT).to_numpy(zero_copy_only=False)
        return pd.Series(ns.view("M8[ns]"), copy=False).dt.tz_localize("UTC")
    return arr.to_pandas(types_mapper=_NULLABLE.get)


def _parse_columns(
    schema: TableSchema,
    raw: RawTable,
    names: Iterable[str],
    verdicts: _Verdicts,
) -> dict[str, pa.Array]:
    """Parse the named schema columns (an absent optional one is all missing) and flag the
    problems; values are null where missing or broken."""
    data = raw.data
    wanted = set(names)
    values: dict[str, pa.Array] = {}
    for column in schema.columns:
        if column.name not in wanted:
            continue
        if column.name in data.column_names:
            arr = data[column.name]
        else:
            arr = pa.nulls(data.num_rows, pa.string())
        try:
            parsed = _parse_column(column, arr)
        except UnsupportedType as exc:
            raise BotfilterError(
                f"{raw.source}: column {column.name} is stored as {exc}, "
                f"which cannot hold {column.kind} values"
            ) from exc
        if column.required:
            verdicts.flag(parsed.missing, f"missing required field: {column.name}")
        for mask, reason in parsed.problems:
            verdicts.flag(mask, reason)
        values[column.name] = parsed.values
    return values


_SMALL = 50_000  # rows; below this one table conversion beats per-column tuning


def _typed_columns(schema: TableSchema, values: dict[str, pa.Array]) -> dict[str, pd.Series]:
    """Parsed columns in their clean pandas dtypes, for every row."""
    values = {name: plain(arr) for name, arr in values.items()}
    if values and len(next(iter(values.values()))) < _SMALL:
        # small batches (the online API): fixed per-call costs dominate, convert in one go
        frame = pa.table(values).to_pandas(types_mapper=_NULLABLE.get)
        return {name: frame[name] for name in values}
    return {name: _typed(schema.column(name), arr) for name, arr in values.items()}


def _check_columns(
    schema: TableSchema,
    raw: RawTable,
    names: Iterable[str],
    verdicts: _Verdicts,
) -> dict[str, pd.Series]:
    """:func:`_parse_columns`, then the typed columns for every row."""
    return _typed_columns(schema, _parse_columns(schema, raw, names, verdicts))


@dataclass(frozen=True)
class _Across:
    """A rule between two columns of a row: ``left`` and ``right`` both set ("both"),
    ``left < right`` ("lt"), ``left >= right`` ("ge") or ``(left, right) == pair`` ("pair");
    a missing value never breaks "lt", "ge" or "pair". Read by both validators."""

    reason: str
    test: str
    left: str
    right: str
    pair: tuple[str, str] = ("", "")


# Within a message's columns, then between an event (left) and its message (right), in order.
_MESSAGE_RULES = (
    _Across(REASON_BOTH_SOURCES, "both", "campaign_id", "automation_id"),
    _Across(REASON_DELIVERED_BEFORE_SENT, "lt", "delivered_at", "sent_at"),
)
_EVENT_MESSAGE_RULES = (
    _Across(REASON_OPEN_ON_SMS, "pair", "type", "channel", ("open", "sms")),
    _Across(REASON_BEFORE_SENT, "lt", "occurred_at", "sent_at"),
    _Across(REASON_POSITION, "ge", "link_position", "link_count"),
)


def _breaks(
    rule: _Across, left: pa.Array | pa.ChunkedArray, right: pa.Array | pa.ChunkedArray
) -> np.ndarray:
    """Rows breaking ``rule`` (parsed columns, aligned by position; null where missing)."""
    left, right = contiguous(left), contiguous(right)
    if rule.test == "both":
        hit = pc.and_(pc.is_valid(left), pc.is_valid(right))
    elif rule.test == "pair":
        hit = pc.and_(pc.equal(left, rule.pair[0]), pc.equal(right, rule.pair[1]))
    else:
        hit = (pc.less if rule.test == "lt" else pc.greater_equal)(left, right)
    return to_numpy_bool(hit)  # unknown (null) breaks nothing


def _breaks_one(rule: _Across, left: Any, right: Any) -> bool:
    """:func:`_breaks` for one row of Python values (None: missing)."""
    if rule.test == "both":
        return left is not None and right is not None
    if rule.test == "pair":
        return (left, right) == rule.pair
    if left is None or right is None:
        return False
    return left < right if rule.test == "lt" else left >= right


def _message_rules(message: dict[str, pa.Array], verdicts: _Verdicts) -> None:
    """Rules across the (parsed) columns of one message."""
    for rule in _MESSAGE_RULES:
        verdicts.flag(_breaks(rule, message[rule.left], message[rule.right]), rule.reason)


def _event_message_rules(
    event: dict[str, pa.Array], message: dict[str, pa.Array], verdicts: _Verdicts
) -> None:
    """Rules between an event and its message (parsed columns); ``message`` columns are aligned
    row by row with ``event`` (null where the message is unknown)."""
    for rule in _EVENT_MESSAGE_RULES:
        verdicts.flag(_breaks(rule, event[rule.left], message[rule.right]), rule.reason)


# --------------------------------------------------------------------------- duplicates


def _codes(*keys: pd.Series | np.ndarray) -> np.ndarray:
    """One integer code per distinct combination of ``keys`` (-1 where any key is null)."""
    first, _ = pd.factorize(np.asarray(keys[0], dtype=object))
    codes: np.ndarray = first.astype(np.int64)
    for key in keys[1:]:
        more, uniques = pd.factorize(np.asarray(key, dtype=object))
        combined = np.where((codes < 0) | (more < 0), -1, codes * (len(uniques) + 1) + more)
        codes, _ = pd.factorize(combined, use_na_sentinel=False)
        codes = np.where(combined < 0, -1, codes).astype(np.int64)
    return codes


def _arrow_codes(*columns: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """One integer code per distinct string across ``columns`` laid end to end (-1: null).

    Arrow hashes without holding the GIL, so this can run on another core while the main
    thread builds Python objects.
    """
    chunks = [c for col in columns for c in getattr(col, "chunks", [col]) if len(c)]
    if not chunks:
        return np.zeros(0, dtype=np.int64)
    if all(pa.types.is_dictionary(c.type) for c in chunks):
        # codes from the dictionaries: only their values are hashed (the parsed dictionaries
        # of _parse_distinct hold each value once and no null)
        encoded = pa.chunked_array(chunks).unify_dictionaries()
    else:
        encoded = pc.dictionary_encode(pa.chunked_array([plain(c) for c in chunks], pa.string()))
    parts = [pc.fill_null(c.indices, -1).to_numpy(zero_copy_only=False) for c in encoded.chunks]
    return np.concatenate(parts).astype(np.int64)


def _pair_codes(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Dense codes of the pairs of two code arrays (-1 where either is -1)."""
    if len(first) == 0:
        return first
    if first.max(initial=-1) <= 0:  # one value (or none) in the first: its codes are the pairs'
        return np.where(first < 0, -1, second)
    combined = np.where((first < 0) | (second < 0), -1, first * (int(second.max()) + 1) + second)
    codes, _ = pd.factorize(combined, use_na_sentinel=False)
    return np.where(combined < 0, -1, codes).astype(np.int64)


def _duplicates(
    codes: np.ndarray,
    verdicts: _Verdicts,
    identity: Callable[[np.ndarray], dict[str, np.ndarray]] | None = None,
    conflict_reason: str | None = None,
    keep_first: bool = False,
) -> np.ndarray:
    """Mask of the rows to drop as repeats of an earlier row with the same key code.

    Only rows still passing count. With ``identity`` (the typed columns at given rows), a key
    whose rows differ in any of those columns is a conflict: all its rows are flagged with
    ``conflict_reason`` instead; with ``keep_first``, only the rows that differ from the key's
    first row are (the first is kept, and its identical repeats are duplicates).
    """
    drop = np.zeros(len(verdicts.ok), dtype=bool)
    candidates = np.flatnonzero(verdicts.ok & (codes >= 0))
    if len(candidates) < 2:
        return drop
    keys = codes[candidates]
    counts = np.bincount(keys)
    if counts.max() <= 1:
        return drop
    repeated = counts[keys] > 1
    positions, keys = candidates[repeated], keys[repeated]
    if identity is not None:
        rows = pd.DataFrame(identity(positions))
        hashes = pd.util.hash_pandas_object(rows, index=False).to_numpy()
        if keep_first:
            conflict = hashes != pd.Series(hashes).groupby(keys).transform("first").to_numpy()
        else:
            conflict = pd.Series(hashes).groupby(keys).transform("nunique").to_numpy() > 1
        if conflict.any():
            mask = np.zeros_like(drop)
            mask[positions[conflict]] = True
            verdicts.flag(mask, conflict_reason or "conflicting duplicate")
            positions, keys = positions[~conflict], keys[~conflict]
    later = pd.Series(keys).duplicated(keep="first").to_numpy()
    drop[positions[later]] = True
    return drop


# --------------------------------------------------------------------------- clean frames


def _at(typed: dict[str, pd.Series]) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """The typed columns' values at given rows (the ``identity`` of :func:`_duplicates`)."""
    return lambda rows: {name: col.iloc[rows].to_numpy() for name, col in typed.items()}


def _typed_at(
    schema: TableSchema, values: dict[str, pa.Array]
) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """As :func:`_at`, typing only the rows asked for."""

    def at(rows: np.ndarray) -> dict[str, np.ndarray]:
        typed = _typed_columns(schema, _take(values, rows))
        return {name: col.to_numpy() for name, col in typed.items()}

    return at


def _take(values: dict[str, pa.Array], rows: np.ndarray) -> dict[str, pa.Array]:
    return {name: _aligned(arr, rows) for name, arr in values.items()}


def _clean_frame(
    typed: dict[str, pd.Series],
    raw: RawTable,
    keep: np.ndarray,
    rows: np.ndarray | None = None,
    only: bool = False,
) -> pd.DataFrame:
    """The kept rows: typed schema columns, then the extra input columns as read.

    With ``rows`` (kept rows, ascending), ``typed`` holds those rows only and so does the frame.
    ``only``: ``typed`` holds the columns the caller asked for, and the frame has no other.
    """
    out = dict(typed)
    for name in [] if only else raw.data.column_names:
        if name not in out:
            column = raw.data[name]
            out[name] = (column if rows is None else _aligned(column, rows)).to_pandas()
    if rows is None and not keep.all():
        # column by column: filtering a whole frame consolidates its blocks (a full copy)
        out = {name: pd.Series(col.array[keep], copy=False) for name, col in out.items()}
    return pd.DataFrame(out, copy=False)


def empty_table(name: str) -> pd.DataFrame:
    """A clean table without rows: every schema column with its clean dtype."""
    schema = TABLES[name]
    raw = empty_raw(name)
    typed = _check_columns(schema, raw, schema.names, _Verdicts(0))
    return _clean_frame(typed, raw, np.zeros(0, dtype=bool))


# --------------------------------------------------------------------------- results


@dataclass
class Validated:
    """The clean, typed tables of one data directory, the quarantine and the counts."""

    messages: pd.DataFrame
    events: pd.DataFrame
    segments: pd.DataFrame
    settings: pd.DataFrame
    quarantine: pd.DataFrame
    report: Report
    # Each clean event's row in ``messages`` (-1: none) when validation already knows it.
    event_messages: np.ndarray | None = None

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        """The clean tables by name."""
        return {name: getattr(self, name) for name in TABLES}

    def write(self, out_dir: Path) -> dict[str, Path]:
        """Write ``NAME.parquet`` for each clean table and ``quarantine.parquet``."""
        out_dir.mkdir(parents=True, exist_ok=True)
        written: dict[str, Path] = {}
        for name, frame in {**self.tables, "quarantine": self.quarantine}.items():
            path = out_dir / f"{name}.parquet"
            write_parquet(frame, path)
            written[name] = path
        return written


@dataclass
class _TableResult:
    clean: pd.DataFrame | pa.Table
    quarantine: pd.DataFrame
    report: TableReport
    kept: np.ndarray | None = None  # per raw row: is it in ``clean`` (None: a subset of those)


def _result(
    schema: TableSchema,
    raw: RawTable,
    typed: dict[str, pd.Series] | dict[str, pa.Array],
    verdicts: _Verdicts,
    drop: np.ndarray,
    rows: np.ndarray | None = None,
    only: bool = False,
) -> _TableResult:
    """The clean rows (only ``rows`` of them when given, and only ``typed``'s columns with
    ``only``: see :func:`_clean_frame`), the quarantine and the counts, which always count
    every row.

    ``typed`` as parsed Arrow arrays (every row): the clean rows are an Arrow table of the
    schema columns (:func:`validate_raw_arrow`)."""
    keep = verdicts.ok & ~drop
    clean: pd.DataFrame | pa.Table
    if all(isinstance(v, pa.Array | pa.ChunkedArray) for v in typed.values()) and typed:
        if rows is not None or keep.all():  # rows: typed holds those kept rows only
            clean = pa.table(dict(typed))
        else:
            kept = np.flatnonzero(keep)
            clean = pa.table({name: _aligned(arr, kept) for name, arr in typed.items()})
    else:
        clean = _clean_frame(typed, raw, keep, rows, only)
    bad = np.flatnonzero(~verdicts.ok)
    rejected = raw.rejected
    quarantine = pd.DataFrame(
        {
            "table": schema.name,
            "row_number": np.concatenate(
                [raw.row_number_array()[bad], np.asarray([r[0] for r in rejected], np.int64)]
            ),
            "record": records_json(raw, bad) + [r[1] for r in rejected],
            "reason": list(verdicts.reason[bad]) + [r[2] for r in rejected],
        },
        columns=list(QUARANTINE_COLUMNS),
    )
    if rejected:
        quarantine = quarantine.sort_values("row_number", kind="stable", ignore_index=True)
    report = TableReport(
        table=schema.name,
        source=raw.source,
        read=raw.rows_read,
        kept=int(keep.sum()),
        duplicates=int(drop.sum()),
        quarantined={
            str(k): int(v) for k, v in quarantine["reason"].value_counts(sort=False).items()
        },
    )
    return _TableResult(clean, quarantine, report, keep if rows is None else None)


def _aligned(values: pa.Array | pa.ChunkedArray, rows: np.ndarray) -> pa.Array:
    """``values`` at ``rows`` (-1: null)."""
    return contiguous(values).take(pa.array(rows, mask=rows < 0))


# --------------------------------------------------------------------------- tables


def _messages_and_events(
    raw_messages: RawTable,
    raw_events: RawTable,
    referenced_only: bool = False,
    arrow: bool = False,
    columns: Mapping[str, Collection[str]] | None = None,
) -> tuple[_TableResult, _TableResult, np.ndarray | None]:
    """Both tables at once: events are checked against the messages that are kept.

    Arrow work (parsing, hashing ids) releases the GIL, so it runs in worker threads beside the
    GIL-bound building of Python strings: events are parsed while message objects are built,
    and ids are hashed while event objects are built. With ``referenced_only`` the clean
    messages are those a clean event names (every message is still checked and counted), and
    the third result is each clean event's row among them (-1: none). With ``arrow`` the clean
    tables are Arrow tables of the parsed columns, and Python objects are built only for the
    rows that the duplicate checks compare. ``columns``: see :func:`validate_raw`.
    """
    m_only = _picked(MESSAGES, columns)
    e_only = _picked(EVENTS, columns)
    m_verdicts = _Verdicts(raw_messages.data.num_rows)
    e_verdicts = _Verdicts(raw_events.data.num_rows)
    with ThreadPoolExecutor(max_workers=2) as pool:
        m_values = _parse_columns(MESSAGES, raw_messages, MESSAGES.names, m_verdicts)
        e_parsing = pool.submit(_parse_columns, EVENTS, raw_events, EVENTS.names, e_verdicts)
        # Python objects for every message cost more than the rest of validating them; most
        # messages have no event, so a caller that only wants the events' context skips them.
        message = (
            None
            if referenced_only or arrow
            else _typed_columns(MESSAGES, _select(m_values, m_only))
        )
        e_values = e_parsing.result()
        # one code space for the ids of both tables: a message is (tenant_id, message_id)
        id_hashing = pool.submit(_arrow_codes, m_values["message_id"], e_values["message_id"])
        tenant_hashing = pool.submit(_arrow_codes, m_values["tenant_id"], e_values["tenant_id"])
        event_id_hashing = pool.submit(_arrow_codes, e_values["event_id"])
        event = None if arrow else _typed_columns(EVENTS, _select(e_values, e_only))
        ids = id_hashing.result()
        tenants = tenant_hashing.result()
        event_ids = event_id_hashing.result()
    _message_rules(m_values, m_verdicts)

    n_messages = raw_messages.data.num_rows
    codes = _pair_codes(tenants, ids)
    m_codes, e_codes = codes[:n_messages], codes[n_messages:]
    # the duplicate checks compare every column, also those the caller does not keep
    m_identity = _typed_at(MESSAGES, m_values) if message is None or m_only else _at(message)
    m_drop = _duplicates(m_codes, m_verdicts, m_identity, "conflicting duplicate message_id")
    kept = m_verdicts.ok & ~m_drop
    row_of_code = np.full(int(codes.max(initial=-1)) + 2, -1, dtype=np.int64)
    row_of_code[m_codes[kept]] = np.flatnonzero(kept)
    refused = np.zeros(len(row_of_code), dtype=bool)
    refused[m_codes[~kept & (m_codes >= 0)]] = True
    rows = row_of_code[e_codes]  # e_codes == -1 reads the spare last slot, which stays -1
    lost = (rows < 0) & (e_codes >= 0)
    e_verdicts.flag(lost & refused[e_codes], REASON_QUARANTINED_MESSAGE)
    # the message_id is kept in another tenant only: say so rather than "unknown"
    m_ids, e_ids = ids[:n_messages], ids[n_messages:]
    elsewhere = np.zeros(int(ids.max(initial=-1)) + 2, dtype=bool)
    elsewhere[m_ids[kept]] = True
    e_verdicts.flag(lost & elsewhere[e_ids], REASON_TENANT_MISMATCH)
    unknown = np.flatnonzero(lost & e_verdicts.ok)  # the rows the next flag names
    e_verdicts.flag(lost, REASON_UNKNOWN_MESSAGE)

    needed = dict.fromkeys(rule.right for rule in _EVENT_MESSAGE_RULES)
    context = {name: _aligned(m_values[name], rows) for name in needed}
    _event_message_rules(e_values, context, e_verdicts)
    # a duplicate delivery is a repeated (tenant_id, event_id); one with other values conflicts
    event_codes = _pair_codes(tenants[n_messages:], event_ids)
    e_identity = _typed_at(EVENTS, e_values) if event is None or e_only else _at(event)
    # PRODUCT.md: a repeated (tenant_id, event_id) is a duplicate delivery of the same event,
    # and counts once: the first delivery is kept even when a later one differs (which is
    # quarantined, never silently dropped).
    e_drop = _duplicates(
        event_codes, e_verdicts, e_identity, "conflicting duplicate event_id", keep_first=True
    )
    if arrow:
        events = _result(EVENTS, raw_events, e_values, e_verdicts, e_drop)
    else:
        assert event is not None
        events = _result(EVENTS, raw_events, event, e_verdicts, e_drop, only=e_only is not None)
    if len(unknown):
        events.report.unknown_messages = e_values["message_id"].take(unknown).to_pylist()
    if arrow and not referenced_only:
        return _result(MESSAGES, raw_messages, m_values, m_verdicts, m_drop), events, None
    if message is not None:
        messages = _result(
            MESSAGES, raw_messages, message, m_verdicts, m_drop, only=m_only is not None
        )
        return messages, events, None
    named = rows[e_verdicts.ok & ~e_drop]  # a kept event's message is kept (or -1)
    used = np.zeros(n_messages + 1, dtype=bool)  # the spare last slot takes the -1s
    used[named] = True
    wanted = np.flatnonzero(used[:n_messages])
    position = np.cumsum(used) - 1
    position[-1] = -1
    picked = _take(_select(m_values, m_only), wanted)
    message_values = picked if arrow else _typed_columns(MESSAGES, picked)
    messages = _result(
        MESSAGES, raw_messages, message_values, m_verdicts, m_drop, wanted, only=m_only is not None
    )
    return messages, events, position[named]


def _picked(
    schema: TableSchema, columns: Mapping[str, Collection[str]] | None
) -> tuple[str, ...] | None:
    """The schema's columns among those ``columns`` asks for (schema order); None: all."""
    if columns is None or schema.name not in columns:
        return None
    wanted = set(columns[schema.name])
    unknown = sorted(wanted - set(schema.names))
    if unknown:
        raise ValueError(f"{schema.name}: no such columns: {', '.join(unknown)}")
    return tuple(name for name in schema.names if name in wanted)


def _select(values: dict[str, pa.Array], names: tuple[str, ...] | None) -> dict[str, pa.Array]:
    """``values`` of the columns ``names`` (None: all)."""
    return values if names is None else {name: values[name] for name in names}


def _segments(
    raw: RawTable, arrow: bool = False, columns: Mapping[str, Collection[str]] | None = None
) -> _TableResult:
    verdicts = _Verdicts(raw.data.num_rows)
    values = _parse_columns(SEGMENTS, raw, SEGMENTS.names, verdicts)
    # A repeated row is a repeat of all three ids: codes hashed by Arrow, whatever is kept (the
    # Python objects of every row and pandas' hashing of them cost three times as much).
    codes = _arrow_codes(values[SEGMENTS.names[0]])
    for name in SEGMENTS.names[1:]:
        codes = _pair_codes(codes, _arrow_codes(values[name]))
    drop = _duplicates(codes, verdicts)
    if arrow:
        return _result(SEGMENTS, raw, values, verdicts, drop)
    only = _picked(SEGMENTS, columns)
    typed = _typed_columns(SEGMENTS, _select(values, only))
    return _result(SEGMENTS, raw, typed, verdicts, drop, only=only is not None)


def _settings(raw: RawTable, arrow: bool = False) -> _TableResult:
    verdicts = _Verdicts(raw.data.num_rows)
    values = _parse_columns(SETTINGS, raw, SETTINGS.names, verdicts)
    typed = _typed_columns(SETTINGS, values)
    drop = _duplicates(
        _codes(typed["tenant_id"]), verdicts, _at(typed), "conflicting duplicate tenant_id"
    )
    return _result(SETTINGS, raw, values if arrow else typed, verdicts, drop)


def validate_raw(
    raws: dict[str, RawTable],
    referenced_only: bool = False,
    columns: Mapping[str, Collection[str]] | None = None,
) -> Validated:
    """Validate tables as read by :mod:`contract.readers` (absent optional tables are empty).

    ``referenced_only``: the clean messages are only those a clean event names (scoring needs
    no others; the counts and the quarantine still cover every message), and
    ``event_messages`` says which one each event names. ``columns``: for ``messages``,
    ``events`` and ``segments``, the only columns their clean frames hold (Python objects for the others cost
    CPU for nothing); the rules, the duplicate checks and the counts still read every column.
    """
    results, event_messages = _validate(raws, referenced_only, arrow=False, columns=columns)
    quarantine, report = _quarantine_and_report(results)
    return Validated(
        messages=results["messages"].clean,
        events=results["events"].clean,
        segments=results["segments"].clean,
        settings=results["settings"].clean,
        quarantine=quarantine,
        report=report,
        event_messages=event_messages,
    )


@dataclass
class ValidatedArrow:
    """:func:`validate_raw_arrow`'s result: the clean tables as Arrow tables of the schema
    columns (parsed types: text, int64, bool, timestamps in ns UTC), the quarantine, the counts."""

    tables: dict[str, pa.Table]
    quarantine: pd.DataFrame
    report: Report
    # As Validated.event_messages: each clean event's row in the messages table (-1: none).
    event_messages: np.ndarray | None = None


def validate_raw_arrow(
    raws: dict[str, RawTable],
    referenced_only: bool = False,
    columns: Mapping[str, Collection[str]] | None = None,
    extras: bool = False,
) -> ValidatedArrow:
    """:func:`validate_raw` with the clean tables kept in Arrow: the same rows and values,
    without building a Python object per clean value (for callers that hand Arrow on, such as
    the Spark engine's validation groups and ``botfilter score``). Extra input columns are left
    out, or with ``extras`` kept as read after the schema columns, as :func:`validate_raw`
    keeps them (``botfilter validate``). ``referenced_only`` and ``columns`` (of ``messages``
    only) as in :func:`validate_raw`."""
    if extras and (referenced_only or columns):
        raise ValueError("validate_raw_arrow: extras keep whole tables, not a selection")
    results, event_messages = _validate(raws, referenced_only, arrow=True, columns=columns)
    quarantine, report = _quarantine_and_report(results)
    tables = {n: r.clean for n, r in results.items()}
    if extras:
        tables = {n: _with_extras(t, raws.get(n), results[n].kept) for n, t in tables.items()}
    return ValidatedArrow(tables, quarantine, report, event_messages)


def _with_extras(clean: pa.Table, raw: RawTable | None, kept: np.ndarray | None) -> pa.Table:
    """``clean`` with the input's extra columns at its rows (``kept``: per raw row), as read."""
    extra = [] if raw is None else [n for n in raw.data.column_names if n not in clean.schema.names]
    if not extra:
        return clean
    assert raw is not None and kept is not None  # whole tables (see validate_raw_arrow)
    rows = None if kept.all() else pa.array(np.flatnonzero(kept))
    for name in extra:
        column = raw.data[name]
        clean = clean.append_column(name, column if rows is None else column.take(rows))
    return clean


def _validate(
    raws: dict[str, RawTable],
    referenced_only: bool,
    arrow: bool,
    columns: Mapping[str, Collection[str]] | None = None,
) -> tuple[dict[str, _TableResult], np.ndarray | None]:
    for name in REQUIRED_TABLES:
        if name not in raws:
            raise BotfilterError(f"missing required table: {name}")
    unknown = sorted(set(raws) - set(TABLES))
    if unknown:
        raise BotfilterError(f"unknown table(s): {', '.join(unknown)}")
    for name, raw in raws.items():
        check_required_columns(raw.data.column_names, TABLES[name], raw.source)
    messages, events, event_messages = _messages_and_events(
        raws["messages"], raws["events"], referenced_only, arrow, columns
    )
    results = {
        "messages": messages,
        "events": events,
        "segments": _segments(raws.get("segments") or empty_raw("segments"), arrow, columns),
        "settings": _settings(raws.get("settings") or empty_raw("settings"), arrow),
    }
    return results, event_messages


def _quarantine_and_report(results: dict[str, _TableResult]) -> tuple[pd.DataFrame, Report]:
    quarantine = pd.concat([r.quarantine for r in results.values()], ignore_index=True)
    report = Report({name: r.report for name, r in results.items()})
    report.check()
    return quarantine, report


def validate_tables(raw: dict[str, pd.DataFrame]) -> Validated:
    """Validate raw pandas frames by table name (``messages`` and ``events`` required).

    ``row_number`` in the quarantine is the row's position in its frame.
    """
    return validate_raw({name: raw_from_pandas(name, frame) for name, frame in raw.items()})


def _context_names() -> list[str]:
    """The message-only columns an online event carries (``message_id``/``tenant_id`` are the
    event's own)."""
    return [name for name in MESSAGE_CONTEXT if name not in EVENTS.names]


def _event_rows(raw: RawTable) -> tuple[dict[str, pa.Array], _Verdicts]:
    """Every rule of :func:`validate_event_rows` on the rows of ``raw``: the parsed columns
    (events, then message context; null where missing or broken) and the verdicts."""
    verdicts = _Verdicts(raw.data.num_rows)
    values = _parse_columns(EVENTS, raw, EVENTS.names, verdicts)
    values.update(_parse_columns(MESSAGES, raw, _context_names(), verdicts))
    _message_rules(values, verdicts)
    _event_message_rules(values, values, verdicts)
    return values, verdicts


def validate_event_rows(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Check events that each carry their message context (the online API's batches).

    ``frame`` has the events columns plus :data:`contract.schema.MESSAGE_CONTEXT` (``message_id``
    and ``tenant_id`` are shared). Every event rule and every message rule that applies to one
    row is checked, by the same code as :func:`validate_tables`; rules that need other rows
    (duplicates, unknown messages, tenant mismatch) are not. Returns the clean typed rows that
    pass (events columns, then the message-only context columns, then extra columns; indexed by
    their position in ``frame``) and the reason of each failing row, indexed by its position.
    """
    context = _context_names()
    raw = raw_from_pandas("events", frame.reset_index(drop=True), [*EVENTS.names, *context])
    required = EVENTS.required + [c for c in MESSAGES.required if c in context]
    missing = [c for c in required if c not in raw.data.column_names]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise BotfilterError(f"events: missing required column{plural}: {', '.join(missing)}")
    values, verdicts = _event_rows(raw)
    event = {name: values[name] for name in EVENTS.names}
    message = {name: values[name] for name in context}
    typed = {**_typed_columns(EVENTS, event), **_typed_columns(MESSAGES, message)}
    clean = _clean_frame(typed, raw, verdicts.ok)
    positions = raw.row_number_array()
    clean.index = pd.Index(positions[verdicts.ok])
    failing = np.flatnonzero(~verdicts.ok)
    why = dict(zip(positions[failing].tolist(), verdicts.reason[failing], strict=True))
    why.update((row, reason) for row, _, reason in raw.rejected)
    order = sorted(why)
    reasons = pd.Series([why[i] for i in order], index=order, dtype=object, name="reason")
    return clean, reasons


# --------------------------------------------------------------------------- online items

# Up to this many items, :func:`validate_event_items` checks them one by one in Python; above,
# column by column with Arrow. Measured (CPU, simulated API batches): one by one costs ~25 µs
# an item (~35 µs when no text repeats), column by column ~4.5 ms plus ~9 µs an item; they
# break even between ~300 (no text repeats) and ~400 items.
ROW_WISE_UP_TO = 256


def validate_event_items(
    items: Sequence[Any], columns: Sequence[str]
) -> tuple[dict[int, tuple[Any, ...]], dict[int, str]]:
    """:func:`validate_event_rows` for decoded JSON items (the online API's), without pandas.

    An item is normally an object with the events fields and the message context, but may be
    any JSON value. Returns, by position, the clean items as tuples of ``columns`` (any of the
    events and message-context columns) holding ``str`` for text, ``int`` ns since the epoch
    (UTC) for timestamps, ``int``, ``bool``, or None when missing; and the failing items'
    reasons: those of :func:`validate_event_rows`, ``JSON line is not an object`` for an item
    that is not an object and ``invalid UTF-8 text`` for one holding a lone surrogate. Keys
    other than the events and context columns are ignored.

    Up to :data:`ROW_WISE_UP_TO` items are judged one by one in plain Python (the one-value
    parsers of :mod:`contract.columns`, the rules of :data:`_RULES`, :data:`_MESSAGE_RULES` and
    :data:`_EVENT_MESSAGE_RULES`); more go through the column parsers of
    :func:`validate_event_rows`. Both give the same answers for every item, whatever the other
    items (``tests/unit/test_contract_items.py``).
    """
    names = _item_names()
    unknown = [name for name in columns if name not in names]
    if unknown:
        raise ValueError(f"not an events or message-context column: {', '.join(unknown)}")
    if len(items) <= ROW_WISE_UP_TO:
        return _items_row_wise(items, columns)
    return _items_column_wise(items, columns)


@functools.cache
def _item_checks() -> tuple[tuple[str, str | None, Callable[[Any], Any]], ...]:
    """(column, reason when missing if required, value parser), in the order reasons are given."""
    context = set(_context_names())
    checked = [*EVENTS.columns, *(c for c in MESSAGES.columns if c.name in context)]
    return tuple(
        (c.name, f"missing required field: {c.name}" if c.required else None, _value_parser(c))
        for c in checked
    )


@functools.cache
def _item_names() -> tuple[str, ...]:
    return tuple(name for name, _, _ in _item_checks())


@functools.cache
def _item_ids() -> tuple[str, ...]:
    """The identifiers among the items' columns, in the order their reasons are given."""
    context = set(_context_names())
    checked = [*EVENTS.columns, *(c for c in MESSAGES.columns if c.name in context)]
    return tuple(c.name for c in checked if is_identifier(c))


def _items_row_wise(
    items: Sequence[Any], columns: Sequence[str]
) -> tuple[dict[int, tuple[Any, ...]], dict[int, str]]:
    """Each item judged on its own, in plain Python, by the same rules (:data:`_RULES`,
    :data:`_MESSAGE_RULES`, :data:`_EVENT_MESSAGE_RULES`) and the one-value parsers of
    :mod:`contract.columns`."""
    checks = _item_checks()
    names = _item_names()
    ids = _item_ids()
    rules = _MESSAGE_RULES + _EVENT_MESSAGE_RULES
    # Events of one batch share text (their message's context, user agents...): each distinct
    # text is judged once per column, as (typed value, reason or None).
    seen: list[dict[str, tuple[Any, str | None]]] = [{} for _ in checks]
    clean: dict[int, tuple[Any, ...]] = {}
    reasons: dict[int, str] = {}
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            reasons[position] = REASON_JSON_OBJECT
            continue
        raw = list(map(item.get, names))
        if any(map(unencodable, raw)):
            reasons[position] = REASON_UTF8
            continue
        refused = identifier_problem(item, ids)
        if refused is not None:
            reasons[position] = refused
            continue
        values: dict[str, Any] = {}
        reason = None
        for (name, missing, parse), value, judged in zip(checks, raw, seen, strict=True):
            if value is None:
                typed = None
            elif type(value) is str:
                got = judged.get(value)
                if got is None:
                    got = judged[value] = parse(value)
                typed, reason = got
            else:
                typed, reason = parse(value)
            if reason is None and typed is None:
                reason = missing
            if reason is not None:
                break
            values[name] = typed
        if reason is None:
            for rule in rules:
                if _breaks_one(rule, values[rule.left], values[rule.right]):
                    reason = rule.reason
                    break
        if reason is None:
            clean[position] = tuple([values[name] for name in columns])
        else:
            reasons[position] = reason
    return clean, reasons


def _items_column_wise(
    items: Sequence[Any], columns: Sequence[str]
) -> tuple[dict[int, tuple[Any, ...]], dict[int, str]]:
    """The items checked a column at a time by the column parsers of :func:`validate_event_rows`
    (``_parse_columns``), without pandas: Python values come straight from Arrow."""
    names = _item_names()
    positions = [i for i, item in enumerate(items) if isinstance(item, dict)]
    objects = [items[i] for i in positions]
    reasons = {i: REASON_JSON_OBJECT for i in range(len(items)) if not isinstance(items[i], dict)}
    ids = _item_ids()
    refused = [identifier_problem(o, ids) for o in objects]
    if any(r is not None for r in refused):  # set aside, as one by one (UTF-8 told first)
        for position, item, why in zip(positions, objects, refused, strict=True):
            if why is not None:
                utf8 = any(map(unencodable, map(item.get, names)))
                reasons[position] = REASON_UTF8 if utf8 else why
        positions = [p for p, why in zip(positions, refused, strict=True) if why is None]
        objects = [o for o, why in zip(objects, refused, strict=True) if why is None]
    try:
        data = _items_table(objects, names)
    except UnicodeEncodeError:
        readable = [not any(map(unencodable, map(o.get, names))) for o in objects]
        reasons.update(
            (i, REASON_UTF8) for i, ok in zip(positions, readable, strict=True) if not ok
        )
        positions = list(compress(positions, readable))
        objects = list(compress(objects, readable))
        data = _items_table(objects, names)
    parsed, verdicts = _event_rows(RawTable("events", "events", data))
    values = {name: _python_list(parsed[name]) for name in columns}
    ok = verdicts.ok.tolist()
    rows = zip(*(values[name] for name in columns), strict=True)
    clean = dict(zip(compress(positions, ok), compress(rows, ok), strict=True))
    failing = np.flatnonzero(~verdicts.ok)
    reasons.update(zip([positions[i] for i in failing], verdicts.reason[failing], strict=True))
    return clean, dict(sorted(reasons.items()))


def _items_table(objects: list[dict[str, Any]], names: Sequence[str]) -> pa.Table:
    """The items' ``names`` columns as :func:`contract.readers.column_from_values` types each one.

    Arrow reads the objects in one pass; a column it cannot type alike (mixed or nested
    values, floats: ``column_from_values`` reads NaN as missing and refuses booleans among
    them) is built on its own."""
    try:
        table = pa.Table.from_pylist(objects)
    except (pa.ArrowException, OverflowError, TypeError, UnicodeEncodeError):
        table = None  # (unencodable text in a column of ours fails again below)
    arrays = {}
    for name in names:
        if table is not None and name in table.column_names:
            arr = table[name]
            if arr.type in _PLAIN_JSON_TYPES:
                arrays[name] = arr
                continue
        arrays[name] = column_from_values([o.get(name) for o in objects])
    return pa.table(arrays)


_PLAIN_JSON_TYPES = (pa.string(), pa.int64(), pa.bool_(), pa.null())


def _python_list(arr: pa.Array | pa.ChunkedArray) -> list[Any]:
    """A parsed column as Python values (timestamps as int ns, None where null); through
    numpy, which is many times faster than ``to_pylist``."""
    if pa.types.is_timestamp(arr.type):
        arr = arr.cast(pa.int64())
    if not (pa.types.is_integer(arr.type) or pa.types.is_boolean(arr.type)):
        return arr.to_numpy(zero_copy_only=False).tolist()  # text: str or None already
    filler = False if pa.types.is_boolean(arr.type) else 0
    values = pc.fill_null(arr, filler).to_numpy(zero_copy_only=False).tolist()
    if not arr.null_count:
        return values
    null = to_numpy_bool(pc.is_null(arr)).tolist()
    return [None if gap else value for value, gap in zip(values, null, strict=True)]
