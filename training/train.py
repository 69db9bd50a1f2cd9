"""Training in steps: fit (``training.fit``) -> evaluate (``training.evaluate``) -> log ->
register (``training.tracking``) -> promote (``training.promote``). Only the last step moves
the champion alias, and only through the gate (``training.gate``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from core.settings import Settings
from labelling.training import JUDGED_ON_DATA, JUDGED_ON_WEAK, MIN_CONFIDENCE
from scoring.model import BotModel
from training.evaluate import evaluate_model
from training.fit import Prepared, fit_model, load_prepared, rows_per_world
from training.gate import GateDecision
from training.kind import fit_kind
from training.promote import evaluate_champion, promote
from training.report import EvaluationReport
from training.tracking import ChampionEvaluation, log_run, register


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    model: BotModel
    run_id: str
    version: str  # name/N
    report: EvaluationReport  # the candidate on its test split
    decision: GateDecision
    champion: ChampionEvaluation | None  # the champion on the same rows (None: there was none)


def train(
    settings: Settings,
    data_dir: Path,
    console: Console | None = None,
    params: dict[str, Any] | None = None,
    labels: str | Path | None = None,
    mix: Sequence[Path] = (),
) -> TrainResult:
    """Train on a labelled data directory; log, register, and gate the champion alias.

    ``labels`` "weak" or a weak-label file trains on weak labels instead of the data's own;
    ``mix`` adds labelled (simulated) worlds' events to the training data.
    """
    prep = load_prepared(data_dir, labels, mix)
    if console is not None:
        print_prepared(prep, data_dir, console)
    model, info = fit_model(prep, settings, params)
    # issue 16: the kind head (bot_kind of flagged events), fitted beside the bot trees
    model.kind = fit_kind(prep, settings, exclude=info.test_idx)
    evaluation = evaluate_model(model, prep, info.test_idx)
    if prep.mixed:  # each world is split by its own time: say which the test split holds
        worlds = rows_per_world(prep, info.test_idx, data_dir)
        evaluation = evaluation._replace(report=evaluation.report.with_worlds(worlds))
    champion = evaluate_champion(settings, prep, info.test_idx, console=console)
    logged = log_run(settings, data_dir, prep, model, info, evaluation, champion)
    version = register(settings, logged)
    promotion = promote(settings, version, console)
    model.version = promotion.version
    return TrainResult(
        model, logged.run_id, promotion.version, evaluation.report, promotion.decision, champion
    )


def print_prepared(prep: Prepared, data_dir: Path, console: Console) -> None:
    """What was quarantined, in the data and in each world mixed in (PRODUCT.md: bad input is
    never dropped silently), how many events each gave, and with weak labels which events
    were left out or carry no weight, and what the model is judged on."""
    if prep.report is not None:
        prep.report.print(console)
    for world in prep.mixed:
        if world.report is not None:
            console.print(f"mixed in {world.path}:", markup=False)
            world.report.print(console)
    mixed = "".join(f", {w.events:,} mixed in from {w.path}" for w in prep.mixed)
    own = len(prep.y) - sum(w.events for w in prep.mixed)
    console.print(f"prepared {own:,} events of {data_dir}{mixed}", markup=False)
    for line in weak_label_lines(prep.label_info, data_dir):
        console.print(line, markup=False)


def weak_label_lines(info: dict[str, Any], data_dir: Path) -> list[str]:
    """With weak labels (``info``: ``Prepared.label_info``): the events a label file left out,
    those of weight 0 and why, and what judges the model. No line for the data's own labels."""
    if info.get("labels", "data") == "data":
        return []
    lines = []
    left_out = int(info.get("unlabelled_events_left_out", 0))
    if left_out:
        lines.append(
            f"left out {left_out:,} events of {data_dir}: --labels {info['labels']} does not "
            "label them (neither trained nor judged on)"
        )
    no_vote = int(info.get("events_without_a_vote", 0))
    unsure = int(info.get("events_too_unsure", 0))
    judged = info.get("judged_on")
    if no_vote + unsure:
        why = ", ".join(
            part
            for part, n in (
                (f"{no_vote:,} no labelling function voted on", no_vote),
                (f"{unsure:,} too unsure (weak label confidence below {MIN_CONFIDENCE})", unsure),
            )
            if n
        )
        used = (
            "not trained on (judged on their own labels)"
            if judged == JUDGED_ON_DATA
            else "neither trained nor judged on"
        )
        lines.append(f"{no_vote + unsure:,} events of weight 0, {used}: {why}")
    if judged == JUDGED_ON_DATA:
        lines.append(
            "judged on the data's own labels: the weak labels only train the model and choose "
            "its cuts"
        )
    elif judged == JUDGED_ON_WEAK:
        lines.append(
            "judged on the weak labels it is trained on (the data's events do not all carry a "
            "label): the gate will not move an existing champion on them"
        )
    return lines
