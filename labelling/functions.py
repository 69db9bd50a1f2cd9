"""The registry of labelling functions: small, named, pure functions that vote on each event.

Each function reads the event-context frame (events joined with their message, as
``features.pipeline.event_context`` builds it) and the features ``build_features`` computed from
it, and returns one vote per row: 1 bot, 0 human, -1 abstain. Unlike features, labelling
functions may look both ways in time (a honeypot hit marks the same gateway's events on that
message seconds *before* it too): weak labels are made offline, after the fact.

Add a function by writing it below and listing it in ``LABELLING_FUNCTIONS``; the label model,
the report and ``botfilter label`` take the list from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from labelling.model import ABSTAIN, ANY, BOT, HUMAN

# A honeypot hit marks the same address's other events on the message within this many seconds.
HONEYPOT_WINDOW_S = 10.0
# A scan happens within this many seconds of delivery; people rarely act that fast.
AT_DELIVERY_S = 60.0
# One address clicking several links of a message within this many seconds is fetching them all.
FETCH_ALL_S = 10.0
# A gateway's time-of-click check fetches the link this many seconds before the person's click.
RESCAN_S = 3.0
# A person reads minutes after delivery, not seconds.
PERSON_AFTER_S = 300.0
# Desktop browsers this many major versions behind the current one are scanner disguises; people
# run browsers a few versions old, and old phones keep old ones (so phones never count).
OUTDATED_MAJORS = 30


@dataclass(frozen=True)
class LabellingFunction:
    """One named vote over (event context, features)."""

    name: str
    polarity: int  # the vote it casts when it does not abstain: BOT or HUMAN
    description: str
    fn: Callable[[pd.DataFrame, pd.DataFrame], np.ndarray]
    # The kind of bot (or of person) it was written for; None: any kind of its side.
    kind: str | None = None

    def __call__(self, ctx: pd.DataFrame, feats: pd.DataFrame) -> np.ndarray:
        fires = np.asarray(self.fn(ctx, feats), dtype=bool)
        return np.where(fires, self.polarity, ABSTAIN).astype(np.int8)


def _flag(feats: pd.DataFrame, name: str) -> np.ndarray:
    return feats[name].to_numpy() > 0


def _secs(feats: pd.DataFrame) -> np.ndarray:
    # NaN (undelivered) compares False both ways, so such rows never count as fast or slow.
    return feats["secs_since_delivery"].to_numpy(dtype=np.float64)


def _hidden(ctx: pd.DataFrame) -> np.ndarray:
    if "is_hidden_link" not in ctx:
        return np.zeros(len(ctx), dtype=bool)
    return ctx["is_hidden_link"].astype("boolean").fillna(False).to_numpy(dtype=bool)


def _address_groups(ctx: pd.DataFrame) -> np.ndarray:
    """A code per (tenant, message, ip); -1 where the ip is missing."""
    key = ctx[["tenant_id", "message_id", "ip"]]
    codes = key.groupby(list(key.columns), sort=False, dropna=True).ngroup().to_numpy()
    return np.where(ctx["ip"].isna().to_numpy(), -1, codes)


def _times_s(ctx: pd.DataFrame) -> np.ndarray:
    t = pd.to_datetime(ctx["occurred_at"], utc=True)
    # pandas-stubs omit DatetimeArray.asi8, the int64 view that costs no conversion.
    return t.dt.as_unit("ns").array.asi8 / 1e9  # type: ignore[attr-defined]


def _datacentre(feats: pd.DataFrame) -> np.ndarray:
    return _flag(feats, "net_datacenter") | _flag(feats, "net_cloud")


def _mail_proxy(feats: pd.DataFrame) -> np.ndarray:
    # Gmail's and Yahoo's image proxies: on the providers' cloud networks (flagged data centre
    # since the vendored ranges), but they fetch the pixel when a person opens the mail.
    return _flag(feats, "ua_mail_proxy") & (
        _flag(feats, "net_google_mail_proxy") | _flag(feats, "net_yahoo")
    )


def _bot_network(feats: pd.DataFrame) -> np.ndarray:
    return (_datacentre(feats) & ~_mail_proxy(feats)) | _flag(feats, "net_security_vendor")


# --- bot votes ------------------------------------------------------------------------------
def honeypot_hit(ctx: pd.DataFrame, feats: pd.DataFrame) -> np.ndarray:
    return _hidden(ctx)


def honeypot_same_address(ctx: pd.DataFrame, feats: pd.DataFrame) -> np.ndarray:
    hidden = _hidden(ctx)
    group = _address_groups(ctx)
    t = _times_s(ctx)
    hit = hidden & (group >= 0)
    if not hit.any():
        return np.zeros(len(ctx), dtype=bool)
    # Per address group, the honeypot hit times sorted; each event looks for the nearest one.
    order = np.lexsort((t[hit], group[hit]))
    hg, ht = group[hit][order], t[hit][order]
    out = np.zeros(len(ctx), dtype=bool)
    cand = np.flatnonzero(np.isin(group, hg) & ~hidden)
    if cand.size == 0:
        return out
    g, tc = group[cand], t[cand]
    lo = np.searchsorted(hg, g, side="left")
    hi = np.searchsorted(hg, g, side="right")
    # Within the group's hits, the first hit at or after t - window.
    near = np.zeros(cand.size, dtype=bool)
    for i in range(int((hi - lo).max())):  # groups hold one to a few hits: a short loop
        j = lo + i
        ok = j < hi
        jj = np.where(ok, j, 0)
        near |= ok & (np.abs(ht[jj] - tc) <= HONEYPOT_WINDOW_S)
    out[cand] = near
    return out


def apple_relay_bare_ua(ctx: pd.DataFrame, feats: pd.DataFrame) -> np.ndarray:
    return _flag(feats, "net_apple_relay") & _flag(feats, "ua_bare_mozilla")


def crawler_user_agent(ctx: pd.DataFrame, feats: pd.DataFrame) -> np.ndarray:
    # The crawler list also names the Gmail image proxy, which fetches when a person opens.
    listed = _flag(feats, "ua_crawler") & ~_flag(feats, "ua_mail_proxy")
    return listed | _flag(feats, "ua_headless") | _flag(feats, "ua_http_library")


def preview_user_agent(ctx: pd.DataFrame, feats: pd.DataFrame) -> np.ndarray:
    return _flag(feats, "ua_link_preview")


def crawler_or_preview_network(ctx: pd.DataFrame, feats: pd.DataFrame) -> np.ndarray:
    return _flag(feats, "net_crawler_range") | _flag(feats, "net_link_preview_range")


def head_request(ctx: pd.DataFrame, feats: pd.DataFrame) -> np.ndarray:
    return feats["http_method"].to_numpy() == 1


def empty_user_agent(ctx: pd.DataFrame, feats: pd.DataFrame) -> np.ndarray:
    return _flag(feats, "ua_empty")


def outdated_browser(ctx: pd.DataFrame, feats: pd.DataFrame) -> np.ndarray:
    return (feats["ua_versions_behind"].to_numpy() >= OUTDATED_MAJORS) & ~_flag(
        feats, "ua_is_mobile"
    )


def vendor_network_at_delivery(ctx: pd.DataFrame, feats: pd.DataFrame) -> np.ndarray:
    return _flag(feats, "net_security_vendor") & (_secs(feats) < AT_DELIVERY_S)


def datacentre_at_delivery(ctx: pd.DataFrame, feats: pd.DataFrame) -> np.ndarray:
    return _datacentre(feats) & ~_mail_proxy(feats) & (_secs(feats) < AT_DELIVERY_S)


def address_fans_out(ctx: pd.DataFrame, feats: pd.DataFrame) -> np.ndarray:
    return feats["ip_contacts_10s"].to_numpy() >= 3


def fetches_every_link(ctx: pd.DataFrame, feats: pd.DataFrame) -> np.ndarray:
    click = (ctx["type"] == "click").to_numpy()
    group = np.where(click, _address_groups(ctx), -1)
    t = _times_s(ctx)
    pos = pd.to_numeric(ctx["link_position"], errors="coerce").to_numpy()
    frame = pd.DataFrame({"g": group, "t": t, "pos": pos})[group >= 0]
    if frame.empty:
        return np.zeros(len(ctx), dtype=bool)
    agg = frame.groupby("g").agg(span=("t", lambda s: s.max() - s.min()), links=("pos", "nunique"))
    fast = agg.index[(agg["links"] >= 2) & (agg["span"] <= FETCH_ALL_S)]
    return np.isin(group, fast.to_numpy()) & (group >= 0)


def rescan_before_click(ctx: pd.DataFrame, feats: pd.DataFrame) -> np.ndarray:
    # The same link of the message clicked again from another address within seconds: the
    # first click was the gateway checking the link for the person who clicked next.
    click = (ctx["type"] == "click").to_numpy()
    out = np.zeros(len(ctx), dtype=bool)
    idx = np.flatnonzero(click)
    if idx.size < 2:
        return out
    sub = pd.DataFrame(
        {
            "tenant": ctx["tenant_id"].to_numpy()[idx],
            "message": ctx["message_id"].to_numpy()[idx],
            "pos": pd.to_numeric(ctx["link_position"], errors="coerce").to_numpy()[idx],
            "t": _times_s(ctx)[idx],
            "ip": ctx["ip"].to_numpy()[idx],
            "row": idx,
        }
    ).sort_values(["tenant", "message", "pos", "t"], kind="stable")
    same = (
        (sub["tenant"].to_numpy()[1:] == sub["tenant"].to_numpy()[:-1])
        & (sub["message"].to_numpy()[1:] == sub["message"].to_numpy()[:-1])
        & (sub["pos"].to_numpy()[1:] == sub["pos"].to_numpy()[:-1])
    )
    dt = sub["t"].to_numpy()[1:] - sub["t"].to_numpy()[:-1]
    ip = sub["ip"].to_numpy()
    other = pd.notna(ip[1:]) & pd.notna(ip[:-1]) & (ip[1:] != ip[:-1])
    first = same & other & (dt <= RESCAN_S)
    out[sub["row"].to_numpy()[:-1][first]] = True
    return out


def sms_link_check(ctx: pd.DataFrame, feats: pd.DataFrame) -> np.ndarray:
    # Android's message app checks a texted link from Google's network on receipt.
    return (
        (feats["is_sms"].to_numpy() == 1)
        & _flag(feats, "net_google")
        & (_secs(feats) < AT_DELIVERY_S)
    )


# --- human votes ----------------------------------------------------------------------------
def _current_browser(feats: pd.DataFrame) -> np.ndarray:
    behind = feats["ua_versions_behind"].to_numpy()
    return (feats["ua_family"].to_numpy() > 0) & (behind <= 12)


def late_click_after_open(ctx: pd.DataFrame, feats: pd.DataFrame) -> np.ndarray:
    return (
        (feats["is_click"].to_numpy() == 1)
        & (feats["msg_prior_opens"].to_numpy() > 0)
        & (_secs(feats) > PERSON_AFTER_S)
        & ~_bot_network(feats)
        & _current_browser(feats)
        & (feats["ip_contacts_600s"].to_numpy() <= 1)
    )


def mail_client_open(ctx: pd.DataFrame, feats: pd.DataFrame) -> np.ndarray:
    return (
        (feats["is_click"].to_numpy() == 0)
        & (_secs(feats) > PERSON_AFTER_S)
        & ~_flag(feats, "ua_bare_mozilla")
        & ~_flag(feats, "ua_empty")
        & ~_bot_network(feats)
        & ~crawler_user_agent(ctx, feats)
        & (feats["ip_contacts_60s"].to_numpy() <= 1)
    )


def mail_proxy_open(ctx: pd.DataFrame, feats: pd.DataFrame) -> np.ndarray:
    # Gmail's and Yahoo's image proxies fetch the pixel when the person opens the mail.
    return (feats["is_click"].to_numpy() == 0) & _mail_proxy(feats)


def sms_tap_from_phone(ctx: pd.DataFrame, feats: pd.DataFrame) -> np.ndarray:
    return (
        (feats["is_sms"].to_numpy() == 1)
        & _flag(feats, "ua_is_mobile")
        & ~_flag(feats, "ua_link_preview")
        & ~_bot_network(feats)
        & ~_flag(feats, "net_google")
        & (_secs(feats) > AT_DELIVERY_S)
    )


def _lf(
    fn: Callable, polarity: int, description: str, kind: str | None = None
) -> LabellingFunction:
    return LabellingFunction(fn.__name__, polarity, description, fn, kind)


SCANNER, MPP, CRAWLER = "security_scanner", "privacy_prefetch", "crawler"
# Kinds of people: their opens, their email clicks and their SMS taps set off different functions.
HUMAN_OPEN, HUMAN_CLICK, HUMAN_SMS = "human_open", "human_click", "human_sms"
HUMAN_KINDS: tuple[str, ...] = (HUMAN_OPEN, HUMAN_CLICK, HUMAN_SMS)
LABELLING_FUNCTIONS: tuple[LabellingFunction, ...] = (
    _lf(honeypot_hit, BOT, "a click on the invisible honeypot link"),
    _lf(
        honeypot_same_address,
        BOT,
        f"the same address's other events on a message within {HONEYPOT_WINDOW_S:g} s of its "
        "honeypot hit",
    ),
    _lf(apple_relay_bare_ua, BOT, "Apple relay network with the bare 'Mozilla/5.0' (MPP)", MPP),
    _lf(crawler_user_agent, BOT, "crawler, headless-browser or HTTP-library User-Agent", CRAWLER),
    _lf(preview_user_agent, BOT, "link-preview fetcher User-Agent", "link_preview"),
    _lf(crawler_or_preview_network, BOT, "published crawler or link-preview network"),
    _lf(head_request, BOT, "an HTTP HEAD request", SCANNER),
    _lf(empty_user_agent, BOT, "no User-Agent", SCANNER),
    _lf(outdated_browser, BOT, f"a browser {OUTDATED_MAJORS}+ major versions old", SCANNER),
    _lf(
        vendor_network_at_delivery,
        BOT,
        f"security-vendor network within {AT_DELIVERY_S:g} s of delivery",
        SCANNER,
    ),
    _lf(
        datacentre_at_delivery,
        BOT,
        f"data-centre or cloud network within {AT_DELIVERY_S:g} s of delivery",
        SCANNER,
    ),
    _lf(address_fans_out, BOT, "the address reached 3+ recipients in the last 10 s", SCANNER),
    _lf(
        fetches_every_link,
        BOT,
        f"the address clicked 2+ links of the message within {FETCH_ALL_S:g} s",
        SCANNER,
    ),
    _lf(
        rescan_before_click,
        BOT,
        f"the same link clicked again from another address within {RESCAN_S:g} s "
        "(time-of-click check)",
        SCANNER,
    ),
    _lf(
        sms_link_check,
        BOT,
        f"an SMS link fetched from Google's network within {AT_DELIVERY_S:g} s of delivery",
        "link_preview",
    ),
    _lf(
        late_click_after_open,
        HUMAN,
        "a click minutes after an open, current browser, own network, no fan-out",
        HUMAN_CLICK,
    ),
    _lf(
        mail_client_open,
        HUMAN,
        "an open minutes after delivery from a mail client, own network, no fan-out",
        HUMAN_OPEN,
    ),
    _lf(mail_proxy_open, HUMAN, "an open through Gmail's or Yahoo's image proxy", HUMAN_OPEN),
    _lf(sms_tap_from_phone, HUMAN, "an SMS tap from a phone browser, not at delivery", HUMAN_SMS),
)
LF_NAMES: tuple[str, ...] = tuple(lf.name for lf in LABELLING_FUNCTIONS)


def targets(classes: tuple[str, ...]) -> np.ndarray:
    """Each function's label-model class: the index of its bot kind in ``classes``, or ANY."""
    return np.array([classes.index(lf.kind) if lf.kind else ANY for lf in LABELLING_FUNCTIONS])


def apply_all(ctx: pd.DataFrame, feats: pd.DataFrame) -> np.ndarray:
    """(events x functions) int8 votes of every registered function."""
    if len(ctx) != len(feats):
        raise ValueError("context and features must have the same rows")
    votes = np.full((len(ctx), len(LABELLING_FUNCTIONS)), ABSTAIN, dtype=np.int8)
    for j, lf in enumerate(LABELLING_FUNCTIONS):
        votes[:, j] = lf(ctx, feats)
    return votes
