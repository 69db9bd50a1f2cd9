"""`botfilter run`, the worker: its log lines, how it stops, how soon it retries a busy tenant
and what it says of files in the data directory that the contract does not read."""

from __future__ import annotations

import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

import jobs.worker as worker
from botfilter.cli import app
from core.settings import Settings
from jobs.exclusions import set_exclusion
from jobs.store import Store
from jobs.worker import CycleOptions, CycleResult, run_cycle, run_worker

AS_OF = pd.Timestamp("2024-03-31T00:00:00Z")


@pytest.fixture
def data_dir(parts_world) -> Path:
    """Three tenants, t1 to t3 (see ``worlds.parts_world``)."""
    return parts_world(AS_OF)


def _store(root: Path) -> tuple[Settings, Store]:
    settings = Settings(home=root)
    return settings, Store.open(settings)


def _wait_for(done: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        time.sleep(0.05)
    return done()


# --- 1. one line per cycle, whatever the output ----------------------------------------------


def test_each_cycle_is_one_line_in_a_file_or_a_pipe(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The audit: `botfilter run > log` wrapped every cycle's line at 80 columns (rich's width
    without a terminal). An id is printed as it is: `acme[/bold]` is not read as markup."""
    monkeypatch.setenv("BOTFILTER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("COLUMNS", raising=False)
    (tmp_path / "data").mkdir()
    result = CycleResult("failed", "new data", busy=["acme[/bold]", "t2"], seconds=1.25)
    result.recomputed = [(f"tenant-{i:03d}", ("email", "sms")) for i in range(12)]
    result.errors = ["[bold]t9[/bold]: events.parquet: cannot read file: Parquet magic bytes"]

    def one_cycle(*args: Any, on_cycle: Callable[[CycleResult], None], **kwargs: Any) -> list:
        on_cycle(result)
        return []  # (`run` looks at the last result only without --every)

    monkeypatch.setattr(worker, "run_worker", one_cycle)
    ran = CliRunner().invoke(app, ["run", "--data", str(tmp_path / "data")])
    assert ran.exit_code == 0, ran.output
    lines = ran.output.splitlines()
    assert len(lines) == 1, lines
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d " + re.escape(result.line()), lines[0])
    assert "left for the next cycle (another run holds them): acme[/bold], t2" in lines[0]
    assert "errors: [bold]t9[/bold]: events.parquet" in lines[0]


# --- 2. a clean stop finishes the runs -------------------------------------------------------


def test_sigterm_during_a_recompute_finishes_the_cycle_and_its_runs(
    settings: Settings, tmp_path: Path, parts_world, label_scorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The audit: SIGTERM during a recompute left the cycle's run "running" with no
    finished_at, the tenants' runs "failed" with "KeyboardInterrupt:", and `run` exited 0.
    Now every run of the cycle is closed as stopped by SIGTERM and the exit status is 143."""
    now = pd.Timestamp.now(tz="UTC").floor("h")
    data = parts_world(now)
    monkeypatch.setenv("BOTFILTER_HOME", str(tmp_path / "home"))
    real = worker.run_worker

    def sigterm_scorer(tables: Any) -> pd.DataFrame:
        os.kill(os.getpid(), signal.SIGTERM)  # a service manager stops the worker now
        time.sleep(5)  # the handler interrupts this
        return label_scorer(tables)

    def with_scorer(*args: Any, **kwargs: Any) -> list[CycleResult]:
        options = CycleOptions(scorer=sigterm_scorer, model_version="labels")
        return real(*args[:4], options, **kwargs)

    monkeypatch.setattr(worker, "run_worker", with_scorer)
    handlers = [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)]
    ran = CliRunner().invoke(app, ["run", "--data", str(data)])
    assert ran.exit_code == 143, (ran.output, ran.exception)
    assert ran.output.splitlines()[-1] == "stopped by SIGTERM"
    assert [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)] == handlers
    runs = Store.open(Settings(home=tmp_path / "home")).job_runs()
    assert sorted(runs["kind"]) == ["cycle", "recompute", "recompute", "recompute"]
    assert set(runs["status"]) == {"abandoned"}
    assert set(runs["error"]) == {"stopped by SIGTERM"}
    assert runs["finished_at"].notna().all()
    assert set(runs["batch_id"]) == set(runs.loc[runs["kind"] == "cycle", "run_id"])


def test_ctrl_c_in_a_cycle_finishes_its_runs(tmp_path: Path, data_dir, label_scorer) -> None:
    """A KeyboardInterrupt (Ctrl-C without `run`'s handlers: a caller's own loop) closes the
    cycle and the tenants' runs as stopped by SIGINT, then goes on up."""
    settings, store = _store(tmp_path / "home")

    def interrupted(tables: Any) -> pd.DataFrame:
        raise KeyboardInterrupt

    options = CycleOptions(scorer=interrupted, model_version="labels")
    with pytest.raises(KeyboardInterrupt):
        run_cycle(store, settings, data_dir, options, now=AS_OF.to_pydatetime())
    runs = store.job_runs()
    assert runs["kind"].tolist().count("cycle") == 1 and len(runs) == 4
    assert set(runs["status"]) == {"abandoned"}
    assert set(runs["error"]) == {"stopped by SIGINT"}
    assert runs["finished_at"].notna().all()


def test_a_stop_leaves_a_run_that_failed_before_it_as_it_was(tmp_path: Path) -> None:
    """Only the runs the stop cut short say so: a run of the batch that had already failed,
    or succeeded, keeps its own outcome."""
    _, store = _store(tmp_path / "home")
    cycle = store.start_run("cycle")
    done = store.start_run("recompute", "t1", batch_id=cycle)
    store.finish_run(done)
    refused = store.start_run("recompute", "t2", batch_id=cycle)
    store.finish_run(refused, status="failed", error="IntegrityError: too long")
    cut = store.start_run("recompute", "t3", batch_id=cycle)
    store.finish_run(cut, status="failed", error="KeyboardInterrupt:")
    other = store.start_run("recompute", "t4")  # another batch
    assert store.stop_batch(cycle, "stopped by SIGTERM", ("KeyboardInterrupt", "Stopped")) == 2
    runs = store.job_runs().set_index("run_id")
    assert runs.loc[[cycle, cut], "error"].tolist() == ["stopped by SIGTERM"] * 2
    assert runs.loc[[cycle, cut], "status"].tolist() == ["abandoned"] * 2
    assert runs.loc[[cycle, cut], "finished_at"].notna().all()
    assert runs.loc[[done, refused, other], "status"].tolist() == [
        "succeeded",
        "failed",
        "running",
    ]
    assert runs.loc[refused, "error"] == "IntegrityError: too long"


def test_runs_a_later_run_abandons_get_a_finished_at(tmp_path: Path) -> None:
    """The audit: a run marked abandoned by the next run of its tenant (or the next cycle)
    kept finished_at empty."""
    _, store = _store(tmp_path / "home")
    dead_run = store.start_run("recompute", "t1")
    dead_cycle = store.start_run("cycle")
    store.start_run("recompute", "t1")
    store.start_run("cycle")
    runs = store.job_runs().set_index("run_id").loc[[dead_run, dead_cycle]]
    assert runs["status"].tolist() == ["abandoned", "abandoned"]
    assert runs["finished_at"].notna().all()
    assert (runs["finished_at"] >= runs["started_at"]).all()


# --- 3. a busy tenant's change is retried at the queue poll ----------------------------------


def test_a_change_for_a_busy_tenant_is_applied_once_its_lock_is_free(
    tmp_path: Path, data_dir, label_scorer
) -> None:
    """The audit: t3's change was left for the next cycle while another run held t3, and with
    `--every 1h` that was an hour after the lock was free. Now the loop's queue poll retries
    it as soon as the lock is free."""
    settings, store = _store(tmp_path / "home")
    options = CycleOptions(scorer=label_scorer, model_version="labels")
    now = AS_OF.to_pydatetime()
    assert run_cycle(store, settings, data_dir, options, now=now).status == "succeeded"
    set_exclusion(store, "t3", "email", True)
    cycles: list[CycleResult] = []
    stop = threading.Event()
    args = (store, settings, data_dir, timedelta(hours=1), options)
    kwargs = {"now": now, "poll": 0.05, "stop": stop, "on_cycle": cycles.append}
    thread = threading.Thread(target=run_worker, args=args, kwargs=kwargs)
    try:
        with store.locks(["tenant:t3"]):  # another run holds t3
            thread.start()
            assert _wait_for(lambda: bool(cycles), 60)
            time.sleep(0.3)  # a few polls: t3 is still held, no cycle is started for nothing
        assert _wait_for(lambda: not store.has_pending(), 20), [c.line() for c in cycles]
    finally:
        stop.set()
        thread.join(60)
    assert [(c.busy, c.recomputed) for c in cycles] == [(["t3"], []), ([], [("t3", ("email",))])]


# --- 4. files the contract does not read ------------------------------------------------------


def test_a_file_the_contract_does_not_read_is_reported_once(
    tmp_path: Path, data_dir, label_scorer
) -> None:
    """The audit: `events-20261204.parquet` copied into the directory made the worker log
    "succeeded: new data; recomputed ..." though the contract reads `events.parquet` only: its
    events never counted and nothing said so. Now such a file is named once, and it is not
    new data."""
    settings, store = _store(tmp_path / "home")
    options = CycleOptions(scorer=label_scorer, model_version="labels")
    now = AS_OF.to_pydatetime()
    assert run_cycle(store, settings, data_dir, options, now=now).not_read == []
    shutil.copy(data_dir / "events.parquet", data_dir / "events-20261204.parquet")
    shutil.copy(data_dir / "events.parquet", data_dir / "extra.parquet")
    (data_dir / "notes.txt").write_text("not a table")
    (data_dir / "events").mkdir()
    (data_dir / "events" / "part-0.parquet").write_bytes(b"")
    first = run_cycle(store, settings, data_dir, options, now=now)
    assert first.status == "idle" and first.not_read == [
        "events/",
        "events-20261204.parquet",
        "extra.parquet",
    ]
    assert first.line().startswith("idle: no new data, no queued setting change; recomputed -")
    assert first.line().endswith(
        "; not read (the tables are messages, events, segments, settings as"
        " NAME.parquet|csv|jsonl): events/, events-20261204.parquet, extra.parquet"
    )
    again = run_cycle(store, settings, data_dir, options, now=now)
    assert again.not_read == [] and "not read" not in again.line()
    (data_dir / "extra.parquet").unlink()
    (data_dir / "more.csv").write_text("a\n1\n")
    (data_dir / "segments.csv.gz").write_bytes(b"")
    (data_dir / ".events.123.tmp.parquet").write_bytes(b"")  # a writer's, before its rename
    later = run_cycle(store, settings, data_dir, options, now=now)
    assert later.not_read == ["more.csv", "segments.csv.gz"]
    (data_dir / "extra.parquet").write_bytes(b"")  # taken away, then back: named again
    assert run_cycle(store, settings, data_dir, options, now=now).not_read == ["extra.parquet"]


def test_the_fingerprint_follows_the_files_the_contract_reads(data_dir: Path) -> None:
    """A table's file replaced is new data; a file beside the tables is not."""
    first = worker.data_fingerprint(data_dir)
    shutil.copy(data_dir / "events.parquet", data_dir / "events-20261204.parquet")
    (data_dir / "events").mkdir()
    (data_dir / "events" / "part-0.parquet").write_bytes(b"")
    assert worker.data_fingerprint(data_dir) == first
    events = pd.read_parquet(data_dir / "events.parquet")
    events.iloc[:-1].to_parquet(data_dir / "events.parquet", index=False)
    assert worker.data_fingerprint(data_dir) != first


def test_run_help_says_what_it_watches() -> None:
    """The audit: the help said "new event files", which the contract does not read."""
    ran = CliRunner().invoke(app, ["run", "--help"], terminal_width=200)
    assert ran.exit_code == 0
    text = " ".join(ran.output.split())
    assert "new event files" not in text
    assert (
        "Data directory to watch: its tables messages, events, segments, settings as "
        "NAME.parquet|csv|jsonl (other files are not read; a cycle names them once)." in text
    )


@pytest.mark.parametrize(
    "model_uri, champion, kept",
    [(None, None, True), ("models:/botfilter/1", "botfilter/2", False), ("m", "botfilter/1", True)],
)
def test_the_daily_monitor_keeps_the_champions_drift_only(
    tmp_path, monkeypatch, model_uri, champion, kept
) -> None:
    """`run --model` with another model than the champion replaced the champion's drift report
    (reports/monitor/latest.json, which the API's gauges and the console read), as
    `monitor --model` no longer does."""
    from monitoring.run import LATEST

    settings, store = _store(tmp_path / "home")
    report = {"model_version": "botfilter/1", "alerts": []}
    monkeypatch.setattr(worker, "run_monitor", lambda *_: report)
    monkeypatch.setattr(worker, "champion_version", lambda _: champion)
    said = worker._monitor_if_due(store, settings, tmp_path, None, model_uri)
    assert said == "0 alert(s)"
    assert (settings.home / LATEST).exists() is kept
