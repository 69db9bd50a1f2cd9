"""`botfilter recompute --data DIR` with worker processes (``recompute_workers``) writes what
one process writes, part after part: the same result tables, stored metrics, window events,
stored scores and job runs, on the first run (every event scored by the registered champion)
and on a rerun that reuses the stored scores. A worker's failure reaches the caller."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from core.errors import BotfilterError
from core.settings import Settings
from jobs.recompute import RecomputeOptions, recompute_data_dir
from jobs.store import Store

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("mlflow_restored")]

AS_OF = pd.Timestamp("2024-03-31T00:00:00Z")


@pytest.fixture
def data_dir(parts_world) -> Path:
    """Three tenants of about 1,000 events: three parts of 900."""
    return parts_world(AS_OF)


def _window_events(store: Store, tenant: str) -> pd.DataFrame:
    """The tenant's stored window events, without the per-recompute message numbering."""
    return store.window_events(tenant).drop(columns="message_code")


def _run(settings: Settings, store: Store, data: Path) -> tuple[str, dict[str, pd.DataFrame]]:
    options = RecomputeOptions(as_of=AS_OF)
    _, result = recompute_data_dir(store, settings, data, options, part_events=900)
    assert result.tenants == ("t1", "t2", "t3")
    return result.scores_source, result.tables


def test_workers_recompute_parts_as_one_process_does(
    tmp_path: Path, data_dir: Path, register_model
) -> None:
    home = tmp_path / "home"
    register_model(Settings(home=home), 3, tmp_path)
    stores: dict[int, Store] = {}
    runs: dict[int, list[tuple[str, dict[str, pd.DataFrame]]]] = {}
    for workers in (1, 2):
        url = f"sqlite:///{tmp_path / f'metrics-{workers}.db'}"
        settings = Settings(home=home, database_url=url, recompute_workers=workers)
        stores[workers] = store = Store(url)
        runs[workers] = [_run(settings, store, data_dir) for _ in range(2)]  # first, rerun

    assert [source for source, _ in runs[2]] == ["scored", "store"]
    for (one_source, one), (two_source, two) in zip(runs[1], runs[2], strict=True):
        assert one_source == two_source
        for name, table in one.items():
            pd.testing.assert_frame_equal(two[name], table, check_exact=True)
    one_store, two_store = stores[1], stores[2]
    for tenant in ("t1", "t2", "t3"):
        for name in runs[1][0][1]:
            pd.testing.assert_frame_equal(
                two_store.read_view(name, tenant), one_store.read_view(name, tenant)
            )
        pd.testing.assert_frame_equal(
            _window_events(two_store, tenant), _window_events(one_store, tenant)
        )
    scores = {
        w: s.load_scores(["t1", "t2", "t3"], _model_id(s), reasons=True) for w, s in stores.items()
    }
    assert len(scores[1]) > 2000
    key = ["tenant_id", "event_id"]
    pd.testing.assert_frame_equal(
        scores[2].sort_values(key, ignore_index=True), scores[1].sort_values(key, ignore_index=True)
    )
    two_runs = two_store.job_runs(kind="recompute")
    assert len(two_runs) == 6 and set(two_runs["status"]) == {"succeeded"}
    # the workers wrote the tenants, not this process (which did without them)
    assert os.getpid() not in set(two_runs["pid"])
    assert set(one_store.job_runs(kind="recompute")["pid"]) == {os.getpid()}
    assert (
        two_runs.groupby("batch_id")["tenant_id"].apply(sorted).tolist() == [["t1", "t2", "t3"]] * 2
    )  # one batch per command, whichever process wrote the tenant


def _model_id(store: Store) -> str:
    """The content id the recomputes stored their scores under."""
    with store.read() as conn:
        ids = pd.read_sql("select distinct model_id from score_batches", conn)["model_id"]
    assert len(ids) == 1
    return str(ids.iloc[0])


def test_a_failure_in_a_worker_reaches_the_caller(
    tmp_path: Path, data_dir: Path, register_model
) -> None:
    """A tenant locked by another run: the worker's part fails with the lock's one-line error
    and the command fails with it; the parts before it are written, as without workers."""
    home = tmp_path / "home"
    register_model(Settings(home=home), 3, tmp_path)
    settings = Settings(home=home, recompute_workers=2)
    store = Store.open(settings)
    options = RecomputeOptions(as_of=AS_OF, lock_timeout=0)
    with store.locks(["tenant:t2"]), pytest.raises(BotfilterError, match="t2"):
        recompute_data_dir(store, settings, data_dir, options, part_events=900)
    runs = store.job_runs(kind="recompute")
    assert "t2" not in set(runs["tenant_id"])
    assert set(runs["status"]) <= {"succeeded"}


def test_one_part_to_do_stays_in_this_process(
    tmp_path: Path, data_dir: Path, register_model
) -> None:
    """A worker cycle's queued tenant lies in one part: no pool is started for it (its start
    would cost more than the part), while two wanted parts go to the workers."""
    from contract.parts import TenantParts
    from jobs.recompute import recompute_parts

    home = tmp_path / "home"
    register_model(Settings(home=home), 3, tmp_path)
    settings = Settings(home=home, recompute_workers=2)
    store = Store.open(settings)
    for wanted, in_workers in ((["t2"], False), (["t1", "t3"], True)):
        options = RecomputeOptions(as_of=AS_OF, tenants=wanted)
        done = recompute_parts(store, settings, TenantParts(data_dir, 900), options, 2).results
        assert sorted(t for d in done for t in d.tenants) == wanted
        runs = store.job_runs(kind="recompute")
        pids = set(runs.loc[runs["tenant_id"].isin(wanted), "pid"])
        assert (os.getpid() not in pids) is in_workers
