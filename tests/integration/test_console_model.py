"""The admin Model page's facts from a real MLflow registry (SQLite) and saved estimates."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from console.model import champion_info
from core.settings import Settings
from labelling.estimates import save_estimates
from scoring.registry import configure_mlflow
from training.evaluate import UA_LIST_FLAGS, evaluation_report
from training.tracking import use_experiment

pytestmark = pytest.mark.integration


def test_model_info_reads_the_registry_and_the_estimates(tmp_path) -> None:
    settings = Settings(home=tmp_path / "home")
    configure_mlflow(settings)
    use_experiment(settings)  # artifacts under the home: never ./mlruns of the working dir
    # A real (tiny) evaluation report: one bot caught, one person left alone.
    ctx = pd.DataFrame(
        {
            "tenant_id": "t1",  # an event context always has it (campaigns are per tenant)
            "label": ["bot", "human"],
            "channel": "email",
            "type": "click",
            "campaign_id": "c1",
            "message_id": ["m1", "m2"],
            "delivered_at": pd.Timestamp("2026-10-01", tz="UTC"),
        }
    )
    feats = pd.DataFrame(0, index=ctx.index, columns=list(UA_LIST_FLAGS))
    report = evaluation_report(ctx, feats, np.array([0.9, 0.1]), np.array([True, False])).to_dict()
    client = MlflowClient()
    client.create_registered_model("botfilter")
    for promote in (True, False):
        with mlflow.start_run() as run:
            mlflow.log_dict(report, "evaluation.json")
            reasons = [] if promote else ["pr_auc 0.5000 < 0.9"]
            mlflow.log_dict({"promote": promote, "reasons": reasons}, "gate_decision.json")
        mv = client.create_model_version(
            "botfilter", f"runs:/{run.info.run_id}/model", run.info.run_id
        )
        if promote:
            client.set_registered_model_alias("botfilter", "champion", mv.version)
    rows = pd.DataFrame(
        {
            "tenant_id": ["t1"],
            "channel": ["email"],
            "confirmed": [40],
            "flagged": [38],
            "recall": [0.95],
            "ci_low": [0.83],
            "ci_high": [0.99],
            "note": [""],
        }
    )
    save_estimates(settings.home, rows, "botfilter/1")
    info = champion_info(settings, ["t1", "t2"])
    champion = info["champion"]
    assert champion["version"] == "botfilter/1" and champion["gate"]["promote"] is True
    assert champion["evaluation"] == {
        "pr_auc": 1.0,
        "precision": 1.0,
        "recall": 1.0,
        "human_fpr": 0.0,
        "ctr_mae_pp": 0.0,
    }
    assert champion["model_id"] is None  # the run holds no model files to take an id from
    assert info["latest"]["version"] == "botfilter/2"
    assert info["latest"]["gate"] == {"promote": False, "reasons": ["pr_auc 0.5000 < 0.9"]}
    assert list(info["estimates"]) == ["t1"]  # t2 saved none
    assert info["estimates"]["t1"]["rows"][0]["recall"] == 0.95
    assert not Path("mlruns").exists()
