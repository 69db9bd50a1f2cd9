"""The online API's items: the row-wise path, the column-wise path and validate_event_rows agree.

:func:`contract.validate.validate_event_items` judges small batches value by value in Python and
large ones column by column with Arrow. Both must give exactly what :func:`validate_event_rows`
gives for the same events, whatever the other events of the batch are. Randomised items (good
ones and every kind of broken value) are checked against all three, exactly: same reasons, same
typed values of the same Python types.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from contract.schema import EVENTS, MESSAGE_CONTEXT, MESSAGES
from contract.validate import (
    ROW_WISE_UP_TO,
    _items_column_wise,
    _items_row_wise,
    validate_event_items,
    validate_event_rows,
)
from features.pipeline import CONTEXT_COLUMNS

ALL = (*EVENTS.names, *(n for n in MESSAGE_CONTEXT if n not in EVENTS.names))
T0 = 1_735_689_600_000  # 2025-01-01T00:00:00Z in ms


def good_item(rnd: random.Random, i: int) -> dict[str, Any]:
    """A valid event with its message context (varied, JSON types as a client sends them)."""
    sent = T0 + rnd.randrange(0, 10**9)
    channel = rnd.choice(["email", "sms"])
    links = rnd.randrange(1, 9)
    return {
        "event_id": f"e{i}",
        "tenant_id": rnd.choice(["t1", "t2"]),
        "message_id": f"m{rnd.randrange(50)}",
        "type": "click" if channel == "sms" else rnd.choice(["open", "click"]),
        "occurred_at": iso(sent + rnd.randrange(0, 10**7), rnd),
        "ip": rnd.choice(["192.0.2.1", "10.1.2.3", "2001:db8::1", "::ffff:10.0.0.1"]),
        "user_agent": rnd.choice(["Mozilla/5.0", "curl/8", None]),
        "url": rnd.choice(["https://a.example/x", None]),
        "link_position": rnd.choice([None, rnd.randrange(links)]),
        "is_hidden_link": rnd.choice([True, False, None]),
        "http_method": rnd.choice(["GET", "HEAD", None]),
        "asn": rnd.choice([None, 64500, 13335]),
        "channel": channel,
        "campaign_id": rnd.choice(["c1", None]),
        "automation_id": None,
        "contact_id": f"k{rnd.randrange(100)}",
        "recipient_domain": "example.com" if channel == "email" else None,
        "sent_at": iso(sent, rnd),
        "delivered_at": rnd.choice([None, iso(sent + 1500, rnd)]),
        "link_count": links,
    }


def iso(ms: int, rnd: random.Random) -> str | int:
    """``ms`` in one of the accepted forms."""
    stamp = pd.Timestamp(ms, unit="ms", tz="UTC")
    form = rnd.randrange(6)
    if form == 0:
        return ms
    if form == 1:
        return stamp.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
    if form == 2:
        return stamp.tz_convert("Asia/Kolkata").isoformat()
    if form == 3:
        return stamp.strftime("%Y-%m-%d %H:%M:%S")
    if form == 4:
        return stamp.strftime("%Y-%m-%dT%H:%M:%S.%f") + f"{rnd.randrange(1000):03d}+00:00"
    return str(ms)


# Odd values by column kind, grouped by JSON type so that batches of one type per column can be
# drawn (Arrow types such a column natively instead of as text).
TEXTS = [
    "", "   ", "\t", " x ", "\u3000x\u00a0", "\x0b", "a\x0bb", "é", "İ", "ß", "😀" * 50,
    "x" * 5000, "null", "NaN", "None", "[1]", "true", "7", " 007 ", "+5", "3.0", "3.",
]  # fmt: skip
UNENCODABLE = ["\ud800", "a\udfffb", ["\ud800"], {"\udc00": 1}]
NUMBERS = [
    0, 7, -1, 2**31, 2**32 - 1, 2**32, 2**62, 2**63 - 1, 2**63, 2**64, -(2**63), -(2**63) - 1,
]  # fmt: skip
FLOATS = [
    7.0, 7.5, -0.0, 1e20, 1e-7, 2.0**63, -(2.0**63), 9.2e18, 1.7e12, float("inf"), float("nan"),
]  # fmt: skip
BOOLS = [True, False]
NESTED = [[], {}, [1, "a"], {"a": [1, {"b": None}]}, {"k": "é"}]
ODD: dict[str, dict[type, list[Any]]] = {
    "text": {str: TEXTS, int: NUMBERS, float: FLOATS, bool: BOOLS, list: NESTED},
    "timestamp": {
        str: [
            "2025-01-01T00:01:00Z",
            "2025-01-01 00:01",
            "2025-01-01",
            "2025-01-01T00:01",
            "2025-01-01T00:01:00.123456789+05:30",
            "2025-01-01T00:01:00.1234567",
            "2025-13-01T00:00:00Z",
            "2025-02-29",
            "2024-02-29T23:59:59.999999999-00:00",
            "1999-12-31T23:59:59Z",
            "2100-01-01T00:00:00Z",
            "2099-12-31T23:59:59.999999999Z",
            "2300-01-01",
            "1600-06-01",
            "0000-01-01",
            "9999-12-31T23:59:59-05:00",
            "2025-01-01T24:00:00",
            "2025-01-01T10:00:60",
            "2025-01-01T10:00:00+05:60",
            "2025-01-01T10:00:00+24:00",
            "2025-01-01t00:01:00z",
            "2025-01-01T00:01:00+0530",
            "2025-01-01T00:01:00+05",
            "2025-01-01T00:01:00.",
            "20250101",
            "1735689660000",
            "+1735689660000",
            "-1735689660000",
            "1735689660000.000",
            "1735689660000.5",
            "01735689660000",
            "001735689660000",
            "0001735689660000",
            "00001735689660000",
            "17356896600001234567",
            "1735689660",
            "  2025-01-01T00:01:00Z  ",
            "2025-01-01T00:01:00ZZ",
            "yesterday",
            "２０２５-01-01",
            "2025-01-01T00:01:00+05:30\n",
        ],
        int: [T0 + 60_000, T0, 1735689660, -5, 0, 2**70, 4102444800000, 4102444799999],
        float: [T0 + 60_000.0, T0 + 0.5, 1e20, -(2.0**63), float("inf"), 946684800000.0],
        bool: BOOLS,
        list: NESTED,
    },
    "int": {
        str: [
            "3",
            " 7 ",
            "+5",
            "-0",
            "3.0",
            "3.",
            "3.5",
            "1e3",
            "0x10",
            "١٢",
            "AS13335",
            "as 64500",
            " AS7",
            "ASN7",
            "AS",
            "aſ5",
            "\u00a0AS7",
            "4611686018427387904",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "00000000000000000001",
            "",
            "true",
        ],
        int: NUMBERS + [3, 5],
        float: FLOATS + [3.0],
        bool: BOOLS,
        list: NESTED,
    },
    "bool": {
        str: [
            "yes",
            "NO",
            "t",
            "F",
            "1",
            "0",
            "1.0",
            "0.0",
            "maybe",
            " true ",
            "TRUE",
            "ｙｅｓ",
            "",
        ],
        int: [1, 0, 2, -1],
        float: [1.0, 0.0, 0.5, float("nan")],
        bool: BOOLS,
        list: NESTED,
    },
}
CHOICES = {
    "type": ["open", "click", "OPEN", " Click ", "fax", "opEn", "ΟΡΕΝ", "x" * 60],
    "channel": ["email", "sms", "EMAİL", "SMS ", "fax", "ṡms"],
    "label": ["bot", "human", "BOT", "robot"],
    "ip": [
        "192.0.2.1", "::1", "2001:db8::1", "::ffff:10.0.0.1", "256.1.1.1", "01.1.1.1",
        "1.1.1", "fe80::1%eth0", "2001:db8:::1", "::", "1::", "1:2:3:4:5:6:7:8",
        "1:2:3:4:5:6:7:8:9", " 10.0.0.1 ", "10.0.0.1\n", "localhost", "::ffff:1.2.3.4.5",
    ],
    "http_method": ["GET", "get", "HEAD", "G ET", "GET\n", "M-SEARCH", "ÉT", "Get\x0b"],
    "recipient_domain": [
        "example.com", "EXAMPLE.COM", "a@b.com", "a b", "a\tb", "a\x0bb", "İ.com", "ß.de",
    ],
    "user_agent": [" UA ", "UA", "\u3000UA\u3000", "  "],
}  # fmt: skip
KINDS = {
    c.name: "text" if c.kind == "str" else c.kind for c in (*MESSAGES.columns, *EVENTS.columns)
}


def odd_value(rnd: random.Random, name: str, kind: type | None = None) -> Any:
    """An unusual value for column ``name`` (of JSON type ``kind`` when given)."""
    pools = dict(ODD[KINDS[name]])
    if name in CHOICES:
        pools[str] = pools[str] + CHOICES[name]
    if name == "ip" and kind in (None, str):
        pools[str] = pools[str] + [random_ipv6(rnd) for _ in range(3)]
    if kind is None:
        kind = rnd.choice(list(pools))
    return rnd.choice(pools[kind])


def random_items(seed: int, n: int) -> list[Any]:
    """Good items with random damage: odd values, missing and extra keys, non-objects."""
    rnd = random.Random(seed)
    items: list[Any] = []
    for i in range(n):
        roll = rnd.random()
        if roll < 0.03:
            items.append(rnd.choice([5, "x", None, [1, 2], 1.5, True, []]))
            continue
        item = good_item(rnd, i)
        items.append(item)
        if roll < 0.35:
            continue  # untouched
        if roll < 0.37:
            item[rnd.choice(ALL)] = rnd.choice(UNENCODABLE)
        for name in rnd.sample(ALL, rnd.randrange(1, 4)):
            item[name] = odd_value(rnd, name)
        for _ in range(rnd.randrange(2)):
            item.pop(rnd.choice(ALL), None)
        if rnd.random() < 0.1:
            item["extra"] = rnd.choice([[1, {}], "\ud800", 2**80])
        if rnd.random() < 0.1:  # the rules across columns
            message_rule = rnd.randrange(5)
            if message_rule == 0:
                item["automation_id"] = "a1"
            elif message_rule == 1:
                item["delivered_at"] = T0 - 1000
            elif message_rule == 2:
                item.update(type="open", channel="sms")
            elif message_rule == 3:  # equal times break no rule
                item.update(occurred_at=item.get("sent_at"), delivered_at=item.get("sent_at"))
            else:
                item.update(link_position=item.get("link_count"))
    return items


def homogeneous_batch(seed: int, n: int) -> list[dict[str, Any]]:
    """Items whose odd values have one JSON type per column (Arrow types such columns natively)."""
    rnd = random.Random(seed)
    kinds = {name: rnd.choice([str, int, float, bool, list]) for name in ALL}
    damaged = rnd.sample(ALL, rnd.randrange(1, 6))
    items = []
    for i in range(n):
        item = good_item(rnd, i)
        for name in damaged:
            item[name] = odd_value(rnd, name, kinds[name]) if rnd.random() < 0.7 else None
        items.append(item)
    return items


# --------------------------------------------------------------------------- comparisons


def exact(result: tuple[dict[int, tuple], dict[int, str]]) -> tuple[dict, dict]:
    """Results with each value tagged by its type: 1, 1.0 and True compare equal otherwise."""
    clean, reasons = result
    tagged = {i: tuple((type(v).__name__, v) for v in row) for i, row in clean.items()}
    return tagged, {i: (type(r).__name__, r) for i, r in reasons.items()}


def by_validate_event_rows(items: list[Any], columns: tuple[str, ...]) -> tuple[dict, dict]:
    """What validate_event_rows gives on the frame serving builds from the same items."""
    objects = [(i, item) for i, item in enumerate(items) if isinstance(item, dict)]
    values = np.empty((len(objects), len(ALL)), dtype=object)
    for j, name in enumerate(ALL):
        values[:, j] = np.fromiter((it.get(name) for _, it in objects), object, len(objects))
    clean, why = validate_event_rows(pd.DataFrame(values, columns=list(ALL)))
    where = [i for i, _ in objects]
    reasons = {where[k]: reason for k, reason in why.items()}
    others = (i for i, item in enumerate(items) if not isinstance(item, dict))
    reasons.update((i, "JSON line is not an object") for i in others)
    rows: dict[int, tuple] = {}
    cols = [python_values(clean[name]) for name in columns]
    for k, row in zip(clean.index, zip(*cols, strict=True), strict=True):
        rows[where[k]] = row
    return rows, dict(sorted(reasons.items()))


def python_values(column: pd.Series) -> list[Any]:
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        return [None if v == np.iinfo(np.int64).min else v for v in column.array.asi8.tolist()]
    if isinstance(column.dtype, pd.Int64Dtype | pd.BooleanDtype):
        kind = int if isinstance(column.dtype, pd.Int64Dtype) else bool
        return [None if v is pd.NA else kind(v) for v in column.tolist()]
    values = column.tolist()
    assert all(v is None or type(v) is str for v in values), column.name
    return values


def assert_all_agree(items: list[Any], columns: tuple[str, ...] = ALL) -> tuple[dict, dict]:
    row = exact(_items_row_wise(items, columns))
    assert exact(_items_column_wise(items, columns)) == row
    assert exact(by_validate_event_rows(items, columns)) == row
    return row


# --------------------------------------------------------------------------- randomised parity


def test_random_mixed_batch_gives_the_same_verdicts_and_values_by_every_path() -> None:
    items = random_items(seed=7, n=3000)
    clean, reasons = assert_all_agree(items)
    # the batch really exercises the rules: many clean items and many different reasons
    assert 900 < len(clean) < 2500
    assert len(clean) + len(reasons) == len(items)
    assert len({r for _, r in reasons.values()}) >= 60
    kinds = {r.split(":")[0] for _, r in reasons.values()}
    for expected in (
        "JSON line is not an object",
        "invalid UTF-8 text",
        "unparseable timestamp",
        "timestamp out of range",
        "invalid integer",
        "invalid bool",
        "invalid ip",
        "unknown channel",
        "unknown type",
        "invalid label",
        "invalid http_method",
        "invalid recipient_domain",
        "asn out of range",
        "negative link_count",
        "link_position out of range",
        "missing required field",
        "both campaign_id and automation_id set",
        "delivered_at before sent_at",
        "event before message sent",
        "open on sms message",
    ):
        assert expected in kinds, expected


@pytest.mark.parametrize("seed", range(40))
def test_batches_of_one_json_type_per_column_agree(seed: int) -> None:
    assert_all_agree(homogeneous_batch(seed, n=1 + seed % 5 * 7), CONTEXT_COLUMNS)


def test_every_item_alone_gives_what_it_gives_in_a_batch() -> None:
    items = random_items(seed=11, n=400)
    batch = exact(_items_row_wise(items, ALL))
    rnd = random.Random(3)
    for i in rnd.sample(range(len(items)), 60):
        alone = exact(_items_column_wise([items[i]], ALL))
        expected = (
            {0: batch[0][i]} if i in batch[0] else {},
            {0: batch[1][i]} if i in batch[1] else {},
        )
        assert alone == expected, items[i]


def test_validate_event_items_switches_paths_without_changing_answers() -> None:
    items = random_items(seed=5, n=ROW_WISE_UP_TO + 40)
    whole = exact(validate_event_items(items, CONTEXT_COLUMNS))  # column-wise
    assert whole == exact(_items_row_wise(items, CONTEXT_COLUMNS))
    small = exact(validate_event_items(items[:ROW_WISE_UP_TO], CONTEXT_COLUMNS))  # row-wise
    assert small == exact(_items_column_wise(items[:ROW_WISE_UP_TO], CONTEXT_COLUMNS))


# --------------------------------------------------------------------------- exact cases


NS = 1_000_000_000
SENT_NS = T0 * 1_000_000


@pytest.fixture
def base(api_row) -> dict[str, Any]:
    """The valid click e1 with its message context, sent at T0 with 3 links."""
    return api_row()


@pytest.fixture
def one(base) -> Callable[..., Any]:
    """The clean values or the reason of ``base`` changed by keywords (every path agreeing)."""

    def judge(columns: tuple[str, ...], **change: Any) -> Any:
        clean, reasons = assert_all_agree([{**base, **change}], columns)
        if reasons:
            return reasons[0][1]
        return tuple(v for _, v in clean[0])

    return judge


@pytest.mark.parametrize(
    ("change", "column", "value"),
    [
        ({}, "occurred_at", SENT_NS + 60 * NS),
        (
            {"occurred_at": "2025-01-01T00:01:00.123456789+00:00"},
            "occurred_at",
            SENT_NS + 60 * NS + 123456789,
        ),
        (
            {"occurred_at": "2025-01-01T05:31:00.5+05:30"},
            "occurred_at",
            SENT_NS + 60 * NS + NS // 2,
        ),
        ({"occurred_at": "2025-01-01 00:01"}, "occurred_at", SENT_NS + 60 * NS),
        ({"occurred_at": "2025-01-01T00:00:00Z"}, "occurred_at", SENT_NS),  # when it was sent
        ({"delivered_at": "2025-01-01"}, "delivered_at", SENT_NS),
        ({"occurred_at": "0001735689660000"}, "occurred_at", SENT_NS + 60 * NS),
        ({"occurred_at": T0 + 60_000}, "occurred_at", SENT_NS + 60 * NS),
        ({"occurred_at": float(T0 + 60_000)}, "occurred_at", SENT_NS + 60 * NS),
        ({"occurred_at": "+1735689660000.00"}, "occurred_at", SENT_NS + 60 * NS),
        ({"link_position": "+2"}, "link_position", 2),
        ({"link_position": "2.0"}, "link_position", 2),
        ({"link_position": 2.0}, "link_position", 2),
        ({"asn": " AS13335"}, "asn", 13335),
        ({"asn": "aſ7"}, "asn", 7),  # RE2 folds ſ to s, and so does Python
        ({"asn": "AS"}, "asn", None),
        ({"link_count": "9223372036854775807", "link_position": 2**62}, "link_position", 2**62),
        ({"is_hidden_link": "Yes"}, "is_hidden_link", True),
        ({"is_hidden_link": 0.0}, "is_hidden_link", False),
        ({"is_hidden_link": "1.0"}, "is_hidden_link", True),
        ({"event_id": " \u3000e7\u00a0"}, "event_id", "e7"),
        ({"event_id": 7}, "event_id", "7"),
        ({"event_id": 7.0}, "event_id", "7"),
        ({"event_id": 7.5}, "event_id", "7.5"),
        ({"event_id": 1e20}, "event_id", "100000000000000000000"),
        ({"user_agent": " UA\t"}, "user_agent", " UA\t"),
        ({"user_agent": "   "}, "user_agent", None),
        ({"channel": " EMAİL "}, "channel", "email"),  # Arrow's lower case of İ is i
        ({"type": "CLICK"}, "type", "click"),
        ({"http_method": "get"}, "http_method", "GET"),
        ({"recipient_domain": "Example.COM"}, "recipient_domain", "example.com"),
        ({"ip": " 2001:DB8::1 "}, "ip", "2001:DB8::1"),
        ({"user_agent": "a\x00b"}, "user_agent", "a\x00b"),  # free text: control chars kept
        ({"url": "https://x/\x01"}, "url", "https://x/\x01"),
        ({"ip": "fe80::1%eth0"}, "ip", "fe80::1%eth0"),
    ],
)
def test_normalised_values(one, change: dict[str, Any], column: str, value: Any) -> None:
    got = one(ALL, **change)
    assert isinstance(got, tuple), got
    assert got[ALL.index(column)] == value
    assert type(got[ALL.index(column)]) is type(value)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"occurred_at": "2025-01-01T00:01:60Z"}, "unparseable timestamp: occurred_at"),
        ({"occurred_at": "2025-02-29"}, "unparseable timestamp: occurred_at"),
        ({"occurred_at": 1735689660}, "timestamp out of range: occurred_at"),
        ({"occurred_at": 1e20}, "timestamp out of range: occurred_at"),
        ({"occurred_at": "2100-01-01"}, "timestamp out of range: occurred_at"),
        ({"occurred_at": "17356896600001"}, "timestamp out of range: occurred_at"),
        ({"occurred_at": "00001735689660000"}, "timestamp out of range: occurred_at"),  # 17 long
        ({"occurred_at": 1.5}, "unparseable timestamp: occurred_at"),
        ({"occurred_at": True}, "unparseable timestamp: occurred_at"),
        ({"occurred_at": ["2025-01-01"]}, "unparseable timestamp: occurred_at"),
        ({"occurred_at": "2024-12-31T23:59:59Z"}, "event before message sent"),
        ({"delivered_at": "2024-12-31T23:59:59Z"}, "delivered_at before sent_at"),
        ({"sent_at": None}, "missing required field: sent_at"),
        ({"event_id": "  "}, "missing required field: event_id"),
        ({"link_position": True}, "invalid integer: link_position"),
        ({"link_position": "1e3"}, "invalid integer: link_position"),
        ({"link_position": 2**63}, "invalid integer: link_position"),
        ({"link_position": -1}, "link_position out of range"),
        ({"link_position": 3}, "link_position out of range"),
        ({"link_count": "-2"}, "negative link_count"),
        ({"asn": 2**32}, "asn out of range"),
        ({"asn": "\u00a0AS7"}, "invalid integer: asn"),
        ({"is_hidden_link": "maybe"}, "invalid bool: is_hidden_link"),
        ({"is_hidden_link": 2}, "invalid bool: is_hidden_link"),
        ({"type": "Open", "channel": "sms"}, "open on sms message"),
        ({"type": "x" * 60}, "unknown type: " + "x" * 40),
        ({"channel": "fax"}, "unknown channel: fax"),
        ({"label": "robot"}, "invalid label: robot"),
        ({"ip": "256.1.1.1"}, "invalid ip"),
        ({"http_method": "G ET"}, "invalid http_method"),
        ({"recipient_domain": {"a": 1}}, "invalid recipient_domain"),  # its JSON text has a space
        ({"recipient_domain": "a\x0bb.com"}, "control character in recipient_domain"),
        ({"tenant_id": "t\x001"}, "control character in tenant_id"),
        ({"automation_id": "a1"}, "both campaign_id and automation_id set"),
        ({"user_agent": "a\ud800"}, "invalid UTF-8 text"),
        ({"url": ["\udfff"], "type": "fax"}, "invalid UTF-8 text"),  # before any column's rule
        # identifiers are strings (a number is read as its digits): the API's screen's words
        ({"event_id": True}, "invalid identifier: event_id must be a string, not a boolean"),
        (
            {"event_id": [1, {"a": "é"}]},
            "invalid identifier: event_id must be a string, not an array",
        ),
        ({"campaign_id": []}, "invalid identifier: campaign_id must be a string, not an array"),
        (
            {"contact_id": {"a": 1}},
            "invalid identifier: contact_id must be a string, not an object",
        ),
        (  # set aside as the reader sets a line aside: before any column's rule
            {"type": "fax", "tenant_id": False},
            "invalid identifier: tenant_id must be a string, not a boolean",
        ),
        (  # the first identifier in column order
            {"message_id": {}, "event_id": [1]},
            "invalid identifier: event_id must be a string, not an array",
        ),
        ({"event_id": [], "user_agent": "\ud800"}, "invalid UTF-8 text"),
    ],
)
def test_reasons(one, change: dict[str, Any], reason: str) -> None:
    assert one(CONTEXT_COLUMNS, **change) == reason


def test_items_that_are_not_objects_and_missing_keys(base) -> None:
    items = [5, None, "x", [base], {k: v for k, v in base.items() if k != "channel"}, base]
    clean, reasons = validate_event_items(items, ("event_id", "sent_at"))
    assert clean == {5: ("e1", SENT_NS)}
    assert reasons == {
        0: "JSON line is not an object",
        1: "JSON line is not an object",
        2: "JSON line is not an object",
        3: "JSON line is not an object",
        4: "missing required field: channel",
    }


def test_columns_are_checked_and_kept_in_their_order(base) -> None:
    clean, _ = validate_event_items([base], ("link_count", "event_id"))
    assert clean == {0: (3, "e1")}
    with pytest.raises(ValueError, match="not an events or message-context column: nope"):
        validate_event_items([base], ("event_id", "nope"))


@pytest.mark.parametrize(
    ("value", "others"),
    [
        (True, [1.5]),  # Arrow reads [1.5, True] as floats
        (2**62 + 1, ["x"]),  # among text: its digits
        (7.0, [7.5]),  # a float column with a non-integral value
        (1e20, ["x"]),
        (2**63 - 1, ["x"]),
        ("2025-01-01T00:01:00.123456789Z", ["2025-13-01T00:00:00Z"]),  # a chunk Arrow refuses
    ],
)
@pytest.mark.parametrize("name", ["event_id", "link_position", "occurred_at", "is_hidden_link"])
def test_a_value_is_judged_alike_whatever_its_neighbours(
    base, name: str, value: Any, others: list[Any]
) -> None:
    """Arrow types a column by all its values; the verdict of one value must not depend on them."""
    mixed = [{**base, name: other} for other in others] + [{**base, name: value}]
    clean, reasons = exact(_items_column_wise(mixed, ALL))
    alone_clean, alone_reasons = exact(_items_row_wise([{**base, name: value}], ALL))
    last = len(others)
    assert (clean.get(last), reasons.get(last)) == (alone_clean.get(0), alone_reasons.get(0))


def test_random_strings_everywhere(base) -> None:
    rnd = random.Random(9)
    alphabet = string.printable + "éİßſ\u00a0\u3000😀"
    items = []
    for i in range(300):
        item = dict(base, event_id=f"e{i}")
        for name in rnd.sample(ALL, 3):
            item[name] = "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 12)))
        items.append(item)
    assert_all_agree(items)


def random_ipv6(rnd: random.Random) -> str:
    """A string that looks like an IPv6 address, valid or not."""
    groups = [
        "".join(rnd.choice("0123456789abcdefABCDEF") for _ in range(rnd.randrange(0, 6)))
        for _ in range(rnd.randrange(1, 10))
    ]
    text = ":".join(groups)
    if rnd.random() < 0.3:
        text = text.replace(":", "::", 1)
    if rnd.random() < 0.2:
        text += ":" + ".".join(str(rnd.randrange(0, 300)) for _ in range(4))
    return text


def test_ipv6_pattern_accepts_only_what_python_accepts() -> None:
    """parse_ip gives few non-IPv4 values straight to ipaddress and many to its IPv6 pattern
    first: the pattern must accept nothing ipaddress refuses for both to agree."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from contract.columns import _IPV6_REGEX_FROM, IPV6_RE, _python_ip, parse_ip

    rnd = random.Random(2)
    candidates = list(dict.fromkeys(random_ipv6(rnd) for _ in range(3000)))
    hits = pc.match_substring_regex(pa.array(candidates), IPV6_RE).to_pylist()
    assert sum(hits) > 100
    assert [t for t, hit in zip(candidates, hits, strict=True) if hit and not _python_ip(t)] == []
    for some in (candidates[: _IPV6_REGEX_FROM * 2], candidates[: _IPV6_REGEX_FROM // 2]):
        expected = [t if _python_ip(t) else None for t in some]
        assert parse_ip(pa.array(some)).values.to_pylist() == expected


def test_few_distinct_settles_clear_columns_at_a_glance_and_the_rest_on_the_sample():
    """Ids are many, a handful of values are few, and a column whose first rows are neither
    is judged on the longer sample, whichever way that goes."""
    from contract.columns import few_distinct

    ids = pa.array([f"e{i}" for i in range(30_000)])
    assert few_distinct(ids) is False
    assert few_distinct(pa.array(["open", "click", "open"] * 10_000)) is True
    # First 2,048 rows: 1,024 distinct (in between); first 20,000: 1,024 distinct -> few.
    repeating = pa.array([f"u{i % 1024}" for i in range(30_000)])
    assert few_distinct(repeating) is True
    # First 2,048 rows: half repeats (in between); first 20,000: 19,000 distinct -> many.
    widening = pa.array([f"v{i % 1024}" for i in range(2_048)] + [f"w{i}" for i in range(28_000)])
    assert few_distinct(widening) is False
    assert few_distinct(pa.array(["a"] * 999)) is False  # too small to be worth a dictionary
