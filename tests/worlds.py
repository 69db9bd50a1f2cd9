"""Worlds shared by the recompute, worker, reliability and console tests: a random labelled
world full of edge cases, scores from its labels, and the console's tiny store. Imported only by
tests/conftest.py, which hands them out as fixtures."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from console.app import create_app
from core.settings import Settings
from core.tokens import TokenStore
from jobs.store import Store
from jobs.worker import CycleOptions, CycleResult, run_cycle


def random_world(seed: int, as_of: pd.Timestamp, n: int = 2500) -> dict[str, pd.DataFrame]:
    """Labelled messages/events/segments: SMS, undelivered, events after as_of, messages before
    and after the window, clicks without opens, overlapping and duplicated segment rows."""
    rng = np.random.default_rng(seed)
    tenants = np.array(["t1", "t2", "t3"])
    t = tenants[rng.integers(0, 3, n)]
    channel = np.where(rng.random(n) < 0.7, "email", "sms")
    kind = rng.choice(["campaign", "automation", "none"], n, p=[0.6, 0.3, 0.1])
    ids = np.array([f"m{i:05d}" for i in range(n)])
    sent = as_of - pd.to_timedelta(rng.uniform(-2, 36, n), unit="D")
    delivered = sent + pd.to_timedelta(rng.exponential(120, n), unit="s")
    delivered = delivered.where(rng.random(n) > 0.12)  # ~12% undelivered
    domains = np.array(["gmail.com", "corp.example", "outlook.com", "bank.example"])
    messages = pd.DataFrame(
        {
            "message_id": ids,
            "tenant_id": t,
            "channel": channel,
            "campaign_id": np.where(
                kind == "campaign", [f"c{i}" for i in rng.integers(0, 12, n)], None
            ),
            "automation_id": np.where(
                kind == "automation", [f"a{i}" for i in rng.integers(0, 5, n)], None
            ),
            "contact_id": [f"k{i}" for i in rng.integers(0, 300, n)],
            "recipient_domain": np.where(channel == "email", domains[rng.integers(0, 4, n)], None),
            "sent_at": sent,
            "delivered_at": delivered,
        }
    )
    per = rng.poisson(1.3, n)
    owner = np.repeat(np.arange(n), per)
    k = len(owner)
    etype = np.where(rng.random(k) < 0.55, "open", "click")
    etype = np.where(channel[owner] == "sms", "click", etype)
    occurred = sent[owner] + pd.to_timedelta(rng.exponential(1.5, k), unit="D")
    bot = rng.random(k) < 0.4
    events = pd.DataFrame(
        {
            "event_id": [f"e{i:06d}" for i in range(k)],
            "tenant_id": t[owner],
            "message_id": ids[owner],
            "type": etype,
            "occurred_at": occurred,
            "label": np.where(bot, "bot", "human"),
            "bot_kind": np.where(bot, rng.choice(["security_scanner", "link_preview"], k), None),
        }
    )
    seg_rows = [
        (tenant, f"s{s}", f"k{c}")
        for tenant in tenants
        for s in range(4)
        for c in rng.choice(300, 60, replace=True)  # repeats: duplicated membership rows
    ]
    segments = pd.DataFrame(seg_rows, columns=["tenant_id", "segment_id", "contact_id"])
    return {"messages": messages, "events": events, "segments": segments}


def label_scores(events: pd.DataFrame) -> pd.DataFrame:
    """A scores table straight from the labels."""
    bot = events["label"] == "bot"
    return pd.DataFrame(
        {
            "event_id": events["event_id"],
            "bot_score": np.where(bot, 0.95, 0.05),
            "is_bot": bot,
            "reasons": [["label"] if b else [] for b in bot],
            "model_version": "labels",
        }
    )


# The console world's clock: its data ends now, so the pages' default windows show it.
NOW = pd.Timestamp.now(tz="UTC").floor("h")
AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "python-requests/2.31.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
)
IPS = ("40.94.12.7", "8.8.8.8", "203.0.113.9", "2001:db8::1")


class LabelScorer:
    """Scores from the labels: bots get 0.95 and two real feature names as reasons."""

    def __call__(self, tables) -> pd.DataFrame:
        e = tables.events
        bot = (e["label"] == "bot").to_numpy()
        return pd.DataFrame(
            {
                "event_id": e["event_id"],
                "tenant_id": e["tenant_id"],  # two tenants may share an event id
                "bot_score": np.where(bot, 0.95, 0.05),
                "is_bot": bot,
                "reasons": [
                    ["secs_since_delivery", "click_without_open"] if b else [] for b in bot
                ],
                "model_version": "labels",
            }
        )


def build(root: Path, n: int = 900, url: str | None = None) -> tuple[Settings, Store, Path]:
    """Settings with a private home, its store (``url``, else SQLite in the home) filled by one
    worker cycle, the data dir."""
    world = random_world(7, NOW, n=n)
    rng = np.random.default_rng(7)
    events = world["events"]
    events["ip"] = np.array(IPS)[rng.integers(0, len(IPS), len(events))]
    events["user_agent"] = np.array(AGENTS)[rng.integers(0, len(AGENTS), len(events))]
    data = root / "data"
    data.mkdir(parents=True)
    for name, frame in world.items():
        frame.to_parquet(data / f"{name}.parquet", index=False)
    settings = Settings(home=root / "home")
    store = Store(url) if url else Store.open(settings)
    result = cycle(store, settings, data)
    assert result.status == "succeeded", result
    return settings, store, data


def cycle(store: Store, settings: Settings, data: Path) -> CycleResult:
    """One worker cycle at :data:`NOW` (applies queued setting changes)."""
    options = CycleOptions(scorer=LabelScorer(), model_version="labels")
    return run_cycle(store, settings, data, options, now=NOW.to_pydatetime())


@contextlib.contextmanager
def console_env(root: Path, url: str | None = None) -> Iterator[dict]:
    """The tiny store, tokens for t1, t2 and an admin, and the console app; BOTFILTER_*
    variables of the caller's environment are hidden meanwhile (then restored)."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("BOTFILTER_")}
    try:
        settings, store, data = build(root, url=url)
        tokens = TokenStore(store.url)
        env = {"settings": settings, "store": store, "data": data}
        for name, tenants in (("t1", ["t1"]), ("t2", ["t2"]), ("admin", [])):
            env[name], info = tokens.create(tenants, admin=not tenants)
            env[f"{name}_id"] = info.token_id
        env["app"] = create_app(settings, store=store, tokens=tokens)
        yield env
        store.close()
        tokens.close()
    finally:
        os.environ.update(saved)


def parts_world(data: Path, as_of: pd.Timestamp) -> Path:
    """A Parquet data directory at ``data``: three tenants of about 1,000 events, a settings
    table that turns the email filter on for t1, a broken event, a repeated one, and an event
    of t2 naming a message that only t1 has (its tenants fall in different parts). A tenth of
    t3's messages and their events say ``"t3 "``, which the contract reads as ``t3``: parts
    must keep them with t3's other rows."""
    world = random_world(11, as_of, n=2400)
    messages, events = world["messages"], world["events"]
    padded = messages.loc[messages["tenant_id"] == "t3", "message_id"].iloc[::10]
    messages.loc[messages["message_id"].isin(padded), "tenant_id"] = "t3 "
    events.loc[events["message_id"].isin(padded), "tenant_id"] = "t3 "
    broken = events.iloc[:1].assign(event_id="bad", type="swipe")
    t1 = events.loc[events["tenant_id"] == "t1"].iloc[:1]
    mismatch = t1.assign(event_id="other-tenants-message", tenant_id="t2")
    world["events"] = pd.concat([events, broken, events.iloc[5:6], mismatch], ignore_index=True)
    world["settings"] = pd.DataFrame(
        {
            "tenant_id": ["t1", "t2"],
            "exclude_bots_email": [True, False],
            "exclude_bots_sms": [False, True],
            "updated_at": [as_of - pd.Timedelta(days=1)] * 2,
        }
    )
    data.mkdir(parents=True)
    for name, frame in world.items():
        frame.to_parquet(data / f"{name}.parquet", index=False)
    return data
