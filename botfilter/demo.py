"""``botfilter demo``: the main job end to end on embedded defaults.

simulate -> validate -> train (MLflow, gate) -> score -> recompute with the tenant's settings ->
switch "Exclude bot interactions" on for one tenant -> recompute -> show metrics before/after.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from contract import load


def demo(
    tenants: int = typer.Option(2, min=1, help="Tenants in the simulated world."),
    days: int = typer.Option(10, min=1, help="Days of sends to simulate."),
    seed: int = typer.Option(
        7, help="Random seed of the simulated world (the live world uses seed+1)."
    ),
    out: Path | None = typer.Option(None, help="Where to put demo data; default <home>/demo."),
) -> None:
    """Simulate, validate, train, score, switch exclusion on, recompute, and show metrics."""
    # Imported on use: at the top they would load pandas, rich and every stage (training.train
    # alone: 6.4 s) into `botfilter --help`, which imports this module (-X importtime).
    import pandas as pd
    from rich.console import Console
    from rich.rule import Rule
    from rich.text import Text

    from core.output import plain_console
    from core.paths import check_out_dir
    from core.settings import get_settings
    from jobs.dashboard import fitted, load_tenant, show_table, write_report
    from jobs.exclusions import set_exclusions
    from jobs.recompute import RecomputeOptions, recompute
    from jobs.store import Store
    from scoring.batch import score_validated
    from scoring.scores_file import write_scores
    from simulation import simulate
    from simulation.config import SimConfig
    from training.train import train

    console = plain_console()  # paths and ids shown as written
    settings = get_settings()
    # Before any work: a file given as --out failed after the simulation had run.
    root = check_out_dir(out) if out is not None else settings.ensure_home() / "demo"
    train_dir, live_dir = root / "train", root / "live"

    console.print(
        Rule("1. Simulate a labelled world (training) and a live one (other seed, shifted profile)")
    )
    s1 = simulate(train_dir, tenants=tenants, days=days, seed=seed, progress=True)
    s2 = simulate(
        live_dir,
        tenants=tenants,
        days=days,
        seed=seed + 1,
        config=SimConfig.variant("shifted"),
        progress=True,
    )
    for s in (s1, s2):
        console.print(f"{s.out}: {s.events:,} events, bot share {s.bot_share}")

    console.print(Rule("2. Validate the live data against the contract"))
    live = load(live_dir)
    live.report.print(console)

    console.print(Rule("3. Train, log to MLflow, register; the gate decides @champion"))
    styled = Console()  # markup on: training's printers style their words with it
    with styled.status("training LightGBM"):
        result = train(settings, train_dir, styled)
    r = result.report
    console.print(
        f"{result.version}: test PR-AUC {r.pr_auc:.4f}, precision {r.overall.model.precision:.4f}, "
        f"recall {r.overall.model.recall:.4f}; gate: {'promoted' if result.decision.promote else 'rejected'} "
        f"({'; '.join(result.decision.reasons)}); MLflow store {settings.mlflow_uri}"
    )

    console.print(Rule("4. Score the live events with the champion"))
    with console.status("scoring"):
        scores = score_validated(live, settings)
    scores_file = root / "scores.parquet"
    write_scores(scores, scores_file)
    console.print(
        f"{len(scores):,} events scored by {scores['model_version'].iat[0]}: {scores['is_bot'].mean():.1%} bots -> {scores_file}"
    )

    console.print(Rule("5. Recompute the last 30 days with the tenants' current settings"))
    store = Store.open(settings)
    as_of = (
        pd.to_datetime(live.events["occurred_at"], utc=True).max() + pd.Timedelta(seconds=1)
    ).ceil("D")
    tenant = sorted(live.messages["tenant_id"].unique())[0]
    set_exclusions(store, tenant, {"email": False, "sms": False}, source="demo")
    recompute(store, settings, live, RecomputeOptions(as_of=as_of, scores=scores))
    before = load_tenant(store, tenant)

    console.print(
        Rule(f"6. Tenant {tenant} switches 'Exclude bot interactions' on for Email and SMS")
    )
    set_exclusions(store, tenant, {"email": True, "sms": True}, source="demo")
    options = RecomputeOptions(
        as_of=as_of, scores=scores, tenants=[tenant], progress=True, console=console
    )
    res = recompute(store, settings, live, options)
    console.print(f"recomputed {res.rows_written:,} partitions in {sum(res.timings.values()):.1f}s")
    after = load_tenant(store, tenant)

    console.print(Rule("7. Campaign metrics: with bots -> without bots"))
    for table in (show_table(after, "campaigns", 15), show_table(after, "dashboard", 10)):
        fitted(console, table).print(table)
    page = write_report(store, tenant, root / f"report-{tenant}.html")
    console.print(
        _before_after(before.tables["campaign_metrics"], after.tables["campaign_metrics"])
    )
    console.print(
        Text.assemble(
            ("demo complete", "bold green"),
            f": HTML report {page}; try `botfilter metrics show --tenant {tenant}`",
        )
    )
    _console_hint(settings, tenant, live_dir, console)


def _console_hint(settings, tenant: str, live_dir: Path, console) -> None:
    """How to look at the demo's store in the console, with a new token for the demo tenant."""
    # Imported on use: rich.rule and core.tokens (SQLAlchemy) add 0.37 s to `botfilter --help`.
    from rich.rule import Rule

    from core.tokens import TokenStore

    tokens = TokenStore.open(settings)
    try:
        token, _ = tokens.create([tenant], label="botfilter demo")
    finally:
        tokens.close()
    home = shlex.quote(str(settings.home.resolve()))
    console.print(Rule("8. Look at it in the console"))
    console.print(
        f"BOTFILTER_HOME={home} botfilter console\n"
        f"then open http://127.0.0.1:8080/ and log in with this token for tenant {tenant} "
        f"(shown once; revoke with `botfilter tokens revoke`):",
        highlight=False,
    )
    console.print(token, highlight=False, soft_wrap=True)


def _before_after(before, after):
    """Tenant totals as the dashboards showed them before and after the switch."""
    # Imported on use: rich.table adds 0.08 s to `botfilter --help` (-X importtime).
    from rich.table import Table

    t = Table(title="Campaigns, tenant totals: before the switch -> after")
    for c in ("metric", "before (bots counted)", "after (bots excluded)"):
        t.add_column(c, justify="right")
    for col in ("delivered", "opens_total", "clicks_total", "opens_unique", "clicks_unique"):
        if col in before and col in after:
            t.add_row(col, f"{before[col].sum():,.0f}", f"{after[col].sum():,.0f}")
    for name, num, den in (
        ("open rate", "opens_unique", "delivered"),
        ("CTR", "clicks_unique", "delivered"),
    ):
        if num in before and den in before:
            b = before[num].sum() / max(before[den].sum(), 1)
            a = after[num].sum() / max(after[den].sum(), 1)
            t.add_row(name, f"{b:.2%}", f"{a:.2%}")
    return t
