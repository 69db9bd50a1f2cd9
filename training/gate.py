"""The promotion gate. Its thresholds live here and nowhere else.

A candidate becomes ``@champion`` only if it clears the absolute floors AND is at least as good as
the current champion on the same evaluation data (within the stated tolerances).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from training.report import EvaluationReport


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
        """Plain JSON (logged as ``gate_decision.json``)."""
        return asdict(self)


def decide(
    candidate: GateNumbers, champion: GateNumbers | None, gate: GateThresholds = GATE
) -> GateDecision:
    """Apply the gate: absolute floors, then no regression against the champion (whose numbers
    must come from the same evaluation data as the candidate's)."""
    c = candidate
    fails: list[str] = []
    if not c.pr_auc >= gate.min_pr_auc:
        fails.append(f"pr_auc {c.pr_auc:.4f} < {gate.min_pr_auc}")
    if not c.precision >= gate.min_precision:
        fails.append(f"precision {c.precision:.4f} < {gate.min_precision}")
    if not c.recall >= gate.min_recall:
        fails.append(f"recall {c.recall:.4f} < {gate.min_recall}")
    if not c.human_fpr <= gate.max_human_fpr:
        fails.append(f"human_fpr {c.human_fpr:.4f} > {gate.max_human_fpr}")
    if champion is not None:
        if c.pr_auc < champion.pr_auc - gate.max_pr_auc_drop:
            fails.append(f"pr_auc {c.pr_auc:.4f} below champion {champion.pr_auc:.4f}")
        if c.ctr_mae_pp > champion.ctr_mae_pp + gate.max_ctr_mae_increase_pp:
            fails.append(f"ctr_mae_pp {c.ctr_mae_pp:.3f} above champion {champion.ctr_mae_pp:.3f}")
    ok = "no champion yet" if champion is None else "at least as good as the champion"
    return GateDecision(not fails, tuple(fails) or (ok,), candidate, champion)


@dataclass(frozen=True)
class SuiteTargets:
    """What every world of the stress suite (``training/suite.py``) must show (issue 16)."""

    max_family_fpr: float = 0.02  # people of any hard-negative family flagged
    min_family_events: int = 30  # families with fewer people in a world are reported, not judged
    min_channel_precision: float = 0.99
    min_channel_recall: float = 0.97
    max_ctr_mae_pp: float = 0.3


SUITE = SuiteTargets()
