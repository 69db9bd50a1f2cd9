"""The Spark engine on a real standalone cluster, the way docs/spark.md says to run it.

One master and two workers on 127.0.0.1, started with the pyspark distribution's own
``spark-class``; the project and its dependencies packed with ``venv-pack`` and shipped with
``--archives``; ``recompute`` (fresh store, then a rerun on the same store) runs through
``spark-submit botfilter/spark_submit.py``. Its tables, and the scores the executors stored, equal the
local engine's. ``score --engine spark`` runs the same scoring on the executors and is checked against
the local engine in local mode (test_spark_equivalence.py): a third application here cost about a
minute. Everything the test starts is stopped at the end, failed or not.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.settings import Settings

# Builds and packs a venv, starts three JVMs and submits two applications: minutes, not seconds.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.spark,
    pytest.mark.slow,
    pytest.mark.timeout(1500),
]

pyspark = pytest.importorskip("pyspark")

ROOT = Path(__file__).resolve().parents[2]
SPARK_HOME = Path(pyspark.__file__).parent
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(log: Path, text: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Wait until ``text`` appears in a daemon's log (fail early if the daemon died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
    raise AssertionError(f"{log.name}: no {text!r} (exit {proc.poll()}):\n{tail}")


def _stop(proc: subprocess.Popen) -> None:
    """Stop one daemon we started (its own process group), politely, then for good."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cluster")


@pytest.fixture(scope="module")
def env(base: Path) -> dict[str, str]:
    """The environment of everything this test starts: private homes, 127.0.0.1 only."""
    out = {k: v for k, v in os.environ.items() if not k.startswith(("BOTFILTER_", "SPARK_"))}
    out.pop("MLFLOW_TRACKING_URI", None)
    out.pop("PYSPARK_PYTHON", None)
    out.pop("PYSPARK_DRIVER_PYTHON", None)
    out.update(
        SPARK_HOME=str(SPARK_HOME),
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_LOG_DIR=str(base / "logs"),
        SPARK_PID_DIR=str(base / "pids"),
        BOTFILTER_HOME=str(base / "home"),
        BOTFILTER_THREADS="1",
    )
    return out


@pytest.fixture(scope="module")
def packed(base: Path, env: dict[str, str]) -> tuple[Path, Path]:
    """docs/spark.md step 1: the project's wheel and its dependencies in a fresh venv, with
    venv-pack, packed. Returns (the archive, the venv's python, which the driver runs on)."""
    uv = str(BIN / "uv")
    dist = base / "dist"
    subprocess.run([uv, "build", "-q", "--out-dir", str(dist), str(ROOT)], check=True, env=env)
    wheel = next(dist.glob("botfilter-*.whl"))
    venv = base / "bf"
    # --copies: a real interpreter in bin/, since Spark refuses to unpack an archive with a
    # symlink that points outside it (a plain venv's bin/python3.11 -> /usr/bin/python3.11).
    subprocess.run([sys.executable, "-m", "venv", "--copies", str(venv)], check=True, env=env)
    python = venv / "bin" / "python"
    install = [uv, "pip", "install", "-q", "-p", str(python), str(wheel), "venv-pack"]
    subprocess.run(install, check=True, env=env)
    # .tar.gz: Spark unpacks it with tar, which keeps the executable bits (a plain .tar goes
    # through Java and loses them: "./env/bin/python: Permission denied").
    archive = base / "botfilter-env.tar.gz"
    pack = [str(venv / "bin" / "venv-pack"), "-p", str(venv), "-o", str(archive), "-q"]
    pack += ["--compress-level", "1"]
    subprocess.run(pack, check=True, env=env)
    return archive, python


@pytest.fixture(scope="module")
def cluster(base: Path, env: dict[str, str]) -> Iterator[str]:
    """A standalone master and two one-core workers on 127.0.0.1; the master URL."""
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    port = _free_port()
    url = f"spark://127.0.0.1:{port}"
    logs = base / "logs"
    logs.mkdir(exist_ok=True)
    procs: list[subprocess.Popen] = []

    def start(name: str, args: list[str]) -> tuple[subprocess.Popen, Path]:
        log = logs / f"{name}.log"
        with log.open("wb") as handle:
            proc = subprocess.Popen(
                [spark_class, *args],
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=base,
                start_new_session=True,  # its own process group: stopped with its children
            )
        procs.append(proc)
        return proc, log

    try:
        master, log = start(
            "master",
            [
                "org.apache.spark.deploy.master.Master",
                *("--host", "127.0.0.1", "--port", str(port)),
                *("--webui-port", str(_free_port())),
            ],
        )
        _wait_for(log, "I have been elected leader", master)
        for i in (1, 2):
            work = base / f"work-{i}"
            work.mkdir()
            worker, log = start(
                f"worker-{i}",
                [
                    "org.apache.spark.deploy.worker.Worker",
                    *("--host", "127.0.0.1", "--cores", "1", "--memory", "2g"),
                    *("--webui-port", str(_free_port()), "--work-dir", str(work)),
                    url,
                ],
            )
            _wait_for(log, "Successfully registered with master", worker)
        yield url
    finally:
        for proc in reversed(procs):
            _stop(proc)


@pytest.fixture(scope="module")
def world(base: Path) -> Path:
    from simulation import simulate

    out = base / "world"
    simulate(out, tenants=2, days=2, seed=31)
    return out


@pytest.fixture(scope="module")
def model_uri(base: Path, world: Path, env: dict[str, str]) -> str:
    """A model registered in the test's MLflow store (the driver resolves it; executors never
    see MLflow)."""
    from training.train import train

    settings = Settings(home=Path(env["BOTFILTER_HOME"]), threads=1)
    result = train(settings, world)
    return f"models:/{result.version}"


def _submit(
    cluster: str, packed: tuple[Path, Path], env: dict[str, str], base: Path, args: list[str]
) -> str:
    """docs/spark.md step 2: spark-submit botfilter/spark_submit.py with the packed environment."""
    archive, driver_python = packed
    cmd = [
        str(SPARK_HOME / "bin" / "spark-submit"),
        *("--master", cluster, "--deploy-mode", "client"),
        *("--archives", f"{archive}#env"),
        *("--conf", "spark.pyspark.python=./env/bin/python"),
        *("--conf", f"spark.pyspark.driver.python={driver_python}"),
        *("--conf", "spark.executor.cores=1", "--conf", "spark.executor.memory=1g"),
        *("--conf", "spark.sql.shuffle.partitions=4"),
        str(ROOT / "botfilter" / "spark_submit.py"),
        *args,
    ]
    done = subprocess.run(
        cmd, env=env, cwd=base, capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if "Error" in line or "error:" in line]
        raise AssertionError(f"{args[0]} failed: {errors[:8]}\n{done.stderr[-3000:]}")
    return done.stdout


def test_recompute_on_a_standalone_cluster(
    cluster: str,
    packed: tuple[Path, Path],
    env: dict[str, str],
    base: Path,
    world: Path,
    model_uri: str,
) -> None:
    import contract
    from jobs import metrics as M
    from jobs.store import Store
    from scoring.batch import score_validated

    settings = Settings(home=Path(env["BOTFILTER_HOME"]), threads=1)
    validated = contract.load(world)
    expected = score_validated(validated, settings, model_uri).set_index("event_id").sort_index()

    as_of = (validated.events["occurred_at"].max() + pd.Timedelta(seconds=1)).isoformat()
    local_env = {**env, "BOTFILTER_DATABASE_URL": f"sqlite:///{base}/local.db"}
    spark_env = {**env, "BOTFILTER_DATABASE_URL": f"sqlite:///{base}/spark.db"}
    recompute = ["recompute", "--data", str(world), "--as-of", as_of, "--model", model_uri]
    subprocess.run(
        [str(BIN / "botfilter"), *recompute, "--out", str(base / "local")],
        env=local_env,
        check=True,
        capture_output=True,
    )
    want = {t: pd.read_parquet(base / "local" / f"{t}.parquet") for t in M.PRODUCT_TABLES}
    # A fresh store, then a rerun on the same store that reuses the stored scores.
    for step, source in (("fresh", "scores: scored"), ("rerun", "scores: store ")):
        where = base / f"spark-{step}"
        args = [*recompute, "--out", str(where), "--engine", "spark"]
        text = _submit(cluster, packed, spark_env, base, args)
        assert source in text, text
        for table, frame in want.items():
            assert len(frame) > 0, table
            got_table = pd.read_parquet(where / f"{table}.parquet")
            pd.testing.assert_frame_equal(got_table, frame, obj=f"{step}: {table}")
        if step == "fresh":
            # The executors' scores, as the fresh run stored them: the local engine's.
            store = Store(spark_env["BOTFILTER_DATABASE_URL"])
            tenants = sorted(validated.events["tenant_id"].unique())
            (model_id,) = store.score_versions(tenants)
            got = store.load_scores(tenants, model_id, reasons=True)
            got = got.set_index("event_id").sort_index()
            assert got.index.equals(expected.index) and len(got) > 500, text
            diff = np.abs(got["bot_score"].to_numpy() - expected["bot_score"].to_numpy())
            assert diff.max() <= 1e-12
            assert (got["is_bot"] == expected["is_bot"]).all() and got["is_bot"].any()
            assert (got["bot_kind"] == expected["bot_kind"]).all()
            assert [list(r) for r in got["reasons"]] == [list(r) for r in expected["reasons"]]
