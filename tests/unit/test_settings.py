from pathlib import Path

import pytest

from core.settings import Settings, get_settings


def test_env_prefix_and_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("BOTFILTER_HOME", str(tmp_path))
    monkeypatch.setenv("BOTFILTER_TARGET_PRECISION", "0.95")
    s = get_settings()
    assert s.home == tmp_path
    assert s.target_precision == 0.95
    assert s.mlflow_uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert s.metrics_db_url == f"sqlite:///{tmp_path.resolve() / 'metrics.db'}"


def test_mlflow_env_wins_over_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert Settings().mlflow_uri == "http://mlflow.internal:5000"


def test_secret_is_not_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTFILTER_API_TOKEN", "s3cret")
    s = Settings()
    assert s.api_token is not None and s.api_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)


def test_bad_precision_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTFILTER_TARGET_PRECISION", "1.5")
    with pytest.raises(ValueError):
        Settings()


def test_log_level_any_case_and_only_known_levels(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().log_level == "INFO"
    monkeypatch.setenv("BOTFILTER_LOG_LEVEL", "warning")
    assert Settings().log_level == "WARNING"
    monkeypatch.setenv("BOTFILTER_LOG_LEVEL", "verbose")
    with pytest.raises(ValueError, match="log_level"):
        Settings()
