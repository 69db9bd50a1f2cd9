"""Every rule of the data contract, the valid edge cases, dtypes, counts and the API path."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

import contract
from contract.counts import CountMismatch, TableReport
from contract.schema import EVENTS, MESSAGE_CONTEXT, MESSAGES, SEGMENTS, SETTINGS, TABLES
from contract.validate import Validated, validate_event_rows, validate_tables
from core.errors import BotfilterError


def frame(rows: list[dict[str, Any]], like: dict[str, Any]) -> pd.DataFrame:
    """Rows as an object frame (what a reader of text formats produces)."""
    columns = list(dict.fromkeys([*like, *(key for row in rows for key in row)]))
    return pd.DataFrame(rows, columns=columns).astype(object)


@pytest.fixture
def run(message_row, sms_message_row, event_row) -> Callable[..., Validated]:
    """Validates message and event rows (default: the email and the SMS, no events)."""

    def validate(
        messages: list[dict[str, Any]] | None = None,
        events: list[dict[str, Any]] | None = None,
        **others: pd.DataFrame,
    ) -> Validated:
        default = [message_row, sms_message_row]
        tables = {
            "messages": frame(default if messages is None else messages, message_row),
            "events": frame([] if events is None else events, event_row),
            **others,
        }
        return validate_tables(tables)

    return validate


def reasons(result: Validated, table: str) -> list[str]:
    q = result.quarantine
    return q.loc[q["table"] == table, "reason"].tolist()


def assert_counts_add_up(result: Validated) -> None:
    for report in result.report.tables.values():
        assert report.read == report.kept + report.quarantined_total + report.duplicates


# --------------------------------------------------------------------------- message rules

MESSAGE_RULES = [
    ({"message_id": None}, "missing required field: message_id"),
    ({"tenant_id": ""}, "missing required field: tenant_id"),
    ({"channel": "   "}, "missing required field: channel"),
    ({"contact_id": None}, "missing required field: contact_id"),
    ({"sent_at": None}, "missing required field: sent_at"),
    ({"channel": "fax"}, "unknown channel: fax"),
    ({"sent_at": "yesterday"}, "unparseable timestamp: sent_at"),
    ({"delivered_at": "2025-02-30T00:00:00"}, "unparseable timestamp: delivered_at"),
    ({"sent_at": 1735689600}, "timestamp out of range: sent_at"),  # epoch seconds, not ms
    ({"sent_at": "1899-12-31T00:00:00Z"}, "timestamp out of range: sent_at"),
    ({"link_count": "three"}, "invalid integer: link_count"),
    ({"link_count": 2.5}, "invalid integer: link_count"),
    ({"link_count": -1}, "negative link_count"),
    ({"recipient_domain": "bob@example.com"}, "invalid recipient_domain"),
    ({"campaign_id": "c1", "automation_id": "a1"}, "both campaign_id and automation_id set"),
    ({"delivered_at": "2024-12-31T23:59:59Z"}, "delivered_at before sent_at"),
    # issue 14 item 9: PostgreSQL cannot store a NUL; SQLite and PostgreSQL must agree
    ({"tenant_id": "t\x001"}, "control character in tenant_id"),
    ({"message_id": "m\n2"}, "control character in message_id"),
    ({"campaign_id": "c\x1fd"}, "control character in campaign_id"),
    ({"contact_id": "k\x7f"}, "control character in contact_id"),
    ({"recipient_domain": "exa\x00mple.com"}, "control character in recipient_domain"),
]


@pytest.mark.parametrize(("change", "reason"), MESSAGE_RULES)
def test_message_rule(
    run, message_row, sms_message_row, change: dict[str, Any], reason: str
) -> None:
    result = run([message_row, {**sms_message_row, **change}])
    assert reasons(result, "messages") == [reason]
    assert result.messages["message_id"].tolist() == ["m1"]
    row = result.quarantine.iloc[0]
    assert row["row_number"] == 1
    record = json.loads(row["record"])
    assert record["channel"] == change.get("channel", sms_message_row["channel"])
    for key, value in change.items():  # the original value, not the parsed one
        assert record[key] in (value, str(value))
    assert_counts_add_up(result)


def test_first_failing_rule_in_schema_order_names_the_row(run, message_row) -> None:
    result = run([{**message_row, "channel": "fax", "sent_at": "never", "link_count": -2}])
    assert reasons(result, "messages") == ["unknown channel: fax"]


def test_long_unknown_value_is_shortened_in_the_reason(run, message_row) -> None:
    result = run([{**message_row, "channel": "x" * 500}])
    assert reasons(result, "messages") == ["unknown channel: " + "x" * 40]


def test_identical_duplicate_messages_are_kept_once_and_counted(
    run, message_row, sms_message_row, event_row
) -> None:
    result = run([message_row, dict(message_row), sms_message_row], [event_row])
    report = result.report.tables["messages"]
    assert (report.read, report.kept, report.duplicates, report.quarantined_total) == (3, 2, 1, 0)
    assert result.messages["message_id"].tolist() == ["m1", "m2"]
    assert result.events["event_id"].tolist() == ["e1"]


def test_conflicting_duplicate_messages_are_all_quarantined_with_their_events(
    run, message_row, sms_message_row, event_row
) -> None:
    other = {**message_row, "contact_id": "k9"}
    result = run([message_row, sms_message_row, other], [event_row])
    assert reasons(result, "messages") == ["conflicting duplicate message_id"] * 2
    assert result.quarantine.loc[result.quarantine.table == "messages", "row_number"].tolist() == [
        0,
        2,
    ]
    assert result.messages["message_id"].tolist() == ["m2"]
    assert reasons(result, "events") == ["quarantined message"]


def test_same_message_id_in_two_tenants_is_two_messages(run, message_row, event_row) -> None:
    # issue 14 item 3: a message is (tenant_id, message_id); nothing is quarantined
    other = {**message_row, "tenant_id": "t2", "contact_id": "k9", "channel": "sms"}
    theirs = {**event_row, "tenant_id": "t2", "type": "click", "event_id": "e9"}
    opened = {**event_row, "type": "open", "event_id": "e2"}
    result = run([message_row, other], [event_row, theirs, opened])
    assert result.quarantine.empty
    assert result.messages[["tenant_id", "contact_id"]].values.tolist() == [
        ["t1", "k1"],
        ["t2", "k9"],
    ]
    assert result.events["event_id"].tolist() == ["e1", "e9", "e2"]
    # the event rules read the event's own tenant's message: an open on t2's SMS is refused
    refused = run([message_row, other], [{**opened, "tenant_id": "t2"}])
    assert reasons(refused, "events") == ["open on sms message"]


def test_conflict_within_one_tenant_leaves_the_other_tenant_alone(
    run, message_row, event_row
) -> None:
    clash = {**message_row, "contact_id": "k9"}
    result = run(
        [message_row, clash, {**message_row, "tenant_id": "t2"}],
        [event_row, {**event_row, "tenant_id": "t2"}],
    )
    assert reasons(result, "messages") == ["conflicting duplicate message_id"] * 2
    assert result.messages["tenant_id"].tolist() == ["t2"]
    assert reasons(result, "events") == ["quarantined message"]
    assert result.events["tenant_id"].tolist() == ["t2"]


def test_same_event_id_in_two_tenants_is_two_events(run, message_row, event_row) -> None:
    theirs = {**message_row, "tenant_id": "t2"}
    result = run([message_row, theirs], [event_row, {**event_row, "tenant_id": "t2"}])
    assert result.quarantine.empty
    assert result.report.tables["events"].duplicates == 0
    assert result.events["tenant_id"].tolist() == ["t1", "t2"]


def test_broken_copy_is_quarantined_and_good_copy_kept(run, message_row, event_row) -> None:
    result = run([{**message_row, "channel": "fax"}, message_row], [event_row])
    assert reasons(result, "messages") == ["unknown channel: fax"]
    assert result.messages["message_id"].tolist() == ["m1"]
    assert result.events["event_id"].tolist() == ["e1"]
    assert result.report.tables["messages"].duplicates == 0


# --------------------------------------------------------------------------- event rules

EVENT_RULES = [
    ({"event_id": None}, "missing required field: event_id"),
    ({"tenant_id": " "}, "missing required field: tenant_id"),
    ({"message_id": ""}, "missing required field: message_id"),
    ({"type": None}, "missing required field: type"),
    ({"occurred_at": None}, "missing required field: occurred_at"),
    ({"type": "bounce"}, "unknown type: bounce"),
    ({"occurred_at": "2025-01-01 25:00:00"}, "unparseable timestamp: occurred_at"),
    ({"occurred_at": "01/02/2025"}, "unparseable timestamp: occurred_at"),
    ({"ip": "256.1.1.1"}, "invalid ip"),
    ({"ip": "1.2.3"}, "invalid ip"),
    ({"ip": "01.2.3.4"}, "invalid ip"),
    ({"ip": "2001:db8::g"}, "invalid ip"),
    ({"ip": "1:2:3:4:5:6:7:8:9"}, "invalid ip"),
    ({"link_position": -1}, "link_position out of range"),
    ({"link_position": 3}, "link_position out of range"),  # message has 3 links: 0..2
    ({"link_position": "first"}, "invalid integer: link_position"),
    ({"is_hidden_link": "maybe"}, "invalid bool: is_hidden_link"),
    ({"is_hidden_link": 2}, "invalid bool: is_hidden_link"),
    ({"http_method": "GE T"}, "invalid http_method"),
    ({"asn": -5}, "asn out of range"),
    ({"asn": 2**32}, "asn out of range"),
    ({"asn": "cloudflare"}, "invalid integer: asn"),
    ({"label": "robot"}, "invalid label: robot"),
    ({"message_id": "m404"}, "unknown message"),
    ({"tenant_id": "t2"}, "tenant mismatch with message"),
    ({"message_id": "m2", "type": "open"}, "open on sms message"),
    ({"occurred_at": "2024-12-31T23:59:59.999Z"}, "event before message sent"),
    ({"event_id": "e\x001"}, "control character in event_id"),
    ({"bot_kind": "crawler\r\nx"}, "control character in bot_kind"),
]


@pytest.mark.parametrize(("change", "reason"), EVENT_RULES)
def test_event_rule(run, event_row, change: dict[str, Any], reason: str) -> None:
    good = {**event_row, "event_id": "e0"}
    bad = {**event_row, "event_id": "e1", "label": None, **change}
    result = run(events=[good, bad])
    assert reasons(result, "events") == [reason]
    assert result.events["event_id"].tolist() == ["e0"]
    assert result.quarantine.iloc[0]["row_number"] == 1
    assert_counts_add_up(result)


def test_events_of_a_quarantined_message_are_quarantined(
    run, message_row, sms_message_row, event_row
) -> None:
    result = run(
        [{**message_row, "channel": "fax"}, sms_message_row],
        [event_row, {**event_row, "event_id": "e2"}],
    )
    assert reasons(result, "events") == ["quarantined message", "quarantined message"]
    assert result.events.empty


def test_duplicate_event_ids_keep_the_first_and_are_counted(run, event_row) -> None:
    first = {**event_row, "user_agent": "first"}
    result = run(events=[first, {**event_row, "event_id": "e2"}, dict(first), dict(first)])
    report = result.report.tables["events"]
    assert (report.read, report.kept, report.duplicates, report.quarantined_total) == (4, 2, 2, 0)
    assert result.events["user_agent"].tolist() == ["first", "Mozilla/5.0"]


def test_a_duplicate_delivery_with_other_values_counts_once(run, event_row) -> None:
    """PRODUCT.md: a repeated (tenant_id, event_id) is a duplicate delivery of the same event,
    and duplicate event_ids count once. The first delivery is kept; a later one with other
    values is quarantined (issue 14 item 14: never silently dropped), an identical one is a
    duplicate. Every row of the id used to be quarantined, so the event counted zero times."""
    first = {**event_row, "user_agent": "first"}
    again = {**event_row, "user_agent": "second"}
    result = run(events=[first, {**event_row, "event_id": "e2"}, again, dict(first)])
    assert reasons(result, "events") == ["conflicting duplicate event_id"]
    assert result.quarantine["row_number"].tolist() == [2]
    assert result.events["event_id"].tolist() == ["e1", "e2"]
    assert result.events["user_agent"].tolist() == ["first", "Mozilla/5.0"]
    report = result.report.tables["events"]
    assert (report.read, report.kept, report.duplicates, report.quarantined_total) == (4, 2, 1, 1)
    assert_counts_add_up(result)


def test_duplicate_event_after_a_broken_copy_is_kept(run, event_row) -> None:
    result = run(events=[{**event_row, "ip": "nope"}, event_row])
    assert reasons(result, "events") == ["invalid ip"]
    assert result.events["event_id"].tolist() == ["e1"]
    assert result.report.tables["events"].duplicates == 0


def test_link_position_is_only_bounded_below_when_link_count_is_unknown(
    run, message_row, event_row
) -> None:
    message = {**message_row, "link_count": None}
    result = run([message], [{**event_row, "link_position": 40}])
    assert result.events["link_position"].tolist() == [40]


# --------------------------------------------------------------------------- other tables


def test_segments_rules_and_duplicates(run) -> None:
    rows = [
        {"tenant_id": "t1", "segment_id": "s1", "contact_id": "k1"},
        {"tenant_id": "t1", "segment_id": "s1", "contact_id": "k1"},
        {"tenant_id": "t1", "segment_id": None, "contact_id": "k2"},
        {"tenant_id": "t1", "segment_id": "s1", "contact_id": "k2"},
    ]
    result = run(segments=pd.DataFrame(rows))
    report = result.report.tables["segments"]
    assert (report.read, report.kept, report.duplicates) == (4, 2, 1)
    assert reasons(result, "segments") == ["missing required field: segment_id"]
    assert result.segments["contact_id"].tolist() == ["k1", "k2"]


def test_segments_repeat_only_when_all_three_ids_do_and_scoring_keeps_none(
    message_row, event_row
) -> None:
    """A segment row repeats another only if tenant, segment and contact all match; with
    ``columns={"segments": ()}`` (``botfilter score``) the counts are the same and the clean
    frame holds no column."""
    from contract.readers import raw_from_pandas
    from contract.validate import validate_raw

    rows = [
        ("t1", "s1", "k1"),
        ("t1", "s1", "k1"),  # the one repeat
        ("t1", "s2", "k1"),
        ("t2", "s1", "k1"),
        ("t1", "s1", "k2"),
        ("t2", "s2", "k2"),
        ("t1", None, "k1"),
        ("t1", None, "k1"),  # quarantined twice, never a repeat
    ]
    segments = pd.DataFrame(rows, columns=["tenant_id", "segment_id", "contact_id"])
    raws = {
        "messages": raw_from_pandas("messages", frame([message_row], message_row)),
        "events": raw_from_pandas("events", frame([event_row], event_row)),
        "segments": raw_from_pandas("segments", segments),
    }
    full = validate_raw(raws)
    report = full.report.tables["segments"]
    assert (report.read, report.kept, report.duplicates) == (8, 5, 1)
    kept = full.segments[["tenant_id", "segment_id", "contact_id"]].values.tolist()
    assert kept == [list(r) for r in rows[:1] + rows[2:6]]
    none = validate_raw(raws, columns={"segments": ()})
    assert none.report.as_dict() == full.report.as_dict()
    pd.testing.assert_frame_equal(none.quarantine, full.quarantine)
    assert list(none.segments.columns) == []


def test_settings_rules_and_conflicts(run) -> None:
    rows = [
        {"tenant_id": "t1", "exclude_bots_email": "yes", "exclude_bots_sms": "0",
         "updated_at": "2025-01-01T00:00:00Z"},
        {"tenant_id": "t2", "exclude_bots_email": "perhaps", "exclude_bots_sms": "false",
         "updated_at": "2025-01-01T00:00:00Z"},
        {"tenant_id": "t3", "exclude_bots_email": True, "exclude_bots_sms": False,
         "updated_at": "2025-01-01T00:00:00Z"},
        {"tenant_id": "t3", "exclude_bots_email": False, "exclude_bots_sms": False,
         "updated_at": "2025-01-02T00:00:00Z"},
        {"tenant_id": "t1", "exclude_bots_email": "TRUE", "exclude_bots_sms": "no",
         "updated_at": "2025-01-01T00:00:00+00:00"},
    ]  # fmt: skip
    result = run(settings=pd.DataFrame(rows))
    assert reasons(result, "settings") == [
        "invalid bool: exclude_bots_email",
        "conflicting duplicate tenant_id",
        "conflicting duplicate tenant_id",
    ]
    assert result.settings.to_dict("records") == [
        {
            "tenant_id": "t1",
            "exclude_bots_email": True,
            "exclude_bots_sms": False,
            "updated_at": pd.Timestamp("2025-01-01", tz="UTC"),
        }
    ]
    assert result.report.tables["settings"].duplicates == 1


# --------------------------------------------------------------------------- valid edge cases

VALID_IPS = [
    "203.0.113.7",
    "0.0.0.0",
    "255.255.255.255",
    "2001:0db8:0000:0000:0000:ff00:0042:8329",
    "2001:db8::ff00:42:8329",
    "2001:DB8::1",
    "::",
    "::1",
    "fe80::",
    "::ffff:192.0.2.128",
    "64:ff9b::192.0.2.33",
    "1:2:3:4:5:6:192.0.2.1",
]


def test_valid_ips_are_kept_as_given(run, event_row) -> None:
    events = [{**event_row, "event_id": f"e{i}", "ip": ip} for i, ip in enumerate(VALID_IPS)]
    result = run(events=events)
    assert reasons(result, "events") == []
    assert result.events["ip"].tolist() == VALID_IPS


def test_odd_user_agents_are_kept_byte_for_byte(run, event_row) -> None:
    agents = [
        "Mozilla/5.0 " + "x" * 20_000,
        'Браузер/1.0 (測試; 🤖) "quoted", comma; semicolon',
        "  leading and trailing spaces  ",
        "tab\there\\backslash",
    ]
    events = [{**event_row, "event_id": f"e{i}", "user_agent": ua} for i, ua in enumerate(agents)]
    result = run(events=events)
    assert result.events["user_agent"].tolist() == agents


def test_timestamps_of_every_accepted_form_become_utc(run, event_row) -> None:
    forms = {
        "2025-01-01T10:00:00+05:30": "2025-01-01T04:30:00",
        "2025-01-01T10:00:00-0800": "2025-01-01T18:00:00",
        "2025-01-01T10:00:00+02": "2025-01-01T08:00:00",
        "2025-01-01T10:00:00Z": "2025-01-01T10:00:00",
        "2025-01-01t10:00:00z": "2025-01-01T10:00:00",
        "2025-01-01T10:00:00": "2025-01-01T10:00:00",  # no offset: UTC
        "2025-01-01 10:00": "2025-01-01T10:00:00",
        "2025-01-01T10:00:00.123456789": "2025-01-01T10:00:00.123456789",
        "2025-01-02": "2025-01-02T00:00:00",
        "1735725600000": "2025-01-01T10:00:00",  # epoch milliseconds as text
        "1735725600000.0": "2025-01-01T10:00:00",  # ... as pandas writes a float column
        1735725600123: "2025-01-01T10:00:00.123",  # epoch milliseconds as a number
    }
    events = [
        {**event_row, "event_id": f"e{i}", "occurred_at": value} for i, value in enumerate(forms)
    ]
    result = run(events=events)
    assert reasons(result, "events") == []
    assert result.events["occurred_at"].tolist() == [
        pd.Timestamp(v, tz="UTC") for v in forms.values()
    ]


def test_native_timestamps_naive_means_utc(message_row, event_row) -> None:
    events = pd.DataFrame([event_row, {**event_row, "event_id": "e2"}])
    events["occurred_at"] = pd.to_datetime(["2025-01-01 00:01", "2025-01-01 00:02"])
    messages = pd.DataFrame([message_row])
    messages["sent_at"] = pd.Timestamp("2025-01-01T05:30", tz="Asia/Kolkata")
    result = validate_tables({"messages": messages, "events": events})
    assert result.messages["sent_at"].tolist() == [pd.Timestamp("2025-01-01", tz="UTC")]
    assert result.events["occurred_at"].tolist() == [
        pd.Timestamp("2025-01-01 00:01", tz="UTC"),
        pd.Timestamp("2025-01-01 00:02", tz="UTC"),
    ]


def test_empty_strings_are_missing_values(run, message_row, event_row) -> None:
    message = {
        **message_row,
        "campaign_id": "",
        "automation_id": "a1",
        "delivered_at": "",
        "link_count": "",
    }
    event = {**event_row, "ip": "", "user_agent": "", "url": " ", "link_position": "", "asn": ""}
    result = run([message], [event])
    assert reasons(result, "messages") + reasons(result, "events") == []
    m, e = result.messages.iloc[0], result.events.iloc[0]
    assert m["campaign_id"] is None and m["delivered_at"] is pd.NaT and m["link_count"] is pd.NA
    assert e["ip"] is None and e["user_agent"] is None and e["url"] is None
    assert e["link_position"] is pd.NA and e["asn"] is pd.NA


def test_missing_optional_columns_become_empty_columns(message_row, event_row) -> None:
    messages = pd.DataFrame([{k: message_row[k] for k in MESSAGES.required}])
    events = pd.DataFrame([{k: event_row[k] for k in EVENTS.required}])
    result = validate_tables({"messages": messages, "events": events})
    assert list(result.messages.columns) == MESSAGES.names
    assert list(result.events.columns) == EVENTS.names
    assert result.events["ip"].tolist() == [None]
    assert result.events["is_hidden_link"].isna().all()


def test_identifiers_stay_text_and_numbers_become_digits(run, message_row, event_row) -> None:
    result = run(
        [{**message_row, "message_id": "007", "contact_id": 42}],
        [{**event_row, "message_id": "007"}],
    )
    assert result.messages["message_id"].tolist() == ["007"]
    assert result.messages["contact_id"].tolist() == ["42"]
    assert result.events["message_id"].tolist() == ["007"]


def test_normalised_values(run, message_row, event_row) -> None:
    result = run(
        [{**message_row, "channel": " EMAIL ", "recipient_domain": "Example.COM"}],
        [{**event_row, "type": "Click", "http_method": "head", "label": "BOT", "asn": "AS13335",
          "is_hidden_link": "Yes", "link_position": "2"}],
    )  # fmt: skip
    m, e = result.messages.iloc[0], result.events.iloc[0]
    assert (m["channel"], m["recipient_domain"]) == ("email", "example.com")
    assert (e["type"], e["http_method"], e["label"], e["asn"]) == ("click", "HEAD", "bot", 13335)
    assert (e["is_hidden_link"], e["link_position"]) == (True, 2)


def test_integers_written_as_floats_by_pandas_are_accepted(run, event_row) -> None:
    events = [{**event_row, "event_id": f"e{i}", "link_position": v, "asn": v} for i, v in
              enumerate(["2.0", "0.00", 1.0])]  # fmt: skip
    result = run(events=events)
    assert result.events["link_position"].tolist() == [2, 0, 1]
    assert str(result.events["asn"].dtype) == "Int64"


def test_extra_columns_are_kept(message_row, event_row) -> None:
    tables = {
        "messages": frame([message_row], message_row).assign(subject="Hello"),
        "events": frame([event_row], event_row).assign(country="NZ"),
    }
    result = validate_tables(tables)
    assert list(result.messages.columns) == [*MESSAGES.names, "subject"]
    assert result.events["country"].tolist() == ["NZ"]


# --------------------------------------------------------------------------- shapes and counts


def test_clean_dtypes(run, message_row, event_row) -> None:
    result = run([message_row], [event_row])
    dtypes = {**result.messages.dtypes.astype(str), **result.events.dtypes.astype(str)}
    assert dtypes["message_id"] == dtypes["user_agent"] == dtypes["channel"] == "object"
    assert (
        dtypes["sent_at"]
        == dtypes["delivered_at"]
        == dtypes["occurred_at"]
        == "datetime64[ns, UTC]"
    )
    assert dtypes["link_count"] == dtypes["link_position"] == dtypes["asn"] == "Int64"
    assert dtypes["is_hidden_link"] == "boolean"
    assert type(result.events["event_id"].iloc[0]) is str
    assert str(result.settings.dtypes["exclude_bots_email"]) == "boolean"
    assert list(result.segments.columns) == SEGMENTS.names
    assert list(result.settings.columns) == SETTINGS.names
    assert list(result.quarantine.columns) == ["table", "row_number", "record", "reason"]


def test_row_order_is_kept(run, event_row) -> None:
    events = [{**event_row, "event_id": f"e{i}"} for i in (5, 3, 9, 1)]
    events.insert(2, {**event_row, "event_id": "bad", "type": "x"})
    result = run(events=events)
    assert result.events["event_id"].tolist() == ["e5", "e3", "e9", "e1"]
    assert result.events.index.tolist() == [0, 1, 2, 3]


def test_quarantine_record_is_the_original_row(run, event_row) -> None:
    bad = {**event_row, "ip": "x", "occurred_at": "2025-01-01T10:00:00+05:30", "asn": "AS1"}
    result = run(events=[bad])
    assert json.loads(result.quarantine.iloc[0]["record"]) == bad


def test_report_counts_and_printing(run, message_row, sms_message_row, event_row) -> None:
    result = run(
        [message_row, message_row, {**sms_message_row, "channel": "fax"}],
        [event_row, event_row, {**event_row, "event_id": "e2", "message_id": "m2"}],
    )
    assert result.report.as_dict()["events"] == {
        "table": "events",
        "source": "events",
        "read": 3,
        "kept": 1,
        "quarantined": 1,
        "duplicates": 1,
        "reasons": {"quarantined message": 1},
    }
    console = Console(record=True, width=120)
    result.report.print(console)
    text = console.export_text()
    assert "unknown channel: fax" in text and "quarantined message" in text


def test_counts_that_do_not_add_up_raise() -> None:
    with pytest.raises(CountMismatch, match="read 5 rows but accounted for 4"):
        TableReport("events", "events.csv", read=5, kept=3, duplicates=0, quarantined={"x": 1})


def test_required_tables_and_columns(message_row, event_row) -> None:
    with pytest.raises(BotfilterError, match="missing required table: events"):
        validate_tables({"messages": frame([message_row], message_row)})
    events = frame([event_row], event_row).drop(columns=["occurred_at", "type"])
    with pytest.raises(
        BotfilterError, match="^events: missing required columns: type, occurred_at$"
    ):
        validate_tables({"messages": frame([message_row], message_row), "events": events})


def test_unusable_column_type_fails_with_the_column_name(message_row, event_row) -> None:
    events = frame([event_row], event_row)
    events["occurred_at"] = [{"nested": 1}]
    result = validate_tables({"messages": frame([message_row], message_row), "events": events})
    assert reasons(result, "events") == ["unparseable timestamp: occurred_at"]


def test_write_then_load_round_trips(
    run, message_row, sms_message_row, event_row, tmp_path
) -> None:
    import contract

    result = run(
        [message_row, sms_message_row],
        [event_row, {**event_row, "event_id": "e2", "type": "nope"}],
        segments=pd.DataFrame([{"tenant_id": "t1", "segment_id": "s1", "contact_id": "k1"}]),
    )
    paths = result.write(tmp_path)
    assert sorted(p.name for p in paths.values()) == [
        "events.parquet",
        "messages.parquet",
        "quarantine.parquet",
        "segments.parquet",
        "settings.parquet",
    ]
    again = contract.load(tmp_path)
    for name in ("messages", "events", "segments", "settings"):
        pd.testing.assert_frame_equal(getattr(again, name), getattr(result, name))
    assert pd.read_parquet(tmp_path / "quarantine.parquet")["reason"].tolist() == [
        "unknown type: nope"
    ]


# --------------------------------------------------------------------------- the API path


def test_event_rows_with_message_context(api_row) -> None:
    rows = [
        api_row(event_id="ok"),
        api_row(event_id="sms-open", channel="sms", type="open"),
        api_row(event_id="early", sent_at="2025-01-01T00:02:00Z", delivered_at=None),
        api_row(event_id="far", link_position=7),
        api_row(event_id="fax", channel="fax"),
        api_row(event_id="both", automation_id="a1"),
        api_row(event_id="ip", ip="300.1.1.1"),
        api_row(event_id="ok2", ip="::ffff:10.0.0.1", occurred_at=1735689660000),
    ]
    clean, why = validate_event_rows(pd.DataFrame(rows, index=[10, 11, 12, 13, 14, 15, 16, 17]))
    assert clean["event_id"].tolist() == ["ok", "ok2"]
    assert clean.index.tolist() == [0, 7]
    assert why.to_dict() == {
        1: "open on sms message",
        2: "event before message sent",
        3: "link_position out of range",
        4: "unknown channel: fax",
        5: "both campaign_id and automation_id set",
        6: "invalid ip",
    }
    expected = [*EVENTS.names, *(n for n in MESSAGE_CONTEXT if n not in EVENTS.names)]
    assert list(clean.columns) == expected
    assert str(clean["sent_at"].dtype) == "datetime64[ns, UTC]"
    assert str(clean["link_count"].dtype) == "Int64"
    assert clean["occurred_at"].iloc[1] == pd.Timestamp("2025-01-01T00:01:00", tz="UTC")


def test_event_rows_need_the_context_columns(api_row) -> None:
    rows = pd.DataFrame([api_row()]).drop(columns=["channel", "sent_at"])
    with pytest.raises(BotfilterError, match="missing required columns: channel, sent_at"):
        validate_event_rows(rows)


def test_event_rows_without_failures_give_an_empty_reason_series(api_row) -> None:
    clean, why = validate_event_rows(pd.DataFrame([api_row()]))
    assert len(clean) == 1 and why.empty and why.dtype == object


def test_one_rule_code_for_both_paths(run, event_row, api_row) -> None:
    """The batch path and the API path give the same reason for the same broken event."""
    broken = {"occurred_at": "2024-12-31T00:00:00Z"}
    batch = run(events=[{**event_row, **broken}])
    _, why = validate_event_rows(pd.DataFrame([api_row(**broken)]))
    assert reasons(batch, "events") == why.tolist() == ["event before message sent"]


def test_large_batch_is_vectorised(api_row) -> None:
    n = 20_000
    rows = pd.DataFrame([api_row()] * n)
    rows["event_id"] = [f"e{i}" for i in range(n)]
    rows.loc[::2, "ip"] = "bad ip"
    clean, why = validate_event_rows(rows)
    assert len(clean) == n // 2 and (why == "invalid ip").sum() == n // 2
    assert np.array_equal(why.index.to_numpy(), np.arange(0, n, 2))


def test_padding_and_blanks_are_found_in_any_chunk() -> None:
    import pyarrow as pa

    from contract.columns import blank_to_null

    chunks = pa.chunked_array(
        [pa.array(["a", "b", "c"]).slice(1), pa.array(["\u00a0d\t", "\u3000", "é"])]
    )
    assert blank_to_null(chunks).to_pylist() == ["b", "c", "d", None, "é"]
    assert blank_to_null(chunks, trim=False).to_pylist() == ["b", "c", "\u00a0d\t", None, "é"]
    clean = pa.array(["x", None, "y"])
    assert blank_to_null(clean) is clean  # nothing to trim: no copy


def test_nested_context_values_are_judged_as_their_json_text(api_row) -> None:
    """A JSON array or object in a message-context column is judged as its JSON text (as in a
    JSON Lines file, and as in the events' own columns); it used to fail the whole batch. In
    an identifier it is refused (identifiers are strings), not made an id of its JSON text."""
    rows = pd.DataFrame(
        [
            api_row(campaign_id=["a", 1]),
            api_row(recipient_domain={"x": 1}),
            api_row(channel=["email"]),
            api_row(link_count=[3]),
            api_row(),
        ]
    )
    clean, why = validate_event_rows(rows)
    assert clean.index.tolist() == [4]
    for row, reason in why.items():  # alone, the column holds nothing but nested values
        assert validate_event_rows(rows.iloc[[row]])[1].tolist() == [reason]
    assert why.to_dict() == {
        0: "invalid identifier: campaign_id must be a string, not an array",
        1: "invalid recipient_domain",  # '{"x": 1}' holds a space
        2: 'unknown channel: ["email"]',
        3: "invalid integer: link_count",
    }


def test_text_that_cannot_be_utf8_is_refused_by_row(api_row) -> None:
    """Python's JSON decoder lets lone surrogates through; such a row is refused, not a crash."""
    rows = pd.DataFrame([api_row(user_agent="\ud800"), api_row(), api_row(extra=["\udfff"])])
    clean, why = validate_event_rows(rows)
    assert clean.index.tolist() == [1]
    assert why.to_dict() == {0: "invalid UTF-8 text", 2: "invalid UTF-8 text"}


def test_signed_numbers_as_text(api_row) -> None:
    rows = pd.DataFrame(
        [api_row(link_position="+2", occurred_at="+1735689660000.0"), api_row(link_position="-0")]
    )
    clean, why = validate_event_rows(rows)
    assert why.empty
    assert clean["link_position"].tolist() == [2, 0]
    assert clean["occurred_at"].iloc[0] == pd.Timestamp("2025-01-01T00:01:00", tz="UTC")


@pytest.mark.parametrize(
    ("column", "value", "others"),
    [
        ("link_position", True, [1.5]),  # Arrow reads [1.5, True] as floats
        ("event_id", True, [1.5]),
        ("occurred_at", True, [1.5]),
        ("event_id", 1e20, ["x"]),  # a float among text, and in a float column
        ("event_id", 1e-7, ["x"]),
        ("link_count", 2**63 - 1, ["x"]),  # an int64 among text: 19 digits
        ("link_count", 9.2e18, ["x"]),
        ("occurred_at", 1e20, ["2025-01-01"]),
        ("occurred_at", "2025-01-01T00:01:00.123456789Z", ["2025-13-01T00:00:00Z"]),
        ("event_id", 2**62 + 1, ["x"]),
        ("is_hidden_link", True, [1.5]),
    ],
)
def test_a_value_is_judged_alike_whatever_its_neighbours(
    api_row, column: str, value: Any, others: list[Any]
) -> None:
    """Arrow types a column by all its values; one value's verdict must not depend on them."""
    alone = validate_event_rows(frame([api_row(**{column: value})], api_row()))
    mixed = [api_row(**{column: v}) for v in others] + [api_row(**{column: value})]
    last = len(others)
    among = validate_event_rows(frame(mixed, api_row()))
    assert among[1].to_dict().get(last) == alone[1].to_dict().get(0)
    assert (last in among[0].index) == (0 in alone[0].index)
    if 0 in alone[0].index:
        got = among[0].loc[last].rename(0)
        pd.testing.assert_series_equal(got, alone[0].loc[0], check_dtype=False)


def test_python_strips_exactly_the_whitespace_arrow_trims() -> None:
    """The one-value parsers strip with ``str.strip``, the column parsers with Arrow."""
    import pyarrow as pa
    import pyarrow.compute as pc

    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000]
    trimmed = pc.utf8_trim_whitespace(pa.array(chars)).to_pylist()
    arrow = {c for c, t in zip(chars, trimmed, strict=True) if t == ""}
    assert arrow == {c for c in chars if not c.strip()}
    assert len(arrow) == 29


def as_text(rows: pd.DataFrame) -> pd.DataFrame:
    """Every value as text, missing ones as empty strings (a CSV export in Parquet)."""
    return rows.astype(object).where(rows.notna(), "").astype(str)


def test_chunked_parquet_gives_the_same_verdicts_as_frames(
    message_row, sms_message_row, event_row, tmp_path: Path
) -> None:
    """Many small row groups (sliced Arrow chunks) take the same paths as one array."""
    events = [
        {**event_row, "event_id": f"e{i}", **change} for i, (change, _) in enumerate(EVENT_RULES)
    ]
    events += [{**event_row, "event_id": f"ok{i}", "user_agent": f" ua {i} "} for i in range(7)]
    frames = {name: as_text(pd.DataFrame(rows)) for name, rows in
              (("messages", [message_row, sms_message_row]), ("events", events))}  # fmt: skip
    for name, rows in frames.items():
        pq.write_table(
            pa.Table.from_pandas(rows, preserve_index=False),
            tmp_path / f"{name}.parquet",
            row_group_size=3,
        )
    from_files = contract.load(tmp_path)
    in_memory = validate_tables(frames)
    pd.testing.assert_frame_equal(from_files.events, in_memory.events)
    expected = [reason for _, reason in EVENT_RULES]
    assert from_files.quarantine["reason"].tolist() == in_memory.quarantine["reason"].tolist()
    q = from_files.quarantine
    assert list(zip(q["row_number"], q["reason"], strict=True)) == list(enumerate(expected))
    assert from_files.events["user_agent"].tolist() == [f" ua {i} " for i in range(7)]


def test_referenced_only_keeps_the_events_context_and_every_count(
    message_row, sms_message_row, event_row
) -> None:
    """``validate_raw(referenced_only=True)`` (what ``botfilter score`` runs) types only the
    messages a clean event names, yet every count, quarantined row and clean event is the full
    validation's, and so is each event's context."""
    from contract.readers import raw_from_pandas
    from contract.validate import validate_raw
    from features.pipeline import event_context

    lonely = {**message_row, "message_id": "m7"}  # no event names it
    broken = {**message_row, "message_id": "m8", "sent_at": "not a time"}
    clash = [
        {**message_row, "message_id": "m3"},
        {**message_row, "message_id": "m3", "contact_id": "k9"},
    ]
    theirs = {**message_row, "tenant_id": "t2", "contact_id": "k5"}  # t2's own m1
    messages = [lonely, message_row, sms_message_row, dict(message_row), broken, *clash, theirs]
    events = [
        event_row,
        {**event_row, "event_id": "e2", "message_id": "m2", "type": "click", "link_position": 0},
        {**event_row, "event_id": "e3", "message_id": "m3"},  # its message is quarantined
        {**event_row, "event_id": "e4", "message_id": "m404"},  # unknown message
        {**event_row, "event_id": "e5", "tenant_id": "t2"},
        {**event_row, "event_id": "e6"},
    ]
    raws = {
        "messages": raw_from_pandas("messages", frame(messages, message_row).assign(subject="Hi")),
        "events": raw_from_pandas("events", frame(events, event_row)),
    }
    full = validate_raw(raws)
    part = validate_raw(raws, referenced_only=True)
    assert part.report.as_dict() == full.report.as_dict()
    pd.testing.assert_frame_equal(part.quarantine, full.quarantine)
    pd.testing.assert_frame_equal(part.events, full.events)
    assert part.messages[["tenant_id", "message_id"]].values.tolist() == [
        ["t1", "m1"],
        ["t1", "m2"],
        ["t2", "m1"],
    ]
    named = full.messages[full.messages["message_id"] != "m7"].reset_index(drop=True)
    pd.testing.assert_frame_equal(part.messages, named)
    assert part.event_messages is not None and part.event_messages.tolist() == [0, 1, 2, 0]
    assert full.event_messages is None
    got = event_context(part.messages, part.events, part.event_messages)
    pd.testing.assert_frame_equal(got, event_context(full.messages, full.events))
    assert got["contact_id"].tolist() == ["k1", "k1", "k5", "k1"]


def test_validation_of_some_columns_still_checks_every_column(
    message_row, sms_message_row, event_row
) -> None:
    """``validate_raw(columns=...)`` (``botfilter score`` keeps only what it scores) holds only
    those columns in the clean frames, yet its duplicate checks still compare every column: two
    deliveries of one event that differ in ``url`` alone, which is not kept, still conflict."""
    from contract.readers import raw_from_pandas
    from contract.validate import validate_raw

    messages = [message_row, sms_message_row, {**message_row, "message_id": "m7"}]
    events = [
        event_row,
        dict(event_row),  # a duplicate delivery: dropped
        {
            **event_row,
            "event_id": "e2",
            "message_id": "m2",
            "link_position": 0,
            "url": "https://a.example/x",
        },
        {
            **event_row,
            "event_id": "e2",
            "message_id": "m2",
            "link_position": 0,
            "url": "https://a.example/y",
        },
        {**event_row, "event_id": "e3", "label": "bot", "bot_kind": "crawler"},
    ]
    raws = {
        "messages": raw_from_pandas("messages", frame(messages, message_row).assign(subject="Hi")),
        "events": raw_from_pandas("events", frame(events, event_row)),
    }
    keep_events = ["occurred_at", "event_id", "tenant_id", "message_id", "ip"]
    keep_messages = ["channel", "contact_id"]
    columns = {"events": keep_events, "messages": keep_messages}
    full = validate_raw(raws, referenced_only=True)
    some = validate_raw(raws, referenced_only=True, columns=columns)
    assert some.report.as_dict() == full.report.as_dict()
    pd.testing.assert_frame_equal(some.quarantine, full.quarantine)
    assert some.quarantine["reason"].tolist() == ["conflicting duplicate event_id"]
    assert list(some.events.columns) == ["event_id", "tenant_id", "message_id", "occurred_at", "ip"]
    pd.testing.assert_frame_equal(some.events, full.events[list(some.events.columns)])
    assert list(some.messages.columns) == ["channel", "contact_id"]
    pd.testing.assert_frame_equal(some.messages, full.messages[["channel", "contact_id"]])
    assert some.event_messages is not None and full.event_messages is not None
    assert some.event_messages.tolist() == full.event_messages.tolist()
    with pytest.raises(ValueError, match="events: no such columns: nope"):
        validate_raw(raws, columns={"events": ["event_id", "nope"]})


def test_arrow_validation_keeps_the_same_rows_values_and_counts(
    message_row, sms_message_row, event_row
) -> None:
    """``validate_raw_arrow`` (the Spark engine's validation groups) hands the clean tables back
    as Arrow: the same rows and values as ``validate_raw``'s pandas tables (duplicates, nulls,
    conflicts, quarantine and counts included)."""
    import pyarrow as pa

    from contract.readers import raw_from_pandas
    from contract.validate import validate_raw, validate_raw_arrow

    broken = {**message_row, "message_id": "m8", "sent_at": "not a time"}
    clash = [
        {**message_row, "message_id": "m3"},
        {**message_row, "message_id": "m3", "contact_id": "k9"},
    ]
    undelivered = {**message_row, "message_id": "m4", "delivered_at": None, "link_count": None}
    messages = [message_row, sms_message_row, dict(message_row), broken, *clash, undelivered]
    events = [
        event_row,
        dict(event_row),  # a duplicate delivery
        {**event_row, "event_id": "e2", "message_id": "m2", "type": "click", "link_position": 0},
        {**event_row, "event_id": "e3", "message_id": "m3"},  # its message is quarantined
        {**event_row, "event_id": "e4", "message_id": "m404"},  # unknown message
        {**event_row, "event_id": "e5"},
        {**event_row, "event_id": "e5", "type": "click"},  # conflicting duplicate
        {**event_row, "event_id": "e6", "asn": None, "is_hidden_link": None, "ip": None},
    ]
    raws = {
        "messages": raw_from_pandas("messages", frame(messages, message_row)),
        "events": raw_from_pandas("events", frame(events, event_row)),
    }
    want = validate_raw(raws)
    got = validate_raw_arrow(raws)
    assert got.report.as_dict() == want.report.as_dict()
    pd.testing.assert_frame_equal(got.quarantine, want.quarantine)
    assert len(want.quarantine) >= 4
    for name, table in got.tables.items():
        assert isinstance(table, pa.Table)
        assert table.column_names == TABLES[name].names
        expected = pa.Table.from_pandas(want.tables[name][TABLES[name].names], preserve_index=False)
        assert table.num_rows == expected.num_rows
        for column in TABLES[name].names:
            assert table.column(column).to_pylist() == expected.column(column).to_pylist(), column
    assert got.tables["events"].column("event_id").to_pylist() == ["e1", "e2", "e5", "e6"]
    assert got.tables["events"].column("asn").null_count == 1
