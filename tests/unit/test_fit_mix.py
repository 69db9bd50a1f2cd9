"""`botfilter train --mix DIR`: each world mixed in is read once, named when it is wrong, and
what it quarantined is said as the data's is (PRODUCT.md: bad input is never dropped silently)."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from contract.counts import Report, TableReport
from core.errors import BotfilterError
from training import fit
from training.fit import Prepared, load_prepared


def _report(source: str, quarantined: dict[str, int]) -> Report:
    q = sum(quarantined.values())
    return Report({"events": TableReport("events", source, 5 + q, 5, 0, quarantined)})


def _world(tenant: str, n: int, report: Report | None) -> Prepared:
    ctx = pd.DataFrame(
        {
            "tenant_id": tenant,
            "sent_at": pd.date_range("2026-10-01", periods=n, freq="h", tz="UTC"),
            "label": "human",
        }
    )
    return Prepared(ctx, pd.DataFrame({"f": np.zeros(n)}), np.zeros(n, bool), report=report)


@pytest.fixture
def loaded(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """Data directories by name, as ``load`` returns them: a Prepared passes through
    ``prepare`` as it is, anything else goes to the real ``prepare``."""
    tables: dict[str, object] = {}
    real = fit.prepare

    def prepare(validated: object, labels: object = None) -> Prepared:
        return validated if isinstance(validated, Prepared) else real(validated, labels=labels)

    monkeypatch.setattr(fit, "load", lambda path: tables[Path(path).name])
    monkeypatch.setattr(fit, "prepare", prepare)
    return tables


def test_a_mixed_worlds_quarantine_is_said(loaded, tmp_path):
    """Its quarantined rows were never reported: "No rows quarantined", and "prepared 24,167
    events of w1" for the data's and the world's events together."""
    from training.train import print_prepared

    loaded["w1"] = _world("t1", 3, _report("w1/events.parquet", {}))
    loaded["w2"] = _world("t1", 2, _report("w2/events.parquet", {"unknown message": 4}))
    prep = load_prepared(tmp_path / "w1", mix=[tmp_path / "w2"])
    assert [(w.path, w.events) for w in prep.mixed] == [(str(tmp_path / "w2"), 2)]
    out = io.StringIO()
    print_prepared(prep, tmp_path / "w1", Console(file=out, width=200))
    text = out.getvalue()
    assert text.count("No rows quarantined.") == 1  # the data's; the world's are listed:
    assert f"mixed in {tmp_path / 'w2'}:" in text
    assert "│ events │ unknown message │    4 │" in text
    assert f"prepared 3 events of {tmp_path / 'w1'}, 2 mixed in from {tmp_path / 'w2'}" in text


@pytest.mark.parametrize(
    ("data", "mix", "error"),
    [
        ("w1", ["w2", "w2"], "--mix w2: the same directory as --mix w2; give each world once"),
        ("w1", ["w1"], "--mix w1: the same directory as --data w1; give each world once"),
        ("w1", ["w2", "./w2/"], "--mix w2: the same directory as --mix w2; give each world once"),
    ],
)
def test_a_directory_given_twice_is_refused(loaded, tmp_path, monkeypatch, data, mix, error):
    """Its events trained and were tested twice (compared as resolved paths)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "w2").mkdir()
    with pytest.raises(BotfilterError) as err:
        load_prepared(Path(data), mix=[Path(m) for m in mix])
    assert str(err.value) == error
    assert loaded == {}  # refused before any world is read


def test_a_mixed_world_without_labels_is_named(loaded, tmp_path):
    loaded["w1"] = _world("t1", 3, None)
    sent = pd.Timestamp("2026-10-01", tz="UTC")
    loaded["w2"] = SimpleNamespace(
        messages=pd.DataFrame(
            {
                "tenant_id": ["t1"],
                "campaign_id": ["c1"],
                "message_id": ["m1"],
                "channel": ["email"],
                "sent_at": [sent],
                "delivered_at": [sent],
            }
        ),
        events=pd.DataFrame({"event_id": ["e1", "e2"], "message_id": "m1", "label": None}),
        report=None,
    )
    with pytest.raises(BotfilterError) as err:
        load_prepared(tmp_path / "w1", mix=[tmp_path / "w2"])
    assert str(err.value) == (
        f"--mix {tmp_path / 'w2'}: events: training needs a label (bot/human) on every event; "
        "2 lack one (e.g. event_id 'e1'); label them, or train on weak labels (--labels weak)"
    )


@pytest.mark.parametrize(
    ("info", "lines"),
    [
        (  # a label file of one tenant, on labelled data
            {
                "labels": "/l/t1.parquet",
                "unlabelled_events_left_out": 2408,
                "events_without_a_vote": 0,
                "events_too_unsure": 0,
                "judged_on": "data labels",
            },
            [
                "left out 2,408 events of w1: --labels /l/t1.parquet does not label them "
                "(neither trained nor judged on)",
                "judged on the data's own labels: the weak labels only train the model and "
                "choose its cuts",
            ],
        ),
        (  # --labels weak on data without labels
            {
                "labels": "weak",
                "events_without_a_vote": 560,
                "events_too_unsure": 30,
                "judged_on": "weak labels",
            },
            [
                "590 events of weight 0, neither trained nor judged on: 560 no labelling "
                "function voted on, 30 too unsure (weak label confidence below 0.2)",
                "judged on the weak labels it is trained on (the data's events do not all carry "
                "a label): the gate will not move an existing champion on them",
            ],
        ),
        (  # --labels weak on labelled data
            {"labels": "weak", "events_without_a_vote": 590, "judged_on": "data labels"},
            [
                "590 events of weight 0, not trained on (judged on their own labels): 590 no "
                "labelling function voted on",
                "judged on the data's own labels: the weak labels only train the model and "
                "choose its cuts",
            ],
        ),
        ({}, []),  # the data's own labels: nothing more to say
    ],
)
def test_weak_labels_say_which_events_are_left_out_or_weightless(tmp_path, info, lines):
    """Only "prepared 3,027 events of w1" was printed: 2,408 events the label file does not
    cover, or 590 no labelling function voted on, were left out silently."""
    from training.train import print_prepared

    prep = _world("t1", 3, None)
    prep.label_info = info
    out = io.StringIO()
    print_prepared(prep, Path("w1"), Console(file=out, width=300))
    assert out.getvalue().splitlines() == ["prepared 3 events of w1", *lines]
