"""``botfilter label`` end to end on a small simulated world (its hidden labels only judge)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from labelling.functions import LF_NAMES
from simulation import simulate

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("label") / "data"
    simulate(out, tenants=2, days=4, seed=5)
    return out


def test_label_writes_votes_probabilities_and_report(cli, data, tmp_path):
    out = tmp_path / "weak.parquet"
    proc = cli(["label", "--data", str(data), "--out", str(out)], tmp_path / "home")
    assert proc.returncode == 0, proc.stderr
    table = pd.read_parquet(out)
    events = pd.read_parquet(data / "events.parquet")
    assert list(table.columns[:3]) == ["event_id", "tenant_id", "label_bot_probability"]
    assert [c for c in table.columns[3:]] == [f"lf_{n}" for n in LF_NAMES]
    assert len(table) == len(events)
    assert table["label_bot_probability"].between(0, 1).all()
    assert set(np.unique(table[[f"lf_{n}" for n in LF_NAMES]].to_numpy())) <= {-1, 0, 1}
    # The weak labels agree with the simulator's hidden ones on nearly every event.
    truth = table.merge(events[["tenant_id", "event_id", "label"]], on=["tenant_id", "event_id"])
    agree = ((truth["label_bot_probability"] >= 0.5) == (truth["label"] == "bot")).mean()
    assert agree > 0.97
    report = json.loads((tmp_path / "weak.report.json").read_text())
    assert [r["name"] for r in report["functions"]] == list(LF_NAMES)
    for row in report["functions"]:
        assert {"coverage", "overlaps", "conflicts", "estimated_accuracy"} <= set(row)
    for row in report["functions"]:
        if row["events"] == 0:
            assert row["estimated_accuracy"] is None
        elif row["events"] >= 100:
            # Estimated from agreement alone, it lands near the truth.
            assert abs(row["estimated_accuracy"] - row["true_accuracy"]) < 0.1, row
    assert sum(r["events"] >= 100 for r in report["functions"]) >= 8
    assert "labelling functions" in proc.stdout


def test_label_rejects_a_bad_extension_in_one_line(cli, data, tmp_path):
    proc = cli(["label", "--data", str(data), "--out", str(tmp_path / "w.txt")], tmp_path / "h")
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == f"botfilter: error: {tmp_path / 'w.txt'}: the labels file must end in .parquet or .csv"
    )
