"""The training steps on tiny inputs: the typed evaluation report and its JSON, the gate's
numbers, the time split, and mixing a labelled world into the training data."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.evaluate import UA_LIST_FLAGS, evaluation_report, flat_metrics
from training.fit import Prepared, mix_in, mix_param, mix_worlds, split_rows
from training.gate import GateNumbers
from training.report import (
    CampaignError,
    ChannelTypeQuality,
    CountedRates,
    EvaluationReport,
    FamilyRate,
    PrecisionRecall,
    Quality,
    RateError,
    Rates,
)


def _report(with_family: bool = True) -> EvaluationReport:
    """Two campaigns of four delivered messages, one click each. Email (c1): two scanner
    clicks, a person the model flags, a person behind a mail proxy the UA list flags. SMS (c2):
    a link preview, three people (the UA list flags the last)."""
    ctx = pd.DataFrame(
        {
            "tenant_id": "t1",  # an event context always names its tenant
            "label": ["bot", "bot", "human", "human", "bot", "human", "human", "human"],
            "bot_kind": ["security_scanner"] * 2 + [None, None, "link_preview"] + [None] * 3,
            "channel": ["email"] * 4 + ["sms"] * 4,
            "type": "click",
            "campaign_id": ["c1"] * 4 + ["c2"] * 4,
            "message_id": [f"m{i}" for i in range(1, 9)],
            "delivered_at": pd.Timestamp("2026-10-01", tz="UTC"),
        }
    )
    if with_family:
        ctx["family"] = ["scanner", "scanner", "isolation", "person", "preview"] + ["person"] * 3
    features = pd.DataFrame(0, index=ctx.index, columns=list(UA_LIST_FLAGS))
    features.loc[3, "ua_mail_proxy"] = 1
    features.loc[7, "ua_link_preview"] = 1
    proba = np.array([0.9, 0.8, 0.7, 0.1, 0.95, 0.2, 0.3, 0.05])
    is_bot = np.array([1, 1, 1, 0, 1, 0, 0, 0], bool)
    return evaluation_report(ctx, features, proba, is_bot)


def test_report_fields_are_exact():
    r = _report()
    assert (r.events, r.bot_share, r.pr_auc) == (8, 3 / 8, 1.0)
    assert r.overall == Quality(PrecisionRecall(0.75, 1.0, 8, 3), PrecisionRecall(0.0, 0.0, 8, 3))
    assert r.human_fpr == Rates(model=0.2, ua_list=0.4)
    assert r.by_channel_type == {
        "email:click": ChannelTypeQuality(
            1.0, PrecisionRecall(2 / 3, 1.0, 4, 2), PrecisionRecall(0.0, 0.0, 4, 2)
        ),
        "sms:click": ChannelTypeQuality(
            1.0, PrecisionRecall(1.0, 1.0, 4, 1), PrecisionRecall(0.0, 0.0, 4, 1)
        ),
    }
    assert r.by_channel == {
        "email": Quality(PrecisionRecall(2 / 3, 1.0, 4, 2), PrecisionRecall(0.0, 0.0, 4, 2)),
        "sms": Quality(PrecisionRecall(1.0, 1.0, 4, 1), PrecisionRecall(0.0, 0.0, 4, 1)),
    }
    assert r.recall_by_bot_kind == {
        "link_preview": CountedRates(1.0, 0.0, 1),
        "security_scanner": CountedRates(1.0, 0.0, 2),
    }
    assert r.fpr_by_family == {"isolation": FamilyRate(1.0, 1), "person": FamilyRate(0.0, 4)}
    assert r.recall_by_family == {"preview": FamilyRate(1.0, 1), "scanner": FamilyRate(1.0, 2)}
    assert r.proxy_open_fpr == CountedRates(model=0.0, ua_list=1.0, n=1)
    # truth: c1 CTR 2/4, c2 3/4; the model drops a person's click in c1 only
    assert r.campaign_metric_error == CampaignError(
        campaigns=2,
        model=RateError(12.5, 25.0, 25.0, 25.0),
        no_filter=RateError(37.5, 50.0, 50.0, 50.0),
        ua_list=RateError(12.5, 25.0, 25.0, 25.0),
    )
    assert r.model_version is None


def test_gate_reads_its_numbers_from_the_report():
    assert GateNumbers.of(_report()) == GateNumbers(
        pr_auc=1.0, precision=0.75, recall=1.0, human_fpr=0.2, ctr_mae_pp=12.5
    )


@pytest.mark.parametrize("with_family", [True, False])
def test_report_json_round_trips(with_family):
    r = _report(with_family)
    doc = json.loads(json.dumps(r.to_dict()))
    assert EvaluationReport.from_dict(doc) == r
    assert list(doc) == [
        "events",
        "bot_share",
        "pr_auc",
        "overall",
        "human_fpr",
        "by_channel_type",
        "by_channel",
        "recall_by_bot_kind",
        *(["fpr_by_family", "recall_by_family"] if with_family else []),
        "proxy_open_fpr",
        "campaign_metric_error",
    ]
    assert doc["overall"] == {
        "model": {"precision": 0.75, "recall": 1.0, "n": 8, "bots": 3},
        "ua_list": {"precision": 0.0, "recall": 0.0, "n": 8, "bots": 3},
    }
    assert doc["by_channel_type"]["sms:click"]["pr_auc"] == 1.0


def test_report_names_its_model_last():
    doc = _report().with_version("botfilter/3").to_dict()
    assert list(doc)[-1] == "model_version" and doc["model_version"] == "botfilter/3"
    assert EvaluationReport.from_dict(doc).model_version == "botfilter/3"


def test_flat_metrics_name_every_number():
    flat = flat_metrics(_report(False).to_dict(), "test.")
    assert flat["test.by_channel_type.email_click.model.precision"] == 2 / 3
    assert flat["test.campaign_metric_error.no_filter.ctr_max_pp"] == 50.0
    assert flat["test.recall_by_bot_kind.link_preview.n"] == 1.0
    # top 3, overall 8, human_fpr 2, per channel x type 2 x 9, per channel 2 x 8, per kind
    # 2 x 3, proxy 3, campaigns 1 + 3 x 4
    assert len(flat) == 3 + 8 + 2 + 18 + 16 + 6 + 3 + 13


def _prepared(n: int, weight: np.ndarray | None = None, label: str = "bot") -> Prepared:
    ctx = pd.DataFrame(
        {
            "sent_at": pd.date_range("2026-10-01", periods=n, freq="min", tz="UTC"),
            "label": label,
        }
    )
    feats = pd.DataFrame({"f": np.arange(n, dtype=float)})
    return Prepared(ctx, feats, np.full(n, label == "bot"), weight)


def test_split_is_by_send_time_and_leaves_out_unweighted_rows():
    # 20 sends: quantiles 0.70 and 0.85 fall at the 14th and 17th send
    rows = split_rows(_prepared(20))
    assert rows.train.tolist() == list(range(14))
    assert rows.valid.tolist() == [14, 15, 16]
    assert rows.test.tolist() == [17, 18, 19]
    weight = np.ones(20)
    weight[[1, 15, 18]] = 0.0  # a weak label no function voted for
    rows = split_rows(_prepared(20, weight))
    assert rows.train.tolist() == [0, *range(2, 14)]
    assert rows.valid.tolist() == [14, 16]
    assert rows.test.tolist() == [17, 19]


def test_mix_in_adds_a_labelled_world_at_full_weight():
    weak = _prepared(3, np.array([0.5, 0.0, 1.0]))
    weak.label_info = {"labels": "weak"}
    world = _prepared(2, label="human")
    mixed = mix_in(weak, world, Path("/data/world"))
    assert mixed.weight.tolist() == [0.5, 0.0, 1.0, 1.0, 1.0]
    assert mixed.y.tolist() == [True, True, True, False, False]
    assert mixed.ctx["label"].tolist() == ["bot"] * 3 + ["human"] * 2
    assert mixed.features["f"].tolist() == [0.0, 1.0, 2.0, 0.0, 1.0]
    assert mixed.label_info == {"labels": "weak", "mix": ["/data/world"], "mix_events": 2}
    # the data's own labels, mixed: recorded as such
    plain = mix_in(_prepared(1), world, Path("/data/world"))
    assert plain.label_info == {"mix": ["/data/world"], "mix_events": 2, "labels": "data"}
    assert plain.weight.tolist() == [1.0, 1.0, 1.0]
    # a second world: both recorded, in order
    twice = mix_in(plain, world, Path("/data/other"))
    assert twice.label_info["mix"] == ["/data/world", "/data/other"]
    assert twice.label_info["mix_events"] == 4 and len(twice.y) == 5


def test_mixed_worlds_keep_their_campaigns_apart():
    """Two simulated worlds both have tenant t001 with campaign c1: mixed, they are two
    campaigns of two tenants, each with its own CTR (merged, both read 50%)."""
    from training.evaluate import campaign_rates

    def world(clicked: bool) -> Prepared:
        ctx = pd.DataFrame(
            {
                "tenant_id": "t001",
                "campaign_id": "c1",
                "message_id": ["m1", "m2"],
                "channel": "email",
                "type": ["click" if clicked else "open", "open"],
                "delivered_at": pd.Timestamp("2026-10-01", tz="UTC"),
                "sent_at": pd.Timestamp("2026-10-01", tz="UTC"),
                "label": "human",
            }
        )
        return Prepared(ctx, pd.DataFrame({"f": [0.0, 1.0]}), np.zeros(2, bool))

    data = world(clicked=True)
    mixed = mix_in(data, world(clicked=False), Path("/data/world"))
    rates = campaign_rates(mixed.ctx, np.ones(4, bool))
    assert rates["ctr"].to_dict() == {("t001", "c1"): 0.5, ("mix1:t001", "c1"): 0.0}
    again = mix_in(mixed, world(clicked=False), Path("/data/other"))
    assert set(again.ctx["tenant_id"]) == {"t001", "mix1:t001", "mix2:t001"}


def test_the_mixed_worlds_parameter_reads_back_old_and_new_runs():
    assert mix_param([]) == "" and mix_worlds("") == []
    assert mix_param(["/a b/w"]) == "/a b/w"  # one world: its path, as older runs logged it
    assert mix_worlds("/a b/w") == [Path("/a b/w")]
    assert mix_worlds(mix_param(["/a, b", "/c"])) == [Path("/a, b"), Path("/c")]


def test_a_split_with_one_class_is_one_line(tmp_path):
    """The calibration and thresholds are fitted on the validation split: an all-human one
    (bots only early in the data) was an internal error of the calibration's solver."""
    from core.errors import BotfilterError
    from core.settings import Settings
    from training.fit import fit_model

    prep = _prepared(20)
    prep.y[:14:2] = False  # the train split has both classes; validation (14-16) bots only
    with pytest.raises(BotfilterError, match="the validation split .* holds only bots"):
        fit_model(prep, Settings(home=tmp_path))
    prep.y[14:] = False
    with pytest.raises(BotfilterError, match="the validation split .* holds only people"):
        fit_model(prep, Settings(home=tmp_path))
