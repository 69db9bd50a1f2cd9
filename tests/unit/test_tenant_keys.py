"""Issue 14 item 3 through the batch path: message ids and event ids are unique within their
tenant only, so two tenants using the same ids get their own messages, events and scores."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core.errors import BotfilterError
from core.settings import Settings
from jobs.exclusions import set_exclusions
from jobs.metrics import Window, compute_partitions
from jobs.recompute import RecomputeOptions, Tables, check_scores, recompute
from jobs.store import Store

AS_OF = "2024-03-31T00:00:00Z"  # the window of these March 2024 frames ends here


@pytest.fixture
def two_tenants(messages, events) -> Tables:
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


def opens(tables: dict[str, pd.DataFrame]) -> dict[str, int]:
    camp = tables["campaign_metrics"].set_index("tenant_id")
    return {t: int(camp.loc[t, "opens_total"]) for t in ("t1", "t2")}


def test_scores_are_matched_on_tenant_and_event(two_tenants, tenant_scores) -> None:
    data = two_tenants
    exclusions = {("t1", "email"): True, ("t2", "email"): True}
    parts = compute_partitions(
        data.messages, data.events, tenant_scores(), exclusions, Window.ending(AS_OF, 30)
    )
    assert opens(parts.tables()) == {"t1": 0, "t2": 1}


def test_scores_without_tenant_cannot_name_two_events(two_tenants, tenant_scores) -> None:
    data = two_tenants
    ambiguous = tenant_scores().drop(columns="tenant_id")
    with pytest.raises(BotfilterError, match="event_id 'e1' is scored more than once"):
        compute_partitions(data.messages, data.events, ambiguous, {}, Window.ending(AS_OF, 30))


def test_check_scores_keys_by_tenant_when_given(tenant_scores) -> None:
    checked = check_scores(tenant_scores())
    assert checked[["tenant_id", "event_id"]].values.tolist() == [["t1", "e1"], ["t2", "e1"]]
    with pytest.raises(BotfilterError, match="event_id 'e1' of tenant 't1' is scored more"):
        check_scores(pd.concat([tenant_scores()] * 2))
    with pytest.raises(BotfilterError, match="event_id 'e1' is scored more than once"):
        check_scores(tenant_scores().drop(columns="tenant_id"))


def test_recompute_keeps_tenants_sharing_ids_apart(
    two_tenants, tenant_scores, tmp_path: Path
) -> None:
    """From a scores file: each tenant its own (a file's scores serve its run only, so the
    stored-score side is tested in test_store and test_recompute_scores)."""
    settings = Settings(home=tmp_path / "home")
    store = Store.open(settings)
    data = two_tenants
    set_exclusions(store, "t1", {"email": True})
    set_exclusions(store, "t2", {"email": True})
    options = RecomputeOptions(as_of=AS_OF, scores=check_scores(tenant_scores()))
    first = recompute(store, settings, data, options)
    assert opens(first.tables) == {"t1": 0, "t2": 1}
    without = tenant_scores().drop(columns="tenant_id")
    with pytest.raises(BotfilterError, match="is scored more than once"):
        recompute(store, settings, data, RecomputeOptions(as_of=AS_OF, scores=without))
    one = check_scores(without.iloc[:1])  # e1 once, but both tenants have an event e1
    with pytest.raises(BotfilterError, match="needs a tenant_id column"):
        recompute(store, settings, data, RecomputeOptions(as_of=AS_OF, scores=one))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_scores_file_keeps_tenant_ids_as_text(tenant_scores, tmp_path: Path, suffix: str) -> None:
    from jobs.recompute import read_scores_file
    from scoring.scores_file import write_scores

    path = tmp_path / f"scores{suffix}"
    write_scores(tenant_scores().assign(tenant_id=["007", "7"]), path)
    assert read_scores_file(path)["tenant_id"].tolist() == ["007", "7"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_scores_file_keeps_ids_that_look_like_missing_values(
    tenant_scores, tmp_path: Path, suffix: str
) -> None:
    """The audit: `recompute --scores` could not read back the CSV `botfilter score` wrote for
    tenant "NA" or event "null" (pandas read them as missing values)."""
    from jobs.recompute import read_scores_file
    from scoring.scores_file import write_scores

    path = tmp_path / f"scores{suffix}"
    write_scores(tenant_scores().assign(tenant_id=["NA", "null"], event_id=["NaN", "None"]), path)
    read = read_scores_file(path)
    assert read["tenant_id"].tolist() == ["NA", "null"]
    assert read["event_id"].tolist() == ["NaN", "None"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_block_listed_row_below_half_reads_back(
    tenant_scores, tmp_path: Path, suffix: str
) -> None:
    """A tenant's block list decides against the model (PRODUCT.md: the lists override it):
    its rows keep the model's bot_score below 0.5 with is_bot true. The audit: a file of
    `botfilter score` holding one was refused by `recompute --scores` and Spark's recompute."""
    from core.errors import BotfilterError
    from jobs.recompute import read_scores_file
    from scoring.scores_file import write_scores

    scores = tenant_scores().assign(bot_score=0.2, is_bot=True)
    scores["reasons"] = [["tenant_blocklist", "latency"], ["latency"]]
    path = tmp_path / f"scores{suffix}"
    write_scores(scores.iloc[:1], path)
    assert read_scores_file(path)["is_bot"].tolist() == [True]
    write_scores(scores, path)  # the model's own verdict below 0.5 is still refused
    with pytest.raises(BotfilterError, match="1 rows have is_bot=true with bot_score below 0.5"):
        read_scores_file(path)
