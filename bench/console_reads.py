"""Benchmark: the console's reads on one big tenant (issue 18: each page and API read <= 300 ms
server time, the impact preview <= 2 s, on a tenant with 1M messages).

    .venv/bin/python bench/console_reads.py                    # 1,000,000 messages
    .venv/bin/python bench/console_reads.py --messages 200000  # quicker

Builds a data directory of one tenant (messages over 30 days, ~1.3 events each, 40% bots,
campaigns, automations, segments), fills a fresh SQLite metrics store with ONE real worker cycle
(scores from the labels), then calls every API read and page in process (starlette TestClient,
so the time is the server's: routing, auth, store reads, rendering) ``--repeat`` times each and
prints p50/p99 per call, the reads' throughput and this process's peak memory.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from botfilter.settings import Settings  # noqa: E402
from botfilter.tokens import TokenStore  # noqa: E402
from console.app import create_app  # noqa: E402
from jobs.store import Store  # noqa: E402
from jobs.worker import run_cycle  # noqa: E402

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
    result = run_cycle(
        store, settings, data, now=now.to_pydatetime(), scorer=label_scorer, model_version="labels"
    )
    assert result.status == "succeeded", result
    print(f"store built in {time.perf_counter() - t0:.0f}s ({args.messages:,} messages)")
    token, _ = TokenStore(store.url).create([TENANT])
    from fastapi.testclient import TestClient

    app = create_app(settings, data_dir=data, store=store)
    client = TestClient(app)
    client.headers["Authorization"] = f"Bearer {token}"
    base = f"/api/tenants/{TENANT}"
    calls = {
        "GET settings": base + "/settings",
        "GET history": base + "/settings/history",
        "GET status": base + "/settings/status",
        "GET metrics/dashboard": base + "/metrics/dashboard",
        "GET metrics/campaigns": base + "/metrics/campaigns",
        "GET metrics/automations": base + "/metrics/automations",
        "GET metrics/segments": base + "/metrics/segments",
        "GET preview (email on)": base + "/settings/preview?email=on",
        "GET bot-interactions c1": base + "/campaigns/c1/bot-interactions",
    }
    print(f"{'call':28} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    total, count = 0.0, 0
    for name, url in calls.items():
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            resp = client.get(url)
            times.append((time.perf_counter() - start) * 1000)
            assert resp.status_code == 200, (url, resp.text[:200])
        total += sum(times) / 1000
        count += len(times)
        times.sort()
        p99 = times[min(len(times) - 1, int(0.99 * len(times)))]
        print(f"{name:28} {statistics.median(times):8.1f} {p99:8.1f} {max(times):8.1f}")
    print(
        f"reads: {count / total:.1f}/s over {count} calls (first bot-interactions call loads --data)"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (this process): {peak:.0f} MiB")
    store.close()


if __name__ == "__main__":
    main()
