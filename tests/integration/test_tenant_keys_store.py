"""Issue 14 items 3 and 9 on both store back ends, through the real command line: two tenants
sharing message and event ids, and identifiers holding a NUL (which PostgreSQL cannot store)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.store import Store

pytestmark = pytest.mark.integration

SENT = "2025-01-10T00:00:00Z"


def message(tenant: str, message_id: str, campaign: str) -> dict:
    return {
        "message_id": message_id,
        "tenant_id": tenant,
        "channel": "email",
        "campaign_id": campaign,
        "contact_id": "k1",
        "sent_at": SENT,
        "delivered_at": SENT,
    }


def event(tenant: str, event_id: str, message_id: str) -> dict:
    return {
        "event_id": event_id,
        "tenant_id": tenant,
        "message_id": message_id,
        "type": "open",
        "occurred_at": "2025-01-10T00:05:00Z",
    }


def lines(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def test_shared_ids_and_nul_identifiers(tenant_scores, store_url: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "messages.jsonl").write_text(
        lines(
            [
                message("t1", "m1", "c1"),
                message("t2", "m1", "c1"),
                message("t2", "m2", "c\x00x"),  # NUL: quarantined, on SQLite as on PostgreSQL
                message("t\x003", "m1", "c1"),
            ]
        )
    )
    (data / "events.jsonl").write_text(
        lines([event("t1", "e1", "m1"), event("t2", "e1", "m1"), event("t2", "e2", "m2")])
    )
    scores = tmp_path / "scores.parquet"
    tenant_scores().to_parquet(scores)
    exe = Path(sys.executable).with_name("botfilter")
    env = {
        "BOTFILTER_HOME": str(tmp_path / "home"),
        "BOTFILTER_DATABASE_URL": store_url,
        "PATH": "/usr/bin:/bin",
    }

    def botfilter(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(exe), *args], env=env, capture_output=True, text=True, timeout=300
        )

    for tenant in ("t1", "t2"):
        done = botfilter("settings", "set", "--tenant", tenant, "--email", "on", "--create")
        assert done.returncode == 0, done.stderr
    done = botfilter(
        "recompute", "--data", str(data), "--scores", str(scores), "--as-of", "2025-01-20"
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "control character in campaign_id" in done.stdout
    assert "control character in tenant_id" in done.stdout
    store = Store(store_url)
    try:
        camp = store.read_view("campaign_metrics").set_index("tenant_id")
    finally:
        store.close()
    assert sorted(camp.index) == ["t1", "t2"]
    # t1's e1 is a bot (excluded), t2's e1 a person: each tenant its own message and score
    assert camp.loc["t1", "opens_total"] == 0 and camp.loc["t1", "bot_opens_excluded"] == 1
    assert camp.loc["t2", "opens_total"] == 1 and camp.loc["t2", "bot_opens_excluded"] == 0
