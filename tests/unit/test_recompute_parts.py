"""`botfilter recompute` part by part (whole tenants) equals one recompute of the whole
directory: the same validation counts, result tables, stored metrics, window events and job
runs, with memory that follows the largest part."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from core.settings import Settings
from jobs.recompute import (
    RecomputeOptions,
    load_data,
    recompute,
    recompute_data_dir,
)
from jobs.store import Store

AS_OF = pd.Timestamp("2024-03-31T00:00:00Z")


@pytest.fixture
def data_dir(parts_world) -> Path:
    """Three tenants (about 1,000 events each), a settings table that turns the email filter
    on for t1, a broken event and a repeated one (quarantine and duplicate counts)."""
    return parts_world(AS_OF)


def _store(root: Path) -> tuple[Settings, Store]:
    settings = Settings(home=root)
    return settings, Store.open(settings)


def _window_events(store: Store, tenant: str) -> pd.DataFrame:
    """The tenant's stored window events; ``message_code`` numbers the messages of one
    recompute (a part's or the directory's): checked one-to-one with message_id, then left out."""
    frame = store.window_events(tenant)
    assert frame.groupby("message_id")["message_code"].nunique().max() == 1
    assert frame.groupby("message_code")["message_id"].nunique().max() == 1
    return frame.drop(columns="message_code")


def test_parts_equal_the_whole_directory(tmp_path, data_dir, label_scorer) -> None:
    options = RecomputeOptions(as_of=AS_OF, scorer=label_scorer, model_version="labels")
    settings_a, parts_store = _store(tmp_path / "parts")
    report, parted = recompute_data_dir(parts_store, settings_a, data_dir, options, part_events=900)
    settings_b, whole_store = _store(tmp_path / "whole")
    validated = load_data(data_dir)
    whole = recompute(whole_store, settings_b, validated, options)

    assert report.tables == validated.report.tables
    assert report.tables["events"].duplicates == 1
    # the t2 event naming t1's message: its part holds no t1 row, the count still names it
    assert report.tables["events"].quarantined == {
        "unknown type: swipe": 1,
        "tenant mismatch with message": 1,
    }
    assert parted.tenants == whole.tenants == ("t1", "t2", "t3")
    assert parted.window == whole.window
    assert (parted.events_used, parted.rows_written) == (whole.events_used, whole.rows_written)
    assert parted.scores_source == whole.scores_source == "scored"
    assert parted.model_versions == whole.model_versions
    for name, table in whole.tables.items():
        pd.testing.assert_frame_equal(parted.tables[name], table, check_exact=True)
    for tenant in whole.tenants:
        for name in whole.tables:
            pd.testing.assert_frame_equal(
                parts_store.read_view(name, tenant), whole_store.read_view(name, tenant)
            )
        pd.testing.assert_frame_equal(
            _window_events(parts_store, tenant), _window_events(whole_store, tenant)
        )
    runs = parts_store.job_runs(kind="recompute")
    assert sorted(runs["tenant_id"]) == ["t1", "t2", "t3"]
    assert set(runs["status"]) == {"succeeded"}
    assert runs["batch_id"].nunique() == 1  # one command, one batch, whatever the parts


def test_out_holds_the_quarantine_as_validate_writes_it(tmp_path, data_dir, label_scorer) -> None:
    """PRODUCT.md: a refused row goes to a quarantine output with its reason. `recompute --out`
    wrote the four tables only, so the rows it refused were nowhere but in the counts. Part by
    part, the rows read as the whole directory's (a part alone cannot tell "unknown message"
    from "tenant mismatch with message")."""
    expected = load_data(data_dir).quarantine
    assert set(expected["reason"]) == {"unknown type: swipe", "tenant mismatch with message"}
    parts_out, whole_out = tmp_path / "parts-out", tmp_path / "whole-out"
    options = RecomputeOptions(as_of=AS_OF, scorer=label_scorer, model_version="labels")
    _, parted = recompute_data_dir(
        _store(tmp_path / "p")[1], Settings(home=tmp_path / "p"), data_dir,
        replace(options, out=parts_out), part_events=900,
    )  # fmt: skip
    # a tenant subset reads the whole directory at once
    whole_options = replace(options, out=whole_out, tenants=["t1", "t2", "t3"])
    _, whole = recompute_data_dir(
        _store(tmp_path / "w")[1], Settings(home=tmp_path / "w"), data_dir, whole_options
    )
    for result, out in ((parted, parts_out), (whole, whole_out)):
        assert result.files["quarantine"] == out / "quarantine.parquet"
        pd.testing.assert_frame_equal(pd.read_parquet(out / "quarantine.parquet"), expected)


def test_parts_are_read_one_at_a_time(tmp_path, data_dir, label_scorer, monkeypatch) -> None:
    """Each part is validated and recomputed before the next is read: three tenants of about
    1,000 events in parts of 900 give three recomputes of one tenant each."""
    import jobs.recompute as module

    seen: list[tuple[str, ...]] = []
    real = module.recompute

    def spy(store, settings, data, options):  # noqa: ANN001, ANN202
        seen.append(tuple(sorted(data.messages["tenant_id"].unique())))
        return real(store, settings, data, options)

    monkeypatch.setattr(module, "recompute", spy)
    settings, store = _store(tmp_path / "home")
    options = RecomputeOptions(as_of=AS_OF, scorer=label_scorer, model_version="labels")
    _, result = recompute_data_dir(store, settings, data_dir, options, part_events=900)
    assert sorted(seen) == [("t1",), ("t2",), ("t3",)]
    assert result.tenants == ("t1", "t2", "t3")
    # a tenant subset reads the directory whole (one recompute)
    seen.clear()
    subset = RecomputeOptions(
        as_of=AS_OF, scorer=label_scorer, model_version="labels", tenants=["t2"]
    )
    recompute_data_dir(store, settings, data_dir, subset, part_events=900)
    assert seen == [("t1", "t2", "t3")]


def test_a_tenant_subset_validates_only_its_part(
    tmp_path, data_dir, label_scorer, monkeypatch
) -> None:
    """The worker's queued recompute of one tenant validates that tenant's part only, and
    stores what a recompute of the whole directory for that tenant stores."""
    import jobs.recompute as module
    from contract.parts import TenantParts
    from jobs.recompute import recompute_parts

    validated_tenants: list[list[str]] = []
    real = module.validate_raw

    def spy(raws, referenced_only=False):  # noqa: ANN001, ANN202
        out = real(raws, referenced_only)
        validated_tenants.append(sorted(out.messages["tenant_id"].unique()))
        return out

    monkeypatch.setattr(module, "validate_raw", spy)
    options = RecomputeOptions(
        as_of=AS_OF, scorer=label_scorer, model_version="labels", tenants=["t2"]
    )
    settings_a, parts_store = _store(tmp_path / "parts")
    parts = TenantParts(data_dir, 900)
    # parts come in the order of their tenants' first event
    assert sorted(parts.tenants(i) for i in range(len(parts))) == [["t1"], ["t2"], ["t3"]]
    results = recompute_parts(parts_store, settings_a, parts, options).results
    assert validated_tenants == [["t2"]]
    assert [r.tenants for r in results] == [("t2",)]
    monkeypatch.setattr(module, "validate_raw", real)
    settings_b, whole_store = _store(tmp_path / "whole")
    whole = recompute(whole_store, settings_b, load_data(data_dir), options)
    assert results[0].events_used == whole.events_used
    for name in whole.tables:
        pd.testing.assert_frame_equal(results[0].tables[name], whole.tables[name])
        pd.testing.assert_frame_equal(
            parts_store.read_view(name, "t2"), whole_store.read_view(name, "t2")
        )
    assert parts_store.read_view("dashboard_daily", "t1").empty


def test_skipped_parts_leave_the_next_parts_as_read_in_full(data_dir) -> None:
    from contract.parts import TenantParts

    read = TenantParts(data_dir, 900)
    read.raw(0)
    expected = read.raw(1)
    skipping = TenantParts(data_dir, 900)
    assert skipping.fresh
    skipping.skip(0)
    assert not skipping.fresh
    got = skipping.raw(1)
    for name, raw in expected.items():
        assert got[name].data.equals(raw.data)
        assert got[name].row_number_array().tolist() == raw.row_number_array().tolist()
    with pytest.raises(ValueError, match="expected part 2, got 1"):
        skipping.skip(1)


def test_a_worker_cycle_counts_a_tenant_without_clean_messages_as_waiting(
    tmp_path, data_dir, label_scorer
) -> None:
    """As when the whole directory was loaded: a queued tenant whose every message is
    quarantined waits for data; the cycle does not fail."""
    from jobs.exclusions import set_exclusion
    from jobs.worker import CycleOptions, run_cycle

    messages = pd.read_parquet(data_dir / "messages.parquet")
    broken = messages["tenant_id"].str.strip() == "t3"  # "t3 " is t3 too
    messages.loc[broken, "channel"] = "fax"  # not a channel: every t3 message is quarantined
    messages.to_parquet(data_dir / "messages.parquet", index=False)
    settings, store = _store(tmp_path / "home")
    options = CycleOptions(scorer=label_scorer, model_version="labels")
    now = AS_OF.to_pydatetime()
    first = run_cycle(store, settings, data_dir, options, now=now)
    assert first.status == "succeeded", first.line()
    assert sorted({t for t, _ in first.recomputed}) == ["t1", "t2"]
    set_exclusion(store, "t3", "email", True)
    set_exclusion(store, "t1", "sms", True)
    queued = run_cycle(store, settings, data_dir, options, now=now)
    assert queued.status == "succeeded", queued.line()
    assert queued.recomputed == [("t1", ("sms",))]
    assert queued.waiting == ["t3"]


def test_a_tenant_another_run_holds_is_left_for_the_next_cycle(
    tmp_path, data_dir, label_scorer
) -> None:
    """A recompute takes the locks of every tenant of its scope: one tenant held by another run
    (a `botfilter recompute --tenant t3`) made the worker wait for it up to the store's lock
    timeout, then fail every tenant queued beside it. Now the held tenant waits for the next
    cycle and the others are recomputed."""
    from jobs.exclusions import set_exclusion
    from jobs.worker import CycleOptions, run_cycle

    settings, store = _store(tmp_path / "home")
    store.lock_timeout = 5.0  # were it waited for, the cycle would fail after 5 s
    options = CycleOptions(scorer=label_scorer, model_version="labels")
    now = AS_OF.to_pydatetime()
    assert run_cycle(store, settings, data_dir, options, now=now).status == "succeeded"
    set_exclusion(store, "t1", "email", False)
    set_exclusion(store, "t3", "email", True)
    with store.locks(["tenant:t3"]):
        held = run_cycle(store, settings, data_dir, options, now=now)
    assert held.status == "succeeded", held.line()
    assert held.recomputed == [("t1", ("email",))] and held.busy == ["t3"]
    assert "another run holds them): t3" in held.line()
    assert sorted(store.pending()["tenant_id"]) == ["t3"]
    later = run_cycle(store, settings, data_dir, options, now=now)
    assert later.recomputed == [("t3", ("email",))] and later.busy == []
    assert store.pending().empty


def test_new_data_for_a_held_tenant_is_taken_by_the_next_cycle(
    tmp_path, data_dir, label_scorer
) -> None:
    """The audit: new data arrived while another run held t3; the cycle said "left for the
    next cycle" yet saved the data's fingerprint, so the next cycle was idle and t3 waited for
    the hourly recompute."""
    from jobs.worker import FINGERPRINT, CycleOptions, run_cycle

    settings, store = _store(tmp_path / "home")
    options = CycleOptions(scorer=label_scorer, model_version="labels")
    now = AS_OF.to_pydatetime()
    assert run_cycle(store, settings, data_dir, options, now=now).status == "succeeded"
    with store.write() as conn:
        store.set_state(FINGERPRINT, "the data before new files arrived", conn)
    with store.locks(["tenant:t3"]):
        held = run_cycle(store, settings, data_dir, options, now=now)
    assert held.busy == ["t3"] and "t3" not in {t for t, _ in held.recomputed}
    later = run_cycle(store, settings, data_dir, options, now=now)
    assert later.status == "succeeded", later.line()
    assert "t3" in {t for t, _ in later.recomputed}


def test_the_worker_loop_outlives_a_store_that_goes_away(tmp_path, data_dir, label_scorer) -> None:
    """The audit: the metrics store down for a few seconds ended `botfilter run` for good
    (an internal error); now that cycle fails in one line and the next one runs."""
    import threading
    from datetime import timedelta

    from sqlalchemy.exc import OperationalError

    from jobs.store import Store
    from jobs.worker import CycleOptions, run_worker

    settings, store = _store(tmp_path / "home")
    options = CycleOptions(scorer=label_scorer, model_version="labels")
    calls = {"n": 0}
    real = Store.last_queue_id

    def away_once(self):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 1:
            raise OperationalError("SELECT", {}, Exception("connection refused password=hunter2"))
        return real(self)

    stop = threading.Event()
    seen: list = []

    def on_cycle(result) -> None:  # noqa: ANN001
        seen.append(result)
        if len(seen) == 2:
            stop.set()

    Store.last_queue_id = away_once  # type: ignore[method-assign]
    try:
        run_worker(
            store, settings, data_dir, timedelta(seconds=0.1), options,
            now=AS_OF.to_pydatetime(), poll=0.05, stop=stop, on_cycle=on_cycle,
        )  # fmt: skip
    finally:
        Store.last_queue_id = real  # type: ignore[method-assign]
    assert seen[0].status == "failed" and "could not be reached" in seen[0].line()
    assert "hunter2" not in seen[0].line()
    assert seen[1].status == "succeeded", seen[1].line()


def test_a_cycle_says_what_it_quarantined(tmp_path, data_dir, label_scorer) -> None:
    """PRODUCT.md: a bad row is never silently dropped. The audit: `botfilter run` logged
    "succeeded" and its job run said nothing of the rows validation set aside."""
    import contract
    from jobs.worker import CycleOptions, run_cycle

    expected = {
        f"{name}: {why}": n
        for name, table in contract.load(data_dir).report.tables.items()
        for why, n in table.quarantined.items()
    }
    assert expected  # the fixture holds a broken event
    settings, store = _store(tmp_path / "home")
    options = CycleOptions(scorer=label_scorer, model_version="labels")
    result = run_cycle(store, settings, data_dir, options, now=AS_OF.to_pydatetime())
    assert result.status == "succeeded" and result.quarantined == expected
    assert f"quarantined {sum(expected.values()):,} rows" in result.line()
    cycle = store.job_runs().query("kind == 'cycle'").iloc[-1]
    assert '"quarantined"' in cycle["detail"]


def test_a_cycle_left_running_by_a_stopped_worker_is_abandoned(
    tmp_path, data_dir, label_scorer
) -> None:
    """The audit: a worker stopped mid-cycle (SIGTERM, as a service manager stops it) left its
    cycle "running" for good, and the console's status said so."""
    from jobs.worker import CycleOptions, run_cycle

    settings, store = _store(tmp_path / "home")
    dead = store.start_run("cycle")  # the stopped worker's, never finished
    options = CycleOptions(scorer=label_scorer, model_version="labels")
    assert run_cycle(store, settings, data_dir, options, now=AS_OF.to_pydatetime()).status == (
        "succeeded"
    )
    cycles = store.job_runs().query("kind == 'cycle'").set_index("run_id")["status"]
    assert cycles[dead] == "abandoned" and (cycles.drop(dead) == "succeeded").all()


def test_a_worker_process_that_died_leaves_no_run_running(tmp_path, data_dir, monkeypatch) -> None:
    """A recompute worker process killed mid-part (the pool then raises BrokenProcessPool) left
    its tenant's run "running", shown as such, until that tenant's next run: the runs its batch
    left running are abandoned as soon as the pool breaks."""
    from concurrent.futures.process import BrokenProcessPool

    import jobs.recompute as rc
    from contract.parts import TenantParts

    settings, store = _store(tmp_path)
    started: list[str] = []

    def died(parts, job, workers, progress):  # noqa: ANN001, ANN202
        # the worker started the part's run, then its process was killed
        started.append(store.start_run("recompute", "t2", batch_id=job.options.batch))
        raise BrokenProcessPool("A process in the process pool was terminated abruptly")

    monkeypatch.setattr(rc, "_parts_in_workers", died)
    parts = TenantParts(data_dir, part_events=900)
    with pytest.raises(BrokenProcessPool):
        rc.recompute_parts(store, settings, parts, RecomputeOptions(as_of=AS_OF), workers=2)
    runs = store.job_runs("t2", kind="recompute")
    assert runs["run_id"].tolist() == started
    assert runs["status"].tolist() == ["abandoned"]
    assert runs["error"].tolist() == ["a worker process ended before the run finished"]
