"""The vendor build on a tiny fake source folder: exact content, determinism, clear errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from botfilter.cli import app
from core.errors import BotfilterError
from features.enrichment.ip import IpEnricher
from features.enrichment.reference import load_reference
from features.enrichment.vendor import (
    PROVIDERS,
    build_vendored_data,
    read_asn_groups,
    subtract_cidrs,
    vendored_file_names,
)

ASN_V4 = [
    # start, end, asn, org — 1.0.0.0/24, an overlap (1.0.0.128-1.0.1.255 starts inside it).
    (16777216, 16777471, 13335, "Cloudflare, Inc."),
    (16777344, 16777727, 64500, "Overlap Org"),
    (134744064, 134744319, 15169, "Google LLC"),  # 8.8.8.0/24
    (1748697088, 1748729855, 8075, "Microsoft Corporation"),  # 104.58.0.0/17 (not EOP)
    (3232235520, 3232235775, 22843, "Proofpoint Inc."),  # 192.168.0.0/24
    (3232235776, 3232236031, 30031, "Mimecast North America Inc"),  # 192.168.1.0/24
    (3232236032, 3232236287, 15324, "Barracuda Networks Inc."),  # 192.168.2.0/24
    (3232236288, 3232236543, 36647, "Oath Holdings Inc."),  # 192.168.3.0/24
    (3232236544, 3232236799, 23816, "Yahoo Japan Corporation"),  # 192.168.4.0/24
    (3232236800, 3232237055, 40509, "Fly.io, Inc."),  # 192.168.5.0/24
    (3232237056, 3232237311, 21345, "CA Technology R&D Limited"),  # 192.168.6.0/24
    (3232237312, 3232237567, 45102, "Alibaba (US) Technology Co., Ltd."),  # 192.168.7.0/24
    (3232237568, 3232237823, 20473, "The Constant Company, LLC"),  # 192.168.8.0/24
]
EOP = ["40.107.0.0/16", "52.100.0.0/14", "104.47.0.0/17", "2a01:111:f400::/48"]
ASN_V6 = [
    ("2001:4860::", "2001:4860:ffff:ffff:ffff:ffff:ffff:ffff", 15169, "Google LLC"),
    ("2a00::", "2a00::ffff", 64501, ""),  # a range not aligned to /64, without an org name
]
USER_AGENTS = [
    {"userAgent": "UA one", "weight": 0.75, "deviceCategory": "desktop", "platform": "Win32"},
    {"userAgent": "UA two", "weight": 0.25, "deviceCategory": "mobile"},
]


def make_source(root: Path) -> Path:
    """A complete source folder in the real layout, a few lines per file."""
    for folder, category in PROVIDERS.items():
        base = root / "ipranges" / folder
        base.mkdir(parents=True)
        (base / "ipv4_merged.txt").write_text(f"10.{len(category)}.0.0/16\n")
    (root / "ipranges" / "microsoft" / "ipv4_merged.txt").write_text(
        "40.64.0.0/10\n52.96.0.0/12\n104.40.0.0/13\n"
    )
    (root / "ipranges" / "microsoft" / "ipv6_merged.txt").write_text("2a01:111::/32\n")
    (root / "ipranges" / "apple-proxy" / "ipv6_merged.txt").write_text("2a02:26f7:b00a:4000::/64\n")
    (root / "ipranges" / "SOURCE.txt").write_text("ipranges test snapshot 1\n")
    (root / "ipranges" / "LICENSE").write_text("CC0 text\n")
    dc = root / "datacenter"
    dc.mkdir()
    (dc / "datacenter_asn.txt").write_text("AS64500 # hosting\n\nAS16509 # AWS\n")
    (dc / "datacenter_ipv4.txt").write_text("5.0.0.0/8\n")
    (dc / "datacenter_ipv6.txt").write_text("2a05::/16\n")
    (dc / "vpn_ipv4.txt").write_text("6.6.6.0/24\n")
    (dc / "SOURCE.txt").write_text("datacenter test snapshot 2\n")
    (dc / "LICENSE").write_text("MIT text\n")
    asn = root / "asn"
    asn.mkdir()
    v4 = pd.DataFrame(ASN_V4)
    v6 = pd.DataFrame(ASN_V6)
    with gzip.open(asn / "asn-ipv4-num.csv.gz", "wt") as fh:
        v4.to_csv(fh, header=False, index=False)
    with gzip.open(asn / "asn-ipv6.csv.gz", "wt") as fh:
        v6.to_csv(fh, header=False, index=False)
    for name in ("DBIP-LICENSE", "NRO_LICENSE", "ROUTEVIEWS-LICENSE", "MODIFICATIONS"):
        (asn / name).write_text(f"{name} text\n")
    (asn / "SOURCE.txt").write_text("asn test snapshot 3\n")
    ua = root / "user-agents"
    ua.mkdir()
    with gzip.open(ua / "user-agents.json.gz", "wt") as fh:
        json.dump(USER_AGENTS, fh)
    (ua / "SOURCE.txt").write_text("user-agents test snapshot 4\n")
    (ua / "LICENSE").write_text("BSD-2 text\n")
    return root


def make_curated(root: Path) -> Path:
    """A curated folder in the real layout (features/enrichment/sources), a few lines per file."""
    files = {
        "microsoft-exchange/ranges.txt": "# Exchange Online and EOP\n" + "\n".join(EOP) + "\n",
        "google/goog.txt": "8.8.0.0/16\n",
        "google/cloud.txt": "8.8.4.0/24\n",
        "cloudflare-email-security/ranges.txt": "104.30.32.0/19\n",
        "asn-groups/mail_security.txt": "symantec AS21345 # CA Technology R&D Limited\n",
        "asn-groups/hosting.txt": "fly_io AS40509 # Fly.io\nalibaba_cloud as45102\nvultr AS20473\n",
        "LICENSE-CC0.txt": "CC0 text\n",
        "google/LICENSE-googerteller.txt": "MIT text (googerteller)\n",
    }
    for folder in ("microsoft-exchange", "google", "cloudflare-email-security", "asn-groups"):
        files[f"{folder}/SOURCE.txt"] = f"curated {folder} test source\n"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return make_source(tmp_path / "src")


@pytest.fixture
def curated(tmp_path: Path) -> Path:
    return make_curated(tmp_path / "curated")


def test_build_is_deterministic_and_complete(source: Path, curated: Path, tmp_path: Path) -> None:
    first = build_vendored_data(source, tmp_path / "a", show_progress=False, curated=curated)
    second = build_vendored_data(source, tmp_path / "b", show_progress=False, curated=curated)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(vendored_file_names())
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert first.files == second.files
    assert first.counts == {
        "ipv4_asn_ranges": 13,
        "ipv6_asn_ranges": 2,
        "orgs": 13,
        # 15 providers' IPv4, Apple's IPv6, Microsoft's 2 more IPv4 and 1 IPv6, datacenter 2,
        # VPN 1; curated: EOP 4, Cloudflare Email Security 1, Google Cloud 1, Google's own 8
        # (8.8.0.0/16 less 8.8.4.0/24).
        "network_cidrs": 15 + 1 + 2 + 1 + 2 + 1 + 4 + 1 + 1 + 8,
        "datacenter_asns": 2,
        "user_agents": 2,
    }
    assert first.warnings == [
        "asn-ipv4: 1 overlapping range(s) clipped at the next start, 0 left empty and dropped, "
        "0 lost a tail reaching past the next range"
    ]
    attribution = (tmp_path / "a" / "ATTRIBUTION.md").read_text()
    for snapshot in ("ipranges test snapshot 1", "datacenter test snapshot 2"):
        assert snapshot in attribution
    assert "asn test snapshot 3" in attribution and "CC BY 4.0" in attribution
    assert (tmp_path / "a" / "LICENSE-asn-DBIP.txt").read_text() == "DBIP-LICENSE text\n"
    assert "curated asn-groups test source" in attribution
    assert (
        tmp_path / "a" / "LICENSE-curated-google.txt"
    ).read_text() == "MIT text (googerteller)\n"


def test_built_reference_content(source: Path, curated: Path, tmp_path: Path) -> None:
    build_vendored_data(source, tmp_path / "out", show_progress=False, curated=curated)
    ref = load_reference(tmp_path / "out")
    assert ref.ipv4_start.dtype == np.uint32 and ref.ipv6_start_hi.dtype == np.uint64
    # The overlapping range is clipped where the next starts.
    assert ref.ipv4_start[:2].tolist() == [16777216, 16777344]
    assert ref.ipv4_end[:2].tolist() == [16777343, 16777727]
    assert ref.orgs[ref.ipv4_org[0]] == "Cloudflare, Inc."
    assert ref.ipv6_org.tolist() == [ref.orgs.tolist().index("Google LLC"), -1]
    assert ref.ipv6_end_lo.tolist() == [2**64 - 1, 0xFFFF]
    assert ref.vendor_asns == {
        "proofpoint": (22843,),
        "mimecast": (30031,),
        "barracuda": (15324,),
        "yahoo": (36647,),  # Yahoo Japan is another company
        "google_mail": (15169,),
        "microsoft": (8075,),
        "symantec": (21345,),
        "mail_security": (21345,),
        "fly_io": (40509,),
        "alibaba_cloud": (45102,),
        "vultr": (20473,),
        "hosting": (20473, 40509, 45102),
    }
    assert ref.datacenter_asns == frozenset({64500, 16509})
    assert ref.networks["microsoft_eop"] == EOP
    assert ref.networks["google_cloud"] == ["8.8.4.0/24"]
    assert ref.networks["google_own"][:3] == ["8.8.0.0/22", "8.8.5.0/24", "8.8.6.0/23"]
    assert ref.networks["datacenter"] == ["5.0.0.0/8", "2a05::/16"]
    assert ref.networks["apple_proxy"] == ["10.11.0.0/16", "2a02:26f7:b00a:4000::/64"]
    assert ref.user_agents.to_dict("list") == {
        "user_agent": ["UA one", "UA two"],
        "weight": [0.75, 0.25],
        "device_category": ["desktop", "mobile"],
    }

    out = IpEnricher(ref).enrich(
        np.array(["192.168.1.9", "8.8.8.8", "2a00::ff", "2a00::1:0", "5.1.2.3", "1.0.0.200"])
    )
    assert out["asn"].tolist() == [30031, 15169, 64501, 0, 0, 64500]
    assert out["net_security_vendor"].tolist() == [1, 0, 0, 0, 0, 0]
    assert out["net_datacenter"].tolist() == [0, 0, 0, 0, 1, 1]  # CIDR, then hosting ASN
    # Curated: Symantec's and Fly.io's ASNs, Cloudflare Email Security's range, the Gmail proxy
    # on Google's own ranges only (8.8.4.0/24 is cloud, even with Google's ASN given).
    out = IpEnricher(ref).enrich(
        np.array(["192.168.6.1", "192.168.5.1", "104.30.40.1", "8.8.8.8", "8.8.4.4"]),
        np.array([0, 0, 0, 0, 15169]),
    )
    assert out["net_security_vendor"].tolist() == [1, 0, 1, 0, 0]
    assert out["net_datacenter"].tolist() == [0, 1, 0, 0, 1]  # Fly.io; Google Cloud
    assert out["net_google_mail_proxy"].tolist() == [0, 0, 0, 1, 0]


def test_asn_groups_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "groups.txt"
    path.write_text("ok AS1 as2 # fine\n\nBad-name AS3\n")
    with pytest.raises(BotfilterError, match=r"groups.txt:3: expected 'group AS1 AS2 ...'"):
        read_asn_groups(path)
    path.write_text("ok AS1\nok AS2\n")
    with pytest.raises(BotfilterError, match="group 'ok' listed twice"):
        read_asn_groups(path)
    path.write_text("ok AS2 AS1 AS2\n")
    assert read_asn_groups(path) == {"ok": [1, 2]}


def test_subtract_cidrs() -> None:
    assert subtract_cidrs(["10.0.0.0/30", "2001:db8::/127"], ["10.0.0.1/32", "2001:db8::/128"]) == [
        "10.0.0.0/32",
        "10.0.0.2/31",
        "2001:db8::1/128",
    ]
    assert subtract_cidrs(["10.0.0.0/24"], ["10.0.0.0/16"]) == []


def test_warns_when_eop_not_inside_microsoft(source: Path, curated: Path, tmp_path: Path) -> None:
    (source / "ipranges" / "microsoft" / "ipv4_merged.txt").write_text("40.64.0.0/10\n")
    summary = build_vendored_data(source, tmp_path / "out", show_progress=False, curated=curated)
    assert [w for w in summary.warnings if "EOP" in w] == [
        "Microsoft EOP range 52.100.0.0/14 is not inside the ipranges/microsoft list",
        "Microsoft EOP range 104.47.0.0/17 is not inside the ipranges/microsoft list",
    ]


def test_bad_cidr_names_file_and_line(source: Path, curated: Path, tmp_path: Path) -> None:
    (source / "datacenter" / "vpn_ipv4.txt").write_text("6.6.6.0/24\n6.6.6.300/24\n")
    with pytest.raises(BotfilterError, match=r"vpn_ipv4.txt:2: not a CIDR: '6.6.6.300/24'"):
        build_vendored_data(source, tmp_path / "out", show_progress=False, curated=curated)


def test_missing_source_folder(source: Path, curated: Path, tmp_path: Path) -> None:
    (source / "ipranges" / "telegram" / "ipv4_merged.txt").unlink()
    with pytest.raises(BotfilterError, match="telegram: neither ipv4_merged.txt nor"):
        build_vendored_data(source, tmp_path / "out", show_progress=False, curated=curated)
    with pytest.raises(BotfilterError, match="vendor source folder not found"):
        build_vendored_data(
            tmp_path / "nope", tmp_path / "out", show_progress=False, curated=curated
        )


def test_missing_vendored_file_is_a_clear_error(
    source: Path, curated: Path, tmp_path: Path
) -> None:
    build_vendored_data(source, tmp_path / "out", show_progress=False, curated=curated)
    (tmp_path / "out" / "networks.json.gz").unlink()
    with pytest.raises(BotfilterError, match="vendored enrichment file missing: .*networks"):
        load_reference(tmp_path / "out")


def test_cli_vendor(source: Path, curated: Path, tmp_path: Path) -> None:
    args = ["vendor", "--source", str(source), "--out", str(tmp_path / "cli")]
    result = CliRunner().invoke(app, [*args, "--curated", str(curated)])
    assert result.exit_code == 0, result.output
    assert "ipv4_asn_ranges: 13" in result.output
    assert (tmp_path / "cli" / "asn.npz").is_file()
    missing = CliRunner().invoke(app, [*args, "--curated", str(tmp_path / "none")])
    assert missing.exit_code != 0
    assert "curated source folder not found" in str(missing.exception)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the ASN table has no rows"),
        (b"1,2,13335\n", r"asn-ipv4-num.csv.gz:1: expected start,end,asn,org"),
        (None, "cannot read ASN table: Compressed file ended"),  # cut short
        (b"not gzip", "cannot read ASN table: Not a gzipped file"),
    ],
)
def test_a_broken_asn_table_is_refused_in_one_line(
    source: Path, curated: Path, tmp_path: Path, content: bytes | None, message: str
) -> None:
    """Empty or three columns: every address lost its ASN, exit 0. Cut short or not gzip:
    'Aborted!' or an internal error."""
    path = source / "asn" / "asn-ipv4-num.csv.gz"
    if content is None:
        path.write_bytes(path.read_bytes()[:-12])
    elif content == b"not gzip":
        path.write_bytes(content)
    else:
        with gzip.open(path, "wb") as fh:
            fh.write(content)
    with pytest.raises(BotfilterError, match=message):
        build_vendored_data(source, tmp_path / "out", show_progress=False, curated=curated)


def test_an_asn_past_32_bits_is_refused(source: Path, curated: Path, tmp_path: Path) -> None:
    """It was written out and broke every enrichment at load (OverflowError)."""
    (source / "datacenter" / "datacenter_asn.txt").write_text("AS64500\nAS99999999999999999999\n")
    with pytest.raises(BotfilterError, match=r"datacenter_asn.txt:2: not an ASN"):
        build_vendored_data(source, tmp_path / "out", show_progress=False, curated=curated)
    with pytest.raises(BotfilterError, match=r"groups.txt:1: expected"):
        path = tmp_path / "groups.txt"
        path.write_text("big AS4294967296\n")
        read_asn_groups(path)
