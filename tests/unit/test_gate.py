"""The promotion gate's decisions, one row per case, against the thresholds in training/gate.py."""

import json
from dataclasses import replace

import pytest

from training.gate import GATE, GateDecision, GateNumbers, decide

# A candidate exactly at every floor passes them all (the floors are inclusive).
AT_FLOORS = GateNumbers(
    pr_auc=GATE.min_pr_auc,
    precision=GATE.min_precision,
    recall=GATE.min_recall,
    human_fpr=GATE.max_human_fpr,
    ctr_mae_pp=0.5,
)
GOOD = GateNumbers(pr_auc=0.99, precision=0.99, recall=0.97, human_fpr=0.01, ctr_mae_pp=0.2)
NAN = float("nan")


@pytest.mark.parametrize(
    ("candidate", "champion", "promote", "reasons"),
    [
        # no champion: only the floors
        (AT_FLOORS, None, True, ("no champion yet",)),
        (replace(AT_FLOORS, pr_auc=0.9499), None, False, ("pr_auc 0.9499 < 0.95",)),
        (replace(AT_FLOORS, precision=0.9499), None, False, ("precision 0.9499 < 0.95",)),
        (replace(AT_FLOORS, recall=0.8499), None, False, ("recall 0.8499 < 0.85",)),
        (replace(AT_FLOORS, human_fpr=0.0301), None, False, ("human_fpr 0.0301 > 0.03",)),
        # nothing flagged: precision is NaN, which is no pass
        (
            replace(GOOD, precision=NAN),
            None,
            False,
            ("precision could not be judged (the model flags none of the test rows)",),
        ),
        (
            replace(AT_FLOORS, pr_auc=0.5, recall=0.5),
            None,
            False,
            ("pr_auc 0.5000 < 0.95", "recall 0.5000 < 0.85"),
        ),
        # against a champion on the same rows
        (GOOD, AT_FLOORS, True, ("at least as good as the champion",)),
        (GOOD, GOOD, True, ("at least as good as the champion",)),  # a tie is no regression
        (replace(GOOD, pr_auc=0.9899), GOOD, False, ("pr_auc 0.9899 below champion 0.9900",)),
        (
            replace(GOOD, ctr_mae_pp=GOOD.ctr_mae_pp + GATE.max_ctr_mae_increase_pp),
            GOOD,
            True,
            ("at least as good as the champion",),
        ),
        (
            replace(GOOD, ctr_mae_pp=0.26),
            GOOD,
            False,
            ("ctr_mae_pp 0.260 above champion 0.200",),
        ),
        # the floors hold whatever the champion scores
        (
            replace(GOOD, human_fpr=0.05),
            replace(GOOD, human_fpr=0.08),
            False,
            ("human_fpr 0.0500 > 0.03",),
        ),
        (
            replace(AT_FLOORS, recall=0.8, ctr_mae_pp=0.9),
            GOOD,
            False,
            (
                "recall 0.8000 < 0.85",
                "pr_auc 0.9500 below champion 0.9900",
                "ctr_mae_pp 0.900 above champion 0.200",
            ),
        ),
    ],
)
def test_decide(candidate, champion, promote, reasons):
    decision = decide(candidate, champion, GATE)
    assert decision == GateDecision(promote, reasons, candidate, champion)


# Two evaluations of one model differ in a float's last bits: a PR-AUC of 1.0 against
# 1.0000000000000002 was "pr_auc 1.0000 below champion 1.0000".
@pytest.mark.parametrize(
    ("candidate", "champion"),
    [
        (replace(GOOD, pr_auc=1.0), replace(GOOD, pr_auc=1.0000000000000002)),
        (replace(GOOD, ctr_mae_pp=0.25 + 1e-12), GOOD),  # at the allowed increase, plus noise
        (replace(AT_FLOORS, precision=GATE.min_precision - 1e-12), None),
        (replace(AT_FLOORS, recall=GATE.min_recall - 1e-12), None),
        (replace(AT_FLOORS, pr_auc=GATE.min_pr_auc - 1e-12), None),
        (replace(AT_FLOORS, human_fpr=GATE.max_human_fpr + 1e-12), None),
    ],
)
def test_float_noise_is_no_failure(candidate, champion):
    assert decide(candidate, champion).promote


@pytest.mark.parametrize(
    ("candidate", "champion", "reason"),
    [
        # beyond the tolerance a failure names numbers that differ as printed
        (
            replace(GOOD, pr_auc=0.99991),
            replace(GOOD, pr_auc=0.99994),
            "pr_auc 0.99991 below champion 0.99994",
        ),
        (
            replace(GOOD, pr_auc=1.0),
            replace(GOOD, pr_auc=1.0 + 1e-8),
            "pr_auc 1.00000000 below champion 1.00000001",
        ),
        (
            replace(GOOD, ctr_mae_pp=0.2501),
            replace(GOOD, ctr_mae_pp=0.2),
            "ctr_mae_pp 0.250 above champion 0.200",
        ),
        (replace(GOOD, precision=0.94999), None, "precision 0.94999 < 0.95"),
        (replace(GOOD, human_fpr=0.030001), None, "human_fpr 0.030001 > 0.03"),
    ],
)
def test_a_failure_prints_numbers_that_tell_apart(candidate, champion, reason):
    assert decide(candidate, champion).reasons == (reason,)


@pytest.mark.parametrize(
    ("candidate", "champion", "reason"),
    [
        # no campaign in the test rows: no CTR error for either model (it passed silently)
        (
            replace(GOOD, ctr_mae_pp=NAN),
            replace(GOOD, ctr_mae_pp=NAN),
            "ctr_mae_pp could not be judged against the champion "
            "(no campaign with a labelled event in the test rows)",
        ),
        (
            GOOD,
            replace(GOOD, ctr_mae_pp=NAN),
            "ctr_mae_pp could not be judged against the champion "
            "(no campaign with a labelled event in the test rows)",
        ),
        (
            GOOD,
            replace(GOOD, pr_auc=NAN),
            "pr_auc could not be judged against the champion (the test rows hold one class only)",
        ),
        (
            replace(GOOD, human_fpr=NAN),
            None,
            "human_fpr could not be judged (no person in the test rows)",
        ),
    ],
)
def test_a_criterion_that_cannot_be_judged_fails_and_says_so(candidate, champion, reason):
    decision = decide(candidate, champion)
    assert (decision.promote, decision.reasons) == (False, (reason,))


def test_a_decision_with_nan_is_strict_json():
    """JSON has no NaN: the decision's numbers that are none are null (JSON.parse rejects NaN)."""
    decision = decide(replace(GOOD, ctr_mae_pp=NAN), replace(GOOD, ctr_mae_pp=NAN))
    doc = json.loads(json.dumps(decision.as_dict(), allow_nan=False))
    assert doc["candidate"]["ctr_mae_pp"] is None and doc["champion"]["ctr_mae_pp"] is None
    assert doc["candidate"]["pr_auc"] == 0.99 and doc["promote"] is False


def test_decision_json_keeps_its_shape():
    doc = json.loads(json.dumps(decide(GOOD, None).as_dict()))
    assert doc == {
        "promote": True,
        "reasons": ["no champion yet"],
        "candidate": {
            "pr_auc": 0.99,
            "precision": 0.99,
            "recall": 0.97,
            "human_fpr": 0.01,
            "ctr_mae_pp": 0.2,
        },
        "champion": None,
    }


def test_campaign_rates_keep_tenants_that_share_ids_apart() -> None:
    """The gate's CTR error is per campaign of a tenant: two tenants reusing campaign and
    message ids are two campaigns (they were one, their messages counted once)."""
    import numpy as np
    import pandas as pd

    from training.evaluate import campaign_rates

    sent = pd.Timestamp("2024-03-01T00:00:00Z")
    ctx = pd.DataFrame(
        {
            "tenant_id": ["a", "a", "b", "b", "b"],
            "campaign_id": ["c1"] * 5,
            "message_id": ["m1", "m2", "m1", "m2", "m2"],
            "channel": ["email"] * 5,
            "delivered_at": [sent] * 5,
            "type": ["click", "open", "open", "open", "click"],
        }
    )
    got = campaign_rates(ctx, np.ones(5, dtype=bool))
    assert got.index.tolist() == [("a", "c1"), ("b", "c1")]
    assert got["delivered"].tolist() == [2, 2]
    assert got["ctr"].tolist() == [0.5, 0.5]
    assert got["open_rate"].tolist() == [1.0, 1.0]


def test_campaign_rates_divide_by_every_delivered_message() -> None:
    """The audit's campaign: 10 delivered emails; a person opens and clicks m0, opens m1; a
    scanner opens and clicks m7. True open rate 2/10 and CTR 1/10; without the filter 3/10 and
    2/10: 10 pp off each. Dividing by the messages with an event gave 1/3 against 2/3 (33 pp)."""
    import numpy as np
    import pandas as pd

    from training.evaluate import _delivered_for, campaign_rates
    from training.fit import Prepared, delivered_campaign_messages, split_by_send_time

    sent = pd.Timestamp("2024-03-01T00:00:00Z")
    messages = pd.DataFrame(
        {
            "tenant_id": ["t"] * 11,
            "campaign_id": ["c"] * 10 + [None],  # an automation's message is no campaign's
            "message_id": [f"m{i}" for i in range(11)],
            "channel": ["email"] * 11,
            "sent_at": [sent + pd.Timedelta(hours=i) for i in range(11)],
            "delivered_at": [sent] * 11,
        }
    )
    rows = [("m0", "open", False), ("m0", "click", False), ("m1", "open", False)]
    rows += [("m7", "open", True), ("m7", "click", True)]
    ctx = pd.DataFrame(
        {
            "tenant_id": "t",
            "campaign_id": "c",
            "message_id": [m for m, _, _ in rows],
            "channel": "email",
            "type": [t for _, t, _ in rows],
            "delivered_at": sent,
            "sent_at": [messages.set_index("message_id").at[m, "sent_at"] for m, _, _ in rows],
        }
    )
    bot = np.array([b for _, _, b in rows])
    delivered = delivered_campaign_messages(messages)
    truth = campaign_rates(ctx, ~bot, delivered)
    everything = campaign_rates(ctx, np.ones(len(ctx), bool), delivered)
    assert truth["delivered"].tolist() == [10]
    assert (truth["open_rate"].tolist(), truth["ctr"].tolist()) == ([0.2], [0.1])
    assert (everything["open_rate"].tolist(), everything["ctr"].tolist()) == ([0.3], [0.2])
    # a split (whole messages by send time) divides by the messages sent within the split's own
    # window: from its cut to the next one, not from its first evented message to its last
    # (m2-m5 sent in the first split's time and m8-m9 in the last's, without events, were left
    # out, and the last split's CTR here was 1/1 for 1/3)
    prep = Prepared(ctx, pd.DataFrame(index=ctx.index), bot, messages=delivered)
    assert len(_delivered_for(prep, ctx)) == 10
    first, _, last = split_by_send_time(ctx)
    assert first.tolist() == [0, 1, 2] and last.tolist() == [3, 4]
    assert _delivered_for(prep, ctx.iloc[first])["message_id"].tolist() == [
        "m0", "m1", "m2", "m3", "m4", "m5"
    ]  # fmt: skip
    assert _delivered_for(prep, ctx.iloc[last])["message_id"].tolist() == ["m7", "m8", "m9"]


def _report_of(n: GateNumbers):  # noqa: ANN202
    """An evaluation report whose gate numbers are ``n``."""
    from training.report import (
        CampaignError,
        CountedRates,
        EvaluationReport,
        PrecisionRecall,
        Quality,
        RateError,
        Rates,
    )

    pr = PrecisionRecall(n.precision, n.recall, 100, 50)
    err = RateError(n.ctr_mae_pp, 0.0, 0.0, 0.0)
    return EvaluationReport(
        events=100,
        bot_share=0.5,
        pr_auc=n.pr_auc,
        overall=Quality(pr, pr),
        human_fpr=Rates(n.human_fpr, 0.0),
        by_channel_type={},
        by_channel={},
        recall_by_bot_kind={},
        proxy_open_fpr=CountedRates(0.0, 0.0, 0),
        campaign_metric_error=CampaignError(1, err, err, err),
    )


class _Registry:
    """What `promote` reads of and writes to MLflow: version 2 (run "r2") of botfilter."""

    def __init__(self, params: dict[str, str], champion: int | None) -> None:
        from types import SimpleNamespace

        self.ns = SimpleNamespace
        self.params = params
        self.aliases = {} if champion is None else {"champion": champion}
        self.version_tags: dict[str, str] = {}
        self.run_tags: dict[str, str] = {}
        self.logged: dict[str, dict] = {}

    def get_model_version(self, name: str, version: str):  # noqa: ANN201
        return self.ns(name=name, version=version, run_id="r2")

    def get_registered_model(self, name: str):  # noqa: ANN201
        return self.ns(aliases=self.aliases)

    def get_run(self, run_id: str):  # noqa: ANN201
        return self.ns(data=self.ns(params=self.params, tags={}))

    def set_registered_model_alias(self, name: str, alias: str, number: str) -> None:
        self.aliases[alias] = int(number)

    def set_model_version_tag(self, name: str, number: str, key: str, value: str) -> None:
        self.version_tags[key] = value

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self.run_tags[key] = value

    def log_dict(self, run_id: str, doc: dict, name: str) -> None:
        self.logged[name] = doc


REFUSED = (
    "judged only on the weak labels it was trained on (its data lack labels of their own); to "
    "replace botfilter/1 anyway: botfilter promote --version 2 --accept-weak-labels"
)
ACCEPTED = (
    "accepted by a person on weak labels (--accept-weak-labels): the floors pass; not compared "
    "with botfilter/1 on labels it was trained to reproduce"
)


@pytest.mark.parametrize(
    ("params", "champion", "accept", "candidate", "promote", "reasons", "alias"),
    [
        # judged on weak labels: never replaces a champion through the gate (an older run that
        # trained on a weak-label file and recorded no judged_on: the same)
        ({"labels": "weak", "judged_on": "weak labels"}, 1, False, GOOD, False, (REFUSED,), 1),
        ({"labels": "/w/labels.parquet"}, 1, False, GOOD, False, (REFUSED,), 1),
        # a person accepts it: the floors still judge
        ({"labels": "weak", "judged_on": "weak labels"}, 1, True, GOOD, True, (ACCEPTED,), 2),
        (
            {"labels": "weak", "judged_on": "weak labels"},
            1,
            True,
            replace(GOOD, precision=0.9),
            False,
            ("precision 0.9000 < 0.95",),
            1,
        ),
        # no champion yet: the first model is judged by the floors, as any
        ({"labels": "weak", "judged_on": "weak labels"}, None, False, GOOD, True, None, 2),
    ],
)
def test_a_version_judged_on_weak_labels_replaces_no_champion_unless_accepted(
    monkeypatch, tmp_path, params, champion, accept, candidate, promote, reasons, alias
):
    """A weak-label model judged, with the champion, on its own weak labels was "at least as
    good as the champion" and displaced a better one, at training and by `botfilter promote`."""
    from core.settings import Settings
    from training import promote as promote_step

    registry = _Registry(params, champion)
    monkeypatch.setattr(promote_step, "configure_mlflow", lambda settings: None)
    monkeypatch.setattr(promote_step, "MlflowClient", lambda: registry)
    monkeypatch.setattr(promote_step, "read_report", lambda *a: _report_of(candidate))

    def no_comparison(*args: object) -> None:
        raise AssertionError("compared with the champion on weak labels")

    monkeypatch.setattr(promote_step, "_champion_report", no_comparison)
    flag = {"accept_weak_labels": True} if accept else {}
    got = promote_step.promote(Settings(home=tmp_path), 2, **flag)
    assert got.decision.promote is promote
    assert got.decision.reasons == (reasons or ("no champion yet",))
    assert registry.aliases["champion"] == alias
    assert registry.version_tags["gate"] == ("promoted" if promote else "rejected")
    doc = registry.logged["gate_decision.json"]
    accepted = "a person (botfilter promote --accept-weak-labels)"
    if accept and promote:
        assert registry.run_tags["gate.accepted_weak_labels"] == accepted
        assert registry.version_tags["gate.accepted_weak_labels"] == accepted
        assert doc["accepted_by"] == accepted
    else:
        assert "gate.accepted_weak_labels" not in registry.run_tags
        assert "accepted_by" not in doc


def test_what_judged_a_run_reads_back_older_runs():
    """Runs logged before ``judged_on`` judged on weak labels whenever they trained on them."""
    from training.promote import run_judged_on

    assert run_judged_on({}) == "data labels"
    assert run_judged_on({"labels": "data"}) == "data labels"
    assert run_judged_on({"labels": "weak"}) == "weak labels"
    assert run_judged_on({"labels": "weak", "judged_on": "data labels"}) == "data labels"
