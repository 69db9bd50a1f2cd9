"""What the commands put out (core.output): ids and paths that look like rich markup are shown as
written, and output files appear whole or not at all."""

from __future__ import annotations

import csv
import errno
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from click.testing import Result
from typer.testing import CliRunner

from botfilter.cli import app
from core.output import write_text_whole, write_whole

# A closing tag nothing opened failed the command after its work (MarkupError); an opening tag
# was eaten ("of tenant t002": another tenant's name).
IDS = ["acme[/bold]", "[red]t002"]
AS_OF = "2025-01-10T00:00:00Z"


@pytest.fixture
def botfilter(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """``botfilter ARGS`` in process, on its own data home, 250 columns wide (no folded line)."""
    for name in ("DATABASE_URL", "REDIS_URL", "DEBUG", "THREADS", "TRACKING_URI"):
        monkeypatch.delenv(f"BOTFILTER_{name}", raising=False)
    monkeypatch.setenv("BOTFILTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BOTFILTER_SCORE_WORKERS", "1")
    monkeypatch.setenv("COLUMNS", "250")

    def run(*args: object) -> Result:
        return CliRunner().invoke(app, [str(a) for a in args])

    return run


def _csv(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _data(folder: Path, tenant: str) -> Path:
    """One delivered email of ``tenant`` (campaign ``c[/i]1``), opened once, and its scores file
    (``folder``.scores.csv)."""
    _csv(
        folder / "messages.csv",
        [
            {
                "message_id": "m1",
                "tenant_id": tenant,
                "channel": "email",
                "campaign_id": "c[/i]1",
                "contact_id": "k1",
                "sent_at": "2025-01-01T00:00:00Z",
                "delivered_at": "2025-01-01T00:00:01Z",
            }
        ],
    )
    event = {"event_id": "e1", "tenant_id": tenant, "message_id": "m1", "type": "open"}
    _csv(folder / "events.csv", [{**event, "occurred_at": "2025-01-01T00:01:00Z"}])
    score = {"event_id": "e1", "tenant_id": tenant, "bot_score": "0.9", "is_bot": "True"}
    _csv(folder.with_suffix(".scores.csv"), [{**score, "reasons": "", "model_version": "b/1"}])
    return folder


def _recompute(botfilter, data: Path, *more: object) -> Result:
    return botfilter(
        "recompute", "--data", data, "--scores", data.with_suffix(".scores.csv"), "--as-of", AS_OF,
        *more,
    )  # fmt: skip


def _flat(text: str) -> str:
    """``text`` without whitespace: a table title wraps to the table's width."""
    return "".join(text.split())


# --- ids and paths shown as written ---------------------------------------------------------


@pytest.mark.parametrize("tenant", IDS)
def test_store_commands_show_the_tenant_as_written(botfilter, tmp_path: Path, tenant) -> None:
    from labelling.estimates import save_estimates

    done = _recompute(botfilter, _data(tmp_path / "data", tenant))
    assert done.exit_code == 0, done.output
    assert f"\nRecomputed {tenant} (email+sms) for sends in" in done.output

    estimate = {"tenant_id": tenant, "channel": "email", "confirmed": 1, "flagged": 1}
    estimate |= {"recall": 1.0, "ci_low": 0.2, "ci_high": 1.0, "note": "too few"}
    save_estimates(tmp_path / "home", pd.DataFrame([estimate]), "[red]m/1")
    shown = botfilter("metrics", "show", "--tenant", tenant)
    assert shown.exit_code == 0, shown.output
    assert f"campaigns of tenant {tenant}: with bots → without bots" in shown.output
    assert " c[/i]1 " in shown.output
    assert "estimated scanner recall ([red]m/1)" in shown.output
    assert f"│ {tenant} │ email   │" in shown.output

    cleared = botfilter("scores", "clear", "--tenant", tenant)
    assert cleared.exit_code == 0, cleared.output
    assert cleared.output == f"dropped 0 stored scores of tenant {tenant}\n"


def test_validate_and_recompute_show_their_files_as_written(botfilter, tmp_path: Path) -> None:
    data = _data(tmp_path / "in[/bold]", "t1")
    done = botfilter("validate", "--data", data, "--out", tmp_path / "clean")
    assert done.exit_code == 0, done.output
    assert f"│ events   │ {data / 'events.csv'} " in done.output  # the contract's report
    out = tmp_path / "metrics[/x]"
    done = _recompute(botfilter, data, "--out", out)
    assert done.exit_code == 0, done.output
    assert f"│ messages │ {data / 'messages.csv'} " in done.output
    assert f"  dashboard_daily: 1 rows -> {out / 'dashboard_daily.parquet'}\n" in done.output


def test_score_shows_the_model_and_the_file_as_written(
    botfilter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import scoring.stream
    from contract import load

    data = _data(tmp_path / "data", "t1")
    out = tmp_path / "s[/x]" / "scores.parquet"

    def scored(*_: Any, **__: Any) -> SimpleNamespace:
        report = load(data).report
        return SimpleNamespace(report=report, events=1, bots=1, model_version="[red]b/1")

    monkeypatch.setattr(scoring.stream, "score_data_dir", scored)
    done = botfilter("score", "--data", data, "--out", out)
    assert done.exit_code == 0, done.output
    assert done.output.endswith(f"scored 1 events (1 bots) with [red]b/1 -> {out}\n")


def _monitored(alert: str) -> dict[str, Any]:
    return {
        "events": 10,
        "model_version": "[red]b/2",
        "bot_share": 0.5,
        "reference_bot_share": 0.4,
        "score_psi": 0.01,
        "feature_psi": {"ua_length": 0.02},
        "psi_judged": True,
        "thresholds": {"psi_min_events": 1},
        "quarantined": {"events": {"bad [/b] id": 2}},
        "alerts": [alert],
        "candidate_scanners": [],
        "at": "2025-01-10T00:00:00+00:00",
    }


@pytest.fixture
def monitored(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """``botfilter monitor --model M`` answers this report (M not the champion)."""
    import monitoring.commands
    import monitoring.run

    report = _monitored("network AS1 acme[/bold] moved 40% -> 90% bots")
    monkeypatch.setattr(monitoring.run, "run_monitor", lambda *_: report)
    monkeypatch.setattr(monitoring.commands, "_champion_version", lambda _: None)
    return report


def test_monitor_shows_the_alerts_as_written(botfilter, tmp_path: Path, monitored) -> None:
    out = tmp_path / "m[/x].json"
    done = botfilter("monitor", "--data", tmp_path / "data", "--model", "m", "--out", out)
    assert done.exit_code == 1  # the alert's
    assert done.output.splitlines()[0].startswith("10 events vs [red]b/2's training data")
    assert done.output.splitlines()[1:] == [
        "quarantined, not monitored: events: 2 bad [/b] id",
        "ALERT network AS1 acme[/bold] moved 40% -> 90% bots",
        f"report -> {out}",
    ]


def test_simulate_shows_its_folder_as_written(botfilter, tmp_path: Path) -> None:
    out = tmp_path / "w[/bold]"
    done = botfilter("simulate", "--out", out, "--tenants", "1", "--days", "1", "--contacts", "10")
    assert done.exit_code == 0, done.output
    assert _flat(f"simulated world -> {out} (profile default)") in _flat(done.output)


def test_label_shows_its_files_as_written(botfilter, tmp_path: Path) -> None:
    data = _data(tmp_path / "data", "acme[/bold]")
    out = tmp_path / "l[/x]" / "labels.parquet"
    done = botfilter("label", "--data", data, "--out", out)
    assert done.exit_code == 0, done.output
    report = out.with_name("labels.report.json")
    assert done.output.endswith(f"weak labels -> {out}; report -> {report}\n")


@pytest.fixture
def world_model(world: dict, monkeypatch: pytest.MonkeyPatch):
    """Every model URI loads the shared test model (``test/1``)."""
    import scoring.registry

    monkeypatch.setattr(scoring.registry, "load_model", lambda *_, **__: world["model"])
    return world["model"]


def test_evaluate_unlabelled_shows_the_tenant_as_written(
    botfilter, tmp_path: Path, world_model
) -> None:
    data = _data(tmp_path / "data[/b]", "acme[/bold]")
    done = botfilter("evaluate", "--unlabelled", "--data", data, "--model", "m")
    assert done.exit_code == 0, done.output
    assert "│ acme[/bold] │ email   │" in done.output


def test_evaluate_shows_its_data_and_report_as_written(
    botfilter, tmp_path: Path, world_model
) -> None:
    from simulation import simulate

    data = Path(simulate(tmp_path / "w[/bold]", tenants=1, days=2, seed=1).out)
    out = tmp_path / "r[/x].json"
    done = botfilter("evaluate", "--data", data, "--model", "m", "--out", out)
    assert done.exit_code == 0, done.output
    assert f"│ events   │ {data / 'events.parquet'} " in done.output
    assert done.output.endswith(f"model test/1; report saved to {out}\n")


# --- output files whole or not at all -------------------------------------------------------


def _cut_write_text(self: Path, data: str, *_: Any, **__: Any) -> int:
    """Path.write_text stopped by a full disk half way."""
    with open(self, "w", encoding="utf-8") as handle:
        handle.write(data[: len(data) // 2])
    raise OSError(errno.ENOSPC, "No space left on device")


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_a_failed_write_leaves_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "out" / "report.html"
    assert write_text_whole(path, "old") == path

    def cut(tmp: Path) -> None:
        tmp.write_text("ne")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as failed:
        write_whole(path, cut)
    assert failed.value.filename == str(path)  # the user's file, not the temporary one
    assert _files(path.parent) == {"report.html": b"old"}
    write_whole(path, lambda tmp: tmp.write_bytes(b"new"))
    assert _files(path.parent) == {"report.html": b"new"}


def test_a_link_s_file_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "real.json").write_text("old")
    (tmp_path / "link.json").symlink_to(tmp_path / "real.json")
    write_text_whole(tmp_path / "link.json", "new")
    assert (tmp_path / "link.json").is_symlink()
    assert (tmp_path / "real.json").read_text() == "new"


def test_report_cut_by_a_full_disk_leaves_the_previous_one(
    botfilter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _recompute(botfilter, _data(tmp_path / "data", "t1")).exit_code == 0
    out = tmp_path / "rep" / "report.html"
    out.parent.mkdir()
    out.write_text("<html>the previous report</html>")
    monkeypatch.setattr(Path, "write_text", _cut_write_text)
    done = botfilter("report", "--tenant", "t1", "--out", out)
    assert isinstance(done.exception, OSError), done.output
    assert _files(out.parent) == {"report.html": b"<html>the previous report</html>"}


def test_monitor_files_cut_by_a_full_disk_leave_the_previous_ones(
    botfilter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, monitored
) -> None:
    folder = tmp_path / "reports"
    folder.mkdir()
    for name in ("drift.json", "drift.html"):
        (folder / name).write_text(f"previous {name}")
    monkeypatch.setattr(Path, "write_text", _cut_write_text)
    for option, name in (("--out", "drift.json"), ("--html", "drift.html")):
        done = botfilter(
            "monitor", "--data", tmp_path / "data", "--model", "m", option, folder / name
        )
        assert isinstance(done.exception, OSError), done.output
    assert _files(folder) == {n: f"previous {n}".encode() for n in ("drift.json", "drift.html")}


def test_label_files_cut_by_a_full_disk_leave_the_previous_ones(
    botfilter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import labelling.label

    data = _data(tmp_path / "data", "t1")
    out = tmp_path / "labels" / "weak.parquet"
    assert botfilter("label", "--data", data, "--out", out).exit_code == 0
    before = _files(out.parent)

    def cut(table: pd.DataFrame, path: Path) -> None:
        path.write_bytes(b"PAR1")
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(labelling.label, "write_labels", cut)
        assert isinstance(botfilter("label", "--data", data, "--out", out).exception, OSError)
    assert _files(out.parent) == before
    monkeypatch.setattr(Path, "write_text", _cut_write_text)  # the labels written, the report cut
    assert isinstance(botfilter("label", "--data", data, "--out", out).exception, OSError)
    assert _files(out.parent)["weak.report.json"] == before["weak.report.json"]


def test_evaluate_report_cut_by_a_full_disk_leaves_the_previous_one(
    botfilter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, world_model
) -> None:
    from simulation import simulate

    data = simulate(tmp_path / "w", tenants=1, days=2, seed=1).out
    out = tmp_path / "rep" / "evaluation.json"
    out.parent.mkdir()
    out.write_text(json.dumps({"previous": True}))
    monkeypatch.setattr(Path, "write_text", _cut_write_text)
    done = botfilter("evaluate", "--data", data, "--model", "m", "--out", out)
    assert isinstance(done.exception, OSError), done.output
    assert _files(out.parent) == {"evaluation.json": b'{"previous": true}'}


def test_the_validation_report_shows_paths_and_reasons_as_written(tmp_path, parts_world) -> None:
    """`train --data 'x[/y]'` and `demo --out 'x[/y]'` print the validation report through
    training's console, which reads markup (its own styling): the path failed them with a
    MarkupError after their work. The report's data cells are text on any console."""
    import shutil

    from rich.console import Console

    import contract

    data = shutil.copytree(parts_world(pd.Timestamp("2024-03-31T00:00:00Z")), tmp_path / "x[/y]")
    console = Console(record=True, width=300)
    contract.load(data).report.print(console)
    shown = console.export_text()
    assert f"{data}/events.parquet" in shown and "unknown type: swipe" in shown
