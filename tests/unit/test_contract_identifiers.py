"""Identifiers are strings (PRODUCT.md "Input data"): an object, an array or a boolean given for
one is quarantined in every table and every reader, with the online API's words; numbers stay
accepted as their digits. And a JSON Lines file without records is a table without rows."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import contract
from contract.readers import read_table_file
from contract.schema import TABLES
from contract.validate import validate_tables
from core.errors import BotfilterError

MESSAGE = {
    "message_id": "m1",
    "tenant_id": "t1",
    "channel": "email",
    "campaign_id": "c1",
    "contact_id": "k1",
    "sent_at": "2025-01-01T00:00:00Z",
    "delivered_at": "2025-01-01T00:00:01Z",
    "link_count": 2,
}
EVENT = {
    "event_id": "e1",
    "tenant_id": "t1",
    "message_id": "m1",
    "type": "open",
    "occurred_at": "2025-01-01T00:01:00Z",
}
SEGMENT = {"tenant_id": "t1", "segment_id": "s1", "contact_id": "k1"}
SETTING = {
    "tenant_id": "t1",
    "exclude_bots_email": True,
    "exclude_bots_sms": False,
    "updated_at": "2025-01-01T00:00:00Z",
}


def why(column: str, kind: str) -> str:
    return f"invalid identifier: {column} must be a string, not {kind}"


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def quarantined(result: contract.Validated) -> list[tuple[str, int, str]]:
    q = result.quarantine
    return list(zip(q["table"], q["row_number"].tolist(), q["reason"], strict=True))


def test_jsonl_identifiers_that_are_objects_arrays_or_booleans_are_quarantined(
    tmp_path: Path,
) -> None:
    """The probe: {"a": 1}, [1] and true were kept as the ids '{"a": 1}', '[1]' and 'true', and
    a tenant_id false became tenant "false"."""
    write_jsonl(
        tmp_path / "messages.jsonl",
        [
            MESSAGE,
            {**MESSAGE, "message_id": {"a": 1}},
            {**MESSAGE, "message_id": "m3", "tenant_id": False},
            {**MESSAGE, "message_id": "m4", "campaign_id": [1]},
            {**MESSAGE, "message_id": "m5", "campaign_id": None, "automation_id": True},
            {**MESSAGE, "message_id": "m6", "contact_id": {}},
            {**MESSAGE, "message_id": 102.0},  # a number: its digits, as before
        ],
    )
    write_jsonl(
        tmp_path / "events.jsonl",
        [
            EVENT,
            {**EVENT, "event_id": {"a": 1}},
            {**EVENT, "event_id": [1]},
            {**EVENT, "event_id": True},
            {**EVENT, "event_id": "e5", "tenant_id": False},
            {**EVENT, "event_id": "e6", "message_id": ["m1"]},
            {**EVENT, "event_id": 7, "message_id": 102},
            {**EVENT, "event_id": "e8", "message_id": "m4"},  # its message was quarantined
            {**EVENT, "event_id": [], "type": "bounce"},  # the identifier's reason comes first
        ],
    )
    write_jsonl(
        tmp_path / "segments.jsonl",
        [SEGMENT, {**SEGMENT, "segment_id": ["s"]}, {**SEGMENT, "contact_id": True}],
    )
    write_jsonl(tmp_path / "settings.jsonl", [SETTING, {**SETTING, "tenant_id": {"id": "t2"}}])
    result = contract.load(tmp_path)
    assert quarantined(result) == [
        ("messages", 1, why("message_id", "an object")),
        ("messages", 2, why("tenant_id", "a boolean")),
        ("messages", 3, why("campaign_id", "an array")),
        ("messages", 4, why("automation_id", "a boolean")),
        ("messages", 5, why("contact_id", "an object")),
        ("events", 1, why("event_id", "an object")),
        ("events", 2, why("event_id", "an array")),
        ("events", 3, why("event_id", "a boolean")),
        ("events", 4, why("tenant_id", "a boolean")),
        ("events", 5, why("message_id", "an array")),
        ("events", 7, "unknown message"),
        ("events", 8, why("event_id", "an array")),
        ("segments", 1, why("segment_id", "an array")),
        ("segments", 2, why("contact_id", "a boolean")),
        ("settings", 1, why("tenant_id", "an object")),
    ]
    assert result.messages["message_id"].tolist() == ["m1", "102"]
    assert result.events["event_id"].tolist() == ["e1", "7"]
    assert result.events["message_id"].tolist() == ["m1", "102"]
    assert result.segments["segment_id"].tolist() == ["s1"]
    assert result.settings["tenant_id"].tolist() == ["t1"]
    report = result.report.tables
    assert (report["events"].read, report["events"].kept) == (9, 2)
    assert report["messages"].quarantined == {
        why("message_id", "an object"): 1,
        why("tenant_id", "a boolean"): 1,
        why("campaign_id", "an array"): 1,
        why("automation_id", "a boolean"): 1,
        why("contact_id", "an object"): 1,
    }
    # the record is the line as written
    assert json.loads(result.quarantine["record"].iloc[5])["event_id"] == {"a": 1}


def test_jsonl_identifier_column_of_booleans_only_is_quarantined(tmp_path: Path) -> None:
    """Every line's id a boolean: Arrow reads the column as booleans (no mixed types)."""
    write_jsonl(tmp_path / "messages.jsonl", [MESSAGE])
    write_jsonl(
        tmp_path / "events.jsonl",
        [{**EVENT, "tenant_id": False}, {**EVENT, "event_id": "e2", "tenant_id": True}],
    )
    result = contract.load(tmp_path)
    assert quarantined(result) == [
        ("events", 0, why("tenant_id", "a boolean")),
        ("events", 1, why("tenant_id", "a boolean")),
    ]
    assert result.events.empty


def test_jsonl_line_set_aside_for_its_id_keeps_the_file_columns(tmp_path: Path) -> None:
    """The only line naming a column is set aside: the column is still the file's."""
    write_jsonl(tmp_path / "messages.jsonl", [MESSAGE])
    write_jsonl(
        tmp_path / "events.jsonl",
        [{**EVENT, "event_id": True}, {k: v for k, v in EVENT.items() if k != "occurred_at"}],
    )
    result = contract.load(tmp_path)
    assert quarantined(result) == [
        ("events", 0, why("event_id", "a boolean")),
        ("events", 1, "missing required field: occurred_at"),
    ]


def test_parquet_identifier_column_of_booleans_is_quarantined(tmp_path: Path) -> None:
    pq.write_table(pa.table({k: [v] for k, v in MESSAGE.items()}), tmp_path / "messages.parquet")
    events = pa.table({**{k: [v, v] for k, v in EVENT.items()}, "event_id": pa.array([True, None])})
    pq.write_table(events, tmp_path / "events.parquet")
    result = contract.load(tmp_path)
    assert quarantined(result) == [
        ("events", 0, why("event_id", "a boolean")),
        ("events", 1, "missing required field: event_id"),
    ]


def test_pandas_identifiers_that_are_objects_arrays_or_booleans_are_quarantined() -> None:
    messages = pd.DataFrame([MESSAGE, {**MESSAGE, "message_id": "m2", "tenant_id": True}])
    events = pd.DataFrame(
        [EVENT, {**EVENT, "event_id": {"a": 1}}, {**EVENT, "event_id": 8.0}],
    )
    segments = pd.DataFrame([SEGMENT, {**SEGMENT, "segment_id": True}])
    result = validate_tables({"messages": messages, "events": events, "segments": segments})
    assert quarantined(result) == [
        ("messages", 1, why("tenant_id", "a boolean")),
        ("events", 1, why("event_id", "an object")),
        ("segments", 1, why("segment_id", "a boolean")),
    ]
    assert result.events["event_id"].tolist() == ["e1", "8"]
    # a column of booleans only (pandas' bool dtype)
    flags = pd.DataFrame([{**SEGMENT, "segment_id": False}])
    result = validate_tables({"messages": messages, "events": events, "segments": flags})
    assert result.quarantine.loc[result.quarantine["table"] == "segments", "reason"].tolist() == [
        why("segment_id", "a boolean")
    ]


@pytest.mark.parametrize("text", ["", "\n \n\t"])
@pytest.mark.parametrize("table", list(TABLES))
def test_jsonl_without_records_is_a_table_without_rows(
    tmp_path: Path, text: str, table: str
) -> None:
    """A 0-byte JSON Lines file is the only way to write zero records: a table without rows,
    as a CSV file of its header only is (it failed the run: "empty file")."""
    rows = {"messages": [MESSAGE], "events": [EVENT], "segments": [SEGMENT], "settings": [SETTING]}
    for name, values in rows.items():
        write_jsonl(tmp_path / f"{name}.jsonl", values)
    (tmp_path / f"{table}.jsonl").write_text(text, encoding="utf-8")
    raw = read_table_file(tmp_path / f"{table}.jsonl", table)
    assert (raw.data.num_rows, raw.rejected) == (0, [])
    assert raw.data.column_names == TABLES[table].names
    result = contract.load(tmp_path)
    report = result.report.tables[table]
    assert (report.read, report.kept, report.source) == (0, 0, str(tmp_path / f"{table}.jsonl"))
    assert len(getattr(result, table)) == 0
    assert result.quarantine.loc[result.quarantine["table"] != "events"].empty
    if table != "messages":
        assert result.messages["message_id"].tolist() == ["m1"]
    if table not in ("messages", "events"):
        assert result.events["event_id"].tolist() == ["e1"]


def test_empty_csv_is_still_refused(tmp_path: Path) -> None:
    """A CSV file needs its header row: 0 bytes stays a broken export."""
    write_jsonl(tmp_path / "messages.jsonl", [MESSAGE])
    (tmp_path / "events.csv").write_text("", encoding="utf-8")
    with pytest.raises(BotfilterError, match="events.csv: empty file, expected a header row"):
        contract.load(tmp_path)
