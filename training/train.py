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
    never dropped silently), and how many events each gave."""
    if prep.report is not None:
        prep.report.print(console)
    for world in prep.mixed:
        if world.report is not None:
            console.print(f"mixed in {world.path}:", markup=False)
            world.report.print(console)
    mixed = "".join(f", {w.events:,} mixed in from {w.path}" for w in prep.mixed)
    own = len(prep.y) - sum(w.events for w in prep.mixed)
    console.print(f"prepared {own:,} events of {data_dir}{mixed}", markup=False)
