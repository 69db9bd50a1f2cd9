"""`botfilter demo` runs the whole story to the end on a tiny world."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    env = {"BOTFILTER_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin", "COLUMNS": "160"}
    exe = Path(sys.executable).with_name("botfilter")
    proc = subprocess.run(
        [str(exe), "demo", "--tenants", "1", "--days", "5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "demo complete" in out
    assert "gate: promoted" in out
    assert "after (bots excluded)" in out
    assert (tmp_path / "home" / "demo" / "scores.parquet").exists()
    assert (tmp_path / "home" / "mlflow.db").exists() and (
        tmp_path / "home" / "metrics.db"
    ).exists()
