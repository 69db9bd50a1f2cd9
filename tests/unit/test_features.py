"""Feature pipeline: exact values on a tiny frame, causality, and micro-batch invariance."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from contract.schema import MESSAGE_CONTEXT
from contract.validate import validate_tables
from features.definitions import (
    FEATURE_NAMES,
    FEATURES,
    LONGEST_WINDOW_S,
    LOOKAHEAD_FEATURES,
    LOOKAHEAD_S,
)
from features.pipeline import (
    Enrichers,
    build_features,
    causal_order,
    context_arrays,
    event_context,
    feature_block,
    message_rows,
)
from simulation.core import generate


@pytest.fixture(scope="module")
def enrichers() -> Enrichers:
    return Enrichers.load()


def ts(seconds: float) -> pd.Timestamp:
    return pd.Timestamp("2026-10-01T00:00:00Z") + pd.Timedelta(seconds=seconds)


@pytest.fixture
def ctx() -> pd.DataFrame:
    # A scanner on one EOP address hits two recipients' messages within a second; a person opens
    # and clicks later from a residential address. Rows are deliberately not in time order.
    rows = [
        # event_id, message, contact, type, t, ip, link_position, method
        ("e3", "m1", "c1", "click", 2.5, "40.107.1.10", 1, "GET"),
        ("e1", "m1", "c1", "click", 2.0, "40.107.1.10", 0, "HEAD"),
        ("e2", "m2", "c2", "click", 2.2, "40.107.1.11", 0, "GET"),
        ("e4", "m1", "c1", "open", 900.0, "73.22.1.5", None, "GET"),
        ("e5", "m1", "c1", "click", 960.0, "73.22.1.5", 0, "GET"),
    ]
    df = pd.DataFrame(
        rows,
        columns=[
            "event_id",
            "message_id",
            "contact_id",
            "type",
            "t",
            "ip",
            "link_position",
            "http_method",
        ],
    )
    return pd.DataFrame(
        {
            "event_id": df["event_id"],
            "tenant_id": "t1",
            "message_id": df["message_id"],
            "type": df["type"],
            "occurred_at": df["t"].map(ts),
            "ip": df["ip"],
            "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
            "link_position": pd.array(df["link_position"], dtype="Int64"),
            "is_hidden_link": pd.array([False] * 5, dtype="boolean"),
            "http_method": df["http_method"],
            "asn": pd.array([None] * 5, dtype="Int64"),
            "channel": "email",
            "campaign_id": "camp1",
            "automation_id": None,
            "contact_id": df["contact_id"],
            "recipient_domain": "corp.example",
            "sent_at": ts(0),
            "delivered_at": ts(1),
            "link_count": pd.array([2] * 5, dtype="Int64"),
        }
    )


def test_registry_is_unique_and_typed():
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES))
    assert all(f.description and f.dtype for f in FEATURES)
    assert {"ip_msgs_2s", "prefix_contacts_600s", "asn_events_10s", "send_asn_events_60s"} <= set(
        FEATURE_NAMES
    )


def test_model_inputs_leave_out_networks_people_share_with_bots():
    from features.definitions import MODEL_FEATURES, NOT_MODEL_INPUTS, feature_schema

    assert "net_security_vendor" in FEATURE_NAMES and "net_security_vendor" not in MODEL_FEATURES
    assert set(MODEL_FEATURES) == set(FEATURE_NAMES) - set(NOT_MODEL_INPUTS)
    schema = {r["name"]: r["model_input"] for r in feature_schema()}
    assert schema["net_security_vendor"] is False and schema["secs_since_delivery"] is True


def test_exact_values(ctx, enrichers):
    f = build_features(ctx, enrichers)
    assert list(f.columns) == list(FEATURE_NAMES)
    assert list(f.index) == list(ctx.index)
    e = f.set_axis(ctx["event_id"])
    assert e.loc["e1", "secs_since_delivery"] == pytest.approx(1.0)
    assert e.loc["e3", "secs_since_send"] == pytest.approx(2.5)
    assert e.loc[["e1", "e3", "e5"], "http_method"].tolist() == [1, 0, 0]
    # message history: e1 first, e3 second (distinct links 2 of 2), e4 open, e5 click after an open
    assert e.loc[["e1", "e3", "e4", "e5"], "msg_prior_events"].tolist() == [0, 1, 2, 3]
    assert e.loc[["e1", "e3", "e4", "e5"], "msg_link_coverage"].tolist() == [0.5, 1.0, 1.0, 1.0]
    assert e.loc["e3", "secs_since_msg_prev_event"] == pytest.approx(0.5)
    assert np.isnan(e.loc["e1", "secs_since_msg_prev_event"])
    assert e.loc[["e1", "e3", "e5"], "click_without_open"].tolist() == [1, 1, 0]
    # bursts: the /24 saw two recipients within 2 s at e3 (e1, e2, e3); the exact IP only m1
    assert e.loc["e3", "prefix_contacts_2s"] == 2
    assert e.loc["e3", "prefix_events_2s"] == 3
    assert e.loc["e3", "ip_msgs_2s"] == 1
    assert e.loc["e2", "ip_events_2s"] == 1
    assert e.loc["e5", "ip_events_600s"] == 2
    assert e.loc["e5", "ip_events_10s"] == 1
    assert e.loc["e1", "net_microsoft_eop"] == 1
    assert e.loc["e5", "net_microsoft_eop"] == 0


def test_behaviour_features_exact_values(ctx, enrichers):
    """Behaviour rather than identity: the person's click follows a read 899 s after delivery
    from another address; the scanner's address comes back to another message within 0.2 s."""
    e = build_features(ctx, enrichers).set_axis(ctx["event_id"])
    # time since the message's first event (e1 at 2.0 s)
    assert e.loc[["e1", "e3", "e4", "e5"], "secs_since_msg_first_event"].tolist() == pytest.approx(
        [0.0, 0.5, 898.0, 958.0]
    )
    assert np.isnan(e.loc["e4", "secs_since_msg_prev_open"])
    assert e.loc["e5", "secs_since_msg_prev_open"] == pytest.approx(60.0)
    # e4 (an open 899 s after delivery, from 73.22.1.5) is a human-like read for a later event
    # from another address, but not for e5 from the same address
    assert e.loc["e5", "msg_prior_late_opens_other_ip"] == 0
    later = ctx.iloc[[4]].assign(event_id="e6", ip="40.107.1.10", occurred_at=ts(990.0))
    f6 = build_features(pd.concat([ctx, later], ignore_index=True), enrichers)
    assert f6["msg_prior_late_opens_other_ip"].iat[-1] == 1
    assert f6["secs_since_msg_prev_open"].iat[-1] == pytest.approx(90.0)
    # the exact IP: e3 (m1) after e1 (m1) has no other message; e6 on m1 sees none either
    assert np.isnan(e.loc["e3", "ip_secs_since_other_msg"])
    # the /24: e2 (m2) 0.2 s after e1 (m1); e3 (m1) 0.3 s after e2 (m2)
    assert e.loc["e2", "prefix_secs_since_other_msg"] == pytest.approx(0.2)
    assert e.loc["e3", "prefix_secs_since_other_msg"] == pytest.approx(0.3)
    assert np.isnan(e.loc["e1", "prefix_secs_since_other_msg"])
    # beyond the longest window the gap is unknown (the online API keeps no older history)
    assert np.isnan(f6["prefix_secs_since_other_msg"].iat[-1])


def test_address_and_user_agent_spread_exact_values(ctx, enrichers):
    """One egress, two kinds of traffic: a scanner checks three recipients with one User-Agent,
    while two people behind the same address click with their own browsers."""
    chrome, edge = ctx["user_agent"].iat[0], "Mozilla/5.0 (Windows NT 10.0) Edg/120.0.0.0"
    rows = [  # event_id, contact, t, user agent
        ("s1", "c1", 0.0, chrome),
        ("s2", "c2", 1.0, chrome),
        ("s3", "c3", 1.5, chrome),
        ("p1", "c4", 30.0, edge),
        ("p2", "c5", 40.0, "Mozilla/5.0 (Macintosh) Firefox/121.0"),
        ("p3", "c4", 700.0, edge),
    ]
    one = ctx.iloc[[1]]
    events = pd.concat(
        [
            one.assign(
                event_id=e, contact_id=c, message_id=f"m-{c}", occurred_at=ts(t), user_agent=ua
            )
            for e, c, t, ua in rows
        ],
        ignore_index=True,
    )
    f = build_features(events, enrichers).set_axis(events["event_id"])
    assert f["ipua_contacts_2s"].tolist() == [1, 2, 3, 1, 1, 1]
    assert f["ipua_contacts_60s"].tolist() == [1, 2, 3, 1, 1, 1]
    assert f["ipua_contacts_600s"].tolist() == [1, 2, 3, 1, 1, 1]  # p1 left the window at 630 s
    assert f["ip_contacts_60s"].tolist() == [1, 2, 3, 4, 5, 1]
    no_ip = build_features(events.assign(ip=None), enrichers)
    assert no_ip["ipua_contacts_600s"].isna().all()


def test_causal_order_breaks_ties_by_event_id():
    df = pd.DataFrame(
        {
            "tenant_id": ["t", "t", "t"],
            "occurred_at": [ts(1), ts(1), ts(0)],
            "event_id": ["b", "a", "z"],
        }
    )
    assert causal_order(df).tolist() == [2, 1, 0]


def test_lookahead_features_exact(ctx, enrichers):
    """What follows each event on its message within LOOKAHEAD_S: the seconds to the next
    click from another address, to such a click on the same link, and to the next event from
    the same address (LOOKAHEAD_S + 1 for none); missing for e4 and e5, the events less than
    LOOKAHEAD_S before the tenant's latest (960 s)."""
    assert LOOKAHEAD_S == 600
    f = build_features(ctx, enrichers).set_axis(ctx["event_id"])
    other, same_link, same_ip = LOOKAHEAD_FEATURES
    none = LOOKAHEAD_S + 1
    assert f.loc["e1", [other, same_link, same_ip]].tolist() == pytest.approx([none, none, 0.5])
    for e in ("e2", "e3"):
        assert f.loc[e, [other, same_link, same_ip]].tolist() == [none, none, none]
    assert f.loc[["e4", "e5"], list(LOOKAHEAD_FEATURES)].isna().all().all()
    # A click from another address on the same link, 3 s after e1: a time-of-click check
    # followed by the person's own click.
    late = ctx.assign(
        occurred_at=ctx["occurred_at"].where(ctx["event_id"] != "e5", ts(5.0)),
        ip=ctx["ip"].where(ctx["event_id"] != "e5", "73.22.1.5"),
    )
    g = build_features(late, enrichers).set_axis(ctx["event_id"])
    assert g.loc["e1", [other, same_link, same_ip]].tolist() == pytest.approx([3.0, 3.0, 0.5])
    assert g.loc["e3", [other, same_link]].tolist() == pytest.approx([2.5, none])


def test_another_tenants_later_events_leave_a_window_open(ctx, enrichers):
    """Tenants are walls: another tenant's data reaching further never completes this
    tenant's look-ahead windows, nor changes any of its features."""
    alone = build_features(ctx, enrichers).set_axis(list(ctx["event_id"]))
    other = ctx.iloc[[0]].assign(tenant_id="t2", event_id="x1", occurred_at=ts(5000.0))
    both = build_features(pd.concat([ctx, other], ignore_index=True), enrichers)
    both = both.set_axis([*ctx["event_id"], "x1"]).loc[list(ctx["event_id"])]
    pd.testing.assert_frame_equal(both, alone)
    assert both.loc[["e4", "e5"], list(LOOKAHEAD_FEATURES)].isna().all().all()


def test_micro_batches_give_identical_features(ctx, enrichers):
    """Causality: scoring prefixes (as an online micro-batch would) changes no earlier row,
    except its look-ahead features, which are missing until the prefix reaches LOOKAHEAD_S past
    the row, and from then on are the full data's."""
    full = build_features(ctx, enrichers).set_axis(ctx["event_id"])
    ordered = ctx.iloc[causal_order(ctx)]
    ahead = list(LOOKAHEAD_FEATURES)
    causal = [c for c in full.columns if c not in ahead]
    t = pd.to_datetime(ordered["occurred_at"], utc=True)
    pending_seen = passed_seen = 0
    for k in range(1, len(ordered) + 1):
        part = build_features(ordered.iloc[:k], enrichers).set_axis(ordered["event_id"].iloc[:k])
        want = full.loc[part.index]
        pd.testing.assert_frame_equal(part[causal], want[causal], check_exact=True)
        reach = t.iloc[:k].groupby(ordered["tenant_id"].iloc[:k].to_numpy()).transform("max")
        passed = (t.iloc[:k] + pd.Timedelta(seconds=LOOKAHEAD_S) <= reach).to_numpy()
        pd.testing.assert_frame_equal(part.loc[passed, ahead], want.loc[passed, ahead])
        assert part.loc[~passed, ahead].isna().all().all()
        pending_seen += int((~passed).sum())
        passed_seen += int(passed.sum())
    assert pending_seen and passed_seen  # both cases happened


def test_missing_ip_has_no_burst_features(ctx, enrichers):
    ctx = ctx.assign(ip=[None] * len(ctx))
    f = build_features(ctx, enrichers)
    assert f["ip_events_2s"].isna().all() and f["asn_msgs_600s"].isna().all()
    assert LONGEST_WINDOW_S == 600


def test_event_context_joins_on_tenant_and_message_id():
    """Two tenants may use the same message_id (PRODUCT.md): each event gets its own tenant's
    message. (A join on message_id alone refused, or mixed up, such data.)"""
    messages = pd.DataFrame(
        {
            "message_id": ["m1", "m1", "m2"],
            "tenant_id": ["a", "b", "a"],
            "channel": ["email", "sms", "email"],
            "contact_id": ["ca", "cb", "ca2"],
        }
    )
    for name in MESSAGE_CONTEXT:
        if name not in messages:
            messages[name] = None
    events = pd.DataFrame(
        {
            "event_id": ["e1", "e2", "e3", "e4"],
            "tenant_id": ["b", "a", "a", "b"],
            "message_id": ["m1", "m1", "m2", "m2"],
        },  # fmt: skip
        index=[10, 11, 12, 13],
    )
    ctx = event_context(messages, events)
    assert ctx.index.tolist() == [10, 11, 12, 13]
    assert ctx["channel"].tolist()[:3] == ["sms", "email", "email"]
    assert ctx["contact_id"].tolist()[:3] == ["cb", "ca", "ca2"]
    assert pd.isna(ctx["channel"].iat[3])  # b has no m2: missing, as a left join
    assert message_rows(messages, events).tolist() == [1, 0, 2, -1]


def test_event_context_keeps_each_columns_dtype_and_its_missing_value():
    """Object, timestamp and nullable integer columns keep their dtypes through the join; an
    event without its message reads the dtype's own missing value."""
    messages = pd.DataFrame({"message_id": ["m1"], "tenant_id": ["a"]})
    for name in MESSAGE_CONTEXT:
        if name not in messages:
            messages[name] = None
    messages["sent_at"] = pd.Series([ts(5)])
    messages["link_count"] = pd.Series([3], dtype="Int64")
    messages["channel"] = pd.Series(["email"], dtype=object)
    events = pd.DataFrame(
        {"event_id": ["e1", "e2"], "tenant_id": ["a", "a"], "message_id": ["m1", "zz"]}
    )
    ctx = event_context(messages, events)
    for name in ("sent_at", "link_count", "channel"):
        assert ctx[name].dtype == messages[name].dtype
    assert ctx["sent_at"].iat[0] == ts(5) and ctx["sent_at"].iat[1] is pd.NaT
    assert ctx["link_count"].iat[0] == 3 and ctx["link_count"].iat[1] is pd.NA
    assert ctx["channel"].iat[0] == "email" and np.isnan(ctx["channel"].iat[1])


def test_same_message_id_in_two_tenants_gets_each_tenants_message(enrichers) -> None:
    """Issue 14 item 3: a message is (tenant_id, message_id); one tenant's features never
    depend on another tenant's messages or events."""
    from contract.validate import validate_tables
    from features.pipeline import event_context

    def message(tenant: str, channel: str, sent: float) -> dict:
        return {
            "message_id": "m1",
            "tenant_id": tenant,
            "channel": channel,
            "contact_id": "k1",
            "sent_at": ts(sent).isoformat(),
            "delivered_at": ts(sent + 1).isoformat(),
            "link_count": 2,
        }

    def event(tenant: str, seconds: float) -> dict:
        return {
            "event_id": "e1",
            "tenant_id": tenant,
            "message_id": "m1",
            "type": "click",
            "occurred_at": ts(seconds).isoformat(),
            "ip": "40.107.1.10",
            "link_position": 0,
        }

    clean = validate_tables(
        {
            "messages": pd.DataFrame([message("t1", "email", 0), message("t2", "sms", 100)]),
            "events": pd.DataFrame([event("t1", 10), event("t2", 150)]),
        }
    )
    assert clean.quarantine.empty
    ctx = event_context(clean.messages, clean.events)
    assert ctx["channel"].tolist() == ["email", "sms"]
    assert ctx["sent_at"].tolist() == [ts(0), ts(100)]
    both = build_features(ctx, enrichers)
    alone = build_features(ctx.iloc[[1]], enrichers)
    pd.testing.assert_frame_equal(both.iloc[[1]], alone)
    assert both["secs_since_send"].tolist() == [10.0, 50.0]


def test_every_declared_feature_is_written_for_every_row(ctx, enrichers) -> None:
    """feature_block starts from ``fill``: a declared feature that no path writes, or that one
    path writes for some rows only, would keep the sentinel (NaN by default: missing)."""
    sentinel = np.float32(-3.0e38)  # no feature takes this value
    tables = validate_tables(generate(tenants=2, days=1, seed=5))
    world = event_context(tables.messages, tables.events)
    assert (world["channel"] == "sms").any() and world["asn"].isna().any()
    for frame in (ctx, world):
        block = feature_block(context_arrays(frame), enrichers, fill=sentinel)
        assert block.shape == (len(FEATURE_NAMES), len(frame))
        unwritten = [
            name for name, row in zip(FEATURE_NAMES, block, strict=True) if (row == sentinel).any()
        ]
        assert unwritten == []


def test_arrow_text_as_codes_gives_the_features_of_python_objects(enrichers) -> None:
    """``botfilter score`` hands validated Arrow text to the features as codes
    (``context_arrays_arrow``); the online API and training hand object arrays. The feature
    blocks are identical, with missing addresses and User-Agents, tied timestamps (broken by
    event_id), one message id in two tenants, and an automation id that is another message's
    campaign id (one send, whichever column names it)."""
    import pyarrow as pa

    from contract.readers import raw_from_pandas
    from contract.validate import validate_raw, validate_raw_arrow
    from features.coded import Coded
    from features.pipeline import context_arrays_arrow

    world = generate(tenants=3, days=3, seed=11)
    messages, events = world["messages"].copy(), world["events"].copy()
    events.loc[events.index[::7], "ip"] = None
    events.loc[events.index[::11], "user_agent"] = None
    tenant = events["tenant_id"].iloc[0]
    keys = events[["tenant_id", "message_id"]].apply(tuple, axis=1)
    twice = events.index[keys.duplicated(keep=False) & (events["tenant_id"] == tenant)]
    first, second = twice[0], events.index[keys == keys[twice[0]]][1]
    events.loc[second, "occurred_at"] = events.loc[first, "occurred_at"]  # a tie
    campaigns = messages.index[messages["campaign_id"].notna()]
    automations = messages.index[messages["automation_id"].notna()]
    assert len(campaigns) and len(automations)
    messages.loc[automations[0], "automation_id"] = messages.loc[campaigns[0], "campaign_id"]
    other = messages.index[messages["tenant_id"] != tenant][0]
    old = messages.loc[other, "message_id"]
    shared = messages.loc[messages["tenant_id"] == tenant, "message_id"].iloc[0]
    messages.loc[other, "message_id"] = shared  # another tenant's message, the same id
    theirs = (events["tenant_id"] == messages.loc[other, "tenant_id"]) & (
        events["message_id"] == old
    )
    events.loc[theirs, "message_id"] = shared
    raws = {name: raw_from_pandas(name, frame) for name, frame in world.items()}
    raws["messages"] = raw_from_pandas("messages", messages)
    raws["events"] = raw_from_pandas("events", events)

    plain = validate_raw(raws, referenced_only=True)
    assert plain.quarantine.empty, plain.quarantine["reason"].value_counts()
    objects = context_arrays(event_context(plain.messages, plain.events, plain.event_messages))
    arrow = validate_raw_arrow(raws, referenced_only=True)
    assert arrow.event_messages is not None
    assert arrow.event_messages.tolist() == plain.event_messages.tolist()
    coded = context_arrays_arrow(
        arrow.tables["events"], arrow.tables["messages"], arrow.event_messages
    )
    assert isinstance(coded["ip"], Coded) and isinstance(coded["event_id"], pa.Array)
    assert coded["ip"].missing().sum() == pd.isna(objects["ip"]).sum() > 0
    for name, values in coded.items():
        if isinstance(values, np.ndarray):
            np.testing.assert_array_equal(values, objects[name], err_msg=name)
    got = feature_block(coded, enrichers)
    want = feature_block(objects, enrichers)
    for name, row_got, row_want in zip(FEATURE_NAMES, got, want, strict=True):
        np.testing.assert_array_equal(row_got, row_want, err_msg=name)


def test_a_send_is_one_group_whichever_column_names_it() -> None:
    """A send is a campaign or an automation: an automation id equal to a campaign id is the
    same send, as text and as codes (``Coded`` holds one dictionary per column)."""
    import pyarrow as pa

    from features.coded import Coded
    from features.pipeline import _either

    campaign = ["a", None, "b", None, "c"]
    automation = [None, "a", None, None, None]
    for first, second in (
        (np.array(campaign, dtype=object), np.array(automation, dtype=object)),
        (Coded.encode(pa.array(campaign)), Coded.encode(pa.array(automation))),
    ):
        codes, n = _either(first, second)
        assert codes[0] == codes[1] and len({codes[0], codes[2], codes[4]}) == 3
        assert codes[3] == n - 1 and (codes[[0, 1, 2, 4]] < n - 1).all()


def test_coded_text_keeps_rows_missing_values_and_equality() -> None:
    """``Coded`` (Arrow text as codes): rows picked by positions or a slice, missing values,
    comparison with a constant and the objects it stands for, as an object column gives them."""
    import pyarrow as pa

    from features.coded import Coded, as_objects, rows_of

    text = ["click", None, "open", "click", None]
    coded = Coded.encode(pa.chunked_array([text[:2], text[2:]]))
    objects = np.array(text, dtype=object)
    assert as_objects(coded).tolist() == text
    assert coded.equals("click").tolist() == [True, False, False, True, False]
    assert coded.missing().tolist() == [False, True, False, False, True]
    assert coded.arrow().to_pylist() == text
    for rows in (np.array([4, 0, 3]), slice(1, 4)):
        assert as_objects(rows_of(coded, rows)).tolist() == objects[rows].tolist()
        assert rows_of(pa.array(text), rows).to_pylist() == objects[rows].tolist()
        assert rows_of(objects, rows).tolist() == objects[rows].tolist()


def test_text_read_as_dictionaries_validates_and_scores_as_plain_text(enrichers) -> None:
    """`botfilter score`'s workers take a few-valued text column as the dictionary Parquet gave
    (contract.validate.CODED): each distinct value is parsed once and the codes reach the
    features. Counts, quarantine, clean rows and features equal the plain text's, with values
    that trimming makes one, blanks, a send with both a campaign and an automation, a bad
    recipient domain and a User-Agent kept byte for byte."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from contract.columns import decoded
    from contract.readers import raw_from_pandas
    from contract.validate import CODED, REASON_BOTH_SOURCES, validate_raw_arrow
    from features.pipeline import context_arrays_arrow

    world = generate(tenants=2, days=3, seed=5)
    messages, events = world["messages"].copy(), world["events"].copy()
    campaigns = messages.index[messages["campaign_id"].notna()]
    automations = messages.index[messages["automation_id"].notna()]
    name = messages.loc[campaigns[0], "campaign_id"]
    messages.loc[campaigns[1], "campaign_id"] = f"  {name} "  # one send once trimmed
    messages.loc[campaigns[2], "campaign_id"] = "   "  # blank: no campaign
    messages.loc[automations[0], "campaign_id"] = name  # both: quarantined
    messages.loc[campaigns[3], "recipient_domain"] = "not a domain"
    events.loc[events.index[::5], "user_agent"] = events["user_agent"].iloc[0] + " "
    events.loc[events.index[::13], "user_agent"] = None
    again = events.iloc[[3, 4]].copy()  # an exact repeat, and one with another User-Agent
    again.loc[again.index[1], "user_agent"] = "curl/8.0"
    events = pd.concat([events, again], ignore_index=True)
    raws = {table: raw_from_pandas(table, frame) for table, frame in world.items()}
    raws["messages"] = raw_from_pandas("messages", messages)
    raws["events"] = raw_from_pandas("events", events)
    plain = validate_raw_arrow(raws, referenced_only=True)
    reasons = set(plain.quarantine["reason"])
    wanted = {"conflicting duplicate event_id", "invalid recipient_domain", REASON_BOTH_SOURCES}
    assert wanted <= reasons, reasons
    assert plain.report.tables["events"].duplicates == 1

    def block(result):  # noqa: ANN001, ANN202
        tables = result.tables
        cols = context_arrays_arrow(tables["events"], tables["messages"], result.event_messages)
        return feature_block(cols, enrichers)

    want = block(plain)

    def as_dictionary(column: pa.ChunkedArray, table: str) -> pa.Array:
        encoded = pc.dictionary_encode(column.combine_chunks())
        if table == "events":
            return encoded
        # the messages' dictionaries in another order than the events': codes must not mix
        last = len(encoded.dictionary) - 1
        indices = pc.subtract(last, encoded.indices).cast(pa.int32())
        return pa.DictionaryArray.from_arrays(indices, encoded.dictionary[::-1])

    # every CODED column a dictionary; then the events' only (tenants coded from both kinds)
    for tables in (("events", "messages"), ("events",)):
        coded_raws = dict(raws)
        for table in tables:
            data = raws[table].data
            for column in CODED[table]:
                i = data.schema.get_field_index(column)
                data = data.set_column(i, column, as_dictionary(data[column], table))
            coded_raws[table] = replace(raws[table], data=data)
        coded = validate_raw_arrow(coded_raws, referenced_only=True)
        assert coded.report.as_dict() == plain.report.as_dict()
        pd.testing.assert_frame_equal(coded.quarantine, plain.quarantine)
        assert coded.event_messages is not None and plain.event_messages is not None
        assert coded.event_messages.tolist() == plain.event_messages.tolist()
        for table in ("messages", "events"):
            assert decoded(coded.tables[table]).equals(plain.tables[table]), table
        assert pa.types.is_dictionary(coded.tables["events"].schema.field("tenant_id").type)
        got = block(coded)
        for feature, row_got, row_want in zip(FEATURE_NAMES, got, want, strict=True):
            np.testing.assert_array_equal(row_got, row_want, err_msg=feature)
