"""An injectable scanner family the default profile lacks (``--profile new_scanner``).

A newer email-security vendor protects a share of the corporate domains on top of their own
gateway. It scans from a transit network that no vendored list flags (Cogent, AS174, by
default), with a current desktop Chrome User-Agent, no HEAD and no pixel, seconds after delivery;
per domain it fetches every link (following the honeypot like other fetch-all scanners) or only
the first one. Its events are ``security_scanner`` bots. Drawn from its own random stream and
only when ``new_scanner_share > 0``, so every other world stays byte-identical.
"""

from __future__ import annotations

import numpy as np

from . import behaviour as bh
from .networks import Networks
from .world import PROVIDERS, World, lognormal


def new_scanner_family(
    w: World, mv: bh.MessageView, nets: Networks, rng: np.random.Generator, parts: bh.Parts
) -> None:
    """Add the new vendor's scans of the messages to its protected domains."""
    cfg = w.cfg
    if cfg.new_scanner_share <= 0:
        return
    dm = w.domains
    corporate = dm.provider == PROVIDERS.index("corporate")
    protected = corporate & (rng.random(len(corporate)) < cfg.new_scanner_share)
    farm = w.ips.add(*nets.draw(rng, nets.asn_ranges(cfg.new_scanner_asns, "new scanner"), 80))
    chrome, weights = w.pools["ua_win_chrome"], w.pools["uaw_win_chrome"]
    dom_ip = farm[rng.integers(0, len(farm), size=(len(corporate), 2))]
    dom_ua = chrome[rng.choice(len(chrome), size=len(corporate), p=weights)]
    fetch_all = rng.random(len(corporate)) < cfg.new_scanner_fetch_all

    sel = np.flatnonzero((mv.delivered >= 0) & mv.email & protected[mv.domain])
    m = sel[rng.random(sel.size) < cfg.new_scanner_scan_prob]
    dom = mv.domain[m]
    start = mv.delivered[m] + bh._ms(lognormal(rng, cfg.new_scanner_delay, m.size))
    ip = dom_ip[dom, rng.integers(0, 2, size=m.size)]
    lc = mv.link_count[m]
    row = np.repeat(np.arange(m.size), lc)
    pos = bh._group_rank(row)
    msg = m[row]
    hidden = pos == mv.hidden_pos[msg]
    follow = rng.random(m.size) < cfg.honeypot_follow
    first = bh.first_link(mv.visible[msg], mv.hidden_pos[msg])
    keep = np.where(fetch_all[dom[row]], ~hidden | follow[row], pos == first)
    row, pos, msg = row[keep], pos[keep], msg[keep]
    gap = rng.uniform(*cfg.scanner_link_gap_ms, size=row.size).astype(np.int64)
    t = start[row] + bh._cumsum_by_group(gap, bh._group_rank(row))
    parts.add(
        msg=msg,
        src=bh.SCANNER,
        etype=bh.CLICK,
        t=t,
        ip=ip[row],
        ua=dom_ua[dom[row]],
        pos=pos,
        fam=bh.fam("new_vendor_scanner"),
    )
