"""Benchmark: where one `botfilter score` worker's CPU goes, stage by stage, per event.

    .venv/bin/python bench/score_stages.py [--data bench/out/worlds/2.65m] [--parts 14]

Runs the stages of ``scoring.batch.score_part`` one after the other in this process, on the
first ``--parts`` parts of a data directory as ``botfilter score`` cuts them (whole tenants,
``contract.parts.PART_EVENTS`` events each), with the champion of the end-to-end benchmark's
data home (``bench/cli_end_to_end.py`` trains it and simulates the worlds). Prints, per stage,
CPU microseconds per event (``time.process_time``: the stages' helper threads count), its share,
events/s of the whole, peak memory and the machine's reference loop. The first part is a
warm-up (compiled kernels, lazy tables) and is not counted. Reading (the part handed over
through memory, as the command does) is done by the command's main process and the worker;
the other stages by its workers; here all run in one process.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from _machine import machine_speed  # a sibling module: bench/ is first on sys.path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("read", "validate", "context", "features", "score", "scores table")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT / "bench" / "out" / "worlds" / "2.65m")
    ap.add_argument("--parts", type=int, default=14, help="parts to time after the warm-up one")
    ap.add_argument("--home", type=Path, default=ROOT / "bench" / "out" / "home")
    args = ap.parse_args()
    if not (args.data / "events.parquet").exists():
        raise SystemExit(f"{args.data}: no events.parquet (bench/cli_end_to_end.py simulates it)")
    os.environ["BOTFILTER_HOME"] = str(args.home)

    from contract.parts import TenantParts, shm_dir, unshare_raw
    from contract.validate import CODED, validate_raw_arrow
    from core.settings import Settings
    from features.coded import as_objects
    from features.pipeline import Enrichers, context_arrays_arrow, feature_block
    from scoring.batch import SCORED_COLUMNS
    from scoring.registry import load_model

    print(f"machine: {machine_speed()}")
    model = load_model(Settings())
    model.threads = 1  # a worker's own share: the command runs one worker per core
    enrichers = Enrichers.load()
    _ = enrichers.ip, enrichers.ua
    parts = TenantParts(args.data, contract_only=True, dictionaries=True)
    tmp = tempfile.mkdtemp(prefix="score-stages-", dir=shm_dir())
    spent = dict.fromkeys(STAGES, 0.0)
    events = 0
    for i in range(min(len(parts), args.parts + 1)):
        laps: list[float] = [time.process_time()]
        # as the command hands a part over: few-valued text as dictionaries, through memory
        raws = unshare_raw(parts.share(i, Path(tmp) / f"part-{i}"), keep=CODED)
        laps.append(time.process_time())
        validated = validate_raw_arrow(raws, referenced_only=True, columns=SCORED_COLUMNS)
        laps.append(time.process_time())
        tables, rows = validated.tables, validated.event_messages
        assert rows is not None
        cols = context_arrays_arrow(tables["events"], tables["messages"], rows)
        laps.append(time.process_time())
        block = feature_block(cols, enrichers)
        laps.append(time.process_time())
        channel, event_type = as_objects(cols["channel"]), as_objects(cols["type"])
        scored = model.score_block(block, channel, event_type)
        laps.append(time.process_time())
        tenants = as_objects(cols["tenant_id"])
        table = scored.arrow_table(cols["event_id"], model.version, tenants)
        laps.append(time.process_time())
        if i > 0:  # part 0 warms up
            events += table.num_rows
            for stage, start, end in zip(STAGES, laps[:-1], laps[1:], strict=True):
                spent[stage] += end - start
    shutil.rmtree(tmp, ignore_errors=True)
    total = sum(spent.values())
    if not events:
        raise SystemExit("no events scored: give --parts 1 or more on a directory with events")
    print(f"{events:,} events in {min(len(parts) - 1, args.parts)} parts of {args.data}")
    for stage, seconds in spent.items():
        print(
            f"  {stage:<13} {1e6 * seconds / events:6.2f} us/event  {100 * seconds / total:5.1f}%"
        )
    print(
        f"  {'all':<13} {1e6 * total / events:6.2f} us/event  {events / total:,.0f} events/s (one core)"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory {peak:,.0f} MiB; machine at the end: {machine_speed()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
