"""The test suite's own rule: no test module imports another module of tests/; shared builders
are fixtures, and the plain helper modules behind them are imported by conftest.py files only."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def imports_of_tests(path: Path) -> list[str]:
    """The modules of the ``tests`` package that ``path`` imports (anywhere in it)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level:
            found.append("." * node.level + (node.module or ""))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "tests":
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "tests"]
    return found


def test_only_conftest_imports_from_tests() -> None:
    offenders = {
        str(path.relative_to(TESTS)): found
        for path in sorted(TESTS.rglob("*.py"))
        if path.name != "conftest.py" and (found := imports_of_tests(path))
    }
    assert offenders == {}


def test_the_check_sees_an_import_of_a_test_module(tmp_path: Path) -> None:
    module = tmp_path / "test_x.py"
    module.write_text(
        "def f():\n    from tests.unit.test_metrics import events\n"
        "import tests.worlds\nfrom . import test_y\n"
    )
    assert sorted(imports_of_tests(module)) == [".", "tests.unit.test_metrics", "tests.worlds"]
