"""Drift monitoring, training on weak labels and the unlabelled accuracy estimate, end to end
with real MLflow: a champion trained on a default world; a world drawn like it stays quiet; a
world with an injected new scanner family raises an alert that names the family's network."""

import json
from pathlib import Path

import pytest

from core.settings import Settings
from labelling.label import hide_labels
from simulation import SimConfig, simulate
from training.train import train

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SIZE = dict(tenants=3, days=10)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("monitor")
    simulate(root / "train", seed=21, **SIZE)
    simulate(root / "quiet", seed=22, **SIZE)
    simulate(root / "new", seed=23, config=SimConfig.variant("new_scanner"), **SIZE)
    home = root / "home"
    settings = Settings(home=home, tracking_uri=f"sqlite:///{(home / 'mlflow.db').resolve()}")
    first = train(settings, root / "train")
    assert first.decision.promote
    return {"root": root, "home": home, "settings": settings, "first": first}


def test_monitor_is_quiet_on_a_world_drawn_like_the_training_one(cli, setup):
    model = ["--model", f"models:/{setup['first'].version}"]  # whatever is champion by now
    proc = cli(["monitor", "--data", str(setup["root"] / "quiet"), *model], setup["home"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((setup["home"] / "reports/monitor/latest.json").read_text())
    assert report["alerts"] == [] and report["candidate_scanners"] == []
    assert report["feature_psi"] and report["bot_share_by_day"] and report["networks"]


def test_monitor_alerts_on_a_new_scanner_family_and_names_its_network(cli, setup, tmp_path):
    from monitoring.run import gauges

    out, page = tmp_path / "drift.json", tmp_path / "drift.html"
    args = ["monitor", "--data", str(setup["root"] / "new"), "--out", str(out), "--html", str(page)]
    args += ["--model", f"models:/{setup['first'].version}"]
    proc = cli(args, setup["home"])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "candidate new scanner: AS174 Cogent Communications" in proc.stdout
    report = json.loads(out.read_text())
    assert [c["asn"] for c in report["candidate_scanners"]] == [174]
    assert "AS174 Cogent Communications" in page.read_text()
    # The API's /metrics gauges read the latest report kept under the data home.
    latest = json.loads((setup["home"] / "reports/monitor/latest.json").read_text())
    assert latest["candidate_scanners"] == report["candidate_scanners"]
    assert "botfilter_drift_candidate_scanners 1.0" in gauges(setup["home"])


def test_monitor_without_a_reference_profile_fails_in_one_line(cli, setup, tmp_path):
    proc = cli(["monitor", "--data", str(setup["root"] / "quiet")], tmp_path / "empty")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "no model at" in proc.stderr


def test_training_on_weak_labels_mixed_with_a_world_is_recorded(setup):
    from mlflow import MlflowClient

    hidden = hide_labels(setup["root"] / "new", setup["root"] / "new_hidden")
    result = train(setup["settings"], hidden, labels="weak", mix=[setup["root"] / "train"])
    run_ = MlflowClient().get_run(result.run_id)
    assert run_.data.params["labels"] == "weak"
    assert run_.data.params["labels_mix"] == str(setup["root"] / "train")
    names = {a.path for a in MlflowClient().list_artifacts(result.run_id)}
    assert {"labels.json", "reference_profile.json"} <= names
    assert result.report.pr_auc > 0.95  # against the weak labels of its test split


def test_evaluate_unlabelled_estimates_recall_per_tenant(cli, setup, tmp_path):
    out = tmp_path / "estimates.json"  # the audit: --out was never written
    args = ["evaluate", "--data", str(setup["root"] / "quiet"), "--unlabelled", "--out", str(out)]
    proc = cli(args, setup["home"])
    assert proc.returncode == 0, proc.stderr
    saved = json.loads(out.read_text())
    assert saved["rows"] and {r["tenant_id"] for r in saved["rows"]} == {
        r["tenant_id"]
        for f in (setup["home"] / "reports/accuracy").glob("*.json")
        for r in json.loads(f.read_text())["rows"]
    }
    assert "scanner recall without labels" in proc.stdout
    files = sorted((setup["home"] / "reports/accuracy").glob("*.json"))
    assert files
    doc = json.loads(files[0].read_text())
    assert {r["channel"] for r in doc["rows"]} <= {"email", "sms"}
    for r in doc["rows"]:
        assert r["note"] in ("", "too few to tell", "no honeypot hits")
        if not r["note"]:
            assert r["ci_low"] <= r["recall"] <= r["ci_high"] and r["confirmed"] >= 30


def test_the_worker_runs_the_monitor_once_a_day(setup):
    from datetime import UTC, datetime, timedelta

    from jobs.store import Store
    from jobs.worker import CycleOptions, run_cycle

    settings = setup["settings"]
    store = Store.open(settings)
    latest = setup["home"] / "reports/monitor/latest.json"
    latest.unlink(missing_ok=True)
    now = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
    # The first model: a weak-label model trained on the new world may be champion by now.
    uri = f"models:/{setup['first'].version}"
    options, data = CycleOptions(model_uri=uri), setup["root"] / "new"
    first = run_cycle(store, settings, data, options, now=now)
    assert first.status == "succeeded", first.errors
    # The worker keeps the champion's drift only (the API's gauges read latest.json): the
    # first model's report when it is still the champion, else the same report as a command.
    from monitoring.run import run_monitor
    from scoring.registry import champion_version

    is_champion = champion_version(settings) == setup["first"].version
    assert latest.exists() is is_champion
    report = json.loads(latest.read_text()) if is_champion else run_monitor(settings, data, uri)
    # The new scanner family, and what else drifted (its current Chrome User-Agents move
    # ua_versions_behind, which a bin per heavy value sees since f05f5cd).
    alerts = report["alerts"]
    assert any(a.startswith("candidate new scanner: AS174") for a in alerts), alerts
    assert first.drift.startswith(f"{len(alerts)} alert(s): "), first.drift
    assert report["candidate_scanners"][0]["asn"] == 174
    assert f"drift monitor: {len(alerts)} alert(s)" in first.line()
    later = run_cycle(store, settings, data, options, now=now + timedelta(hours=2))
    assert later.drift == ""  # not a day yet
    next_day = run_cycle(store, settings, data, options, now=now + timedelta(days=1))
    assert next_day.drift.startswith(f"{len(alerts)} alert(s)")  # the same data, a day on


def test_monitoring_another_model_leaves_the_champions_latest_report(cli, setup, tmp_path):
    """The latest report feeds the API's drift gauges and the console as the champion's: a
    monitor run with --model naming another version overwrote it (an audit)."""
    refused = train(setup["settings"], setup["root"] / "train", params={"min_data_in_leaf": 10**9})
    assert not refused.decision.promote  # registered, not the champion
    latest = setup["home"] / "reports/monitor/latest.json"
    proc = cli(["monitor", "--data", str(setup["root"] / "quiet")], setup["home"])
    assert proc.returncode in (0, 1), proc.stderr
    before = latest.read_bytes()
    out = tmp_path / "other.json"
    args = ["monitor", "--data", str(setup["root"] / "quiet"), "--out", str(out)]
    proc = cli([*args, "--model", f"models:/{refused.version}"], setup["home"])
    assert proc.returncode in (0, 1), proc.stderr
    assert latest.read_bytes() == before
    assert json.loads(out.read_text())["model_version"] == refused.version
    proc = cli(
        [
            "monitor",
            "--data",
            str(setup["root"] / "quiet"),
            "--model",
            f"models:/{refused.version}",
        ],
        setup["home"],
    )
    assert "report not saved" in proc.stdout and latest.read_bytes() == before


def test_quarantined_rows_are_said_by_evaluate_and_monitor(cli, setup, tmp_path):
    """PRODUCT.md: a row that breaks the contract is never silently dropped. The audit: train,
    evaluate, evaluate --unlabelled and monitor left such rows out and said nothing."""
    import shutil

    import pandas as pd

    bad = tmp_path / "bad"
    shutil.copytree(setup["root"] / "quiet", bad)
    events = next(bad.glob("events.*"))
    frame = pd.read_parquet(events)
    stray = frame.head(3).assign(message_id="no-such-message", event_id=["x1", "x2", "x3"])
    pd.concat([frame, stray], ignore_index=True).to_parquet(events, index=False)
    model = ["--model", f"models:/{setup['first'].version}"]
    for args in (["evaluate", "--data", str(bad)], ["monitor", "--data", str(bad)]):
        proc = cli([*args, *model], setup["home"])
        assert proc.returncode in (0, 1), proc.stdout + proc.stderr
        assert "unknown message" in proc.stdout, args[0]
