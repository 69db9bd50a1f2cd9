"""Resolving and loading models from the MLflow registry (by alias, never "latest")."""

from __future__ import annotations

import shutil
from pathlib import Path

from botfilter.errors import BotfilterError
from botfilter.settings import Settings
from scoring.model import METADATA_FILE, BotModel


def champion_uri(settings: Settings) -> str:
    """``models:/<name>@champion``."""
    return f"models:/{settings.model_name}@{settings.champion_alias}"


def configure_mlflow(settings: Settings) -> None:
    """Point MLflow at the configured tracking/registry store."""
    import mlflow

    if settings.mlflow_uri.startswith("sqlite:///"):
        settings.ensure_home()
    mlflow.set_tracking_uri(settings.mlflow_uri)
    mlflow.set_registry_uri(settings.mlflow_uri)


def resolve_version(settings: Settings, uri: str) -> str:
    """A stable version label for a model URI: ``name/version`` for registry URIs."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    if uri.startswith("models:/"):
        ref = uri[len("models:/") :]
        try:
            if "@" in ref:
                name, alias = ref.split("@", 1)
                mv = client.get_model_version_by_alias(name, alias)
            else:
                name, version = ref.split("/", 1)
                if not version.isdigit():
                    raise BotfilterError(f"model URI {uri!r}: use an alias (@champion) or a number")
                mv = client.get_model_version(name, version)
        except MlflowException as exc:
            raise BotfilterError(
                f"no model at {uri} in {settings.mlflow_uri}: train one with `botfilter train`"
            ) from exc
        return f"{mv.name}/{mv.version}"
    return uri.rstrip("/").rsplit("/", 1)[-1][:40]


def load_model(settings: Settings, uri: str | None = None, compile: bool = True) -> BotModel:
    """Load ``uri`` (default: the champion alias) with its feature list, calibration, thresholds."""
    import mlflow

    configure_mlflow(settings)
    uri = uri or champion_uri(settings)
    version = resolve_version(settings, uri)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in version)
    local = settings.models_dir / "registry" / safe
    if not (local / ".complete").exists():
        tmp = local.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp))
        (tmp / ".complete").touch()
        shutil.rmtree(local, ignore_errors=True)
        tmp.rename(local)
    model_files = sorted(local.rglob("model.lgb"))
    meta_files = sorted(local.rglob(METADATA_FILE))
    if not model_files or not meta_files:
        raise BotfilterError(f"{uri} is not a botfilter model (no model.lgb / {METADATA_FILE})")
    model = BotModel.from_files(model_files[0], meta_files[0], version, settings.threads)
    if compile:
        model.compile(settings.models_dir / "compiled")
    return model


def find_model_dir(path: Path) -> Path:
    """The directory holding a saved model's files."""
    return next(path.rglob("model.lgb")).parent
