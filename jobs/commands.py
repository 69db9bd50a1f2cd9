"""CLI of the batch job: ``botfilter score``, ``recompute``, ``run``, ``report``, ``settings set``, ``metrics show``."""

from __future__ import annotations

import signal
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from core.errors import BotfilterError
from core.paths import check_apart, check_out_dir, check_out_file, local_path

if TYPE_CHECKING:
    from core.settings import Settings
    from jobs.lists.apply import FileOverrides

# Every other import sits in the command that needs it: this module is imported by every
# `botfilter` run, `--help` included (tests/unit/test_cli_startup.py), and after
# `botfilter.cli` the settings cost 0.28 s (pydantic), rich.console 0.04 s, the store 1.1 s,
# the recompute 1.5 s and the scorer 4.0 s of import.

settings_app = typer.Typer(
    help="Tenant settings (exclude bot interactions per channel).", rich_markup_mode=None
)
metrics_app = typer.Typer(help="Look at the recomputed metrics.", rich_markup_mode=None)
scores_app = typer.Typer(
    help="Stored scores (recomputes' and the API's), keyed by model content.",
    rich_markup_mode=None,
)

# The engine options of `score` and `recompute`, written once.
EngineOption = Annotated[str, typer.Option(help="local (this machine) or spark (Apache Spark).")]
SparkMasterOption = Annotated[
    str | None,
    typer.Option(
        help="Spark master URL for --engine spark (default BOTFILTER_SPARK_MASTER, local[2])."
    ),
]


def check_engine(engine: str, spark_master: str | None = None) -> None:
    """Refuse an unknown ``--engine`` or ``--spark-master`` in one line, before any work."""
    if engine not in ("local", "spark"):
        raise BotfilterError(f"--engine {engine}: choose local or spark")
    if spark_master is not None:
        from core.settings import check_spark_master

        try:
            check_spark_master(spark_master)
        except ValueError as exc:
            raise BotfilterError(f"--spark-master: {exc}") from None


def score(
    data: Path = typer.Option(
        ..., help="Data directory to score (or a Hadoop path with --engine spark)."
    ),
    out: Path = typer.Option(..., help="Scores file (.parquet or .csv)."),
    model: str | None = typer.Option(None, help="Model URI; default models:/botfilter@champion."),
    engine: EngineOption = "local",
    spark_master: SparkMasterOption = None,
) -> None:
    """Write the scores table: bot_score, is_bot, reasons, model_version, bot_kind per
    event."""
    from core.output import plain_console
    from core.settings import get_settings

    check_engine(engine, spark_master)
    local = engine == "local"  # the local engine reads and writes local files only
    local_data = Path(data) if local else local_path(data)
    local_out = Path(out) if local else local_path(out)
    if local_out is not None:  # (Spark writes Hadoop paths too, which it checks itself)
        check_out_file(local_out)
        # Inside --data, the scores file could take a table's name and replace it (an audit:
        # --out DATA/events.parquet, with either engine), or be read as a second table on the
        # next run.
        if local_data is not None:
            check_apart(local_out, local_data)
    console = plain_console()
    settings = get_settings()
    if engine == "spark":
        from jobs.spark.engine import run_score

        spark_run = run_score(settings, str(data), str(out), model, spark_master)
        overridden = (  # on a local file of local data (a file: URI too)
            _apply_lists(settings, local_data, local_out)
            if local_data is not None and local_out is not None and local_out.is_file()
            else None
        )
        spark_run.report.print(console)
        console.print(
            f"scored {spark_run.events:,} events ({_bots(spark_run.bots, overridden):,} bots) "
            f"with {spark_run.model_version} on Spark -> {spark_run.out}" + _listed(overridden)
        )
        return

    if out.suffix not in (".parquet", ".csv"):
        raise BotfilterError(f"{out}: the scores file must end in .parquet or .csv")
    from contract.schema import find_table_files
    from scoring.workers import start_workers

    find_table_files(data)  # a wrong --data fails now, before any process starts

    # Started first: the workers' imports run beside this process's own (about a second).
    workers = settings.score_workers
    pool = start_workers(workers) if workers > 1 else None
    from core.progress import events_bar
    from scoring.stream import score_data_dir

    # Part by part (whole tenants): memory follows the largest tenant, not the file.
    with events_bar("scoring", console) as progress:
        task = progress.add_task("scoring", total=None)
        run = score_data_dir(
            data,
            out,
            settings,
            model,
            on_part=lambda n: progress.advance(task, n),
            workers=workers,
            pool=pool,
        )
    overridden = _apply_lists(settings, data, out)
    run.report.print(console)
    console.print(
        f"scored {run.events:,} events ({_bots(run.bots, overridden):,} bots) with "
        f"{run.model_version} -> {out}" + _listed(overridden)
    )


def _apply_lists(settings: Settings, data: Path, out: Path) -> FileOverrides:
    """The tenants' allow and block lists applied to a scores file, as the API applies them to
    its answers: the events they decided, and the change in the file's bots."""
    from jobs.lists.apply import apply_lists_to_file
    from jobs.store import Store

    return apply_lists_to_file(Store.open(settings), data, out)


def _bots(scored: int, overridden: FileOverrides | None) -> int:
    """The bots as written in the scores file: the model's, with the lists applied."""
    return scored + (overridden.bots if overridden is not None else 0)


def _listed(overridden: FileOverrides | None) -> str:
    decided = overridden.decided if overridden is not None else 0
    return f"; {decided:,} decided by the tenants' lists" if decided else ""


def recompute(
    data: Path = typer.Option(..., help="Data directory (messages, events, segments, settings)."),
    as_of: str | None = typer.Option(None, help="End of the 30-day window (ISO-8601); now."),
    tenant: str | None = typer.Option(None, help="Only this tenant; default all."),
    scores: Path | None = typer.Option(None, help="Use this scores file instead of scoring."),
    out: Path | None = typer.Option(None, help="Also write the four metric tables here."),
    model: str | None = typer.Option(None, help="Model URI; default models:/botfilter@champion."),
    engine: EngineOption = "local",
    spark_master: SparkMasterOption = None,
) -> None:
    """Recompute the metrics of the last 30 days per the tenants' settings."""
    from core.output import plain_console
    from core.settings import get_settings
    from jobs.recompute import RecomputeOptions, parse_as_of, recompute_data_dir
    from jobs.store import Store

    check_engine(engine, spark_master)
    when = parse_as_of(as_of)  # every option is checked before the store is opened
    if out is not None:
        check_out_dir(out)
        check_apart(out, data)  # the metric tables would sit among the input tables
    console = plain_console()
    settings = get_settings()
    store = Store.open(settings)
    options = RecomputeOptions(
        as_of=when,
        tenants=[tenant] if tenant else None,
        model_uri=model,
        out=out,
        progress=True,
        console=console,
    )
    if engine == "spark":
        # Same recompute (locks, job runs, atomic store write); scoring and metric aggregation
        # run in Spark from the same feature, scoring and metric-spec code.
        from jobs.spark.engine import partitions_engine, spark_scorer, spark_session

        spark = spark_session(settings, spark_master)
        options = replace(
            options,
            engine=partitions_engine(spark),
            scorer=spark_scorer(spark, settings, model),
        )
    report, result = recompute_data_dir(store, settings, data, options, scores_file=scores)
    report.print(console)
    w = result.window
    console.print(
        f"Recomputed {', '.join(result.tenants)} ({'+'.join(result.channels)}) for sends in "
        f"[{w.start:%Y-%m-%d %H:%M}, {w.end:%Y-%m-%d %H:%M}) UTC: {result.events_used:,} events, "
        f"scores: {result.scores_source} ({', '.join(result.model_versions) or '-'}), "
        f"{result.rows_written:,} partition rows, {result.queue_applied} queued changes applied."
    )
    for name, frame in result.tables.items():
        where = f" -> {result.files[name]}" if name in result.files else ""
        console.print(f"  {name}: {len(frame):,} rows{where}")
    timings = ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items())
    console.print(f"  stages: {timings}")


def run(
    data: Path = typer.Option(
        ...,
        help="Data directory to watch: its tables messages, events, segments, settings as "
        "NAME.parquet|csv|jsonl (other files are not read; a cycle names them once).",
    ),
    every: str | None = typer.Option(None, help="Loop with this period (e.g. 5m); once if unset."),
    model: str | None = typer.Option(None, help="Model URI; default models:/botfilter@champion."),
) -> None:
    """Worker loop: pick up new data and queued setting changes, recompute. SIGTERM stops it
    as Ctrl-C does: the cycle's runs end "stopped by SIGTERM", exit status 143 (130 for
    Ctrl-C)."""
    from core.output import plain_console
    from core.settings import get_settings
    from core.signals import stop_on_signals, stopped
    from jobs.store import Store
    from jobs.worker import CycleOptions, CycleResult, parse_every, run_worker

    console = plain_console()
    period = parse_every(every) if every else None
    settings = get_settings()
    store = Store.open(settings)

    def log(result: CycleResult) -> None:
        # soft_wrap: one line a cycle in a file or a pipe too (rich wrapped it at 80 columns)
        console.print(f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} {result.line()}", soft_wrap=True)

    try:
        with stop_on_signals(signal.SIGTERM, signal.SIGINT):
            options = CycleOptions(model_uri=model)
            results = run_worker(store, settings, data, period, options, on_cycle=log)
    except KeyboardInterrupt as exc:
        stop = stopped(exc)
        console.print(str(stop), soft_wrap=True)
        raise typer.Exit(stop.exit_code) from None
    if period is None and results and results[-1].status == "failed":
        if results[-1].internal is not None:
            raise results[-1].internal  # exit 1, its traceback with BOTFILTER_DEBUG=1
        raise BotfilterError(f"the cycle failed: {' | '.join(results[-1].errors)}")


def report(
    tenant: str = typer.Option(..., help="Tenant to report on."),
    out: Path = typer.Option(Path("report.html"), help="HTML file to write."),
) -> None:
    """Write a self-contained HTML page of charts: human against bot."""
    from core.settings import get_settings
    from jobs.dashboard import write_report
    from jobs.store import Store

    settings = get_settings()
    path = write_report(Store.open(settings), tenant, out, home=settings.home)
    typer.echo(f"wrote {path}")


@settings_app.command("set")
def settings_set(
    tenant: str = typer.Option(..., help="Tenant to change."),
    email: str | None = typer.Option(None, help="Exclude bots from Email: on or off."),
    sms: str | None = typer.Option(None, help="Exclude bots from SMS: on or off."),
    data: Path | None = typer.Option(
        None, help="Also recompute now from this data directory (else the worker does)."
    ),
    create: bool = typer.Option(
        False,
        "--create",
        help="Accept a tenant the store has not seen yet (no settings, no metrics) and that "
        "--data does not hold; without it such an id is refused as a likely typo.",
    ),
) -> None:
    """Change a tenant's setting and queue the 30-day recomputation.

    The tenant must be known: in the metrics store (a setting or metrics) or in --data's
    messages, unless --create is given. Ids that are blank, padded with whitespace or hold
    control characters are always refused."""
    from core.settings import get_settings
    from core.text import check_tenant_id
    from jobs.exclusions import known_tenant, parse_switch, set_exclusions
    from jobs.recompute import RecomputeOptions, load_data, recompute
    from jobs.store import Store

    changes = {}
    if email is not None:
        changes["email"] = parse_switch(email, "--email")
    if sms is not None:
        changes["sms"] = parse_switch(sms, "--sms")
    if not changes:
        raise BotfilterError("nothing to change: give --email and/or --sms")
    check_tenant_id(tenant)
    settings = get_settings()
    validated = load_data(data) if data is not None else None
    in_data = validated is not None and (validated.messages["tenant_id"] == tenant).any()
    if validated is not None and not in_data:
        raise BotfilterError(f"tenant {tenant!r} has no messages in {data}: nothing to recompute")
    store = Store.open(settings)
    if not (create or in_data or known_tenant(store, tenant)):
        raise BotfilterError(
            f"unknown tenant {tenant!r}: the metrics store has no settings or metrics for it; "
            "check the id, or pass --data DIR with its messages, or --create for a new tenant"
        )
    for change in set_exclusions(store, tenant, changes, source="cli"):
        state = "on" if change.enabled else "off"
        typer.echo(
            f"{tenant}: exclude bots from {change.channel} {state} at "
            f"{change.changed_at:%Y-%m-%d %H:%M:%S} UTC; 30-day recompute queued (#{change.queue_id})"
        )
    if validated is None:
        typer.echo("The worker (`botfilter run`) applies it within one cycle.")
        return
    options = RecomputeOptions(tenants=[tenant], channels=tuple(changes), progress=True)
    result = recompute(store, settings, validated, options)
    typer.echo(f"recomputed: {result.queue_applied} queued changes applied")


@metrics_app.command("show")
def metrics_show(
    tenant: str = typer.Option(..., help="Tenant to show."),
    module: str = typer.Option("campaigns", help="campaigns, automations, segments or dashboard."),
    limit: int = typer.Option(50, min=1, help="Rows to show (largest first)."),
) -> None:
    """Print metrics with and without bots side by side."""
    from core.output import plain_console
    from core.settings import get_settings
    from jobs.dashboard import fitted, load_tenant, module_table, show_table
    from jobs.store import Store
    from labelling.estimates import load_estimates, rich_table

    settings = get_settings()
    metrics = load_tenant(Store.open(settings), tenant, only=module_table(module))
    table = show_table(metrics, module, limit)
    console = fitted(plain_console(), table)
    console.print(table)
    estimate = load_estimates(settings.home, tenant)
    if estimate is not None:
        console.print(
            rich_table(estimate["rows"], f"estimated scanner recall ({estimate['model_version']})")
        )


@scores_app.command("clear")
def scores_clear(
    tenant: str = typer.Option(..., help="Tenant whose stored scores are forgotten."),
) -> None:
    """Forget a tenant's stored scores: its next recompute scores every event afresh."""
    from core.output import plain_console
    from core.settings import get_settings
    from jobs.store import Store

    dropped = Store.open(get_settings()).clear_scores(tenant)
    plain_console().print(f"dropped {dropped:,} stored scores of tenant {tenant}")
