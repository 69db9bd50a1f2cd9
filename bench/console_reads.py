"""Benchmark: the console's reads on one big tenant (issue 18: each page and API read <= 300 ms
server time, the impact preview <= 2 s, on a tenant with 1M messages).

    .venv/bin/python bench/console_reads.py                    # 1,000,000 messages
    .venv/bin/python bench/console_reads.py --messages 200000  # quicker

Builds a data directory of one tenant (messages over 30 days, ~1.3 events each, 40% bots,
campaigns, automations, segments), fills a fresh SQLite metrics store with ONE real worker cycle
(scores from the labels), then calls every API read and page in process (starlette TestClient,
so the time is the server's: routing, auth, store reads, rendering) ``--repeat`` times each and
prints per call the first (cold: a fresh app, nothing cached) and then p50/p99 of the next
``--repeat``, the reads' throughput, the stored window events (batches, events, bytes), the
machine's load average and this process's peak memory. HTML pages are read through a logged-in
session, like a browser. The console reads the store only (no data directory).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from console.app import create_app  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.tokens import TokenStore  # noqa: E402
from jobs.store import Store  # noqa: E402
from jobs.worker import CycleOptions, run_cycle  # noqa: E402

TENANT = "big"


def world(n: int, now: pd.Timestamp, seed: int = 1) -> dict[str, pd.DataFrame]:
    """One tenant's messages, events and segments, labelled."""
    rng = np.random.default_rng(seed)
    idx = np.arange(n)
    channel = np.where(rng.random(n) < 0.75, "email", "sms")
    kind = rng.random(n)
    sent = now - pd.to_timedelta(rng.uniform(0.01, 29.9, n), unit="D")
    messages = pd.DataFrame(
        {
            "message_id": np.char.add("m", idx.astype(str)),
            "tenant_id": TENANT,
            "channel": channel,
            "campaign_id": np.where(
                kind < 0.7, np.char.add("c", rng.integers(0, 300, n).astype(str)), None
            ),
            "automation_id": np.where(
                kind >= 0.7, np.char.add("a", rng.integers(0, 30, n).astype(str)), None
            ),
            "contact_id": np.char.add("k", rng.integers(0, 200_000, n).astype(str)),
            "recipient_domain": np.where(channel == "email", "example.com", None),
            "sent_at": sent,
            "delivered_at": sent + pd.to_timedelta(rng.exponential(60, n), unit="s"),
        }
    )
    per = rng.poisson(1.3, n)
    owner = np.repeat(idx, per)
    k = len(owner)
    etype = np.where((rng.random(k) < 0.55) & (channel[owner] == "email"), "open", "click")
    bot = rng.random(k) < 0.4
    events = pd.DataFrame(
        {
            "event_id": np.char.add("e", np.arange(k).astype(str)),
            "tenant_id": TENANT,
            "message_id": messages["message_id"].to_numpy()[owner],
            "type": etype,
            "occurred_at": sent[owner] + pd.to_timedelta(rng.exponential(0.5, k), unit="D"),
            "ip": np.where(bot, "40.94.12.7", "81.2.69.160"),
            "user_agent": np.where(bot, "python-requests/2.31.0", "Mozilla/5.0 (iPhone)"),
            "label": np.where(bot, "bot", "human"),
        }
    )
    events = events[events["occurred_at"] < now]
    segments = pd.DataFrame(
        {
            "tenant_id": TENANT,
            "segment_id": np.char.add("s", rng.integers(0, 20, 50_000).astype(str)),
            "contact_id": np.char.add("k", rng.integers(0, 200_000, 50_000).astype(str)),
        }
    ).drop_duplicates()
    return {"messages": messages, "events": events, "segments": segments}


def label_scorer(tables) -> pd.DataFrame:
    """Scores straight from the labels (the benchmark is about the console, not the model)."""
    bot = (tables.events["label"] == "bot").to_numpy()
    return pd.DataFrame(
        {
            "event_id": tables.events["event_id"],
            "bot_score": np.where(bot, 0.95, 0.05),
            "is_bot": bot,
            "reasons": [["secs_since_delivery"] if b else [] for b in bot],
            "model_version": "labels",
        }
    )


ENTRY = {"list": "block", "kind": "ip", "value": "40.94.12.0/24", "note": "bench"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    now = pd.Timestamp.now(tz="UTC").floor("h")
    root = Path(tempfile.mkdtemp(prefix="bench-console-"))
    t0 = time.perf_counter()
    data = root / "data"
    data.mkdir()
    for name, frame in world(args.messages, now).items():
        frame.to_parquet(data / f"{name}.parquet", index=False)
    settings = Settings(home=root / "home")
    store = Store.open(settings)
    options = CycleOptions(scorer=label_scorer, model_version="labels")
    result = run_cycle(store, settings, data, options, now=now.to_pydatetime())
    assert result.status == "succeeded", result
    print(f"store built in {time.perf_counter() - t0:.0f}s ({args.messages:,} messages)")
    size = store.window_events_size(TENANT)
    print(
        f"window_events: {size['batches']:,} batches, {size['events']:,} events, "
        f"{size['bytes'] / 2**20:.1f} MiB ({size['bytes'] / max(size['events'], 1):.1f} B/event)"
    )
    token, _ = TokenStore(store.url).create([TENANT])
    from fastapi.testclient import TestClient

    app = create_app(settings, store=store)
    client = TestClient(app)
    client.headers["Authorization"] = f"Bearer {token}"
    base = f"/api/tenants/{TENANT}"
    pages = TestClient(app)
    form = pages.get("/login").text
    csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    pages.post("/login", data={"token": token, "csrf": csrf})
    page = f"/t/{TENANT}"
    calls = {
        "GET settings": (client, base + "/settings"),
        "GET history": (client, base + "/settings/history"),
        "GET status": (client, base + "/settings/status"),
        "GET metrics/dashboard": (client, base + "/metrics/dashboard"),
        "GET metrics/campaigns": (client, base + "/metrics/campaigns"),
        "GET metrics/automations": (client, base + "/metrics/automations"),
        "GET metrics/segments": (client, base + "/metrics/segments"),
        "GET bot-interactions c1": (client, base + "/campaigns/c1/bot-interactions"),
        "GET bot-interactions a1": (client, base + "/automations/a1/bot-interactions"),
        "GET bot-interactions c1 csv": (client, base + "/campaigns/c1/bot-interactions?format=csv"),
        "GET lists": (client, base + "/lists"),
        "GET lists/audit": (client, base + "/lists/audit"),
        "page settings": (pages, page + "/settings"),
        "page dashboard": (pages, page + "/dashboard"),
        "page campaigns": (pages, page + "/campaigns"),
        "page automations": (pages, page + "/automations"),
        "page segments": (pages, page + "/segments"),
        "page drill-down c1": (pages, page + "/campaigns/c1"),
        "page lists": (pages, page + "/lists"),
        "GET preview (email on)": (client, base + "/settings/preview?email=on"),
        "POST lists/dry-run": (client, None),
    }
    print(f"{'call':28} {'cold ms':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    total, count = 0.0, 0
    for name, (who, url) in calls.items():
        times = []
        for _ in range(args.repeat + 1):
            start = time.perf_counter()
            resp = who.post(base + "/lists/dry-run", json=ENTRY) if url is None else who.get(url)
            times.append((time.perf_counter() - start) * 1000)
            assert resp.status_code == 200, (url, resp.text[:200])
        cold, times = times[0], sorted(times[1:])
        total += sum(times) / 1000
        count += len(times)
        p99 = times[min(len(times) - 1, int(0.99 * len(times)))]
        print(f"{name:28} {cold:8.1f} {statistics.median(times):8.1f} {p99:8.1f} {times[-1]:8.1f}")
    print(f"reads: {count / total:.1f}/s over {count} calls")
    print("load average (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (this process): {peak:.0f} MiB")
    store.close()


if __name__ == "__main__":
    main()
