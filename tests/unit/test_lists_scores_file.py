"""`botfilter score`'s file carries the tenants' lists as the API's answers do (an audit: 160 of
922 events differed, every one of a tenant with entries)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from jobs.lists import storage as lists
from jobs.lists.apply import apply_lists_to_file
from jobs.store import Store
from scoring.scores_file import read_scores, write_scores

MESSAGES = (
    "message_id,tenant_id,channel,contact_id,sent_at,delivered_at,recipient_domain\n"
    "m1,t1,email,k1,2025-01-01T00:00:00Z,2025-01-01T00:00:01Z,a.com\n"
    "m1,t2,email,k1,2025-01-01T00:00:00Z,2025-01-01T00:00:01Z,a.com\n"
)
EVENTS = (
    "event_id,tenant_id,message_id,type,occurred_at,ip,user_agent\n"
    "e1,t1,m1,open,2025-01-01T00:01:00Z,10.0.0.1,Mozilla/5.0 (iPhone)\n"
    "e2,t1,m1,click,2025-01-01T00:02:00Z,40.94.1.1,scanner\n"
    "e1,t2,m1,open,2025-01-01T00:01:00Z,10.0.0.1,Mozilla/5.0 (iPhone)\n"
    "e2,t2,m1,click,2025-01-01T00:02:00Z,40.94.1.1,scanner\n"
)


def test_score_file_takes_the_tenants_lists(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "messages.csv").write_text(MESSAGES)
    (data / "events.csv").write_text(EVENTS)
    scores = pd.DataFrame(
        {
            "event_id": ["e1", "e2", "e1", "e2"],
            "tenant_id": ["t1", "t1", "t2", "t2"],
            "bot_score": [0.1, 0.9, 0.1, 0.9],
            "is_bot": [False, True, False, True],
            "reasons": [["latency"], ["asn_cloud"], ["latency"], ["asn_cloud"]],
            "model_version": ["botfilter/1"] * 4,
            "bot_kind": ["", "security_scanner", "", "security_scanner"],
        }
    )
    out = tmp_path / "scores.parquet"
    write_scores(scores, out)
    store = Store(f"sqlite:///{tmp_path / 'metrics.db'}")
    try:
        assert apply_lists_to_file(store, data, out) == (0, 0)  # no entries: file untouched
        lists.add_entry(store, lists.build_entry("t1", "block", "user_agent", "iPhone"))
        lists.add_entry(store, lists.build_entry("t1", "allow", "ip", "40.0.0.0/8"))
        # two decided: e1 a bot now, e2 a person (the file's bots: one more, one less)
        assert apply_lists_to_file(store, data, out) == (2, 0)
    finally:
        store.close()
    got = read_scores(out)
    t1 = got[got["tenant_id"] == "t1"].set_index("event_id")
    assert t1.loc["e1", "is_bot"] and t1.loc["e1", "reasons"][0] == "tenant_blocklist"
    assert not t1.loc["e2", "is_bot"] and t1.loc["e2", "bot_kind"] == ""
    assert list(t1.loc["e2", "reasons"])[0] == "tenant_allowlist"
    assert t1["bot_score"].tolist() == [0.1, 0.9]  # the model's, as the API keeps it
    t2 = got[got["tenant_id"] == "t2"].reset_index(drop=True)  # another tenant: untouched
    expected = scores[scores["tenant_id"] == "t2"].reset_index(drop=True)
    assert t2["is_bot"].tolist() == expected["is_bot"].tolist()
    assert [list(r) for r in t2["reasons"]] == expected["reasons"].tolist()
