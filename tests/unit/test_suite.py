"""The stress suite's judgement and the evaluation report's per-family breakdown, on tiny frames."""

from dataclasses import replace

import numpy as np
import pandas as pd

from training.evaluate import UA_LIST_FLAGS, evaluation_report
from training.gate import SUITE
from training.report import EvaluationReport, FamilyRate, Quality
from training.suite import SUITE_WORLDS, suite_failures


def _report(is_bot: list[bool]) -> EvaluationReport:
    # Six email clicks: two scanner bots, four people (two behind isolation, two at home).
    ctx = pd.DataFrame(
        {
            "tenant_id": "t1",  # an event context always names its tenant
            "label": ["bot", "bot", "human", "human", "human", "human"],
            "bot_kind": ["security_scanner", "security_scanner", None, None, None, None],
            "family": ["scanner", "scanner", "isolation", "isolation", "person", "person"],
            "channel": "email",
            "type": "click",
            "campaign_id": "c1",
            "message_id": ["m1", "m2", "m3", "m4", "m5", "m6"],
            "delivered_at": pd.Timestamp("2026-10-01", tz="UTC"),
        }
    )
    features = pd.DataFrame(0, index=ctx.index, columns=list(UA_LIST_FLAGS))
    proba = np.where(is_bot, 0.9, 0.1)
    return evaluation_report(ctx, features, proba, np.asarray(is_bot))


def test_report_has_fpr_per_family_of_people_and_recall_per_bot_family():
    r = _report([True, True, True, False, False, False])
    assert r.fpr_by_family == {
        "isolation": FamilyRate(model=0.5, n=2),
        "person": FamilyRate(model=0.0, n=2),
    }
    assert r.recall_by_family == {"scanner": FamilyRate(model=1.0, n=2)}


def test_suite_failures_name_each_missed_target():
    r = _report([True, True, True, False, False, False])
    # enough people to judge
    isolation = FamilyRate(model=0.5, n=SUITE.min_family_events)
    r = replace(r, fpr_by_family={**(r.fpr_by_family or {}), "isolation": isolation})
    fails = suite_failures(r)
    assert any(f.startswith("FPR isolation 50.00%") for f in fails)
    assert any(f.startswith("email precision 0.6667") for f in fails)
    assert not any("recall" in f for f in fails)
    assert any(f.startswith("CTR error") for f in fails)  # one of four people's clicks lost


def test_suite_passes_a_perfect_model_and_ignores_tiny_families():
    r = _report([True, True, False, False, False, False])
    assert suite_failures(r) == []
    r = _report([True, True, True, False, False, False])
    err = r.campaign_metric_error
    email = r.by_channel["email"]
    r = replace(
        r,
        campaign_metric_error=replace(err, model=replace(err.model, ctr_mae_pp=0.0)),
        by_channel={"email": Quality(replace(email.model, precision=1.0), email.ua_list)},
    )
    assert suite_failures(r) == []  # 2 isolated people are too few to judge a 2% rate


def test_suite_worlds_are_never_the_training_world():
    from simulation.config import PROFILES

    assert all(w.profile in PROFILES and w.profile != "default" for w in SUITE_WORLDS)
    assert len({w.seed for w in SUITE_WORLDS}) == len(SUITE_WORLDS)
    assert 1 not in {w.seed for w in SUITE_WORLDS}  # the README's training seed
    assert {w.profile for w in SUITE_WORLDS} >= {"stress_novel_scanner", "stress_isolation"}


def test_evaluate_needs_data_or_suite():
    from typer.testing import CliRunner

    from botfilter.cli import app

    res = CliRunner().invoke(app, ["evaluate"])
    assert res.exit_code != 0
    assert "give either --data DIR or --suite" in (res.output + str(res.exception))


def test_evaluate_help_names_the_suite():
    from typer.testing import CliRunner

    from botfilter.cli import app

    res = CliRunner().invoke(app, ["evaluate", "--help"])
    assert res.exit_code == 0 and "--suite" in res.output
