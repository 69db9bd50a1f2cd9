"""A small registered champion, for tests that need MLflow's model registry (used through the
``register_model`` fixture of ``tests/conftest.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb
import mlflow
import numpy as np

from core.settings import Settings
from features.definitions import FEATURE_NAMES
from scoring.files import METADATA_FILE
from scoring.registry import configure_mlflow


def register_model(settings: Settings, seed: int, tmp: Path) -> None:
    """Register a small LightGBM model (different per seed) as the champion in ``settings``'
    registry, as ``botfilter train`` logs it (model.lgb + the metadata file)."""
    rng = np.random.default_rng(seed)
    names = list(FEATURE_NAMES)
    X = rng.normal(size=(400, len(names)))
    y = (X[:, seed % len(names)] > 0).astype(int)
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 7, "verbose": -1, "seed": seed},
        lgb.Dataset(X, y, feature_name=names),
        num_boost_round=5,
    )
    meta = tmp / METADATA_FILE
    meta.write_text(
        json.dumps({"feature_names": names, "calibration": [1.0, 0.0], "thresholds": {}})
    )
    configure_mlflow(settings)
    settings.artifact_root.mkdir(parents=True, exist_ok=True)
    name = f"identity-{seed}"
    experiment = mlflow.get_experiment_by_name(name)
    experiment_id = (
        experiment.experiment_id
        if experiment
        else mlflow.create_experiment(name, artifact_location=settings.artifact_root.as_uri())
    )
    with mlflow.start_run(experiment_id=experiment_id):
        info = mlflow.lightgbm.log_model(
            booster,
            name="model",
            registered_model_name=settings.model_name,
            extra_files=[str(meta)],
            pip_requirements=[f"lightgbm=={lgb.__version__}"],
        )
    mlflow.MlflowClient().set_registered_model_alias(
        settings.model_name, settings.champion_alias, str(info.registered_model_version)
    )
