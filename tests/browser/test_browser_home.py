"""hutch web in a real browser (Chromium through playwright): the layout renders with
no error in the console (the Content-Security-Policy holds), and a dashboard with
users refuses a browser without credentials."""

from __future__ import annotations

import pytest
from playwright.sync_api import Error as PlaywrightError

from hutch import Hutch
from hutch.web.passwords import hash_password

pytestmark = pytest.mark.browser


def test_the_landing_page_renders_without_console_errors(memory_app, live_web, browser_page):
    web = live_web(memory_app)
    errors: list[str] = []
    browser_page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    answer = browser_page.goto(web.url + "/")
    assert answer is not None and answer.status == 200
    assert browser_page.locator("header a.brand").inner_text() == "hutch web"
    assert browser_page.locator("header nav a").first.inner_text() == "Overview"
    assert errors == []


def test_a_browser_without_credentials_is_refused(sqlite_url, live_web, browser_page):
    app = Hutch("web-browser", broker="memory://", backend=sqlite_url,
                web_users={"ada": {"password_hash": hash_password("pw"), "role": "admin"}})
    try:
        web = live_web(app)
        with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):
            browser_page.goto(web.url + "/")  # 401 with a Basic challenge, nothing to answer
        context = browser_page.context.browser.new_context(
            http_credentials={"username": "ada", "password": "pw"})
        try:
            signed_in = context.new_page()
            answer = signed_in.goto(web.url + "/")
            assert answer is not None and answer.status == 200
            assert signed_in.locator("header .who").inner_text() == "ada"
        finally:
            context.close()
    finally:
        app.close()
