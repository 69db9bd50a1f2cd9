"""The metric definitions of PRODUCT.md on tiny hand-built frames, with exact expected numbers."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.errors import BotfilterError
from jobs.metrics import (
    COUNTS,
    MESSAGE_COLUMNS,
    MODULES,
    PRODUCT_TABLES,
    MissingScores,
    Window,
    compute_partitions,
    count_mask,
    first_reason,
    parse_reasons,
    rollup,
    status_mask,
    to_utc,
    top_reasons,
    window_rows,
)
from jobs.recompute import write_tables

AS_OF = "2024-03-31T00:00:00Z"
MSG_COLS = list(MESSAGE_COLUMNS)


@pytest.fixture
def world(messages, events, scores) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    m = messages(
        [
            # id, tenant, channel, campaign, automation, contact, domain, sent, delivered
            (
                "m1",
                "t1",
                "email",
                "c1",
                None,
                "k1",
                "a.com",
                "2024-03-10 08:00",
                "2024-03-10 08:01",
            ),
            (
                "m2",
                "t1",
                "email",
                "c1",
                None,
                "k2",
                "b.com",
                "2024-03-10 09:00",
                "2024-03-10 09:01",
            ),
            ("m3", "t1", "email", "c1", None, "k3", "a.com", "2024-03-11 09:00", None),
            (
                "m4",
                "t1",
                "email",
                None,
                "a1",
                "k1",
                "a.com",
                "2024-03-12 10:00",
                "2024-03-13 00:30",
            ),
            ("s1", "t1", "sms", "c2", None, "k2", None, "2024-03-12 10:00", "2024-03-12 10:00"),
            ("s2", "t1", "sms", "c2", None, "k3", None, "2024-03-12 11:00", "2024-03-12 11:00"),
            (
                "old",
                "t1",
                "email",
                "c1",
                None,
                "k1",
                "a.com",
                "2024-02-20 10:00",
                "2024-02-20 10:00",
            ),
            (
                "late",
                "t1",
                "email",
                "c1",
                None,
                "k1",
                "a.com",
                "2024-03-31 00:00",
                "2024-03-31 00:01",
            ),
        ]
    )
    e = events(
        [
            ("e1", "m1", "open", "2024-03-10 08:01:02"),  # bot (scanner)
            ("e2", "m1", "click", "2024-03-10 08:01:03"),  # bot
            ("e3", "m1", "open", "2024-03-10 12:00"),  # human
            ("e4", "m2", "click", "2024-03-11 10:00"),  # human click, no open: implies an open
            ("e5", "m3", "open", "2024-03-11 10:00"),  # undelivered message: never counts
            ("e6", "m4", "open", "2024-03-13 01:00"),  # human
            ("e7", "m4", "open", "2024-03-14 01:00"),  # human, next day
            ("e8", "s1", "click", "2024-03-12 10:00:01"),  # bot (link preview)
            ("e9", "s1", "click", "2024-03-12 10:05"),  # human
            ("e10", "s2", "click", "2024-03-12 11:00:01"),  # bot
            ("e11", "old", "open", "2024-03-12 10:00"),  # message before the window
            ("e12", "m2", "open", "2024-03-31 00:00"),  # event at as_of: does not count
        ]
    )
    bots = {"e1": True, "e2": True, "e3": False, "e4": False, "e5": True, "e6": False}
    bots |= {"e7": False, "e8": True, "e9": False, "e10": True, "e11": True, "e12": False}
    s = scores(bots, {"e1": ["secs_since_delivery", "asn_is_datacenter"], "e2": ["burst_ip_2s"]})
    return m, e, s


def run(world, exclusions, segments=None, as_of=AS_OF, channels=("email", "sms")):
    m, e, s = world
    return compute_partitions(
        m, e, s, exclusions, Window.ending(as_of, 30), segments=segments, channels=channels
    )


def row(frame: pd.DataFrame, **keys) -> dict:
    sel = np.ones(len(frame), dtype=bool)
    for k, v in keys.items():
        sel &= (frame[k] == v).to_numpy()
    assert sel.sum() == 1, f"{keys}: {sel.sum()} rows"
    return frame.loc[sel].iloc[0].to_dict()


def test_campaigns_with_email_filter_on(world) -> None:
    parts = run(world, {("t1", "email"): True})
    camp = parts.tables()["campaign_metrics"]
    assert list(camp["campaign_id"]) == ["c1", "c2"]
    c1 = row(camp, campaign_id="c1")
    # m1, m2 delivered, m3 not; "old" before the window, "late" at as_of: outside
    assert c1["delivered"] == 2
    assert c1["opens_total"] == 1  # e3 (e1 is a bot, e5 undelivered, e12 at as_of)
    assert c1["opens_unique"] == 2  # m1 by e3, m2 by its click e4
    assert (c1["clicks_total"], c1["clicks_unique"]) == (1, 1)  # e4; e2 is a bot
    assert (c1["bot_opens_excluded"], c1["bot_clicks_excluded"]) == (1, 1)
    assert c1["open_rate"] == 1.0 and c1["ctr"] == 0.5 and c1["click_to_open_rate"] == 0.5
    assert c1["bot_filter_applied"] is True or c1["bot_filter_applied"] == np.True_


def test_sms_has_no_open_columns_and_keeps_its_own_setting(world) -> None:
    parts = run(world, {("t1", "email"): True})
    c2 = row(parts.tables()["campaign_metrics"], campaign_id="c2")
    for col in ("opens_total", "opens_unique", "open_rate", "click_to_open_rate"):
        assert pd.isna(c2[col]), col
    assert pd.isna(c2["bot_opens_excluded"])
    # SMS filter off: bots count
    assert (c2["delivered"], c2["clicks_total"], c2["clicks_unique"]) == (2, 3, 2)
    assert c2["ctr"] == 1.0 and c2["bot_clicks_excluded"] == 0
    assert not c2["bot_filter_applied"]


def test_sms_filter_on_excludes_bot_clicks(world) -> None:
    parts = run(world, {("t1", "sms"): True})
    c2 = row(parts.tables()["campaign_metrics"], campaign_id="c2")
    assert (c2["clicks_total"], c2["clicks_unique"], c2["bot_clicks_excluded"]) == (1, 1, 2)
    assert c2["ctr"] == 0.5 and c2["bot_filter_applied"]
    c1 = row(parts.tables()["campaign_metrics"], campaign_id="c1")
    assert (c1["opens_total"], c1["clicks_total"], c1["bot_opens_excluded"]) == (2, 2, 0)


def test_filter_off_counts_everything_but_keeps_both_sides(world) -> None:
    parts = run(world, {})
    c1 = rollup(parts.frames["campaign_metrics"], MODULES["campaign_metrics"], comparison=True)
    c1 = row(c1, campaign_id="c1")
    assert (c1["opens_total"], c1["opens_total_all"], c1["opens_total_human"]) == (2, 2, 1)
    assert (c1["clicks_unique_all"], c1["clicks_unique_human"]) == (2, 1)
    assert c1["ctr_all"] == 1.0 and c1["ctr_human"] == 0.5


def test_automation_and_dashboard_dates(world) -> None:
    parts = run(world, {("t1", "email"): True})
    a1 = row(parts.tables()["automation_metrics"], automation_id="a1")
    assert (a1["delivered"], a1["opens_total"], a1["opens_unique"]) == (1, 2, 1)
    day = parts.tables()["dashboard_daily"]
    email = day.loc[day["channel"] == "email"].set_index("date")
    assert list(email.index) == [date(2024, 3, d) for d in (10, 11, 13, 14)]
    # delivered by delivery date: m4 sent on the 12th, delivered on the 13th
    assert list(email["delivered"]) == [2, 0, 1, 0]
    # uniques per day: m1 opened on the 10th; m2 clicked on the 11th; m4 opened on 13th and 14th
    assert list(email["opens_unique"]) == [1, 1, 1, 1]
    assert list(email["opens_total"]) == [1, 0, 1, 1]
    assert list(email["clicks_unique"]) == [0, 1, 0, 0]
    assert list(email["bot_opens_excluded"]) == [1, 0, 0, 0]
    assert email.loc[date(2024, 3, 10), "open_rate"] == 0.5
    assert np.isnan(email.loc[date(2024, 3, 11), "open_rate"])  # nothing delivered that day


def test_segments_count_messages_to_members_once_per_segment(world) -> None:
    seg = pd.DataFrame(
        {
            "tenant_id": ["t1"] * 5,
            "segment_id": ["vip", "vip", "vip", "new", "other"],
            "contact_id": ["k1", "k1", "k2", "k2", "nobody"],  # k1 listed twice in vip
        }
    )
    parts = run(world, {("t1", "email"): True}, segments=seg)
    out = parts.tables()["segment_metrics"]
    assert sorted(zip(out["segment_id"], out["channel"], strict=True)) == [
        ("new", "email"),
        ("new", "sms"),
        ("vip", "email"),
        ("vip", "sms"),
    ]
    vip = row(out, segment_id="vip", channel="email")  # m1, m2, m4
    assert (vip["delivered"], vip["opens_unique"], vip["clicks_unique"]) == (3, 3, 1)
    assert vip["open_rate"] == 1.0
    new = row(out, segment_id="new", channel="sms")  # s1
    assert (new["delivered"], new["clicks_total"], new["clicks_unique"]) == (1, 2, 1)


def test_uniques_are_additive_across_send_dates(world) -> None:
    parts = run(world, {("t1", "email"): True})
    frame = parts.frames["campaign_metrics"]
    c1 = frame.loc[frame["campaign_id"] == "c1"]
    assert len(c1) == 2  # sends of the 10th and the 11th
    assert (
        c1["opens_unique"].sum()
        == row(parts.tables()["campaign_metrics"], campaign_id="c1")["opens_unique"]
    )


def test_partial_first_day_is_stored_whole_but_not_in_window_tables(world) -> None:
    # Window starts 2024-03-10 08:30: m1 (sent 08:00) is before it, m2 (09:00) inside.
    parts = run(world, {("t1", "email"): True}, as_of="2024-04-09T08:30:00Z")
    first = date(2024, 3, 10)
    inside = window_rows(parts.frames["campaign_metrics"])
    assert row(inside, campaign_id="c1", send_date=first)["delivered"] == 1  # m2
    assert (
        row(parts.stored("campaign_metrics"), campaign_id="c1", send_date=first)["delivered"] == 2
    )  # the store keeps whole send dates: m1 and m2
    c1 = row(parts.tables()["campaign_metrics"], campaign_id="c1")
    assert c1["delivered"] == 2  # m2 and "late" (now inside the window); not m1
    assert c1["opens_total"] == 1  # e12 (now before as_of); e3 of m1 is outside
    assert parts.window.send_dates()[0] == first and len(parts.window.send_dates()) == 31


def test_channels_subset_and_summary(world) -> None:
    parts = run(world, {("t1", "email"): True}, channels=("sms",))
    assert set(parts.tables()["campaign_metrics"]["channel"]) == {"sms"}
    summary = parts.summary
    assert set(summary["channel"]) == {"sms"} and len(summary) == 30
    day = summary.set_index("send_date").loc[date(2024, 3, 12)]
    assert (day["messages"], day["delivered"], day["events"]) == (2, 2, 3)


def test_bot_interactions_by_kind_and_domain(world) -> None:
    m, e, s = world
    e = e.assign(bot_kind=[None, "security_scanner"] + [None] * 10)
    parts = compute_partitions(m, e, s, {("t1", "email"): True}, Window.ending(AS_OF, 30))
    bots = parts.tables()  # product tables only
    assert "bot_interactions" not in bots
    frame = rollup(parts.frames["bot_interactions"], MODULES["bot_interactions"])
    got = {
        (r.recipient_domain, r.bot_kind): (r.bot_opens, r.bot_clicks, r.bot_clicks_excluded)
        for r in frame.itertuples()
    }
    assert got[("a.com", "reason:secs_since_delivery")][:1] == (1,)  # e1: top reason
    assert got[("a.com", "security_scanner")][1:] == (1, 1)  # e2: labelled kind wins
    assert got[("(none)", "unknown")][1:] == (2, 0)  # SMS bots, no reasons, filter off


def test_missing_score_is_a_clear_error(world) -> None:
    m, e, s = world
    # it says which events a scores file must cover: since the window's first UTC day
    late = "2024-03-31T12:00:00Z"
    with pytest.raises(MissingScores, match="1 events have no score.*e4.*since 2024-03-01 00:00"):
        compute_partitions(m, e, s.loc[s["event_id"] != "e4"], {}, Window.ending(late, 30))
    # an event that does not count needs no score
    compute_partitions(m, e, s.loc[s["event_id"] != "e5"], {}, Window.ending(AS_OF, 30))


def test_same_message_id_in_two_tenants(messages, events, scores) -> None:
    m = messages(
        [
            ("x", "t1", "email", "c", None, "k", "a.com", "2024-03-10", "2024-03-10"),
            ("x", "t2", "email", "c", None, "k", "a.com", "2024-03-10", "2024-03-10"),
        ]
    )
    e = events([("e1", "x", "open", "2024-03-10 01:00", "t2")])
    parts = compute_partitions(m, e, scores({"e1": False}), {}, Window.ending(AS_OF, 30))
    camp = parts.tables()["campaign_metrics"].set_index("tenant_id")
    assert camp.loc["t1", "opens_total"] == 0 and camp.loc["t2", "opens_total"] == 1


def test_empty_inputs_give_empty_tables(messages, events, scores) -> None:
    m = messages([])
    e = events([])
    parts = compute_partitions(m, e, scores({}), {}, Window.ending(AS_OF, 30), tenants=["t1"])
    for name in PRODUCT_TABLES:
        assert parts.tables()[name].empty
        assert list(parts.tables()[name].columns) == MODULES[name].table_columns()
    assert len(parts.summary) == 60 and parts.summary["messages"].sum() == 0


def test_no_message_and_no_tenant_named_give_empty_tables(messages, events, scores) -> None:
    """Without tenants named, an empty window names none: the summary grid is empty too (it
    raised a merge error on the empty send dates, which the Spark engine reaches whenever no
    tenant has a window message)."""
    parts = compute_partitions(messages([]), events([]), scores({}), {}, Window.ending(AS_OF, 30))
    assert parts.tenants == () and parts.summary.empty and parts.events_used == 0
    for name in PRODUCT_TABLES:
        assert parts.tables()[name].empty


def test_tables_written_without_rows_keep_their_types(
    world, messages, events, scores, tmp_path
) -> None:
    """A table without rows is written with the types rows give it (the audit: ids and dates of
    Arrow type null, which Spark reads as int and cannot merge with another run's files)."""
    full = write_tables(run(world, {}).tables(), tmp_path / "full")
    empty_parts = compute_partitions(
        messages([]), events([]), scores({}), {}, Window.ending(AS_OF, 30), tenants=["t1"]
    )
    empty = write_tables(empty_parts.tables(), tmp_path / "empty")
    for name in PRODUCT_TABLES:
        written = pq.read_schema(empty[name])
        assert pq.read_table(empty[name]).num_rows == 0
        assert written.remove_metadata() == pq.read_schema(full[name]).remove_metadata(), name
    assert pq.read_schema(empty["dashboard_daily"]).field("date").type == pa.date32()


def test_rollup_of_mixed_filter_states() -> None:
    frame = pd.DataFrame(
        {
            "tenant_id": ["t", "t"],
            "channel": ["email", "email"],
            "send_date": [date(2024, 1, 1), date(2024, 1, 2)],
            "campaign_id": ["c", "c"],
            **{name: [1, 3] for name in MODULES["campaign_metrics"].counts},
            "bot_filter_applied": [True, False],
        }
    )
    out = rollup(frame, MODULES["campaign_metrics"]).iloc[0]
    assert out["delivered"] == 4 and out["open_rate"] == 1.0
    assert not out["bot_filter_applied"]  # applied only when every partition had it


def test_status_and_count_masks_are_engine_neutral() -> None:
    is_bot = np.array([True, True, False, False])
    on = np.array([True, False, True, False])
    assert list(status_mask("counted", is_bot, on)) == [False, True, True, True]
    assert list(status_mask("excluded", is_bot, on)) == [True, False, False, False]
    assert list(status_mask("all", is_bot, on)) == [True] * 4
    assert list(status_mask("human", is_bot, on)) == [False, False, True, True]
    types = pd.Series(["open", "click", "click", "open"])
    mask = count_mask(COUNTS["opens_unique"], types, is_bot, on)
    assert list(mask) == [False, True, True, True]
    assert list(count_mask(COUNTS["clicks_total"], types, is_bot, on)) == [False, True, True, False]


def test_reasons_and_timestamps() -> None:
    assert parse_reasons('["a", "b"]') == ["a", "b"]
    assert parse_reasons("a, b|c") == ["a", "b", "c"]
    assert parse_reasons(np.array(["x"])) == ["x"]
    assert parse_reasons(None) == []
    assert first_reason([["a"], [], "b,c", float("nan")]) == ["a", None, "b", None]
    # a CSV scores file as `botfilter score` writes it (";"), and one whose reasons are all
    # empty (read as NaN: top_reasons raised TypeError, so recompute failed)
    assert parse_reasons("ua_is_crawler;dc_asn") == ["ua_is_crawler", "dc_asn"]
    assert top_reasons(pd.Series([float("nan"), float("nan")])).tolist() == [None, None]
    assert top_reasons(pd.Series(["x;y", float("nan")])).tolist() == ["x", None]
    # numpy's text of an array (a frame's to_csv) is no JSON: one line, not an internal error
    with pytest.raises(BotfilterError, match="not a JSON list"):
        parse_reasons("['ua_length' 'ua_family']")
    assert to_utc("2024-03-01T10:00") == pd.Timestamp("2024-03-01T10:00Z")
    assert to_utc("2024-03-01T12:00+02:00") == pd.Timestamp("2024-03-01T10:00Z")
    window = Window.ending("2024-03-31", 30)
    assert window.start == pd.Timestamp("2024-03-01T00:00Z")
    assert window.send_dates()[0] == date(2024, 3, 1) and window.last_date == date(2024, 3, 30)


def test_recompute_scope_matches_events_to_their_own_tenants_message(messages, events) -> None:
    """Issue 14 item 3: t2's message x was sent before the window, t1's x inside it; t2's
    event of x must not be counted (nor scored) because t1 has an x in the window."""
    from jobs.recompute import Tables, _scope_events

    m = messages(
        [
            ("x", "t1", "email", "c", None, "k", "a.com", "2024-03-10", "2024-03-10"),
            ("x", "t2", "email", "c", None, "k", "a.com", "2024-01-10", "2024-01-10"),
        ]
    )
    e = events(
        [
            ("e1", "x", "open", "2024-03-10 01:00", "t1"),
            ("e2", "x", "open", "2024-03-10 02:00", "t2"),
        ]
    )
    scope = _scope_events(Tables(m, e), Window.ending(AS_OF, 30), ["t1", "t2"])
    assert scope["event_id"].tolist() == ["e1"]


def test_key_positions_match_tenant_and_id() -> None:
    """Unique ids: by id, then a tenant check; an id in two tenants: by the pair."""
    from jobs.metrics import key_positions

    def arr(*values: str) -> np.ndarray:
        return np.array(values, dtype=object)

    got = key_positions(
        arr("t1", "t1"), arr("m1", "m2"), arr("t1", "t2", "t1"), arr("m2", "m1", "m3")
    )
    assert got.tolist() == [1, -1, -1]
    got = key_positions(
        arr("t1", "t2", "t2"), arr("m1", "m1", "m2"), arr("t2", "t1", "t1"), arr("m1", "m1", "m2")
    )
    assert got.tolist() == [1, 0, -1]
