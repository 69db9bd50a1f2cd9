"""Benchmark: what validating on Spark costs before any rule runs, against the local engine.

    .venv/bin/python bench/spark_validation_floor.py [--events 1000000] [--cores 2] [--repeat 2]

Issue 19 asks Spark's load + validate stage for half the local engine's events/s at
``local[2]``. Any Spark validation that runs the contract's own Python code must at least read
each table, hand every row to a Python worker and take it back, and cache the result for the
stages after it. This times those floors per table, on the data of ``bench/spark_vs_local.py``
(same world, Spark pinned to ``--cores`` CPUs), ``--repeat`` times in one session (the first
run also pays the JVM's JIT compilation, as the benchmark's single validation does):

- ``scan``: Spark reads every column (a checksum over each row);
- ``cache``: Spark reads the table and caches it (no Python);
- ``to Python and back + cache``: the same through ``mapInArrow`` with a Python function that
  returns its batches as they came;
- ``load_tables``: the engine's whole validation (``jobs.spark.tables.load_tables``).

Then the local engine's ``contract.load`` on the same directory, and the ratio of the floor
(both tables to Python and back, cached) to it: the best events/s ratio any such design could
reach before the rules across rows, which need at least one shuffle of their keys.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from spark_vs_local import pin_to, world  # a sibling script: bench/ is first on sys.path


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _as_read(batches: Iterator[Any]) -> Iterator[Any]:
    """A Python worker that hands its batches back unchanged."""
    yield from batches


def spark_floors(data: Path, cores: int, repeat: int) -> list[dict[str, float]]:
    """Per run: seconds of each floor and of ``load_tables``."""
    import tempfile

    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from core.settings import Settings
    from jobs.spark.engine import spark_session
    from jobs.spark.tables import _read_parquet, find_tables, load_tables

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp) / "home", threads=1)
        spark = spark_session(settings, f"local[{cores}]")
        try:
            files = find_tables(spark, str(data))
            runs = []
            for _ in range(repeat):
                run: dict[str, float] = {}
                for name in ("messages", "events"):
                    raw = _read_parquet(spark, files[name], name)
                    every = F.bit_xor(F.xxhash64(*raw.columns))
                    run[f"{name} scan"] = timed(
                        lambda raw=raw, every=every: raw.agg(every).collect()
                    )
                    cached = raw.persist(StorageLevel.MEMORY_AND_DISK)
                    run[f"{name} cache"] = timed(cached.count)
                    cached.unpersist()
                    through = raw.mapInArrow(_as_read, raw.schema)
                    through = through.persist(StorageLevel.MEMORY_AND_DISK)
                    run[f"{name} to Python and back + cache"] = timed(through.count)
                    through.unpersist()
                start = time.perf_counter()
                tables = load_tables(spark, data)
                run["load_tables"] = time.perf_counter() - start
                tables.unpersist()
                runs.append(run)
            return runs
        finally:
            spark.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="approximate events")
    ap.add_argument("--cores", type=int, default=2, help="Spark local[N], pinned to N CPUs")
    ap.add_argument("--repeat", type=int, default=2, help="runs in one Spark session")
    ap.add_argument("--out", type=Path, default=Path("bench/out"))
    args = ap.parse_args()
    if args.repeat < 1 or args.cores < 1:
        ap.error("--repeat and --cores must be at least 1")
    args.out.mkdir(parents=True, exist_ok=True)
    data = world(args.out, args.events)

    import contract

    local = timed(lambda: contract.load(data))  # before pinning: the local engine keeps every CPU
    pin_to(args.cores)
    runs = spark_floors(data, args.cores, args.repeat)

    print(f"\n{data}, Spark local[{args.cores}] on {args.cores} CPUs; seconds per run")
    for name in runs[0]:
        cells = "".join(f"{run[name]:9.1f}" for run in runs)
        print(f"{name:<38}{cells}")
    print(f"{'local engine: contract.load':<38}{local:9.1f}")
    for i, run in enumerate(runs, 1):
        floor = (
            run["messages to Python and back + cache"] + run["events to Python and back + cache"]
        )
        print(
            f"run {i}: floor {floor:.1f} s, events/s ratio at most {local / floor:.2f} "
            f"before any rule; load_tables {run['load_tables']:.1f} s, ratio "
            f"{local / run['load_tables']:.2f} (target >= 0.5)"
        )


if __name__ == "__main__":
    main()
