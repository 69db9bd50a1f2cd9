"""Throughput of loading + validating a data directory (contract.load), on generated data.

Generates messages and events with numpy (no simulator), optionally breaks a fraction of the
rows in assorted ways, writes them as Parquet, CSV or JSON Lines, then times ``contract.load``
and prints rows/s, wall and CPU seconds and peak memory (ru_maxrss).

    .venv/bin/python bench/validate_throughput.py                       # 1M + 1M Parquet
    .venv/bin/python bench/validate_throughput.py --format csv --messages 200000 --events 200000
    .venv/bin/python bench/validate_throughput.py --bad-fraction 0.01 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

DAY_MS = 86_400_000
START_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{v}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{v} like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (compatible; MSIE 9.0; Windows NT 6.1; Trident/5.0; bot-{v})",
]


def _ids(prefix: str, numbers: np.ndarray, suffix: str = "") -> pa.Array:
    return pc.binary_join_element_wise(prefix, pa.array(numbers).cast(pa.string()), suffix, "")


def _masked(arr: pa.Array, mask: np.ndarray) -> pa.Array:
    return pc.if_else(pa.array(mask), pa.scalar(None, arr.type), arr)


def _pick(values: list[str], index: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(values, dtype=object)[index])


def _ipv4(rng: np.random.Generator, n: int, pool: int) -> pa.Array:
    octets = rng.integers(1, 255, size=(pool, 4))
    text = [".".join(map(str, row)) for row in octets]
    text[: pool // 10] = [f"2001:db8:{i:x}::{i % 97:x}" for i in range(pool // 10)]  # some IPv6
    return _pick(text, rng.integers(0, pool, n))


def generate(n_messages: int, n_events: int, seed: int = 7) -> tuple[pa.Table, pa.Table]:
    """Clean messages and events that pass every rule."""
    rng = np.random.default_rng(seed)
    tenant = rng.integers(0, 25, n_messages)
    sms = rng.random(n_messages) < 0.2
    campaign = rng.random(n_messages) < 0.7
    source = rng.integers(0, 3000, n_messages)
    sent = START_MS + rng.integers(0, 60 * DAY_MS, n_messages)
    delivered = rng.random(n_messages) < 0.95
    link_count = rng.integers(1, 12, n_messages)
    messages = pa.table(
        {
            "message_id": _ids("msg-", np.arange(n_messages)),
            "tenant_id": _ids("tenant-", tenant),
            "channel": pa.array(np.where(sms, "sms", "email").astype(object)),
            "campaign_id": _masked(_ids("cmp-", source), ~campaign),
            "automation_id": _masked(_ids("flow-", source), campaign),
            "contact_id": _ids("contact-", rng.integers(0, n_messages // 3 + 1, n_messages)),
            "recipient_domain": _masked(
                _ids("mail", rng.integers(0, 5000, n_messages), ".example"), sms
            ),
            "sent_at": pa.array(sent, pa.int64()).cast(pa.timestamp("ms", "UTC")),
            "delivered_at": pa.array(sent + rng.integers(50, 60_000, n_messages), mask=~delivered)
            .cast(pa.int64())
            .cast(pa.timestamp("ms", "UTC")),
            "link_count": pa.array(link_count),
        }
    )
    of = rng.integers(0, n_messages, n_events)
    click = sms[of] | (rng.random(n_events) < 0.4)
    ua_kind = rng.integers(0, len(USER_AGENTS), n_events)
    ua_text = [t.format(v=v) for t in USER_AGENTS for v in range(120)]
    events = pa.table(
        {
            "event_id": _ids("evt-", np.arange(n_events)),
            "tenant_id": _ids("tenant-", tenant[of]),
            "message_id": _ids("msg-", of),
            "type": pa.array(np.where(click, "click", "open").astype(object)),
            "occurred_at": pa.array(sent[of] + rng.integers(500, 7 * DAY_MS, n_events)).cast(
                pa.timestamp("ms", "UTC")
            ),
            "ip": _ipv4(rng, n_events, max(1000, n_events // 5)),
            "user_agent": _pick(ua_text, ua_kind * 120 + rng.integers(0, 120, n_events)),
            "url": _masked(
                _ids("https://shop.example/p/", rng.integers(0, 8000, n_events)), ~click
            ),
            "link_position": pa.array(
                rng.integers(0, 1 << 30, n_events) % link_count[of], mask=~click
            ),
            "is_hidden_link": pa.array(rng.random(n_events) < 0.01),
            "http_method": pa.array(
                np.where(rng.random(n_events) < 0.05, "HEAD", "GET").astype(object)
            ),
            "asn": pa.array(rng.integers(1, 400_000, n_events)),
            "label": pa.array(np.where(rng.random(n_events) < 0.3, "bot", "human").astype(object)),
        }
    )
    return messages, events


def break_rows(table: pa.Table, fraction: float, seed: int = 11) -> pa.Table:
    """Spoil ``fraction`` of the rows, each in one of several ways the contract refuses, and
    repeat a few rows (duplicates)."""
    if fraction <= 0:
        return table
    rng = np.random.default_rng(seed)
    frame = table.to_pandas()
    n = len(frame)
    rows = rng.choice(n, size=max(1, int(n * fraction)), replace=False)
    spoilers = {
        "message_id": ("channel", "fax"),
        "event_id": ("ip", "999.1.1.1"),
    }
    key = "event_id" if "event_id" in frame else "message_id"
    ways = np.array_split(rows, 4)
    column, value = spoilers[key]
    frame[column] = frame[column].astype(object)
    frame.loc[ways[0], column] = value
    frame.loc[ways[1], "tenant_id"] = None
    stamp = "occurred_at" if key == "event_id" else "sent_at"
    frame[stamp] = frame[stamp].astype(object)
    frame.loc[ways[2], stamp] = "not a time"
    if key == "event_id":
        frame.loc[ways[3], "message_id"] = "msg-missing"
    else:
        frame.loc[ways[3], "link_count"] = -1
    repeats = frame.iloc[rng.choice(n, size=max(1, n // 1000), replace=False)]
    frame = frame.astype({stamp: str})
    frame = pd.concat([frame, repeats.astype({stamp: str})], ignore_index=True)
    return pa.Table.from_pandas(frame, preserve_index=False)


def write(table: pa.Table, path: Path) -> None:
    """Write by extension; CSV and JSON Lines get ISO-8601 timestamps."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
        return
    frame = table.to_pandas()
    for name in frame.columns:
        if str(frame[name].dtype).startswith("datetime64"):
            frame[name] = frame[name].dt.strftime("%Y-%m-%dT%H:%M:%S.%f%z")
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_json(path, orient="records", lines=True, force_ascii=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--format", choices=("parquet", "csv", "jsonl"), default="parquet")
    parser.add_argument("--bad-fraction", type=float, default=0.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="Keep the generated data here.")
    args = parser.parse_args(argv)

    import contract

    with tempfile.TemporaryDirectory(prefix="botfilter-bench-") as tmp:
        data_dir = args.dir or Path(tmp)
        data_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        messages, events = generate(args.messages, args.events)
        messages = break_rows(messages, args.bad_fraction)
        events = break_rows(events, args.bad_fraction)
        write(messages, data_dir / f"messages.{args.format}")
        write(events, data_dir / f"events.{args.format}")
        rows = messages.num_rows + events.num_rows
        del messages, events
        print(f"generated {rows:,} rows ({args.format}) in {time.perf_counter() - started:.1f}s")

        walls, users, systems = [], [], []
        for _ in range(args.repeat):
            wall, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
            validated = contract.load(data_dir)
            after = resource.getrusage(resource.RUSAGE_SELF)
            walls.append(time.perf_counter() - wall)
            users.append(after.ru_utime - before.ru_utime)
            systems.append(after.ru_stime - before.ru_stime)
        report = validated.report.as_dict()
        best = min(walls)
        print(
            f"contract.load: {rows:,} rows; best wall {best:.2f}s "
            f"({rows / best:,.0f} rows/s); median wall {float(np.median(walls)):.2f}s; "
            f"median CPU user {float(np.median(users)):.2f}s + sys {float(np.median(systems)):.2f}s "
            f"over {args.repeat} runs (load average {os.getloadavg()[0]:.1f})"
        )
        for name in ("messages", "events"):
            t = report[name]
            print(
                f"  {name}: read {t['read']:,} kept {t['kept']:,} "
                f"quarantined {t['quarantined']:,} duplicates {t['duplicates']:,}"
            )
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak memory (ru_maxrss): {peak_mib:,.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
