"""Shared fixtures. Stage-specific fixtures live next to their tests."""

from __future__ import annotations

import contextlib
import functools
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from core.settings import Settings
from jobs.metrics import Partitions
from jobs.worker import CycleResult
from tests import frames, streams, worlds

# The longest modules, longest first. `make test` runs the suite on two processes, a module at a
# time (pytest-xdist's loadfile, in collection order: Makefile). Run last, the Spark modules
# alone decided when the suite ended (the cluster test started after 24 minutes of 25).
LONGEST_FIRST = (
    "test_spark_equivalence.py",
    "test_spark_cluster.py",
    "test_api_server.py",
    "test_reliability.py",
    "test_monitor_and_weak_training.py",
    "test_scoring_stream.py",
    "test_demo.py",
    "test_notebook.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run :data:`LONGEST_FIRST` first; the others keep their order (a stable sort)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


# The MLflow variables as the session found them (set by the user, or not at all).
_MLFLOW_ENV = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}


@pytest.fixture(autouse=True)
def _mlflow_env_as_found() -> None:
    """mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI to the environment, which Settings
    reads: a test (or a module fixture) that configured MLflow must not point later tests at
    its registry (the worker test found another module's champion that way)."""
    _put_back(_MLFLOW_ENV)


def _put_back(values: dict[str, str | None]) -> None:
    """Set these environment variables as given (None: unset)."""
    for key, value in values.items():
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


@contextlib.contextmanager
def _fresh_schema(base: str) -> Iterator[str]:
    """A URL of ``base`` whose search_path is a new schema, dropped afterwards."""
    schema = f"bf_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture(scope="session")
def pg_schema(pg_url: str) -> Callable[[], contextlib.AbstractContextManager[str]]:
    """Opens a PostgreSQL URL on a fresh schema (dropped on exit), for tests of any scope."""
    return functools.partial(_fresh_schema, pg_url)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """Redis URL for integration tests (CI starts the server)."""
    return os.environ.get("BOTFILTER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


# --- shared builders, handed out as fixtures so that no test module imports another -----------


@pytest.fixture(scope="session")
def messages() -> Callable[[list[tuple]], pd.DataFrame]:
    """Builds a messages frame from (id, tenant, channel, campaign, automation, contact, domain,
    sent, delivered) rows."""
    return frames.messages


@pytest.fixture(scope="session")
def events() -> Callable[[list[tuple]], pd.DataFrame]:
    """Builds an events frame from (event_id, message_id, type, occurred_at[, tenant]) rows."""
    return frames.events


@pytest.fixture(scope="session")
def scores() -> Callable[..., pd.DataFrame]:
    """Builds a scores table from {event_id: is_bot} (and optional reasons)."""
    return frames.scores


@pytest.fixture(scope="session")
def tenant_scores() -> Callable[[], pd.DataFrame]:
    """Builds scores of event e1 in two tenants (a bot in t1, a person in t2)."""
    return frames.tenant_scores


@pytest.fixture(scope="session")
def computed_partitions() -> Callable[..., Partitions]:
    """Builds one tenant's partitions of two emails and an SMS."""
    return frames.computed


@pytest.fixture(scope="session")
def write_partitions() -> Callable[..., int]:
    """Stores one tenant's computed partitions (only the given channels)."""
    return frames.write


@pytest.fixture(scope="session")
def final_answers() -> Callable[..., set[tuple[str, str]]]:
    """The (tenant_id, event_id) a stream of API requests (in time order) answers finally."""
    return streams.final_answers


@pytest.fixture(scope="session")
def pending_events() -> Callable[[pd.DataFrame], set[tuple[str, str]]]:
    """The (tenant_id, event_id) of events a batch scoring of them answers provisionally."""
    return streams.pending_events


@pytest.fixture(scope="session")
def request_chunks() -> Callable[..., list]:
    """Items as requests of a given size."""
    return streams.chunks


@pytest.fixture(scope="session")
def random_world() -> Callable[..., dict[str, pd.DataFrame]]:
    """Builds a random labelled world full of edge cases (seed, as_of, n)."""
    return worlds.random_world


@pytest.fixture(scope="session")
def label_scores() -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Builds a scores table straight from the events' labels."""
    return worlds.label_scores


@pytest.fixture(scope="session")
def label_scorer() -> Callable[..., pd.DataFrame]:
    """A recompute scorer that scores events from their labels (model_version ``labels``)."""
    return worlds.LabelScorer()


@pytest.fixture(scope="session")
def console_env() -> Callable[..., contextlib.AbstractContextManager[dict]]:
    """Opens the console's tiny store, tokens and app (a context manager over a root dir)."""
    return worlds.console_env


@pytest.fixture(scope="session")
def console_cycle() -> Callable[..., CycleResult]:
    """Runs one worker cycle on the console's tiny store at its clock."""
    return worlds.cycle


@pytest.fixture(scope="session")
def console_now() -> pd.Timestamp:
    """The console world's clock (its worker cycles run at this hour)."""
    return worlds.NOW


@pytest.fixture(scope="session")
def register_model() -> Callable[[Settings, int, Path], None]:
    """Registers a small LightGBM model (different per seed) as the champion of a settings'
    registry, as ``botfilter train`` logs it. Use with ``mlflow_restored``."""
    from tests import models  # MLflow and LightGBM, for the tests that ask only

    return models.register_model


@pytest.fixture(scope="module")
def mlflow_restored() -> Iterator[None]:
    """mlflow.set_tracking_uri also sets MLFLOW_TRACKING_URI in the environment, and MLflow
    keeps the URIs in the process: put back what was there after the module, so later tests do
    not find its registries' champions."""
    import mlflow

    saved = {k: os.environ.get(k) for k in _MLFLOW_ENV}
    yield
    mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"])
    mlflow.set_registry_uri(saved["MLFLOW_REGISTRY_URI"])
    _put_back(saved)


@pytest.fixture
def parts_world(tmp_path: Path) -> Callable[[pd.Timestamp], Path]:
    """Builds a Parquet data directory of three tenants (about 1,000 events each: three parts
    of 900) with a settings table, a broken event and a repeated one (see
    ``worlds.parts_world``)."""
    return functools.partial(worlds.parts_world, tmp_path / "data")
