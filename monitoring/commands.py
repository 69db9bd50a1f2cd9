"""CLI: ``botfilter monitor``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from core.errors import BotfilterError
from core.paths import check_out_files
from monitoring.thresholds import Thresholds

if TYPE_CHECKING:  # annotations only: pydantic-settings is imported on use (start-up)
    from core.settings import Settings

_T = Thresholds()


def monitor(
    data: Path = typer.Option(..., help="Data directory of live traffic (no labels needed)."),
    model: str | None = typer.Option(None, help="Model URI; default models:/botfilter@champion."),
    out: Path | None = typer.Option(
        None, help="JSON report; default reports/monitor/latest.json under the data home."
    ),
    html: Path | None = typer.Option(None, help="Also write the report as an HTML section."),
    max_feature_psi: float = typer.Option(_T.feature_psi, help="Alert above this feature PSI."),
    max_score_psi: float = typer.Option(_T.score_psi, help="Alert above this score PSI."),
    max_network_change: float = typer.Option(
        _T.network_share_change, help="Alert when a network's bot share moves more than this."
    ),
    min_candidate_recipients: int = typer.Option(
        _T.candidate_min_recipients,
        help="Alert on an unflagged network fanning out to this many recipients at delivery.",
    ),
) -> None:
    """Compare live traffic with the champion's training data; exit 1 on an alert."""
    # Imported on use: rich, pydantic-settings and monitoring.run add 0.7 s to `--help`.
    from rich.text import Text

    from core.output import plain_console, write_text_whole
    from core.settings import get_settings
    from monitoring.run import html_section, run_monitor, save_if_champion

    # Before any work: inside --data either file replaced a table of it (an audit), and one
    # file given as both held the HTML while "report -> FILE" was said.
    check_out_files({"--out": out, "--html": html}, data)
    _check_thresholds(max_feature_psi, max_score_psi, max_network_change, min_candidate_recipients)

    console = plain_console()
    settings = get_settings()
    th = Thresholds(
        feature_psi=max_feature_psi,
        score_psi=max_score_psi,
        network_share_change=max_network_change,
        candidate_min_recipients=min_candidate_recipients,
    )
    with console.status("monitoring"):
        report = run_monitor(settings, data, model, th)
    # The latest report is the champion's; another model's report goes to --out only.
    champion = None if model is None else _champion_version(settings)
    latest = save_if_champion(settings, report, model, champion)
    where = latest
    if out is not None:
        where = write_text_whole(out, json.dumps(report, indent=2, default=float))
    if html is not None:
        write_text_whole(html, html_section(report))
    top = list(report["feature_psi"].items())[:5]
    console.print(
        f"{report['events']:,} events vs {report['model_version']}'s training data: bot share "
        f"{report['bot_share']:.1%} (training {report['reference_bot_share']:.1%}), score PSI "
        f"{report['score_psi']:.3f}; top feature PSI " + ", ".join(f"{k} {v:.3f}" for k, v in top)
    )
    if not report["psi_judged"]:
        least = report["thresholds"]["psi_min_events"]
        console.print(f"PSI not judged: fewer than {least:,} events (a shift is noise below)")
    for table, reasons in report.get("quarantined", {}).items():
        said = ", ".join(f"{n:,} {reason}" for reason, n in sorted(reasons.items()))
        console.print(f"quarantined, not monitored: {table}: {said}")
    for alert in report["alerts"]:
        console.print(Text.assemble(("ALERT", "red"), f" {alert}"))
    if where is not None:
        console.print(f"report -> {where}")
    else:
        console.print("report not saved: --model names a model other than the champion (--out)")
    if report["alerts"]:
        raise typer.Exit(1)


def _check_thresholds(
    feature_psi: float, score_psi: float, network: float, recipients: int
) -> None:
    """One line for a threshold no alert can mean anything with (NaN silenced alerts, a
    negative PSI raised one for every feature; an audit)."""
    for option, value in (("--max-feature-psi", feature_psi), ("--max-score-psi", score_psi)):
        if not math.isfinite(value) or value <= 0:
            raise BotfilterError(f"{option} {value}: give a PSI above 0 (0.25 is the usual bar)")
    if not math.isfinite(network) or not 0 < network <= 1:
        raise BotfilterError(f"--max-network-change {network}: give a share change in (0, 1]")
    if recipients < 1:
        raise BotfilterError(f"--min-candidate-recipients {recipients}: give 1 or more")


def _champion_version(settings: Settings) -> str | None:
    """The champion's version label (None: no champion); the report names its model's."""
    from scoring.registry import champion_version

    return champion_version(settings)
