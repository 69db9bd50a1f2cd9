"""The management API and pages on a tiny store, through starlette's TestClient."""

from __future__ import annotations

import contextlib
import csv
import io
import re
from typing import Any
from urllib.parse import unquote

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from console import service
from console.reasons import phrase


@pytest.fixture(
    scope="module",
    params=[
        "sqlite",
        pytest.param("postgres", marks=[pytest.mark.integration, pytest.mark.postgres]),
    ],
)
def env(request: pytest.FixtureRequest, console_env, pg_schema, tmp_path_factory):
    """The console world on a SQLite store, and (integration tier) on a PostgreSQL schema."""
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(pg_schema()) if request.param == "postgres" else None
        values = stack.enter_context(console_env(tmp_path_factory.mktemp("console"), url=url))
        assert values["store"].dialect == ("postgresql" if url else "sqlite")
        yield values


def api(env, token):
    client = TestClient(env["app"])
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def login(env, token) -> TestClient:
    client = TestClient(env["app"])
    page = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    resp = client.post("/login", data={"token": token, "csrf": csrf}, follow_redirects=False)
    assert resp.status_code == 303
    return client


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def _email_on(client: Any, path: str, page: str) -> Any:
    """Submit a settings page's form (``page``, the HTML) with email switched on."""
    data = {"csrf": csrf_of(page), "email_shown": "1", "sms_shown": "1", "email": "on"}
    return client.post(path, data=data, follow_redirects=False)


def test_api_needs_a_token(env) -> None:
    client = TestClient(env["app"])
    assert client.get("/api/tenants/t1/settings").status_code == 401
    bad = api(env, "bf_not-a-token")
    assert bad.get("/api/tenants/t1/settings").status_code == 401


def test_tenant_isolation_and_admin(env) -> None:
    t1 = api(env, env["t1"])
    assert t1.get("/api/tenants").json() == {"tenants": ["t1"]}
    assert t1.get("/api/tenants/t1/settings").json() == {"email": False, "sms": False}
    for path in (
        "settings",
        "settings/history",
        "settings/status",
        "settings/preview?email=on",
        "metrics/campaigns",
        "campaigns/c1/bot-interactions",
    ):
        assert t1.get(f"/api/tenants/t2/{path}").status_code == 404, path
    assert t1.put("/api/tenants/t2/settings", json={"email": True}).status_code == 404
    # an unknown tenant answers exactly like a forbidden one
    assert t1.get("/api/tenants/nobody/settings").status_code == 404
    admin = api(env, env["admin"])
    assert admin.get("/api/tenants").json() == {"tenants": ["t1", "t2", "t3"]}
    assert admin.get("/api/tenants/t2/metrics/campaigns").status_code == 200
    assert admin.get("/api/tenants/nobody/settings").status_code == 404


def test_pages_are_tenant_walled(env) -> None:
    client = login(env, env["t1"])
    assert client.get("/t/t1/settings").status_code == 200
    for page in ("settings", "dashboard", "campaigns", "campaigns/c1", "status"):
        assert client.get(f"/t/t2/{page}").status_code == 404, page
    anonymous = TestClient(env["app"])
    resp = anonymous.get("/t/t1/settings", follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/login"


def test_login_rejects_a_bad_token_and_forms_need_csrf(env) -> None:
    client = TestClient(env["app"])
    csrf = csrf_of(client.get("/login").text)
    assert client.post("/login", data={"token": "bf_wrong", "csrf": csrf}).status_code == 401
    # no CSRF token: refused even with a valid API token
    assert client.post("/login", data={"token": env["t1"]}).status_code == 403
    other = TestClient(env["app"])
    assert other.post("/login", data={"token": env["t1"], "csrf": csrf}).status_code == 403
    logged = login(env, env["t1"])
    before = api(env, env["t1"]).get("/api/tenants/t1/settings").json()
    resp = logged.post("/t/t1/settings", data={"email_shown": "1", "email": "on"})
    assert resp.status_code == 403
    resp = logged.post("/t/t1/settings", data={"email_shown": "1", "email": "on", "csrf": "x"})
    assert resp.status_code == 403
    assert api(env, env["t1"]).get("/api/tenants/t1/settings").json() == before


def test_preview_equals_the_recompute_afterwards(console_cycle, env) -> None:
    client = api(env, env["admin"])
    preview = client.get("/api/tenants/t3/settings/preview?email=on&sms=on").json()
    email = preview["channels"]["email"]
    assert email["opens_excluded"] > 0 and email["clicks_excluded"] > 0
    assert email["after"]["open_rate"] < email["before"]["open_rate"]
    # SMS has no opens: empty, as the metrics say, not 0 and a 0% open rate
    sms = preview["channels"]["sms"]
    assert sms["before"]["delivered"] > 0 and sms["opens_excluded"] is None
    for side in ("before", "after"):
        assert sms[side]["opens_unique"] is None and sms[side]["open_rate"] is None
        assert sms[side]["ctr"] is not None
        for module in preview["modules"].values():
            assert module["sms"][side]["open_rate"] is None
    before_rows = client.get("/api/tenants/t3/metrics/campaigns").json()["rows"]
    resp = client.put("/api/tenants/t3/settings", json={"email": True, "sms": True})
    assert resp.status_code == 200 and len(resp.json()["changes"]) == 2
    states = [
        s["state"] for s in client.get("/api/tenants/t3/settings/status").json()["recomputes"]
    ]
    assert states == ["queued", "queued"]
    assert console_cycle(env["store"], env["settings"], env["data"]).status == "succeeded"
    status = client.get("/api/tenants/t3/settings/status").json()["recomputes"]
    assert [s["state"] for s in status] == ["done", "done"]
    assert all(s["started_at"] and s["done_at"] >= s["queued_at"] for s in status)
    history = client.get("/api/tenants/t3/settings/history").json()["history"]
    assert {(h["channel"], h["from"], h["to"], h["who"]) for h in history} == {
        ("email", False, True, f"token:{env['admin_id']}"),  # off, as SMS: one change
        ("sms", False, True, f"token:{env['admin_id']}"),
    }
    # the numbers the preview promised are the ones the store now shows, module by module
    after = client.get("/api/tenants/t3/settings/preview").json()
    for module, channels in preview["modules"].items():
        for channel, sides in channels.items():
            assert after["modules"][module][channel]["before"] == sides["after"], (module, channel)
    for channel in ("email", "sms"):
        assert after["channels"][channel]["before"] == preview["channels"][channel]["after"]
    rows = client.get("/api/tenants/t3/metrics/campaigns").json()["rows"]
    assert len(rows) == len(before_rows) and all(r["bot_filter_applied"] for r in rows)
    assert all(r["ctr"] == r["ctr_human"] for r in rows)


def test_put_settings_rejects_bad_input_in_one_line(env) -> None:
    client = api(env, env["t1"])
    assert client.put("/api/tenants/t1/settings", json={}).status_code == 400
    assert client.put("/api/tenants/t1/settings", json={"email": "maybe"}).status_code == 422
    resp = client.get("/api/tenants/t1/settings/preview?email=perhaps")
    assert resp.status_code == 400 and resp.json() == {
        "detail": "email must be on or off, not 'perhaps'"
    }
    assert client.get("/api/tenants/t1/metrics/contacts").status_code == 400


def test_metrics_have_both_sides_and_bot_share(env) -> None:
    rows = api(env, env["t1"]).get("/api/tenants/t1/metrics/campaigns").json()["rows"]
    assert rows and {r["tenant_id"] for r in rows} == {"t1"}
    for r in rows:
        all_events = (r["opens_total_all"] or 0) + r["clicks_total_all"]
        human = (r["opens_total_human"] or 0) + r["clicks_total_human"]
        if all_events:
            assert r["bot_share"] == pytest.approx((all_events - human) / all_events)
    daily = api(env, env["t1"]).get("/api/tenants/t1/metrics/dashboard").json()["rows"]
    assert daily and "date" in daily[0]


def test_bot_interactions_and_csv(env) -> None:
    client = api(env, env["t1"])
    rows = client.get("/api/tenants/t1/campaigns/c1/bot-interactions").json()["rows"]
    assert len(rows) >= 3
    assert {r["reasons"] for r in rows} == {
        f"{phrase('secs_since_delivery')}; {phrase('click_without_open')}"
    }
    assert all(r["bot_score"] == 0.95 for r in rows)
    families = {r["user_agent_family"] for r in rows}
    assert families <= {"Chrome", "Python Requests", "Googlebot"} and len(families) > 1
    # network: the vendored ASN table's answer and the /24 or /48 of each event's address
    events = pd.read_parquet(env["data"] / "events.parquet").set_index("event_id")
    expected = {
        "8.8.8.8": "AS15169 8.8.8.0/24",
        "40.94.12.7": "AS8075 40.94.12.0/24",
        "203.0.113.9": "203.0.113.0/24",
        "2001:db8::1": "2001:db8::/48",
    }
    every = [
        r
        for c in range(12)
        for r in client.get(f"/api/tenants/t1/campaigns/c{c}/bot-interactions").json()["rows"]
    ]
    assert [r["network"] for r in every] == [
        expected[events.at[r["event_id"], "ip"]] for r in every
    ]
    assert {r["network"] for r in every} == set(expected.values())
    times = [r["occurred_at"] for r in rows]
    assert times == sorted(times, reverse=True)
    text = client.get("/api/tenants/t1/campaigns/c1/bot-interactions?format=csv").text
    table = list(csv.DictReader(io.StringIO(text)))
    assert [r["event_id"] for r in table] == [r["event_id"] for r in rows]
    assert list(table[0]) == list(service.DRILL_COLUMNS)
    # the page's CSV is the same file
    page = login(env, env["t1"]).get("/t/t1/campaigns/c1/bot-interactions.csv")
    assert page.text == text


def test_drill_down_equals_the_data_directory(env, console_now) -> None:
    """Every campaign's and automation's drill-down, read from the stored window events, is
    exactly the bot events the data directory and the stored scores give for the window."""
    import contract

    data = contract.load(env["data"])
    m = data.messages.loc[data.messages["tenant_id"] == "t1"]
    start = (console_now - pd.Timedelta(days=30)).floor("D")
    m = m.loc[(m["sent_at"] >= start) & (m["sent_at"] < console_now)]
    e = data.events.loc[data.events["tenant_id"] == "t1"]
    e = e.loc[e["occurred_at"] < console_now].merge(m, on="message_id")
    e = e.loc[e["delivered_at"].notna()]  # only events of delivered messages count (PRODUCT.md)
    scores = env["store"].load_scores(["t1"], "labels").set_index("event_id")
    e = e.loc[e["event_id"].map(scores["is_bot"]).fillna(False).astype(bool)]
    client = api(env, env["t1"])
    compared = 0
    for module, column in service.DRILL_KEYS.items():
        for key in sorted(m[column].dropna().unique()):
            rows = client.get(f"/api/tenants/t1/{module}/{key}/bot-interactions").json()["rows"]
            mine = e.loc[e[column] == key].sort_values(
                ["occurred_at", "event_id"], ascending=[False, True]
            )
            assert [r["event_id"] for r in rows] == mine["event_id"].tolist(), (module, key)
            assert [r["message_id"] for r in rows] == mine["message_id"].tolist()
            assert [r["type"] for r in rows] == mine["type"].tolist()
            assert [r["bot_score"] for r in rows] == scores.loc[
                mine["event_id"], "bot_score"
            ].round(4).tolist()
            stamps = mine["occurred_at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ").tolist()
            assert [r["occurred_at"] for r in rows] == stamps
            compared += len(rows)
    assert compared > 20


def test_an_old_store_gets_the_window_events_table(tmp_path) -> None:
    from sqlalchemy import inspect

    from jobs.store import Store

    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = Store(url)
    with store.write() as conn:
        conn.exec_driver_sql("DROP TABLE window_events")
    store.close()
    again = Store(url)
    with again.read() as conn:
        assert "window_events" in inspect(conn).get_table_names()
    assert again.window_events("t1").empty
    again.close()


def test_pages_render(env) -> None:
    client = login(env, env["t1"])
    for page in (
        "settings",
        "dashboard",
        "campaigns",
        "automations",
        "segments",
        "campaigns/c1",
        "status",
        "preview?email=on",
    ):
        resp = client.get(f"/t/t1/{page}")
        assert resp.status_code == 200, page
    html = client.get("/t/t1/campaigns?sort=ctr_human&desc=0").text
    assert "CTR (without bots) ▲" in html
    assert "<svg" in client.get("/t/t1/dashboard").text
    docs = client.get("/api/docs")
    assert docs.status_code == 200 and "/api/tenants/{tenant}/settings/preview" in docs.text
    assert "cdn" not in docs.text.lower() and "<script" not in docs.text
    assert (
        "/api/tenants/{tenant}/settings/preview" in client.get("/api/openapi.json").json()["paths"]
    )


def test_toggle_through_the_page_queues_the_recompute(env) -> None:
    client = login(env, env["t1"])
    csrf = csrf_of(client.get("/t/t1/settings").text)
    resp = client.post(
        "/t/t1/settings",
        data={"csrf": csrf, "email_shown": "1", "sms_shown": "1", "sms": "on"},
        follow_redirects=False,
    )
    assert resp.status_code == 303
    assert api(env, env["t1"]).get("/api/tenants/t1/settings").json() == {
        "email": False,
        "sms": True,
    }
    history = api(env, env["t1"]).get("/api/tenants/t1/settings/history").json()["history"]
    who = f"token:{env['t1_id']}"
    assert (history[0]["channel"], history[0]["to"], history[0]["who"]) == ("sms", True, who)
    assert "queued" in client.get("/t/t1/status").text


def test_authors_of_changes(env) -> None:
    from console.auth import Auth
    from core.tokens import TokenStore, hash_token

    tokens = TokenStore(env["store"].url)
    auth = Auth(tokens, static="env-admin-token")
    assert auth.who(hash_token("env-admin-token")) == "env-admin"
    assert auth.scope_of_token("env-admin-token").admin
    assert auth.who(hash_token(env["t2"])) == f"token:{env['t2_id']}"
    assert auth.who(hash_token("bf_unknown")) == "unknown"
    tokens.close()


def _daily(dates: list[str]) -> pd.DataFrame:
    n = len(dates)
    return pd.DataFrame(
        {
            "date": dates,
            "channel": ["email"] * n,
            "opens_total_all": [10] * n,
            "clicks_total_all": [2] * n,
            "opens_total_human": [6] * n,
            "clicks_total_human": [1] * n,
        }
    )


def test_chart_marks_a_change_made_after_the_last_counted_day() -> None:
    """CI at 01:55 UTC: the filter was switched today, before today's first interaction, and
    the dashboard drew no marker (the change fell after the chart's last day)."""
    from console.charts import daily_svg

    change = {"channel": "email", "to": True, "changed_at": "2026-12-03T01:55:00+00:00"}
    svg = daily_svg(_daily(["2026-12-01", "2026-12-02"]), "email", [change])
    assert svg.count('class="marker"') == 1
    assert "filter on on 2026-12-03" in svg
    assert svg.count("<g><title>") == 3  # the change's day is on the axis, with no bars
    assert "2026-12-03: 0 human, 0 bot" in svg


def test_chart_days_without_interactions_keep_their_place() -> None:
    from console.charts import daily_svg

    svg = daily_svg(_daily(["2026-12-01", "2026-12-04"]), "email", [])
    titles = re.findall(r"<g><title>([^<]*)</title>", svg)
    assert titles == [
        "2026-12-01: 7 human, 5 bot",
        "2026-12-02: 0 human, 0 bot",
        "2026-12-03: 0 human, 0 bot",
        "2026-12-04: 7 human, 5 bot",
    ]
    before = {"channel": "email", "to": False, "changed_at": "2026-11-30T23:00:00+00:00"}
    other = {"channel": "sms", "to": True, "changed_at": "2026-12-02T10:00:00+00:00"}
    assert 'class="marker"' not in daily_svg(_daily(["2026-12-01"]), "email", [before, other])


def test_links_forms_and_redirects_escape_the_tenant_id(console_env, tmp_path) -> None:
    """A tenant id is written into page links as one escaped path segment. Raw, tenant
    ``T%41``'s link opened tenant ``TA``'s page on a real server, and its settings form switched
    TA's filter; ``x?y``'s link named tenant ``x``. (Starlette's test client decodes a path
    twice, so ``%`` itself cannot be shown through it: ``?`` stands in.)"""
    from jobs.exclusions import set_exclusions

    with console_env(tmp_path) as env:
        for tenant in ("x?y", "x", "T%41"):
            set_exclusions(env["store"], tenant, {"email": False, "sms": False}, source="test")
        client = login(env, env["admin"])
        home = client.get("/").text
        assert 'href="/t/x%3Fy/settings"' in home and 'href="/t/T%2541/settings"' in home
        page = client.get("/t/x%3Fy/settings").text
        assert "Settings · x?y" in page and 'action="/t/x%3Fy/settings"' in page
        resp = client.post(
            "/t/x%3Fy/settings",
            data={"csrf": csrf_of(page), "email_shown": "1", "sms_shown": "1", "email": "on"},
            follow_redirects=False,
        )
        assert resp.status_code == 303 and resp.headers["location"] == "/t/x%3Fy/settings"
        admin = api(env, env["admin"])
        assert admin.get("/api/tenants/x%3Fy/settings").json() == {"email": True, "sms": False}
        assert admin.get("/api/tenants/x/settings").json() == {"email": False, "sms": False}


def test_logout_ends_the_session_for_every_copy_of_its_cookie(env) -> None:
    """The audit: a cookie copied before logout still opened and changed the tenant's pages."""
    client = login(env, env["t1"])
    page = client.get("/t/t1/settings")
    assert page.status_code == 200
    copy = TestClient(env["app"])
    copy.cookies.update(client.cookies)
    assert copy.get("/t/t1/settings", follow_redirects=False).status_code == 200
    client.post("/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert copy.get("/t/t1/settings", follow_redirects=False).status_code in (303, 307)
    resp = copy.post(
        "/t/t1/settings",
        data={"csrf": csrf_of(page.text), "email_shown": "1", "email": "on"},
        follow_redirects=False,
    )
    assert resp.status_code in (303, 307) and resp.headers["location"].endswith("/login")
    assert api(env, env["t1"]).get("/api/tenants/t1/settings").json()["email"] is False


def test_a_toggle_changes_only_the_channel_switched_on_the_page(env) -> None:
    """The audit: the form posted both switches, so confirming email undid an SMS change made
    elsewhere after the page loaded, without its confirmation."""
    client = login(env, env["t1"])
    before = api(env, env["t1"]).get("/api/tenants/t1/settings").json()
    page = client.get("/t/t1/settings").text
    word = {True: "on", False: "off"}
    assert f'name="sms_was" value="{word[before["sms"]]}"' in page
    api(env, env["t1"]).put("/api/tenants/t1/settings", json={"sms": not before["sms"]})
    form = {"csrf": csrf_of(page), "email_shown": "1", "sms_shown": "1"}
    form |= {"email_was": word[before["email"]], "sms_was": word[before["sms"]]}
    if not before["email"]:  # the page as it was: email switched, sms as shown
        form["email"] = "on"
    if before["sms"]:
        form["sms"] = "on"
    assert client.post("/t/t1/settings", data=form, follow_redirects=False).status_code == 303
    after = api(env, env["t1"]).get("/api/tenants/t1/settings").json()
    assert after == {"email": not before["email"], "sms": not before["sms"]}


def test_a_csrf_field_that_is_not_ascii_is_refused_not_a_500(env) -> None:
    client = TestClient(env["app"], raise_server_exceptions=False)
    client.get("/login")
    resp = client.post("/login", data={"csrf": "é", "token": "x"})
    assert resp.status_code == 403


def test_drill_down_lists_only_events_of_delivered_messages(tmp_path) -> None:
    """The audit: bot events of undelivered messages were listed, so the drill-down's total
    disagreed with the metrics (PRODUCT.md: only events of delivered messages count)."""
    from console import service
    from jobs.store import Store

    at = pd.Timestamp("2026-10-01T00:00:00Z")
    events = pd.DataFrame(
        {
            "event_id": ["e1", "e2", "e3"],
            "message_id": ["m1", "m2", "m3"],
            "type": ["click"] * 3,
            "occurred_at": [at, at, at],
            "is_bot": [True, True, False],
            "bot_score": [0.9, 0.9, 0.1],
            "reasons": [["secs_since_delivery"]] * 3,
            "bot_kind": ["security_scanner", "security_scanner", ""],
            "delivered": [True, False, True],
            "ip": ["8.8.8.8"] * 3,
            "user_agent": ["python-requests/2.31"] * 3,
        }
    )

    class Source:
        def events_of(self, store, tenant, module, key):  # noqa: ANN001, ANN202
            return events

    store = Store(f"sqlite:///{tmp_path / 'metrics.db'}")
    try:
        rows = service.bot_interactions(store, Source(), "t1", "campaigns", "c1")
    finally:
        store.close()
    assert rows["event_id"].tolist() == ["e1"]


def test_a_store_that_cannot_be_reached_is_a_503_that_says_so(env, monkeypatch) -> None:
    """The store going away (a restart, a network cut) was a bare "Internal Server Error" on
    every page and API call; now a 503 in one line, asking to retry, and nothing of the query."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    page = login(env, env["t1"])
    token = api(env, env["t1"])

    def away(*_):  # noqa: ANN002, ANN202
        raise OperationalError("SELECT tenant_id FROM settings", {}, ConnectionRefusedError(111))

    monkeypatch.setattr(service, "tenants", away)
    page = TestClient(env["app"], raise_server_exceptions=False, cookies=page.cookies)
    resp = page.get("/")
    assert resp.status_code == 503 and resp.headers["retry-after"] == "30"
    assert "The metrics store cannot be reached" in resp.text and "SELECT" not in resp.text
    assert resp.headers["content-type"].startswith("text/html")
    token = TestClient(env["app"], raise_server_exceptions=False, headers=token.headers)
    resp = token.get("/api/tenants")
    assert resp.status_code == 503
    assert resp.json() == {"detail": "the metrics store cannot be reached; try again shortly"}

    def bug(*_):  # noqa: ANN002, ANN202
        raise ProgrammingError("SELECT nope FROM settings", {}, Exception("no such column"))

    monkeypatch.setattr(service, "tenants", bug)  # a bug, not the store away: stays a 500
    assert token.get("/api/tenants").status_code == 500


def test_ids_holding_a_slash_open_their_own_pages(console_env, tmp_path) -> None:
    """An id is data and may hold "/" (a campaign "2026/spring", a tenant "eu/acme"): its links
    carry it as %2F, which the server decoded into two path segments, so every page and API
    call of that tenant or campaign was a 404."""
    from jobs.exclusions import set_exclusions

    with console_env(tmp_path) as env:
        for tenant in ("eu/acme", "eu"):
            set_exclusions(env["store"], tenant, {"email": False, "sms": False}, source="test")
        client = login(env, env["admin"])
        assert 'href="/t/eu%2Facme/settings"' in client.get("/").text
        page = client.get("/t/eu%2Facme/settings")
        assert page.status_code == 200 and "Settings · eu/acme" in page.text
        resp = _email_on(client, "/t/eu%2Facme/settings", page.text)
        assert resp.status_code == 303 and resp.headers["location"] == "/t/eu%2Facme/settings"
        admin = api(env, env["admin"])
        assert admin.get("/api/tenants/eu%2Facme/settings").json() == {"email": True, "sms": False}
        assert admin.get("/api/tenants/eu/settings").json() == {"email": False, "sms": False}
        assert admin.get("/api/tenants/eu/acme/settings").status_code == 404  # not the same


def _alert(html: str) -> str:
    """The one line an error page says."""
    return re.search(r'<p class="error" role="alert">([^<]*)</p>', html).group(1)


def test_csv_downloads_of_ids_in_any_letters(console_env, tmp_path) -> None:
    """The audit: a campaign "日本" or "Łódź" (or a tenant so named) made the CSV download a 500
    (UnicodeEncodeError: the file name went into Content-Disposition, which is Latin-1).
    Non-ASCII names now go in ``filename*`` (RFC 6266/5987), with an ASCII ``filename``."""
    from jobs.exclusions import set_exclusions

    with console_env(tmp_path) as env:
        set_exclusions(env["store"], "Łódź", {"email": False, "sms": False}, source="test")
        admin = api(env, env["admin"])
        resp = admin.get("/api/tenants/t1/campaigns/%E6%97%A5%E6%9C%AC/bot-interactions?format=csv")
        assert resp.status_code == 200
        assert resp.text.splitlines() == [",".join(service.DRILL_COLUMNS)]
        assert resp.headers["content-disposition"] == (
            'attachment; filename="t1-__-bot-interactions.csv"; '
            "filename*=UTF-8''t1-%E6%97%A5%E6%9C%AC-bot-interactions.csv"
        )
        page = login(env, env["admin"]).get(
            "/t/%C5%81%C3%B3d%C5%BA/campaigns/c1/bot-interactions.csv"
        )
        assert page.status_code == 200
        assert page.headers["content-disposition"] == (
            'attachment; filename="__d_-c1-bot-interactions.csv"; '
            "filename*=UTF-8''%C5%81%C3%B3d%C5%BA-c1-bot-interactions.csv"
        )
        # an ASCII name keeps the header it had
        plain = admin.get("/api/tenants/t1/campaigns/c1/bot-interactions?format=csv")
        assert plain.headers["content-disposition"] == (
            'attachment; filename="t1-c1-bot-interactions.csv"'
        )


def test_text_with_a_lone_surrogate_is_a_422_in_one_line(console_env, tmp_path) -> None:
    """The audit: JSON's ``\\ud800`` escape put a lone surrogate, which is not text UTF-8 can
    carry, in a list entry's value or note: the dry run, the add and the note's change were
    500s (``surrogates not allowed``) instead of a one-line 422."""
    with console_env(tmp_path) as env:
        client = api(env, env["t1"])
        made = client.post(
            "/api/tenants/t1/lists", json={"list": "block", "kind": "user_agent", "value": "abcd"}
        )
        entry = made.json()["entry"]["id"]
        as_json = {"content-type": "application/json"}
        for method, path, body, said in (
            (
                "POST",
                "lists/dry-run",
                '{"list":"block","kind":"user_agent","value":"ab\\ud800cd"}',
                "value: a lone surrogate (U+D800) is not text",
            ),
            (
                "POST",
                "lists",
                '{"list":"block","kind":"user_agent","value":"abcde","note":"x\\ud800"}',
                "note: a lone surrogate (U+D800) is not text",
            ),
            (
                "PATCH",
                f"lists/{entry}",
                '{"note":"y\\udfff"}',
                "note: a lone surrogate (U+DFFF) is not text",
            ),
        ):
            resp = client.request(method, f"/api/tenants/t1/{path}", content=body, headers=as_json)
            assert (resp.status_code, resp.json()) == (422, {"detail": said}), path
        entries = client.get("/api/tenants/t1/lists").json()["entries"]
        assert [(e["value"], e["note"]) for e in entries] == [("abcd", "")]


def test_segments_are_lossless_and_never_dot_segments() -> None:
    """An id "." or ".." written into a link was a dot segment, which browsers collapse (and
    by the WHATWG URL spec "%2e%2e" too): such an id, and one starting with "~", gets one
    leading "~", which the ``seg`` convertor strips; other ids are written as before."""
    from console.app import _Segment, _segment

    written = {
        ".": "~.",
        "..": "~..",
        "~": "~~",
        "~x": "~~x",
        "~..": "~~..",
        "...": "...",
        "a~": "a~",
        "c1": "c1",
        "eu/acme": "eu%2Facme",
        "日本": "%E6%97%A5%E6%9C%AC",
    }
    assert {i: _segment(i) for i in written} == written
    seg = _Segment()
    for i, link in written.items():
        # as _SlashesInSegments hands the segment on: decoded but for "%" and "/"
        routed = unquote(link).replace("%", "%25").replace("/", "%2F")
        assert seg.convert(routed) == i and seg.to_string(i) == link


def test_ids_that_are_dot_segments_open_their_own_pages(console_env, tmp_path, monkeypatch) -> None:
    """The audit: tenant ".." was sent after login to /t/../settings, which the browser opened
    as /settings (a 404), so it could use no page; campaign ".."'s link was /t/t1/campaigns/..
    and automation "."'s the automations list."""
    from core.tokens import TokenStore
    from jobs.exclusions import set_exclusions

    with console_env(tmp_path) as env:
        for tenant in ("..", ".", "~x"):
            set_exclusions(env["store"], tenant, {"email": False, "sms": False}, source="test")
        tokens = TokenStore(env["store"].url)
        dots = tokens.create([".."])[0]
        tokens.close()
        client = TestClient(env["app"])
        csrf = csrf_of(client.get("/login").text)
        resp = client.post("/login", data={"token": dots, "csrf": csrf}, follow_redirects=False)
        resp = client.get(resp.headers["location"], follow_redirects=False)
        assert resp.status_code == 303 and resp.headers["location"] == "/t/~../settings"
        page = client.get("/t/~../settings")
        assert page.status_code == 200 and "Settings · .." in page.text
        assert 'action="/t/~../settings"' in page.text and 'href="/t/~../campaigns"' in page.text
        resp = _email_on(client, "/t/~../settings", page.text)
        assert resp.status_code == 303 and resp.headers["location"] == "/t/~../settings"
        admin = login(env, env["admin"])
        home = admin.get("/").text
        for link in ("~.", "~..", "~~x", "t1"):
            assert f'href="/t/{link}/settings"' in home, link
        assert "tenant <b>~x</b>" in admin.get("/t/~~x/settings").text
        assert "tenant <b>.</b>" in admin.get("/t/~./settings").text
        token = api(env, env["admin"])
        assert token.get("/api/tenants/~../settings").json() == {"email": True, "sms": False}
        assert token.get("/api/tenants/~./settings").json() == {"email": False, "sms": False}
        assert token.get("/api/tenants/~x/settings").status_code == 404  # that is tenant "x"
        # a campaign or automation id goes the same way, and reaches the store as it is
        asked = []
        real = service.bot_interactions

        def spy(store, data, tenant, module, key):  # noqa: ANN001, ANN202
            asked.append((tenant, module, key))
            return real(store, data, tenant, module, "c1")

        monkeypatch.setattr(service, "bot_interactions", spy)
        drill = admin.get("/t/t1/campaigns/~..")
        assert drill.status_code == 200 and "Bot interactions of campaign ..<" in drill.text
        assert 'href="/t/t1/campaigns/~../bot-interactions.csv"' in drill.text
        assert admin.get("/t/t1/automations/~./bot-interactions.csv").status_code == 200
        assert token.get("/api/tenants/t1/campaigns/~~x/bot-interactions").status_code == 200
        assert asked == [
            ("t1", "campaigns", ".."),
            ("t1", "automations", "."),
            ("t1", "campaigns", "~x"),
        ]


def test_api_validation_errors_are_one_line(env) -> None:
    """The audit: a call missing its body or with a bad path value answered FastAPI's list of
    validation errors (type, loc, msg, input) instead of one line."""
    client = api(env, env["t1"])
    for method, path, body, said in (
        ("PUT", "settings", None, "body: field required"),
        ("PATCH", "lists/abc", {}, "entry_id: not an integer"),
        ("PUT", "settings", {"email": "maybe"}, "email: not true or false"),
        ("PUT", "settings", [], "body: not a JSON object"),
        ("POST", "lists", {"list": "block", "kind": "ip"}, "value: field required"),
    ):
        resp = client.request(method, f"/api/tenants/t1/{path}", json=body)
        assert (resp.status_code, resp.json()) == (422, {"detail": said}), (method, path)
    bad = client.put(
        "/api/tenants/t1/settings", content="{", headers={"content-type": "application/json"}
    )
    assert bad.status_code == 422
    assert bad.json() == {
        "detail": "body: not valid JSON "
        "(Expecting property name enclosed in double quotes, at character 1)"
    }
    # another tenant's data and an unknown tenant still answer alike
    assert client.patch("/api/tenants/t2/lists/1", json={}).json() == {"detail": "not found"}
    assert client.patch("/api/tenants/nobody/lists/1", json={}).json() == {"detail": "not found"}


def test_page_errors_are_pages_in_one_line(env) -> None:
    """The audit: a stale or forbidden link, a bad query value or switch showed the person
    raw JSON (``{"detail":"not found"}``, a 422 list); now an error page with one line and a
    link back, with the same status code."""
    client = login(env, env["t1"])
    for path, status, said in (
        ("/t/t2/settings", 404, "not found"),
        ("/t/t1/campaigns?desc=abc", 422, "desc: not an integer"),
        ("/t/t1/preview?email=maybe", 400, "email must be on or off, not &#39;maybe&#39;"),
        ("/t/t1/lists/abc/delete", 405, "Method Not Allowed"),
        ("/t/t1/nothing/here/at/all", 404, "Not Found"),
        ("/t/t1%00/settings", 404, "not found"),
    ):
        resp = client.get(path)
        assert resp.status_code == status, path
        assert resp.headers["content-type"].startswith("text/html"), path
        assert _alert(resp.text) == said, path
        assert '<a href="/">' in resp.text
    # no existence leak: another tenant's page reads exactly like an unknown tenant's
    forbidden, unknown = client.get("/t/t2/settings"), client.get("/t/nobody/settings")
    assert forbidden.text == unknown.text and forbidden.status_code == unknown.status_code
    # an expired form is a page too; logging in is still a redirect
    resp = client.post("/t/t1/settings", data={"csrf": "stale", "email_shown": "1"})
    assert resp.status_code == 403
    assert _alert(resp.text) == "the form expired or did not come from this console"
    anonymous = TestClient(env["app"]).get("/t/t1/settings", follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login"
