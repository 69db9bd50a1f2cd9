"""Benchmark: the local engine against the Spark engine on the same events, side by side.

    .venv/bin/python bench/spark_vs_local.py [--events 1000000] [--cores 1,2] [--scheme tenant]
        [--no-pin] [--event-log DIR] [--conf KEY=VALUE ...]

Both engines run the same job on the same simulated data directory with the same model: read and
validate the tables, score every event (features + model + reasons), and aggregate the metric
partitions of the 30-day window. Spark runs in local mode once per core count (``local[1]``,
``local[2]``, ...), each pinned to exactly N CPUs unless ``--no-pin`` (the JVM's own threads
would otherwise give ``local[1]`` more than one core), so the figures show how it scales with
cores. Prints events/s per stage and end to end, the CPU seconds each stage used (this process
and every process under it: the Spark JVM and its Python workers; a stage whose CPU seconds are
near its wall time ran on one core) and peak memory (the same processes).
Start-up is timed apart and left out of the stages: for Spark the session, the Python workers and
the model and enrichers loaded in each (:func:`jobs.spark.engine.warm_up`); for the local engine
the enrichers. Then the ratios the targets are stated in: each Spark stage's events/s over the
local engine's, and the speed-up from the first core count to the last. ``--event-log`` keeps
Spark's event logs and prints the slowest stages of each run; ``--conf KEY=VALUE`` (repeatable)
sets a Spark setting of the session.
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


def _descendants(root: int) -> list[int]:
    """Every live process under ``root``."""
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
    return below


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

    return hwm(root), sum(hwm(pid) for pid in _descendants(root))


def tree_cpu() -> float:
    """CPU seconds (user + system) used so far by this process and every process under it,
    reaped children included (a live worker's own time, a finished one's in its parent's)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in [os.getpid(), *_descendants(os.getpid())]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile: its time is in its parent's once reaped
            continue
        total += sum(int(f) for f in fields[11:15]) / ticks  # utime stime cutime cstime
    return total


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
    from training.fit import fit_model, prepare

    model, _ = fit_model(prepare(load(train_world(out)), Enrichers.load()), settings)
    model.version = "bench"
    model.compile(cache)
    return model


def window_end(data: Path):  # noqa: ANN201
    """as_of for both engines: one second after the last event (read from the Parquet footer's
    statistics would do too; reading the column is cheap and exact)."""
    import pandas as pd
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    last = pc.max(pq.read_table(data / "events.parquet", columns=["occurred_at"])["occurred_at"])
    return pd.Timestamp(last.as_py()).tz_convert("UTC") + pd.Timedelta(seconds=1)


def exclusions_of(data: Path) -> dict[tuple[str, str], bool]:
    import pyarrow.parquet as pq

    tenants = pq.read_table(data / "settings.parquet", columns=["tenant_id"])["tenant_id"]
    return {(t, "email"): True for t in tenants.to_pylist()}


def run_local(data: Path, model, settings) -> dict[str, float]:  # noqa: ANN001
    import contract
    from features.pipeline import Enrichers
    from jobs.metrics import Window, compute_partitions
    from scoring.batch import score_validated

    as_of, exclusions = window_end(data), exclusions_of(data)
    t = time.perf_counter()
    Enrichers.load()  # the start-up cost both engines pay once per process (cached after)
    t0, c0 = time.perf_counter(), tree_cpu()
    validated = contract.load(data)
    t1, c1 = time.perf_counter(), tree_cpu()
    scores = score_validated(validated, settings, model=model)
    t2, c2 = time.perf_counter(), tree_cpu()
    parts = compute_partitions(
        validated.messages,
        validated.events,
        scores,
        exclusions,
        Window.ending(as_of, settings.window_days),
        segments=validated.segments,
    )
    parts.tables()
    t3, c3 = time.perf_counter(), tree_cpu()
    return {
        "events": len(validated.events),
        "start-up": t0 - t,
        **_stages((t0, t1, t2, t3), (c0, c1, c2, c3)),
    }


def _stages(wall: tuple[float, ...], cpu: tuple[float, ...]) -> dict[str, float]:
    """Wall and CPU seconds of each stage from the times at its bounds."""
    out: dict[str, float] = {}
    for i, stage in enumerate(STAGES[:-1]):
        out[stage] = wall[i + 1] - wall[i]
        out[f"cpu {stage}"] = cpu[i + 1] - cpu[i]
    out["total"], out["cpu total"] = wall[-1] - wall[0], cpu[-1] - cpu[0]
    return out


def run_spark(
    data: Path,
    model,  # noqa: ANN001
    settings,  # noqa: ANN001
    cores: int,
    scheme: str,
    event_log: Path | None = None,
    conf: dict[str, str] | None = None,
) -> dict[str, float]:
    from jobs.spark.engine import ModelPayload, recompute_spark, score_spark, spark_session, warm_up
    from jobs.spark.tables import load_tables

    as_of, exclusions = window_end(data), exclusions_of(data)
    extra = dict(conf or {})
    if event_log is not None:
        event_log.mkdir(parents=True, exist_ok=True)
        extra |= {
            "spark.eventLog.enabled": "true",
            "spark.eventLog.dir": event_log.as_uri(),
            "spark.eventLog.compress": "false",
        }
    t = time.perf_counter()
    spark = spark_session(settings, f"local[{cores}]", extra=extra)
    try:
        payload = ModelPayload.of(model)
        # Fixed cost, paid once per cluster: JVM, Python workers, model and enrichers on each.
        warm_up(spark, payload)
        t0, c0 = time.perf_counter(), tree_cpu()
        tables = load_tables(spark, data)  # validation runs here (counts for the report)
        t1, c1 = time.perf_counter(), tree_cpu()
        scores = score_spark(spark, tables, settings, payload=payload, scheme=scheme).cache()
        n = scores.count()
        t2, c2 = time.perf_counter(), tree_cpu()
        recompute_spark(spark, tables, settings, as_of=as_of, scores=scores, exclusions=exclusions)
        t3, c3 = time.perf_counter(), tree_cpu()
        jvm_mb, workers_mb = _tree_peaks(spark.sparkContext._gateway.proc.pid)
        tables.unpersist()
        scores.unpersist()
    finally:
        spark.stop()
    return {
        "events": n,
        "start-up": t0 - t,
        **_stages((t0, t1, t2, t3), (c0, c1, c2, c3)),
        "jvm MB": jvm_mb,
        "workers MB": workers_mb,
    }


def pin_to(cores: int) -> None:
    """Run this process, and every process it starts (the JVM, the Python workers), on ``cores``
    CPUs: ``local[1]`` alone uses about 1.4 cores (the JVM's garbage collector and shuffle
    threads), so without this "one core to two" would compare 1.4 cores with 2."""
    available = sorted(os.sched_getaffinity(0))
    if cores > len(available):
        sys.exit(f"--pin: local[{cores}] wants {cores} CPUs, this process may use {len(available)}")
    os.sched_setaffinity(0, available[:cores])


def run_one(engine: str, args: argparse.Namespace) -> dict[str, float]:
    """One engine in this process: ``local`` or ``spark:N`` (local[N])."""
    from core.settings import Settings

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
        cores = int(engine.split(":")[1])
        if args.pin:
            pin_to(cores)
        log = args.event_log / f"local-{cores}" if args.event_log else None
        conf = dict(item.split("=", 1) for item in args.conf)
        result = run_spark(data, model, spark_settings, cores, args.scheme, log, conf)
        result["peak MB"] = peak_mb() + result.pop("jvm MB") + result.pop("workers MB")
        return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="approximate events")
    ap.add_argument("--cores", default="1,2", help="Spark local[N] core counts to run")
    ap.add_argument("--scheme", default="tenant", choices=("tenant", "chunk"))
    ap.add_argument("--out", type=Path, default=Path("bench/out"))
    ap.add_argument("--skip-local", action="store_true")
    ap.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run Spark local[N] on exactly N CPUs (default; the local engine keeps them all)",
    )
    ap.add_argument(
        "--event-log", type=Path, help="write Spark event logs here and print the slowest stages"
    )
    ap.add_argument(
        "--conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Spark setting for the session (repeatable)",
    )
    ap.add_argument("--only", help=argparse.SUPPRESS)  # internal: one engine, JSON on stdout
    args = ap.parse_args()
    bad = [item for item in args.conf if "=" not in item]
    if bad:
        ap.error(f"--conf {bad[0]}: expected KEY=VALUE")

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
        cmd += [] if args.pin else ["--no-pin"]
        cmd += ["--event-log", str(args.event_log)] if args.event_log else []
        cmd += [f"--conf={item}" for item in args.conf]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"{engine} failed:\n{done.stderr[-3000:]}")
        name = "local" if engine == "local" else f"spark local[{engine.split(':')[1]}]"
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{name} done: {results[name]['total']:.1f} s", flush=True)

    report(results, data, args)
    if args.event_log:
        for log in sorted(args.event_log.glob("local-*/*")):
            print(f"\nslowest Spark stages, {log.parent.name}:")
            for seconds, tasks, name in slowest_stages(log):
                print(f"  {seconds:7.1f} s {tasks:5d} tasks  {name}")


STAGES = ("load + validate", "score", "metrics", "total")


def report(results: dict[str, dict[str, float]], data: Path, args: argparse.Namespace) -> None:
    """The table, then the ratios the targets are stated in (one run, same data)."""
    n = int(next(iter(results.values()))["events"])
    print(f"\nevents: {n:,} ({data}), Spark scheme: {args.scheme}, machine: {os.cpu_count()} cores")
    print(f"{'engine':<18}{'start-up':>10}" + "".join(f"{s:>22}" for s in STAGES) + f"{'peak':>10}")
    for name, r in results.items():
        cells = "".join(f"{r[s]:8.1f} s {n / r[s]:9,.0f}/s" for s in STAGES)
        print(f"{name:<18}{r['start-up']:8.1f} s{cells}{r['peak MB']:>7,.0f} MB")
    print(f"{'CPU seconds':<18}{'':>10}" + "".join(f"{s:>22}" for s in STAGES))
    for name, r in results.items():
        cells = "".join(f"{r[f'cpu {s}']:8.1f} s {r[f'cpu {s}'] / r[s]:6.2f} cores" for s in STAGES)
        print(f"{name:<18}{'':>10}{cells}")
    spark_runs = [k for k in results if k.startswith("spark")]
    if "local" in results:
        for name in spark_runs:
            ratios = ", ".join(f"{s} {results['local'][s] / results[name][s]:.2f}" for s in STAGES)
            print(f"events/s of {name} / local (target >= 0.5 per stage at local[2]): {ratios}")
    if len(spark_runs) > 1:
        a, b = results[spark_runs[0]], results[spark_runs[-1]]
        ups = ", ".join(f"{s} {a[s] / b[s]:.2f}x" for s in STAGES)
        print(f"Spark speed-up {spark_runs[0]} -> {spark_runs[-1]} (target >= 1.6x): {ups}")
    print("start-up (not in total): Spark session, Python workers, model + enrichers on each")
    print("peak memory: the engine's process; for Spark plus its JVM and Python workers")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"load average at the end (1/5/15 min): {load}  (other work on the machine skews this)")
    print(
        "Spark local[N] ran on exactly N CPUs (sched_setaffinity)"
        if args.pin
        else "Spark local[N] was not pinned: its JVM threads could use every CPU (--no-pin)"
    )
    if args.conf:
        print(f"Spark settings given: {', '.join(args.conf)}")


def slowest_stages(log: Path, top: int = 12) -> list[tuple[float, int, str]]:
    """The slowest completed stages of a Spark event log: (seconds, tasks, name)."""
    rows = []
    files = sorted(log.glob("events_*")) if log.is_dir() else [log]  # Spark 4: rolling logs
    lines = (line for f in files for line in f.open())
    for line in lines:
        if '"SparkListenerStageCompleted"' not in line:
            continue
        info = json.loads(line)["Stage Info"]
        if "Completion Time" in info and "Submission Time" in info:
            seconds = (info["Completion Time"] - info["Submission Time"]) / 1000
            rows.append((seconds, int(info.get("Number of Tasks", 0)), info.get("Stage Name", "?")))
    return sorted(rows, reverse=True)[:top]


if __name__ == "__main__":
    main()
