"""Fixtures of the integration tests: the metrics store on each back end, the installed CLI."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from jobs.store import Store


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL: a SQLite file in tmp_path, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'metrics.db'}"
        return
    with request.getfixturevalue("pg_schema")() as url:
        yield url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    yield s
    s.close()


def _run_cli(args: list[str], home: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("botfilter")
    env = {"BOTFILTER_HOME": str(home), "PATH": "/usr/bin:/bin"}
    return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def cli() -> Callable[[list[str], Path], subprocess.CompletedProcess]:
    """Runs the installed ``botfilter`` with a private home and a bare environment."""
    return _run_cli
