"""The Model page's facts, read from MLflow: the champion (label, content id, when trained), its
evaluation, the gate's decision on it and on the newest candidate, and the per-tenant accuracy
estimates that ``botfilter label estimate`` saved (labelling.estimates), where they exist."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from core.errors import BotfilterError
from core.settings import Settings

CACHE_S = 60.0  # the registry changes when someone trains: a minute old is fresh enough


def _run_dict(run_id: str, name: str) -> dict[str, Any] | None:
    import mlflow

    try:
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/{name}")
    except Exception:  # an older run without that artifact: shown as missing, not an error
        return None


def _figures(report: dict[str, Any] | None) -> dict[str, float]:
    """The evaluation's headline numbers: those the gate judges."""
    from dataclasses import asdict

    from training.gate import GateNumbers
    from training.report import EvaluationReport

    try:
        numbers = asdict(GateNumbers.of(EvaluationReport.from_dict(report or {})))
    except (KeyError, TypeError):  # a report of another shape: shown as missing
        return {}
    return {k: float(v) for k, v in numbers.items()}


def _version(client: Any, mv: Any) -> dict[str, Any]:
    run = client.get_run(mv.run_id)
    decision = _run_dict(mv.run_id, "gate_decision.json") or {
        "promote": run.data.tags.get("gate.promote") == "True",
        "reasons": [r for r in run.data.tags.get("gate.reasons", "").split("; ") if r],
    }
    return {
        "version": f"{mv.name}/{mv.version}",
        "run_id": mv.run_id,
        "trained_at": pd.Timestamp(mv.creation_timestamp, unit="ms", tz="UTC").isoformat(
            timespec="seconds"
        ),
        "gate": decision,
        "evaluation": _figures(_run_dict(mv.run_id, "evaluation.json")),
    }


def champion_info(settings: Settings, tenants: Sequence[str]) -> dict[str, Any]:
    """Everything the Model page shows (``champion`` None when no model is registered)."""
    from mlflow import MlflowClient

    from labelling.estimates import load_estimates
    from scoring.registry import configure_mlflow, resolve_model

    uri = settings.mlflow_uri
    out: dict[str, Any] = {"champion": None, "latest": None, "estimates": {}}
    for tenant in tenants:
        found = load_estimates(settings.home, tenant)
        if found is not None:
            out["estimates"][tenant] = found
    if uri.startswith("sqlite:///") and not Path(uri[10:]).exists():
        return out  # opening it would create an empty MLflow store
    configure_mlflow(settings)
    client = MlflowClient()
    try:
        mv = client.get_model_version_by_alias(settings.model_name, settings.champion_alias)
    except Exception:  # no registered model or no champion yet
        return out
    champion = _version(client, mv)
    try:
        champion["model_id"] = resolve_model(settings).model_id
    except BotfilterError:
        champion["model_id"] = None
    out["champion"] = champion
    versions = client.search_model_versions(f"name='{settings.model_name}'")
    newest = max(versions, key=lambda v: int(v.version), default=None)
    if newest is not None and newest.version != mv.version:
        out["latest"] = _version(client, newest)
    return out


class ModelInfo:
    """:func:`champion_info`, cached for :data:`CACHE_S` seconds (MLflow reads take a while)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._hit: tuple[float, tuple[str, ...], dict[str, Any]] | None = None

    def get(self, tenants: Sequence[str]) -> dict[str, Any]:
        key = tuple(tenants)
        with self._lock:
            hit = self._hit
            if hit is None or hit[1] != key or time.monotonic() - hit[0] > CACHE_S:
                hit = self._hit = (time.monotonic(), key, champion_info(self.settings, key))
            return hit[2]
