"""The stress suite: worlds the model never saw, each pushing one hard-negative family (or a
scanner family) beyond what training saw, judged against ``training.gate.SUITE``.

Per world: the false-positive rate per family of people, precision and recall per channel and
per channel x type, recall per bot kind and per bot family, and the campaign CTR and open-rate
error. None of these worlds is used to train, to choose thresholds or to choose features.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.gate import SUITE, SuiteTargets


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


def suite_failures(report: dict[str, Any], targets: SuiteTargets = SUITE) -> list[str]:
    """The targets a world's evaluation report misses (empty when it meets them all)."""
    fails: list[str] = []
    for fam, r in report.get("fpr_by_family", {}).items():
        if r["n"] >= targets.min_family_events and r["model"] > targets.max_family_fpr:
            fails.append(f"FPR {fam} {r['model']:.2%} > {targets.max_family_fpr:.0%}")
    for ch, r in report["by_channel"].items():
        m = r["model"]
        if not m["precision"] >= targets.min_channel_precision:
            fails.append(f"{ch} precision {m['precision']:.4f} < {targets.min_channel_precision}")
        if not m["recall"] >= targets.min_channel_recall:
            fails.append(f"{ch} recall {m['recall']:.4f} < {targets.min_channel_recall}")
    ctr = report["campaign_metric_error"]["model"]["ctr_mae_pp"]
    if not ctr <= targets.max_ctr_mae_pp:
        fails.append(f"CTR error {ctr:.3f} pp > {targets.max_ctr_mae_pp}")
    return fails


def run_suite(
    model,  # noqa: ANN001 - a scoring.model.BotModel
    root: Path,
    tenants: int = 3,
    days: int = 30,
    worlds: tuple[SuiteWorld, ...] = SUITE_WORLDS,
    console=None,  # noqa: ANN001
) -> list[dict[str, Any]]:
    """Simulate (or reuse under ``root``) each world, evaluate ``model`` on all its events."""
    from contract import load
    from features.pipeline import Enrichers
    from simulation import simulate
    from simulation.config import SimConfig
    from training.train import evaluate_model, prepare

    enrichers = Enrichers.load()
    out = []
    for w in worlds:
        data = Path(root) / f"{w.profile}-seed{w.seed}-{tenants}t-{days}d"
        if not (data / "events.parquet").exists():
            if console is not None:
                console.print(f"simulating {w.profile} (seed {w.seed}) -> {data}")
            simulate(data, tenants, days, w.seed, SimConfig.variant(w.profile))
        prep = prepare(load(data), enrichers)
        report, _, _ = evaluate_model(model, prep, np.arange(len(prep.ctx)))
        out.append(
            {
                "world": w.profile,
                "seed": w.seed,
                "pushes": w.pushes,
                "report": report,
                "failures": suite_failures(report),
            }
        )
        if console is not None:
            status = (
                "meets every target" if not out[-1]["failures"] else "; ".join(out[-1]["failures"])
            )
            console.print(f"{w.profile}: {report['events']:,} events: {status}")
    return out


def print_suite(results: list[dict[str, Any]], console) -> None:  # noqa: ANN001
    """Rich tables: per world the channel figures, the campaign error, the worst families."""
    from rich.table import Table

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
        rep = r["report"]
        ch = rep["by_channel"]
        pr = {
            k: f"{ch[k]['model']['precision']:.4f} / {ch[k]['model']['recall']:.4f}"
            if k in ch
            else "-"
            for k in ("email", "sms")
        }
        e = rep["campaign_metric_error"]["model"]
        t.add_row(
            r["world"],
            f"{rep['events']:,}",
            pr["email"],
            pr["sms"],
            f"{e['ctr_mae_pp']:.3f} ({e['ctr_max_pp']:.2f})",
            f"{e['open_rate_mae_pp']:.3f}",
            "ok" if not r["failures"] else "MISS",
        )
    console.print(t)
    console.print(
        _per_world(
            results,
            "fpr_by_family",
            "People flagged as bots per family: FPR (n) per world (target <= 2%)",
            "{:.2%}",
        )
    )
    console.print(
        _per_world(results, "recall_by_family", "Recall per bot family per world", "{:.4f}")
    )
    g = Table(title="Precision / recall per channel x type per world")
    g.add_column("world")
    groups = sorted({c for r in results for c in r["report"]["by_channel_type"]})
    for c in groups:
        g.add_column(c, justify="right")
    for r in results:
        bct = r["report"]["by_channel_type"]
        g.add_row(
            r["world"].replace("stress_", ""),
            *(
                f"{bct[c]['model']['precision']:.4f} / {bct[c]['model']['recall']:.4f}"
                if c in bct
                else "-"
                for c in groups
            ),
        )
    console.print(g)
    for r in results:
        if r["failures"]:
            console.print(f"[red]{r['world']}[/]: " + "; ".join(r["failures"]))


def _per_world(results: list[dict[str, Any]], key: str, title: str, fmt: str):  # noqa: ANN202
    """A table of one per-family breakdown of the reports: a row per family, a column per world."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("family")
    for r in results:
        table.add_column(r["world"].replace("stress_", ""), justify="right")
    for fam in sorted({f for r in results for f in r["report"].get(key, {})}):
        cells = []
        for r in results:
            x = r["report"].get(key, {}).get(fam)
            cells.append("-" if x is None else f"{fmt.format(x['model'])} ({x['n']:,})")
        table.add_row(fam, *cells)
    return table
