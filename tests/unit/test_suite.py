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
    assert res.exit_code == 0 and "--suite" in res.output and "--seeds" in res.output
    assert "--validation" in res.output


def test_pooled_seeds_count_every_person_bot_and_campaign_once():
    from training.report import PrecisionRecall
    from training.suite import SuiteResult, pool

    a = _report([True, True, True, False, False, False])  # one isolated person flagged
    b = _report([True, False, False, False, False, False])  # one scanner missed
    results = [SuiteResult("w", s, "", r, ()) for s, r in ((5, a), (105, b))]
    judge_small = replace(SUITE, min_family_events=2)
    (p,) = pool(results, judge_small)
    assert p.seeds == (5, 105)
    assert p.fpr_by_family["isolation"] == FamilyRate(model=0.25, n=4)
    assert p.worst_fpr_by_family["isolation"] == 0.5
    assert p.by_channel["email"] == PrecisionRecall(precision=0.75, recall=0.75, n=12, bots=4)
    ea, eb = a.campaign_metric_error, b.campaign_metric_error
    assert p.ctr_mae_pp == (ea.model.ctr_mae_pp + eb.model.ctr_mae_pp) / 2  # one campaign each
    assert p.worst_ctr_mae_pp == max(ea.model.ctr_mae_pp, eb.model.ctr_mae_pp)
    assert "FPR isolation 25.00% > 2%" in p.failures
    assert "email precision 0.7500 < 0.99" in p.failures
    # with the suite's own rule, two people per seed are too few to judge, pooled four too
    assert not any(f.startswith("FPR") for f in pool(results)[0].failures)


def test_a_slice_that_flagged_only_people_makes_pooled_precision_unknown():
    from training.report import PrecisionRecall
    from training.suite import _pooled_pr

    ok = PrecisionRecall(precision=1.0, recall=1.0, n=4, bots=2)
    only_people = PrecisionRecall(precision=0.0, recall=float("nan"), n=3, bots=0)
    pooled = _pooled_pr([ok, only_people])
    assert np.isnan(pooled.precision) and pooled.recall == 1.0 and pooled.n == 7


def test_validation_worlds_never_share_a_seed_with_the_suite():
    suite = {s for w in SUITE_WORLDS for s in w.seeds(5)}
    validation = {s for w in SUITE_WORLDS for s in w.seeds(5, validation=True)}
    assert len(suite) == len(validation) == 5 * len(SUITE_WORLDS)
    assert not suite & validation and 1 not in suite | validation
    assert SUITE_WORLDS[0].seeds(1) == (SUITE_WORLDS[0].seed,)  # the first seed is the suite's
    ceiling = {w.ceiling_seed for w in SUITE_WORLDS}  # bench/quality_suite.py --ceiling trains here
    assert len(ceiling) == len(SUITE_WORLDS) and not ceiling & (suite | validation | {1})
    assert max(suite | validation) < min(ceiling)


def test_the_verdict_is_pooled_only_when_worlds_have_several_seeds():
    from training.suite import SuiteResult, pool, suite_missed

    good = _report([True, True, False, False, False, False])

    def seed(s: int, flagged: int) -> SuiteResult:
        r = replace(good, fpr_by_family={"isolation": FamilyRate(model=flagged / 30, n=30)})
        return SuiteResult("w", s, "", r, tuple(suite_failures(r)))

    one = [seed(5, 1)]  # one isolated person of 30 flagged: 3.33%
    assert one[0].failures == ("FPR isolation 3.33% > 2%",)
    assert suite_missed(one, pool(one))
    three = [*one, seed(105, 0), seed(205, 0)]  # 1 of 90 pooled: 1.11%
    assert pool(three)[0].fpr_by_family["isolation"] == FamilyRate(model=1 / 90, n=90)
    assert not suite_missed(three, pool(three))
    four = [*three, seed(305, 2)]  # 3 of 120: 2.5%
    assert suite_missed(four, pool(four))


def test_seeds_and_validation_go_with_the_suite(tmp_path):
    from typer.testing import CliRunner

    from botfilter.cli import app

    for extra in (["--seeds", "3"], ["--validation"], ["--cuts", "0.7"]):
        res = CliRunner().invoke(app, ["evaluate", "--data", str(tmp_path), *extra])
        assert res.exit_code != 0
        assert "--seeds, --validation and --cuts go with --suite" in (
            res.output + str(res.exception)
        )


def test_a_frontier_point_is_the_worst_pooled_world_and_counts_its_misses():
    from training.suite import SuiteResult, frontier_point

    good = _report([True, True, False, False, False, False])
    err = good.campaign_metric_error

    def world(name: str, seed: int, flagged: int, ctr: float) -> SuiteResult:
        r = replace(
            good,
            fpr_by_family={
                "isolation": FamilyRate(model=flagged / 40, n=40),
                "citrix": FamilyRate(model=1.0, n=2),  # too few people to judge
            },
            campaign_metric_error=replace(err, model=replace(err.model, ctr_mae_pp=ctr)),
        )
        return SuiteResult(name, seed, "", r, tuple(suite_failures(r)))

    # "a": 1 + 2 of 80 isolated people pooled (3.75%), CTR errors 0.1 and 0.2 (0.15 pooled);
    # "b": none flagged, CTR error 0.5
    results = [world("a", 5, 1, 0.1), world("a", 105, 2, 0.2), world("b", 6, 0, 0.5)]
    p = frontier_point(0.8, True, results)
    assert (p.cut, p.fitted) == (0.8, True)
    assert p.worst_fpr == 3 / 80 and p.worst_fpr_at == "a: isolation" and p.fpr_misses == 1
    assert p.worst_ctr_pp == 0.5 and p.worst_ctr_at == "b" and p.ctr_misses == 1
    assert p.missed
    ok = frontier_point(0.9, False, [world("a", 5, 0, 0.1), world("b", 6, 0, 0.3)])
    assert (ok.worst_fpr, ok.fpr_misses, ok.ctr_misses, ok.missed) == (0.0, 0, 0, False)
    assert ok.to_dict()["worst_ctr_at"] == "b"


def test_cuts_are_numbers_between_0_and_1():
    import pytest

    from core.errors import BotfilterError
    from training.suite import parse_cuts

    assert parse_cuts("0.6, 0.75,0.9") == [0.6, 0.75, 0.9]
    with pytest.raises(BotfilterError, match=r"^--cuts: 'x' is not a number$"):
        parse_cuts("0.6,x")
    for bad in ("1.2", "0.3"):  # below 0.5 a model never flags (the 0.5 rule)
        with pytest.raises(BotfilterError, match=rf"^--cuts: {bad} is not from 0.5 \(the lowest"):
            parse_cuts(bad)
    assert parse_cuts("0.5") == [0.5]


def test_the_frontier_plot_is_written(tmp_path):
    from training.plots import frontier

    path = frontier(
        [0.9, 0.6, 0.75],
        [0.01, 0.03, 0.02],
        [0.5, 0.2, 0.3],
        0.75,
        0.02,
        0.3,
        "t",
        tmp_path / "f.png",
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
