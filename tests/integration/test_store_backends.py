"""The metrics store on SQLite and PostgreSQL: the same tests against both back ends.

Each PostgreSQL test gets a fresh schema (``search_path`` in the URL), dropped afterwards.
The ``store_url`` and ``store`` fixtures live in tests/integration/conftest.py.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pandas as pd
import pytest

from jobs.exclusions import set_exclusion
from jobs.metrics import MODULES, rollup
from jobs.store import LockTimeout, Store

pytestmark = pytest.mark.integration


def dump(store: Store) -> dict[str, pd.DataFrame]:
    """Every stored partition table, for exact comparisons."""
    return {name: store.read_partitions(name) for name in MODULES}


def test_schema_is_isolated_and_reopenable(
    computed_partitions, write_partitions, store: Store, store_url: str
) -> None:
    write_partitions(store, computed_partitions("t1"))
    again = Store(store_url)  # opening an existing store keeps its data and views
    assert len(again.read_partitions("campaign_metrics")) == 3
    assert not again.read_view("campaign_metrics").empty
    again.close()


def test_views_equal_rollup(computed_partitions, write_partitions, store: Store) -> None:
    write_partitions(store, computed_partitions("t1"))
    write_partitions(store, computed_partitions("t2", email_on=False), "t2")
    for name, module in MODULES.items():
        expected = rollup(store.read_partitions(name), module, comparison=True)
        pd.testing.assert_frame_equal(store.read_view(name), expected)


def test_scores_bulk_round_trip(store: Store) -> None:
    n = 5000
    frame = pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(n)],
            "bot_score": [i / n for i in range(n)],
            "is_bot": [i % 3 == 0 for i in range(n)],
            "reasons": [["a", "b"] if i % 2 else [] for i in range(n)],
            "model_version": "m/1",
        }
    )
    assert store.save_scores(frame, ["t1"] * n) == n
    store.save_scores(frame.iloc[:10].assign(bot_score=1.0), ["t1"] * 10)  # kept, not replaced
    loaded = store.load_scores(["t1"], "m/1", reasons=True)
    loaded = loaded.set_index("event_id").loc[frame["event_id"]]
    assert loaded["bot_score"].tolist() == frame["bot_score"].tolist()
    assert loaded["is_bot"].tolist() == frame["is_bot"].tolist()
    assert list(loaded["reasons"].iloc[1]) == ["a", "b"]


def test_failed_write_leaves_previous_numbers(
    computed_partitions, write_partitions, store: Store
) -> None:
    write_partitions(store, computed_partitions("t1"))
    before = dump(store)
    with pytest.raises(RuntimeError, match="injected"), store.write() as conn:
        store.replace_partitions(
            conn,
            "t1",
            ("email", "sms"),
            *_dates(computed_partitions("t1")),
            {name: computed_partitions("t1", False).stored(name) for name in MODULES},
            _summary(computed_partitions("t1", False)),
        )
        raise RuntimeError("injected after the rows were written")
    after = dump(store)
    for name in MODULES:
        pd.testing.assert_frame_equal(after[name], before[name])


def test_reader_sees_old_or_new_never_a_mix(
    computed_partitions, write_partitions, store: Store
) -> None:
    """A reader rolling up inside one snapshot while a writer flips the filter back and forth."""
    on, off = computed_partitions("t1", True), computed_partitions("t1", False)
    write_partitions(store, on)
    states = {}
    for label, parts in (("on", on), ("off", off)):
        states[label] = int(
            rollup(parts.stored("campaign_metrics"), MODULES["campaign_metrics"])[
                "clicks_total"
            ].sum()
        ) + int(parts.stored("dashboard_daily")["clicks_total"].sum())
    seen: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            with store.read() as conn:
                camp = store.read_partitions("campaign_metrics", "t1", conn=conn)
                day = store.read_partitions("dashboard_daily", "t1", conn=conn)
            seen.append(int(camp["clicks_total"].sum()) + int(day["clicks_total"].sum()))

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(8):
        write_partitions(store, off if i % 2 == 0 else on)
    stop.set()
    thread.join()
    assert states["on"] != states["off"]
    assert seen and set(seen) <= {states["on"], states["off"]}


def test_tenant_locks_across_connections(store: Store) -> None:
    holding = threading.Event()
    done = threading.Event()

    def hold() -> None:
        with store.locks(["tenant:a"]):
            holding.set()
            done.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    assert holding.wait(10)
    other = Store(store.url) if store.dialect == "sqlite" else store
    with pytest.raises(LockTimeout), other.locks(["tenant:a"], timeout=0.3):
        pass
    with other.locks(["tenant:b"], timeout=0):
        pass
    done.set()
    thread.join()
    with other.locks(["tenant:a"], timeout=2):
        pass


def test_settings_on_both_backends(store: Store) -> None:
    set_exclusion(store, "t1", "email", True, at=datetime(2024, 1, 1, tzinfo=UTC))
    set_exclusion(store, "t1", "email", False)
    history = store.settings_history("t1")
    assert history["enabled"].tolist() == [True, False]
    assert history["changed_at"].iloc[0] == pd.Timestamp("2024-01-01", tz="UTC")
    assert store.exclusions() == {("t1", "email"): False, ("t1", "sms"): False}
    assert len(store.pending()) == 2


@pytest.mark.parametrize("first_exists", [True, False])
def test_concurrent_switches_of_two_channels_both_hold(store: Store, first_exists: bool) -> None:
    """The probe: two `settings set` at once, one for email and one for sms, both said done
    but PostgreSQL kept sms off. Each read the tenant's row, then wrote both channels back, so
    the later write put back the earlier one's stale value (a lost update; the worker then
    recomputed sms with the filter off). A wins the row first here and commits late; B starts
    meanwhile. On SQLite the write transactions queue up front, so B simply waits."""
    if first_exists:
        set_exclusion(store, "t1", "email", False)
    recorded, b_started = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with store.write() as conn:
                store.record_setting(conn, "t1", "email", True, datetime.now(UTC), "test")
                recorded.set()
                b_started.wait(5)
                threading.Event().wait(0.5)  # B reads (and blocks) while A is uncommitted
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            recorded.set()

    a = threading.Thread(target=first)
    a.start()
    recorded.wait(5)
    b_started.set()
    set_exclusion(store, "t1", "sms", True)
    a.join(10)
    assert not errors
    assert store.exclusions() == {("t1", "email"): True, ("t1", "sms"): True}
    history = store.settings_history("t1")
    assert list(zip(history["channel"], history["enabled"], strict=True))[-2:] == [
        ("email", True),
        ("sms", True),
    ]


def _dates(parts) -> tuple:
    return parts.window.first_date, parts.window.last_date


def _summary(parts) -> pd.DataFrame:
    return parts.summary.assign(
        window_start=parts.window.start,
        as_of=parts.window.end,
        computed_at=datetime.now(UTC),
        run_id="r",
        model_version="m",
    )
