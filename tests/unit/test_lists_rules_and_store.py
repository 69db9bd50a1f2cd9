"""Tenant lists: the channels a change recomputes are those its entries can match (SMS too),
entry ids are never reused on SQLite (new and migrated stores), IPv4-mapped IP entries, expiry
reaching the metrics within one worker cycle, the API reading a message's recipient domain from
its earlier events, `botfilter score`'s bot count, and the first settings change's history."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from contract.schema import CHANNELS
from core.errors import BotfilterError
from core.settings import Settings
from jobs.exclusions import set_exclusions
from jobs.lists import storage as lists
from jobs.lists.apply import ListCache
from jobs.lists.rules import KINDS, Entry, channels_of, normalise, override_reasons
from jobs.store import Store
from jobs.worker import CycleOptions, run_cycle, run_worker
from serving.runtime import Runtime
from serving.state import MemoryState

NOW = pd.Timestamp.now(tz="UTC").floor("h")
SENT = NOW - pd.Timedelta(days=1)


def _at(seconds: int) -> str:
    return (SENT + pd.Timedelta(seconds=seconds)).isoformat()


# Two tenants with the same ids: an email campaign and an SMS automation whose message keeps
# its recipient domain (the data contract allows it), each with one bot click (the labels).
MESSAGES = (
    "message_id,tenant_id,channel,campaign_id,automation_id,contact_id,recipient_domain,sent_at,delivered_at\n"
    + "".join(
        f"m1,{t},email,c1,,k1,corp.example,{_at(0)},{_at(1)}\n"
        f"m2,{t},sms,,f1,k2,carrier.net,{_at(0)},{_at(1)}\n"
        for t in ("t1", "t2")
    )
)
EVENTS = "event_id,tenant_id,message_id,type,occurred_at,ip,user_agent,label\n" + "".join(
    f"e1,{t},m1,open,{_at(60)},40.94.12.7,Mozilla/5.0,bot\n"
    f"e2,{t},m1,click,{_at(600)},10.1.1.1,Mozilla/5.0 (iPhone),human\n"
    f"e3,{t},m2,click,{_at(5)},40.94.12.8,Mozilla/5.0,bot\n"
    for t in ("t1", "t2")
)


@pytest.fixture
def tiny(tmp_path: Path, label_scorer) -> tuple[Settings, Store, Path, CycleOptions]:
    """Settings, a SQLite store with both tenants' filters on and one full cycle, the data, and
    the cycles' options (scores from the labels)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "messages.csv").write_text(MESSAGES)
    (data / "events.csv").write_text(EVENTS)
    settings = Settings(home=tmp_path / "home")
    store = Store.open(settings)
    for tenant in ("t1", "t2"):
        set_exclusions(store, tenant, {"email": True, "sms": True}, source="test")
    options = CycleOptions(scorer=label_scorer, model_version="labels")
    first = _cycle(store, settings, data, options)
    assert first.status == "succeeded", first.line()
    yield settings, store, data, options
    store.close()


def _cycle(store: Store, settings: Settings, data: Path, options: CycleOptions):
    return run_cycle(store, settings, data, options, now=NOW.to_pydatetime())


def _excluded(store: Store, tenant: str, table: str, key: str) -> dict[str, int]:
    rows = store.read_view(table, tenant).set_index(key)
    return {
        "bot_clicks_excluded": int(rows["bot_clicks_excluded"].iloc[0]),
        "clicks_total": int(rows["clicks_total"].iloc[0]),
    }


# --- 1. a change recomputes every channel its entry can match ---------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_an_entry_queues_every_channel_it_matches_events_of(kind: str) -> None:
    """Matching read a domain entry on SMS events (the contract keeps recipient_domain on SMS
    messages), while a change queued email only: the SMS metrics stayed stale."""
    value = {"ip": "203.0.113.0/24", "asn": "64500", "user_agent": "probe", "domain": "a.com"}
    events = pd.DataFrame(
        {
            "tenant_id": ["t1", "t1"],
            "channel": list(CHANNELS),
            "ip": ["203.0.113.5"] * 2,
            "asn": [64500] * 2,
            "user_agent": ["a probe/1.0"] * 2,
            "recipient_domain": ["mail.a.com"] * 2,
        }
    )
    entry = Entry("t1", "block", kind, value[kind])
    matched = override_reasons(events, [entry]) == "tenant_blocklist"
    touched = {c for c, hit in zip(events["channel"], matched, strict=True) if hit}
    assert touched == set(CHANNELS)
    assert set(channels_of(kind)) >= touched


def test_a_domain_entry_on_sms_recomputes_the_sms_metrics(tiny) -> None:
    settings, store, data, options = tiny
    assert _excluded(store, "t1", "automation_metrics", "automation_id") == {
        "bot_clicks_excluded": 1,
        "clicks_total": 0,
    }
    entry = lists.build_entry("t1", "allow", "domain", "carrier.net", "", "ops")
    stored, queued = lists.add_entry(store, entry)
    queue = store.queue().set_index("id")
    assert sorted(queue.loc[queued, "channel"]) == ["email", "sms"]
    assert set(queue.loc[queued, "tenant_id"]) == {"t1"}
    result = _cycle(store, settings, data, options)
    assert ("t1", ("email", "sms")) in result.recomputed
    assert _excluded(store, "t1", "automation_metrics", "automation_id") == {
        "bot_clicks_excluded": 0,
        "clicks_total": 1,
    }
    # another tenant's metrics keep their bot (tenants are walls)
    assert _excluded(store, "t2", "automation_metrics", "automation_id") == {
        "bot_clicks_excluded": 1,
        "clicks_total": 0,
    }
    # deleting it queues SMS too, and the SMS metrics come back
    assert len(lists.delete_entry(store, "t1", stored.id, "ops")) == 2
    _cycle(store, settings, data, options)
    assert _excluded(store, "t1", "automation_metrics", "automation_id")["clicks_total"] == 0


# --- 2. ids never reused on SQLite ------------------------------------------------------------


def test_a_deleted_entrys_id_is_never_given_again(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    old, _ = lists.add_entry(store, lists.build_entry("t1", "block", "ip", "192.0.2.1"))
    lists.delete_entry(store, "t1", old.id, "ops")
    new, _ = lists.add_entry(store, lists.build_entry("t1", "allow", "ip", "192.0.2.99"))
    assert new.id != old.id
    with pytest.raises(LookupError):  # a stale retry of the first delete removes nothing
        lists.delete_entry(store, "t1", old.id, "ops")
    assert [e.value for e in lists.entries(store, ["t1"])] == ["192.0.2.99/32"]
    trail = [a for a in lists.audit(store, "t1") if a["entry_id"] == old.id]
    assert [a["action"] for a in trail] == ["delete", "add"]
    store.close()


def _downgrade(path: Path) -> None:
    """Give the store's id tables, rows kept, the layout of stores made before AUTOINCREMENT."""
    db = sqlite3.connect(path)
    with db:
        for table in ("list_entries", "list_audit", "recompute_queue"):
            sql = db.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()
            indexes = db.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                "AND sql IS NOT NULL",
                (table,),
            ).fetchall()
            db.execute(f"ALTER TABLE {table} RENAME TO old_{table}")
            db.execute(sql[0].replace(" AUTOINCREMENT", ""))
            db.execute(f"INSERT INTO {table} SELECT * FROM old_{table}")
            db.execute(f"DROP TABLE old_{table}")
            for (index,) in indexes:
                db.execute(index)
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone():
            db.execute("DELETE FROM sqlite_sequence")
    db.close()


def _sql(path: Path, table: str) -> str:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    finally:
        db.close()


def test_an_older_sqlite_store_is_migrated_to_ids_never_reused(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    old = Store(f"sqlite:///{path}")
    a, _ = lists.add_entry(old, lists.build_entry("t1", "block", "ip", "192.0.2.1", "a"))
    b, _ = lists.add_entry(old, lists.build_entry("t1", "block", "ip", "192.0.2.2", "b"))
    c, _ = lists.add_entry(old, lists.build_entry("t1", "block", "ip", "192.0.2.3", "c"))
    lists.delete_entry(old, "t1", c.id, "ops")  # the newest: its id is in the audit only
    with old.read() as conn:
        rows = {
            t: conn.exec_driver_sql(f"SELECT * FROM {t} ORDER BY 1").all()
            for t in ("list_entries", "list_audit", "recompute_queue")
        }
    old.close()
    _downgrade(path)
    assert "AUTOINCREMENT" not in _sql(path, "list_entries").upper()  # the old layout

    store = Store(f"sqlite:///{path}")  # opening migrates
    for table in ("list_entries", "list_audit", "recompute_queue"):
        assert "AUTOINCREMENT" in _sql(path, table).upper(), table
        with store.read() as conn:
            assert conn.exec_driver_sql(f"SELECT * FROM {table} ORDER BY 1").all() == rows[table]
    with store.read() as conn:
        indexes = {r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master")}
    assert {"ix_list_entries_tenant", "ix_list_audit_tenant_id", "ix_recompute_queue_pending"} <= (
        indexes
    )
    with pytest.raises(BotfilterError, match="already on the block list"):
        lists.add_entry(store, lists.build_entry("t1", "block", "ip", "192.0.2.1"))
    d, _ = lists.add_entry(store, lists.build_entry("t1", "block", "ip", "192.0.2.4"))
    assert d.id > c.id > b.id > a.id
    store.close()
    before = _sql(path, "list_entries")
    Store(f"sqlite:///{path}").close()  # already migrated: left as it is
    assert _sql(path, "list_entries") == before


# --- 3. IPv4-mapped IP entries ----------------------------------------------------------------


def test_ipv4_mapped_entries_are_their_ipv4_form(tmp_path: Path) -> None:
    assert normalise("ip", "::ffff:203.0.113.9") == "203.0.113.9/32"
    assert normalise("ip", "::ffff:40.97.178.0/120") == "40.97.178.0/24"
    assert normalise("ip", "2001:db8::1") == "2001:db8::1/128"
    events = pd.DataFrame(
        {"tenant_id": ["t1"] * 3, "ip": ["203.0.113.9", "::ffff:40.97.178.7", "40.97.179.1"]}
    )
    entries = [
        Entry("t1", "block", "ip", normalise("ip", "::ffff:203.0.113.9")),
        # as an older version stored it
        Entry("t1", "block", "ip", "::ffff:2861:b200/120"),
    ]
    got = override_reasons(events, entries).tolist()
    assert got == ["tenant_blocklist", "tenant_blocklist", None]
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    with store.write() as conn:  # an entry stored in mapped form before this version
        conn.exec_driver_sql(
            "INSERT INTO list_entries (tenant_id, list, kind, value, note, author, created_at) "
            "VALUES ('t1', 'block', 'ip', '::ffff:cb00:7109/128', '', 'ops', "
            "'2024-01-01 00:00:00')"
        )
    [old] = lists.entries(store, ["t1"])
    assert old.value == "203.0.113.9/32" and lists.as_dict(old)["value"] == "203.0.113.9/32"
    with pytest.raises(BotfilterError, match="already on the block list"):
        lists.add_entry(store, lists.build_entry("t1", "block", "ip", "203.0.113.9"))
    store.close()


# --- 4. an expiry reaches the metrics within one worker cycle ---------------------------------


def test_an_expired_entry_leaves_the_metrics_at_the_next_cycle(tiny) -> None:
    settings, store, data, options = tiny
    human = {"bot_clicks_excluded": 0, "clicks_total": 1}
    assert _excluded(store, "t1", "campaign_metrics", "campaign_id") == human
    expires = datetime.now(UTC) + timedelta(seconds=2)
    entry = lists.build_entry("t1", "block", "ip", "10.1.1.1", "", "ops", expires_at=expires)
    lists.add_entry(store, entry)
    cycles = []
    stop = threading.Event()

    def seen(result) -> None:
        cycles.append((result, _excluded(store, "t1", "campaign_metrics", "campaign_id")))
        if len(cycles) == 2:
            stop.set()

    guard = threading.Timer(20, stop.set)  # without a wake-up at the expiry: one cycle only
    guard.start()
    try:
        run_worker(
            store,
            settings,
            data,
            timedelta(hours=1),
            options,
            now=NOW.to_pydatetime(),
            poll=0.05,
            stop=stop,
            on_cycle=seen,
        )
    finally:
        guard.cancel()
    assert cycles[0][1] == {"bot_clicks_excluded": 1, "clicks_total": 0}  # blocked
    assert len(cycles) == 2 and datetime.now(UTC) >= expires
    assert cycles[1][0].recomputed == [("t1", ("email", "sms"))]  # that tenant only
    assert cycles[1][1] == human
    queue = store.queue()
    expired = queue[queue["reason"].str.startswith("expired")]
    assert set(expired["tenant_id"]) == {"t1"} and set(expired["status"]) == {"done"}
    assert "blocklist ip 10.1.1.1/32" in expired["reason"].iloc[0]
    assert _cycle(store, settings, data, options).status == "idle"  # queued once


# --- 5. the API reads a message's recipient domain from its earlier events --------------------


def test_the_api_takes_the_messages_domain_from_its_earlier_events(world, tmp_path) -> None:
    base = next(dict(i) for i in world["items"] if i.get("channel") == "email")
    tenant = base["tenant_id"]
    first = {**base, "event_id": "d1", "recipient_domain": "corp.example"}
    later = {k: v for k, v in base.items() if k != "recipient_domain"}
    at = pd.Timestamp(base["occurred_at"]) + pd.Timedelta(seconds=30)
    later.update(event_id="d2", occurred_at=at.isoformat())
    stranger = {**later, "event_id": "d3", "tenant_id": "other"}  # same message id
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    for t in (tenant, "other"):
        lists.add_entry(store, lists.build_entry(t, "block", "domain", "corp.example"))
    runtime = Runtime(Settings(), world["model"], world["enrichers"], MemoryState(86_400, 3600))
    runtime.lists = ListCache(lambda: store)
    assert runtime.score([first])[0]["reasons"][0] == "tenant_blocklist"
    got = runtime.score([later, stranger])
    assert got[0]["is_bot"] is True and got[0]["reasons"][0] == "tenant_blocklist"
    assert "tenant_blocklist" not in got[1]["reasons"]  # another tenant's message: unknown
    # an event's own domain stays its own
    own = {**later, "event_id": "d4", "recipient_domain": "else.example"}
    assert "tenant_blocklist" not in runtime.score([own])[0]["reasons"]
    store.close()


# --- 6. `botfilter score` prints the bots as written ------------------------------------------


def test_score_prints_the_bots_as_written_in_the_file(
    tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import scoring.stream
    from contract.counts import Report
    from jobs import commands
    from scoring.scores_file import read_scores, write_scores

    settings, store, data, options = tiny
    monkeypatch.setenv("BOTFILTER_HOME", str(settings.home))
    monkeypatch.setenv("BOTFILTER_SCORE_WORKERS", "1")
    for name in ("DATABASE_URL", "REDIS_URL"):
        monkeypatch.delenv(f"BOTFILTER_{name}", raising=False)
    for value in ("40.94.12.7", "40.94.12.8"):  # t1's two bots are people to t1
        lists.add_entry(store, lists.build_entry("t1", "allow", "ip", value))

    def score(data_dir, out, *args, **kwargs) -> scoring.stream.ScoreRun:
        events = pd.read_csv(Path(data_dir) / "events.csv")
        frame = options.scorer(type("T", (), {"events": events}))
        frame["bot_kind"] = ["security_scanner" if b else "" for b in frame["is_bot"]]
        write_scores(frame, out)
        return scoring.stream.ScoreRun(Report({}), len(frame), int(frame["is_bot"].sum()), "m/1")

    monkeypatch.setattr(scoring.stream, "score_data_dir", score)
    out = tmp_path / "scores.parquet"
    commands.score(data=data, out=out, model=None, engine="local", spark_master=None)
    written = int(read_scores(out)["is_bot"].sum())
    printed = capsys.readouterr().out
    line = " ".join(printed.split("scored ", 1)[-1].split())
    assert written == 2  # t2's two
    assert line.startswith(f"6 events ({written} bots) with m/1")
    assert line.endswith("; 2 decided by the tenants' lists")


# --- 7. the first settings change reads the same on both channels -----------------------------


def test_a_new_tenants_first_change_is_from_off_on_both_channels(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    changes = set_exclusions(store, "new", {"email": True, "sms": True}, source="cli")
    assert [(c.channel, c.previous) for c in changes] == [("email", False), ("sms", False)]
    history = store.settings_history("new")
    rows = zip(history["channel"], history["previous"], history["enabled"], strict=True)
    assert list(rows) == [("email", False, True), ("sms", False, True)]
    store.close()
