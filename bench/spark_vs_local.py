"""Benchmark: the local engine against the Spark engine on the same events, side by side.

    .venv/bin/python bench/spark_vs_local.py [--events 1000000] [--cores 1,2] [--scheme tenant]

Both engines run the same job on the same simulated data directory with the same model: read and
validate the tables, score every event (features + model + reasons), and aggregate the metric
partitions of the 30-day window. Spark runs in local mode once per core count (``local[1]``,
``local[2]``, ...), so the figures show how it scales with executor cores. Prints events/s per
stage and end to end, and peak memory (this process; the largest child: the Spark JVM or a
Python worker). The model is trained on a separate small world (no MLflow needed) and compiled
with lleaves, as production scoring does, on the driver and on every executor.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def peak_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def world(out: Path, events: int) -> Path:
    """A simulated data directory with about ``events`` events (shared with score_throughput)."""
    from simulation import simulate

    path = out / f"world-{events}"
    if not (path / "events.parquet").exists():
        tenants, days = 2, 30
        summary = simulate(path, tenants=tenants, days=days, seed=202)
        while summary.events < 0.9 * events:
            tenants = int(np.ceil(tenants * events / max(summary.events, 1)))
            summary = simulate(path, tenants=tenants, days=days, seed=202)
    return path


def trained_model(out: Path, settings, cache: Path):  # noqa: ANN001, ANN201
    from contract import load
    from features.pipeline import Enrichers
    from simulation import simulate
    from training.train import fit_model, prepare

    train_dir = out / "train-world"
    if not (train_dir / "events.parquet").exists():
        simulate(train_dir, tenants=2, days=10, seed=101)
    model, _ = fit_model(prepare(load(train_dir), Enrichers.load()), settings)
    model.version = "bench"
    model.compile(cache)
    return model


def run_local(data: Path, model, settings) -> dict[str, float]:  # noqa: ANN001
    import contract
    from jobs.metrics import Window, compute_partitions
    from scoring.batch import score_validated

    t0 = time.perf_counter()
    validated = contract.load(data)
    t1 = time.perf_counter()
    scores = score_validated(validated, settings, model=model)
    t2 = time.perf_counter()
    as_of = validated.events["occurred_at"].max() + np.timedelta64(1, "s")
    exclusions = {(t, "email"): True for t in validated.settings["tenant_id"]}
    parts = compute_partitions(
        validated.messages,
        validated.events,
        scores,
        exclusions,
        Window.ending(as_of, settings.window_days),
        segments=validated.segments,
    )
    parts.tables()
    t3 = time.perf_counter()
    return {
        "events": len(validated.events),
        "load + validate": t1 - t0,
        "score": t2 - t1,
        "metrics": t3 - t2,
        "total": t3 - t0,
    }


def run_spark(data: Path, model, settings, cores: int, scheme: str) -> dict[str, float]:  # noqa: ANN001
    from pyspark.sql import functions as F

    from jobs.spark_engine import recompute_spark, score_spark, spark_session
    from jobs.spark_io import load_tables

    spark = spark_session(settings, f"local[{cores}]")
    try:
        t0 = time.perf_counter()
        tables = load_tables(spark, data)  # validation runs here (counts for the report)
        t1 = time.perf_counter()
        scores = score_spark(spark, tables, settings, model=model, scheme=scheme).cache()
        n = scores.count()
        t2 = time.perf_counter()
        as_of = tables.events.agg(F.max("occurred_at")).first()[0] + 1_000_000_000
        tenants = [r[0] for r in tables.settings.select("tenant_id").collect()]
        recompute_spark(
            spark,
            tables,
            settings,
            as_of=_ts(as_of),
            scores=scores,
            exclusions={(t, "email"): True for t in tenants},
        )
        t3 = time.perf_counter()
        tables.unpersist()
        scores.unpersist()
    finally:
        spark.stop()
    return {
        "events": n,
        "load + validate": t1 - t0,
        "score": t2 - t1,
        "metrics": t3 - t2,
        "total": t3 - t0,
    }


def _ts(ns: int):  # noqa: ANN202
    import pandas as pd

    return pd.Timestamp(ns, unit="ns", tz="UTC")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="approximate events")
    ap.add_argument("--cores", default="1,2", help="Spark local[N] core counts to run")
    ap.add_argument("--scheme", default="tenant", choices=("tenant", "chunk"))
    ap.add_argument("--out", type=Path, default=Path("bench/out"))
    ap.add_argument("--skip-local", action="store_true")
    args = ap.parse_args()

    from botfilter.settings import Settings

    args.out.mkdir(parents=True, exist_ok=True)
    data = world(args.out, args.events)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp) / "home", threads=2)
        model = trained_model(args.out, settings, Path(tmp) / "compiled")
        if not args.skip_local:
            results["local"] = run_local(data, model, settings)
            print(f"local done: {results['local']['total']:.1f} s", flush=True)
        # One thread per task on executors: Spark parallelises across tasks instead.
        spark_settings = settings.model_copy(update={"threads": 1})
        for cores in (int(c) for c in args.cores.split(",")):
            name = f"spark local[{cores}]"
            results[name] = run_spark(data, model, spark_settings, cores, args.scheme)
            print(f"{name} done: {results[name]['total']:.1f} s", flush=True)

    n = next(iter(results.values()))["events"]
    print(
        f"\nevents: {n:,} ({data}), model: {model.booster.num_trees()} trees, "
        f"compiled: {model._compiled is not None}, Spark scheme: {args.scheme}"
    )
    stages = ("load + validate", "score", "metrics", "total")
    print(f"{'engine':<18}" + "".join(f"{s:>22}" for s in stages))
    for name, r in results.items():
        cells = "".join(f"{r[s]:8.1f} s {n / r[s]:9,.0f}/s" for s in stages)
        print(f"{name:<18}{cells}")
    first_spark = [k for k in results if k.startswith("spark")]
    if len(first_spark) > 1:
        a, b = results[first_spark[0]]["total"], results[first_spark[-1]]["total"]
        print(f"Spark speed-up {first_spark[0]} -> {first_spark[-1]}: {a / b:.2f}x")
    print(
        f"peak memory: driver process {peak_mb():,.0f} MB, "
        f"largest child (Spark JVM / Python worker) {peak_mb(resource.RUSAGE_CHILDREN):,.0f} MB"
    )


if __name__ == "__main__":
    main()
