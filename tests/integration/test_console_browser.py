"""The console in a real browser: Playwright driving Debian's headless chromium against one
module-scoped console server on a tiny store. Screenshots of every page go to
``test-artefacts/console`` (git-ignored) or ``$BOTFILTER_TEST_ARTEFACTS``."""

from __future__ import annotations

import csv
import io
import os
import socket
import threading
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(console_env, tmp_path_factory):
    """A console server on a tiny store, in a thread; its URL, tokens and store."""
    with console_env(tmp_path_factory.mktemp("browser")) as env:
        yield from _serve(env)


def _serve(env):
    import uvicorn

    app = env["app"]
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "the console server did not start"
    try:
        yield {**env, "url": f"http://127.0.0.1:{port}"}
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots() -> Path:
    out = Path(os.environ.get("BOTFILTER_TEST_ARTEFACTS", ROOT / "test-artefacts")) / "console"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def page(browser, server):
    """One logged-in page for tenant t1; console errors are collected in ``page.errors``."""
    context = browser.new_context(accept_downloads=True, viewport={"width": 1200, "height": 900})
    pg = context.new_page()
    pg.errors = []
    pg.on("console", lambda m: pg.errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    yield pg
    context.close()


def test_log_in(page, server, shots) -> None:
    page.goto(server["url"] + "/")
    assert page.url.endswith("/login")
    page.screenshot(path=str(shots / "login.png"))
    page.fill("input[name=token]", "bf_wrong")
    page.click("button[type=submit]")
    assert page.get_by_role("alert").inner_text() == "That token is not valid."
    page.fill("input[name=token]", server["t1"])
    page.click("button[type=submit]")
    page.wait_for_url("**/t/t1/settings")
    assert page.locator("h1").inner_text() == "Advanced settings"
    page.screenshot(path=str(shots / "settings.png"), full_page=True)


def test_other_tenant_is_404(page, server) -> None:
    for path in (
        "/t/t2/settings",
        "/t/t2/campaigns",
        "/t/t3/dashboard",
        "/api/tenants/t2/settings",
    ):
        resp = page.goto(server["url"] + path)
        assert resp.status in (401, 404), path  # the API wants a bearer token, the pages 404
        if path.startswith("/t/"):  # a page that says so in words, not JSON
            assert resp.status == 404
            assert page.get_by_role("alert").inner_text() == "not found"
            assert page.get_by_role("link", name="Back to the console").count() == 1


def test_toggle_with_preview_then_recompute(console_cycle, page, server, shots) -> None:
    page.goto(server["url"] + "/t/t1/campaigns")
    before = _shown_open_rates(page)
    page.goto(server["url"] + "/t/t1/settings")
    page.check("#toggle-email")
    dialog = page.locator("dialog#confirm")
    dialog.locator("td.opens-excluded").wait_for()
    promised = dialog.locator("tr[data-channel=email] b.open-after").inner_text()
    excluded = int(dialog.locator("td.opens-excluded").inner_text().replace(",", ""))
    assert excluded > 0
    page.screenshot(path=str(shots / "settings-dialog.png"))
    dialog.get_by_role("button", name="Apply").click()
    page.wait_for_url("**/t/t1/settings")
    assert page.is_checked("#toggle-email")
    assert page.locator("#status td.state").first.inner_text() == "queued"
    assert console_cycle(server["store"], server["settings"], server["data"]).status == "succeeded"
    # the status refreshes itself (polling), without a reload
    page.locator("#status td.state.done").first.wait_for(timeout=10_000)
    page.screenshot(path=str(shots / "settings-done.png"), full_page=True)
    # the preview of switching back starts from what the first preview promised
    page.uncheck("#toggle-email")
    dialog.locator("td.opens-excluded").wait_for()
    now = dialog.locator("tr[data-channel=email] td").nth(3).inner_text()
    assert now.startswith(promised + " →")
    dialog.get_by_role("button", name="Cancel").click()
    assert page.is_checked("#toggle-email")  # cancelled: the switch went back
    page.goto(server["url"] + "/t/t1/campaigns")
    after = _shown_open_rates(page)
    assert after != before
    for row in page.locator("#module-table tbody tr").all():
        cells = row.locator("td").all_inner_texts()
        if cells[1] == "email":
            assert cells[8] == cells[4]  # shown open rate = open rate without bots
    page.screenshot(path=str(shots / "campaigns.png"), full_page=True)


def test_pages_and_csv_export(page, server, shots) -> None:
    page.goto(server["url"] + "/t/t1/dashboard")
    assert page.locator("svg.chart").count() >= 1
    assert page.locator("svg.chart line.marker").count() >= 1  # the filter changed today
    page.screenshot(path=str(shots / "dashboard.png"), full_page=True)
    for module in ("automations", "segments"):
        page.goto(f"{server['url']}/t/t1/{module}")
        assert page.locator("#module-table tbody tr").count() > 0
        page.screenshot(path=str(shots / f"{module}.png"), full_page=True)
    page.goto(server["url"] + "/t/t1/campaigns?sort=bot_share&desc=1")
    page.locator("#module-table tbody tr td a").first.click()
    page.wait_for_url("**/t/t1/campaigns/*")
    shown = page.locator("#bots tbody tr").count()
    page.screenshot(path=str(shots / "drill-down.png"), full_page=True)
    with page.expect_download() as info:
        page.click("a#csv")
    text = Path(info.value.path()).read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == shown > 0
    assert all(float(r["bot_score"]) == 0.95 and r["reasons"] for r in rows)
    first = page.locator("#bots tbody tr").first.locator("td").all_inner_texts()
    assert first[4] == rows[0]["reasons"] and first[5] == rows[0]["network"]


def test_list_entry_with_its_dry_run(page, server, shots) -> None:
    page.goto(server["url"] + "/t/t1/lists")
    assert page.locator("p.empty").first.inner_text() == "No entries yet."
    page.select_option("#entry-list", "block")
    page.select_option("#entry-kind", "ip")
    page.fill("#entry-value", "8.8.8.0/24")
    page.fill("#entry-note", "a resolver, not a person")
    page.click("#dry-run")
    result = page.locator("#dryrun")
    result.wait_for()
    changed = int(result.get_attribute("data-changed"))
    assert changed > 0
    to_bot = result.locator("tr[data-channel=email] td.to-bot").inner_text()
    assert to_bot != "0 / 0"
    page.screenshot(path=str(shots / "lists-dry-run.png"), full_page=True)
    assert page.locator("#entries").count() == 0  # a dry run saves nothing
    page.click("#save-entry")
    page.wait_for_url("**/t/t1/lists")
    row = page.locator("#entries tbody tr").first
    assert "8.8.8.0/24" in row.inner_text() and "block" in row.inner_text()
    assert page.locator("#list-audit tbody tr").first.locator("td").nth(2).inner_text() == "add"
    page.screenshot(path=str(shots / "lists.png"), full_page=True)


def test_model_page_for_admin(browser, server, shots) -> None:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    pg = context.new_page()
    try:
        pg.goto(server["url"] + "/login")
        pg.fill("input[name=token]", server["admin"])
        pg.click("button[type=submit]")
        pg.goto(server["url"] + "/model")
        assert pg.locator("h1").inner_text() == "Model"
        pg.screenshot(path=str(shots / "model.png"), full_page=True)
    finally:
        context.close()


def test_a_tenant_named_dot_dot_opens_its_pages(browser, server) -> None:
    """The audit: tenant ".." was sent after login to /t/../settings, which the browser
    opened as /settings (a 404), so it could use no page; its links now say ``~..``."""
    from core.tokens import TokenStore
    from jobs.exclusions import set_exclusions

    set_exclusions(server["store"], "..", {"email": False, "sms": False}, source="test")
    tokens = TokenStore(server["store"].url)
    token = tokens.create([".."])[0]
    tokens.close()
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    pg = context.new_page()
    try:
        pg.goto(server["url"] + "/login")
        pg.fill("input[name=token]", token)
        pg.click("button[type=submit]")
        pg.wait_for_url(server["url"] + "/t/~../settings", timeout=10_000)
        assert pg.locator("h1").inner_text() == "Advanced settings"
        assert pg.locator("header .tenant b").inner_text() == ".."
        pg.get_by_role("link", name="Campaigns").click()
        pg.wait_for_url(server["url"] + "/t/~../campaigns", timeout=10_000)
        assert pg.locator("h1").inner_text() == "Campaigns"
    finally:
        context.close()


def test_no_browser_console_errors(page) -> None:
    # 404s of the tenant-wall test show up as failed resource loads: those are expected
    real = [e for e in page.errors if "404" not in e and "401" not in e]
    assert real == []


def _shown_open_rates(page) -> list[str]:
    return page.locator("#module-table td.shown-open").all_inner_texts()
