"""Reliability of the recompute on SQLite and PostgreSQL: killed mid-write, failing mid-write,
byte-identical reruns, concurrent runs for one tenant, on/off/on toggles, tenant isolation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from core.errors import BotfilterError
from core.settings import Settings
from jobs.exclusions import set_exclusion
from jobs.metrics import MODULES
from jobs.recompute import RecomputeOptions, RecomputeResult, Tables, recompute
from jobs.store import Store

pytestmark = pytest.mark.integration

AS_OF = pd.Timestamp("2024-05-01T00:00:00Z")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def world(random_world, label_scores) -> dict[str, pd.DataFrame]:
    """The random world and the scores from its labels."""
    world = random_world(3, AS_OF, n=1500)
    return {**world, "scores": label_scores(world["events"])}


def run(store: Store, tmp_path: Path, world, **options) -> RecomputeResult:
    data = Tables(world["messages"], world["events"], world["segments"])
    settings = Settings(home=tmp_path / "home")
    options = RecomputeOptions(as_of=AS_OF, scores=world["scores"], **options)
    return recompute(store, settings, data, options)


def dump(store: Store, tenant: str | None = None) -> dict[str, pd.DataFrame]:
    return {name: store.read_partitions(name, tenant) for name in MODULES}


def assert_dumps_equal(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    for name in MODULES:
        pd.testing.assert_frame_equal(a[name], b[name], obj=name)


def dumps_differ(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> bool:
    return any(not a[name].equals(b[name]) for name in MODULES)


CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import pandas as pd
    import jobs.store.partitions as jp
    from core.settings import Settings
    from jobs.recompute import RecomputeOptions, Tables, recompute
    from jobs.store import Store

    url, flag, home, world = sys.argv[1:5]
    world = {n: pd.read_parquet(Path(world) / f"{n}.parquet")
             for n in ("messages", "events", "segments", "scores")}
    insert = jp.insert_frame

    def insert_then_hang(conn, table, frame):
        n = insert(conn, table, frame)
        if table.name == "part_segment_metrics":  # mid-transaction: some tables rewritten
            Path(flag).write_text("inside the write transaction")
            time.sleep(120)
        return n

    jp.insert_frame = insert_then_hang  # the partition write's row inserts
    data = Tables(world["messages"], world["events"], world["segments"])
    options = RecomputeOptions(as_of=pd.Timestamp("2024-05-01T00:00:00Z"), scores=world["scores"])
    recompute(Store(url), Settings(home=Path(home)), data, options)
    """
)


def test_killed_mid_write_keeps_previous_metrics_and_rerun_completes(
    store: Store, store_url: str, tmp_path: Path, world
) -> None:
    run(store, tmp_path, world)
    before = dump(store)
    set_exclusion(store, "t1", "email", True)
    flag = tmp_path / "flag"
    saved = tmp_path / "world"  # the child recomputes the same world, read from these files
    saved.mkdir()
    for name, frame in world.items():
        frame.to_parquet(saved / f"{name}.parquet", index=False)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, store_url, str(flag), str(tmp_path / "home"), str(saved)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not flag.exists():
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the child never reached the write"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
    assert_dumps_equal(dump(store), before)  # nothing of the half-done write is visible
    runs = store.job_runs("t1")
    assert runs["status"].tolist() == ["succeeded", "running"]
    assert store.pending()["tenant_id"].tolist() == ["t1"]  # the change is still to be applied

    result = run(store, tmp_path, world)  # takes the lock the dead child held
    assert result.queue_applied == 1 and store.pending().empty
    runs = store.job_runs("t1")
    assert runs["status"].tolist() == ["succeeded", "abandoned", "succeeded"]
    t1 = dump(store, "t1")
    email = t1["campaign_metrics"].query("channel == 'email'")
    assert email["bot_filter_applied"].all() and email["bot_opens_excluded"].sum() > 0
    t2_before = {k: v.query("tenant_id == 't2'").reset_index(drop=True) for k, v in before.items()}
    assert_dumps_equal(dump(store, "t2"), t2_before)


def test_exception_inside_the_transaction_rolls_back(
    store: Store, tmp_path: Path, world, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(store, tmp_path, world)
    before = dump(store)
    set_exclusion(store, "t2", "sms", True)

    def fail(*args, **kwargs):
        raise RuntimeError("disk full (injected)")

    monkeypatch.setattr(Store, "complete_queue", fail)  # runs after the partitions are written
    with pytest.raises(RuntimeError, match="injected"):
        run(store, tmp_path, world, tenants=["t2"])
    monkeypatch.undo()
    assert_dumps_equal(dump(store), before)
    failed = store.job_runs("t2").iloc[-1]
    assert failed["status"] == "failed" and "disk full" in failed["error"]
    assert len(store.pending()) == 1
    run(store, tmp_path, world, tenants=["t2"])
    assert store.pending().empty
    assert dumps_differ(dump(store), before)


def test_rerun_is_byte_identical(store: Store, tmp_path: Path, world) -> None:
    set_exclusion(store, "t3", "email", True)
    first = run(store, tmp_path, world, out=tmp_path / "a")
    stored = dump(store)
    second = run(store, tmp_path, world, out=tmp_path / "b")
    for name, path in first.files.items():
        assert path.read_bytes() == second.files[name].read_bytes(), name
    assert_dumps_equal(dump(store), stored)
    views = {name: store.read_view(name) for name in MODULES}
    run(store, tmp_path, world)
    for name in MODULES:
        pd.testing.assert_frame_equal(store.read_view(name), views[name])


def test_concurrent_runs_for_one_tenant_serialise(store: Store, tmp_path: Path, world) -> None:
    """Two runs released by a barrier at the same instant: the second waits for the first."""
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            own = Store(store.url)  # its own engine and connections, as another process has
            barrier.wait(10)
            run(own, tmp_path, world, tenants=["t1"])
            own.close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    runs = store.job_runs("t1", kind="recompute").sort_values("started_at", ignore_index=True)
    assert runs["status"].tolist() == ["succeeded", "succeeded"]
    # A run's start is recorded once it holds the tenant lock, its end inside its write
    # transaction: without the lock both would start together, long before either ends.
    assert runs.loc[1, "started_at"] >= runs.loc[0, "finished_at"]
    assert runs.loc[0, "batch_id"] != runs.loc[1, "batch_id"]


def test_toggle_on_off_on_returns_to_the_same_numbers(store: Store, tmp_path: Path, world) -> None:
    set_exclusion(store, "t1", "email", True)
    set_exclusion(store, "t1", "sms", True)
    run(store, tmp_path, world)
    on = dump(store)
    set_exclusion(store, "t1", "email", False)
    set_exclusion(store, "t1", "sms", False)
    run(store, tmp_path, world, tenants=["t1"])
    off = dump(store)
    assert dumps_differ(on, off)
    assert not off["campaign_metrics"].query("tenant_id == 't1'")["bot_filter_applied"].any()
    set_exclusion(store, "t1", "email", True)
    set_exclusion(store, "t1", "sms", True)
    run(store, tmp_path, world, tenants=["t1"])
    assert_dumps_equal(dump(store), on)


def test_one_tenants_toggle_never_changes_another(store: Store, tmp_path: Path, world) -> None:
    set_exclusion(store, "t2", "email", True)
    run(store, tmp_path, world)
    others = {t: dump(store, t) for t in ("t2", "t3")}
    for on in (True, False):
        set_exclusion(store, "t1", "email", on)
        set_exclusion(store, "t1", "sms", not on)
        run(store, tmp_path, world, tenants=["t1"])
        for tenant, before in others.items():
            assert_dumps_equal(dump(store, tenant), before)
    run(store, tmp_path, world)  # all tenants again, settings of t2/t3 unchanged
    for tenant, before in others.items():
        assert_dumps_equal(dump(store, tenant), before)


def test_a_change_committed_after_the_snapshot_stays_pending(
    store: Store, tmp_path: Path, world, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL numbers queue entries when they are written, not when they commit: a run's
    snapshot can hold entry 2 and not entry 1, whose setting it then does not apply. Entry 1
    must stay pending (the audit: it was marked done by a run that counted with the old
    setting, and nothing applied it until the next full recompute)."""
    snapshot = store.exclusions()
    set_exclusion(store, "t1", "email", True)  # entry 1, committed after the run's snapshot
    set_exclusion(store, "t2", "sms", True)  # entry 2, in the snapshot
    pending = store.pending()
    monkeypatch.setattr(Store, "exclusions", lambda self, conn=None: snapshot)
    monkeypatch.setattr(Store, "pending", lambda self, conn=None: pending[pending["id"] != 1])
    result = run(store, tmp_path, world, tenants=["t1"])
    monkeypatch.undo()
    assert result.queue_applied == 0
    assert store.pending()["id"].tolist() == [1, 2]
    result = run(store, tmp_path, world, tenants=["t1"])  # the next run applies it
    assert result.queue_applied == 1 and store.pending()["id"].tolist() == [2]
    email = dump(store, "t1")["campaign_metrics"].query("channel == 'email'")
    assert email["bot_filter_applied"].all()


def test_a_tenant_the_store_refuses_fails_alone(
    store: Store, tmp_path: Path, world, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The audit: a 3,000-character campaign id over PostgreSQL's index limit failed the whole
    run as an internal error; tenants after it were never written, and those written before it
    were recorded as failed."""
    from sqlalchemy.exc import DataError

    real = Store.replace_partitions

    def refuse_t2(conn, tenant, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if tenant == "t2":
            raise DataError("INSERT ...", {}, Exception("index row size 3032 exceeds maximum 2704"))
        return real(conn, tenant, *args, **kwargs)

    monkeypatch.setattr(Store, "replace_partitions", staticmethod(refuse_t2))
    with pytest.raises(BotfilterError, match="refused 1 tenant.*tenant t2: DataError"):
        run(store, tmp_path, world)
    monkeypatch.undo()
    for tenant, status in (("t1", "succeeded"), ("t2", "failed"), ("t3", "succeeded")):
        assert store.job_runs(tenant)["status"].tolist() == [status], tenant
    assert not dump(store, "t1")["campaign_metrics"].empty
    assert not dump(store, "t3")["campaign_metrics"].empty
    assert dump(store, "t2")["campaign_metrics"].empty
