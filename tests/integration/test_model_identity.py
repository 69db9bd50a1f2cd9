"""Models are known by their content and registry, never by their label alone (issue 14 item 1).

Two MLflow registries (two sqlite stores) each register a different model as ``botfilter/1``;
the data home, and so the model caches and the score store, is shared.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from contract.validate import validate_tables
from core.errors import BotfilterError
from core.settings import Settings
from jobs.recompute import RecomputeOptions, recompute
from jobs.store import Store
from scoring.batch import score_validated
from scoring.files import METADATA_FILE
from scoring.model import BotModel
from scoring.registry import champion_uri, configure_mlflow, load_model
from simulation import generate

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("mlflow_restored")]


@pytest.fixture(scope="module")
def two_registries(
    tmp_path_factory: pytest.TempPathFactory, register_model
) -> tuple[Settings, Settings]:
    """Two settings that share a data home and point at two registries, each with its own
    ``botfilter/1`` (models of seeds 1 and 2)."""
    tmp = tmp_path_factory.mktemp("registries")
    home = tmp / "home"
    out = []
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        for seed in (1, 2):
            s = Settings(home=home, tracking_uri=f"sqlite:///{tmp / f'registry-{seed}.db'}")
            (tmp / str(seed)).mkdir()
            register_model(s, seed, tmp / str(seed))
            out.append(s)
    return out[0], out[1]


def direct_model(settings: Settings, dst: Path) -> BotModel:
    """The champion of ``settings``' registry, downloaded afresh (no cache involved)."""
    configure_mlflow(settings)
    mlflow.artifacts.download_artifacts(artifact_uri=champion_uri(settings), dst_path=str(dst))
    model = next(dst.rglob("model.lgb"))
    return BotModel.from_files(model, next(dst.rglob(METADATA_FILE)), "direct")


def test_each_registry_scores_with_its_own_botfilter_1(two_registries, tmp_path) -> None:
    first, second = two_registries
    world = validate_tables(generate(tenants=1, days=2, seed=5))
    scores_a = score_validated(world, first)
    scores_b = score_validated(world, second)
    expected_b = score_validated(world, second, model=direct_model(second, tmp_path / "b"))
    np.testing.assert_allclose(scores_b["bot_score"], expected_b["bot_score"], rtol=0, atol=1e-9)
    assert not np.allclose(scores_a["bot_score"], scores_b["bot_score"])
    assert (scores_b["model_version"] == "botfilter/1").all()
    a, b = load_model(first, compile=False), load_model(second, compile=False)
    assert a.version == b.version == "botfilter/1" and a.model_id != b.model_id


def test_stored_scores_of_another_registry_are_not_reused(two_registries, tmp_path) -> None:
    first, second = two_registries
    world = validate_tables(generate(tenants=1, days=2, seed=5))
    as_of = pd.to_datetime(world.events["occurred_at"]).max().ceil("D")
    store = Store(f"sqlite:///{first.home / 'metrics.db'}")
    options = RecomputeOptions(as_of=as_of)
    one = recompute(store, first, world, options)
    assert one.scores_source == "scored"
    two = recompute(store, second, world, options)
    assert two.scores_source == "scored"  # the first registry's botfilter/1 scores stay unused
    again = recompute(store, second, world, options)
    assert again.scores_source == "store"
    tenants = sorted(world.messages["tenant_id"].unique())
    stored_b = store.load_scores(tenants, load_model(second, compile=False).model_id)
    want = score_validated(world, second).set_index("event_id")["bot_score"]
    got = stored_b.set_index("event_id")["bot_score"].reindex(want.index)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_an_unchanged_registry_is_not_asked_again_and_a_moved_alias_is_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, register_model
) -> None:
    """The alias lookup is remembered by the registry's bytes: a second resolution of an
    unchanged store does not open MLflow, and promoting another version is seen at once."""
    import scoring.registry as registry

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = Settings(home=tmp_path / "home", tracking_uri=f"sqlite:///{tmp_path / 'r.db'}")
    for seed in (1, 2):
        (tmp_path / str(seed)).mkdir()
    register_model(settings, 1, tmp_path / "1")
    asked: list[str] = []
    real = registry._registered

    def counted(s: Settings, uri: str) -> tuple[str, str]:
        asked.append(uri)
        return real(s, uri)

    monkeypatch.setattr(registry, "_registered", counted)
    first = registry.resolve_model(settings)
    again = registry.resolve_model(settings)
    assert (first, len(asked)) == (again, 1)
    assert first.version == "botfilter/1"
    register_model(settings, 2, tmp_path / "2")  # version 2 becomes the champion
    moved = registry.resolve_model(settings)
    assert moved.version == "botfilter/2" and moved.model_id != first.model_id
    assert len(asked) == 2
    other = Settings(home=settings.home, tracking_uri=f"sqlite:///{tmp_path / 'other.db'}")
    (tmp_path / "3").mkdir()
    register_model(other, 3, tmp_path / "3")
    assert registry.resolve_model(other).model_id not in (first.model_id, moved.model_id)
    assert registry.resolve_model(settings) == moved  # each registry keeps its own answer
    assert len(asked) == 3


def test_registry_users_point_mlflow_at_their_own_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, register_model
) -> None:
    """A remembered alias opens no registry, so what reads MLflow next must point it at the
    store itself (monitor's reference profile, the training run): it once found another store."""
    from monitoring.run import load_reference
    from scoring.registry import resolve_model
    from training.tracking import use_experiment

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = Settings(home=tmp_path / "home", tracking_uri=f"sqlite:///{tmp_path / 'r.db'}")
    (tmp_path / "m").mkdir()
    register_model(settings, 4, tmp_path / "m")
    version = resolve_model(settings).version  # remembered from here on
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    mlflow.set_tracking_uri(elsewhere)  # as a fresh process that has not opened the store
    assert resolve_model(settings).version == version
    with pytest.raises(BotfilterError, match="no reference_profile.json"):
        load_reference(settings, version)  # the run is found (it has no profile: not logged here)
    assert mlflow.get_tracking_uri() == settings.mlflow_uri
    mlflow.set_tracking_uri(elsewhere)
    use_experiment(settings)
    assert mlflow.get_tracking_uri() == settings.mlflow_uri


@pytest.mark.parametrize(
    ("uri", "said"),
    [
        ("models:/botfilter", "name a registered version, models:/NAME@ALIAS"),
        ("models:/", "name a registered version"),
        ("runs:/deadbeef/model", "cannot fetch the model at runs:/deadbeef/model: "),
        ("/nowhere/model", "cannot fetch the model at /nowhere/model: "),
    ],
)
def test_a_model_uri_that_names_no_model_is_one_line(tmp_path, uri: str, said: str) -> None:
    """`--model` URIs that name no version, or nothing that exists, were internal errors
    (ValueError from splitting the URI, MLflow's own exceptions from the download; an audit)."""
    from core.errors import BotfilterError
    from scoring.registry import resolve_model

    settings = Settings(home=tmp_path / "home", tracking_uri=f"sqlite:///{tmp_path / 'r.db'}")
    with pytest.raises(BotfilterError) as info:
        resolve_model(settings, uri)
    assert said in str(info.value) and "\n" not in str(info.value)


def test_a_run_uri_is_its_own_label_and_a_model_file_has_no_profile(tmp_path) -> None:
    """Rows scored with runs:/RUN/model were stamped "model", as every run's would be; and
    monitoring a model without a registered version was an internal error (a ValueError
    splitting its label; an audit)."""
    from core.errors import BotfilterError
    from monitoring.run import load_reference
    from scoring.registry import resolve_version

    settings = Settings(home=tmp_path / "home", tracking_uri=f"sqlite:///{tmp_path / 'r.db'}")
    assert resolve_version(settings, "runs:/0123abcd/model") == "runs:/0123abcd/model"
    for label in ("model", "runs:/0123abcd/model"):
        with pytest.raises(BotfilterError, match="has no"):
            load_reference(settings, label)
