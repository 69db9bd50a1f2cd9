"""``botfilter validate`` end to end on mixed good/bad files in CSV and JSON Lines."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from botfilter.cli import app
from contract.schema import EVENTS, MESSAGES

GOOD_MESSAGE = {
    "message_id": "m1",
    "tenant_id": "t1",
    "channel": "email",
    "campaign_id": "c1",
    "automation_id": "",
    "contact_id": "k1",
    "recipient_domain": "example.com",
    "sent_at": "2025-03-01T09:00:00+01:00",
    "delivered_at": "2025-03-01T08:00:02Z",
    "link_count": "3",
}
GOOD_EVENT = {
    "event_id": "e1",
    "tenant_id": "t1",
    "message_id": "m1",
    "type": "click",
    "occurred_at": "2025-03-01T08:00:09Z",
    "ip": "2001:db8::7",
    "user_agent": 'Mozilla/5.0 (Windows NT 10.0; Win64, x64) "Edge"\nline two',
    "url": "https://shop.example/a?x=1,2",
    "link_position": "2",
    "is_hidden_link": "false",
    "http_method": "GET",
    "asn": "8075",
}

# (row, reason it must be quarantined with, or None when it must be kept)
MESSAGE_ROWS: list[tuple[dict[str, Any], str | None]] = [
    (GOOD_MESSAGE, None),
    ({**GOOD_MESSAGE, "message_id": "007", "channel": "sms", "recipient_domain": ""}, None),
    ({**GOOD_MESSAGE, "message_id": "m3", "sent_at": "1740816000000"}, None),
    ({**GOOD_MESSAGE, "message_id": "m4", "channel": "fax"}, "unknown channel: fax"),
    ({**GOOD_MESSAGE, "message_id": "m5", "contact_id": ""}, "missing required field: contact_id"),
    ({**GOOD_MESSAGE, "message_id": "m6", "automation_id": "a1"}, "both campaign_id and automation_id set"),
    ({**GOOD_MESSAGE, "message_id": "m7", "link_count": "-2"}, "negative link_count"),
    ({**GOOD_MESSAGE, "message_id": "m8", "sent_at": "03/01/2025"}, "unparseable timestamp: sent_at"),
]  # fmt: skip
EVENT_ROWS: list[tuple[dict[str, Any], str | None]] = [
    (GOOD_EVENT, None),
    ({**GOOD_EVENT, "event_id": "e2", "message_id": "007", "ip": "::ffff:198.51.100.4",
      "link_position": "0", "occurred_at": "2025-03-01T08:00:10"}, None),
    ({**GOOD_EVENT, "event_id": "e3", "type": "open", "url": "", "link_position": ""}, None),
    (GOOD_EVENT, None),  # duplicate delivery of e1: counted, not quarantined
    ({**GOOD_EVENT, "event_id": "e4", "ip": "10.0.0.300"}, "invalid ip"),
    ({**GOOD_EVENT, "event_id": "e5", "message_id": "m404"}, "unknown message"),
    ({**GOOD_EVENT, "event_id": "e6", "message_id": "m4"}, "quarantined message"),
    ({**GOOD_EVENT, "event_id": "e7", "message_id": "007", "type": "open",
      "link_position": ""}, "open on sms message"),
    ({**GOOD_EVENT, "event_id": "e8", "occurred_at": "2025-03-01T07:59:59Z"},
     "event before message sent"),
    ({**GOOD_EVENT, "event_id": "e9", "tenant_id": "t2"}, "tenant mismatch with message"),
    ({**GOOD_EVENT, "event_id": "e10", "link_position": "3"}, "link_position out of range"),
    ({**GOOD_EVENT, "event_id": "e11", "is_hidden_link": "sometimes"},
     "invalid bool: is_hidden_link"),
    ({**GOOD_EVENT, "event_id": "", "type": "open"}, "missing required field: event_id"),
    ({**GOOD_EVENT, "event_id": "e12", "occurred_at": "2025-13-01T00:00:00Z"},
     "unparseable timestamp: occurred_at"),
]  # fmt: skip


def write_csv(
    path: Path, columns: list[str], rows: list[tuple[dict[str, Any], str | None]]
) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(row for row, _ in rows)


def as_json(row: dict[str, Any]) -> dict[str, Any]:
    """A row as a JSON Lines producer writes it: no empty fields, numbers as numbers."""
    typed = {k: v for k, v in row.items() if v != ""}
    for key in ("link_count", "link_position", "asn"):
        if key in typed and typed[key].lstrip("-").isdigit():
            typed[key] = int(typed[key])
    return typed


def write_jsonl(path: Path, rows: list[tuple[dict[str, Any], str | None]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row, _ in rows:
            handle.write(json.dumps(as_json(row), ensure_ascii=False) + "\n")


def make_data(tmp_path: Path, fmt: str) -> Path:
    data = tmp_path / f"data-{fmt}"
    data.mkdir()
    if fmt == "csv":
        write_csv(data / "messages.csv", MESSAGES.names, MESSAGE_ROWS)
        write_csv(data / "events.csv", [c for c in EVENTS.names if c in GOOD_EVENT], EVENT_ROWS)
    else:
        write_jsonl(data / "messages.jsonl", MESSAGE_ROWS)
        write_jsonl(data / "events.jsonl", EVENT_ROWS)
    return data


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_validate_writes_clean_tables_and_quarantine(tmp_path: Path, fmt: str) -> None:
    data, out = make_data(tmp_path, fmt), tmp_path / "out"
    result = CliRunner().invoke(app, ["validate", "--data", str(data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Quarantined rows by reason" in result.output

    quarantine = pd.read_parquet(out / "quarantine.parquet")
    assert list(quarantine.columns) == ["table", "row_number", "record", "reason"]
    for table, rows in (("messages", MESSAGE_ROWS), ("events", EVENT_ROWS)):
        got = quarantine[quarantine["table"] == table]
        expected = [(i, reason) for i, (_, reason) in enumerate(rows) if reason]
        assert list(zip(got["row_number"], got["reason"], strict=True)) == expected
        for number, record in zip(got["row_number"], got["record"], strict=True):
            written = rows[number][0] if fmt == "csv" else as_json(rows[number][0])
            assert json.loads(record) == written

    messages = pd.read_parquet(out / "messages.parquet")
    events = pd.read_parquet(out / "events.parquet")
    assert messages["message_id"].tolist() == ["m1", "007", "m3"]
    assert events["event_id"].tolist() == ["e1", "e2", "e3"]
    assert events["user_agent"].iloc[0] == GOOD_EVENT["user_agent"]
    assert str(events["occurred_at"].dtype) == "datetime64[ns, UTC]"
    assert (out / "segments.parquet").exists() and (out / "settings.parquet").exists()

    # the summary's counts add up: read == kept + quarantined + duplicates
    counts = {
        "messages": (len(MESSAGE_ROWS), 3, 5, 0),
        "events": (len(EVENT_ROWS), 3, 10, 1),
    }
    for table, (read, kept, quarantined, duplicates) in counts.items():
        assert read == kept + quarantined + duplicates
        line = next(line for line in result.output.splitlines() if f" {table} " in line)
        assert [int(x.replace(",", "")) for x in line.split("│")[3:7]] == [
            read,
            kept,
            quarantined,
            duplicates,
        ]


@pytest.mark.integration
def test_missing_column_fails_with_one_line_naming_file_and_column(tmp_path: Path) -> None:
    data = make_data(tmp_path, "csv")
    events = pd.read_csv(data / "events.csv", dtype=str).drop(columns=["occurred_at"])
    events.to_csv(data / "events.csv", index=False)
    command = [str(Path(sys.executable).parent / "botfilter"), "validate", "--data", str(data)]
    done = subprocess.run(
        [*command, "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"botfilter: error: {data / 'events.csv'}: missing required column: occurred_at"
    ]
    assert not (tmp_path / "out").exists()
