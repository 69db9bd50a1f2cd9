"""The log and register steps: a training run's parameters, figures, plots and model go to
MLflow, then the model becomes a version of the registered model. Promotion is separate
(``training.promote``)."""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from core.settings import Settings
from features.definitions import feature_schema
from monitoring.run import training_profile
from scoring.files import METADATA_FILE
from scoring.model import BotModel
from scoring.registry import configure_mlflow
from training import plots
from training.evaluate import Evaluation, flat_metrics, rows_fingerprint
from training.fit import FitInfo, Prepared, judged_on, mix_param
from training.gate import GateNumbers
from training.kind import log_kind
from training.report import EvaluationReport, json_ready

EXPERIMENT = "botfilter"
EVALUATION_FILE = "evaluation.json"
# The champion's report on the candidate's test split, and the tag naming that champion: what
# `botfilter promote` compares against while that champion still holds the alias.
CHAMPION_EVALUATION_FILE = "champion_evaluation.json"
COMPARED_TAG = "gate.champion_version"
# The content hash of the test rows (training.evaluate.rows_fingerprint): `botfilter promote`
# rebuilds them only to find the same rows.
FINGERPRINT_PARAM = "test_fingerprint"
# "data labels" or "weak labels" (labelling.training.JUDGED_ON_*): what judged the run's model.
JUDGED_ON_PARAM = "judged_on"


@dataclass(frozen=True)
class ChampionEvaluation:
    """The champion (``name/version``) evaluated on a candidate's test rows; ``report`` is None
    when it cannot be compared (it uses features this code no longer computes)."""

    version: str
    report: EvaluationReport | None


@dataclass(frozen=True)
class LoggedRun:
    """A finished training run and the model it logged (not yet registered)."""

    run_id: str
    model_uri: str


def use_experiment(settings: Settings) -> None:
    """Select the experiment; with the embedded store its artifacts go under the data home
    (MLflow's default would be ./mlruns in whatever directory the command runs from)."""
    configure_mlflow(settings)  # resolving the champion may not have opened the registry
    embedded = settings.mlflow_uri == f"sqlite:///{(settings.home / 'mlflow.db').resolve()}"
    if embedded and mlflow.get_experiment_by_name(EXPERIMENT) is None:
        settings.artifact_root.mkdir(parents=True, exist_ok=True)
        mlflow.create_experiment(EXPERIMENT, artifact_location=settings.artifact_root.as_uri())
    mlflow.set_experiment(EXPERIMENT)


def log_run(
    settings: Settings,
    data_dir: Path,
    prep: Prepared,
    model: BotModel,
    info: FitInfo,
    evaluation: Evaluation,
    champion: ChampionEvaluation | None,
) -> LoggedRun:
    """Log a fitted and evaluated model with everything needed to judge and reproduce it:
    parameters, test figures, thresholds and how they were chosen, plots, the reference
    profile for `botfilter monitor`, and the champion it was compared with."""
    use_experiment(settings)
    report = evaluation.report
    with mlflow.start_run() as run, tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        mlflow.log_params(dict(info.params))
        mlflow.log_params(
            {
                "best_iteration": info.best_iteration,
                "target_precision": settings.target_precision,
                # absolute: `botfilter promote` rereads it from wherever it is typed
                "data_dir": str(Path(data_dir).resolve()),
                "labels": prep.label_info.get("labels", "data"),
                # what the test report (and the gate) judged it on: the data's labels or weak ones
                JUDGED_ON_PARAM: judged_on(prep),
                "labels_mix": mix_param(prep.label_info.get("mix", [])),
                **{f"rows_{k}": v for k, v in info.split.items()},
                FINGERPRINT_PARAM: rows_fingerprint(prep, info.test_idx),
            }
        )
        mlflow.log_metrics(flat_metrics(report.to_dict(), "test."))
        if champion is not None:
            mlflow.set_tag(COMPARED_TAG, champion.version)
            if champion.report is not None:
                numbers = GateNumbers.of(champion.report)
                mlflow.log_metrics(flat_metrics(asdict(numbers), "champion."))
                _log_json(champion.report.to_dict(), CHAMPION_EVALUATION_FILE)
        _log_json(feature_schema(), "feature_schema.json")
        _log_json(model.thresholds, "thresholds.json")
        _log_json(info.thresholds_how, "thresholds_how.json")
        mlflow.set_tags(
            {
                f"threshold.{k.replace(':', '_')}": v["method"]
                for k, v in info.thresholds_how.items()
            }
        )
        _log_json(report.to_dict(), EVALUATION_FILE)
        log_kind(model, prep, info.test_idx)  # issue 16: the kind head's confusion per kind
        if prep.label_info:
            _log_json(prep.label_info, "labels.json")
        # What `botfilter monitor` compares live traffic with.
        _log_json(training_profile(model, prep), "reference_profile.json")
        for fig in _plots(model, prep, info.test_idx, evaluation, tmpd):
            mlflow.log_artifact(str(fig), "plots")
        model_uri = _log_model(model, prep, info.test_idx, tmpd)
        return LoggedRun(run.info.run_id, model_uri)


def _log_json(doc: object, name: str) -> None:
    """Log ``doc`` to the active run as strict JSON (NaN as null: ``json_ready``)."""
    # MLflow writes any JSON value; its annotation says dict (the feature schema is a list).
    mlflow.log_dict(json_ready(doc), name)


def _plots(
    model: BotModel, prep: Prepared, te: np.ndarray, evaluation: Evaluation, out: Path
) -> list[Path]:
    """PR curves, calibration, importance and the confusion per bot kind on the test rows,
    against the labels the report judges on (the data's own, when weak labels only trained)."""
    ctx_te = prep.ctx.iloc[te]
    y = (ctx_te["label"] == "bot").to_numpy() if "label" in ctx_te else prep.y[te]
    kind = (
        ctx_te["bot_kind"].fillna("human").astype(str)
        if "bot_kind" in ctx_te
        else pd.Series(np.where(y, "bot", "human"))
    )
    proba = evaluation.proba
    return [
        plots.pr_curve(y, proba, ctx_te["channel"] + ":" + ctx_te["type"], out / "pr_curve.png"),
        plots.calibration(y, proba, out / "calibration.png"),
        plots.importance(
            model.feature_names,
            model.booster.feature_importance("gain"),
            out / "feature_importance.png",
        ),
        plots.confusion_by_kind(
            kind.reset_index(drop=True), evaluation.is_bot, out / "confusion_by_bot_kind.png"
        ),
    ]


def _log_model(model: BotModel, prep: Prepared, te: np.ndarray, tmpd: Path) -> str:
    """Log the booster with its metadata file into the active run; its model URI."""
    meta = tmpd / METADATA_FILE
    meta.write_text(json.dumps(model.metadata(), indent=2, sort_keys=True))
    example = prep.features.iloc[te[:5]][model.feature_names].astype("float64")
    signature = infer_signature(example, model.predict_proba(example))
    logged = mlflow.lightgbm.log_model(
        model.booster,
        name="model",
        signature=signature,
        input_example=example,
        extra_files=[str(meta)],
        # explicit requirements: inferring them re-imports the world in a subprocess (~30 s)
        pip_requirements=[
            f"lightgbm=={lgb.__version__}",
            f"pandas=={pd.__version__}",
            f"numpy=={np.__version__}",
        ],
        metadata={
            "feature_names": model.feature_names,
            "thresholds": model.thresholds,
            "calibration": list(model.calibration),
        },
    )
    return str(logged.model_uri)


def register(settings: Settings, logged: LoggedRun) -> str:
    """Register a logged model as a new version of ``settings.model_name``; its number."""
    version = str(mlflow.register_model(logged.model_uri, settings.model_name).version)
    MlflowClient().set_tag(logged.run_id, "model_version", f"{settings.model_name}/{version}")
    return version


def read_report(client: MlflowClient, run_id: str, name: str) -> EvaluationReport | None:
    """An evaluation report a run logged as ``name`` (None if it logged none)."""
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(run_id, name, tmp)
            return EvaluationReport.from_dict(json.loads(Path(path).read_text()))
    except (MlflowException, OSError):
        return None
