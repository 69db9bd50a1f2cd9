"""The worker loop, the CLI commands and the reports, on a data directory loaded via the contract."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from core.settings import Settings
from jobs.dashboard import load_tenant, render_report, show_table, write_report
from jobs.exclusions import set_exclusion
from jobs.store import Store
from jobs.worker import CycleOptions, data_fingerprint, run_cycle, run_worker

pytestmark = pytest.mark.integration

NOW = pd.Timestamp("2024-05-01T00:00:00Z").to_pydatetime()


def write_dir(path: Path, world: dict[str, pd.DataFrame]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, frame in world.items():
        frame.to_parquet(path / f"{name}.parquet", index=False)
    return path


class LabelScorer:
    """Scores from the labels, remembering how many events each call was given."""

    def __init__(self, label_scores: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
        self.label_scores = label_scores
        self.calls: list[int] = []

    def __call__(self, tables) -> pd.DataFrame:
        self.calls.append(len(tables.events))
        return self.label_scores(tables.events)


@pytest.fixture
def world(random_world) -> dict[str, pd.DataFrame]:
    return random_world(5, pd.Timestamp(NOW), n=1200)


def test_worker_cycles(label_scores, store: Store, tmp_path: Path, world) -> None:
    data = write_dir(tmp_path / "data", world)
    settings = Settings(home=tmp_path / "home")
    scorer = LabelScorer(label_scores)
    options = CycleOptions(scorer=scorer, model_version="labels")

    def cycle(now=NOW):
        return run_cycle(store, settings, data, options, now=now)

    first = cycle()
    assert (first.status, first.reason) == ("succeeded", "new data"), first.errors
    assert {t for t, _ in first.recomputed} == {"t1", "t2", "t3"}
    assert len(scorer.calls) == 1
    m, e = world["messages"], world["events"]
    in_window = m.loc[m["sent_at"].between(NOW - timedelta(days=30), NOW, inclusive="left")]
    needed = e["message_id"].isin(in_window["message_id"]) & (e["occurred_at"] < NOW)
    assert store.score_versions(["t1", "t2", "t3"]) == {"labels": int(needed.sum())}

    assert cycle().status == "idle"

    set_exclusion(store, "t1", "email", True)
    applied = cycle()
    assert (applied.reason, applied.recomputed) == ("queued setting change", [("t1", ("email",))])
    assert applied.results[0].scores_source == "store" and len(scorer.calls) == 1
    assert store.pending().empty
    email = store.read_partitions("campaign_metrics", "t1").query("channel == 'email'")
    assert email["bot_filter_applied"].all()

    # New events arrive (a replaced events file): picked up within the next cycle.
    before = store.read_view("dashboard_daily", "t3")["clicks_total_all"].sum()
    m = world["messages"]
    target = m[(m["tenant_id"] == "t3") & m["delivered_at"].notna() & (m["sent_at"] < NOW)]
    target = target.sort_values("sent_at").tail(5)
    extra = pd.DataFrame(
        {
            "event_id": [f"new{i}" for i in range(5)],
            "tenant_id": "t3",
            "message_id": target["message_id"].to_numpy(),
            "type": "click",
            "occurred_at": (target["sent_at"] + pd.Timedelta(minutes=1)).to_numpy(),
            "label": "human",
            "bot_kind": None,
        }
    )
    world["events"] = pd.concat([world["events"], extra], ignore_index=True)
    time.sleep(0.01)
    write_dir(data, {"events": world["events"]})
    fresh = cycle()
    assert fresh.reason == "new data" and len(scorer.calls) == 2
    assert scorer.calls[1] < scorer.calls[0]  # only the new events and their burst context
    assert store.read_view("dashboard_daily", "t3")["clicks_total_all"].sum() == before + 5

    hourly = cycle(NOW + timedelta(hours=2))
    assert hourly.reason == "hourly recompute" and hourly.status == "succeeded"
    runs = store.job_runs(kind="cycle")
    assert runs["status"].tolist() == ["succeeded"] * 4
    assert (runs["finished_at"] >= runs["started_at"]).all()


def test_queued_tenant_without_data_waits(
    label_scores, store: Store, tmp_path: Path, world
) -> None:
    data = write_dir(tmp_path / "data", world)
    settings = Settings(home=tmp_path / "home")
    set_exclusion(store, "ghost", "sms", True)
    result = run_cycle(
        store,
        settings,
        data,
        CycleOptions(scorer=LabelScorer(label_scores), model_version="labels"),
        now=NOW,
    )
    assert result.status == "succeeded" and result.waiting == ["ghost"]
    assert store.pending()["tenant_id"].tolist() == ["ghost"]
    assert "waiting for data of ghost" in result.line()


def test_loop_applies_a_setting_change_within_seconds(
    label_scores, store: Store, tmp_path: Path, world
) -> None:
    data = write_dir(tmp_path / "data", world)
    settings = Settings(home=tmp_path / "home")
    stop = threading.Event()
    cycles = []
    thread = threading.Thread(
        target=run_worker,
        args=(
            store,
            settings,
            data,
            timedelta(hours=1),
            CycleOptions(scorer=LabelScorer(label_scores), model_version="labels"),
        ),
        kwargs={"poll": 0.1, "stop": stop, "on_cycle": cycles.append, "now": NOW},
    )
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not cycles and time.monotonic() < deadline:
            time.sleep(0.05)
        set_exclusion(store, "t2", "email", True)
        queued = time.monotonic()
        while store.has_pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        applied_in = time.monotonic() - queued
    finally:
        stop.set()
        thread.join(60)
    assert not store.has_pending() and applied_in < 30
    assert [c.reason for c in cycles[:2]] == ["new data", "queued setting change"]


def test_fingerprint_sees_the_files_the_contract_reads(tmp_path: Path) -> None:
    """A part file is not read by the contract (one NAME.parquet|csv|jsonl per table): it is
    no new data (a cycle names it instead, tests/unit/test_worker.py)."""
    (tmp_path / "events.parquet").write_bytes(b"x")
    first = data_fingerprint(tmp_path)
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / "events").mkdir()
    (tmp_path / "events" / "part-1.parquet").write_bytes(b"y")
    assert data_fingerprint(tmp_path) == first
    (tmp_path / "messages.CSV").write_bytes(b"z")
    assert data_fingerprint(tmp_path) != first


def test_reports(label_scores, store: Store, tmp_path: Path, world) -> None:
    data = write_dir(tmp_path / "data", world)
    settings = Settings(home=tmp_path / "home")
    set_exclusion(store, "t1", "email", True)
    run_cycle(
        store,
        settings,
        data,
        CycleOptions(scorer=LabelScorer(label_scores), model_version="labels"),
        now=NOW,
    )
    metrics = load_tenant(store, "t1")
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(show_table(metrics, "campaigns"))
    text = console.export_text()
    assert re.search(r"c\d+ +email", text) and "→" in text and "off (" in text
    page = render_report(metrics)
    assert page.count("data:image/png;base64,") == 3
    for heading in ("Daily opens and clicks", "CTR changed most", "bot kind and recipient domain"):
        assert heading in page
    assert "security_scanner" in page or "link_preview" in page
    out = write_report(store, "t1", tmp_path / "r" / "report.html")
    assert out.stat().st_size > 20_000 and "<script" not in out.read_text()


def test_cli_end_to_end(
    random_world, label_scores, store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botfilter.cli import app

    # The worker's window ends now: data of the last weeks.
    world = random_world(5, pd.Timestamp.now(tz="UTC").floor("D"), n=1200)
    data = write_dir(tmp_path / "data", world)
    scores = tmp_path / "scores.csv"
    frame = label_scores(world["events"])
    frame["reasons"] = frame["reasons"].map(lambda r: ",".join(r))
    frame.to_csv(scores, index=False)
    monkeypatch.setenv("BOTFILTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BOTFILTER_DATABASE_URL", store_url)
    runner = CliRunner()
    result = runner.invoke(app, ["recompute", "--data", str(data), "--scores", str(scores)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "scores: file (labels)" in result.output
    result = runner.invoke(app, ["settings", "set", "--tenant", "t1", "--sms", "on"])
    assert result.exit_code == 0 and "30-day recompute queued" in result.output
    # No model is registered, and a scores file serves its own run only (issue 14 item 2): the
    # worker cannot score, and says so; it never takes the file's scores for a model's.
    result = runner.invoke(app, ["run", "--data", str(data)])
    assert result.exit_code != 0 and "no model registered yet" in str(result.exception), (
        result.output
    )
    args = ["recompute", "--data", str(data), "--scores", str(scores), "--tenant", "t1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "1 queued changes applied" in result.output
    result = runner.invoke(app, ["metrics", "show", "--tenant", "t1", "--module", "dashboard"])
    assert result.exit_code == 0 and "with bots → without bots" in result.output
    assert "dashboard of tenant t1" in result.output
    result = runner.invoke(app, ["metrics", "show", "--tenant", "t1", "--module", "funnels"])
    assert result.exit_code != 0 and "unknown module 'funnels'" in str(result.exception)
    result = runner.invoke(app, ["report", "--tenant", "t1", "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 0, (result.output, result.exception)
    page = (tmp_path / "r.html").read_text()
    assert "<h1>Bot interactions — tenant t1</h1>" in page and "tenant t2" not in page
    assert page.count("data:image/png;base64,") == 3  # the three charts, inlined


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    env = {"BOTFILTER_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    exe = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "botfilter")
    bad = subprocess.run(
        [exe, "settings", "set", "--tenant", "t1", "--email", "maybe"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == "botfilter: error: --email must be on or off, not 'maybe'"
    missing = subprocess.run(
        [exe, "metrics", "show", "--tenant", "nobody"], capture_output=True, text=True, env=env
    )
    assert missing.returncode == 2 and "no metrics stored for tenant 'nobody'" in missing.stderr


def test_report_and_metrics_show_carry_the_tenants_own_recall_estimate(
    label_scores,
    store: Store,
    store_url: str,
    tmp_path: Path,
    world,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from botfilter.cli import app
    from labelling.estimates import save_estimates

    data = write_dir(tmp_path / "data", world)
    home = tmp_path / "home"
    settings = Settings(home=home)
    run_cycle(
        store,
        settings,
        data,
        CycleOptions(scorer=LabelScorer(label_scores), model_version="labels"),
        now=NOW,
    )
    rows = pd.DataFrame(
        [
            ("t1", "email", 120, 117, 117 / 120, 0.93, 0.99, ""),
            ("t1", "sms", 0, 0, float("nan"), float("nan"), float("nan"), "no honeypot hits"),
            ("t2", "email", 12, 3, 0.25, 0.09, 0.53, "too few to tell"),
        ],
        columns=[
            "tenant_id",
            "channel",
            "confirmed",
            "flagged",
            "recall",
            "ci_low",
            "ci_high",
            "note",
        ],
    )
    save_estimates(home, rows, "botfilter/7")
    page = write_report(store, "t1", tmp_path / "t1.html", home=home).read_text()
    assert "Estimated scanner recall" in page and "97.5%" in page and "93.0% – 99.0%" in page
    assert "<td>too few to tell</td>" not in page  # t2's row stays in t2's report
    page2 = write_report(store, "t2", tmp_path / "t2.html", home=home).read_text()
    assert "<td>too few to tell</td>" in page2 and "97.5%" not in page2
    monkeypatch.setenv("BOTFILTER_HOME", str(home))
    monkeypatch.setenv("BOTFILTER_DATABASE_URL", store_url)
    result = CliRunner().invoke(app, ["metrics", "show", "--tenant", "t1"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "estimated scanner recall (botfilter/7)" in result.output and "97.5%" in result.output


def test_sigterm_stops_the_worker_loop_as_ctrl_c_does(tmp_path: Path, world) -> None:
    """A service manager stops `botfilter run` with SIGTERM: it says "stopped by SIGTERM" and
    exits 143 as a process the signal ended (the audit: it died at once, its cycle left
    "running"; then it exited 0, its cycle's runs left "running" when stopped mid-cycle)."""
    import os
    import signal

    data = write_dir(tmp_path / "data", world)
    env = {**os.environ, "BOTFILTER_HOME": str(tmp_path / "home")}
    env = {
        k: v for k, v in env.items() if k not in ("BOTFILTER_DATABASE_URL", "BOTFILTER_REDIS_URL")
    }
    exe = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "botfilter")
    proc = subprocess.Popen(
        [exe, "run", "--data", str(data), "--every", "1h"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()  # the first cycle's line (it fails: no champion here)
    assert "failed" in first or "succeeded" in first or "idle" in first, first
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert out.splitlines()[-1] == "stopped by SIGTERM"
    runs = Store.open(Settings(home=tmp_path / "home")).job_runs()
    assert "running" not in set(runs["status"]) and runs["finished_at"].notna().all()
