"""The promote step: the gate judges a registered version against the current champion, and
only a pass moves the alias. ``botfilter train`` ends with it; ``botfilter promote --version N``
runs it on its own (after a rollback, or for a version rejected against a champion since
replaced).

The gate compares both models on the same rows: the candidate's test split. The candidate's
report is read back from its run; the champion's comes from the same run when that champion
was the one compared at training time, else the test split is rebuilt from the run's data
directory and the champion evaluated on it. Rebuilt rows must be the rows the candidate was
evaluated on: their content hash (``training.evaluate.rows_fingerprint``, logged at training)
must match, else the promotion is refused in one line (retrain on the current data). The
candidate is not re-evaluated on changed rows instead: changed data may move rows it trained on
into its test split. (Runs logged before the hash are checked on their test event count only.)

A version judged only on the weak labels it was trained on (its data carry no labels of their
own; the run's ``judged_on`` parameter) is compared with the champion on labels it was trained
to reproduce: circular. It never replaces a champion through the gate; a person may accept it
(``accept_weak_labels``, ``botfilter promote --accept-weak-labels``), and then the floors still
apply and the run records the acceptance. With no champion yet it is judged as any version.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from rich.console import Console
from rich.table import Table

from core.errors import BotfilterError
from core.settings import Settings
from labelling.training import JUDGED_ON_DATA, JUDGED_ON_WEAK
from scoring.model import BotModel
from scoring.registry import champion_uri, configure_mlflow, load_model
from training.evaluate import evaluate_model, rows_fingerprint
from training.fit import Prepared, load_prepared, mix_worlds, split_rows
from training.gate import GATE, GateDecision, GateNumbers, GateThresholds, decide
from training.report import EvaluationReport
from training.tracking import (
    CHAMPION_EVALUATION_FILE,
    COMPARED_TAG,
    EVALUATION_FILE,
    FINGERPRINT_PARAM,
    JUDGED_ON_PARAM,
    ChampionEvaluation,
    read_report,
)

GATE_FILE = "gate_decision.json"
ACCEPTED_TAG = "gate.accepted_weak_labels"  # who accepted a version judged on weak labels
ACCEPTED_BY = "a person (botfilter promote --accept-weak-labels)"


@dataclass(frozen=True)
class Promotion:
    """What the gate decided for ``version`` (``name/N``) against ``champion`` (the version that
    held ``alias`` then; None when none did)."""

    version: str
    champion: str | None
    alias: str
    decision: GateDecision


def evaluate_champion(
    settings: Settings, prep: Prepared, rows: np.ndarray, console: Console | None = None
) -> ChampionEvaluation | None:
    """The current champion evaluated on ``rows`` of ``prep``; None when there is none."""
    try:
        champion = load_model(settings, champion_uri(settings), compile=False)
    except BotfilterError:
        return None
    return _evaluated(champion, prep, rows, console)


def _evaluated(
    champion: BotModel, prep: Prepared, rows: np.ndarray, console: Console | None
) -> ChampionEvaluation:
    """``champion``'s report on ``rows``, unless it needs features this code no longer computes."""
    if not set(champion.feature_names) <= set(prep.features.columns):
        if console is not None:
            console.print(
                "[yellow]champion uses features this code no longer computes; "
                "it cannot be compared[/]"
            )
        return ChampionEvaluation(champion.version, None)
    return ChampionEvaluation(champion.version, evaluate_model(champion, prep, rows).report)


def promote(
    settings: Settings,
    version: str | int,
    console: Console | None = None,
    gate: GateThresholds = GATE,
    accept_weak_labels: bool = False,
) -> Promotion:
    """Run the gate on registered ``version`` against the current champion; move the alias to
    it only if the gate passes. The decision is recorded on the version (tag ``gate``) and its
    run (tags ``gate.*``, ``gate_decision.json``). A version judged on weak labels does not
    replace a champion unless ``accept_weak_labels`` (module docstring)."""
    configure_mlflow(settings)
    client = MlflowClient()
    mv = _model_version(client, settings, str(version))
    label = mv.label
    report = read_report(client, mv.run_id, EVALUATION_FILE)
    if report is None:
        raise BotfilterError(
            f"{label} has no {EVALUATION_FILE} in its run: only versions that "
            "`botfilter train` registered can be promoted"
        )
    held = _alias_holder(client, mv.name, settings.champion_alias)
    candidate = GateNumbers.of(report)
    if held == label:
        reason = f"{label} is already @{settings.champion_alias}"
        return Promotion(
            label,
            held,
            settings.champion_alias,
            GateDecision(True, (reason,), candidate, candidate),
        )
    if held is not None and run_judged_on(client.get_run(mv.run_id).data.params) == JUDGED_ON_WEAK:
        decision = _on_weak_labels(candidate, mv, held, accept_weak_labels, gate)
        accepted = accept_weak_labels and decision.promote
        _record(client, settings, mv, decision, accepted)
        return Promotion(label, held, settings.champion_alias, decision)
    champion = None
    if held is not None:
        champion_report = _champion_report(settings, client, mv, report, held, console)
        champion = None if champion_report is None else GateNumbers.of(champion_report)
    decision = decide(candidate, champion, gate)
    _record(client, settings, mv, decision)
    return Promotion(label, held, settings.champion_alias, decision)


def run_judged_on(params: dict[str, str]) -> str:
    """What a run's test report was judged on (its ``judged_on`` parameter; runs logged before
    it was recorded judged on weak labels whenever they trained on them)."""
    recorded = params.get(JUDGED_ON_PARAM)
    if recorded is not None:
        return recorded
    return JUDGED_ON_DATA if params.get("labels", "data") == "data" else JUDGED_ON_WEAK


def _on_weak_labels(
    candidate: GateNumbers, mv: _Version, held: str, accepted: bool, gate: GateThresholds
) -> GateDecision:
    """The gate for a version judged on the weak labels it was trained on, against champion
    ``held``: refused, unless a person ``accepted`` it; then the floors alone judge it."""
    if not accepted:
        why = (
            "judged only on the weak labels it was trained on (its data lack labels of their "
            f"own); to replace {held} anyway: botfilter promote --version {mv.number} "
            "--accept-weak-labels"
        )
        return GateDecision(False, (why,), candidate, None)
    floors = decide(candidate, None, gate)
    if not floors.promote:
        return floors
    why = (
        "accepted by a person on weak labels (--accept-weak-labels): the floors pass; not "
        f"compared with {held} on labels it was trained to reproduce"
    )
    return GateDecision(True, (why,), candidate, None)


def _alias_holder(client: MlflowClient, name: str, alias: str) -> str | None:
    """``name/N`` of the version holding ``alias`` (None: no version does)."""
    version = client.get_registered_model(name).aliases.get(alias)  # a number, not a string
    return None if version is None else f"{name}/{version}"


@dataclass(frozen=True)
class _Version:
    """A registered version and the training run that logged it."""

    name: str
    number: str
    run_id: str

    @property
    def label(self) -> str:
        return f"{self.name}/{self.number}"


def _model_version(client: MlflowClient, settings: Settings, version: str) -> _Version:
    if not version.isdigit():
        raise BotfilterError(f"version {version!r}: give a version number, e.g. 3")
    try:
        mv = client.get_model_version(settings.model_name, version)
    except MlflowException as exc:
        raise BotfilterError(
            f"no version {version} of model {settings.model_name} in {settings.mlflow_uri}"
        ) from exc
    if mv.run_id is None:
        raise BotfilterError(
            f"{mv.name}/{mv.version} has no training run: only versions that "
            "`botfilter train` registered can be promoted"
        )
    return _Version(mv.name, str(mv.version), mv.run_id)


def _champion_report(
    settings: Settings,
    client: MlflowClient,
    mv: _Version,
    report: EvaluationReport,
    champion: str,
    console: Console | None,
) -> EvaluationReport | None:
    """The champion's report on the candidate's test rows (None: it cannot be compared)."""
    run = client.get_run(mv.run_id)
    if run.data.tags.get(COMPARED_TAG) == champion:
        # Evaluated at training time on these very rows (no file: it could not be compared).
        return read_report(client, mv.run_id, CHAMPION_EVALUATION_FILE)
    params = run.data.params
    data_dir, mix = Path(params["data_dir"]), mix_worlds(params.get("labels_mix") or "")
    missing = [p for p in (data_dir, *mix) if not p.exists()]
    if missing:
        raise BotfilterError(
            f"{champion} was not compared with {mv.label} when it was trained, and "
            f"its test data {missing[0]} is gone: they cannot be compared on the same rows"
        )
    labels = params.get("labels", "data")
    prep = load_prepared(data_dir, None if labels == "data" else labels, mix)
    rows = split_rows(prep).test
    logged = params.get(FINGERPRINT_PARAM)
    changed = None
    if len(rows) != report.events:
        changed = f"{len(rows):,} test events, then {report.events:,}"
    elif logged is not None and logged != rows_fingerprint(prep, rows):
        changed = f"its {len(rows):,} test events are not those it was evaluated on"
    if changed is not None:
        where = f"{data_dir} (or a world mixed in)" if mix else str(data_dir)
        raise BotfilterError(
            f"{where} changed since {mv.label} was trained ({changed}): it cannot be compared "
            f"with {champion} on the same rows; train on the current data instead"
        )
    if console is not None:
        console.print(f"evaluating {champion} on the test rows of {mv.label}", markup=False)
    # A champion whose files do not load is an error here, not "no champion".
    model = load_model(settings, f"models:/{champion}", compile=False)
    return _evaluated(model, prep, rows, console).report


def _record(
    client: MlflowClient,
    settings: Settings,
    mv: _Version,
    decision: GateDecision,
    accepted: bool = False,
) -> None:
    """Move the alias on a pass; tag the version and its run with the (latest) decision, and
    who ``accepted`` it when a person did (a version judged on weak labels)."""
    if decision.promote:
        client.set_registered_model_alias(mv.name, settings.champion_alias, mv.number)
    verdict = "promoted" if decision.promote else "rejected"
    client.set_model_version_tag(mv.name, mv.number, "gate", verdict)
    client.set_tag(mv.run_id, "gate.promote", str(decision.promote))
    client.set_tag(mv.run_id, "gate.reasons", "; ".join(decision.reasons))
    doc = decision.as_dict()
    if accepted:
        client.set_model_version_tag(mv.name, mv.number, ACCEPTED_TAG, ACCEPTED_BY)
        client.set_tag(mv.run_id, ACCEPTED_TAG, ACCEPTED_BY)
        doc["accepted_by"] = ACCEPTED_BY
    client.log_dict(mv.run_id, doc, GATE_FILE)


def print_promotion(promotion: Promotion, console: Console) -> None:
    """The verdict with its reasons, and the numbers the gate compared."""
    d = promotion.decision
    t = Table(title=f"Gate: {promotion.version} against {promotion.champion or 'no champion'}")
    for c in ("", "PR-AUC", "precision", "recall", "human FPR", "CTR MAE pp"):
        t.add_column(c, justify="right")
    for name, n in (("candidate", d.candidate), ("champion", d.champion)):
        if n is not None:
            t.add_row(
                name,
                f"{n.pr_auc:.4f}",
                f"{n.precision:.4f}",
                f"{n.recall:.4f}",
                f"{n.human_fpr:.4%}",
                f"{n.ctr_mae_pp:.3f}",
            )
    console.print(t)
    verdict = f"[green]promoted to @{promotion.alias}[/]" if d.promote else "[red]not promoted[/]"
    console.print(f"{promotion.version}: {verdict} — {'; '.join(d.reasons)}")
