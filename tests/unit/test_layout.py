"""The package graph: imports run down the house, never up.

``core`` is the ground (it imports nothing of ours); ``botfilter`` is the front door (nothing imports
it). Between them every stage may import only stages listed before it in :data:`LAYERS`. Imports
inside function bodies count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Lowest first. A stage imports only stages to its left.
LAYERS = [
    "core",
    "contract",
    "features",
    "simulation",
    "scoring",
    "monitoring",
    "labelling",
    "training",
    "jobs",
    "serving",
    "console",
    "botfilter",
]


def imported_packages(package: str) -> dict[str, set[str]]:
    """Our packages that ``package`` imports, each with the files that import it."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in LAYERS and top != package:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_package_of_ours_has_a_layer() -> None:
    packages = {
        p.name
        for p in ROOT.iterdir()
        if (p / "__init__.py").is_file() and p.name not in {"tests", "bench"}
    }
    assert packages == set(LAYERS)


def test_the_venv_compiles_every_package_of_ours() -> None:
    # `make venv` compiles them (an editable install has no bytecode): one left out is compiled
    # again by every command where .pyc files are not written.
    line = next(
        line
        for line in (ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
        if line.startswith("PACKAGES :=")
    )
    assert set(line.split(":=")[1].split()) == set(LAYERS)


def test_the_ground_package_imports_nothing_of_ours() -> None:
    assert imported_packages("core") == {}


@pytest.mark.parametrize("package", LAYERS[:-1])
def test_no_stage_imports_the_front_door(package: str) -> None:
    assert "botfilter" not in imported_packages(package)


@pytest.mark.parametrize("package", LAYERS)
def test_imports_run_down_the_layers_only(package: str) -> None:
    allowed = set(LAYERS[: LAYERS.index(package)])
    upward = {
        name: sorted(files)
        for name, files in imported_packages(package).items()
        if name not in allowed
    }
    assert upward == {}
