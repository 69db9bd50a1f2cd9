"""The model end to end: train on one simulated world, judge it on another seed and profile.

Small data keeps this under a couple of minutes, so the bars are looser than the full-size
"done when" figures (PR-AUC >= 0.99, precision >= 0.99, recall >= 0.95 per channel, proxy FPR
<= 1%, CTR MAE <= 0.5 pp), which the README reports from `botfilter evaluate` at full size:
here PR-AUC >= 0.98, precision >= 0.97, recall >= 0.90 per channel, proxy-open FPR <= 3%,
campaign CTR MAE <= 1.0 pp while no filter is off by >= 2 pp.
"""

from pathlib import Path

import numpy as np
import pytest

from contract import load
from scoring.registry import champion_uri, configure_mlflow, load_model
from simulation import simulate
from simulation.config import SimConfig
from training.evaluate import evaluate_model
from training.fit import prepare
from training.train import train

pytestmark = [pytest.mark.integration, pytest.mark.slow]
# Bot kind on the shifted world, per kind: end to end (flagged and of the right kind; the bot
# model's own misses count), the right kind among the flagged, and precision.
KIND_RECALL = 0.90
KIND_OF_FLAGGED = 0.95
KIND_PRECISION = 0.90


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("worlds")
    # 3 tenants x 12 days: since the training world carries many people behind isolation and
    # cloud networks (issue 16), 2 x 8 days left the email-click cut too few validation people
    # to be placed well (0.95; shifted-world CTR off by 2.1 pp, against 0.92 now).
    simulate(root / "train", tenants=3, days=12, seed=1)
    simulate(root / "eval", tenants=2, days=6, seed=2, config=SimConfig.variant("shifted"))
    return root / "train", root / "eval"


@pytest.fixture(scope="module")
def trained(worlds, tmp_path_factory):
    from core.settings import Settings

    home = tmp_path_factory.mktemp("home")
    # explicit: mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI, so an earlier test's store
    # would otherwise win over this home's default
    settings = Settings(home=home, tracking_uri=f"sqlite:///{(home / 'mlflow.db').resolve()}")
    first = train(settings, worlds[0])
    return settings, first


def test_first_model_is_promoted_and_logged(trained):
    import mlflow
    from mlflow import MlflowClient

    settings, first = trained
    assert first.decision.promote, first.decision.reasons
    configure_mlflow(settings)
    client = MlflowClient()
    mv = client.get_model_version_by_alias(settings.model_name, settings.champion_alias)
    assert f"{settings.model_name}/{mv.version}" == first.version
    run = client.get_run(first.run_id)
    assert run.data.params["target_precision"] == "0.99"
    assert run.data.metrics["test.pr_auc"] > 0.9
    # every cut says how it was chosen, and none is below a calibrated 0.5
    assert run.data.tags["threshold.email_click"]
    assert min(first.model.thresholds.values()) >= 0.5
    assert "net_security_vendor" not in first.model.feature_names  # a network people share
    artifacts = {a.path for a in client.list_artifacts(first.run_id)} | {
        a.path for a in client.list_artifacts(first.run_id, "plots")
    }
    assert {
        "feature_schema.json",
        "thresholds.json",
        "thresholds_how.json",
        "evaluation.json",
        "gate_decision.json",
    } <= artifacts
    assert {
        "plots/pr_curve.png",
        "plots/calibration.png",
        "plots/feature_importance.png",
        "plots/confusion_by_bot_kind.png",
    } <= artifacts
    model = load_model(settings, champion_uri(settings), compile=False)
    assert model.version == first.version and model.feature_names == first.model.feature_names
    assert mlflow.get_tracking_uri().startswith("sqlite:")
    # artifacts live under the data home, not in ./mlruns of the working directory
    assert run.info.artifact_uri.startswith(settings.artifact_root.as_uri())
    assert not Path("mlruns").exists()


def test_generalises_to_another_seed_and_profile(trained, worlds):
    settings, first = trained
    model = load_model(settings)  # the champion, compiled as in production
    prep = prepare(load(worlds[1]))
    report, proba, is_bot = evaluate_model(model, prep, np.arange(len(prep.ctx)))
    assert is_bot.any() and proba[is_bot].min() >= 0.5  # never "bot" below a calibrated 0.5
    assert report.pr_auc >= 0.98
    for channel, r in report.by_channel.items():
        assert r.model.precision >= 0.97, (channel, r)
        assert r.model.recall >= 0.90, (channel, r)
    assert report.proxy_open_fpr.n > 0 and report.proxy_open_fpr.model <= 0.03
    err = report.campaign_metric_error
    assert err.model.ctr_mae_pp <= 1.0
    assert err.no_filter.ctr_mae_pp >= 2.0


def test_worse_candidate_does_not_move_the_champion(trained, worlds):
    from mlflow import MlflowClient

    settings, first = trained
    # a model that cannot split is far worse than the champion on the same test data
    bad = train(settings, worlds[0], params={"min_data_in_leaf": 10**9})
    assert not bad.decision.promote
    assert bad.decision.champion is not None
    configure_mlflow(settings)
    mv = MlflowClient().get_model_version_by_alias(settings.model_name, settings.champion_alias)
    assert f"{settings.model_name}/{mv.version}" == first.version != bad.version


def test_bot_kind_per_kind_on_another_seed_and_profile(trained, worlds):
    """The registered champion carries its kind head; on the shifted world each kind's bots are
    flagged and given their kind (end to end: a missed bot counts against its kind's recall)."""
    from mlflow import MlflowClient

    from training.kind import evaluate_kind

    settings, first = trained
    model = load_model(settings)  # from the registry, compiled: the head travels with the model
    assert model.kind is not None and model.kind.classes == first.model.kind.classes
    configure_mlflow(settings)
    logged = {a.path for a in MlflowClient().list_artifacts(first.run_id)}
    assert "kind_confusion.json" in logged
    prep = prepare(load(worlds[1]))
    report = evaluate_kind(model, prep, np.arange(len(prep.ctx)))
    assert report is not None and report["head"] == "model"
    print("kind confusion", report["labels"], report["matrix"])
    for kind, r in report["per_kind"].items():
        print(kind, r)
    for kind in model.kind.classes:
        r = report["per_kind"][kind]
        assert r["n"] > 0 and r["recall"] >= KIND_RECALL, (kind, r)
        assert r["right_kind_of_flagged"] >= KIND_OF_FLAGGED, (kind, r)
        assert r["precision"] >= KIND_PRECISION, (kind, r)
    assert report["per_kind"]["person"]["recall"] >= 0.97  # people keep an empty kind


def test_evaluate_command_saves_the_report_with_the_kind_confusion(trained, worlds, tmp_path):
    """`botfilter evaluate --data` on the champion (it crashed indexing the typed report)."""
    import json

    from typer.testing import CliRunner

    from botfilter.cli import app

    settings, first = trained
    out = tmp_path / "evaluation.json"
    env = {"BOTFILTER_HOME": str(settings.home), "BOTFILTER_TRACKING_URI": settings.tracking_uri}
    res = CliRunner().invoke(
        app, ["evaluate", "--data", str(worlds[1]), "--out", str(out)], env=env
    )
    assert res.exit_code == 0, res.output
    saved = json.loads(out.read_text())
    assert saved["model_version"] == first.version
    assert saved["pr_auc"] > 0.99
    confusion = saved["bot_kind_confusion"]
    assert confusion is not None and "security_scanner" in json.dumps(confusion)


def test_the_suite_on_two_seeds_pools_each_worlds_real_evaluations(trained, tmp_path):
    import json

    from training.suite import SUITE_WORLDS, pool, run_suite

    settings, _ = trained
    model = load_model(settings, champion_uri(settings), compile=False)
    worlds = SUITE_WORLDS[1:2]  # the isolation world: its families are the ones judged
    results = run_suite(model, tmp_path, tenants=1, days=3, worlds=worlds, seeds=2)
    assert [(r.world, r.seed) for r in results] == [
        ("stress_isolation", 11),
        ("stress_isolation", 111),
    ]
    validation = run_suite(model, tmp_path, 1, 3, worlds, seeds=1, validation=True)
    assert [r.seed for r in validation] == [5011]
    assert len({p.name for p in tmp_path.iterdir()}) == 3  # three worlds simulated, none reused
    (p,) = pool(results)
    assert p.seeds == (11, 111)
    reports = [r.report for r in results]
    for fam, rate in p.fpr_by_family.items():
        per_seed = [x for rep in reports if (x := (rep.fpr_by_family or {}).get(fam))]
        assert rate.n == sum(x.n for x in per_seed)
        assert round(rate.model * rate.n) == sum(round(x.model * x.n) for x in per_seed)
    email = [rep.by_channel["email"].model for rep in reports]
    assert p.by_channel["email"].bots == sum(x.bots for x in email)
    assert p.by_channel["email"].n == sum(x.n for x in email)
    assert (
        min(x.recall for x in email) <= p.by_channel["email"].recall <= max(x.recall for x in email)
    )
    assert json.loads(json.dumps(p.to_dict(), default=float))["seeds"] == [11, 111]


def test_the_frontier_judges_every_cut_on_worlds_prepared_once(trained, tmp_path):
    """``suite_frontier`` with the real champion: its point at the model's own cut is the
    plain suite's verdict and worst figures; at a higher email-click cut no family has more
    people flagged; the model keeps its thresholds."""
    from training.suite import SUITE_WORLDS, frontier_point, run_suite, suite_frontier

    settings, _ = trained
    model = load_model(settings, champion_uri(settings), compile=False)
    own = dict(model.thresholds)
    worlds = SUITE_WORLDS[1:2]
    points = suite_frontier(model, tmp_path, [0.501, 0.999], tenants=1, days=3, worlds=worlds)
    assert model.thresholds == own
    fitted = own["email:click"]
    assert [p.cut for p in points] == sorted({0.501, 0.999, fitted})
    assert [p.cut for p in points if p.fitted] == [fitted]
    plain = frontier_point(fitted, True, run_suite(model, tmp_path, 1, 3, worlds))
    assert next(p for p in points if p.fitted) == plain
    assert len(list(tmp_path.iterdir())) == 1  # the one world, simulated once and reused
    worst = [p.worst_fpr for p in points]
    assert worst == sorted(worst, reverse=True)  # a higher cut never flags more people
