"""Feature names as short phrases a marketer reads: one table, with a fallback per feature group."""

from __future__ import annotations

from features.definitions import FEATURES

PHRASES: dict[str, str] = {
    "secs_since_delivery": "opened or clicked seconds after delivery",
    "secs_since_send": "acted very soon after sending",
    "is_sms": "SMS link-preview pattern",
    "is_click": "a click rather than an open",
    "http_method": "unusual HTTP request method",
    "is_hidden_link": "clicked an invisible link",
    "link_position": "position of the clicked link",
    "link_position_rel": "position of the clicked link",
    "msg_link_coverage": "clicked most links in the message",
    "msg_distinct_links": "clicked many different links",
    "secs_since_msg_prev_event": "rapid events on the same message",
    "msg_first_event": "first event on the message",
    "click_without_open": "click without an open",
    "msg_prior_same_ip": "repeat events from the same address",
    "msg_prior_same_ua": "repeat events from the same browser",
    "secs_since_msg_first_same_ip": "same address acting again quickly",
    "secs_since_msg_first_event": "soon after the message's first event",
    "secs_since_msg_prev_open": "soon after the previous open",
    "msg_prior_late_opens_other_ip": "a person opened it later elsewhere",
    "tenant_blocklist": "on this account's block list",
    "tenant_allowlist": "on this account's allow list",
}
GROUP_PHRASES: dict[str, str] = {
    "timing": "timing typical of automated scanning",
    "event": "how the link was requested",
    "message": "pattern of events on the message",
    "burst": "burst of traffic from the same network",
    "ip": "network of a security vendor or data centre",
    "network": "network of a security vendor or data centre",
    "ua": "user agent of a scanner, proxy or crawler",
    "useragent": "user agent of a scanner, proxy or crawler",
}
_GROUP = {f.name: f.group for f in FEATURES}


def phrase(feature: str) -> str:
    """The words shown for one reason (the feature name itself only when it is unknown)."""
    if feature in PHRASES:
        return PHRASES[feature]
    group = _GROUP.get(feature)
    if group in GROUP_PHRASES:
        return GROUP_PHRASES[group]
    if feature.startswith(("ua_", "is_bot_ua", "ua")):
        return GROUP_PHRASES["ua"]
    if feature.startswith(("net_", "ip_", "asn")):
        return GROUP_PHRASES["ip"]
    return feature.replace("_", " ")


def phrases(features: list[str]) -> str:
    """Reasons in words, repeated phrases once, joined with '; '."""
    out: list[str] = []
    for f in features:
        p = phrase(f)
        if p not in out:
            out.append(p)
    return "; ".join(out)
