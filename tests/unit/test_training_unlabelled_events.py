"""Events without a label: `botfilter evaluate` leaves them out and says so (PRODUCT.md "Bad
input": a broken row is set aside, reported, and the run goes on); training refuses them with
one line naming how many and one of them (the probe: evaluate failed whole, saying "training",
naming no event)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from contract.validate import validate_tables
from core.errors import BotfilterError
from features.pipeline import Enrichers
from training.fit import LeftOut, prepare


@pytest.fixture(scope="module")
def enrichers() -> Enrichers:
    return Enrichers.load()


def tiny(labels: list[str | None]) -> dict[str, pd.DataFrame]:
    """One delivered email of tenant t1 and one open per label (e1, e2, ...)."""
    messages = pd.DataFrame(
        [
            {
                "message_id": "m1",
                "tenant_id": "t1",
                "channel": "email",
                "campaign_id": "c1",
                "contact_id": "k1",
                "recipient_domain": "example.com",
                "sent_at": "2025-01-01T00:00:00Z",
                "delivered_at": "2025-01-01T00:00:01Z",
                "link_count": 1,
            }
        ]
    )
    events = pd.DataFrame(
        [
            {
                "event_id": f"e{i + 1}",
                "tenant_id": "t1",
                "message_id": "m1",
                "type": "open",
                "occurred_at": f"2025-01-01T00:0{i + 1}:00Z",
                "ip": "192.0.2.1",
                "user_agent": "Mozilla/5.0",
                "label": label,
            }
            for i, label in enumerate(labels)
        ]
    )
    return {"messages": messages, "events": events}


def test_evaluation_leaves_out_events_without_a_label(enrichers: Enrichers) -> None:
    validated = validate_tables(tiny(["bot", None, "human", None]))
    prep = prepare(validated, enrichers, unlabelled="leave out")
    assert prep.ctx["event_id"].tolist() == ["e1", "e3"]
    assert prep.y.tolist() == [True, False]
    assert len(prep.features) == 2
    assert prep.left_out == LeftOut(2, "no label (bot/human)", "e2", "t1")
    assert prep.left_out.sentence("evaluation") == (
        "left out of the evaluation: 2 events with no label (bot/human) "
        "(e.g. event_id 'e2' of tenant 't1')"
    )
    # the features of the labelled events are those of the whole data (e2 is e3's neighbour)
    whole = prepare(validate_tables(tiny(["bot", "human", "human", "bot"])), enrichers)
    np.testing.assert_array_equal(prep.features.to_numpy(), whole.features.iloc[[0, 2]].to_numpy())
    labelled = prepare(validate_tables(tiny(["bot", "human"])), enrichers, unlabelled="leave out")
    assert labelled.left_out is None


def test_evaluation_without_any_label_is_one_line(enrichers: Enrichers) -> None:
    with pytest.raises(BotfilterError) as err:
        prepare(validate_tables(tiny([None, None])), enrichers, unlabelled="leave out")
    assert str(err.value) == (
        "events: the evaluation needs labelled events (bot/human); none of 2 has a label "
        "(e.g. event_id 'e1'); --unlabelled estimates scanner recall without labels"
    )


def test_training_refuses_events_without_a_label_naming_one(enrichers: Enrichers) -> None:
    with pytest.raises(BotfilterError) as err:
        prepare(validate_tables(tiny(["bot", None, "human"])), enrichers)
    assert str(err.value) == (
        "events: training needs a label (bot/human) on every event; 1 lack one "
        "(e.g. event_id 'e2'); label them, or train on weak labels (--labels weak)"
    )


def test_evaluate_command_reports_the_events_it_left_out(
    world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import scoring.registry
    from botfilter.cli import app
    from simulation import simulate

    monkeypatch.setattr(scoring.registry, "load_model", lambda *_, **__: world["model"])
    for name in ("DATABASE_URL", "REDIS_URL", "DEBUG", "THREADS", "TRACKING_URI"):
        monkeypatch.delenv(f"BOTFILTER_{name}", raising=False)
    monkeypatch.setenv("BOTFILTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "250")
    data = Path(simulate(tmp_path / "w", tenants=1, days=2, seed=1).out)
    events = pd.read_parquet(data / "events.parquet")
    events["label"] = events["label"].astype(object)
    events.loc[3, "label"] = None
    events.to_parquet(data / "events.parquet")
    eid, tenant = events.loc[3, "event_id"], events.loc[3, "tenant_id"]
    out = tmp_path / "report.json"
    done = CliRunner().invoke(
        app, ["evaluate", "--data", str(data), "--model", "m", "--out", str(out)]
    )
    assert done.exit_code == 0, done.output
    assert (
        "left out of the evaluation: 1 event with no label (bot/human) "
        f"(e.g. event_id '{eid}' of tenant '{tenant}')"
    ) in done.output
    saved = json.loads(out.read_text())
    assert saved["left_out"] == {
        "events": 1,
        "reason": "no label (bot/human)",
        "example_event_id": eid,
        "example_tenant_id": tenant,
    }
    assert saved["events"] == len(events) - 1
