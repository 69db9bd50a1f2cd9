"""Reading data directories: formats, quoting, row numbers, broken rows and fatal errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import contract
from core.errors import BotfilterError

MESSAGES_CSV = (
    "message_id,tenant_id,channel,campaign_id,automation_id,contact_id,recipient_domain,"
    "sent_at,delivered_at,link_count\n"
    "007,t1,email,c1,,k1,example.com,2025-01-01T00:00:00Z,2025-01-01T00:00:03Z,2\n"
    'm2,t1,sms,,a1,k2,,1735689600000,"",1\n'
)
EVENTS_HEADER = (
    "event_id,tenant_id,message_id,type,occurred_at,ip,user_agent,url,link_position,"
    "is_hidden_link,http_method,asn\n"
)


def write_text(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def jsonl(rows: list[object]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def quarantine_of(result: contract.Validated, table: str) -> list[tuple[int, str]]:
    q = result.quarantine[result.quarantine["table"] == table]
    return list(zip(q["row_number"].tolist(), q["reason"].tolist(), strict=True))


# --------------------------------------------------------------------------- CSV


def test_csv_quoting_ids_and_row_numbers(tmp_path: Path) -> None:
    write_text(tmp_path / "messages.csv", MESSAGES_CSV)
    events = EVENTS_HEADER + (
        'e1,t1,007,click,2025-01-01T00:00:10-05:30,192.0.2.1,"Mozilla/5.0 (X11, Linux), '
        '""quoted""\nsecond line",https://a.example/?q=1,1,false,GET,64500\n'
        "e2,t1,007,open,2025-01-01T00:00:10,2001:db8::1,,,,,,\n"
        "e3,t1,007,open,not-a-time,,,,,,,\n"
        'e4,t1,m2,click,1735689601000,::ffff:192.0.2.1,"",,0,TRUE,get,AS13335\n'
    )
    write_text(tmp_path / "events.csv", events)
    result = contract.load(tmp_path)
    assert result.messages["message_id"].tolist() == ["007", "m2"]
    assert result.messages["delivered_at"].isna().tolist() == [False, True]
    assert result.messages["sent_at"].iloc[1] == pd.Timestamp("2025-01-01", tz="UTC")
    assert result.events["event_id"].tolist() == ["e1", "e2", "e4"]
    assert result.events["user_agent"].tolist() == [
        'Mozilla/5.0 (X11, Linux), "quoted"\nsecond line',
        None,
        None,
    ]
    # the quoted newline does not start a record: the broken row is record 2
    assert quarantine_of(result, "events") == [(2, "unparseable timestamp: occurred_at")]
    record = json.loads(result.quarantine["record"].iloc[0])
    assert record["occurred_at"] == "not-a-time" and record["ip"] == ""
    assert result.events["occurred_at"].iloc[0] == pd.Timestamp("2025-01-01T05:30:10", tz="UTC")
    assert result.events["asn"].tolist() == [64500, pd.NA, 13335]


def test_csv_rows_with_wrong_field_count_or_bad_utf8_are_quarantined(tmp_path: Path) -> None:
    write_text(tmp_path / "messages.csv", MESSAGES_CSV)
    body = (
        EVENTS_HEADER.encode()
        + b"e1,t1,007,click,2025-01-01T00:00:10Z,,,,,,,\n"
        + b"e2,t1,007,click,2025-01-01T00:00:10Z,,,,\n"
        + b'e3,t1,007,click,2025-01-01T00:00:10Z,,"multi\nline \xff",,,,,\n'
        + b"e4,t1,007,click,2025-01-01T00:00:10Z,,,,,,,,extra\n"
        + b"e5,t1,007,open,2025-01-01T00:00:10Z,,,,,,,\n"
    )
    write_text(tmp_path / "events.csv", body)
    result = contract.load(tmp_path)
    assert result.events["event_id"].tolist() == ["e1", "e5"]
    assert quarantine_of(result, "events") == [
        (1, "wrong number of CSV fields"),
        (2, "invalid UTF-8 text"),
        (3, "wrong number of CSV fields"),
    ]
    first = json.loads(result.quarantine["record"].iloc[0])
    assert first[:2] == ["e2", "t1"]
    report = result.report.tables["events"]
    assert (report.read, report.kept, report.quarantined_total) == (5, 2, 3)


def test_csv_with_only_a_header_is_an_empty_table(tmp_path: Path) -> None:
    write_text(tmp_path / "messages.csv", MESSAGES_CSV.splitlines()[0] + "\n")
    write_text(tmp_path / "events.csv", EVENTS_HEADER)
    result = contract.load(tmp_path)
    assert result.messages.empty and result.events.empty
    assert str(result.events["occurred_at"].dtype) == "datetime64[ns, UTC]"


def test_csv_with_a_utf8_bom(tmp_path: Path) -> None:
    write_text(tmp_path / "messages.csv", b"\xef\xbb\xbf" + MESSAGES_CSV.encode())
    write_text(tmp_path / "events.csv", EVENTS_HEADER)
    assert contract.load(tmp_path).messages["message_id"].tolist() == ["007", "m2"]


# --------------------------------------------------------------------------- JSON Lines

MESSAGE = {
    "message_id": "007",
    "tenant_id": "t1",
    "channel": "email",
    "contact_id": "k1",
    "sent_at": "2025-01-01T05:30:00+05:30",
    "link_count": 2,
}
EVENT = {
    "event_id": "e1",
    "tenant_id": "t1",
    "message_id": "007",
    "type": "open",
    "occurred_at": 1735689605000,
}


def test_jsonl_types_offsets_and_extra_columns(tmp_path: Path) -> None:
    write_text(tmp_path / "messages.jsonl", jsonl([MESSAGE, {**MESSAGE, "message_id": "8"}]))
    events = [
        {**EVENT, "meta": {"source": "webhook"}},
        {**EVENT, "event_id": "e2", "is_hidden_link": True, "asn": 13335},
    ]
    write_text(tmp_path / "events.jsonl", jsonl(events))
    result = contract.load(tmp_path)
    assert result.messages["sent_at"].tolist() == [pd.Timestamp("2025-01-01", tz="UTC")] * 2
    assert (
        result.events["occurred_at"].tolist() == [pd.Timestamp("2025-01-01T00:00:05", tz="UTC")] * 2
    )
    assert result.events["meta"].tolist()[0] == {"source": "webhook"}
    assert result.events["is_hidden_link"].tolist() == [pd.NA, True]
    assert result.report.quarantined_total == 0


def test_jsonl_broken_lines_are_quarantined_and_blank_lines_skipped(tmp_path: Path) -> None:
    write_text(tmp_path / "messages.jsonl", jsonl([MESSAGE]))
    lines = [
        json.dumps(EVENT),
        "",
        '{"event_id": "e2", "tenant_id": ',
        "[1, 2, 3]",
        "   ",
        json.dumps({**EVENT, "event_id": "e3", "occurred_at": "2025-01-01T00:00:09Z"}),
        json.dumps({**EVENT, "event_id": "e4", "type": "bounce"}),
    ]
    write_text(tmp_path / "events.jsonl", "\n".join(lines) + "\n")
    result = contract.load(tmp_path)
    assert result.events["event_id"].tolist() == ["e1", "e3"]
    assert quarantine_of(result, "events") == [
        (1, "unparseable JSON line"),
        (2, "JSON line is not an object"),
        (4, "unknown type: bounce"),
    ]
    records = result.quarantine["record"].tolist()
    assert json.loads(records[0]) == '{"event_id": "e2", "tenant_id":'
    assert json.loads(records[2])["type"] == "bounce"


def test_jsonl_record_keeps_the_original_timestamp_text(tmp_path: Path) -> None:
    write_text(tmp_path / "messages.jsonl", jsonl([MESSAGE, {**MESSAGE, "message_id": "m9"}]))
    write_text(tmp_path / "events.jsonl", jsonl([EVENT]))
    bad = {**MESSAGE, "message_id": "m9", "channel": "fax"}
    write_text(tmp_path / "messages.jsonl", jsonl([MESSAGE, bad]))
    result = contract.load(tmp_path)
    assert json.loads(result.quarantine["record"].iloc[0]) == bad


@pytest.mark.parametrize("text", ["", "\n \n"])
def test_empty_jsonl_is_a_table_without_rows(tmp_path: Path, text: str) -> None:
    # A 0-byte JSON Lines file is the only way to write zero records: a table without rows,
    # as a CSV file of its header only and a Parquet file of no rows are (a 0-byte CSV, without
    # its header, is still refused: test_unreadable_files_fail_with_the_file_name)
    write_text(tmp_path / "messages.jsonl", jsonl([MESSAGE]))
    write_text(tmp_path / "events.jsonl", text)
    result = contract.load(tmp_path)
    assert result.events.empty
    assert quarantine_of(result, "events") == []


def test_jsonl_with_records_after_blank_lines_is_read(tmp_path: Path) -> None:
    write_text(tmp_path / "messages.jsonl", "\n" * 3 + jsonl([MESSAGE]))
    write_text(tmp_path / "events.jsonl", jsonl([EVENT]))
    assert contract.load(tmp_path).messages["message_id"].tolist() == [MESSAGE["message_id"]]


def test_extension_in_any_case_is_found(tmp_path: Path) -> None:
    # issue 14 item 14: messages.PARQUET is a messages table
    pq.write_table(pa.table({k: [v] for k, v in MESSAGE.items()}), tmp_path / "messages.PARQUET")
    write_text(tmp_path / "events.JsonL", jsonl([EVENT]))
    result = contract.load(tmp_path)
    assert result.events["event_id"].tolist() == [EVENT["event_id"]]
    assert result.report.tables["messages"].source == str(tmp_path / "messages.PARQUET")
    write_text(tmp_path / "events.jsonl", jsonl([EVENT]))
    if not (tmp_path / "events.JsonL").samefile(tmp_path / "events.jsonl"):
        assert "table events given twice (events.JsonL and events.jsonl)" in one_line_error(
            tmp_path
        )


def test_csv_field_over_128_kib_is_read(tmp_path: Path) -> None:
    # issue 14 item 10: Python's csv module stops at 131072 characters by default; a row
    # Arrow cannot read (the wrong number of fields) sends the file to that reader
    long_agent = "Mozilla/5.0 " + "x" * 300_000
    write_text(tmp_path / "messages.csv", MESSAGES_CSV)
    write_text(
        tmp_path / "events.csv",
        EVENTS_HEADER
        + f"e1,t1,007,click,2025-01-01T00:00:10Z,192.0.2.1,{long_agent},,1,false,GET,\n"
        + "e2,t1,007,open\n",
    )
    result = contract.load(tmp_path)
    assert result.events["user_agent"].tolist() == [long_agent]
    assert quarantine_of(result, "events") == [(1, "wrong number of CSV fields")]


# --------------------------------------------------------------------------- Parquet


def test_parquet_native_types(tmp_path: Path) -> None:
    messages = pa.table(
        {
            "message_id": pa.array([7, 8], pa.int64()),
            "tenant_id": ["t1", "t1"],
            "channel": pa.array(["email", "sms"]).dictionary_encode(),
            "contact_id": ["k1", "k2"],
            "sent_at": pa.array([1735689600000, 1735689600000], pa.timestamp("ms", "UTC")),
            "link_count": pa.array([2.0, None]),
        }
    )
    events = pa.table(
        {
            "event_id": ["e1"],
            "tenant_id": ["t1"],
            "message_id": ["7"],
            "type": ["click"],
            "occurred_at": pa.array([1735689601000000], pa.timestamp("us")),
            "link_position": pa.array([1], pa.int32()),
            "is_hidden_link": pa.array([True]),
        }
    )
    pq.write_table(messages, tmp_path / "messages.parquet")
    pq.write_table(events, tmp_path / "events.parquet")
    result = contract.load(tmp_path)
    assert result.messages["message_id"].tolist() == ["7", "8"]
    assert result.messages["link_count"].tolist() == [2, pd.NA]
    assert result.events["occurred_at"].tolist() == [pd.Timestamp("2025-01-01 00:00:01", tz="UTC")]
    assert result.events["link_position"].tolist() == [1]


def test_optional_tables_are_read(tmp_path: Path) -> None:
    write_text(tmp_path / "messages.jsonl", jsonl([MESSAGE]))
    write_text(tmp_path / "events.jsonl", jsonl([EVENT]))
    write_text(tmp_path / "segments.csv", "tenant_id,segment_id,contact_id\nt1,s1,k1\n")
    write_text(
        tmp_path / "settings.jsonl",
        jsonl([{"tenant_id": "t1", "exclude_bots_email": True, "exclude_bots_sms": "off",
                "updated_at": "2025-01-01T00:00:00Z"}]),
    )  # fmt: skip
    result = contract.load(tmp_path)
    assert result.segments.to_dict("records") == [
        {"tenant_id": "t1", "segment_id": "s1", "contact_id": "k1"}
    ]
    assert quarantine_of(result, "settings") == [(0, "invalid bool: exclude_bots_sms")]


# --------------------------------------------------------------------------- fatal errors


def one_line_error(data_dir: Path) -> str:
    with pytest.raises(BotfilterError) as info:
        contract.load(data_dir)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_missing_required_column_names_file_and_column(tmp_path: Path, suffix: str) -> None:
    write_text(tmp_path / "messages.jsonl", jsonl([MESSAGE]))
    rows = pd.DataFrame([{k: v for k, v in EVENT.items() if k != "occurred_at"}])
    path = tmp_path / f"events{suffix}"
    if suffix == ".csv":
        rows.to_csv(path, index=False)
    elif suffix == ".jsonl":
        rows.to_json(path, orient="records", lines=True)
    else:
        rows.to_parquet(path)
    assert one_line_error(tmp_path) == f"{path}: missing required column: occurred_at"


def test_unreadable_files_fail_with_the_file_name(tmp_path: Path) -> None:
    write_text(tmp_path / "messages.jsonl", jsonl([MESSAGE]))
    write_text(tmp_path / "events.parquet", b"this is not parquet")
    assert one_line_error(tmp_path).startswith(f"{tmp_path / 'events.parquet'}: cannot read file:")
    (tmp_path / "events.parquet").unlink()
    write_text(tmp_path / "events.csv", b"")
    assert "events.csv: empty file" in one_line_error(tmp_path)
    write_text(tmp_path / "events.csv", b"event_\xffid,tenant_id\n")
    assert one_line_error(tmp_path).endswith("events.csv: the header row is not UTF-8 text")


def test_directory_errors(tmp_path: Path) -> None:
    assert one_line_error(tmp_path / "nope") == f"data directory not found: {tmp_path / 'nope'}"
    write_text(tmp_path / "messages.jsonl", jsonl([MESSAGE]))
    assert "no events table" in one_line_error(tmp_path)
    write_text(tmp_path / "events.jsonl", jsonl([EVENT]))
    write_text(tmp_path / "messages.csv", MESSAGES_CSV)
    assert one_line_error(tmp_path) == (
        f"{tmp_path}: table messages given twice (messages.csv and messages.jsonl); keep one"
    )
    # a directory of Parquet parts (Spark's layout): said so, not "no events table", and an
    # optional table is not taken for absent
    (tmp_path / "messages.csv").unlink()
    for name in ("events", "segments"):
        folder = tmp_path / f"{name}.parquet"
        folder.mkdir()
        assert one_line_error(tmp_path).startswith(f"{folder}: is a directory, not a file")
        folder.rmdir()


def test_column_of_unusable_type_fails_naming_it(tmp_path: Path) -> None:
    write_text(tmp_path / "messages.jsonl", jsonl([MESSAGE]))
    events = pa.table({**{k: [v] for k, v in EVENT.items()}, "asn": pa.array([[1, 2]])})
    pq.write_table(events, tmp_path / "events.parquet")
    message = one_line_error(tmp_path)
    assert message.startswith(f"{tmp_path / 'events.parquet'}: column asn is stored as list<")
    assert message.endswith(">, which cannot hold int values")


def test_events_without_any_message_are_unknown(tmp_path: Path) -> None:
    write_text(tmp_path / "messages.csv", MESSAGES_CSV.splitlines()[0] + "\n")
    write_text(tmp_path / "events.jsonl", jsonl([EVENT]))
    assert quarantine_of(contract.load(tmp_path), "events") == [(0, "unknown message")]


def test_jsonl_line_that_is_not_utf8_is_quarantined(tmp_path: Path) -> None:
    write_text(tmp_path / "messages.jsonl", jsonl([MESSAGE]))
    body = (json.dumps(EVENT) + "\n").encode() + b'{"event_id": "e\xff"}\n'
    write_text(
        tmp_path / "events.jsonl", body + (json.dumps({**EVENT, "event_id": "e3"}) + "\n").encode()
    )
    result = contract.load(tmp_path)
    assert result.events["event_id"].tolist() == ["e1", "e3"]
    assert quarantine_of(result, "events") == [(1, "invalid UTF-8 text")]
    assert "\ufffd" in json.loads(result.quarantine["record"].iloc[0])


def test_jsonl_line_with_a_lone_surrogate_is_quarantined(tmp_path: Path) -> None:
    """``"\\ud800"`` alone is valid JSON that decodes to no character: it failed the whole
    run (internal error, UnicodeEncodeError) instead of quarantining its line."""
    write_text(tmp_path / "messages.jsonl", jsonl([MESSAGE]))
    bad = json.dumps({**EVENT, "event_id": "e2"}).replace('"e2"', '"e2\\ud800"')
    good = json.dumps({**EVENT, "event_id": "e3", "user_agent": "caf\u00e9 \ud83d\ude00"})
    write_text(tmp_path / "events.jsonl", jsonl([EVENT]) + bad + "\n" + good + "\n")
    result = contract.load(tmp_path)
    assert result.events["event_id"].tolist() == ["e1", "e3"]
    assert result.events["user_agent"].tolist()[1] == "café \U0001f600"  # a pair is text
    assert quarantine_of(result, "events") == [(1, "invalid UTF-8 text")]
    assert "\\ud800" in result.quarantine["record"].iloc[0]


def test_parquet_rows_with_text_that_is_not_utf8_are_quarantined(tmp_path: Path) -> None:
    write_text(tmp_path / "messages.jsonl", jsonl([MESSAGE]))
    ids = pa.Array.from_buffers(
        pa.string(),
        3,
        [
            None,
            pa.py_buffer(np.array([0, 2, 5, 7], np.int32).tobytes()),
            pa.py_buffer(b"e1e\xff2e3"),
        ],
    )
    events = pa.table(
        {**{k: [v] * 3 for k, v in EVENT.items() if k != "event_id"}, "event_id": ids}
    )
    pq.write_table(events, tmp_path / "events.parquet")
    result = contract.load(tmp_path)
    assert result.events["event_id"].tolist() == ["e1", "e3"]
    assert quarantine_of(result, "events") == [(1, "invalid UTF-8 text")]
    assert json.loads(result.quarantine["record"].iloc[0])["event_id"] == "e\ufffd2"


def test_validate_writes_contract_types_and_extra_columns_as_read(tmp_path: Path) -> None:
    """`botfilter validate`'s clean files: a text column without a value is still text (it
    was Parquet's null type, which Spark cannot read), absent tables have their schema, and an
    extra integer column with gaps stays integer (it became double through pandas)."""
    from typer.testing import CliRunner

    from botfilter.cli import app

    data = tmp_path / "data"
    write_text(data / "messages.jsonl", jsonl([MESSAGE, {**MESSAGE, "message_id": "8", "n": 3}]))
    events = [
        {**EVENT, "n": 1},
        {**EVENT, "event_id": "e2"},
        {**EVENT, "event_id": "e3", "type": "x"},
    ]
    write_text(data / "events.jsonl", jsonl(events))
    out = tmp_path / "clean"
    done = CliRunner().invoke(app, ["validate", "--data", str(data), "--out", str(out)])
    assert done.exit_code == 0, done.output
    events_file = pq.read_table(out / "events.parquet")
    assert events_file.schema.field("user_agent").type == pa.string()  # no value in any row
    assert events_file.schema.field("n").type == pa.int64()
    assert events_file["n"].to_pylist() == [1, None]
    assert events_file["event_id"].to_pylist() == ["e1", "e2"]
    messages_file = pq.read_table(out / "messages.parquet")
    assert messages_file.schema.field("campaign_id").type == pa.string()
    assert messages_file["n"].to_pylist() == [None, 3]
    segments = pq.read_table(out / "segments.parquet")
    assert segments.num_rows == 0 and segments.schema.field("tenant_id").type == pa.string()
    quarantine = pq.read_table(out / "quarantine.parquet").to_pylist()
    assert [(q["table"], q["row_number"], q["reason"]) for q in quarantine] == [
        ("events", 2, "unknown type: x")
    ]


def _validate_parquet(tmp_path: Path, events: pa.Table) -> tuple[int, str, list[tuple]]:
    """`botfilter validate` of MESSAGE and ``events`` (Parquet): exit code, output, and the
    quarantine's (table, row, reason)."""
    from typer.testing import CliRunner

    from botfilter.cli import app

    data = tmp_path / "data"
    data.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([MESSAGE]), data / "messages.parquet")
    pq.write_table(events, data / "events.parquet")
    out = tmp_path / "clean"
    done = CliRunner().invoke(app, ["validate", "--data", str(data), "--out", str(out)])
    if done.exit_code != 0:  # the command's error (botfilter.cli.main prints it in one line)
        assert isinstance(done.exception, BotfilterError), done.exception
        return done.exit_code, str(done.exception), []
    rows = pq.read_table(out / "quarantine.parquet").to_pylist()
    return 0, done.output, [(q["table"], q["row_number"], q["reason"]) for q in rows]


def test_parquet_oddities_are_quarantined_or_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each was an internal error in validate, score and recompute (found by an audit): a
    tenant_id that is not UTF-8 (the parts are planned by tenant before any row is checked),
    a tenant_id stored as a struct, a uint64 asn past 2**63, and pandas metadata naming a type
    the column no longer has (a file rewritten by another tool)."""
    # In this process: a pool of validation workers would be this test process's one fork
    # server, and later tests' scoring pools would get it without their warm-up.
    monkeypatch.setenv("BOTFILTER_VALIDATE_WORKERS", "1")
    plain = {k: str(v) for k, v in EVENT.items()}
    good = pa.Table.from_pylist([plain, {**plain, "event_id": "e2"}])
    bad_tenant = pa.array([b"t1", b"\xfft1"], pa.binary()).view(pa.string())
    got = _validate_parquet(tmp_path / "a", good.set_column(1, "tenant_id", bad_tenant))
    assert got[0] == 0 and got[2] == [("events", 1, "invalid UTF-8 text")], got
    nested = pa.array([{"id": "t1"}, {"id": "t1"}])
    code, output, _ = _validate_parquet(tmp_path / "b", good.set_column(1, "tenant_id", nested))
    assert code != 0 and "column tenant_id is stored as struct<id: string>" in output
    asn = pa.array([1, 2**63], pa.uint64())
    got = _validate_parquet(tmp_path / "c", good.append_column("asn", asn))
    assert got[0] == 0 and got[2] == [("events", 1, "invalid integer: asn")], got
    frame = pd.DataFrame([plain, {**plain, "event_id": "e2"}]).assign(
        link_position=pd.array([0, 1], "Int64")
    )
    stale = pa.Table.from_pandas(frame, preserve_index=False)
    at = stale.schema.get_field_index("link_position")
    stale = stale.set_column(at, "link_position", pa.array(["0", "first"]))
    assert b"pandas" in stale.schema.metadata
    got = _validate_parquet(tmp_path / "d", stale)
    assert got[0] == 0 and got[2] == [("events", 1, "invalid integer: link_position")], got


# --------------------------------------------------------------------------- audit findings


def test_csv_blank_line_is_skipped_whether_or_not_another_row_is_broken(tmp_path: Path) -> None:
    """The audit: a blank line was skipped by Arrow's reader but quarantined as a row (and
    numbered, shifting the rows after it) by the row-by-row reader a broken row calls for."""
    write_text(tmp_path / "messages.csv", MESSAGES_CSV)
    good = (
        "e1,t1,007,open,2025-01-01T00:00:10Z,,,,,,,\n\ne9,t1,zz,open,2025-01-01T00:00:10Z,,,,,,,\n"
    )
    write_text(tmp_path / "events.csv", EVENTS_HEADER + good)
    clean = contract.load(tmp_path)
    write_text(tmp_path / "events.csv", EVENTS_HEADER + good + "e3,t1,007,click\n")
    broken = contract.load(tmp_path)
    assert quarantine_of(clean, "events") == [(1, "unknown message")]
    assert quarantine_of(broken, "events") == [
        (1, "unknown message"),
        (2, "wrong number of CSV fields"),
    ]
    assert broken.report.tables["events"].read == clean.report.tables["events"].read + 1 == 3


def test_jsonl_bom_is_read_whether_or_not_another_line_is_broken(tmp_path: Path) -> None:
    """The audit: with a broken line further down, the row-by-row reader quarantined the valid
    first record of a file starting with a UTF-8 BOM."""
    write_text(tmp_path / "messages.jsonl", jsonl([MESSAGE]))
    body = jsonl([EVENT, {**EVENT, "event_id": "e2"}]) + "{broken\n"
    write_text(tmp_path / "events.jsonl", b"\xef\xbb\xbf" + body.encode())
    result = contract.load(tmp_path)
    assert result.events["event_id"].tolist() == ["e1", "e2"]
    assert quarantine_of(result, "events") == [(2, "unparseable JSON line")]


def test_jsonl_ids_beyond_64_bits_keep_their_digits(tmp_path: Path) -> None:
    """The audit: Arrow reads integers past int64 as floats, so three distinct numeric ids
    became one rounded id, two of the events counted as its duplicates."""
    ids = [18446744073709551001, 18446744073709551002, 18446744073709551003]
    write_text(tmp_path / "messages.jsonl", jsonl([MESSAGE]))
    write_text(tmp_path / "events.jsonl", jsonl([{**EVENT, "event_id": i} for i in ids]))
    result = contract.load(tmp_path)
    assert result.events["event_id"].tolist() == [str(i) for i in ids]
    assert result.report.quarantined_total == 0


def test_parquet_extra_column_that_is_not_utf8_is_kept_as_bytes(tmp_path: Path) -> None:
    """Extra columns are kept and ignored (PRODUCT.md): bad bytes in one no longer quarantine
    the row (the audit: `validate` and `recompute` dropped the event, `score` scored it)."""
    write_text(tmp_path / "messages.jsonl", jsonl([MESSAGE]))
    note = pa.Array.from_buffers(
        pa.string(),
        2,
        [None, pa.py_buffer(np.array([0, 2, 4], np.int32).tobytes()), pa.py_buffer(b"ok\xff!")],
    )
    events = pa.table(
        {
            **{k: [v] * 2 for k, v in EVENT.items() if k != "event_id"},
            "event_id": ["e1", "e2"],
            "note": note,
        }
    )
    pq.write_table(events, tmp_path / "events.parquet")
    result = contract.load(tmp_path)
    assert result.events["event_id"].tolist() == ["e1", "e2"]
    assert result.events["note"].tolist() == [b"ok", b"\xff!"]
    assert result.report.quarantined_total == 0


@pytest.mark.parametrize(
    "kind", [pa.string(), pa.large_string(), pa.dictionary(pa.int32(), pa.string())]
)
def test_asn_with_its_as_prefix_in_any_text_type(tmp_path: Path, kind: pa.DataType) -> None:
    """The audit: "AS13335" was accepted in a string column, refused in a large_string one."""
    write_text(tmp_path / "messages.jsonl", jsonl([MESSAGE]))
    events = pa.table(
        {
            **{k: [v] for k, v in EVENT.items()},
            "asn": pa.array(["AS13335"], pa.string()).cast(kind),
        }
    )
    pq.write_table(events, tmp_path / "events.parquet")
    result = contract.load(tmp_path)
    assert result.events["asn"].tolist() == [13335]


def test_parquet_whole_decimals_are_integers(tmp_path: Path) -> None:
    """Warehouses export NUMBER columns as DECIMAL(38, 0): whole values are integers (the
    audit: the whole run stopped on "cannot hold int values"), a fraction is invalid."""
    write_text(tmp_path / "messages.jsonl", jsonl([MESSAGE]))
    events = pa.table(
        {
            **{k: [v] * 3 for k, v in EVENT.items() if k != "event_id"},
            "event_id": ["e1", "e2", "e3"],
            "link_position": pa.array([1, None, 1], pa.decimal128(38, 0)),
            "asn": pa.array([13335, 15169, None], pa.decimal128(38, 0)),
        }
    )
    pq.write_table(events, tmp_path / "events.parquet")
    result = contract.load(tmp_path)
    assert result.events["link_position"].tolist() == [1, pd.NA, 1]
    assert result.events["asn"].tolist() == [13335, 15169, pd.NA]
    fraction = events.set_column(
        events.schema.get_field_index("asn"),
        "asn",
        pa.array([13335, 1.5, None], pa.float64()).cast(pa.decimal128(10, 1)),
    )
    pq.write_table(fraction, tmp_path / "events.parquet")
    assert quarantine_of(contract.load(tmp_path), "events") == [(1, "invalid integer: asn")]


def test_jsonl_value_nested_past_the_recursion_limit_is_read(tmp_path: Path) -> None:
    """The audit: one user_agent nested 995 levels stopped `botfilter score` with an internal
    error (RecursionError writing it as text); deeper than the decoder goes, the line is
    quarantined."""
    from contract.columns import json_text

    write_text(tmp_path / "messages.jsonl", jsonl([MESSAGE]))

    def nested_ua(event_id: str, depth: int) -> str:
        head = json.dumps({**EVENT, "event_id": event_id})[:-1]
        return head + ', "user_agent": ' + "[" * depth + "]" * depth + "}"

    deep, deeper = nested_ua("e2", 995), nested_ua("e3", 100_000)
    write_text(tmp_path / "events.jsonl", "\n".join([json.dumps(EVENT), deep, deeper]) + "\n")
    result = contract.load(tmp_path)
    assert result.events["event_id"].tolist() == ["e1", "e2"]
    assert result.events["user_agent"].tolist()[1] == "[" * 995 + "]" * 995
    assert quarantine_of(result, "events") == [(2, "unparseable JSON line")]
    value = {"a": [1, {"b": None, "c": "é"}], "d": True}
    nested: object = value
    for _ in range(3000):
        nested = [nested]
    assert json_text(nested) == "[" * 3000 + json.dumps(value, ensure_ascii=False) + "]" * 3000
