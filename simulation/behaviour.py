"""Who opens and clicks what, when, from where: people, scanners, MPP, previews, crawlers.

Each generator takes the world and returns column arrays for its events (vectorised: messages are
selected with masks and expanded with ``np.repeat``). Events hold codes into the world's IP, UA and
URL tables; :mod:`simulation.core` turns them into the events table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import GATEWAYS
from .world import (
    CLIENTS,
    DESKTOP_EGRESS,
    EGRESS,
    LINK_MODES,
    MS,
    PROVIDERS,
    UA_NONE,
    World,
    lognormal,
    pick,
)

# Event source codes; 0 is a person, the others are BOT_KINDS in contract order.
HUMAN, SCANNER, PREFETCH, PREVIEW, CRAWLER = range(5)
SOURCE_KIND = (None, "security_scanner", "privacy_prefetch", "link_preview", "crawler")
OPEN, CLICK = 0, 1
GET, HEAD = 0, 1

FIELDS = ("msg", "src", "etype", "t", "ip", "ua", "pos", "hidden", "method", "fam")
# Each event's family (the events table's ``family`` column, for evaluation only): how a person
# reached us (the hard negatives), or which kind of bot it is.
HUMAN_FAMILIES = (
    "person",
    "gmail_proxy",
    "yahoo_proxy",
    "outlook_desktop",
    "private_relay",
    "office_nat",
    "zscaler",
    "cloud_desktop",
    "citrix",
    "corporate_proxy",
    "isolation",
    "isolation_scanner_ip",
    "proxy_open_isolation_click",
)
BOT_FAMILIES = (
    "scanner",
    "rescan",
    "novel_scanner",
    "mpp",
    "sms_preview",
    "share_preview",
    "crawler",
    "new_vendor_scanner",  # the new_scanner profile's vendor (simulation/new_scanner.py)
)
FAMILIES = HUMAN_FAMILIES + BOT_FAMILIES
# Office egress mode -> the family of a person reading or clicking through it.
_OFFICE_FAMILY = {
    "business_isp": "office_nat",
    "zscaler": "zscaler",
    "azure_vdi": "cloud_desktop",
    "citrix": "citrix",
    "corporate_proxy": "corporate_proxy",
    "remote": "person",
}
# Office egress modes that proxy a person's web traffic (their opens come through them).
_PROXY_EGRESS = ("business_isp", "zscaler", "corporate_proxy")


def fam(name: str) -> int:
    """Code of a family name."""
    return FAMILIES.index(name)


class Parts:
    """Accumulates event columns from the generators."""

    def __init__(self) -> None:
        self.cols: dict[str, list[np.ndarray]] = {f: [] for f in FIELDS}

    def add(self, *, msg, src, etype, t, ip, ua, fam, pos=None, method=None) -> None:  # noqa: ANN001
        n = len(msg)
        if n == 0:
            return
        full = {
            "msg": msg,
            "src": src,
            "etype": etype,
            "t": t,
            "ip": ip,
            "ua": ua,
            "pos": -1 if pos is None else pos,
            "method": GET if method is None else method,
            "fam": fam,
        }
        dtypes = {
            "msg": np.int64,
            "src": np.int8,
            "etype": np.int8,
            "t": np.int64,
            "ip": np.int64,
            "ua": np.int64,
            "pos": np.int64,
            "method": np.int8,
            "fam": np.int8,
        }
        for key, dtype in dtypes.items():
            self.cols[key].append(np.broadcast_to(np.asarray(full[key], dtype=dtype), (n,)).copy())
        self.cols["hidden"].append(np.zeros(n, dtype=bool))  # filled in by core from positions

    def arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for key, chunks in self.cols.items():
            out[key] = np.concatenate(chunks) if chunks else np.empty(0, dtype=np.int64)
        return out


@dataclass
class MessageView:
    """Per-message arrays the generators share."""

    contact: np.ndarray
    domain: np.ndarray
    email: np.ndarray
    delivered: np.ndarray  # ms, -1 undelivered
    link_count: np.ndarray
    hidden_pos: np.ndarray
    visible: np.ndarray
    appeal: np.ndarray
    offset_h: np.ndarray  # local time offset of the tenant


def view(w: World) -> MessageView:
    """Per-message columns joined from contents and contacts."""
    m, c = w.messages, w.contents
    hp = c.hidden_pos[m.content]
    lc = c.link_count[m.content]
    boost = np.where(c.is_campaign[m.content], 1.0, w.cfg.automation_boost)
    return MessageView(
        contact=m.contact,
        domain=w.contacts.domain[m.contact],
        email=c.channel[m.content] == 0,
        delivered=m.delivered,
        link_count=lc,
        hidden_pos=hp,
        visible=lc - (hp >= 0),
        appeal=c.appeal[m.content] * boost,
        offset_h=w.tenant_offset_h[c.tenant[m.content]],
    )


def visible_position(k: np.ndarray, hidden_pos: np.ndarray) -> np.ndarray:
    """Position in the message of the k-th visible link (skipping the hidden one)."""
    return k + ((hidden_pos >= 0) & (k >= hidden_pos))


def first_link(visible: np.ndarray, hidden_pos: np.ndarray) -> np.ndarray:
    """Position of the first visible link."""
    return visible_position(np.zeros_like(visible), hidden_pos)


def decayed_link(rng: np.random.Generator, n_visible: np.ndarray, decay: float) -> np.ndarray:
    """Visible-link index drawn with weight decay**k over k < n_visible (truncated geometric)."""
    u = rng.random(n_visible.size)
    if decay >= 1.0:
        return np.floor(u * n_visible).astype(np.int64)
    mass = 1.0 - decay ** n_visible.astype(np.float64)
    k = np.floor(np.log1p(-u * mass) / np.log(decay)).astype(np.int64)
    return np.clip(k, 0, n_visible - 1)


def _repeat_clicks(
    rng: np.random.Generator, n: int, share: float, gap: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``n`` clicks plus a repeat of a ``share`` of them, and each row's extra delay (ms)."""
    dup = rng.random(n) < share
    idx = np.r_[np.arange(n), np.flatnonzero(dup)]
    extra = np.r_[np.zeros(n, np.int64), _ms(lognormal(rng, gap, int(dup.sum())))]
    return idx, extra


def _ms(seconds: np.ndarray) -> np.ndarray:
    return np.maximum(1, (seconds * MS).astype(np.int64))


def _night_shift(
    rng: np.random.Generator,
    t: np.ndarray,
    offset_h: np.ndarray,
    share: float,
    wake_hours: tuple[float, float],
) -> np.ndarray:
    """Move actions that would fall between 0 and 6 h local time to the next morning."""
    local_h = ((t / 3_600_000.0) + offset_h) % 24.0
    lo, hi = wake_hours
    night = (local_h < lo) & (rng.random(t.size) < share)
    wake = rng.uniform(lo, hi, size=t.size)
    return np.where(night, t + ((wake - local_h) * 3_600_000).astype(np.int64), t)


def _read_delay(rng: np.random.Generator, w: World, n: int) -> np.ndarray:
    """Delivery-to-read seconds: fast readers, a log-normal body and a Pareto tail."""
    cfg = w.cfg
    u = rng.random(n)
    body = lognormal(rng, cfg.human_read_delay, n)
    fast = rng.uniform(*cfg.human_fast_range, size=n)
    scale, shape = cfg.human_tail_pareto
    tail = scale * (1.0 + rng.pareto(shape, size=n))
    return np.where(
        u < cfg.human_fast_share,
        fast,
        np.where(u < cfg.human_fast_share + cfg.human_tail_share, tail, body),
    )


def _group_rank(group: np.ndarray) -> np.ndarray:
    """0, 1, 2... within runs of equal consecutive values."""
    if group.size == 0:
        return group.astype(np.int64)
    start = np.r_[0, np.flatnonzero(np.diff(group)) + 1]
    lengths = np.diff(np.r_[start, group.size])
    return np.arange(group.size) - np.repeat(start, lengths)


# --------------------------------------------------------------------------------------------
def people_email(w: World, mv: MessageView, rng: np.random.Generator, parts: Parts) -> np.ndarray:
    """People reading and clicking email. Returns each message's first read time (-1 if none)."""
    cfg, ct, dm, pools = w.cfg, w.contacts, w.domains, w.pools
    first_read = np.full(len(mv.contact), -1, dtype=np.int64)
    sel = np.flatnonzero((mv.delivered >= 0) & mv.email)
    p = np.minimum(0.97, ct.p_open[mv.contact[sel]] * mv.appeal[sel])
    r = sel[rng.random(sel.size) < p]
    t0 = mv.delivered[r] + _ms(_read_delay(rng, w, r.size))
    t0 = _night_shift(rng, t0, mv.offset_h[r], cfg.night_shift_share, cfg.wake_hours)
    first_read[r] = t0

    # Reads: the first plus re-reads later on.
    n_reads = 1 + rng.poisson(cfg.reopen_mean, size=r.size)
    rm = np.repeat(r, n_reads)
    rank = _group_rank(rm)
    gaps = np.where(rank == 0, 0, _ms(lognormal(rng, cfg.reread_gap, rm.size)))
    read_t = np.repeat(t0, n_reads) + _cumsum_by_group(gaps, rank)
    contact, dom = mv.contact[rm], mv.domain[rm]
    phone = rng.random(rm.size) < ct.mobile_pref[contact]
    office = rng.random(rm.size) < dm.office_share[dom]
    egress = dm.egress[dom]
    vdi = office & np.isin(egress, [EGRESS.index(e) for e in DESKTOP_EGRESS])
    office_fam = np.where(
        office, np.array([fam(_OFFICE_FAMILY[e]) for e in EGRESS], dtype=np.int8)[egress], 0
    ).astype(np.int8)
    proxied_office = office & np.isin(egress, [EGRESS.index(e) for e in _PROXY_EGRESS])
    wifi = rng.random(rm.size) < cfg.phone_on_wifi_share
    mobile_ip = ct.mobile_ip[contact, rng.integers(0, ct.mobile_ip.shape[1], size=rm.size)]
    read_ip = np.where(phone & ~wifi, mobile_ip, ct.home_ip[contact])
    read_ip = np.where(office, dm.egress_ip[dom, rng.integers(0, 2, size=rm.size)], read_ip)
    vdi_ua = _vdi_ua(w, rng)
    phone = phone & ~vdi

    # Opens as the sender sees them, by mail client.
    client = ct.client[contact]
    visible_open = (client != CLIENTS.index("apple_mpp")) & ~ct.images_blocked[contact]
    proxied = (client == CLIENTS.index("gmail_proxy")) | (client == CLIENTS.index("yahoo_proxy"))
    # Proxies cache the pixel: later reads are seen only sometimes.
    visible_open &= ~proxied | (rank == 0) | (rng.random(rm.size) < cfg.proxy_reread_visible)
    open_ip = read_ip.copy()
    open_ua = np.where(phone, ct.phone_open_ua[contact], ct.desktop_open_ua[contact])
    open_ua = np.where(vdi, vdi_ua[contact], open_ua)
    for cl, ip_pool, ua_key in (
        ("gmail_proxy", "google_proxy", "ua_google_image_proxy"),
        ("yahoo_proxy", "yahoo_proxy", "ua_yahoo_proxy"),
    ):
        m = client == CLIENTS.index(cl)
        open_ip[m] = pools[ip_pool][rng.integers(0, len(pools[ip_pool]), size=int(m.sum()))]
        open_ua[m] = pools[ua_key][0]
    open_fam = np.where(
        office_fam == 0,
        np.where((client == CLIENTS.index("outlook_desktop")) & ~phone, fam("outlook_desktop"), 0),
        office_fam,
    )
    open_fam[client == CLIENTS.index("gmail_proxy")] = fam("gmail_proxy")
    open_fam[client == CLIENTS.index("yahoo_proxy")] = fam("yahoo_proxy")
    o = np.flatnonzero(visible_open)
    parts.add(
        msg=rm[o], src=HUMAN, etype=OPEN, t=read_t[o], ip=open_ip[o], ua=open_ua[o], fam=open_fam[o]
    )
    # Yahoo's proxy retries the pixel a few times within seconds.
    y = o[
        (client[o] == CLIENTS.index("yahoo_proxy")) & (rng.random(o.size) < cfg.yahoo_retry_share)
    ]
    yr = np.repeat(y, rng.integers(1, 4, size=y.size))
    parts.add(
        msg=rm[yr],
        src=HUMAN,
        etype=OPEN,
        t=read_t[yr] + rng.integers(*cfg.yahoo_retry_ms, size=yr.size),
        ip=open_ip[yr],
        ua=open_ua[yr],
        fam=open_fam[yr],
    )

    # Clicks: anchored on a read (mostly the first), early links more likely.
    read_start = np.cumsum(n_reads) - n_reads
    clickable = mv.visible[r] > 0
    pc = np.minimum(0.97, ct.p_click[mv.contact[r]] * mv.appeal[r])
    who = np.flatnonzero(clickable & (rng.random(r.size) < pc))
    later = rng.random(who.size) >= cfg.click_on_first_read
    anchor = read_start[who] + np.where(
        later, np.floor(rng.random(who.size) * n_reads[who]).astype(np.int64), 0
    )
    n_links = np.minimum(1 + rng.poisson(cfg.extra_links_mean, size=who.size), mv.visible[r[who]])
    ca = np.repeat(anchor, n_links)
    crank = _group_rank(ca)
    msg = rm[ca]
    k = decayed_link(rng, mv.visible[msg], cfg.link_position_decay)
    k = np.where(crank == 0, k, (k + crank) % mv.visible[msg])  # further links: distinct ones
    pos = visible_position(k, mv.hidden_pos[msg])
    gaps = np.where(
        crank == 0,
        _ms(lognormal(rng, cfg.click_after_read, ca.size)),
        _ms(lognormal(rng, cfg.next_link_gap, ca.size)),
    )
    click_t = read_t[ca] + _cumsum_by_group(gaps, crank)
    c_contact, c_dom = contact[ca], dom[ca]
    click_ip = read_ip[ca]
    click_ua = np.where(phone[ca], ct.phone_ua[c_contact], ct.desktop_ua[c_contact])
    click_ua = np.where(vdi[ca], vdi_ua[c_contact], click_ua)
    relay = ct.relay[c_contact] & phone[ca] & ~office[ca]
    click_ip = np.where(
        relay, pools["relay"][rng.integers(0, len(pools["relay"]), size=ca.size)], click_ip
    )
    iso = dm.isolation[c_dom]
    click_ip = np.where(iso, dm.isolation_ip[c_dom], click_ip)
    click_ua = np.where(iso, vdi_ua[c_contact], click_ua)
    click_fam = np.where(relay, fam("private_relay"), office_fam[ca])
    click_fam = np.where(
        iso,
        np.where(
            proxied_office[ca],
            fam("proxy_open_isolation_click"),
            np.where(dm.isolation_same_ip[c_dom], fam("isolation_scanner_ip"), fam("isolation")),
        ),
        click_fam,
    )
    # Some people click the same link again.
    idx, extra = _repeat_clicks(rng, ca.size, cfg.repeat_click_share, cfg.repeat_click_gap)
    parts.add(
        msg=msg[idx],
        src=HUMAN,
        etype=CLICK,
        t=click_t[idx] + extra,
        ip=click_ip[idx],
        ua=click_ua[idx],
        pos=pos[idx],
        fam=click_fam[idx],
    )
    # An isolated click needs no separate re-scan: the vendor's cloud browser is the check.
    _rescans(w, mv, rng, parts, msg[~iso], click_t[~iso], pos[~iso])
    _shared(w, rng, parts, msg, click_t, pos)
    return first_read


def _cumsum_by_group(values: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Running sum restarting where rank == 0."""
    total = np.cumsum(values)
    start = np.flatnonzero(rank == 0)
    base = total[start] - values[start]
    lengths = np.diff(np.r_[start, values.size])
    return total - np.repeat(base, lengths)


def _vdi_ua(w: World, rng: np.random.Generator) -> np.ndarray:
    """Per contact, the current desktop Chrome of a managed (virtual or isolated) browser."""
    codes, weights = w.pools["ua_win_chrome"], w.pools["uaw_win_chrome"]
    return codes[rng.choice(len(codes), size=len(w.contacts), p=weights)]


def _rescans(
    w: World,
    mv: MessageView,
    rng: np.random.Generator,
    parts: Parts,
    msg: np.ndarray,
    click_t: np.ndarray,
    pos: np.ndarray,
) -> None:
    """Time-of-click protection: the gateway fetches the link just before the person's click."""
    dm = w.domains
    dom = mv.domain[msg]
    scans = (dm.gateway[dom] != GATEWAYS.index("none")) & (dm.scan_prob[dom] > 0)
    m = np.flatnonzero(scans & (rng.random(msg.size) < dm.rescan[dom]))
    t = np.maximum(
        click_t[m] - rng.integers(*w.cfg.rescan_lead_ms, size=m.size), mv.delivered[msg[m]] + 1
    )
    ip = _scanner_ip(w, dom[m], rng)
    parts.add(
        msg=msg[m],
        src=SCANNER,
        etype=CLICK,
        t=t,
        ip=ip,
        ua=dm.scanner_ua[dom[m]],
        pos=pos[m],
        fam=fam("rescan"),
    )


def _scanner_ip(w: World, dom: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A scanner IP for messages to these domains: one of the corporate domain's 1-3 IPs; for a
    consumer mailbox provider (Outlook.com), any IP of the vendor's farm."""
    dm = w.domains
    ip = dm.scanner_ips[dom, rng.integers(0, 3, size=dom.size)]
    consumer = dm.provider[dom] != PROVIDERS.index("corporate")
    if consumer.any():
        for g, name in enumerate(GATEWAYS):
            m = consumer & (dm.gateway[dom] == g)
            if m.any():
                farm = w.pools[f"farm_{name}"]
                ip[m] = farm[rng.integers(0, len(farm), size=int(m.sum()))]
    return ip


def _shared(
    w: World,
    rng: np.random.Generator,
    parts: Parts,
    msg: np.ndarray,
    click_t: np.ndarray,
    pos: np.ndarray,
) -> None:
    """A person shares the link in a chat or social app; its previewer fetches it."""
    cfg, pools = w.cfg, w.pools
    m = np.flatnonzero(rng.random(msg.size) < cfg.share_preview_prob)
    names = list(cfg.share_previewers)
    which = rng.integers(0, len(names), size=m.size)
    t = click_t[m] + _ms(lognormal(rng, cfg.share_preview_delay, m.size))
    ip = np.empty(m.size, dtype=np.int64)
    ua = np.empty(m.size, dtype=np.int64)
    for i, name in enumerate(names):
        s = which == i
        pool = pools[f"share_{name}"]
        ip[s] = pool[rng.integers(0, len(pool), size=int(s.sum()))]
        ua[s] = pools[f"ua_share_{name}"][0]
    parts.add(
        msg=msg[m],
        src=PREVIEW,
        etype=CLICK,
        t=t,
        ip=ip,
        ua=ua,
        pos=pos[m],
        fam=fam("share_preview"),
    )


def people_sms(w: World, mv: MessageView, rng: np.random.Generator, parts: Parts) -> None:
    """People tapping SMS links: minutes after delivery, from the phone."""
    cfg, ct, pools = w.cfg, w.contacts, w.pools
    sel = np.flatnonzero((mv.delivered >= 0) & ~mv.email & (mv.visible > 0))
    p = np.minimum(0.97, ct.p_sms[mv.contact[sel]] * mv.appeal[sel])
    m = sel[rng.random(sel.size) < p]
    u = rng.random(m.size)
    fast = rng.uniform(*cfg.human_fast_range, size=m.size)
    scale, shape = cfg.human_tail_pareto
    tail = scale * (1.0 + rng.pareto(shape, size=m.size))
    delay = np.where(
        u < cfg.human_fast_share,
        fast,
        np.where(
            u < cfg.human_fast_share + cfg.human_tail_share / 2,
            tail,
            lognormal(rng, cfg.sms_click_delay, m.size),
        ),
    )
    t = _night_shift(
        rng, mv.delivered[m] + _ms(delay), mv.offset_h[m], cfg.night_shift_share, cfg.wake_hours
    )
    contact = mv.contact[m]
    pos = visible_position(
        decayed_link(rng, mv.visible[m], cfg.link_position_decay), mv.hidden_pos[m]
    )
    wifi = rng.random(m.size) < cfg.phone_on_wifi_share
    ip = np.where(
        wifi,
        ct.home_ip[contact],
        ct.mobile_ip[contact, rng.integers(0, ct.mobile_ip.shape[1], size=m.size)],
    )
    ip = np.where(
        ct.relay[contact], pools["relay"][rng.integers(0, len(pools["relay"]), size=m.size)], ip
    )
    idx, extra = _repeat_clicks(rng, m.size, cfg.repeat_click_share, cfg.sms_repeat_click_gap)
    parts.add(
        msg=m[idx],
        src=HUMAN,
        etype=CLICK,
        t=t[idx] + extra,
        ip=ip[idx],
        ua=ct.phone_ua[contact][idx],
        pos=pos[idx],
        fam=np.where(ct.relay[contact], fam("private_relay"), fam("person"))[idx],
    )
    _shared(w, rng, parts, m, t, pos)


# --------------------------------------------------------------------------------------------
def scanners(w: World, mv: MessageView, rng: np.random.Generator, parts: Parts) -> None:
    """Security gateways fetching the links (and sometimes the pixel) seconds after delivery."""
    cfg, dm = w.cfg, w.domains
    sel = np.flatnonzero((mv.delivered >= 0) & mv.email)
    dom = mv.domain[sel]
    s = sel[rng.random(sel.size) < dm.scan_prob[dom]]
    passes = 1 + (rng.random(s.size) < cfg.second_pass)
    pm = np.repeat(s, passes)
    prank = _group_rank(pm)
    late = rng.random(pm.size) < cfg.scanner_late_share
    delay = np.where(
        late,
        lognormal(rng, cfg.scanner_late_delay, pm.size),
        lognormal(rng, cfg.scanner_delay, pm.size),
    )
    second = _ms(lognormal(rng, cfg.second_pass_gap, pm.size))
    novel = dm.gateway[mv.domain[pm]] == GATEWAYS.index("novel")
    delay = np.where(novel, rng.uniform(*cfg.novel_scanner_delay, size=pm.size), delay)
    pass_fam = np.where(novel, fam("novel_scanner"), fam("scanner"))
    start = mv.delivered[pm] + _ms(delay)
    start = np.where(prank == 0, start, np.roll(start, 1) + second)  # 2nd pass follows the 1st
    pdom = mv.domain[pm]
    pass_ip = _scanner_ip(w, pdom, rng)
    ua = dm.scanner_ua[pdom]

    # The open pixel, loaded while rendering.
    px = np.flatnonzero(rng.random(pm.size) < dm.pixel[pdom])
    parts.add(
        msg=pm[px],
        src=SCANNER,
        etype=OPEN,
        t=start[px] + rng.integers(0, int(cfg.scanner_link_gap_ms[1]), size=px.size),
        ip=pass_ip[px],
        ua=ua[px],
        fam=pass_fam[px],
    )

    # Links: every position of the message, kept by the domain's link mode.
    lc = mv.link_count[pm]
    row = np.repeat(np.arange(pm.size), lc)
    pos = _group_rank(row)
    msg = pm[row]
    hidden = pos == mv.hidden_pos[msg]
    mode = dm.link_mode[pdom[row]]
    follow = rng.random(pm.size) < dm.honeypot_follow[pdom]
    u = rng.random(row.size)
    keep = np.where(
        mode == LINK_MODES.index("all"),
        ~hidden | follow[row],
        np.where(
            mode == LINK_MODES.index("first"),
            pos == 0,
            u
            < np.where(
                hidden, cfg.subset_link_share * dm.honeypot_follow[pdom[row]], cfg.subset_link_share
            ),
        ),
    )
    # A subset scan that kept nothing still fetches the first link.
    kept_any = np.bincount(row[keep], minlength=pm.size) > 0
    keep |= (pos == 0) & ~kept_any[row]
    row, pos, msg = row[keep], pos[keep], msg[keep]
    lo, hi = cfg.scanner_link_gap_ms
    gap = rng.uniform(lo, hi, size=row.size).astype(np.int64)
    t = start[row] + _cumsum_by_group(gap, _group_rank(row))
    # Mostly the pass's IP; sometimes the farm spreads a message's links over its IPs.
    ip = np.where(
        rng.random(row.size) < cfg.scanner_ip_spread,
        _scanner_ip(w, pdom[row], rng),
        pass_ip[row],
    )
    head = rng.random(pm.size) < dm.head_first[pdom]
    h = np.flatnonzero(head[row])
    parts.add(
        msg=msg[h],
        src=SCANNER,
        etype=CLICK,
        t=t[h],
        ip=ip[h],
        ua=ua[row[h]],
        pos=pos[h],
        method=HEAD,
        fam=pass_fam[row[h]],
    )
    t = t + np.where(head[row], rng.integers(*cfg.scanner_head_gap_ms, size=row.size), 0)
    parts.add(msg=msg, src=SCANNER, etype=CLICK, t=t, ip=ip, ua=ua[row], pos=pos, fam=pass_fam[row])


def apple_mpp(
    w: World, mv: MessageView, rng: np.random.Generator, parts: Parts, first_read: np.ndarray
) -> None:
    """Apple Mail Privacy Protection prefetching the pixel through Apple's proxies."""
    cfg, ct, pools = w.cfg, w.contacts, w.pools
    sel = np.flatnonzero(
        (mv.delivered >= 0) & mv.email & (ct.client[mv.contact] == CLIENTS.index("apple_mpp"))
    )
    m = sel[rng.random(sel.size) < cfg.mpp_prefetch_prob]
    t = mv.delivered[m] + _ms(lognormal(rng, cfg.mpp_delay, m.size))
    # The prefetch happens when the device downloads the message: before the person reads it.
    fr = first_read[m]
    before = (fr >= 0) & (fr < t)
    earlier = np.maximum(
        mv.delivered[m] + 500, fr - _ms(rng.uniform(*cfg.mpp_lead_before_read_s, size=m.size))
    )
    t = np.where(before, np.minimum(t, earlier), t)
    n = 1 + rng.poisson(cfg.mpp_refetch_mean, size=m.size)
    mm = np.repeat(m, n)
    rank = _group_rank(mm)
    gaps = np.where(rank == 0, 0, _ms(lognormal(rng, cfg.mpp_refetch_gap, mm.size)))
    tt = np.repeat(t, n) + _cumsum_by_group(gaps, rank)
    pool = pools["apple_proxy"]
    parts.add(
        msg=mm,
        src=PREFETCH,
        etype=OPEN,
        t=tt,
        ip=pool[rng.integers(0, len(pool), size=mm.size)],
        ua=pools["ua_mpp"][0],
        fam=fam("mpp"),
    )


def link_previews(w: World, mv: MessageView, rng: np.random.Generator, parts: Parts) -> None:
    """iMessage previews (from the phone itself) and Android link checks (from Google)."""
    cfg, ct, pools = w.cfg, w.contacts, w.pools
    sel = np.flatnonzero((mv.delivered >= 0) & ~mv.email & (mv.visible > 0))
    contact = mv.contact[sel]
    iphone = ct.iphone[contact]
    prob = np.where(iphone, cfg.imessage_preview_prob, cfg.android_check_prob)
    hit = rng.random(sel.size) < prob
    m, contact, iphone = sel[hit], contact[hit], iphone[hit]
    t = mv.delivered[m] + _ms(lognormal(rng, cfg.preview_delay, m.size))
    pos = first_link(mv.visible[m], mv.hidden_pos[m])
    wifi = rng.random(m.size) < cfg.phone_on_wifi_share
    device_ip = np.where(
        wifi,
        ct.home_ip[contact],
        ct.mobile_ip[contact, rng.integers(0, ct.mobile_ip.shape[1], size=m.size)],
    )
    google = pools["google_check"]
    ip = np.where(iphone, device_ip, google[rng.integers(0, len(google), size=m.size)])
    android_ua = pools["ua_android"][
        rng.choice(len(pools["ua_android"]), size=m.size, p=pools["uaw_android"])
    ]
    ua = np.where(iphone, pools["ua_imessage"][0], android_ua)
    parts.add(msg=m, src=PREVIEW, etype=CLICK, t=t, ip=ip, ua=ua, pos=pos, fam=fam("sms_preview"))


def crawlers(w: World, mv: MessageView, rng: np.random.Generator, parts: Parts) -> None:
    """Search engines, listed crawlers and scripts hitting tracked links at random later times."""
    cfg, pools = w.cfg, w.pools
    sel = np.flatnonzero((mv.delivered >= 0) & (mv.email | (mv.link_count > 0)))
    m = sel[rng.random(sel.size) < cfg.crawler_message_prob]
    kind = pick(rng, np.array(cfg.crawler_mix), m.size)
    search_bing = rng.random(m.size) < cfg.bingbot_share
    ip_pool_key = np.where(kind == 0, np.where(search_bing, 1, 0), 2)  # googlebot, bingbot, dc
    ua_pool_key = np.where(kind == 0, np.where(search_bing, 1, 0), np.where(kind == 1, 2, 3))
    ip_pools = (pools["googlebot"], pools["bingbot"], pools["datacenter"])
    ua_pools = (
        pools["ua_crawl_googlebot"],
        pools["ua_crawl_bingbot"],
        pools["ua_crawl_other"],
        pools["ua_http"],
    )
    ip = np.empty(m.size, np.int64)
    ua = np.empty(m.size, np.int64)
    for key, pool in enumerate(ip_pools):
        s = ip_pool_key == key
        ip[s] = pool[rng.integers(0, len(pool), size=int(s.sum()))]
    for key, pool in enumerate(ua_pools):
        s = ua_pool_key == key
        ua[s] = pool[rng.integers(0, len(pool), size=int(s.sum()))]
    n = 1 + rng.poisson(cfg.crawler_events_mean, size=m.size)
    row = np.repeat(np.arange(m.size), n)
    msg = m[row]
    t = mv.delivered[msg] + _ms(lognormal(rng, cfg.crawler_delay, row.size))
    is_open = mv.email[msg] & (
        (mv.link_count[msg] == 0) | (rng.random(row.size) < cfg.crawler_open_share)
    )
    pos = np.floor(rng.random(row.size) * np.maximum(mv.link_count[msg], 1)).astype(np.int64)
    head = (kind[row] == 2) & (rng.random(row.size) < cfg.crawler_head_share) & ~is_open
    parts.add(
        msg=msg,
        src=CRAWLER,
        etype=np.where(is_open, OPEN, CLICK),
        t=t,
        ip=ip[row],
        ua=ua[row],
        pos=np.where(is_open, -1, pos),
        method=np.where(head, HEAD, GET),
        fam=fam("crawler"),
    )


__all__ = [
    "CLICK",
    "CRAWLER",
    "FAMILIES",
    "FIELDS",
    "HUMAN_FAMILIES",
    "HUMAN",
    "OPEN",
    "PREFETCH",
    "PREVIEW",
    "SCANNER",
    "SOURCE_KIND",
    "UA_NONE",
    "MessageView",
    "Parts",
    "apple_mpp",
    "crawlers",
    "link_previews",
    "people_email",
    "people_sms",
    "scanners",
    "view",
]
