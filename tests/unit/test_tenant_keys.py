"""Issue 14 item 3 through the batch path: message ids and event ids are unique within their
tenant only, so two tenants using the same ids get their own messages, events and scores."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from botfilter.errors import BotfilterError
from botfilter.settings import Settings
from jobs.metrics import Window, compute_partitions
from jobs.recompute import Tables, check_scores, recompute
from jobs.settings import set_exclusions
from jobs.store import Store
from tests.unit.test_metrics import AS_OF, events, messages


def two_tenants() -> Tables:
    """t1 and t2 both have message m1 and event e1 (an open): t1's is a bot, t2's a person."""
    m = messages(
        [
            (m_, t, "email", "c1", None, "k1", "a.com", "2024-03-10", "2024-03-10 00:01")
            for t in ("t1", "t2")
            for m_ in ("m1",)
        ]
    )
    e = events([("e1", "m1", "open", "2024-03-10 00:02", t) for t in ("t1", "t2")])
    return Tables(m, e)


def tenant_scores() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "tenant_id": ["t1", "t2"],
            "event_id": ["e1", "e1"],
            "bot_score": [0.95, 0.05],
            "is_bot": [True, False],
            "reasons": [["ua_is_crawler"], []],
            "model_version": "labels",
        }
    )


def opens(tables: dict[str, pd.DataFrame]) -> dict[str, int]:
    camp = tables["campaign_metrics"].set_index("tenant_id")
    return {t: int(camp.loc[t, "opens_total"]) for t in ("t1", "t2")}


def test_scores_are_matched_on_tenant_and_event() -> None:
    data = two_tenants()
    exclusions = {("t1", "email"): True, ("t2", "email"): True}
    parts = compute_partitions(
        data.messages, data.events, tenant_scores(), exclusions, Window.ending(AS_OF, 30)
    )
    assert opens(parts.tables()) == {"t1": 0, "t2": 1}


def test_scores_without_tenant_cannot_name_two_events() -> None:
    data = two_tenants()
    ambiguous = tenant_scores().drop(columns="tenant_id")
    with pytest.raises(BotfilterError, match="event_id 'e1' is scored more than once"):
        compute_partitions(data.messages, data.events, ambiguous, {}, Window.ending(AS_OF, 30))


def test_check_scores_keys_by_tenant_when_given() -> None:
    checked = check_scores(tenant_scores())
    assert checked[["tenant_id", "event_id"]].values.tolist() == [["t1", "e1"], ["t2", "e1"]]
    with pytest.raises(BotfilterError, match="event_id 'e1' of tenant 't1' is scored more"):
        check_scores(pd.concat([tenant_scores()] * 2))
    with pytest.raises(BotfilterError, match="event_id 'e1' is scored more than once"):
        check_scores(tenant_scores().drop(columns="tenant_id"))


def test_recompute_keeps_tenants_sharing_ids_apart(tmp_path: Path) -> None:
    """From a scores file, then from the stored scores (no model): each tenant its own."""
    settings = Settings(home=tmp_path / "home")
    store = Store.open(settings)
    data = two_tenants()
    set_exclusions(store, "t1", {"email": True})
    set_exclusions(store, "t2", {"email": True})
    first = recompute(store, settings, data, as_of=AS_OF, scores=check_scores(tenant_scores()))
    assert opens(first.tables) == {"t1": 0, "t2": 1}
    again = recompute(store, settings, data, as_of=AS_OF, model_version="labels")
    assert again.scores_source == "store"
    assert opens(again.tables) == {"t1": 0, "t2": 1}
    without = tenant_scores().drop(columns="tenant_id")
    with pytest.raises(BotfilterError, match="the scores have no tenant_id column"):
        recompute(store, settings, data, as_of=AS_OF, scores=without)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_scores_file_keeps_tenant_ids_as_text(tmp_path: Path, suffix: str) -> None:
    from jobs.recompute import read_scores_file
    from scoring.io import write_scores

    path = tmp_path / f"scores{suffix}"
    write_scores(tenant_scores().assign(tenant_id=["007", "7"]), path)
    assert read_scores_file(path)["tenant_id"].tolist() == ["007", "7"]
