"""Shared fixtures. Stage-specific fixtures live next to their tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from botfilter.settings import Settings

# The MLflow variables as the session found them (set by the user, or not at all).
_MLFLOW_ENV = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}


@pytest.fixture(autouse=True)
def _mlflow_env_as_found() -> None:
    """mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI to the environment, which Settings
    reads: a test (or a module fixture) that configured MLflow must not point later tests at
    its registry (the worker test found another module's champion that way)."""
    for key, value in _MLFLOW_ENV.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings with a private data home (sqlite MLflow and metrics stores inside tmp_path)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for key in list(os.environ):
        if key.startswith("BOTFILTER_"):
            monkeypatch.delenv(key, raising=False)
    return Settings(home=tmp_path / "home")


@pytest.fixture(scope="session")
def pg_url() -> str:
    """PostgreSQL URL for integration tests (CI starts the server)."""
    return os.environ.get(
        "BOTFILTER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )


@pytest.fixture(scope="session")
def redis_url() -> str:
    """Redis URL for integration tests (CI starts the server)."""
    return os.environ.get("BOTFILTER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
