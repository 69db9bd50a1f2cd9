"""The promotion gate. Its thresholds live here and nowhere else.

A candidate becomes ``@champion`` only if it clears the absolute floors AND is at least as good as
the current champion on the same evaluation data (within the stated tolerances).

Every comparison allows ``GateThresholds.tolerance`` (absolute): two evaluations of equally good
models differ in a float's last bits (a PR-AUC of 1.0 against 1.0000000000000002 was a
rejection, "1.0000 below champion 1.0000"). A number the gate reads may also be NaN, when its
rows cannot define it (no campaign with a labelled event for the CTR error, no bot for recall,
nothing flagged for precision, ...). Such a criterion is *not judged* and the gate FAILS it,
floors and comparisons with the champion alike, saying which criterion could not be judged and
why: the gate promotes only what it has seen to be good enough, and a NaN compared as a number
passed silently (``nan > x`` is false). A candidate whose test rows hold no campaign therefore
never replaces a champion; give training data with campaigns (or ``--mix`` a labelled world).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from training.report import EvaluationReport, json_ready


@dataclass(frozen=True)
class GateThresholds:
    """Floors and tolerated regressions; change them here, in code review."""

    min_pr_auc: float = 0.95
    min_precision: float = 0.95
    min_recall: float = 0.85
    max_human_fpr: float = 0.03  # at 0.99 precision and ~70% bots, ~2.3% of people is the ceiling
    # "At least as good as the champion": allowed slack for noise of a re-fit on the same data.
    max_pr_auc_drop: float = 0.0
    max_ctr_mae_increase_pp: float = 0.05
    # Absolute slack of every comparison above: float noise is no regression (module docstring).
    tolerance: float = 1e-9


GATE = GateThresholds()


@dataclass(frozen=True)
class GateNumbers:
    """The few numbers of an evaluation report the gate looks at."""

    pr_auc: float
    precision: float
    recall: float
    human_fpr: float
    ctr_mae_pp: float

    @classmethod
    def of(cls, report: EvaluationReport) -> GateNumbers:
        return cls(
            pr_auc=report.pr_auc,
            precision=report.overall.model.precision,
            recall=report.overall.model.recall,
            human_fpr=report.human_fpr.model,
            ctr_mae_pp=report.campaign_metric_error.model.ctr_mae_pp,
        )


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict and the numbers it was made on."""

    promote: bool
    reasons: tuple[str, ...]
    candidate: GateNumbers
    champion: GateNumbers | None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON (logged as ``gate_decision.json``; NaN as null)."""
        return dict(json_ready(asdict(self)))


# Why each number can be NaN: what the reason of a criterion the gate could not judge says.
_UNDEFINED = {
    "pr_auc": "the test rows hold one class only",
    "precision": "the model flags none of the test rows",
    "recall": "no bot in the test rows",
    "human_fpr": "no person in the test rows",
    "ctr_mae_pp": "no campaign with a labelled event in the test rows",
}


def _apart(a: float, b: float, digits: int) -> tuple[str, str]:
    """``a`` and ``b`` with ``digits`` decimals, or as many more as tell them apart."""
    for d in range(digits, 18):
        x, y = f"{a:.{d}f}", f"{b:.{d}f}"
        if x != y:
            break
    return x, y


def _short(value: float, bound: float, higher: bool, gate: GateThresholds) -> bool:
    """Whether ``value`` is on the wrong side of ``bound`` (below it when ``higher`` is better,
    else above it) by more than the gate's tolerance."""
    return value < bound - gate.tolerance if higher else value > bound + gate.tolerance


def _floor(name: str, value: float, floor: float, higher: bool, gate: GateThresholds) -> str | None:
    """Why ``value`` misses its floor (a ceiling unless ``higher``), or None when it clears it."""
    if math.isnan(value):
        return f"{name} could not be judged ({_UNDEFINED[name]})"
    if not _short(value, floor, higher, gate):
        return None
    return f"{name} {_apart(value, floor, 4)[0]} {'<' if higher else '>'} {floor}"


def _versus(
    name: str,
    value: float,
    champion: float,
    slack: float,
    higher: bool,
    digits: int,
    gate: GateThresholds,
) -> str | None:
    """Why ``value`` is worse than the champion's by more than ``slack``, or None when it is
    not (``higher``: higher is better)."""
    if math.isnan(value) or math.isnan(champion):
        return f"{name} could not be judged against the champion ({_UNDEFINED[name]})"
    if not _short(value, champion - slack if higher else champion + slack, higher, gate):
        return None
    shown = _apart(value, champion, digits)
    return f"{name} {shown[0]} {'below' if higher else 'above'} champion {shown[1]}"


def decide(
    candidate: GateNumbers, champion: GateNumbers | None, gate: GateThresholds = GATE
) -> GateDecision:
    """Apply the gate: absolute floors, then no regression against the champion (whose numbers
    must come from the same evaluation data as the candidate's). Every comparison allows
    ``gate.tolerance``; a criterion a NaN leaves unjudged fails (module docstring)."""
    c = candidate
    checks = [
        _floor("pr_auc", c.pr_auc, gate.min_pr_auc, True, gate),
        _floor("precision", c.precision, gate.min_precision, True, gate),
        _floor("recall", c.recall, gate.min_recall, True, gate),
        _floor("human_fpr", c.human_fpr, gate.max_human_fpr, False, gate),
    ]
    if champion is not None:
        checks += [
            _versus("pr_auc", c.pr_auc, champion.pr_auc, gate.max_pr_auc_drop, True, 4, gate),
            _versus(
                "ctr_mae_pp",
                c.ctr_mae_pp,
                champion.ctr_mae_pp,
                gate.max_ctr_mae_increase_pp,
                False,
                3,
                gate,
            ),
        ]
    fails = tuple(why for why in checks if why is not None)
    ok = "no champion yet" if champion is None else "at least as good as the champion"
    return GateDecision(not fails, fails or (ok,), candidate, champion)


@dataclass(frozen=True)
class SuiteTargets:
    """What every world of the stress suite (``training/suite.py``) must show (issue 16)."""

    max_family_fpr: float = 0.02  # people of any hard-negative family flagged
    min_family_events: int = 30  # families with fewer people in a world are reported, not judged
    min_channel_precision: float = 0.99
    min_channel_recall: float = 0.97
    max_ctr_mae_pp: float = 0.3


SUITE = SuiteTargets()
