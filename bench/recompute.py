"""Benchmark: a 30-day recompute for one tenant with 1M messages and about 1M events, end to end.

    .venv/bin/python bench/recompute.py [--messages 1000000] [--database-url URL] [--keep DIR]

Stages timed (first run = scores of a file, returned by a stand-in scorer and stored, as a model's
would be; second run = a settings toggle that reuses the stored scores): contract load + validation, scores, metrics, store write, Parquet out. Prints the time
of each stage, messages/s and events/s, and the peak memory of the process (ru_maxrss).
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

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.settings import Settings  # noqa: E402
from jobs.exclusions import set_exclusion  # noqa: E402
from jobs.recompute import (  # noqa: E402
    RecomputeOptions,
    Scorer,
    load_data,
    read_scores_file,
    recompute,
)
from jobs.store import Store  # noqa: E402

AS_OF = pd.Timestamp("2024-05-01T00:00:00Z")
TENANT = "bench"


def generate(out: Path, n: int, seed: int, progress: Progress) -> tuple[int, Path]:
    """One tenant's messages, events, segments and a scores file, written as Parquet."""
    task = progress.add_task("generating data", total=5)
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    sms = rng.random(n) < 0.15
    kind = rng.choice(3, n, p=[0.65, 0.3, 0.05])
    contact = rng.integers(0, 300_000, n)
    domains = np.array([f"d{i}.example" for i in range(2000)])
    sent = AS_OF - pd.to_timedelta(rng.uniform(0, 30 * 86_400, n), unit="s")
    delivered = sent + pd.to_timedelta(rng.exponential(30, n), unit="s")
    messages = pd.DataFrame(
        {
            "message_id": np.char.add("m", np.arange(n).astype(str)),
            "tenant_id": TENANT,
            "channel": np.where(sms, "sms", "email"),
            "campaign_id": np.where(
                kind == 0, np.char.add("c", rng.integers(0, 200, n).astype(str)), None
            ),
            "automation_id": np.where(
                kind == 1, np.char.add("a", rng.integers(0, 50, n).astype(str)), None
            ),
            "contact_id": np.char.add("k", contact.astype(str)),
            "recipient_domain": np.where(
                sms, None, domains[np.minimum(rng.zipf(1.3, n), 2000) - 1]
            ),
            "sent_at": sent,
            "delivered_at": delivered.where(rng.random(n) > 0.05),
        }
    )
    messages.to_parquet(out / "messages.parquet", index=False)
    progress.advance(task)

    per = rng.poisson(1.0, n)
    per[messages["delivered_at"].isna().to_numpy()] = 0
    owner = np.repeat(np.arange(n), per)
    k = len(owner)
    is_click = (rng.random(k) < 0.4) | sms[owner]
    bot = rng.random(k) < 0.35
    ip = [".".join(map(str, row)) for row in rng.integers(1, 255, (k, 4))]
    uas = np.array(
        [
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile",
            "Mozilla/5.0",
            "facebookexternalhit/1.1",
        ]
    )
    events = pd.DataFrame(
        {
            "event_id": np.char.add("e", np.arange(k).astype(str)),
            "tenant_id": TENANT,
            "message_id": messages["message_id"].to_numpy()[owner],
            "type": np.where(is_click, "click", "open"),
            "occurred_at": delivered[owner] + pd.to_timedelta(rng.exponential(3600, k), unit="s"),
            "ip": ip,
            "user_agent": uas[rng.integers(0, 4, k)],
            "http_method": "GET",
            "label": np.where(bot, "bot", "human"),
        }
    )
    events.to_parquet(out / "events.parquet", index=False)
    progress.advance(task)

    seg = pd.DataFrame(
        {
            "tenant_id": TENANT,
            "segment_id": np.char.add("s", rng.integers(0, 40, 400_000).astype(str)),
            "contact_id": np.char.add("k", rng.integers(0, 300_000, 400_000).astype(str)),
        }
    ).drop_duplicates()
    seg.to_parquet(out / "segments.parquet", index=False)
    progress.advance(task)

    scores = pd.DataFrame(
        {
            "event_id": events["event_id"],
            "bot_score": np.where(bot, 0.93, 0.04),
            "is_bot": bot,
            "reasons": [["secs_since_delivery", "asn_is_datacenter"] if b else [] for b in bot],
            "model_version": "bench/1",
        }
    )
    scores_file = out.parent / "scores.parquet"
    scores.to_parquet(scores_file, index=False)
    progress.advance(task, 2)
    return k, scores_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", default=None, help="default: a SQLite file in a tmp dir")
    parser.add_argument("--keep", type=Path, default=None, help="keep the generated data here")
    args = parser.parse_args()

    console = Console()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-recompute-"))
    data_dir = work / "data"
    with Progress(console=console, transient=True) as progress:
        n_events, scores_file = generate(data_dir, args.messages, args.seed, progress)
    console.print(f"{args.messages:,} messages, {n_events:,} events in {data_dir}")

    settings = Settings(home=work / "home")
    store = Store(args.database_url or f"sqlite:///{work / 'home' / 'metrics.db'}")

    def timed(fn, *args):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn(*args)
        return out, time.perf_counter() - wall, time.process_time() - cpu

    def run(pre: dict[str, tuple[float, float]], scorer: Scorer):
        """Load via the contract, recompute; wall and CPU seconds per stage."""
        validated, load_wall, load_cpu = timed(load_data, data_dir)
        options = RecomputeOptions(
            as_of=AS_OF,
            tenants=[TENANT],
            scorer=scorer,
            model_version="bench/1",
            out=work / "out",
            progress=True,
            console=console,
        )
        result = recompute(store, settings, validated, options)
        wall = {"contract load": load_wall, **{k: v[0] for k, v in pre.items()}, **result.timings}
        cpu = {"contract load": load_cpu, **{k: v[1] for k, v in pre.items()}, **result.cpu}
        return result, (wall, cpu)

    scores, read_wall, read_cpu = timed(read_scores_file, scores_file)
    runs = {}

    def from_file(_tables):  # stands in for the model: a scores file alone is never stored
        return scores

    _, runs["first run (scores read from a file by a stand-in scorer, stored)"] = run(
        {"read scores file": (read_wall, read_cpu)}, from_file
    )

    set_exclusion(store, TENANT, "email", True)
    set_exclusion(store, TENANT, "sms", True)

    def no_scoring(_tables):  # every event has a stored score of this version
        raise AssertionError("stored scores should have been reused")

    second, runs["toggle run (settings change, stored scores)"] = run({}, no_scoring)
    assert second.scores_source == "store" and second.queue_applied == 2

    for title, (wall, cpu) in runs.items():
        table = Table(title=title, title_justify="left")
        table.add_column("stage")
        table.add_column("wall s", justify="right")
        table.add_column("cpu s", justify="right")
        for stage in wall:
            table.add_row(stage, f"{wall[stage]:.2f}", f"{cpu[stage]:.2f}")
        total = sum(wall.values())
        table.add_row("[bold]total", f"[bold]{total:.2f}", f"[bold]{sum(cpu.values()):.2f}")
        console.print(table)
        console.print(
            f"  {args.messages / total:,.0f} messages/s, {n_events / total:,.0f} events/s "
            "end to end (target: 1M messages in <= 20 s)"
        )
    load = os.getloadavg()[0]
    console.print(f"load average during the run: {load:.1f} on {os.cpu_count()} cores")
    rows = {name: len(frame) for name, frame in second.tables.items()}
    console.print(f"tables: {rows}; partition rows written: {second.rows_written:,}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    console.print(f"peak memory (ru_maxrss): {peak:,.0f} MiB; store: {store.safe_url}")
    store.close()
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
