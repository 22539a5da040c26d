"""A real browser for the dashboard's tests: Debian's Chromium (``/usr/bin/chromium``,
installed by deploy/dev/ensure-services.sh) driven by playwright-python, against a live
``hutch web`` served by uvicorn in a thread on a loopback port.

Screenshots: ``screenshot(page, "tasks")`` saves a PNG of the page into the test's
tmp dir, or into ``$HUTCH_SCREENSHOTS`` when set (``make screenshots`` sets it to
docs/images, whose pictures docs/dashboard.md shows).

Fixtures: ``chromium`` (one browser per test module, headless, no network beyond
loopback), ``browser_page`` (a fresh context and page per test, closed after it) and
``live_web`` (``live_web(hutch_app, **create_app_kwargs)`` starts a server and gives
its base URL; stopped at the end of the test).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from hutch import Hutch
from hutch.web.app import create_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
"""As root in a container Chromium needs --no-sandbox; the rest keep it from calling
out to the (closed) network at every start."""
SCREENSHOTS = os.environ.get("HUTCH_SCREENSHOTS", "")
"""Read at import: the tests run without HUTCH_* variables (tests/conftest.py)."""


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Per module, not per session: playwright's sync API keeps an event loop running on
    the thread while it is open, and later tests in the process call asyncio.run()."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def browser_page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


class LiveWeb:
    """``hutch web`` for one app, served by uvicorn on a thread of its own."""

    def __init__(self, hutch_app: Hutch, **kwargs: Any) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(create_app(hutch_app, **kwargs), host="127.0.0.1",
                                port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveWeb:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("hutch web did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def live_web() -> Iterator[Callable[..., LiveWeb]]:
    started: list[LiveWeb] = []

    def start(hutch_app: Hutch, **kwargs: Any) -> LiveWeb:
        web = LiveWeb(hutch_app, **kwargs).start()
        started.append(web)
        return web

    yield start
    for web in started:
        web.stop()


@pytest.fixture
def screenshot(tmp_path: Path) -> Callable[[Any, str], Path]:
    folder = Path(SCREENSHOTS or tmp_path)

    def take(page: Any, name: str) -> Path:
        """A picture for people (docs, debugging), not an assertion: Chromium under load
        sometimes answers "Unable to capture screenshot", and the test goes on."""
        from playwright.sync_api import Error as PlaywrightError

        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"dashboard-{name}.png"
        try:
            page.screenshot(path=str(path), full_page=True)
        except PlaywrightError as exc:
            warnings.warn(f"screenshot {name!r} not taken: {exc}", stacklevel=2)
        return path

    return take
