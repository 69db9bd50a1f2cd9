"""The simulated world: contract conformance, invariants, timing claims, shares, determinism."""

from __future__ import annotations

import bisect
import functools
import ipaddress
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from contract.schema import BOT_KINDS, CHANNELS, EVENT_TYPES, LABELS, TABLES
from core.errors import BotfilterError
from simulation import SimConfig, generate, simulate
from simulation.config import SOURCES

END = datetime(2026, 11, 1, tzinfo=UTC)
DAYS = 14
TINY = SimConfig(contacts_per_tenant=700)


@pytest.fixture(scope="module")
def world() -> dict[str, pd.DataFrame]:
    return generate(tenants=3, days=DAYS, seed=7, config=TINY)


@pytest.fixture(scope="module")
def joined(world: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Events with their message's channel, sent/delivered times and link count."""
    cols = ["message_id", "channel", "sent_at", "delivered_at", "link_count", "recipient_domain"]
    ev = world["events"].merge(world["messages"][cols], on="message_id", how="left", validate="m:1")
    ev["delay_s"] = (ev["occurred_at"] - ev["delivered_at"]).dt.total_seconds()
    return ev


@functools.lru_cache(maxsize=8)
def _ranges(category: str) -> tuple[list[int], list[int]]:
    """Sorted (start, end) integer ranges of a reference network category (both IP versions)."""
    from features.enrichment.reference import load_reference

    nets = sorted(
        (
            int(n.network_address) + (n.version == 6) * 2**32,
            int(n.broadcast_address) + (n.version == 6) * 2**32,
        )
        for n in map(ipaddress.ip_network, load_reference().networks[category])
    )
    return [a for a, _ in nets], [b for _, b in nets]


def _in_networks(ips: pd.Series, category: str) -> np.ndarray:
    starts, ends = _ranges(category)
    out = []
    for text in ips:
        ip = ipaddress.ip_address(text)
        x = int(ip) + (ip.version == 6) * 2**32
        i = bisect.bisect_right(starts, x) - 1
        out.append(i >= 0 and x <= ends[i])
    return np.array(out, dtype=bool)


# --- contract ---------------------------------------------------------------------------------
def test_tables_have_the_contract_columns_and_types(world: dict[str, pd.DataFrame]) -> None:
    for name, frame in world.items():
        extra = ["family"] if name == "events" else []  # evaluation only, after the contract's
        assert list(frame.columns) == TABLES[name].names + extra, name
        for col in TABLES[name].columns:
            if col.kind == "timestamp":
                assert str(frame[col.name].dtype) == "datetime64[ms, UTC]", (name, col.name)
    ev, msgs = world["events"], world["messages"]
    assert set(msgs["channel"]) == set(CHANNELS)
    assert set(ev["type"]) == set(EVENT_TYPES)
    assert set(ev["label"]) == set(LABELS)
    assert set(ev["bot_kind"].dropna()) == set(BOT_KINDS)
    assert ev["bot_kind"].isna().equals(ev["label"] == "human")
    assert ev["event_id"].is_unique and msgs["message_id"].is_unique
    assert ev["message_id"].isin(msgs["message_id"]).all()
    assert set(ev["http_method"]) == {"GET", "HEAD"}
    assert (ev.loc[ev["type"] == "open", "url"].isna()).all()
    assert ev.loc[ev["type"] == "click", "url"].str.startswith("https://").all()


def test_output_passes_the_contract_validator(world: dict[str, pd.DataFrame]) -> None:
    from contract.validate import validate_tables

    validated = validate_tables(world)
    assert len(validated.quarantine) == 0
    assert len(validated.events) == len(world["events"])
    assert len(validated.messages) == len(world["messages"])


def test_messages_follow_the_contract_rules(world: dict[str, pd.DataFrame]) -> None:
    msgs = world["messages"]
    assert not (msgs["campaign_id"].notna() & msgs["automation_id"].notna()).any()
    assert msgs["campaign_id"].notna().any() and msgs["automation_id"].notna().any()
    sms = msgs["channel"] == "sms"
    assert msgs.loc[sms, "recipient_domain"].isna().all()
    assert msgs.loc[~sms, "recipient_domain"].notna().all()
    assert msgs["sent_at"].min() >= END - timedelta(days=DAYS)
    assert msgs["sent_at"].max() < END
    undelivered = msgs["delivered_at"].isna().mean()
    assert 0.005 < undelivered < 0.06
    assert (
        msgs["delivered_at"].dropna() >= msgs.loc[msgs["delivered_at"].notna(), "sent_at"]
    ).all()
    assert msgs["link_count"].between(0, 8).all()
    assert set(world["settings"]["tenant_id"]) == set(msgs["tenant_id"])
    seg = world["segments"]
    assert seg["contact_id"].isin(msgs["contact_id"]).mean() > 0.8
    assert seg.groupby("tenant_id")["segment_id"].nunique().between(3, 6).all()


# --- invariants -----------------------------------------------------------------------------------
def test_events_come_after_sending_and_delivery_and_only_for_delivered(
    joined: pd.DataFrame,
) -> None:
    assert joined["delivered_at"].notna().all()  # undelivered messages have no events
    assert (joined["occurred_at"] >= joined["sent_at"]).all()
    assert (joined["occurred_at"] > joined["delivered_at"]).all()
    assert (joined["occurred_at"] < END).all()


def test_sms_has_clicks_only_and_links_are_in_range(joined: pd.DataFrame) -> None:
    assert (joined.loc[joined["channel"] == "sms", "type"] == "click").all()
    clicks = joined[joined["type"] == "click"]
    assert (clicks["link_position"] < clicks["link_count"]).all()
    assert (clicks["link_position"] >= 0).all()
    assert joined.loc[joined["type"] == "open", "link_position"].isna().all()


def test_hidden_links_are_clicked_by_bots_only(joined: pd.DataFrame) -> None:
    hidden = joined[joined["is_hidden_link"]]
    assert len(hidden) > 0
    assert (hidden["label"] == "bot").all()
    assert (hidden["channel"] == "email").all()


def test_people_click_after_they_open(joined: pd.DataFrame) -> None:
    human = joined[joined["label"] == "human"]
    first = human.groupby(["message_id", "type"])["occurred_at"].min().unstack()
    both = first.dropna()
    assert len(both) > 30
    assert (both["click"] >= both["open"]).all()


# --- timing ---------------------------------------------------------------------------------------
def test_scanners_arrive_seconds_after_delivery(joined: pd.DataFrame) -> None:
    scan = joined[joined["bot_kind"] == "security_scanner"]["delay_s"]
    assert scan.median() < 10.0
    assert scan.quantile(0.25) < 5.0


def test_mpp_prefetch_takes_minutes_to_hours(joined: pd.DataFrame) -> None:
    mpp = joined[joined["bot_kind"] == "privacy_prefetch"]
    assert (mpp["user_agent"] == "Mozilla/5.0").all()
    assert 60.0 < mpp["delay_s"].median() < 6 * 3600.0


def test_link_previews_arrive_seconds_after_delivery(joined: pd.DataFrame) -> None:
    prev = joined[(joined["bot_kind"] == "link_preview") & (joined["channel"] == "sms")]
    assert len(prev) > 5
    assert prev["delay_s"].median() < 10.0


def test_people_are_slow_and_heavy_tailed(joined: pd.DataFrame) -> None:
    human = joined[(joined["label"] == "human") & (joined["channel"] == "email")]["delay_s"]
    median = human.median()
    assert 30 * 60 < median < 12 * 3600
    assert human.quantile(0.95) / median > 8  # heavy tail: days, not hours
    assert (human < 60).mean() > 0.005  # some people click within a minute (hard negatives)
    assert (human < 60).mean() < 0.1


# --- shares and populations ------------------------------------------------------------------------
def test_bot_shares_are_in_published_ranges(joined: pd.DataFrame) -> None:
    email = joined[joined["channel"] == "email"]
    share = (email["label"] == "bot").mean()
    assert 0.3 <= share <= 0.65
    assert set(email["bot_kind"].dropna()) >= {"security_scanner", "privacy_prefetch", "crawler"}
    sms = joined[joined["channel"] == "sms"]
    assert 0.1 <= (sms["label"] == "bot").mean() <= 0.7


def test_bot_networks_and_user_agents(joined: pd.DataFrame) -> None:
    mpp = joined[joined["bot_kind"] == "privacy_prefetch"].head(200)
    assert _in_networks(mpp["ip"], "apple_proxy").all()
    assert mpp["ip"].str.contains(":").any() and (~mpp["ip"].str.contains(":")).any()
    scan = joined[joined["bot_kind"] == "security_scanner"]
    eop = _in_networks(scan["ip"].drop_duplicates(), "microsoft_eop")
    assert eop.any()  # Exchange Online Protection is the commonest gateway
    assert scan["user_agent"].isna().any()  # some scanners send no User-Agent
    assert (scan["http_method"] == "HEAD").any()
    imessage = joined["user_agent"].str.contains(
        "facebookexternalhit/1.1 Facebot Twitterbot/1.0", regex=False, na=False
    )
    assert (joined.loc[imessage, "bot_kind"] == "link_preview").all() and imessage.any()


def test_hard_negatives_are_people(joined: pd.DataFrame) -> None:
    human = joined[joined["label"] == "human"]
    gip = human["user_agent"].str.contains("GoogleImageProxy", na=False)
    assert gip.sum() > 20 and (human.loc[gip, "type"] == "open").all()
    assert human["user_agent"].str.startswith("YahooMailProxy", na=False).any()
    assert (
        not joined.loc[joined["user_agent"].str.contains("GoogleImageProxy", na=False), "label"]
        .eq("bot")
        .any()
    )
    # Colleagues behind one egress: one IP, several recipients of one corporate domain.
    corp = human[~human["recipient_domain"].isin(["gmail.com", "yahoo.com", "icloud.com"])]
    per_ip = corp.groupby("ip")["message_id"].nunique()
    assert (per_ip >= 5).any()
    # People on Azure virtual desktops: Microsoft cloud addresses, human label.
    azure = _in_networks(human["ip"].drop_duplicates(), "microsoft")
    assert azure.any()


def test_every_event_has_a_family_consistent_with_its_label(joined: pd.DataFrame) -> None:
    from simulation.behaviour import BOT_FAMILIES, HUMAN_FAMILIES

    human = joined["label"] == "human"
    assert joined.loc[human, "family"].isin(HUMAN_FAMILIES).all()
    assert joined.loc[~human, "family"].isin(BOT_FAMILIES).all()
    fams = set(joined.loc[human, "family"])
    assert {"person", "gmail_proxy", "zscaler", "office_nat", "cloud_desktop"} <= fams
    assert (joined.loc[joined["family"] == "gmail_proxy", "type"] == "open").all()
    # the default world never has the novel scanner family
    assert "novel_scanner" not in set(joined["family"])


def test_stress_worlds_push_their_hard_negative_family() -> None:
    """Isolation from the very addresses that scanned the message at delivery; cloud desktops on
    the gateway's cloud; Citrix and proxies at hosting providers; the unseen scanner family."""
    cfg = TINY.replace
    iso = generate(3, 14, 5, SimConfig.variant("stress_isolation", contacts_per_tenant=2000))[
        "events"
    ]
    same = iso[iso["family"] == "isolation_scanner_ip"]
    assert (same["label"] == "human").all() and (same["type"] == "click").all() and len(same) > 20
    # the isolated click comes from an address that also scanned that message at delivery
    scans = iso[iso["family"] == "scanner"][["message_id", "ip"]].drop_duplicates()
    hit = same.merge(scans, on=["message_id", "ip"], how="inner")["message_id"].nunique()
    scanned = same["message_id"].isin(scans["message_id"])
    assert hit >= 0.3 * same.loc[scanned, "message_id"].nunique() > 0
    vdi = generate(2, 7, 5, SimConfig.variant("stress_vdi_proxy", contacts_per_tenant=700))[
        "events"
    ]
    for family in ("citrix", "corporate_proxy"):
        rows = vdi[vdi["family"] == family]
        assert len(rows) > 20 and (rows["label"] == "human").all()
    novel = generate(2, 7, 5, SimConfig.variant("stress_novel_scanner", contacts_per_tenant=700))
    ev, msgs = novel["events"], novel["messages"].set_index("message_id")
    nov = ev[ev["family"] == "novel_scanner"]
    assert len(nov) > 50 and (nov["bot_kind"] == "security_scanner").all()
    delay = (nov["occurred_at"] - nov["message_id"].map(msgs["delivered_at"])).dt.total_seconds()
    assert delay.min() >= 30 - 1 and delay.median() < 300
    assert cfg(family_jitter=0.0).family_jitter == 0.0


def test_family_weights_vary_across_worlds() -> None:
    from simulation.world import jittered, stream

    a = jittered(TINY, stream(1, "families"))
    b = jittered(TINY, stream(2, "families"))
    assert a.isolation_share != b.isolation_share and a.egress_modes != b.egress_modes
    assert abs(sum(a.egress_modes.values()) - 1) < 1e-9
    assert jittered(TINY.replace(family_jitter=0.0), stream(1, "families")) == TINY.replace(
        family_jitter=0.0
    )


def test_asn_is_filled_for_some_events_with_the_true_asn(world: dict[str, pd.DataFrame]) -> None:
    from features.enrichment.reference import load_reference

    ref = load_reference()
    ev = world["events"]
    filled = ev[ev["asn"].notna() & ~ev["ip"].str.contains(":")].head(300)
    assert 0.1 < ev["asn"].notna().mean() < 0.5
    ints = np.array([int(ipaddress.ip_address(ip)) for ip in filled["ip"]], dtype=np.uint64)
    i = np.searchsorted(ref.ipv4_start.astype(np.uint64), ints, side="right") - 1
    assert (ref.ipv4_asn[i].astype(np.int64) == filled["asn"].to_numpy(dtype=np.int64)).all()


# --- config, profiles, determinism ------------------------------------------------------------------
def test_every_knob_has_a_documented_source() -> None:
    rows = SimConfig.describe()
    assert len(rows) > 60
    for row in rows:
        assert row["doc"] and row["source"] in SOURCES.values()


def test_bad_knobs_and_profiles_fail_clearly() -> None:
    with pytest.raises(BotfilterError, match="mpp_prefetch_prob"):
        SimConfig(mpp_prefetch_prob=1.5)
    with pytest.raises(BotfilterError, match="unknown simulation profile"):
        SimConfig.variant("nope")
    with pytest.raises(BotfilterError, match="--days"):
        generate(tenants=1, days=0, seed=0, config=TINY)


def test_shifted_profile_moves_the_settings() -> None:
    base, shifted = SimConfig.variant("default"), SimConfig.variant("shifted")
    assert shifted.profile == "shifted"
    assert shifted.scanner_delay[0] > base.scanner_delay[0]
    assert (
        shifted.scanner_ua_styles["microsoft_eop"][1] > base.scanner_ua_styles["microsoft_eop"][1]
    )
    assert shifted.isolation_share["proofpoint"] > base.isolation_share["proofpoint"]
    assert SimConfig.variant("shifted", scanner_late_share=0.5).scanner_late_share == 0.5


def test_shifted_world_differs_measurably() -> None:
    small = dict(tenants=2, days=7, seed=3)
    a = generate(**small, config=TINY)["events"]
    b = generate(**small, config=SimConfig.variant("shifted", contacts_per_tenant=700))["events"]
    modern = r"Chrome/1[2-9]\d\."

    def spoof_share(ev: pd.DataFrame) -> float:
        scan = ev[ev["bot_kind"] == "security_scanner"]
        return scan["user_agent"].str.contains(modern, na=False).mean()

    assert spoof_share(b) > spoof_share(a) + 0.1


def test_same_arguments_give_identical_files_and_other_seeds_differ(tmp_path) -> None:  # noqa: ANN001
    args = dict(tenants=1, days=3, config=SimConfig(contacts_per_tenant=300))
    s1 = simulate(tmp_path / "a", seed=5, **args)
    simulate(tmp_path / "b", seed=5, **args)
    simulate(tmp_path / "c", seed=6, **args)
    for name in ("messages", "events", "segments", "settings"):
        a = (tmp_path / "a" / f"{name}.parquet").read_bytes()
        assert a == (tmp_path / "b" / f"{name}.parquet").read_bytes(), name
    assert (tmp_path / "a" / "events.parquet").read_bytes() != (
        tmp_path / "c" / "events.parquet"
    ).read_bytes()
    assert s1.events == len(pd.read_parquet(tmp_path / "a" / "events.parquet"))
    assert set(s1.files) == {"messages", "events", "segments", "settings"}


def test_a_directory_of_other_data_is_never_overwritten(tmp_path) -> None:  # noqa: ANN001
    """`simulate --out` into a directory holding the user's own tables overwrote them (Parquet),
    or left both formats for the loader to refuse (CSV): nothing lost now. A directory the
    simulator wrote is written again."""
    args = dict(tenants=1, days=2, config=SimConfig(contacts_per_tenant=200))
    mine = tmp_path / "mine"
    mine.mkdir()
    pd.DataFrame({"message_id": ["m1"]}).to_parquet(mine / "messages.parquet")
    (mine / "events.csv").write_text("event_id\ne1\n")
    before = {p.name: p.read_bytes() for p in mine.iterdir()}
    with pytest.raises(BotfilterError) as refused:
        simulate(mine, **args)
    assert str(refused.value) == (
        f"--out {mine} holds tables botfilter simulate did not write (events.csv, "
        "messages.parquet); give a new or empty directory"
    )
    assert {p.name: p.read_bytes() for p in mine.iterdir()} == before
    again = tmp_path / "again"
    simulate(again, seed=1, **args)
    simulate(again, seed=2, **args)  # its own tables: written again
    assert simulate(tmp_path / "two", seed=2, **args).events == len(
        pd.read_parquet(again / "events.parquet")
    )
    # written before the stamp (a demo's world): the simulator's "family" column tells
    for name in ("events", "messages"):
        frame = pd.read_parquet(again / f"{name}.parquet")
        frame.to_parquet(again / f"{name}.parquet")  # pandas writes no stamp
    simulate(again, seed=3, **args)


def test_cli_writes_a_data_directory(tmp_path) -> None:  # noqa: ANN001
    from typer.testing import CliRunner

    from botfilter.cli import app

    out = tmp_path / "data"
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "--out",
            str(out),
            "--tenants",
            "1",
            "--days",
            "2",
            "--contacts",
            "200",
            "--seed",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "events.parquet",
        "messages.parquet",
        "segments.parquet",
        "settings.parquet",
    ]
    bad = CliRunner().invoke(app, ["simulate", "--out", str(out), "--profile", "nope"])
    assert isinstance(bad.exception, BotfilterError)


def test_people_networks_are_consumer_isps_verified_by_org_name() -> None:
    from features.enrichment.reference import load_reference

    ref = load_reference()
    isp_words = [
        "comcast",
        "charter",
        "at&t",
        "verizon",
        "cox",
        "centurylink",
        "t-mobile",
        "british",
        "telecom",
        "virgin",
        "sky",
        "talktalk",
        "telefonica",
        "vodafone",
        "deutsche",
        "telekom",
        "orange",
        "free",
        "sas",
        "francaise",
        "bouygues",
        "bell",
        "rogers",
        "telstra",
        "tpg",
        "optus",
        "iinet",
    ]
    cfg = SimConfig()
    for market, (_w, _off, residential, mobile) in cfg.markets.items():
        for asn in residential + mobile:
            org = ref.org_of(asn).lower()
            assert org, (market, asn)
            assert asn not in ref.datacenter_asns, (market, asn, org)
            assert any(word in org for word in isp_words), (market, asn, org)
    assert all("zscaler" in ref.org_of(a).lower() for a in cfg.zscaler_asns)


def test_scanners_fetch_links_in_a_burst_from_few_ips_per_domain(joined: pd.DataFrame) -> None:
    scan = joined[(joined["bot_kind"] == "security_scanner") & (joined["type"] == "click")]
    per_msg = scan.groupby("message_id")["occurred_at"].agg(["min", "max", "size"])
    multi = per_msg[per_msg["size"] >= 3]
    span = (multi["max"] - multi["min"]).dt.total_seconds()
    assert len(multi) > 20
    assert span.median() < 3.0  # all links within a second or two (a second pass adds more)
    corporate = ~scan["recipient_domain"].isin(["hotmail.com", "outlook.com", "live.com"])
    ips_per_domain = scan[corporate].groupby("recipient_domain")["ip"].nunique()
    assert ips_per_domain.max() <= 3
    msgs_per_ip = scan.groupby("ip")["message_id"].nunique()
    assert msgs_per_ip.max() >= 10  # one scanner IP serves many recipients


def test_people_click_early_links_more(joined: pd.DataFrame) -> None:
    human = joined[(joined["label"] == "human") & (joined["type"] == "click")]
    email = human[(human["channel"] == "email") & (human["link_count"] >= 4)]
    counts = email["link_position"].value_counts()
    assert counts.get(0, 0) + counts.get(1, 0) > counts.drop([0, 1], errors="ignore").sum()
    assert (human.groupby(["message_id", "link_position"]).size() >= 2).any()  # repeat clicks
