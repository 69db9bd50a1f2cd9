"""Each labelling function on a tiny frame: where it votes, and where it abstains."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from labelling import functions as lf
from labelling.model import ABSTAIN, BOT, HUMAN


@pytest.fixture
def votes(event_frames) -> Callable[..., list[int]]:
    """The votes of labelling function ``fn`` on the events built from ``rows``."""

    def vote(fn, rows: list[dict]) -> list[int]:  # noqa: ANN001
        (entry,) = [x for x in lf.LABELLING_FUNCTIONS if x.fn is fn]
        ctx, feats = event_frames(rows)
        return entry(ctx, feats).tolist()

    return vote


def test_honeypot_hit(votes) -> None:
    assert votes(lf.honeypot_hit, [{"is_hidden_link": True}, {}]) == [BOT, ABSTAIN]


def test_honeypot_same_address_looks_both_ways_within_the_window(votes) -> None:
    rows = [
        {"message_id": "m", "ip": "1.1.1.1", "t": 0.0},  # 3 s before the hit: bot
        {"message_id": "m", "ip": "1.1.1.1", "t": 3.0, "is_hidden_link": True},  # the hit itself
        {"message_id": "m", "ip": "1.1.1.1", "t": 12.0},  # 9 s after: bot
        {"message_id": "m", "ip": "1.1.1.1", "t": 40.0},  # too late
        {"message_id": "m", "ip": "2.2.2.2", "t": 4.0},  # another address
        {"message_id": "other", "ip": "1.1.1.1", "t": 4.0},  # another message
    ]
    assert votes(lf.honeypot_same_address, rows) == [BOT, ABSTAIN, BOT, ABSTAIN, ABSTAIN, ABSTAIN]


def test_apple_relay_bare_ua(votes) -> None:
    rows = [
        {"f": {"net_apple_relay": 1, "ua_bare_mozilla": 1}},
        {"f": {"net_apple_relay": 1}},  # Safari through Private Relay: a person
        {"f": {"ua_bare_mozilla": 1}},
    ]
    assert votes(lf.apple_relay_bare_ua, rows) == [BOT, ABSTAIN, ABSTAIN]


def test_crawler_user_agent_spares_the_gmail_image_proxy(votes) -> None:
    rows = [
        {"f": {"ua_crawler": 1}},
        {"f": {"ua_headless": 1}},
        {"f": {"ua_http_library": 1}},
        {"f": {"ua_crawler": 1, "ua_mail_proxy": 1}},
        {},
    ]
    assert votes(lf.crawler_user_agent, rows) == [BOT, BOT, BOT, ABSTAIN, ABSTAIN]


def test_preview_user_agent(votes) -> None:
    assert votes(lf.preview_user_agent, [{"f": {"ua_link_preview": 1}}, {}]) == [BOT, ABSTAIN]


def test_crawler_or_preview_network(votes) -> None:
    rows = [{"f": {"net_crawler_range": 1}}, {"f": {"net_link_preview_range": 1}}, {}]
    assert votes(lf.crawler_or_preview_network, rows) == [BOT, BOT, ABSTAIN]


def test_head_request(votes) -> None:
    rows = [{"f": {"http_method": 1}}, {"f": {"http_method": 0}}, {"f": {"http_method": -1}}]
    assert votes(lf.head_request, rows) == [BOT, ABSTAIN, ABSTAIN]


def test_empty_user_agent(votes) -> None:
    assert votes(lf.empty_user_agent, [{"f": {"ua_empty": 1}}, {}]) == [BOT, ABSTAIN]


def test_outdated_browser_on_desktops_only(votes) -> None:
    rows = [
        {"f": {"ua_versions_behind": 40}},
        {"f": {"ua_versions_behind": 40, "ua_is_mobile": 1}},  # an old phone keeps its browser
        {"f": {"ua_versions_behind": 10}},
        {"f": {"ua_versions_behind": np.nan}},
    ]
    assert votes(lf.outdated_browser, rows) == [BOT, ABSTAIN, ABSTAIN, ABSTAIN]


def test_vendor_network_at_delivery(votes) -> None:
    rows = [
        {"f": {"net_security_vendor": 1, "secs_since_delivery": 3}},
        {"f": {"net_security_vendor": 1, "secs_since_delivery": 900}},  # browser isolation
        {"f": {"secs_since_delivery": 3}},
        {"f": {"net_security_vendor": 1, "secs_since_delivery": np.nan}},
    ]
    assert votes(lf.vendor_network_at_delivery, rows) == [BOT, ABSTAIN, ABSTAIN, ABSTAIN]


def test_datacentre_at_delivery(votes) -> None:
    proxy = {"ua_mail_proxy": 1, "net_google_mail_proxy": 1}
    rows = [
        {"f": {"net_datacenter": 1, "secs_since_delivery": 5}},
        {"f": {"net_cloud": 1, "secs_since_delivery": 5}},
        {"f": {"net_cloud": 1, "secs_since_delivery": 4000}},  # a virtual desktop, later
        # Gmail's image proxy sits in Google's cloud ranges and fetches when a person opens.
        {"f": {**proxy, "net_cloud": 1, "net_datacenter": 1, "secs_since_delivery": 5}},
        # The proxy's User-Agent from any other cloud machine is still a bot at delivery.
        {"f": {"ua_mail_proxy": 1, "net_cloud": 1, "secs_since_delivery": 5}},
    ]
    assert votes(lf.datacentre_at_delivery, rows) == [BOT, BOT, ABSTAIN, ABSTAIN, BOT]


def test_address_fans_out(votes) -> None:
    rows = [{"f": {"ip_contacts_10s": 3}}, {"f": {"ip_contacts_10s": 2}}]
    assert votes(lf.address_fans_out, rows) == [BOT, ABSTAIN]


def test_fetches_every_link_needs_two_links_within_seconds(votes) -> None:
    rows = [
        {"message_id": "a", "ip": "1.1.1.1", "t": 0, "link_position": 0},
        {"message_id": "a", "ip": "1.1.1.1", "t": 1.5, "link_position": 1},
        {"message_id": "b", "ip": "1.1.1.1", "t": 0, "link_position": 0},
        {"message_id": "b", "ip": "1.1.1.1", "t": 1, "link_position": 0},  # the same link twice
        {"message_id": "c", "ip": "1.1.1.1", "t": 0, "link_position": 0},
        {"message_id": "c", "ip": "1.1.1.1", "t": 300, "link_position": 1},  # minutes apart
        {"message_id": "a", "ip": "1.1.1.1", "t": 1, "type": "open"},  # opens never count
    ]
    assert votes(lf.fetches_every_link, rows) == [BOT, BOT] + [ABSTAIN] * 5


def test_late_click_after_open(votes) -> None:
    person = {"msg_prior_opens": 1, "secs_since_delivery": 1800}
    rows = [
        {"f": person},
        {"f": {**person, "secs_since_delivery": 20}},  # at delivery
        {"f": {**person, "msg_prior_opens": 0}},  # no open first
        {"f": {**person, "net_security_vendor": 1}},  # from a vendor's network
        {"f": {**person, "ua_versions_behind": 40}},  # an old browser
        {"f": {**person, "ip_contacts_600s": 4}},  # the address reached others
        {"type": "open", "f": person},
    ]
    assert votes(lf.late_click_after_open, rows) == [HUMAN] + [ABSTAIN] * 6


def test_mail_client_open(votes) -> None:
    rows = [
        {"type": "open"},
        {"type": "open", "f": {"ua_bare_mozilla": 1}},
        {"type": "open", "f": {"ua_empty": 1}},
        {"type": "open", "f": {"net_datacenter": 1}},
        {"type": "open", "f": {"ua_http_library": 1}},
        {"type": "open", "f": {"secs_since_delivery": 5}},
        {"type": "open", "f": {"ip_contacts_60s": 2}},
        {"type": "click"},
        # Gmail's image proxy in Google's cloud ranges: a person's open, not a data centre's.
        {"type": "open", "f": {"ua_mail_proxy": 1, "net_google_mail_proxy": 1, "net_cloud": 1}},
    ]
    assert votes(lf.mail_client_open, rows) == [HUMAN] + [ABSTAIN] * 7 + [HUMAN]


def test_mail_proxy_open(votes) -> None:
    rows = [
        {"type": "open", "f": {"ua_mail_proxy": 1, "net_google_mail_proxy": 1}},
        {"type": "open", "f": {"ua_mail_proxy": 1, "net_yahoo": 1}},
        {"type": "open", "f": {"ua_mail_proxy": 1}},  # the token from anywhere else
        {"type": "click", "f": {"ua_mail_proxy": 1, "net_yahoo": 1}},
    ]
    assert votes(lf.mail_proxy_open, rows) == [HUMAN, HUMAN, ABSTAIN, ABSTAIN]


def test_sms_tap_from_phone(votes) -> None:
    phone = {"is_sms": 1, "ua_is_mobile": 1, "secs_since_delivery": 600}
    rows = [
        {"f": phone},
        {"f": {**phone, "ua_link_preview": 1}},  # iMessage preview from the phone
        {"f": {**phone, "net_google": 1}},  # Android link check
        {"f": {**phone, "secs_since_delivery": 5}},
        {"f": {**phone, "is_sms": 0}},
    ]
    assert votes(lf.sms_tap_from_phone, rows) == [HUMAN] + [ABSTAIN] * 4


def test_every_registered_function_is_tested_and_named_once() -> None:
    tested = {name[5:] for name in globals() if name.startswith("test_")}
    names = [x.name for x in lf.LABELLING_FUNCTIONS]
    assert len(set(names)) == len(names)
    for name in names:
        assert any(t.startswith(name) for t in tested), name


def test_apply_all_shapes_and_checks_rows(event_frames) -> None:
    ctx, feats = event_frames([{"is_hidden_link": True}, {"type": "open"}])
    votes = lf.apply_all(ctx, feats)
    assert votes.shape == (2, len(lf.LABELLING_FUNCTIONS))
    assert votes[0, lf.LF_NAMES.index("honeypot_hit")] == BOT
    assert votes[1, lf.LF_NAMES.index("mail_client_open")] == HUMAN
    with pytest.raises(ValueError, match="same rows"):
        lf.apply_all(ctx, feats.iloc[:1])


def test_rescan_before_click_marks_the_check_not_the_person(votes) -> None:
    rows = [
        {"message_id": "m", "ip": "40.107.0.1", "t": 100.0, "link_position": 1},  # the check
        {"message_id": "m", "ip": "5.5.5.5", "t": 101.5, "link_position": 1},  # the person
        {"message_id": "m", "ip": "5.5.5.5", "t": 200.0, "link_position": 1},  # a repeat click
        {"message_id": "n", "ip": "40.107.0.1", "t": 100.0, "link_position": 0},
        {"message_id": "n", "ip": "5.5.5.5", "t": 110.0, "link_position": 0},  # 10 s later
        {"message_id": "k", "ip": "40.107.0.1", "t": 100.0, "link_position": 0},
        {"message_id": "k", "ip": "5.5.5.5", "t": 101.0, "link_position": 2},  # another link
    ]
    assert votes(lf.rescan_before_click, rows) == [BOT] + [ABSTAIN] * 6


def test_sms_link_check(votes) -> None:
    check = {"is_sms": 1, "net_google": 1, "secs_since_delivery": 2}
    rows = [
        {"f": check},
        {"f": {**check, "secs_since_delivery": 600}},
        {"f": {**check, "is_sms": 0}},
        {"f": {**check, "net_google": 0}},
    ]
    assert votes(lf.sms_link_check, rows) == [BOT] + [ABSTAIN] * 3
