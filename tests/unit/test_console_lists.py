"""Tenant allow and block lists: parsing, matching, expiry, tenant walls, audit, queue, the
dry run against the recompute, and the override in the batch and the online API."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from core.errors import BotfilterError
from core.settings import Settings
from features.definitions import LOOKAHEAD_S
from jobs.lists import storage as lists
from jobs.lists.apply import ANSWER_FIELDS, ListCache, apply_to_answers, default_asn_lookup
from jobs.lists.rules import Entry, apply_to_scores, normalise, override_reasons
from jobs.store import Store
from serving.runtime import Runtime
from serving.state import MemoryState

FUTURE = pd.Timestamp("2100-01-01", tz="UTC").to_pydatetime()
PAST = pd.Timestamp("2001-01-01", tz="UTC").to_pydatetime()


# --- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value", "stored"),
    [
        ("ip", " 203.0.113.77/24 ", "203.0.113.0/24"),
        ("ip", "8.8.8.8", "8.8.8.8/32"),
        ("ip", "2001:db8::1/32", "2001:db8::/32"),
        ("asn", "AS13335", "13335"),
        ("asn", "as 15169", "15169"),
        ("asn", "8075", "8075"),
        ("user_agent", " python-requests ", "python-requests"),
        ("domain", "@Example.COM.", "example.com"),
    ],
)
def test_values_are_normalised(kind: str, value: str, stored: str) -> None:
    assert normalise(kind, value) == stored


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("ip", "300.1.1.1", "is not an IP address or CIDR"),
        ("ip", "10.0.0.0/33", "is not an IP address or CIDR"),
        ("asn", "ASx1", "is not an AS number"),
        ("asn", "0", "is not an AS number"),
        ("user_agent", "ab", "3 to 300 characters"),
        ("domain", "exa mple.com", "is not a domain name"),
        ("domain", "localhost", "is not a domain name"),
        ("colour", "red", "unknown entry kind"),
        ("ip", "  ", "is empty"),
    ],
)
def test_bad_values_are_one_line_errors(kind: str, value: str, message: str) -> None:
    with pytest.raises(BotfilterError, match=message) as err:
        normalise(kind, value)
    assert "\n" not in str(err.value)


# --- matching -------------------------------------------------------------------------------


def _entry(tenant: str, name: str, kind: str, value: str, expires=None) -> Entry:
    return lists.build_entry(tenant, name, kind, value, expires_at=expires)


EVENTS = pd.DataFrame(
    {
        "tenant_id": ["t1", "t1", "t1", "t1", "t2", "t1"],
        "ip": ["203.0.113.9", "198.51.100.1", None, "2001:db8::5", "203.0.113.9", "8.8.8.8"],
        "asn": [np.nan, 64500, np.nan, np.nan, np.nan, np.nan],
        "user_agent": ["Mozilla/5.0", "python-requests/2.31", "X", None, "Mozilla", "curl/8"],
        "recipient_domain": ["a.com", "b.com", "mail.corp.example", None, "a.com", "c.com"],
    }
)


def test_each_kind_matches_its_events_within_the_tenant() -> None:
    entries = [
        _entry("t1", "block", "ip", "203.0.113.0/24"),
        _entry("t1", "block", "asn", "AS64500"),
        _entry("t1", "block", "domain", "corp.example"),
        _entry("t1", "block", "ip", "2001:db8::/32"),
        _entry("t1", "allow", "user_agent", "CURL"),
    ]
    got = override_reasons(EVENTS, entries)
    # t2's event shares t1's blocked address: untouched (tenants are walls)
    assert got.tolist() == [
        "tenant_blocklist",
        "tenant_blocklist",
        "tenant_blocklist",
        "tenant_blocklist",
        None,
        "tenant_allowlist",
    ]


def test_an_ipv4_mapped_address_is_in_its_ipv4_network() -> None:
    """Enrichment reads ::ffff:40.107.1.1 as 40.107.1.1; the tenant's block list did not."""
    events = pd.DataFrame(
        {
            "tenant_id": ["t1", "t1", "t1"],
            "ip": ["::ffff:40.107.1.1", "::FFFF:28.0.0.1", "2001:db8::1"],
            "asn": [None, None, None],
            "user_agent": ["", "", ""],
            "recipient_domain": ["", "", ""],
            "channel": ["email", "email", "email"],
        }
    )
    got = override_reasons(events, [_entry("t1", "block", "ip", "40.107.0.0/16")])
    assert got.tolist() == ["tenant_blocklist", None, None]


def test_allow_wins_over_block_and_expired_entries_are_ignored() -> None:
    at = pd.Timestamp("2030-01-01", tz="UTC")
    entries = [
        _entry("t1", "block", "domain", "a.com"),
        _entry("t1", "allow", "ip", "203.0.113.9"),
        _entry("t1", "block", "user_agent", "python-", expires=PAST),
        _entry("t1", "block", "domain", "c.com", expires=FUTURE),
    ]
    got = override_reasons(EVENTS, entries, at)
    assert got.tolist() == ["tenant_allowlist", None, None, None, None, "tenant_blocklist"]
    later = pd.Timestamp("2100-01-02", tz="UTC")
    assert override_reasons(EVENTS, entries, later).tolist()[5] is None


def test_asn_is_resolved_from_the_ip_when_not_given() -> None:
    lookup = default_asn_lookup()
    google = int(lookup(np.array(["8.8.8.8"], dtype=object), np.array([np.nan]))[0])
    assert google > 0  # the vendored reference knows Google's resolver
    entries = [_entry("t1", "block", "asn", str(google))]
    assert override_reasons(EVENTS, entries).tolist()[5] is None  # no lookup: only given ASNs
    assert override_reasons(EVENTS, entries, asn_lookup=lookup).tolist()[5] == "tenant_blocklist"


def test_overrides_force_the_verdict_and_lead_the_reasons() -> None:
    scores = pd.DataFrame(
        {
            "is_bot": [False, True, True],
            "bot_score": [0.1, 0.9, 0.8],
            "reasons": [[], ["secs_since_delivery", "a", "b"], ["x"]],
            "top_reason": [None, "secs_since_delivery", "x"],
        }
    )
    reasons = np.array(["tenant_blocklist", "tenant_allowlist", None], dtype=object)
    out = apply_to_scores(scores, reasons)
    assert out["is_bot"].tolist() == [True, False, True]
    assert out["bot_score"].tolist() == [0.1, 0.9, 0.8]  # the model's score stays
    assert out["reasons"].tolist() == [
        ["tenant_blocklist"],
        ["tenant_allowlist", "secs_since_delivery", "a"],
        ["x"],
    ]
    assert out["top_reason"].tolist() == ["tenant_blocklist", "tenant_allowlist", "x"]
    assert scores["is_bot"].tolist() == [False, True, True]  # the input is not changed


def test_an_allowed_event_has_no_bot_kind() -> None:
    """PRODUCT.md: bot_kind is empty for people; an allow-listed scanner kept its kind in the
    scores table and the API answer. A blocked event keeps what the model said of its kind."""
    scores = pd.DataFrame(
        {
            "is_bot": [True, False, True],
            "reasons": [["a"], ["b"], ["c"]],
            "bot_kind": ["security_scanner", "", "link_preview"],
        }
    )
    reasons = np.array(["tenant_allowlist", "tenant_blocklist", None], dtype=object)
    out = apply_to_scores(scores, reasons)
    assert out["bot_kind"].tolist() == ["", "", "link_preview"]
    answers = [{"event_id": "e1", "is_bot": True, "reasons": ["a"], "bot_kind": "security_scanner"}]
    item = {"tenant_id": "t1", "event_id": "e1", "ip": "10.0.0.1", "asn": None}
    entry = _entry("t1", "allow", "ip", "10.0.0.1")
    got = apply_to_answers([{f: item.get(f) for f in ANSWER_FIELDS}], answers, [entry])
    assert got[0]["is_bot"] is False and got[0]["bot_kind"] == ""


def test_api_answers_carry_the_override_reason(world, tmp_path) -> None:
    items = [dict(i) for i in world["items"][:40]]
    target = next(i for i in items if i.get("ip"))
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    lists.add_entry(store, _entry(target["tenant_id"], "block", "ip", target["ip"]))
    lists.add_entry(store, _entry("someone-else", "allow", "ip", target["ip"]))
    state = MemoryState(history_s=35 * 86_400, burst_s=3600)
    runtime = Runtime(Settings(), world["model"], world["enrichers"], state)
    plain = runtime.score(items)
    runtime.lists = ListCache(lambda: store)
    forced = runtime.score(items)
    assert sum(i.get("ip") == target["ip"] for i in items) >= 1
    for item, before, after in zip(items, plain, forced, strict=True):
        if item.get("ip") == target["ip"]:
            assert after["is_bot"] is True and after["reasons"][0] == "tenant_blocklist"
            assert after["bot_score"] == before["bot_score"]
        else:
            assert after == before
    # a refused item (a tenant id that is no string) gets its error, the others their answers
    odd = runtime.score([{"tenant_id": {"x": 1}, "event_id": "z"}, items[0]])
    assert "error" in odd[0] and odd[1] == forced[0]
    # the state keeps the model's answers: without the lists the same events answer as before
    runtime.lists = None
    assert runtime.score(items) == plain
    assert apply_to_answers(items, plain, []) is plain


def test_api_lists_and_the_score_store_read_the_contracts_clean_values(world, tmp_path) -> None:
    """The list step and the score store read each event as the contract cleaned it. A user
    agent sent as a JSON object (the contract makes it text) made the list step raise, and the
    whole micro-batch, other tenants' requests included, got a 500; a padded tenant id passed
    the token's scope (trimmed) but skipped the tenant's block list and was stored padded."""
    target = next(dict(i) for i in world["items"] if i.get("ip"))
    tenant = target["tenant_id"]
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    lists.add_entry(store, _entry(tenant, "block", "user_agent", '{"x": 1}'))
    lists.add_entry(store, _entry(tenant, "block", "ip", target["ip"]))
    runtime = Runtime(Settings(), world["model"], world["enrichers"], MemoryState(86_400, 3600))
    runtime.lists = ListCache(lambda: store)
    recorded: list = []

    class Recorder:
        def record(self, events, answers, model) -> None:
            recorded.extend(events)

    runtime.recorder = Recorder()  # type: ignore[assignment]
    padded = {**target, "event_id": "padded", "tenant_id": f" {tenant} "}
    as_object = {**target, "event_id": "ua-object", "ip": None, "user_agent": {"x": 1}}
    # A later event of the tenant in the same request: the look-ahead windows of the others
    # have passed, so their answers are final and recorded (a provisional one is not).
    at = pd.Timestamp(target["occurred_at"]) + pd.Timedelta(seconds=LOOKAHEAD_S)
    later = {**target, "event_id": "later", "occurred_at": at.isoformat()}
    answers = runtime.score([padded, as_object, {"tenant_id": tenant, "event_id": "bad"}, later])
    assert [a["event_id"] for a in answers] == ["padded", "ua-object", "bad", "later"]
    assert answers[0]["is_bot"] is True and answers[0]["reasons"][0] == "tenant_blocklist"
    assert answers[1]["is_bot"] is True and answers[1]["reasons"][0] == "tenant_blocklist"
    assert "error" in answers[2]
    assert [e if e is None else e[0] for e in recorded] == [tenant, tenant, None, None]


# --- the console: storage, audit, queue, API, dry run, recompute ----------------------------


@pytest.fixture(scope="module")
def env(tmp_path_factory, console_env, console_cycle, console_now):
    with console_env(tmp_path_factory.mktemp("lists")) as values:
        yield {**values, "cycle": console_cycle, "now": console_now}


def api(env, token: str) -> TestClient:
    client = TestClient(env["app"])
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def test_storage_audits_every_change_and_queues_the_recompute(env) -> None:
    store: Store = env["store"]
    before = store.last_queue_id()
    entry = lists.build_entry("t3", "block", "domain", "Example.org", "test", "someone")
    stored, queued = lists.add_entry(store, entry)
    assert len(queued) == 2  # a recipient domain touches SMS too (the contract keeps it there)
    queue = store.queue().set_index("id")
    assert list(queue.loc[queued, "channel"]) == ["email", "sms"] and queued[0] > before
    assert "blocklist add domain example.org" in queue.loc[queued[0], "reason"]
    with pytest.raises(BotfilterError, match="already on the block list"):
        lists.add_entry(store, entry)
    changed, queued = lists.change_entry(store, "t3", stored.id, "other", expires_at=FUTURE)
    assert len(queued) == 2 and changed.expires_at == FUTURE
    with pytest.raises(LookupError):
        lists.delete_entry(store, "t1", stored.id, "intruder")  # another tenant's entry
    ip_queued = lists.delete_entry(store, "t3", stored.id, "other")
    trail = lists.audit(store, "t3")
    assert [a["action"] for a in trail] == ["delete", "change", "add"]
    assert [a["who"] for a in trail] == ["other", "other", "someone"]
    assert trail[0]["before"]["expires_at"] == "2100-01-01T00:00:00+00:00"
    assert trail[0]["after"] is None and trail[2]["before"] is None
    assert trail[1]["before"]["expires_at"] is None
    assert trail[0]["queue_ids"] == ip_queued
    assert all(a["who"] != "intruder" for a in lists.audit(store, "t1"))


def test_api_walls_validation_and_author(env) -> None:
    t1, t2, admin = api(env, env["t1"]), api(env, env["t2"]), api(env, env["admin"])
    body = {"list": "block", "kind": "ip", "value": "300.0.0.1"}
    bad = t1.post("/api/tenants/t1/lists", json=body)
    assert bad.status_code == 422 and "is not an IP address" in bad.json()["detail"]
    body = {"list": "allow", "kind": "asn", "value": "AS64511", "note": "office"}
    assert t1.post("/api/tenants/t2/lists", json=body).status_code == 404
    made = t1.post("/api/tenants/t1/lists", json=body)
    assert made.status_code == 201, made.text
    entry = made.json()["entry"]
    assert entry["author"] == f"token:{env['t1_id']}" and entry["value"] == "64511"
    assert len(made.json()["queue_ids"]) == 2
    assert t1.post("/api/tenants/t1/lists", json=body).status_code == 409
    eid = entry["id"]
    assert t2.get("/api/tenants/t1/lists").status_code == 404
    assert t2.delete(f"/api/tenants/t2/lists/{eid}").status_code == 404  # t1's entry
    assert t2.patch(f"/api/tenants/t2/lists/{eid}", json={}).status_code == 404
    assert [e["id"] for e in admin.get("/api/tenants/t1/lists").json()["entries"]] == [eid]
    late = t1.patch(f"/api/tenants/t1/lists/{eid}", json={"expires_at": "2001-01-01"})
    assert late.status_code == 422 and "in the past" in late.json()["detail"]
    ok = t1.patch(f"/api/tenants/t1/lists/{eid}", json={"expires_at": "2099-05-01"})
    assert ok.json()["entry"]["expires_at"] == "2099-05-01T00:00:00+00:00"
    assert t1.delete(f"/api/tenants/t1/lists/{eid}").json()["deleted"] == eid
    trail = t1.get("/api/tenants/t1/lists/audit").json()["audit"]
    assert [a["action"] for a in trail[:3]] == ["delete", "change", "add"]
    assert "/api/tenants/{tenant}/lists" in TestClient(env["app"]).get("/api/openapi.json").text


def test_api_answers_odd_ids_and_text_with_one_line_not_a_500(env) -> None:
    """An entry id past 64 bits was a 500 (SQLite: OverflowError; PostgreSQL too), and so were
    a NUL in a path or in a note on PostgreSQL: an unknown entry or key is a 404, a note with
    a control character a 422."""
    t1 = api(env, env["t1"])
    for huge in ("99999999999999999999999", str(2**63)):
        assert t1.delete(f"/api/tenants/t1/lists/{huge}").status_code == 404
        assert t1.patch(f"/api/tenants/t1/lists/{huge}", json={}).status_code == 404
    assert t1.get("/api/tenants/t1/campaigns/%00/bot-interactions").status_code == 404
    body = {"list": "block", "kind": "ip", "value": "192.0.2.77", "note": "a\u0000b"}
    bad = t1.post("/api/tenants/t1/lists", json=body)
    assert bad.status_code == 422 and "control characters" in bad.json()["detail"]
    # the login page's alert never shows text a link brought
    page = TestClient(env["app"]).get("/login?error=Call+0800+now")
    assert page.status_code == 200 and "0800" not in page.text


def _blocked_counts(env, ip: str) -> dict[str, int]:
    """Counted window events (delivered messages sent since the window's first day, before
    the recompute's as-of) from ``ip`` that the stored scores call people, by channel, read
    from the data directory (the console reads the store)."""
    import contract

    data = contract.load(env["data"])
    m = data.messages.loc[data.messages["tenant_id"] == "t1"]
    e = data.events.loc[data.events["tenant_id"] == "t1"]
    events = e.merge(m[["message_id", "channel", "sent_at", "delivered_at"]], on="message_id")
    scores = env["store"].load_scores(["t1"], "labels")
    human = ~events["event_id"].isin(scores.loc[scores["is_bot"], "event_id"])
    now = env["now"]
    since = pd.Timestamp(now - pd.Timedelta(days=30)).floor("D")
    sent = events["sent_at"]
    mine = (events["ip"] == ip) & human & (sent >= since) & (sent < now)
    mine &= events["delivered_at"].notna() & (events["occurred_at"] < now)
    return events.loc[mine, "channel"].value_counts().to_dict()


def test_dry_run_then_recompute_agree(env) -> None:
    t1 = api(env, env["t1"])
    t1.put("/api/tenants/t1/settings", json={"email": True, "sms": True})
    env["cycle"](env["store"], env["settings"], env["data"])
    body = {"list": "block", "kind": "ip", "value": "8.8.8.8", "note": "resolver"}
    dry = t1.post("/api/tenants/t1/lists/dry-run", json=body).json()
    expected = _blocked_counts(env, "8.8.8.8")
    for channel in ("email", "sms"):
        c = dry["channels"][channel]
        assert sum(c["to_bot"].values()) == expected.get(channel, 0), channel
        assert sum(c["to_person"].values()) == 0
    assert dry["changed"] == sum(expected.values()) > 0
    assert t1.get("/api/tenants/t1/lists").json()["entries"] == []  # nothing saved
    t1.post("/api/tenants/t1/lists", json=body)
    env["cycle"](env["store"], env["settings"], env["data"])
    stored = t1.get("/api/tenants/t1/settings/preview").json()["channels"]
    for channel in ("email", "sms"):
        after = dry["channels"][channel]["after"]
        now = stored[channel]["before"]
        assert now["clicks_unique"] == after["clicks_unique"], channel
        assert now["delivered"] == dry["channels"][channel]["delivered"], channel
        if channel == "email":
            assert now["opens_unique"] == after["opens_unique"]
            assert now["open_rate"] == pytest.approx(after["open_rate"])
    drill = t1.get("/api/tenants/t1/campaigns/c1/bot-interactions").json()["rows"]
    blocked = [r for r in drill if r["network"].endswith("8.8.8.0/24")]
    assert blocked and all(r["reasons"].startswith("on this account's block list") for r in blocked)


def test_lists_page_add_dry_run_delete(env) -> None:
    client = TestClient(env["app"])
    page = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    client.post("/login", data={"token": env["t2"], "csrf": csrf})
    page = client.get("/t/t2/lists")
    assert page.status_code == 200 and "No entries yet." in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    form = {"list": "block", "kind": "user_agent", "value": "python-requests", "csrf": csrf}
    assert client.post("/t/t2/lists", data={**form, "csrf": "forged"}).status_code == 403
    dry = client.post("/t/t2/lists/dry-run", data=form)
    assert dry.status_code == 200 and 'id="dryrun"' in dry.text
    bad = client.post("/t/t2/lists/dry-run", data={**form, "kind": "ip"})
    assert bad.status_code == 422 and "is not an IP address" in bad.text
    done = client.post("/t/t2/lists", data=form, follow_redirects=False)
    assert done.status_code == 303
    page = client.get("/t/t2/lists").text
    assert "python-requests" in page and f"token:{env['t2_id']}" in page
    eid = int(re.search(r'data-entry="(\d+)"', page).group(1))
    assert client.get("/t/t1/lists").status_code == 404
    assert client.post(f"/t/t1/lists/{eid}/delete", data={"csrf": csrf}).status_code == 404
    assert client.get("/model").status_code == 404  # admin only
    client.post(f"/t/t2/lists/{eid}/delete", data={"csrf": csrf})
    assert "No entries yet." in client.get("/t/t2/lists").text


def test_model_page_is_admin_only(env) -> None:
    assert api(env, env["t1"]).get("/api/model").status_code == 404
    info = api(env, env["admin"]).get("/api/model").json()
    assert info["champion"] is None  # nothing registered in this home
