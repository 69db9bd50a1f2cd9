"""Where a recompute's scores come from: a scores file (that run only), stored scores of the
model in use (by content id, per (tenant_id, event_id)), or fresh scoring (issue 14 item 2)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core.errors import BotfilterError
from core.settings import Settings
from jobs.exclusions import set_exclusions
from jobs.metrics import MissingScores, Window, compute_partitions
from jobs.recompute import RecomputeOptions, Tables, check_scores, read_scores_file, recompute
from jobs.store import Store

AS_OF = "2024-03-31T00:00:00Z"  # the window of these March 2024 frames ends here


@pytest.fixture
def two_tenants(messages, events) -> Tables:
    """Tenants t1 and t2, one delivered email each, both with an open event named e1."""
    m = messages(
        [
            ("m1", "t1", "email", "c1", None, "k1", "a.com", "2024-03-10", "2024-03-10"),
            ("m1", "t2", "email", "c1", None, "k1", "a.com", "2024-03-10", "2024-03-10"),
        ]
    )
    e = events(
        [
            ("e1", "m1", "open", "2024-03-10 01:00", "t1"),
            ("e1", "m1", "open", "2024-03-10 02:00", "t2"),
        ]
    )
    return Tables(m, e)


def score_rows(rows: list[tuple[str, str, float, bool]], version: str = "botfilter/1"):
    """(tenant_id, event_id, bot_score, is_bot) rows as a scores table."""
    return pd.DataFrame(
        {
            "tenant_id": [r[0] for r in rows],
            "event_id": [r[1] for r in rows],
            "bot_score": [r[2] for r in rows],
            "is_bot": [r[3] for r in rows],
            "reasons": [[] for _ in rows],
            "model_version": version,
        }
    )


class Scorer:
    """Scores every event 0.2 (human), counting the events it was asked to score."""

    def __init__(self) -> None:
        self.scored: list[tuple[str, str]] = []

    def __call__(self, tables: Tables) -> pd.DataFrame:
        e = tables.events
        self.scored += list(zip(e["tenant_id"], e["event_id"], strict=True))
        return score_rows(
            [(t, i, 0.2, False) for t, i in zip(e["tenant_id"], e["event_id"], strict=True)]
        )


def opens(result) -> dict[str, int]:
    c = result.tables["campaign_metrics"]
    return dict(zip(c["tenant_id"], c["opens_total"], strict=True))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'metrics.db'}")


def test_file_scores_serve_their_run_only(two_tenants, store: Store, tmp_path: Path) -> None:
    """An all-bot file labelled botfilter/1 must not be reused by later champion runs."""
    data = two_tenants
    settings = Settings(home=tmp_path / "home")
    set_exclusions(store, "t1", {"email": True, "sms": True}, source="test")
    bots = score_rows([("t1", "e1", 0.99, True)])
    first = recompute(store, settings, data, RecomputeOptions(AS_OF, ["t1"], scores=bots))
    assert first.scores_source == "file" and opens(first)["t1"] == 0
    assert store.load_scores(["t1"], "botfilter/1").empty  # nothing of the file was stored
    scorer = Scorer()
    run = RecomputeOptions(AS_OF, ["t1"], scorer=scorer, model_version="botfilter/1")
    later = recompute(store, settings, data, run)
    assert later.scores_source == "scored" and opens(later)["t1"] == 1
    assert ("t1", "e1") in scorer.scored


def test_bot_below_half_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "scores.csv"
    score_rows([("t1", "e1", 0.0, True), ("t1", "e2", 0.7, True)]).to_csv(path, index=False)
    with pytest.raises(
        BotfilterError,
        match=r"1 rows have is_bot=true with bot_score below 0.5 \(e.g. event_id 'e1'\)",
    ):
        read_scores_file(path)
    ok = check_scores(score_rows([("t1", "e1", 0.5, True), ("t1", "e2", 0.49, False)]))
    assert ok["is_bot"].tolist() == [True, False]


def test_file_scores_match_events_by_tenant_and_event(
    two_tenants, store: Store, tmp_path: Path
) -> None:
    """e1 is a bot in t1 and a person in t2: each tenant's event takes its own score."""
    data = two_tenants
    for t in ("t1", "t2"):
        set_exclusions(store, t, {"email": True, "sms": True}, source="test")
    scores = score_rows([("t1", "e1", 0.9, True), ("t2", "e1", 0.1, False)])
    options = RecomputeOptions(as_of=AS_OF, scores=scores)
    result = recompute(store, Settings(home=tmp_path / "home"), data, options)
    assert opens(result) == {"t1": 0, "t2": 1}
    # the same id twice is fine across tenants, not within one
    check_scores(scores)
    with pytest.raises(BotfilterError, match="scored more than once"):
        check_scores(score_rows([("t1", "e1", 0.9, True), ("t1", "e1", 0.1, False)]))


def test_file_ids_are_trimmed_as_the_contract_trims_the_datas(
    two_tenants, store: Store, tmp_path: Path
) -> None:
    """The probe: a scores CSV naming " 0001 " failed ("1 events have no score (e.g. event_id
    '0001')") while the data contract reads the data's " 0001 " as 0001."""
    data = two_tenants
    for t in ("t1", "t2"):
        set_exclusions(store, t, {"email": True, "sms": True}, source="test")
    path = tmp_path / "scores.csv"
    padded = [
        (" t1 ", "\te1 ", 0.9, True),
        ("t2", "\u3000e1", 0.1, False),
        ("t3", " 0001 ", 0.2, False),
    ]
    score_rows(padded).to_csv(path, index=False)
    scores = read_scores_file(path)
    assert scores["event_id"].tolist() == ["e1", "e1", "0001"]
    assert scores["tenant_id"].tolist() == ["t1", "t2", "t3"]
    result = recompute(
        store,
        Settings(home=tmp_path / "home"),
        data,
        RecomputeOptions(AS_OF, ["t1", "t2"], scores=scores),
    )
    assert opens(result) == {"t1": 0, "t2": 1}
    # trimmed, two rows are one event
    with pytest.raises(
        BotfilterError, match="event_id 'e1' of tenant 't1' is scored more than once"
    ):
        check_scores(score_rows([("t1", "e1", 0.9, True), ("t1", " e1", 0.1, False)]))
    # numbers are ids as their digits; a blank id is an error, as a missing tenant_id is
    numbers = score_rows([("t1", "x", 0.1, False)]).assign(event_id=[7])
    assert check_scores(numbers)["event_id"].tolist() == ["7"]
    for column in ("event_id", "tenant_id"):
        blank = score_rows([("t1", "e1", 0.1, False)]).assign(**{column: "  "})
        with pytest.raises(BotfilterError, match=f"scores: {column} is empty on some rows"):
            check_scores(blank)


def test_file_without_tenant_id_for_shared_ids_is_refused(
    two_tenants, store: Store, tmp_path: Path
) -> None:
    data = two_tenants
    settings = Settings(home=tmp_path / "home")
    scores = score_rows([("t1", "e1", 0.9, True)]).drop(columns="tenant_id")
    with pytest.raises(BotfilterError, match="needs a tenant_id column"):
        recompute(store, settings, data, RecomputeOptions(as_of=AS_OF, scores=scores))
    # one tenant's file needs none: its ids are that tenant's
    one = recompute(store, settings, data, RecomputeOptions(AS_OF, ["t1"], scores=scores))
    assert one.scores_source == "file"


def test_a_file_without_tenant_id_keeps_only_the_scores_of_known_events() -> None:
    """Scores of no event in scope (another tenant's, a quarantined one) are left out, so every
    row gets a tenant: the Spark engine checks the table again, and refused such a file with
    "tenant_id is empty on some rows", which the file never had, while the local engine ran."""
    from jobs.recompute import with_tenants

    events = pd.DataFrame({"event_id": ["e1", "e2"], "tenant_id": ["t1", "t1"]})
    scores = score_rows([("t1", "e1", 0.9, True), ("t2", "x", 0.1, False)])
    got = with_tenants(check_scores(scores.drop(columns="tenant_id")), events, "scores")
    assert got[["event_id", "tenant_id"]].values.tolist() == [["e1", "t1"]]
    check_scores(got)  # what the Spark engine does with it
    shared = pd.concat([events, pd.DataFrame({"event_id": ["e9"], "tenant_id": ["t1"]})] * 2)
    got = with_tenants(check_scores(scores.drop(columns="tenant_id")), shared, "scores")
    assert got[["event_id", "tenant_id"]].values.tolist() == [["e1", "t1"]]


def test_partitions_take_each_tenants_own_score(two_tenants) -> None:
    data = two_tenants
    scores = score_rows([("t2", "e1", 0.1, False), ("t1", "e1", 0.9, True)])
    parts = compute_partitions(
        data.messages,
        data.events,
        scores,
        {("t1", "email"): True, ("t2", "email"): True},
        Window.ending(AS_OF, 30),
    )
    c = parts.tables()["campaign_metrics"]
    assert dict(zip(c["tenant_id"], c["opens_total"], strict=True)) == {"t1": 0, "t2": 1}
    # a score of another tenant's event with that id does not count for this one
    with pytest.raises(MissingScores):
        compute_partitions(
            data.messages, data.events, scores.iloc[:1], {}, Window.ending(AS_OF, 30)
        )


@pytest.fixture
def later_events(two_tenants, events) -> Tables:
    """``two_tenants`` with a later open of each message (e2, an hour on): e1's look-ahead
    window has passed in the data, e2's has not."""
    more = events(
        [
            ("e2", "m1", "open", "2024-03-10 02:00", "t1"),
            ("e2", "m1", "open", "2024-03-10 03:00", "t2"),
        ]
    )
    return Tables(two_tenants.messages, pd.concat([two_tenants.events, more], ignore_index=True))


def test_clear_stored_scores_of_a_tenant(later_events, store: Store, tmp_path: Path) -> None:
    data = later_events
    settings = Settings(home=tmp_path / "home")
    scorer = Scorer()
    run = RecomputeOptions(
        as_of=AS_OF, scorer=scorer, model_version="botfilter/1", model_id="sha256:c"
    )
    recompute(store, settings, data, run)
    assert store.clear_scores("t1") == 2
    assert recompute(store, settings, data, run).scores_source == "store+scored"
    assert {("t1", "e1"), ("t1", "e2")} <= set(scorer.scored[4:])  # asked again for t1's


def test_provisional_scores_are_reused_until_the_tenants_data_reach_further(
    later_events, events, store: Store, tmp_path: Path
) -> None:
    """A score made before the event's look-ahead window passed in the data (the last
    LOOKAHEAD_S of each tenant's events) is stored with how far the tenant's data reached: a
    run on the same data reuses it, a run after the tenant's data grew scores the event again
    (from what followed it), and the revised score is the one read back. Another tenant's new
    data change nothing of this one's (tenants are walls)."""
    settings = Settings(home=tmp_path / "home")
    scorer = Scorer()
    run = RecomputeOptions(
        as_of=AS_OF, scorer=scorer, model_version="botfilter/1", model_id="sha256:c"
    )
    first = recompute(store, settings, later_events, run)
    assert opens(first) == {"t1": 2, "t2": 2}
    stored = store.load_scores(["t1", "t2"], "sha256:c")
    pending = stored.loc[stored["provisional_until"].notna(), ["tenant_id", "event_id"]]
    assert sorted(map(tuple, pending.to_numpy())) == [("t1", "e2"), ("t2", "e2")]
    assert recompute(store, settings, later_events, run).scores_source == "store"

    grown = events([("e3", "m1", "open", "2024-03-10 04:00", "t1")])
    data = Tables(later_events.messages, pd.concat([later_events.events, grown]))
    scorer.scored.clear()
    assert recompute(store, settings, data, run).scores_source == "store+scored"
    assert ("t1", "e2") in set(scorer.scored)
    # t1 stored e2 again (revised) and e3; t2's scores, provisional e2 included, stay as they were
    assert store.score_versions(["t1"]) == {"sha256:c": 4}
    assert store.score_versions(["t2"]) == {"sha256:c": 2}
    again = store.load_scores(["t1"], "sha256:c").set_index("event_id")
    assert again.loc["e2", "provisional_until"] != again.loc["e2", "provisional_until"]  # NaN
    assert len(again) == 3
    assert recompute(store, settings, data, run).scores_source == "store"


def test_scores_clear_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from botfilter.cli import app

    monkeypatch.delenv("BOTFILTER_DATABASE_URL", raising=False)
    monkeypatch.setenv("BOTFILTER_HOME", str(tmp_path / "home"))
    store = Store(f"sqlite:///{(tmp_path / 'home' / 'metrics.db').resolve()}")
    store.save_scores(score_rows([("t1", "e1", 0.9, True)]), ["t1"], model_id="m")
    result = CliRunner().invoke(app, ["scores", "clear", "--tenant", "t1"])
    assert result.exit_code == 0 and "dropped 1 stored scores of tenant t1" in result.output
    assert store.load_scores(["t1"], "m").empty


def _stamps(store: Store) -> dict[str, set[str]]:
    """Each tenant's stored partitions' model_version stamps."""
    from sqlalchemy import select

    from jobs.store.schema import metric_partitions

    with store.read() as conn:
        rows = conn.execute(
            select(metric_partitions.c.tenant_id, metric_partitions.c.model_version)
        ).all()
    out: dict[str, set[str]] = {}
    for tenant, version in rows:
        out.setdefault(tenant, set()).add(version)
    return out


def test_partitions_name_only_the_models_that_scored_their_tenant(
    two_tenants, store: Store, tmp_path: Path
) -> None:
    """The probe: every tenant's partitions were stamped with the models of all the tenants
    recomputed together, and a window without events with the score source ("store", "file")
    as if it were a model."""
    settings = Settings(home=tmp_path / "home")
    scores = pd.concat(
        [
            score_rows([("t1", "e1", 0.9, True)], version="botfilter/1"),
            score_rows([("t2", "e1", 0.1, False)], version="botfilter/2"),
        ],
        ignore_index=True,
    )
    recompute(store, settings, two_tenants, RecomputeOptions(as_of=AS_OF, scores=scores))
    assert _stamps(store) == {"t1": {"botfilter/1"}, "t2": {"botfilter/2"}}
    # 90 days later the window holds no event of either tenant: no model scored anything
    later = RecomputeOptions(as_of="2024-06-29T00:00:00Z", scores=scores)
    recompute(store, settings, two_tenants, later)
    assert _stamps(store) == {"t1": {"", "botfilter/1"}, "t2": {"", "botfilter/2"}}
