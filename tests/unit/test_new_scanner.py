"""The injectable new scanner family, and how often simulated scanners hit honeypot links."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.enrichment.reference import load_reference
from features.pipeline import Enrichers
from simulation import SimConfig, generate

TINY = dict(contacts_per_tenant=700)


def _with_asn(world: dict[str, pd.DataFrame]) -> pd.DataFrame:
    ev = world["events"]
    ip = Enrichers.load().ip.enrich(
        ev["ip"].to_numpy(dtype=object), ev["asn"].to_numpy(dtype="float64", na_value=np.nan)
    )
    flagged = np.zeros(len(ev), dtype=bool)
    for name, values in ip.items():
        if name.startswith("net_"):
            flagged |= values > 0
    cols = ["message_id", "delivered_at", "link_count"]
    out = ev.merge(world["messages"][cols], on="message_id", how="left", validate="m:1")
    return out.assign(
        net=ip["asn"],
        net_flagged=flagged,
        delay_s=(out["occurred_at"] - out["delivered_at"]).dt.total_seconds(),
    )


@pytest.fixture(scope="module")
def worlds() -> tuple[pd.DataFrame, pd.DataFrame]:
    base = generate(tenants=3, days=10, seed=4, config=SimConfig(**TINY))
    new = generate(tenants=3, days=10, seed=4, config=SimConfig.variant("new_scanner", **TINY))
    return _with_asn(base), _with_asn(new)


def test_the_family_is_absent_by_default_and_injected_by_the_profile(worlds) -> None:
    base, new = worlds
    asns = SimConfig.variant("new_scanner").new_scanner_asns
    assert not base["net"].isin(asns).any()
    fam = new[new["net"].isin(asns)]
    assert len(fam) > 100
    assert (fam["label"] == "bot").all() and (fam["bot_kind"] == "security_scanner").all()
    assert (fam["type"] == "click").all() and (fam["http_method"] == "GET").all()
    # Seconds after delivery, with a current desktop Chrome, from a network no list flags.
    assert fam["delay_s"].median() < 30
    assert fam["user_agent"].str.contains("Windows NT 10.0.*Chrome/", regex=True).all()
    assert not set(asns) & set(load_reference().datacenter_asns)
    # ... by any of the enrichment's network flags (data centre, cloud, vendor, VPN, ...).
    assert not fam["net_flagged"].any()
    # Everything else is drawn as before: the rest of the world is the same.
    rest = new[~new["net"].isin(asns)].drop(columns=["event_id"]).reset_index(drop=True)
    assert len(rest) == len(base)
    pd.testing.assert_series_equal(
        rest["occurred_at"].sort_values(ignore_index=True),
        base["occurred_at"].sort_values(ignore_index=True),
    )


def test_scanners_hit_honeypot_links_at_a_realistic_rate() -> None:
    # Every email carries a honeypot link here.
    cfg = SimConfig(honeypot_tenant_share=1.0, **TINY)
    base = _with_asn(generate(tenants=2, days=10, seed=4, config=cfg))
    honeypot_msgs = set(base.loc[base["is_hidden_link"], "message_id"])
    scanned = base[(base["bot_kind"] == "security_scanner") & (base["type"] == "click")]
    per_msg = scanned.groupby("message_id")["link_count"].first()
    multi = per_msg.index[per_msg >= 2]
    share = np.isin(multi, list(honeypot_msgs)).mean()
    # Fetch-all scanners (about half) follow the hidden link ~55% of the time; first-link and
    # subset scanners rarely: a fifth to a half of scanned messages show a honeypot hit.
    assert 0.2 <= share <= 0.5, share
    # People never do.
    assert (base.loc[base["is_hidden_link"], "label"] == "bot").all()
