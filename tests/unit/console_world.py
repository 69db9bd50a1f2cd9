"""A tiny store for the console tests: three tenants' data directory, recomputed by the real
worker cycle with scores taken from the labels (reasons are real feature names)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from botfilter.settings import Settings
from jobs.store import Store
from jobs.worker import run_cycle
from tests.integration.test_recompute_reference import random_world

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


def cycle(store: Store, settings: Settings, data: Path):
    """One worker cycle at :data:`NOW` (applies queued setting changes)."""
    return run_cycle(
        store, settings, data, now=NOW.to_pydatetime(), scorer=LabelScorer(), model_version="labels"
    )


@contextlib.contextmanager
def console_env(root: Path, url: str | None = None) -> Iterator[dict]:
    """The tiny store, tokens for t1, t2 and an admin, and the console app; BOTFILTER_*
    variables of the caller's environment are hidden meanwhile (then restored)."""
    from botfilter.tokens import TokenStore
    from console.app import create_app

    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("BOTFILTER_")}
    try:
        settings, store, data = build(root, url=url)
        tokens = TokenStore(store.url)
        env = {"settings": settings, "store": store, "data": data}
        for name, tenants in (("t1", ["t1"]), ("t2", ["t2"]), ("admin", [])):
            env[name], info = tokens.create(tenants, admin=not tenants)
            env[f"{name}_id"] = info.token_id
        env["app"] = create_app(settings, data_dir=data, store=store, tokens=tokens)
        yield env
        store.close()
        tokens.close()
    finally:
        os.environ.update(saved)
