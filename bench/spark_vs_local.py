"""Benchmark: the local engine against the Spark engine on the same events, side by side.

    .venv/bin/python bench/spark_vs_local.py [--events 1000000] [--cores 1,2] [--scheme tenant]

Both engines run the same job on the same simulated data directory with the same model: read and
validate the tables, score every event (features + model + reasons), and aggregate the metric
partitions of the 30-day window. Spark runs in local mode once per core count (``local[1]``,
``local[2]``, ...), so the figures show how it scales with executor cores. Prints events/s per
stage and end to end, and peak memory (this process; the Spark JVM and its Python workers).
The model is trained on a separate small world (no MLflow needed) and compiled
with lleaves, as production scoring does, on the driver and on every executor.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _tree_peaks(root: int) -> tuple[float, float]:
    """Peak RSS (VmHWM, MB) of process ``root`` and the sum over its descendants."""

    def hwm(pid: int) -> float:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    below, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        kids = [c for c, p in parents.items() if p == pid]
        below += kids
        frontier += kids
    return hwm(root), sum(hwm(pid) for pid in below)


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


def train_world(out: Path) -> Path:
    """The small labelled world the benchmark model is trained on (same seed: same model)."""
    from simulation import simulate

    train_dir = out / "train-world"
    if not (train_dir / "events.parquet").exists():
        simulate(train_dir, tenants=2, days=10, seed=101)
    return train_dir


def trained_model(out: Path, settings, cache: Path):  # noqa: ANN001, ANN201
    from contract import load
    from features.pipeline import Enrichers
    from training.train import fit_model, prepare

    model, _ = fit_model(prepare(load(train_world(out)), Enrichers.load()), settings)
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
        jvm_mb, workers_mb = _tree_peaks(spark.sparkContext._gateway.proc.pid)
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
        "jvm MB": jvm_mb,
        "workers MB": workers_mb,
    }


def _ts(ns: int):  # noqa: ANN202
    import pandas as pd

    return pd.Timestamp(ns, unit="ns", tz="UTC")


def run_one(engine: str, args: argparse.Namespace) -> dict[str, float]:
    """One engine in this process: ``local`` or ``spark:N`` (local[N])."""
    from botfilter.settings import Settings

    data = world(args.out, args.events)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp) / "home", threads=2)
        model = trained_model(args.out, settings, Path(tmp) / "compiled")
        if engine == "local":
            result = run_local(data, model, settings)
            result["peak MB"] = peak_mb()
            return result
        # One thread per task on executors: Spark parallelises across tasks instead.
        spark_settings = settings.model_copy(update={"threads": 1})
        result = run_spark(data, model, spark_settings, int(engine.split(":")[1]), args.scheme)
        result["peak MB"] = peak_mb() + result.pop("jvm MB") + result.pop("workers MB")
        return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="approximate events")
    ap.add_argument("--cores", default="1,2", help="Spark local[N] core counts to run")
    ap.add_argument("--scheme", default="tenant", choices=("tenant", "chunk"))
    ap.add_argument("--out", type=Path, default=Path("bench/out"))
    ap.add_argument("--skip-local", action="store_true")
    ap.add_argument("--only", help=argparse.SUPPRESS)  # internal: one engine, JSON on stdout
    args = ap.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    if args.only:
        print(json.dumps(run_one(args.only, args)))
        return
    data = world(args.out, args.events)
    train_world(args.out)  # data made once, before the timed runs
    engines = ([] if args.skip_local else ["local"]) + [f"spark:{c}" for c in args.cores.split(",")]
    results: dict[str, dict[str, float]] = {}
    for engine in engines:
        # A fresh process per engine: its own JVM, workers, caches and peak memory.
        cmd = [sys.executable, __file__, "--only", engine, "--events", str(args.events)]
        cmd += ["--scheme", args.scheme, "--out", str(args.out)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"{engine} failed:\n{done.stderr[-3000:]}")
        name = "local" if engine == "local" else f"spark local[{engine.split(':')[1]}]"
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{name} done: {results[name]['total']:.1f} s", flush=True)

    n = int(next(iter(results.values()))["events"])
    print(f"\nevents: {n:,} ({data}), Spark scheme: {args.scheme}, machine: {os.cpu_count()} cores")
    stages = ("load + validate", "score", "metrics", "total")
    print(f"{'engine':<18}" + "".join(f"{s:>22}" for s in stages) + f"{'peak memory':>14}")
    for name, r in results.items():
        cells = "".join(f"{r[s]:8.1f} s {n / r[s]:9,.0f}/s" for s in stages)
        print(f"{name:<18}{cells}{r['peak MB']:>11,.0f} MB")
    spark_runs = [k for k in results if k.startswith("spark")]
    if len(spark_runs) > 1:
        a, b = results[spark_runs[0]]["total"], results[spark_runs[-1]]["total"]
        print(f"Spark speed-up {spark_runs[0]} -> {spark_runs[-1]}: {a / b:.2f}x")
    print("peak memory: the engine's process; for Spark plus its JVM and Python workers")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"load average at the end (1/5/15 min): {load}  (other work on the machine skews this)")


if __name__ == "__main__":
    main()
