"""Shared fixtures. Stage-specific fixtures live next to their tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from botfilter.settings import Settings


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
