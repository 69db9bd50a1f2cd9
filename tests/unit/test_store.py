"""The metrics store on a SQLite file: settings, queue, scores, partitions, views, runs, locks."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.errors import BotfilterError
from jobs.exclusions import (
    parse_switch,
    set_exclusion,
    set_exclusions,
    sync_from_data,
    tenant_setting,
)
from jobs.metrics import MODULES, rollup
from jobs.recompute import check_scores, parse_as_of
from jobs.store import LockTimeout, Store, normalise_url, view_sql
from jobs.worker import parse_every


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'metrics.db'}")
    yield s
    s.close()


def test_normalise_url() -> None:
    assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"
    with pytest.raises(BotfilterError, match="must be a file"):
        Store("sqlite://")
    with pytest.raises(BotfilterError, match="use sqlite"):
        Store("mysql://u@h/db")


def test_store_opens_from_settings(settings) -> None:
    store = Store.open(settings)
    assert store.dialect == "sqlite"
    assert Path(store.path) == (settings.home / "metrics.db").resolve()
    store.close()


def test_settings_history_and_queue(store: Store) -> None:
    at = datetime(2024, 3, 1, 12, tzinfo=UTC)
    first = set_exclusion(store, "t1", "email", True, at=at)
    assert (first.previous, first.enabled, first.queue_id) == (False, True, 1)  # off at start
    changes = set_exclusions(store, "t1", {"email": False, "sms": True})
    assert [c.previous for c in changes] == [True, False]
    assert tenant_setting(store, "t1") == {"email": False, "sms": True}
    assert tenant_setting(store, "nobody") == {"email": False, "sms": False}
    history = store.settings_history("t1")
    assert list(zip(history["channel"], history["enabled"], strict=True)) == [
        ("email", True),
        ("email", False),
        ("sms", True),
    ]
    assert history["changed_at"].iloc[0] == at
    pending = store.pending()
    assert list(pending["channel"]) == ["email", "email", "sms"]
    assert store.exclusions() == {("t1", "email"): False, ("t1", "sms"): True}
    with pytest.raises(BotfilterError, match="unknown channel"):
        set_exclusion(store, "t1", "fax", True)
    with pytest.raises(BotfilterError, match="on or off"):
        parse_switch("maybe", "--email")
    assert parse_switch("ON") is True and parse_switch("off") is False


def test_data_settings_newer_win(store: Store) -> None:
    set_exclusion(store, "t1", "email", True, at=datetime(2024, 3, 5, tzinfo=UTC))
    frame = pd.DataFrame(
        {
            "tenant_id": ["t1", "t2"],
            "exclude_bots_email": pd.array([False, True], dtype="boolean"),
            "exclude_bots_sms": pd.array([False, False], dtype="boolean"),
            "updated_at": pd.to_datetime(["2024-03-01", "2024-03-02"], utc=True),
        }
    )
    changes = sync_from_data(store, frame)
    # t1's row is older than the store's change: kept; t2 is new
    assert {(c.tenant_id, c.channel, c.enabled) for c in changes} == {
        ("t2", "email", True),
        ("t2", "sms", False),
    }
    assert [c.queue_id is not None for c in changes if c.channel == "email"] == [True]
    assert tenant_setting(store, "t1")["email"] is True
    newer = frame.assign(updated_at=pd.to_datetime(["2024-03-09", "2024-03-02"], utc=True))
    changes = sync_from_data(store, newer)
    assert [(c.tenant_id, c.channel, c.enabled, c.previous) for c in changes] == [
        ("t1", "email", False, True)
    ]
    assert sync_from_data(store, newer) == []  # nothing newer the second time


def test_the_history_lists_changes_only(store: Store) -> None:
    """A data directory's settings of a new tenant said "sms off → off" in the history (and
    the dashboard drew a "setting changed" marker for it): off is where every tenant starts."""
    frame = pd.DataFrame(
        {
            "tenant_id": ["t2"],
            "exclude_bots_email": pd.array([True], dtype="boolean"),
            "exclude_bots_sms": pd.array([False], dtype="boolean"),
            "updated_at": pd.to_datetime(["2024-03-02"], utc=True),
        }
    )
    sync_from_data(store, frame)
    assert tenant_setting(store, "t2") == {"email": True, "sms": False}
    set_exclusion(store, "t2", "email", True, at=datetime(2024, 3, 3, tzinfo=UTC))  # no change
    set_exclusion(store, "t2", "email", False, at=datetime(2024, 3, 4, tzinfo=UTC))
    history = store.settings_history("t2")
    rows = zip(history["channel"], history["previous"], history["enabled"], strict=True)
    assert list(rows) == [
        ("email", False, True),
        ("email", True, False),
    ]


def test_partitions_replace_only_their_tenant_channels_and_dates(
    computed_partitions, write_partitions, store: Store
) -> None:
    write_partitions(store, computed_partitions("t1"))
    write_partitions(store, computed_partitions("t2"), "t2")
    with pytest.raises(ValueError, match="rows outside t1"):
        write_partitions(store, computed_partitions("t2"), "t1")
    before_t2 = store.read_partitions("campaign_metrics", "t2")
    # t1 recomputed with the email filter off, email only
    write_partitions(store, computed_partitions("t1", email_on=False), "t1", channels=("email",))
    t1 = store.read_partitions("campaign_metrics", "t1")
    assert not t1.loc[t1["channel"] == "email", "bot_filter_applied"].any()
    pd.testing.assert_frame_equal(store.read_partitions("campaign_metrics", "t2"), before_t2)
    summary = store.partition_summary("t1")
    assert len(summary) == 60 and summary["messages"].sum() == 3
    assert set(summary.loc[summary["channel"] == "email", "bot_filter_applied"]) == {False}
    # the stored partitions roll up to the same table as the computation
    assert store.read_partitions("campaign_metrics", "t1", since=date(2024, 3, 11)).shape[0] == 2


def test_views_equal_the_pandas_rollup(computed_partitions, write_partitions, store: Store) -> None:
    write_partitions(store, computed_partitions("t1"))
    write_partitions(store, computed_partitions("t2", email_on=False), "t2")
    for name, module in MODULES.items():
        view = store.read_view(name)
        expected = rollup(store.read_partitions(name), module, comparison=True)
        pd.testing.assert_frame_equal(view, expected, check_dtype=True), name
    assert "SUM(opens_total) AS opens_total" in view_sql(MODULES["campaign_metrics"])


def test_scores_round_trip_and_keep_existing(store: Store) -> None:
    frame = check_scores(
        pd.DataFrame(
            {
                "event_id": ["e1", "e2"],
                "bot_score": [0.9, 0.2],
                "is_bot": [True, False],
                "reasons": [["a", "b"], []],
                "model_version": "m/1",
            }
        )
    )
    assert store.save_scores(frame, ["t1", "t1"]) == 2
    changed = frame.assign(bot_score=[0.1, 0.1])
    store.save_scores(changed, ["t1", "t1"])  # a later batch never replaces a stored score
    loaded = store.load_scores(["t1"], "m/1", reasons=True)
    loaded = loaded.sort_values("event_id", ignore_index=True)
    assert list(loaded["bot_score"]) == [0.9, 0.2]
    assert [list(r) for r in loaded["reasons"]] == [["a", "b"], []]
    assert list(loaded["top_reason"]) == ["a", None]
    assert sorted(store.stored_score_ids(["t1"], "m/1")["event_id"]) == ["e1", "e2"]
    assert store.score_versions(["t1"]) == {"m/1": 4}  # two batches of two
    assert store.load_scores(["t1"], "m/2").empty
    assert store.load_scores(["t2"], "m/1").empty


def scores_frame(ids: list[str], score: float, version: str = "botfilter/1") -> pd.DataFrame:
    n = len(ids)
    return pd.DataFrame(
        {
            "event_id": ids,
            "bot_score": [score] * n,
            "is_bot": [score >= 0.5] * n,
            "reasons": [["a"]] * n,
            "model_version": version,
        }
    )


def test_scores_are_keyed_by_model_content_not_label(store: Store) -> None:
    """Issue 14 item 1: two models labelled botfilter/1 (two registries) keep apart."""
    store.save_scores(scores_frame(["e1"], 0.9), ["t1"], model_id="sha256:aaa")
    store.save_scores(scores_frame(["e1"], 0.1), ["t1"], model_id="sha256:bbb")
    a = store.load_scores(["t1"], "sha256:aaa")
    b = store.load_scores(["t1"], "sha256:bbb")
    assert list(a["bot_score"]) == [0.9] and list(b["bot_score"]) == [0.1]
    assert list(b["model_version"]) == ["botfilter/1"]  # the label stays what people read
    assert store.load_scores(["t1"], "botfilter/1").empty
    assert store.score_versions(["t1"]) == {"sha256:aaa": 1, "sha256:bbb": 1}


def test_scores_are_keyed_by_tenant_and_event(store: Store) -> None:
    """A duplicate is (tenant_id, event_id): e1 of t1 and e1 of t2 are two events."""
    store.save_scores(scores_frame(["e1"], 0.9), ["t1"], model_id="m")
    store.save_scores(scores_frame(["e1"], 0.1), ["t2"], model_id="m")
    both = store.load_scores(["t1", "t2"], "m").sort_values("tenant_id")
    assert list(zip(both["tenant_id"], both["event_id"], both["bot_score"], strict=True)) == [
        ("t1", "e1", 0.9),
        ("t2", "e1", 0.1),
    ]
    assert store.clear_scores("t1") == 1
    assert list(store.load_scores(["t1", "t2"], "m")["tenant_id"]) == ["t2"]


def test_old_score_batches_get_model_id_and_are_never_reused(tmp_path: Path) -> None:
    """A store made before scores were keyed by content: its label-keyed batches stay unused."""
    import sqlite3

    url = f"sqlite:///{tmp_path / 'old.db'}"
    Store(url).save_scores(scores_frame(["e1"], 0.9), ["t1"], model_id="x")
    with sqlite3.connect(tmp_path / "old.db") as db:  # what the old schema had
        db.execute("DROP INDEX ix_score_batches_tenant_model")
        db.execute("ALTER TABLE score_batches DROP COLUMN model_id")
    reopened = Store(url)
    assert reopened.score_versions(["t1"]) == {}
    assert reopened.load_scores(["t1"], "botfilter/1").empty
    reopened.save_scores(scores_frame(["e1"], 0.2), ["t1"], model_id="sha256:new")
    assert list(reopened.load_scores(["t1"], "sha256:new")["bot_score"]) == [0.2]


def test_check_scores_errors() -> None:
    good = {"event_id": ["e1"], "bot_score": [0.5], "is_bot": ["true"], "reasons": ["a"]}
    with pytest.raises(BotfilterError, match="missing column model_version"):
        check_scores(pd.DataFrame(good))
    good["model_version"] = ["v"]
    assert check_scores(pd.DataFrame(good))["is_bot"].tolist() == [True]
    with pytest.raises(BotfilterError, match=r"bot_score must be a number in \[0, 1\]"):
        check_scores(pd.DataFrame({**good, "bot_score": [1.5]}))
    with pytest.raises(BotfilterError, match="is_bot must be true or false"):
        check_scores(pd.DataFrame({**good, "is_bot": ["perhaps"]}))
    twice = pd.DataFrame({k: v * 2 for k, v in good.items()})
    with pytest.raises(BotfilterError, match="scored more than once"):
        check_scores(twice)


def test_job_runs_and_abandoned_runs(store: Store) -> None:
    dead = store.start_run("recompute", "t1", ("email",))
    live = store.start_run("recompute", "t1", ("email", "sms"))
    store.finish_run(live, rows_in=5, rows_out=7, detail={"x": 1})
    runs = store.job_runs("t1").set_index("run_id")
    assert runs.loc[dead, "status"] == "abandoned"
    assert runs.loc[live, "status"] == "succeeded"
    assert (runs.loc[live, "rows_in"], runs.loc[live, "rows_out"]) == (5, 7)
    assert runs.loc[live, "finished_at"] >= runs.loc[live, "started_at"]
    assert runs.loc[live, "channels"] == "email,sms"


def test_locks_exclude_each_other_and_release(store: Store) -> None:
    entered = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with store.locks(["tenant:t1"]):
            entered.set()
            release.wait(5)

    thread = threading.Thread(target=hold)
    thread.start()
    assert entered.wait(5)
    with pytest.raises(LockTimeout, match="tenant:t1 is locked"), store.locks(["tenant:t1"], 0.2):
        pass
    with store.locks(["tenant:t2"], timeout=0):  # another tenant is free
        pass
    release.set()
    thread.join()
    start = time.monotonic()
    with store.locks(["tenant:t1", "tenant:t2"], timeout=1):
        pass
    assert time.monotonic() - start < 1


def test_queue_completion_is_bounded(store: Store) -> None:
    set_exclusion(store, "t1", "email", True)
    set_exclusion(store, "t1", "sms", True)
    seen = store.pending()["id"].tolist()
    set_exclusion(store, "t1", "email", False)  # arrives after the snapshot
    with store.write() as conn:
        assert store.complete_queue(conn, "t1", ("email", "sms"), seen, "run") == 2
    assert list(store.pending()["id"]) == [3]
    assert store.has_pending() and store.last_queue_id() == 3


def test_option_parsers() -> None:
    assert parse_every("5m").total_seconds() == 300
    assert parse_every("90").total_seconds() == 90
    assert parse_every("1h").total_seconds() == 3600
    with pytest.raises(BotfilterError, match="period like"):
        parse_every("soon")
    assert parse_as_of("1709251200000") == pd.Timestamp("2024-03-01T00:00Z")
    assert parse_as_of("2024-03-01T01:00+01:00") == pd.Timestamp("2024-03-01T00:00Z")
    assert parse_as_of(None) is None
    with pytest.raises(BotfilterError, match="timestamp"):
        parse_as_of("next tuesday")


def test_ipv6_prefixes_are_written_as_ipaddress_writes_them() -> None:
    """The /48 labels written from inet_pton's groups equal ``ipaddress``'s, zero groups and
    IPv4-mapped or -compatible addresses included; what inet_pton refuses still goes through
    ``ipaddress`` (zone ids, surrounding space) or stays as given."""
    import ipaddress
    import random

    from jobs.store.window_events import _prefix, _v6_prefixes

    rng = random.Random(5)
    texts = ["::", "::1", "0:1::", "0:0:1::5", "0:1:0:1::", "2001:DB8:0:0:1::", "1:2:3:4:5:6:7:8"]
    texts += ["::ffff:1.2.3.4", "::1.2.3.4", "fe80::1%eth0", " 2001:db8::1", "x", "01.2.3.4"]
    for _ in range(2000):
        groups = [rng.choice([0, 0, 1, 0xFFFF, rng.randrange(1 << 16)]) for _ in range(8)]
        texts.append(str(ipaddress.IPv6Address(b"".join(g.to_bytes(2, "big") for g in groups))))
    assert _v6_prefixes(texts) == [_prefix(t) for t in texts]
    assert _v6_prefixes(["", "0:1::"]) == ["unknown", "0:1::/48"]


def test_window_event_networks_label_each_address_and_given_asn() -> None:
    """One label per (address, given ASN) pair: the same address with two given ASNs keeps
    both, a missing address is 'unknown', and what is not a canonical address stays as given."""
    from jobs.store.window_events import networks

    events = pd.DataFrame(
        {
            "ip": [
                "1.2.3.4",
                None,
                "2001:db8::1",
                "01.2.3.4",
                "1.2.3.4",
                "10.0.0.9",
                "1.2.3.4",
                "10.0.0.9",
            ],
            "asn": pd.array([15169, None, None, None, None, 7, 64500, 7], dtype="Int64"),
        }
    )
    assert list(networks(events, None)) == [
        "AS15169 1.2.3.0/24",
        "unknown",
        "2001:db8::/48",
        "01.2.3.4",
        "1.2.3.0/24",
        "AS7 10.0.0.0/24",
        "AS64500 1.2.3.0/24",
        "AS7 10.0.0.0/24",
    ]
    seen: list[tuple[str, float]] = []

    def lookup(ips, asns):  # noqa: ANN001, ANN202
        seen.extend(zip(ips, asns, strict=True))
        return [a if a == a else 99 for a in asns]

    labels = networks(events, lookup)
    assert len(seen) == 7  # one lookup per distinct pair
    assert list(labels) == [
        "AS15169 1.2.3.0/24",
        "AS99 unknown",
        "AS99 2001:db8::/48",
        "AS99 01.2.3.4",
        "AS99 1.2.3.0/24",
        "AS7 10.0.0.0/24",
        "AS64500 1.2.3.0/24",
        "AS7 10.0.0.0/24",
    ]


def test_records_are_plain_values_with_none_for_missing() -> None:
    """Each row a dict of Python values as ``astype(object)`` gives them: a timestamp stays a
    Timestamp (with its zone), missing values of any dtype are None."""
    from jobs.store.rows import records

    day = pd.Timestamp("2026-01-02")
    at = pd.Timestamp("2026-01-02T03:04:05Z")
    frame = pd.DataFrame(
        {
            "n": [1, 2],
            "x": [0.5, np.nan],
            "s": ["a", None],
            "day": [day, pd.NaT],
            "at": [at, at],
            "k": pd.array([None, 7], dtype="Int64"),
            "extra": [9, 9],
        }
    )
    rows = records(frame, ["n", "x", "s", "day", "at", "k"])
    assert rows == [
        {"n": 1, "x": 0.5, "s": "a", "day": day, "at": at, "k": None},
        {"n": 2, "x": None, "s": None, "day": None, "at": at, "k": 7},
    ]
    assert [type(v) for v in rows[1].values()][:5] == [
        int,
        type(None),
        type(None),
        type(None),
        pd.Timestamp,
    ]
    assert [type(v) for v in rows[0].values()][:5] == [int, float, str, pd.Timestamp, pd.Timestamp]
    assert records(frame.iloc[:0], ["n", "day"]) == []
