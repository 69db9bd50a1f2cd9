"""Benchmark: score once. What a recompute saves when the API has already answered the events.

    .venv/bin/python bench/score_once.py [--tenants 8] [--days 12] [--seed 3] [--request 500]

A simulated world is scored through the API's runtime (in process: the real scorer, state and
score recorder, no HTTP), with the recorder on and off, then recomputed three ways with a real
LightGBM model: on a store without API answers (every event scored), after the API answered 90%
of the events, and after it answered all of them. Prints the API's events/s with and without
recording, each recompute's scores stage and total wall time, the events the recompute scored,
and the peak memory of the process (ru_maxrss).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from contract.validate import validate_tables  # noqa: E402
from core.settings import Settings  # noqa: E402
from features.definitions import FEATURE_NAMES, LONGEST_WINDOW_S  # noqa: E402
from features.pipeline import Enrichers, build_features, event_context  # noqa: E402
from jobs.recompute import RecomputeOptions, recompute  # noqa: E402
from jobs.store import Store  # noqa: E402
from scoring.batch import score_context  # noqa: E402
from scoring.model import BotModel  # noqa: E402
from serving.client import api_events  # noqa: E402
from serving.recorder import ScoreRecorder  # noqa: E402
from serving.runtime import Runtime  # noqa: E402
from serving.state import MemoryState  # noqa: E402
from simulation.core import generate  # noqa: E402


def serve(
    settings, model, enrichers, items, request, store=None
) -> tuple[float, ScoreRecorder | None]:
    """Answer ``items`` in requests of ``request`` events; seconds taken (the recorder's
    writes finish after, off the clock, as they do off the request path)."""
    state = MemoryState(history_s=35 * 86_400, burst_s=2 * LONGEST_WINDOW_S)
    runtime = Runtime(settings, model, enrichers, state)
    if store is not None:
        runtime.recorder = ScoreRecorder(lambda: store)
    start = time.perf_counter()
    for lo in range(0, len(items), request):
        runtime.score(items[lo : lo + request])
    seconds = time.perf_counter() - start
    runtime.close()
    return seconds, runtime.recorder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=8)
    parser.add_argument("--days", type=int, default=12)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--request", type=int, default=500, help="events per API request")
    args = parser.parse_args()
    console = Console()
    work = Path(tempfile.mkdtemp(prefix="bench-score-once-"))
    settings = Settings(home=work / "home")

    with console.status("simulating and training a model"):
        data = validate_tables(generate(tenants=args.tenants, days=args.days, seed=args.seed))
        enrichers = Enrichers.load()
        ctx = event_context(data.messages, data.events)
        feats = build_features(ctx, enrichers)
        booster = lgb.train(
            {"objective": "binary", "num_leaves": 31, "verbose": -1, "seed": 1},
            lgb.Dataset(feats[list(FEATURE_NAMES)].to_numpy(np.float64), ctx["label"] == "bot"),
            num_boost_round=100,
        )
        model = BotModel(booster, list(FEATURE_NAMES), (1.0, 0.0), {"default": 0.5}, "bench/1")
        model.model_id = model.model_id  # computed once, as a registry model's is
        model.compile(work / "compiled")
        items = api_events(data.messages, data.events)
    n = len(items)
    as_of = data.events["occurred_at"].max().ceil("D")
    console.print(f"{args.tenants} tenants, {args.days} days: {n:,} events")

    with console.status("API: warm-up, then recorder off"):
        serve(settings, model, enrichers, items[:2000], args.request)  # lazy loads, JIT
        off, _ = serve(settings, model, enrichers, items, args.request)
    stores = {
        share: Store(f"sqlite:///{work / f'metrics-{share}.db'}") for share in (0.0, 0.9, 1.0)
    }
    with console.status("API: recorder on"):
        on, recorder = serve(settings, model, enrichers, items, args.request, stores[1.0])
        assert recorder is not None and recorder.recorded == n, (recorder.recorded, n)
        serve(settings, model, enrichers, items[: int(n * 0.9)], args.request, stores[0.9])

    scored: dict[float, int] = {}
    rows = []
    for share, store in stores.items():
        asked: list[int] = []

        def scorer(tables, asked=asked):
            ctx = event_context(tables.messages, tables.events)
            asked.append(len(ctx))
            return score_context(ctx, model, enrichers)

        with console.status(f"recompute after {share:.0%} API answers"):
            start = time.perf_counter()
            options = RecomputeOptions(
                as_of=as_of, scorer=scorer, model_version=model.version, model_id=model.model_id
            )
            result = recompute(store, settings, data, options)
            total = time.perf_counter() - start
        stored = sum(store.score_versions(sorted(data.messages["tenant_id"].unique())).values())
        scored[share] = stored - (int(n * share) if share < 1 else n)
        rows.append(
            (
                f"{share:.0%}",
                result.scores_source,
                f"{scored[share]:,}",
                f"{sum(asked):,}",
                f"{result.timings['scores']:.2f}",
                f"{total:.2f}",
                f"{n / total:,.0f}",
            )
        )
        store.close()

    table = Table(title="recompute of the whole window", title_justify="left")
    for col in (
        "API answered",
        "scores",
        "scored anew",
        "scorer input",
        "scores s",
        "total s",
        "events/s",
    ):
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(
        f"API in process, requests of {args.request}: {n / off:,.0f} events/s without recording, "
        f"{n / on:,.0f} events/s with it ({(on / off - 1) * 100:+.1f}% time; writes are off the "
        "request path)"
    )
    load = os.getloadavg()[0]
    console.print(f"load average during the run: {load:.1f} on {os.cpu_count()} cores")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    console.print(f"peak memory (ru_maxrss): {peak:,.0f} MiB")
    console.print(
        "scored anew: events the recompute stored a fresh score for; scorer input: events it "
        "built features for (those plus their burst-window and message-history context)"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
