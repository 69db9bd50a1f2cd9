"""Benchmark: `botfilter simulate` throughput (events/s) and peak memory for ~1M events.

Usage: .venv/bin/python bench/simulate_throughput.py [--tenants N] [--days N] [--contacts N]
Writes the Parquet files to a temporary directory (deleted afterwards) and prints events/s for
generation alone and for generation plus writing, and the peak resident memory.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=42, help="42 tenants x 30 days ~ 1M events")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--contacts", type=int, default=4000, help="median contacts per tenant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", default="default")
    args = parser.parse_args()

    from features.enrichment.reference import load_reference
    from simulation import SimConfig, generate, simulate

    t0 = time.perf_counter()
    load_reference()
    t_ref = time.perf_counter() - t0
    config = SimConfig.variant(args.profile, contacts_per_tenant=args.contacts)

    t0, c0 = time.perf_counter(), time.process_time()
    tables = generate(args.tenants, args.days, args.seed, config)
    t_gen, c_gen = time.perf_counter() - t0, time.process_time() - c0
    n_events = len(tables["events"])
    n_messages = len(tables["messages"])
    del tables

    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        summary = simulate(Path(tmp) / "world", args.tenants, args.days, args.seed, config)
        t_all, c_all = time.perf_counter() - t0, time.process_time() - c0
        size = sum(p.stat().st_size for p in (Path(tmp) / "world").iterdir())

    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"world: tenants={args.tenants} days={args.days} contacts/tenant~{args.contacts} "
        f"profile={args.profile} seed={args.seed}"
    )
    print(f"messages: {n_messages:,}  events: {n_events:,}  parquet: {size / 2**20:.1f} MiB")
    print(f"reference load: {t_ref:.2f} s (once per process)")
    # CPU seconds too: on a shared 2-core machine wall time depends on the neighbours.
    print(
        f"generate:        {t_gen:.2f} s wall ({c_gen:.2f} s CPU)  -> "
        f"{n_events / t_gen:,.0f} events/s wall, {n_events / c_gen:,.0f} events/CPU-s"
    )
    print(
        f"generate+write:  {t_all:.2f} s wall ({c_all:.2f} s CPU)  -> "
        f"{summary.events / t_all:,.0f} events/s wall, {summary.events / c_all:,.0f} events/CPU-s"
    )
    print(
        f"bot share: {summary.bot_share}  by type: "
        + ", ".join(f"{k} {v:.1%}" for k, v in summary.bot_share_by_type.items())
    )
    print(f"peak memory (ru_maxrss): {peak_mib:,.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
