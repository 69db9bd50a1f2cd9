"""The data scientists' notebook runs top to bottom on small data, and is committed without outputs."""

from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "01-retrain-and-compare.ipynb"


def test_notebook_is_stripped():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                "strip outputs before commit"
            )


@pytest.mark.integration
@pytest.mark.slow
def test_notebook_executes(tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("BOTFILTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NB_TENANTS", "1")
    monkeypatch.setenv("NB_DAYS", "4")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    text = "\n".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )
    assert "promoted" in text or "rejected" in text
    assert "people flagged" in text
