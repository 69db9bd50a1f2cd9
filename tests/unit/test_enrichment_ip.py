"""IP enrichment against the vendored reference: known addresses, given-asn rule, stable keys."""

from __future__ import annotations

import ipaddress

import numpy as np
import pandas as pd
import pytest

from core.errors import BotfilterError
from features.enrichment.ip import (
    FLAG_NAMES,
    IP_FEATURES,
    IpEnricher,
    cidr_ranges,
    flag_segments,
    ipv6_key,
    parse_ips,
)
from features.enrichment.reference import NETWORK_CATEGORIES, load_reference


@pytest.fixture(scope="module")
def enricher() -> IpEnricher:
    return IpEnricher(load_reference())


def enrich_one(enricher: IpEnricher, ip: str | None) -> dict[str, int]:
    out = enricher.enrich(pd.Series([ip], dtype=object))
    return {k: v[0].item() for k, v in out.items()}


def flags_set(row: dict[str, int]) -> set[str]:
    return {name for name in FLAG_NAMES if row[name]}


def test_registry_matches_output(enricher: IpEnricher) -> None:
    out = enricher.enrich(np.array(["8.8.8.8", None], dtype=object))
    assert list(out) == [name for name, _, _ in IP_FEATURES]
    for name, dtype, _ in IP_FEATURES:
        assert out[name].dtype == np.dtype(dtype), name
        assert out[name].shape == (2,)
    assert tuple(n for n, _, _ in IP_FEATURES if n.startswith("net_")) == FLAG_NAMES


def test_reference_has_the_promised_categories() -> None:
    ref = load_reference()
    assert set(NETWORK_CATEGORIES) <= set(ref.networks)
    eop_ranges = ref.networks["microsoft_eop"]
    assert {"40.92.0.0/15", "40.107.0.0/16", "52.100.0.0/14", "104.47.0.0/17"} <= set(eop_ranges)
    assert {"2a01:111:f400::/48", "2a01:111:f403::/48"} <= set(eop_ranges)
    microsoft = [ipaddress.ip_network(c) for c in ref.networks["microsoft"]]
    for cidr in eop_ranges:
        eop = ipaddress.ip_network(cidr)
        assert any(m.version == eop.version and eop.subnet_of(m) for m in microsoft), cidr
    assert ref.vendor_asns["google_mail"] == (15169,)
    assert ref.vendor_asns["microsoft"] == (8075,)
    assert {36647, 26101, 10310} <= set(ref.vendor_asns["yahoo"])
    assert 13916 in ref.vendor_asns["proofpoint"] and 15324 in ref.vendor_asns["barracuda"]
    assert 30031 in ref.vendor_asns["mimecast"]
    assert ref.org_of(15169) == "Google LLC"


def test_microsoft_eop(enricher: IpEnricher) -> None:
    row = enrich_one(enricher, "40.107.1.1")
    assert (row["ip_version"], row["asn"]) == (4, 8075)
    assert {"net_microsoft_eop", "net_security_vendor", "net_cloud"} <= flags_set(row)
    assert row["net_apple_relay"] == row["net_google"] == 0


def test_apple_relay_ipv4_and_ipv6(enricher: IpEnricher) -> None:
    # First lines of ipranges/apple-proxy: 104.28.28.0/26 and 2a02:26f7:b00a:4000::/64.
    v4 = enrich_one(enricher, "104.28.28.5")
    v6 = enrich_one(enricher, "2a02:26f7:b00a:4000::1")
    assert v4["net_apple_relay"] == 1 and v6["net_apple_relay"] == 1
    assert v6["ip_version"] == 6
    # .76/32 and .79/32 are listed, .77 is not.
    assert enrich_one(enricher, "104.28.28.77")["net_apple_relay"] == 0


def test_google(enricher: IpEnricher) -> None:
    row = enrich_one(enricher, "8.8.8.8")
    assert row["asn"] == 15169
    assert {"net_google", "net_google_mail_proxy", "net_cloud"} <= flags_set(row)
    v6 = enrich_one(enricher, "2001:4860:4860::8888")
    assert (v6["ip_version"], v6["asn"], v6["net_google"]) == (6, 15169, 1)
    crawler = enrich_one(enricher, "66.249.66.1")  # Googlebot
    assert crawler["net_crawler_range"] == 1 and crawler["net_google"] == 1


def test_yahoo_and_unflagged_resolver(enricher: IpEnricher) -> None:
    assert enrich_one(enricher, "98.136.1.1")["net_yahoo"] == 1
    cloudflare_dns = enrich_one(enricher, "1.1.1.1")
    assert cloudflare_dns["asn"] == 13335
    assert flags_set(cloudflare_dns) == set()


@pytest.mark.parametrize(
    "bad", [None, "", "garbage", "256.1.1.1", "1.2.3", "01.2.3.4", "1.2.3.4.5", "::g", 12345]
)
def test_invalid_or_missing(enricher: IpEnricher, bad: object) -> None:
    # Not a str on purpose: what a client's JSON may carry in the ip field.
    row = enrich_one(enricher, bad)  # type: ignore[arg-type]
    assert (row["ip_version"], row["asn"], row["ip_key"], row["prefix_key"]) == (0, 0, -1, -1)
    assert flags_set(row) == set()


def test_ipv4_mapped_and_whitespace(enricher: IpEnricher) -> None:
    plain = enrich_one(enricher, "8.8.4.4")
    assert enrich_one(enricher, "::ffff:8.8.4.4") == plain
    assert enrich_one(enricher, " 8.8.4.4\n") == plain


def test_given_asn_wins(enricher: IpEnricher) -> None:
    ips = pd.Series(["8.8.8.8", "8.8.8.8", "8.8.8.8", None, "8.8.8.8"])
    asn = pd.Series([22843, None, 0, 36647, "not a number"], dtype=object)
    out = enricher.enrich(ips, asn)
    assert out["asn"].tolist() == [22843, 15169, 15169, 36647, 15169]
    # ASN flags follow the final asn: Proofpoint, then Google, ...; Yahoo without an IP.
    assert out["net_security_vendor"].tolist() == [1, 0, 0, 0, 0]
    assert out["net_google_mail_proxy"].tolist() == [0, 1, 1, 0, 1]
    assert out["net_yahoo"].tolist() == [0, 0, 0, 1, 0]
    # Range flags stay with the address.
    assert out["net_cloud"].tolist() == [1, 1, 1, 0, 1]


def test_numeric_asn_arrays_take_the_same_path(enricher: IpEnricher) -> None:
    """The online API passes asn as float64 (NaN: missing), the batch job as a column."""
    ips = np.array(["8.8.8.8", "8.8.8.8", "8.8.8.8", None, "8.8.8.8"], dtype=object)
    floats = np.array([22843, np.nan, 0, 36647, -5.0])
    as_column = pd.Series([22843, None, 0, 36647, "-5"], dtype=object)
    want = enricher.enrich(ips, as_column)
    for given in (floats, floats.astype(np.float32), np.array([22843, 0, 0, 36647, -5])):
        got = enricher.enrich(ips, given)
        assert {k: v.tolist() for k, v in got.items()} == {k: v.tolist() for k, v in want.items()}
    with pytest.raises(BotfilterError, match="asn has 4 values for 5 IPs"):
        enricher.enrich(ips, floats[:4])


def test_keys_are_stable_literals(enricher: IpEnricher) -> None:
    out = enricher.enrich(np.array(["8.8.8.8", "8.8.8.9", "2001:4860:4860::8888"], dtype=object))
    assert out["ip_key"].tolist() == [134744072, 134744073, 8862406285640025393]
    assert out["prefix_key"].tolist() == [526344, 526344, 316664858036320]
    v6 = int(ipaddress.IPv6Address("2001:4860:4860::8888"))
    assert ipv6_key(np.array([v6 >> 64], np.uint64), np.array([v6 & (2**64 - 1)], np.uint64))[
        0
    ] == (8862406285640025393)


def test_v4_and_v6_keys_never_collide() -> None:
    rng = np.random.default_rng(3)
    keys = ipv6_key(
        rng.integers(0, 2**63, 10_000, dtype=np.uint64),
        rng.integers(0, 2**63, 10_000, dtype=np.uint64),
    )
    assert (keys >= 2**62).all()  # IPv4 keys are < 2**32


def test_factorized_and_categorical_inputs_agree(enricher: IpEnricher) -> None:
    ips = ["8.8.8.8", "40.107.1.1", None, "2001:4860:4860::8888", "8.8.8.8", "junk"]
    plain = enricher.enrich(pd.Series(ips, dtype=object))
    categorical = enricher.enrich(pd.Series(ips, dtype="category"))
    arrow = enricher.enrich(pd.Series(ips, dtype="string[pyarrow]"))
    for name, _, _ in IP_FEATURES:
        np.testing.assert_array_equal(plain[name], categorical[name], err_msg=name)
        np.testing.assert_array_equal(plain[name], arrow[name], err_msg=name)


def test_parse_ips_matches_ipaddress() -> None:
    values = ["0.0.0.0", "255.255.255.255", "1.2.3.04", "::", "fe80::1%eth0", "1::2::3", "1.2.3.4 "]
    parsed = parse_ips(values)
    assert parsed.version.tolist() == [4, 4, 0, 6, 6, 0, 4]
    assert parsed.v4.tolist()[:2] == [0, 2**32 - 1]
    assert parsed.v6_lo.tolist()[4] == 1 and parsed.v6_hi.tolist()[4] == 0xFE80 << 48


def test_cidr_ranges_of_every_vendored_ipv6_network_match_ipaddress() -> None:
    """IPv6 networks are parsed with inet_pton (a fifth of ipaddress's cost at start-up):
    every vendored one gives ipaddress's first and last address, and a bad one one line."""
    from core.errors import BotfilterError
    from features.enrichment.reference import load_reference

    v6 = [c for cs in load_reference().networks.values() for c in cs if ":" in c]
    assert len(v6) > 1000
    _, _, s6, e6 = cidr_ranges(v6)
    nets = [ipaddress.IPv6Network(c.strip(), strict=False) for c in v6]
    assert s6.tolist() == [int(n.network_address) for n in nets]
    assert e6.tolist() == [int(n.broadcast_address) for n in nets]
    with pytest.raises(BotfilterError, match=r"^bad IPv6 CIDR in reference networks: '1::2::3'"):
        cidr_ranges(["1::2::3/64"])


def test_flag_segments_overlap_exactly() -> None:
    s4, e4, s6, e6 = cidr_ranges(["10.0.0.0/8", "10.1.0.0/16", "2001:db8::/32"])
    assert s4.tolist() == [167772160, 167837696] and e4.tolist() == [184549375, 167903231]
    assert s6.tolist() == [0x20010DB8 << 96] and e6.tolist() == [((0x20010DB8 + 1) << 96) - 1]
    starts, flags = flag_segments(
        {1: (np.array([10, 30]), np.array([20, 40])), 2: (np.array([15]), np.array([35]))},
        100,
        np.int64,
    )
    assert starts.tolist() == [0, 10, 15, 21, 30, 36, 41]
    assert flags.tolist() == [0, 1, 3, 2, 3, 1, 0]


# ---------------------------------------------------------------- issue 16: the real world


def _corners(cidrs: list[str]) -> list[str]:
    """First, middle and last address of every CIDR."""
    out = []
    for cidr in cidrs:
        net = ipaddress.ip_network(cidr)
        first = int(net.network_address)
        for offset in (0, net.num_addresses // 2, net.num_addresses - 1):
            out.append(str(ipaddress.ip_address(first + offset)))
    return out


def _asn_corners(ref, asns: tuple[int, ...]) -> list[str]:  # noqa: ANN001
    """First and last address of every range (IPv4 and IPv6) the ASN table gives these ASNs."""
    rows = np.flatnonzero(np.isin(ref.ipv4_asn, asns))
    ends = np.concatenate([ref.ipv4_start[rows], ref.ipv4_end[rows]])
    out = [str(ipaddress.IPv4Address(int(v))) for v in ends]
    for i in np.flatnonzero(np.isin(ref.ipv6_asn, asns)):
        for hi, lo in ((ref.ipv6_start_hi, ref.ipv6_start_lo), (ref.ipv6_end_hi, ref.ipv6_end_lo)):
            out.append(str(ipaddress.IPv6Address((int(hi[i]) << 64) | int(lo[i]))))
    assert out, asns
    return out


def test_gmail_proxy_flag_never_fires_on_google_cloud_customer_space(
    enricher: IpEnricher,
) -> None:
    ref = load_reference()
    cloud = ref.networks["google_cloud"]
    assert len(cloud) > 600 and any(":" in c for c in cloud)
    ips = np.array(_corners(cloud), dtype=object)
    looked_up = enricher.enrich(ips)
    assert looked_up["net_google_mail_proxy"].sum() == 0
    assert looked_up["net_datacenter"].all() and looked_up["net_google"].all()
    # Even when the event's own ASN claims Google's (AS15169).
    claimed = enricher.enrich(ips, np.full(len(ips), 15169))
    assert claimed["net_google_mail_proxy"].sum() == 0
    # Google's own services (goog.json less cloud.json) in AS15169 keep it: the Gmail proxy.
    for gmail_proxy in ("66.249.84.1", "66.102.8.1", "74.125.151.1"):
        assert enrich_one(enricher, gmail_proxy)["net_google_mail_proxy"] == 1, gmail_proxy


def test_all_exchange_online_and_eop_ranges_ipv4_and_ipv6(enricher: IpEnricher) -> None:
    ips = np.array(_corners(load_reference().networks["microsoft_eop"]), dtype=object)
    out = enricher.enrich(ips)
    assert out["net_microsoft_eop"].all() and out["net_security_vendor"].all()
    assert (out["ip_version"] == 6).sum() > 0
    assert enrich_one(enricher, "40.92.33.7")["net_microsoft_eop"] == 1  # 40.92.0.0/15
    assert enrich_one(enricher, "2a01:111:f403:c900::12")["net_microsoft_eop"] == 1


def test_cloud_providers_published_ranges_are_data_centre(enricher: IpEnricher) -> None:
    ref = load_reference()
    for provider in ("amazon", "google_cloud", "oracle", "digitalocean", "linode", "vultr"):
        out = enricher.enrich(np.array(_corners(ref.networks[provider]), dtype=object))
        assert out["net_datacenter"].all(), provider
        assert out["net_cloud"].all(), provider


@pytest.mark.parametrize(
    ("group", "flag"),
    [
        ("m247", "net_datacenter"),
        ("fly_io", "net_datacenter"),
        ("vultr", "net_datacenter"),
        ("vultr", "net_cloud"),
        ("alibaba_cloud", "net_datacenter"),
        ("alibaba_cloud", "net_cloud"),
        ("symantec", "net_security_vendor"),
        ("trend_micro", "net_security_vendor"),
        ("sophos", "net_security_vendor"),
        ("cisco_secure_email", "net_security_vendor"),
        ("forcepoint", "net_security_vendor"),
        ("hornetsecurity", "net_security_vendor"),
    ],
)
def test_hosting_and_mail_security_networks(enricher: IpEnricher, group: str, flag: str) -> None:
    ref = load_reference()
    out = enricher.enrich(np.array(_asn_corners(ref, ref.vendor_asns[group]), dtype=object))
    assert out[flag].all(), group


def test_cloudflare_email_security_ranges(enricher: IpEnricher) -> None:
    ranges = load_reference().networks["cloudflare_email_security"]
    assert "104.30.32.0/19" in ranges and "2405:8100:c400::/38" in ranges
    out = enricher.enrich(np.array(_corners(ranges), dtype=object))
    assert out["net_security_vendor"].all()
    # The rest of Cloudflare (its CDN, WARP, 1.1.1.1) is not a security vendor.
    assert enrich_one(enricher, "104.16.1.1")["net_security_vendor"] == 0
