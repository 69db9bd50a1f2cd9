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
    _console_opens_on_the_demo_store(tmp_path / "home", out)


def _console_opens_on_the_demo_store(home: Path, out: str) -> None:
    """The demo's last words: the console command and a token that logs in to its tenant."""
    import re

    from fastapi.testclient import TestClient

    from console.app import create_app
    from core.settings import Settings

    assert f"BOTFILTER_HOME={home.resolve()} botfilter console\n" in out
    token = re.search(r"^(bf_\S+)$", out, re.M).group(1)
    tenant = re.search(r"log in with this token for tenant (\S+)", out).group(1)
    client = TestClient(create_app(Settings(home=home)))
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
    assert client.post("/login", data={"token": token, "csrf": csrf}).status_code == 200
    campaigns = client.get(f"/t/{tenant}/campaigns")
    assert campaigns.status_code == 200 and "without bots" in campaigns.text
    key = re.search(rf'href="/t/{tenant}/campaigns/([^"]+)"', campaigns.text).group(1)
    assert client.get(f"/t/{tenant}/campaigns/{key}").status_code == 200
