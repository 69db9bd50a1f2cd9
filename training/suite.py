"""The stress suite: worlds the model never saw, each pushing one hard-negative family (or a
scanner family) beyond what training saw, judged against ``training.gate.SUITE``.

Per world: the false-positive rate per family of people, precision and recall per channel and
per channel x type, recall per bot kind and per bot family, and the campaign CTR and open-rate
error. None of these worlds is used to train, to choose thresholds or to choose features.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from contract import load
from features.pipeline import Enrichers
from scoring.model import BotModel
from simulation import simulate
from simulation.config import SimConfig
from training.evaluate import evaluate_model
from training.fit import prepare
from training.gate import SUITE, SuiteTargets
from training.report import EvaluationReport, FamilyRate


@dataclass(frozen=True)
class SuiteWorld:
    """One world of the suite: a simulation profile and a seed no training world uses."""

    profile: str
    seed: int
    pushes: str  # what it pushes beyond training


SUITE_WORLDS: tuple[SuiteWorld, ...] = (
    SuiteWorld("shifted", 2, "the README's shifted world (scanners spoof, arrive later)"),
    SuiteWorld("stress_isolation", 11, "browser isolation, mostly from the scanning addresses"),
    SuiteWorld("stress_cloud_desktop", 12, "cloud desktops on the gateway's own cloud"),
    SuiteWorld("stress_vdi_proxy", 13, "Citrix/VDI farms and hosted web proxies"),
    SuiteWorld("stress_proxy_isolation", 14, "opens through a proxy, clicks through isolation"),
    SuiteWorld("stress_novel_scanner", 15, "a scanner family training never saw"),
)


@dataclass(frozen=True)
class SuiteResult:
    """One world's evaluation and the targets it misses."""

    world: str
    seed: int
    pushes: str
    report: EvaluationReport
    failures: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON, as saved by ``botfilter evaluate --suite``."""
        return {
            "world": self.world,
            "seed": self.seed,
            "pushes": self.pushes,
            "report": self.report.to_dict(),
            "failures": list(self.failures),
        }


def suite_failures(report: EvaluationReport, targets: SuiteTargets = SUITE) -> list[str]:
    """The targets a world's evaluation report misses (empty when it meets them all)."""
    fails: list[str] = []
    for fam, r in (report.fpr_by_family or {}).items():
        if r.n >= targets.min_family_events and r.model > targets.max_family_fpr:
            fails.append(f"FPR {fam} {r.model:.2%} > {targets.max_family_fpr:.0%}")
    for ch, q in report.by_channel.items():
        m = q.model
        if not m.precision >= targets.min_channel_precision:
            fails.append(f"{ch} precision {m.precision:.4f} < {targets.min_channel_precision}")
        if not m.recall >= targets.min_channel_recall:
            fails.append(f"{ch} recall {m.recall:.4f} < {targets.min_channel_recall}")
    ctr = report.campaign_metric_error.model.ctr_mae_pp
    if not ctr <= targets.max_ctr_mae_pp:
        fails.append(f"CTR error {ctr:.3f} pp > {targets.max_ctr_mae_pp}")
    return fails


def run_suite(
    model: BotModel,
    root: Path,
    tenants: int = 3,
    days: int = 30,
    worlds: tuple[SuiteWorld, ...] = SUITE_WORLDS,
    console: Console | None = None,
) -> list[SuiteResult]:
    """Simulate (or reuse under ``root``) each world, evaluate ``model`` on all its events."""
    enrichers = Enrichers.load()
    out = []
    for w in worlds:
        data = Path(root) / f"{w.profile}-seed{w.seed}-{tenants}t-{days}d"
        if not (data / "events.parquet").exists():
            if console is not None:
                console.print(f"simulating {w.profile} (seed {w.seed}) -> {data}")
            simulate(data, tenants, days, w.seed, SimConfig.variant(w.profile))
        prep = prepare(load(data), enrichers)
        report = evaluate_model(model, prep, np.arange(len(prep.ctx))).report
        result = SuiteResult(w.profile, w.seed, w.pushes, report, tuple(suite_failures(report)))
        out.append(result)
        if console is not None:
            status = "meets every target" if not result.failures else "; ".join(result.failures)
            console.print(f"{w.profile}: {report.events:,} events: {status}")
    return out


def print_suite(results: list[SuiteResult], console: Console) -> None:
    """Rich tables: per world the channel figures, the campaign error, the worst families."""
    t = Table(
        title="Stress suite: per world (targets: precision >= 0.99, recall >= 0.97 per channel, CTR error <= 0.3 pp)"
    )
    for c in (
        "world",
        "events",
        "email P / R",
        "sms P / R",
        "CTR err pp (max)",
        "open-rate err pp",
        "verdict",
    ):
        t.add_column(c, justify="right")
    for r in results:
        rep = r.report
        ch = rep.by_channel
        pr = {
            k: f"{ch[k].model.precision:.4f} / {ch[k].model.recall:.4f}" if k in ch else "-"
            for k in ("email", "sms")
        }
        e = rep.campaign_metric_error.model
        t.add_row(
            r.world,
            f"{rep.events:,}",
            pr["email"],
            pr["sms"],
            f"{e.ctr_mae_pp:.3f} ({e.ctr_max_pp:.2f})",
            f"{e.open_rate_mae_pp:.3f}",
            "ok" if not r.failures else "MISS",
        )
    console.print(t)
    fpr = {r.world: r.report.fpr_by_family or {} for r in results}
    recall = {r.world: r.report.recall_by_family or {} for r in results}
    console.print(
        _per_world(
            fpr, "People flagged as bots per family: FPR (n) per world (target <= 2%)", "{:.2%}"
        )
    )
    console.print(_per_world(recall, "Recall per bot family per world", "{:.4f}"))
    g = Table(title="Precision / recall per channel x type per world")
    g.add_column("world")
    groups = sorted({c for r in results for c in r.report.by_channel_type})
    for c in groups:
        g.add_column(c, justify="right")
    for r in results:
        bct = r.report.by_channel_type
        g.add_row(
            r.world.replace("stress_", ""),
            *(
                f"{bct[c].model.precision:.4f} / {bct[c].model.recall:.4f}" if c in bct else "-"
                for c in groups
            ),
        )
    console.print(g)
    for r in results:
        if r.failures:
            console.print(f"[red]{r.world}[/]: " + "; ".join(r.failures))


def _per_world(rates: dict[str, Mapping[str, FamilyRate]], title: str, fmt: str) -> Table:
    """A table of one per-family breakdown: a row per family, a column per world."""
    table = Table(title=title)
    table.add_column("family")
    for world in rates:
        table.add_column(world.replace("stress_", ""), justify="right")
    for fam in sorted({f for by_family in rates.values() for f in by_family}):
        cells = []
        for by_family in rates.values():
            x = by_family.get(fam)
            cells.append("-" if x is None else f"{fmt.format(x.model)} ({x.n:,})")
        table.add_row(fam, *cells)
    return table
