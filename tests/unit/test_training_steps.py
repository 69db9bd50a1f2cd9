"""The training steps on tiny inputs: the typed evaluation report and its JSON, the gate's
numbers, the time split, and mixing a labelled world into the training data."""

import io
import json
import math
from pathlib import Path
from types import SimpleNamespace

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


def _report(with_family: bool = True, proxy: bool = True) -> EvaluationReport:
    """Two campaigns of four delivered messages, one click each. Email (c1): two scanner
    clicks, a person the model flags, a person behind a mail proxy the UA list flags (without
    ``proxy``, no proxy: its FPR is a rate of nothing, NaN). SMS (c2): a link preview, three
    people (the UA list flags the last)."""
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
    features.loc[3, "ua_mail_proxy"] = int(proxy)
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


def test_weight_0_rows_are_tested_when_the_datas_own_labels_judge():
    """Weak labels train, the data's labels judge: a row no function voted on neither trains
    nor sets a cut, but counts in the test (it was left out: the rows a weak-label model is
    likeliest wrong on were never judged, for the candidate or the champion)."""
    weight = np.ones(20)
    weight[[1, 15, 18]] = 0.0
    prep = _prepared(20, weight)
    prep.label_info = {"labels": "weak", "judged_on": "data labels"}
    rows = split_rows(prep)
    assert rows.train.tolist() == [0, *range(2, 14)]
    assert rows.valid.tolist() == [14, 16]
    assert rows.test.tolist() == [17, 18, 19]
    prep.label_info = {"labels": "weak", "judged_on": "weak labels"}
    assert split_rows(prep).test.tolist() == [17, 19]


def test_mix_in_adds_a_labelled_world_at_full_weight():
    weak = _prepared(3, np.array([0.5, 0.0, 1.0]))
    weak.label_info = {"labels": "weak"}
    world = _prepared(2, label="human")
    mixed = mix_in(weak, world, Path("/data/world"))
    assert mixed.weight.tolist() == [0.5, 0.0, 1.0, 1.0, 1.0]
    assert mixed.y.tolist() == [True, True, True, False, False]
    assert mixed.ctx["label"].tolist() == ["bot"] * 3 + ["human"] * 2
    assert mixed.features["f"].tolist() == [0.0, 1.0, 2.0, 0.0, 1.0]
    assert mixed.label_info == {
        "labels": "weak",
        "mix": ["/data/world"],
        "mix_events": 2,
        "judged_on": "weak labels",
    }
    # the data's own labels, mixed: recorded as such
    plain = mix_in(_prepared(1), world, Path("/data/world"))
    assert plain.label_info == {
        "mix": ["/data/world"],
        "mix_events": 2,
        "labels": "data",
        "judged_on": "data labels",
    }
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


def test_campaigns_without_a_labelled_event_are_not_rated():
    """`train --labels FILE` with a file of tenant t1 only: t2's campaign has delivered messages
    but no labelled event; counted, it read 0 against a truth of 0 and halved the mean CTR and
    open-rate error the gate judges (12.5 pp read 6.25)."""
    r = _report(with_family=False)
    ctx = pd.DataFrame(
        {
            "tenant_id": "t1",
            "label": ["bot", "human", "human"],
            "channel": "email",
            "type": "click",
            "campaign_id": "c1",
            "message_id": ["m1", "m2", "m3"],
            "delivered_at": pd.Timestamp("2026-10-01", tz="UTC"),
        }
    )
    delivered = pd.DataFrame(
        {
            "tenant_id": ["t1"] * 4 + ["t2"] * 4,
            "campaign_id": "c1",
            "message_id": [f"m{i}" for i in range(1, 9)],
            "channel": "email",
            "sent_at": pd.Timestamp("2026-10-01", tz="UTC"),
        }
    )
    features = pd.DataFrame(0, index=ctx.index, columns=list(UA_LIST_FLAGS))
    is_bot = np.array([True, True, False])  # one person's click of t1's 4 messages lost
    r = evaluation_report(ctx, features, np.where(is_bot, 0.9, 0.1), is_bot, delivered)
    assert r.campaign_metric_error == CampaignError(
        campaigns=1,
        model=RateError(25.0, 25.0, 25.0, 25.0),
        no_filter=RateError(25.0, 25.0, 25.0, 25.0),
        ua_list=RateError(25.0, 25.0, 25.0, 25.0),  # it flags nothing here
    )


def _two_worlds() -> Prepared:
    """The data (10 sends on 1 October) and a world mixed in, sent later (10 sends on the 5th)."""

    def world(day: str, tenant: str) -> Prepared:
        sent = pd.date_range(day, periods=10, freq="h", tz="UTC")
        ctx = pd.DataFrame(
            {
                "tenant_id": tenant,
                "campaign_id": "c1",
                "message_id": [f"m{i}" for i in range(10)],
                "channel": "email",
                "type": "click",
                "sent_at": sent,
                "delivered_at": sent,
                "label": "human",
            }
        )
        messages = ctx[["tenant_id", "campaign_id", "message_id", "channel", "sent_at"]]
        return Prepared(
            ctx, pd.DataFrame({"f": np.arange(10.0)}), np.zeros(10, bool), None, {}, messages
        )

    return mix_in(world("2026-10-01", "t1"), world("2026-10-05", "t1"), Path("/data/world"))


def test_each_world_is_split_by_its_own_time():
    """Split together, the later world took the whole test split and the data's own rows were
    never tested (the test split was rows 17-19: all of the world mixed in)."""
    rows = split_rows(_two_worlds())
    # 10 sends each: quantiles 0.70 and 0.85 fall after the 7th and the 8th send of each world
    assert rows.train.tolist() == [*range(7), *range(10, 17)]
    assert rows.valid.tolist() == [7, 17]
    assert rows.test.tolist() == [8, 9, 18, 19]


def test_a_split_of_mixed_worlds_divides_by_each_worlds_own_messages():
    from training.evaluate import _delivered_for

    prep = _two_worlds()
    test = split_rows(prep).test
    got = _delivered_for(prep, prep.ctx.iloc[test])
    assert got["tenant_id"].tolist() == ["t1", "t1", "mix1:t1", "mix1:t1"]
    assert got["message_id"].tolist() == ["m8", "m9", "m8", "m9"]


def test_the_test_split_names_its_worlds():
    from training.fit import rows_per_world
    from training.report import WorldRows

    prep = _two_worlds()
    worlds = rows_per_world(prep, split_rows(prep).test, Path("/data/mine"))
    assert worlds == [WorldRows("/data/mine", 2), WorldRows("/data/world", 2)]
    r = _report(with_family=False).with_worlds(worlds)
    doc = json.loads(json.dumps(r.to_dict()))
    assert doc["test_worlds"] == [
        {"world": "/data/mine", "events": 2},
        {"world": "/data/world", "events": 2},
    ]
    assert list(doc)[-1] == "test_worlds"
    assert EvaluationReport.from_dict(doc) == r
    assert not any(k.startswith("test_worlds") for k in flat_metrics(doc))  # paths: no metric


def test_the_test_rows_fingerprint_sees_a_changed_label():
    """`botfilter promote` rebuilt a candidate's test rows and checked only their count: 600
    labels flipped (same rows) and the champion was judged on other data than the candidate."""
    from training.evaluate import rows_fingerprint

    prep = _two_worlds()
    test = split_rows(prep).test
    same = rows_fingerprint(_two_worlds(), test)
    assert rows_fingerprint(prep, test) == same and len(same) == 64
    flipped = _two_worlds()
    flipped.ctx.loc[9, "label"] = "bot"
    flipped.y[9] = True
    assert rows_fingerprint(flipped, test) != same
    earlier = _two_worlds()
    earlier.features.loc[19, "f"] = -1.0  # what the models read of a row changed
    assert rows_fingerprint(earlier, test) != same
    moved = _two_worlds()
    assert moved.messages is not None
    moved.messages.loc[9, "campaign_id"] = "c2"  # the campaign rates' denominator changed
    assert rows_fingerprint(moved, test) != same
    assert rows_fingerprint(prep, split_rows(prep).train) != same


def _strict(text: str) -> dict:
    """``text`` parsed as strict JSON: NaN and Infinity refused, as JavaScript's JSON.parse
    refuses them."""

    def refuse(word: str) -> None:
        raise ValueError(f"not JSON: {word}")

    return json.loads(text, parse_constant=refuse)


def test_a_report_with_nan_is_strict_json_and_reads_back():
    """`evaluate --data <SMS-only world>` wrote "model": NaN (no proxy open), as did MLflow's
    evaluation.json: a rate of nothing is null, and reads back as NaN."""
    r = _report(with_family=False, proxy=False)
    assert math.isnan(r.proxy_open_fpr.model)
    doc = _strict(json.dumps(r.to_dict()))
    assert doc["proxy_open_fpr"] == {"model": None, "ua_list": None, "n": 0}
    # the UA list flags no email now: its precision there is NaN too
    assert doc["by_channel"]["email"]["ua_list"] == {
        "precision": None,
        "recall": 0.0,
        "n": 4,
        "bots": 2,
    }
    back = EvaluationReport.from_dict(doc)
    assert math.isnan(back.proxy_open_fpr.model) and math.isnan(back.proxy_open_fpr.ua_list)
    assert math.isnan(back.by_channel["email"].ua_list.precision)
    assert back.campaign_metric_error == r.campaign_metric_error
    assert _strict(json.dumps(back.to_dict())) == doc


def test_the_kind_confusion_is_strict_json(monkeypatch):
    """`botfilter evaluate` saves it beside the report, and training logs it to MLflow: a kind
    the model gave but the data never hold has no recall, one never given no precision."""
    from rich.console import Console

    from training import kind

    ctx = pd.DataFrame({"bot_kind": ["crawler", None], "channel": "sms", "type": "click"})
    prep = Prepared(ctx, pd.DataFrame({"f": [0.0, 1.0]}), np.array([True, False]))
    given = np.array(["", "security_scanner"], dtype=object)
    monkeypatch.setattr(kind, "predicted_kinds", lambda *_: given)
    model = SimpleNamespace(kind=None)
    report = kind.evaluate_kind(model, prep, np.arange(2))
    assert report is not None
    doc = _strict(json.dumps(report))
    assert doc["per_kind"]["security_scanner"]["recall"] is None
    assert doc["per_kind"]["crawler"]["precision"] is None
    assert kind.kind_metrics(doc, "k.") == {  # the numbers that are numbers
        "k.security_scanner.precision": 0.0,
        "k.crawler.recall": 0.0,
        "k.person.recall": 0.0,
        "k.person.precision": 0.0,
    }
    out = io.StringIO()
    kind.print_kind_report(doc, Console(file=out, width=120))
    assert "│ security_scanner │                0 │       0 │      0 │      - │" in out.getvalue()


def test_the_suite_file_is_strict_json(tmp_path: Path):
    from rich.console import Console

    from training.suite import SuiteResult, report_suite

    out = tmp_path / "suite.json"
    results = [SuiteResult("shifted", 2, "", _report(proxy=False), ())]
    report_suite(results, Console(file=io.StringIO()), out)
    doc = _strict(out.read_text())
    assert doc["worlds"][0]["report"]["proxy_open_fpr"] == {"model": None, "ua_list": None, "n": 0}


def test_training_logs_strict_json(monkeypatch):
    """What the run logs beside the report (thresholds, labels, the reference profile...)."""
    from training import tracking

    logged: dict[str, str] = {}
    monkeypatch.setattr(
        tracking.mlflow, "log_dict", lambda doc, name: logged.update({name: json.dumps(doc)})
    )
    tracking._log_json({"share": float("nan"), "n": np.int64(3), "x": [np.float32("inf")]}, "p")
    assert _strict(logged["p"]) == {"share": None, "n": 3, "x": [None]}
