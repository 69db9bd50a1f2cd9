"""User errors of the model commands: one clear line on stderr and a non-zero exit."""

from pathlib import Path

import pytest

from simulation import simulate

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "data"
    simulate(out, tenants=1, days=2, seed=3)
    return out


def test_score_without_champion_fails_with_one_line(cli, data, tmp_path):
    proc = cli(
        ["score", "--data", str(data), "--out", str(tmp_path / "s.parquet")], tmp_path / "home"
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert (
        len(lines) == 1
        and "no model at models:/botfilter@champion" in lines[0]
        and "botfilter train" in lines[0]
    )


def test_score_rejects_unknown_extension_and_engine(cli, data, tmp_path):
    proc = cli(["score", "--data", str(data), "--out", str(tmp_path / "s.txt")], tmp_path / "home")
    assert proc.returncode == 2 and "must end in .parquet or .csv" in proc.stderr
    proc = cli(
        ["score", "--data", str(data), "--out", str(tmp_path / "s.csv"), "--engine", "dask"],
        tmp_path / "home",
    )
    assert proc.returncode == 2 and "choose local or spark" in proc.stderr


def test_train_needs_labels(cli, data, tmp_path):
    import pandas as pd

    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    for name in ("messages", "segments", "settings"):
        (unlabelled / f"{name}.parquet").write_bytes((data / f"{name}.parquet").read_bytes())
    pd.read_parquet(data / "events.parquet").drop(columns=["label", "bot_kind"]).to_parquet(
        unlabelled / "events.parquet"
    )
    proc = cli(["train", "--data", str(unlabelled)], tmp_path / "home")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "training needs a label" in proc.stderr


def test_score_shuts_its_workers_down_when_it_fails(data, tmp_path):
    """A pool left running when scoring fails (here: no champion) printed a traceback at the
    interpreter's exit after the one-line error."""
    import os

    from core.errors import BotfilterError
    from core.settings import Settings
    from scoring.stream import score_data_dir
    from scoring.workers import start_workers

    pool = start_workers(2)
    assert pool.submit(os.getpid).result(timeout=120) > 0  # the workers are up
    settings = Settings(home=tmp_path / "home", tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    with pytest.raises(BotfilterError, match="no model at"):
        score_data_dir(data, tmp_path / "s.parquet", settings, workers=2, pool=pool)
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(os.getpid)
