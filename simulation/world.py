"""The static world: tenants, mailbox domains and their gateways, contacts, content, messages.

Everything is drawn with numpy over whole arrays; the only Python loops run over tenants,
markets, gateways or content items (tens to hundreds), never over contacts, messages or events.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .config import GATEWAYS, SimConfig
from .networks import (
    IpTable,
    Networks,
    StringTable,
    apple_mail_ua,
    crawler_user_agents,
    outdated_chrome_uas,
)

MS = 1000
DAY_MS = 86_400_000

PROVIDERS = ("gmail", "yahoo", "outlook", "apple", "isp", "corporate")
CLIENTS = ("apple_mpp", "apple_direct", "gmail_proxy", "yahoo_proxy", "outlook_desktop", "browser")
EGRESS = ("business_isp", "zscaler", "azure_vdi", "remote", "citrix", "corporate_proxy")
# Egress modes whose staff browse inside a remote desktop (a managed Windows Chrome).
DESKTOP_EGRESS = ("azure_vdi", "citrix")
LINK_MODES = ("all", "first", "subset")
UA_NONE = -1  # UA table code for "no User-Agent header"

_WORDS = [
    "harbor",
    "pine",
    "maple",
    "cedar",
    "river",
    "stone",
    "bright",
    "north",
    "summit",
    "copper",
    "silver",
    "lumen",
    "nova",
    "terra",
    "atlas",
    "vivid",
    "prime",
    "urban",
    "coastal",
    "alpine",
    "meadow",
    "orbit",
    "pixel",
    "quartz",
    "sierra",
    "willow",
    "aurora",
    "bluebird",
    "canyon",
    "delta",
    "ember",
    "falcon",
    "garnet",
    "horizon",
    "iris",
    "juniper",
    "kestrel",
    "lotus",
    "marble",
    "nimbus",
    "oak",
    "pioneer",
    "quill",
    "raven",
    "sage",
    "tidal",
    "union",
    "vertex",
    "wren",
    "zephyr",
]
_SUFFIX = [
    "labs",
    "systems",
    "group",
    "partners",
    "logistics",
    "health",
    "capital",
    "media",
    "foods",
    "works",
    "energy",
    "legal",
    "consulting",
    "retail",
    "analytics",
    "bank",
    "insurance",
    "clinic",
    "university",
    "motors",
]
_TLDS = ("com", "com", "com", "net", "io", "co.uk", "de", "fr", "org", "ca")
_PATHS = (
    "collections/new-arrivals",
    "collections/sale",
    "products/bestsellers",
    "pages/offer",
    "blog/whats-new",
    "account/preferences",
    "stores/locator",
    "events/webinar",
    "pages/loyalty",
    "products/gift-cards",
    "help/shipping",
    "pages/referral",
)


def stream(seed: int, name: str) -> np.random.Generator:
    """An independent generator per (seed, component): adding a component moves no other draw."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def lognormal(rng: np.random.Generator, spec: tuple[float, float], n: int) -> np.ndarray:
    """Log-normal draws in seconds from (median s, sigma)."""
    return np.exp(np.log(spec[0]) + spec[1] * rng.standard_normal(n))


def pick(rng: np.random.Generator, weights: np.ndarray, n: int) -> np.ndarray:
    """Categorical draws by weight."""
    w = np.asarray(weights, dtype=np.float64)
    return rng.choice(len(w), size=n, p=w / w.sum())


def hex_ids(prefix: str, n: int, salt: int) -> np.ndarray:
    """Unique opaque ids: a bijective scramble of 0..n-1 rendered as 16 hex digits."""
    # Adding a constant then a splitmix64 finaliser: a bijection on 64 bits, so ids are unique.
    offset = np.uint64((0x632BE59BD9B4E019 + (salt & 0xFFFFFFFF) * 0x9E3779B97F4A7C15) % 2**64)
    with np.errstate(over="ignore"):
        x = np.arange(n, dtype=np.uint64) + offset
        x ^= x >> np.uint64(30)
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x = x * np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return _hex(prefix, x)


def _hex(prefix: str, x: np.ndarray) -> np.ndarray:
    """``prefix`` + 16 lowercase hex digits of each uint64 (vectorised through bytes)."""
    head = prefix.encode("ascii")
    width = len(head) + 16
    nibbles = (x[:, None] >> (np.arange(60, -1, -4, dtype=np.uint64)[None, :])) & np.uint64(15)
    chars = np.empty((x.size, width), dtype=np.uint8)
    chars[:, : len(head)] = np.frombuffer(head, dtype=np.uint8)
    chars[:, len(head) :] = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)[
        nibbles.astype(np.intp)
    ]
    return chars.view(f"S{width}").ravel().astype(f"U{width}").astype(object)


@dataclass
class Domains:
    """Mailbox domains: consumer providers first, then corporate domains."""

    name: np.ndarray
    provider: np.ndarray  # index into PROVIDERS
    weight: np.ndarray  # relative size
    gateway: np.ndarray  # index into GATEWAYS
    scan_prob: np.ndarray
    link_mode: np.ndarray  # index into LINK_MODES
    head_first: np.ndarray
    pixel: np.ndarray
    rescan: np.ndarray
    honeypot_follow: np.ndarray
    scanner_ips: np.ndarray  # (n, 3) IP table codes, used round-robin
    scanner_ua: np.ndarray  # UA table code (UA_NONE = empty)
    isolation: np.ndarray  # bool
    isolation_ip: np.ndarray  # IP code of the vendor isolation egress
    isolation_same_ip: np.ndarray  # bool: isolation egress is the domain's first scanner IP
    egress: np.ndarray  # index into EGRESS
    egress_ip: np.ndarray  # (n, 2) IP codes of the office egress
    office_share: np.ndarray

    @property
    def n_consumer(self) -> int:
        return int((self.provider != PROVIDERS.index("corporate")).sum())


@dataclass
class Contacts:
    """Recipients, each with a mailbox domain, a mail client, devices, networks, propensities."""

    tenant: np.ndarray
    contact_id: np.ndarray
    domain: np.ndarray
    client: np.ndarray  # index into CLIENTS
    images_blocked: np.ndarray
    iphone: np.ndarray
    phone_ua: np.ndarray  # browser UA on the phone (UA code)
    desktop_ua: np.ndarray
    phone_open_ua: np.ndarray  # UA of image loads when reading on the phone (direct clients)
    desktop_open_ua: np.ndarray
    home_ip: np.ndarray  # IP code
    mobile_ip: np.ndarray  # (n, k) IP codes, carrier NAT rotation
    relay: np.ndarray  # Safari clicks through iCloud Private Relay
    p_open: np.ndarray
    p_click: np.ndarray
    p_sms: np.ndarray
    mobile_pref: np.ndarray
    invalid: np.ndarray
    sms_optin: np.ndarray

    def __len__(self) -> int:
        return len(self.tenant)


@dataclass
class Contents:
    """Campaigns and automation flows: what was sent, with which links."""

    tenant: np.ndarray
    channel: np.ndarray  # 0 email, 1 sms
    is_campaign: np.ndarray
    content_id: np.ndarray  # campaign_id or automation_id
    link_count: np.ndarray  # including the hidden link
    hidden_pos: np.ndarray  # -1 when none
    url_off: np.ndarray  # offset into World.url_codes
    appeal: np.ndarray


@dataclass
class Messages:
    """One row per message sent to one recipient."""

    content: np.ndarray
    contact: np.ndarray
    sent: np.ndarray  # ms since epoch
    delivered: np.ndarray  # ms since epoch, -1 when not delivered

    def __len__(self) -> int:
        return len(self.content)


@dataclass
class World:
    """Everything static that events are generated from."""

    cfg: SimConfig
    seed: int
    start_ms: int
    end_ms: int
    tenant_id: np.ndarray
    tenant_offset_h: np.ndarray
    domains: Domains
    contacts: Contacts
    contents: Contents
    messages: Messages
    segments: pd.DataFrame
    settings: pd.DataFrame
    ips: IpTable
    uas: StringTable
    urls: StringTable
    url_codes: np.ndarray
    pools: dict[str, np.ndarray] = field(default_factory=dict)  # shared IP/UA code pools


# --------------------------------------------------------------------------------------------
def build_world(cfg: SimConfig, nets: Networks, tenants: int, days: int, seed: int) -> World:
    """Draw the static world for ``tenants`` tenants over ``days`` days."""
    cfg = jittered(cfg, stream(seed, "families"))
    end_ms = int(cfg.end.timestamp() * MS)
    start_ms = end_ms - days * DAY_MS
    ips, uas, urls = IpTable(), StringTable(), StringTable()
    pools = _shared_pools(cfg, nets, ips, uas, stream(seed, "pools"))
    rng = stream(seed, "tenants")
    markets = list(cfg.markets)
    t_market = pick(rng, np.array([cfg.markets[m][0] for m in markets]), tenants)
    t_offset = np.array([cfg.markets[markets[m]][1] for m in t_market])
    t_size = np.maximum(
        20,
        np.round(
            cfg.contacts_per_tenant * np.exp(cfg.tenant_size_sigma * rng.standard_normal(tenants))
        ),
    ).astype(np.int64)
    if tenants == 1:
        t_size[:] = cfg.contacts_per_tenant
    t_corporate = rng.beta(*cfg.corporate_share_beta, size=tenants)
    t_sms = rng.random(tenants) < cfg.sms_program_share
    t_optin = rng.uniform(*cfg.sms_optin_range, size=tenants)
    t_honeypot = rng.random(tenants) < cfg.honeypot_tenant_share
    width = max(3, len(str(tenants)))
    tenant_id = np.array([f"t{i + 1:0{width}d}" for i in range(tenants)], dtype=object)
    brands = _names(rng, tenants, with_suffix=False)

    domains = _domains(cfg, nets, ips, uas, pools, stream(seed, "domains"))
    contacts = _contacts(
        cfg,
        nets,
        ips,
        uas,
        pools,
        domains,
        stream(seed, "contacts"),
        t_size,
        t_market,
        t_corporate,
        t_optin * t_sms,
        markets,
        tenant_id,
    )
    contents, url_codes = _contents(
        cfg, stream(seed, "contents"), urls, tenant_id, brands, t_sms, t_honeypot, days
    )
    segments, seg_member = _segments(cfg, stream(seed, "segments"), contacts, tenant_id)
    messages = _messages(
        cfg,
        stream(seed, "messages"),
        contents,
        contacts,
        seg_member,
        t_offset,
        start_ms,
        end_ms,
        days,
    )
    srng = stream(seed, "settings")
    settings = pd.DataFrame(
        {
            "tenant_id": tenant_id,
            "exclude_bots_email": srng.random(tenants) < cfg.exclude_bots_email_share,
            "exclude_bots_sms": srng.random(tenants) < cfg.exclude_bots_sms_share,
            "updated_at": pd.Series(
                (end_ms - (srng.random(tenants) * 60 * DAY_MS).astype(np.int64)).astype(
                    "datetime64[ms]"
                )
            ).dt.tz_localize("UTC"),
        }
    )
    return World(
        cfg,
        seed,
        start_ms,
        end_ms,
        tenant_id,
        t_offset,
        domains,
        contacts,
        contents,
        messages,
        segments,
        settings,
        ips,
        uas,
        urls,
        url_codes,
        pools,
    )


def jittered(cfg: SimConfig, rng: np.random.Generator) -> SimConfig:
    """This world's hard-negative family weights: each multiplied by exp(U(-j, j))."""
    j = cfg.family_jitter
    if j <= 0:
        return cfg

    def f(n: int = 1) -> np.ndarray:
        return np.exp(rng.uniform(-j, j, size=n))

    egress = {
        k: v * float(x) for (k, v), x in zip(cfg.egress_modes.items(), f(len(EGRESS)), strict=True)
    }
    total = sum(egress.values())
    iso = cfg.isolation_share
    return cfg.replace(
        egress_modes={k: v / total for k, v in egress.items()},
        isolation_share={
            k: min(1.0, v * float(x)) for (k, v), x in zip(iso.items(), f(len(iso)), strict=True)
        },
        isolation_same_ip_share=min(1.0, cfg.isolation_same_ip_share * float(f()[0])),
        vdi_gateway_cloud_share=min(1.0, cfg.vdi_gateway_cloud_share * float(f()[0])),
    )


def _names(rng: np.random.Generator, n: int, with_suffix: bool) -> np.ndarray:
    """Distinct made-up organisation names (``harborpine-logistics`` style)."""
    a = np.asarray(_WORDS, dtype=object)
    out: list[str] = []
    seen: set[str] = set()
    i = 0
    while len(out) < n:  # per name (hundreds), not per event
        first, second = a[rng.integers(len(a))], a[rng.integers(len(a))]
        name = f"{first}{second}"
        if with_suffix:
            name += f"-{_SUFFIX[rng.integers(len(_SUFFIX))]}"
        if name not in seen or i > 50 * n:
            if name in seen:
                name = f"{name}{len(out)}"
            seen.add(name)
            out.append(name)
        i += 1
    return np.asarray(out, dtype=object)


def _shared_pools(
    cfg: SimConfig, nets: Networks, ips: IpTable, uas: StringTable, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """IP and UA pools shared by many events (proxies, farms, previewers, crawlers)."""
    p: dict[str, np.ndarray] = {}

    def add_ips(name: str, ranges, n: int, v6: float = 0.0) -> None:  # noqa: ANN001
        p[name] = ips.add(*nets.draw(rng, ranges, n, v6))

    add_ips(
        "apple_proxy", nets.network_ranges("apple_proxy"), cfg.mpp_proxy_ips, cfg.mpp_ipv6_share
    )
    add_ips("relay", nets.network_ranges("apple_proxy"), 2000, 0.5)
    add_ips(
        "google_proxy",
        nets.asn_ranges(nets.ref.vendor_asns["google_mail"], "Gmail image proxy"),
        600,
    )
    add_ips("yahoo_proxy", nets.asn_ranges(nets.ref.vendor_asns["yahoo"], "Yahoo mail proxy"), 300)
    add_ips("google_check", nets.network_ranges("google"), 400, 0.3)
    add_ips("googlebot", nets.network_ranges("googlebot"), 300, 0.2)
    add_ips("bingbot", nets.network_ranges("bing"), 200)
    hosting = [nets.asn_ranges(tuple(nets.ref.datacenter_asns), "data-centre ASNs")]
    hosting += [
        nets.network_ranges(c) for c in ("digitalocean", "linode", "vultr", "oracle", "amazon")
    ]
    p["datacenter"] = np.concatenate([ips.add(*nets.draw(rng, r, 200)) for r in hosting])
    for name, (_ua, category) in cfg.share_previewers.items():
        add_ips(f"share_{name}", nets.network_ranges(category), 60, 0.3)
    farms = {
        "microsoft_eop": nets.network_ranges("microsoft_eop"),
        "proofpoint": nets.asn_ranges(nets.ref.vendor_asns["proofpoint"], "Proofpoint"),
        "mimecast": nets.asn_ranges(nets.ref.vendor_asns["mimecast"], "Mimecast"),
        "barracuda": nets.asn_ranges(nets.ref.vendor_asns["barracuda"], "Barracuda"),
        "cloud": nets.network_ranges("amazon"),
        "google": nets.network_ranges("google"),
    }
    for gw, ranges in farms.items():
        add_ips(f"farm_{gw}", ranges, cfg.scanner_farm_ips)
    p["farm_novel"] = np.concatenate([ips.add(*nets.draw(rng, r, 12)) for r in hosting])
    add_ips("zscaler", nets.asn_ranges(cfg.zscaler_asns, "Zscaler"), 400)
    add_ips("azure", nets.network_ranges("microsoft"), 800)
    # Cloud desktops on the cloud a gateway scans from, Citrix farms and hosted web proxies at
    # hosting providers: people on networks that bots use too.
    add_ips("vdi_cloud", nets.network_ranges("amazon"), 400)
    add_ips("vdi_google", nets.network_ranges("google"), 200)
    p["hosting_vdi"] = np.concatenate([ips.add(*nets.draw(rng, r, 80)) for r in hosting])
    p["web_proxy"] = np.concatenate([ips.add(*nets.draw(rng, r, 60)) for r in hosting])
    add_ips("business", nets.asn_ranges(cfg.business_isp_asns, "business ISPs"), 2000)

    def add_uas(name: str, values: np.ndarray, weights: np.ndarray | None = None) -> None:
        p[f"ua_{name}"] = uas.add(values)
        if weights is not None:
            p[f"uaw_{name}"] = weights

    for key, value in cfg.user_agents.items():
        p[f"ua_{key}"] = uas.add([value])
    add_uas("iphone", *nets.browser_uas(r"iPhone", "mobile"))
    add_uas("mobile", *nets.browser_uas(r".", "mobile"))
    add_uas("android", *nets.browser_uas(r"Android", "mobile"))
    add_uas("mac", *nets.browser_uas(r"Macintosh.*Version/.*Safari", "desktop"))
    add_uas("desktop", *nets.browser_uas(r".", "desktop"))
    add_uas("win_chrome", *nets.browser_uas(r"Windows NT 10\.0.*Chrome/", "desktop"))
    p["ua_http"] = uas.add(list(cfg.http_clients))

    crawlers = crawler_user_agents()
    for key in ("googlebot", "bingbot", "other"):
        p[f"ua_crawl_{key}"] = uas.add(list(crawlers[key]))
    for name, (ua, _category) in cfg.share_previewers.items():
        p[f"ua_share_{name}"] = uas.add([ua])
    p["ua_outdated"] = uas.add(outdated_chrome_uas(rng, 300))
    for gw, tokens in cfg.vendor_tokens.items():
        p[f"ua_token_{gw}"] = uas.add(list(tokens)) if tokens else p["ua_http"]
    return p


def _domains(
    cfg: SimConfig,
    nets: Networks,
    ips: IpTable,
    uas: StringTable,
    pools: dict[str, np.ndarray],
    rng: np.random.Generator,
) -> Domains:
    consumer = list(cfg.consumer_domains.items())
    k, d = len(consumer), cfg.corporate_domains
    n = k + d
    name = np.concatenate(
        [
            np.asarray([c[0] for c in consumer], dtype=object),
            _names(rng, d, with_suffix=True)
            + "."
            + np.asarray(_TLDS, dtype=object)[rng.integers(0, len(_TLDS), size=d)],
        ]
    )
    provider = np.concatenate(
        [
            np.array([PROVIDERS.index(c[1][1]) for c in consumer]),
            np.full(d, PROVIDERS.index("corporate")),
        ]
    )
    weight = np.concatenate(
        [
            np.array([c[1][0] for c in consumer]),
            1.0 / np.arange(1, d + 1) ** cfg.corporate_domain_zipf,
        ]
    )
    gw_names = list(GATEWAYS)
    gateway = np.full(n, gw_names.index("none"))
    gateway[k:] = pick(rng, np.array([cfg.gateway_weights[g] for g in gw_names]), d)
    is_outlook = provider == PROVIDERS.index("outlook")
    gateway[is_outlook] = gw_names.index("microsoft_eop")

    def per_gateway(values: dict[str, float], default: float = 0.0) -> np.ndarray:
        return np.array([values.get(g, default) for g in gw_names])[gateway]

    # Per-domain jitter around the vendor's typical behaviour: tenants of one vendor differ.
    jitter = np.clip(rng.normal(1.0, 0.12, size=n), 0.6, 1.3)
    scan_prob = np.clip(per_gateway(cfg.scan_prob) * jitter, 0.0, 1.0)
    scan_prob[is_outlook] = cfg.consumer_outlook_scan_prob
    scan_prob[gateway == gw_names.index("none")] = 0.0
    link_mode = np.zeros(n, dtype=np.int64)
    for g, mix in cfg.link_mode.items():
        m = gateway == gw_names.index(g)
        link_mode[m] = pick(rng, np.array(mix), int(m.sum()))
    head_first = per_gateway(cfg.head_first)
    pixel = per_gateway(cfg.pixel_fetch)
    rescan = per_gateway(cfg.rescan_at_click)
    honeypot_follow = np.clip(cfg.honeypot_follow * jitter, 0.0, 1.0)

    scanner_ips = np.zeros((n, 3), dtype=np.int64)
    scanner_ua = np.full(n, UA_NONE, dtype=np.int64)
    isolation: np.ndarray = np.zeros(n, dtype=bool)
    isolation_ip: np.ndarray = np.zeros(n, dtype=np.int64)
    isolation_same_ip: np.ndarray = np.zeros(n, dtype=bool)
    styles = np.zeros(n, dtype=np.int64)
    for g in gw_names:
        m = np.flatnonzero(gateway == gw_names.index(g))
        if g == "none" or m.size == 0:
            continue
        farm = pools[f"farm_{g}"]
        count = 1 + np.minimum(rng.poisson(cfg.scanner_ips_per_domain, size=m.size), 2)
        choice = farm[rng.integers(0, len(farm), size=(m.size, 3))]
        # A domain with fewer than 3 IPs repeats its first ones (round-robin over 1-3 IPs).
        cols = np.arange(3)[None, :] % count[:, None]
        scanner_ips[m] = np.take_along_axis(choice, cols, axis=1)
        styles[m] = pick(rng, np.array(cfg.scanner_ua_styles[g]), m.size)
        isolation[m] = rng.random(m.size) < cfg.isolation_share.get(g, 0.0)
        isolation_ip[m] = farm[rng.integers(0, len(farm), size=m.size)]
        scanner_ua[m] = _scanner_uas(rng, pools, g, styles[m])
    # Some vendors' cloud browsers run on the very addresses that scan at delivery.
    isolation_same_ip = isolation & (rng.random(n) < cfg.isolation_same_ip_share)
    isolation_ip = np.where(isolation_same_ip, scanner_ips[:, 0], isolation_ip)

    egress = np.full(n, EGRESS.index("remote"))
    egress[k:] = pick(rng, np.array([cfg.egress_modes[e] for e in EGRESS]), d)
    egress_ip = np.zeros((n, 2), dtype=np.int64)
    vdi_pool = np.where(
        rng.random(n) < cfg.vdi_gateway_cloud_share,
        np.where(
            gateway == gw_names.index("cloud"),
            "vdi_cloud",
            np.where(gateway == gw_names.index("google"), "vdi_google", "azure"),
        ),
        "azure",
    )
    for e, pool in (
        ("business_isp", "business"),
        ("zscaler", "zscaler"),
        ("azure_vdi", "azure"),
        ("azure_vdi", "vdi_cloud"),
        ("azure_vdi", "vdi_google"),
        ("citrix", "hosting_vdi"),
        ("corporate_proxy", "web_proxy"),
    ):
        m = egress == EGRESS.index(e)
        if e == "azure_vdi":
            m &= vdi_pool == pool
        m = np.flatnonzero(m)
        egress_ip[m] = pools[pool][rng.integers(0, len(pools[pool]), size=(m.size, 2))]
    office_share = np.where(
        egress == EGRESS.index("remote"), 0.0, rng.beta(*cfg.office_share_beta, size=n)
    )
    return Domains(
        name,
        provider,
        weight,
        gateway,
        scan_prob,
        link_mode,
        head_first,
        pixel,
        rescan,
        honeypot_follow,
        scanner_ips,
        scanner_ua,
        isolation,
        isolation_ip,
        isolation_same_ip,
        egress,
        egress_ip,
        office_share,
    )


def _scanner_uas(
    rng: np.random.Generator, pools: dict[str, np.ndarray], gateway: str, styles: np.ndarray
) -> np.ndarray:
    """One UA per protected domain, by the vendor's style mix (scanners keep a fixed UA)."""
    out = np.full(styles.size, UA_NONE, dtype=np.int64)
    choices = {
        0: pools["ua_outdated"],
        1: pools["ua_win_chrome"],
        3: pools[f"ua_token_{gateway}"],
        4: pools["ua_http"],
    }
    for style, pool in choices.items():
        m = styles == style
        if style == 1:  # current Chrome, as common as among people
            w = pools["uaw_win_chrome"]
            out[m] = pool[rng.choice(len(pool), size=int(m.sum()), p=w)]
        else:
            out[m] = pool[rng.integers(0, len(pool), size=int(m.sum()))]
    return out  # style 2 (empty) stays UA_NONE


def _weighted(
    rng: np.random.Generator, pools: dict[str, np.ndarray], name: str, n: int
) -> np.ndarray:
    codes, w = pools[f"ua_{name}"], pools[f"uaw_{name}"]
    return codes[rng.choice(len(codes), size=n, p=w)]


def _contacts(
    cfg: SimConfig,
    nets: Networks,
    ips: IpTable,
    uas: StringTable,
    pools: dict[str, np.ndarray],
    domains: Domains,
    rng: np.random.Generator,
    t_size: np.ndarray,
    t_market: np.ndarray,
    t_corporate: np.ndarray,
    t_optin: np.ndarray,
    markets: list[str],
    tenant_id: np.ndarray,
) -> Contacts:
    n = int(t_size.sum())
    tenant = np.repeat(np.arange(len(t_size)), t_size)
    local = np.arange(n) - np.repeat(np.cumsum(t_size) - t_size, t_size)
    contact_id = (
        pd.Series(tenant_id[tenant]) + "-c" + pd.Series(local).astype(str).str.zfill(6)
    ).to_numpy(dtype=object)
    market = t_market[tenant].copy()
    foreign = rng.random(n) < cfg.foreign_contact_share
    market[foreign] = pick(rng, np.array([cfg.markets[m][0] for m in markets]), int(foreign.sum()))

    corporate = rng.random(n) < t_corporate[tenant]
    k = domains.n_consumer
    domain = np.empty(n, dtype=np.int64)
    domain[~corporate] = pick(rng, domains.weight[:k], int((~corporate).sum()))
    domain[corporate] = k + pick(rng, domains.weight[k:], int(corporate.sum()))
    provider = domains.provider[domain]

    # Mail client: Apple Mail (MPP or not), provider proxy (Gmail/Yahoo app or webmail),
    # Outlook desktop (corporate), or a browser-based webmail / other client.
    apple_share = np.array([cfg.apple_mail_share[p] for p in PROVIDERS])[provider]
    u = rng.random(n)
    client = np.full(n, CLIENTS.index("browser"))
    apple = u < apple_share
    client[apple] = np.where(rng.random(int(apple.sum())) < cfg.mpp_enabled_share, 0, 1)
    rest = ~apple
    v = rng.random(n)
    for prov, cl in (("gmail", "gmail_proxy"), ("yahoo", "yahoo_proxy")):
        m = rest & (provider == PROVIDERS.index(prov)) & (v < cfg.webmail_proxy_share[prov])
        client[m] = CLIENTS.index(cl)
    # Google Workspace domains read in Gmail too.
    workspace = (
        rest
        & (domains.gateway[domain] == GATEWAYS.index("google"))
        & (v < cfg.workspace_gmail_share)
    )
    client[workspace] = CLIENTS.index("gmail_proxy")
    od = (
        rest
        & ~workspace
        & (provider == PROVIDERS.index("corporate"))
        & (v < cfg.outlook_desktop_share)
    )
    client[od] = CLIENTS.index("outlook_desktop")
    blocked_p = np.where(
        client == CLIENTS.index("outlook_desktop"),
        cfg.outlook_desktop_images_blocked,
        cfg.images_blocked_share,
    )
    images_blocked = (rng.random(n) < blocked_p) & (client >= CLIENTS.index("gmail_proxy"))

    # Devices: Apple Mail readers own an iPhone; others draw from the weighted mobile mix.
    phone_ua = np.where(
        apple, _weighted(rng, pools, "iphone", n), _weighted(rng, pools, "mobile", n)
    )
    mac = apple & (rng.random(n) < cfg.mac_share_of_apple_users)
    desktop_ua = np.where(mac, _weighted(rng, pools, "mac", n), _weighted(rng, pools, "desktop", n))
    ua_text = uas.values()
    iphone = pd.Series(ua_text[phone_ua]).str.contains("iPhone", regex=False).to_numpy()
    phone_open = phone_ua.copy()
    desktop_open = desktop_ua.copy()
    # Apple Mail loads images with the system WebKit UA (no Version/ or Safari/ token); on a
    # Windows or Linux desktop an Apple Mail user reads in a browser instead.
    for who, device, opened in ((apple, phone_ua, phone_open), (mac, desktop_ua, desktop_open)):
        if who.any():  # rewrite each distinct UA once, then map contacts to it
            codes, inverse = np.unique(device[who], return_inverse=True)
            opened[who] = uas.add(apple_mail_ua(ua_text[codes]))[inverse.reshape(-1)]
    is_od = client == CLIENTS.index("outlook_desktop")
    desktop_open[is_od] = pools["ua_outlook_desktop"][0]

    home_ip = np.zeros(n, dtype=np.int64)
    kmob = cfg.mobile_ips_per_contact
    mobile_ip = np.zeros((n, kmob), dtype=np.int64)
    for mi, name in enumerate(markets):
        m = np.flatnonzero(market == mi)
        if m.size == 0:
            continue
        _w, _off, res_asns, mob_asns = cfg.markets[name]
        res = nets.asn_ranges(res_asns, f"residential ISPs of {name}")
        mob = nets.asn_ranges(mob_asns, f"mobile carriers of {name}")
        home_ip[m] = ips.add(*nets.draw(rng, res, m.size, cfg.home_ipv6_share))
        mobile_ip[m] = ips.add(*nets.draw(rng, mob, m.size * kmob, cfg.mobile_ipv6_share)).reshape(
            m.size, kmob
        )

    never = rng.random(n) < cfg.never_engage_share
    p_open = np.where(never, 0.0, rng.beta(*cfg.open_propensity_beta, size=n))
    p_click = np.where(never, 0.0, rng.beta(*cfg.click_propensity_beta, size=n))
    p_sms = np.where(never, 0.0, rng.beta(*cfg.sms_click_beta, size=n))
    mobile_pref = rng.beta(*cfg.mobile_preference_beta, size=n)
    mobile_pref[corporate] *= cfg.corporate_mobile_factor
    return Contacts(
        tenant=tenant,
        contact_id=contact_id,
        domain=domain,
        client=client,
        images_blocked=images_blocked,
        iphone=iphone,
        phone_ua=phone_ua,
        desktop_ua=desktop_ua,
        phone_open_ua=phone_open,
        desktop_open_ua=desktop_open,
        home_ip=home_ip,
        mobile_ip=mobile_ip,
        relay=apple & (rng.random(n) < cfg.private_relay_share),
        p_open=p_open,
        p_click=p_click,
        p_sms=p_sms,
        mobile_pref=mobile_pref,
        invalid=rng.random(n) < cfg.invalid_contact_share,
        sms_optin=rng.random(n) < t_optin[tenant],
    )


def _contents(
    cfg: SimConfig,
    rng: np.random.Generator,
    urls: StringTable,
    tenant_id: np.ndarray,
    brands: np.ndarray,
    t_sms: np.ndarray,
    t_honeypot: np.ndarray,
    days: int,
) -> tuple[Contents, np.ndarray]:
    tn = len(tenant_id)
    weeks = days / 7.0
    n_email = rng.poisson(cfg.email_campaigns_per_week * weeks, size=tn)
    n_sms = np.where(t_sms, rng.poisson(cfg.sms_campaigns_per_week * weeks, size=tn), 0)
    n_flow = rng.integers(cfg.flows_per_tenant[0], cfg.flows_per_tenant[1] + 1, size=tn)
    tenant = np.concatenate([np.repeat(np.arange(tn), c) for c in (n_email, n_sms, n_flow)])
    is_campaign = np.concatenate(
        [np.ones(n_email.sum() + n_sms.sum(), bool), np.zeros(n_flow.sum(), bool)]
    )
    channel = np.concatenate(
        [
            np.zeros(n_email.sum(), np.int64),
            np.ones(n_sms.sum(), np.int64),
            (
                (rng.random(n_flow.sum()) < cfg.flow_sms_share)
                & t_sms[np.repeat(np.arange(tn), n_flow)]
            ).astype(np.int64),
        ]
    )
    n = len(tenant)
    email = channel == 0
    visible = np.where(
        email,
        np.where(
            rng.random(n) < cfg.email_no_link_share,
            0,
            np.clip(rng.poisson(cfg.email_links_mean, n), 1, 7),
        ),
        np.where(rng.random(n) < cfg.sms_link_share, 1 + (rng.random(n) < 0.1), 0),
    )
    hidden = email & t_honeypot[tenant]
    link_count = visible + hidden
    hidden_pos = np.where(hidden, np.floor(rng.random(n) * link_count).astype(np.int64), -1)
    appeal = np.exp(
        cfg.campaign_appeal_sigma * rng.standard_normal(n) - cfg.campaign_appeal_sigma**2 / 2
    )

    # Ids: per tenant, campaigns and flows numbered in order.
    kind = np.where(is_campaign, "cmp", "flow")
    seq = pd.Series(np.ones(n, dtype=np.int64)).groupby([tenant, is_campaign]).cumsum().to_numpy()
    content_id = (
        pd.Series(tenant_id[tenant])
        + "-"
        + pd.Series(kind)
        + "-"
        + pd.Series(seq).astype(str).str.zfill(4)
    ).to_numpy(dtype=object)

    # Tracked link targets, one URL per (content, position).
    rows = np.repeat(np.arange(n), link_count)
    pos = np.arange(len(rows)) - np.repeat(np.cumsum(link_count) - link_count, link_count)
    paths = np.asarray(_PATHS, dtype=object)[rng.integers(0, len(_PATHS), size=len(rows))]
    medium = np.where(channel[rows] == 1, "sms", "email")
    text = (
        "https://www."
        + pd.Series(brands[tenant[rows]])
        + ".com/"
        + pd.Series(paths)
        + "?utm_medium="
        + pd.Series(medium)
        + "&utm_campaign="
        + pd.Series(content_id[rows])
        + "&utm_content=l"
        + pd.Series(pos).astype(str)
    )
    url_codes = urls.add(text.to_numpy(dtype=object)) if len(rows) else np.empty(0, np.int64)
    url_off = np.cumsum(link_count) - link_count
    return (
        Contents(tenant, channel, is_campaign, content_id, link_count, hidden_pos, url_off, appeal),
        url_codes,
    )


def _segments(
    cfg: SimConfig, rng: np.random.Generator, contacts: Contacts, tenant_id: np.ndarray
) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """A few segments per tenant; returns the table and per-tenant membership matrices."""
    frames, members = [], []
    for t in range(len(tenant_id)):  # per tenant
        idx = np.flatnonzero(contacts.tenant == t)
        k = int(rng.integers(cfg.segments_per_tenant[0], cfg.segments_per_tenant[1] + 1))
        mat = np.zeros((k, idx.size), dtype=bool)
        engaged = contacts.p_open[idx] + 0.1 * rng.standard_normal(idx.size)
        for s in range(k):  # per segment
            kind = s % 3
            if kind == 0:  # "engaged in the last 90 days"
                mat[s] = engaged > np.quantile(engaged, 0.5)
            elif kind == 1:  # an interest or purchase-history segment
                mat[s] = rng.random(idx.size) < rng.uniform(0.1, 0.5)
            else:  # SMS subscribers or a region
                mat[s] = contacts.sms_optin[idx] | (rng.random(idx.size) < 0.1)
        members.append(mat)
        seg_ids = np.asarray([f"{tenant_id[t]}-seg-{s + 1:02d}" for s in range(k)], dtype=object)
        si, ci = np.nonzero(mat)
        frames.append(
            pd.DataFrame(
                {
                    "tenant_id": tenant_id[t],
                    "segment_id": seg_ids[si],
                    "contact_id": contacts.contact_id[idx[ci]],
                }
            )
        )
    return pd.concat(frames, ignore_index=True), members


def _messages(
    cfg: SimConfig,
    rng: np.random.Generator,
    contents: Contents,
    contacts: Contacts,
    seg_member: list[np.ndarray],
    t_offset: np.ndarray,
    start_ms: int,
    end_ms: int,
    days: int,
) -> Messages:
    parts_c, parts_k, parts_t = [], [], []
    hours = np.asarray(cfg.send_hours_local, dtype=np.float64)
    for t in range(len(seg_member)):  # per tenant
        idx = np.flatnonzero(contacts.tenant == t)
        mine = np.flatnonzero(contents.tenant == t)
        for c in mine[contents.is_campaign[mine]]:  # per campaign
            eligible = (
                np.ones(idx.size, bool) if contents.channel[c] == 0 else contacts.sms_optin[idx]
            )
            if rng.random() >= cfg.campaign_all_contacts_share:
                eligible = eligible & seg_member[t][rng.integers(len(seg_member[t]))]
            chosen = idx[eligible & (rng.random(idx.size) < cfg.audience_inclusion)]
            day = rng.integers(0, days)
            local_h = hours[rng.integers(len(hours))] + rng.random() * 0.5
            start = start_ms + day * DAY_MS + int((local_h - t_offset[t]) % 24 * 3_600_000)
            spread = rng.uniform(*cfg.send_throttle_minutes) * 60_000
            parts_c.append(chosen)
            parts_k.append(np.full(chosen.size, c))
            parts_t.append(start + np.sort(rng.random(chosen.size) * spread).astype(np.int64))
        for f in mine[~contents.is_campaign[mine]]:  # per automation flow
            eligible = idx if contents.channel[f] == 0 else idx[contacts.sms_optin[idx]]
            lo, hi = np.log(cfg.flow_trigger_rate[0]), np.log(cfg.flow_trigger_rate[1])
            rate = np.exp(rng.uniform(lo, hi))
            count = rng.poisson(rate * days, size=eligible.size)
            who = np.repeat(eligible, count)
            # Triggers follow people's waking hours: a day, then a local hour biased to daytime.
            days_in = rng.integers(0, days, size=who.size)
            local_h = np.clip(rng.normal(14.0, 4.0, size=who.size), 6.0, 23.9)
            when = (
                start_ms
                + days_in * DAY_MS
                + (((local_h - t_offset[t]) % 24) * 3_600_000).astype(np.int64)
            )
            parts_c.append(who)
            parts_k.append(np.full(who.size, f))
            parts_t.append(when)
    contact = np.concatenate(parts_c) if parts_c else np.empty(0, np.int64)
    content = np.concatenate(parts_k) if parts_k else np.empty(0, np.int64)
    sent = np.concatenate(parts_t) if parts_t else np.empty(0, np.int64)
    keep = (sent >= start_ms) & (sent < end_ms)
    contact, content, sent = contact[keep], content[keep], sent[keep]
    order = np.lexsort((contact, sent, contents.tenant[content]))
    contact, content, sent = contact[order], content[order], sent[order]

    n = sent.size
    email = contents.channel[content] == 0
    delay = lognormal(rng, cfg.delivery_delay, n)
    grey = email & (rng.random(n) < cfg.greylist_share)
    delay[grey] += lognormal(rng, cfg.greylist_delay, int(grey.sum()))
    delivered = sent + np.maximum(1, (delay * MS).astype(np.int64))
    failed = np.where(
        email,
        contacts.invalid[contact] | (rng.random(n) < cfg.email_bounce_share),
        rng.random(n) < cfg.sms_undelivered_share,
    )
    delivered[failed | (delivered >= end_ms)] = -1
    return Messages(content, contact, sent, delivered)
