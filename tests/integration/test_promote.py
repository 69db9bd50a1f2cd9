"""`botfilter promote --version N` against a real MLflow sqlite registry: the gate runs on its
own, a version that fails it leaves the champion alias where it is, one that passes moves it."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from core.settings import Settings
from scoring.registry import configure_mlflow
from simulation import simulate
from training.train import train

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Settings:
    """Versions 1 and 3 (the same fit of one small world) pass the gate; version 2 (a model
    that cannot split) fails it. Training leaves version 3 as the champion."""
    root = tmp_path_factory.mktemp("promote")
    simulate(root / "world", tenants=1, days=4, seed=1)
    home = root / "home"
    settings = Settings(home=home, tracking_uri=f"sqlite:///{(home / 'mlflow.db').resolve()}")
    # Trained with a relative --data, and promoted (below) from another directory: the run
    # must log where its data is, not how it was typed ("its test data world is gone").
    here = os.getcwd()
    os.chdir(root)
    try:
        world = Path("world")
        assert train(settings, world).decision.promote
        assert not train(settings, world, params={"min_data_in_leaf": 10**9}).decision.promote
        assert train(settings, world).decision.promote
    finally:
        os.chdir(here)
    return settings


def _client(settings: Settings) -> MlflowClient:
    configure_mlflow(settings)
    return MlflowClient()


def _champion(settings: Settings) -> str:
    return str(_client(settings).get_registered_model(settings.model_name).aliases["champion"])


def _set_champion(settings: Settings, version: str) -> None:
    _client(settings).set_registered_model_alias(settings.model_name, "champion", version)


def _promote(settings: Settings, version: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("botfilter")
    env = {"BOTFILTER_HOME": str(settings.home), "PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    return subprocess.run(
        [str(exe), "promote", "--version", version],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=300,
    )


def _gate_file(settings: Settings, version: str) -> dict:
    client = _client(settings)
    run_id = client.get_model_version(settings.model_name, version).run_id
    return json.loads(Path(client.download_artifacts(run_id, "gate_decision.json")).read_text())


def _logged_numbers(settings: Settings, version: str) -> dict:
    client = _client(settings)
    run_id = client.get_model_version(settings.model_name, version).run_id
    doc = json.loads(Path(client.download_artifacts(run_id, "evaluation.json")).read_text())
    return {
        "pr_auc": doc["pr_auc"],
        "precision": doc["overall"]["model"]["precision"],
        "recall": doc["overall"]["model"]["recall"],
        "human_fpr": doc["human_fpr"]["model"],
        "ctr_mae_pp": doc["campaign_metric_error"]["model"]["ctr_mae_pp"],
    }


def test_a_version_that_fails_the_gate_is_not_promoted(registry):
    _set_champion(registry, "1")
    proc = _promote(registry, "2")
    assert proc.returncode == 1, proc.stderr
    assert "botfilter/2: not promoted" in proc.stdout and "below champion" in proc.stdout
    assert _champion(registry) == "1"
    mv = _client(registry).get_model_version(registry.model_name, "2")
    assert mv.tags["gate"] == "rejected"


def test_a_version_that_passes_the_gate_is_promoted(registry):
    _set_champion(registry, "1")  # a rollback: version 3 is as good as 1 on its test rows
    proc = _promote(registry, "3")
    assert proc.returncode == 0, proc.stderr
    assert "botfilter/3: promoted to @champion — at least as good as the champion" in proc.stdout
    assert _champion(registry) == "3"
    decision = _gate_file(registry, "3")
    assert decision["promote"] is True
    assert decision["champion"] == _logged_numbers(registry, "1")
    again = _promote(registry, "3")
    assert again.returncode == 0 and "botfilter/3 is already @champion" in again.stdout


def test_a_champion_not_compared_at_training_is_evaluated_on_the_same_rows(registry):
    # Version 2 was compared with version 1 when it was trained; against version 3 its test
    # rows are rebuilt from the run's data, and both fits of the same world score alike there.
    _set_champion(registry, "3")
    proc = _promote(registry, "2")
    assert proc.returncode == 1, proc.stderr
    assert "evaluating botfilter/3 on the test rows of botfilter/2" in proc.stdout
    assert _champion(registry) == "3"
    decision = _gate_file(registry, "2")
    assert decision["promote"] is False
    assert decision["champion"] == _logged_numbers(registry, "3")
    assert decision["candidate"]["pr_auc"] == _logged_numbers(registry, "2")["pr_auc"]


def test_a_candidate_whose_data_changed_since_training_is_refused(registry):
    """Labels flipped in the data (the same rows): the candidate's logged report, computed on
    the old data, was judged against the champion evaluated on the changed data (promoted,
    "at least as good"). Now the rebuilt test rows must be those it was evaluated on."""
    import pandas as pd

    root = registry.home.parent
    shutil.copytree(root / "world", root / "changed")
    _set_champion(registry, "1")
    candidate = train(registry, root / "changed").version  # compared with version 1
    _set_champion(registry, "3")
    events = pd.read_parquet(root / "changed" / "events.parquet")
    events["label"] = events["label"].map({"bot": "human", "human": "bot"})
    events.to_parquet(root / "changed" / "events.parquet", index=False)
    proc = _promote(registry, candidate.split("/")[1])
    assert proc.returncode == 2, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"{root / 'changed'} changed since {candidate} was trained (its " in lines[0]
    assert "test events are not those it was evaluated on): it cannot be compared" in lines[0]
    assert _champion(registry) == "3"


def test_an_unknown_version_is_one_line(registry):
    proc = _promote(registry, "99")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no version 99 of model botfilter" in lines[0], proc.stderr
