"""Fetching a ``--model`` into the model cache (scoring.registry): a URI padded with spaces is
refused, and a fetch that fails leaves nothing behind."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.errors import BotfilterError
from core.settings import Settings
from scoring.registry import resolve_model

pytestmark = pytest.mark.usefixtures("mlflow_restored")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", tracking_uri=f"sqlite:///{tmp_path / 'r.db'}")


def _cache(settings: Settings) -> list[str]:
    """What the model cache holds (besides the remembered alias answers)."""
    folder = settings.models_dir / "registry"
    return (
        sorted(p.name for p in folder.iterdir() if p.name != "aliases") if folder.is_dir() else []
    )


def test_a_directory_that_is_no_model_leaves_no_copy_in_the_cache(
    settings: Settings, tmp_path: Path
) -> None:
    """The audit: `score --model DIR` (DIR no model) failed in one line, but left DIR's whole
    copy as models/registry/DIR-….tmp under the data home."""
    folder = tmp_path / "somedir"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a model")
    with pytest.raises(BotfilterError) as failed:
        resolve_model(settings, str(folder))
    assert str(failed.value) == (
        f"{folder} is not a botfilter model (no model.lgb / botfilter_model.json)"
    )
    assert _cache(settings) == []


def test_a_fetch_stopped_half_way_leaves_nothing_in_the_cache(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C (or any failure that is not an Exception) during the download left the part
    fetched so far."""
    import mlflow.artifacts

    def stopped(artifact_uri: str, dst_path: str) -> str:
        shutil.copytree(artifact_uri, dst_path, dirs_exist_ok=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", stopped)
    folder = tmp_path / "somedir"
    folder.mkdir()
    (folder / "model.lgb").write_text("half")
    with pytest.raises(KeyboardInterrupt):
        resolve_model(settings, str(folder))
    assert _cache(settings) == []


@pytest.mark.parametrize(
    "uri", [" models:/botfilter/1", "models:/botfilter@champion ", "\t/models/bot\n"]
)
def test_a_model_uri_padded_with_spaces_is_refused_before_any_fetch(
    settings: Settings, uri: str
) -> None:
    """The audit: " models:/botfilter/1" was taken for a path, fetched anew on every run and
    labelled "1"."""
    with pytest.raises(BotfilterError) as refused:
        resolve_model(settings, uri)
    assert str(refused.value) == f"model URI {uri!r}: remove the spaces around it"
    assert not settings.models_dir.exists()
