"""Browser tests: Debian's Chromium (headless) driven by Playwright against the live
test server. Screenshots go to test-artifacts/ (gitignored)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
expect.set_options(timeout=20_000)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: apt-get install -y chromium", pytrace=False)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
            ],
        )
        yield browser
        browser.close()


def new_context(browser: Browser, base_url: str, theme: str = "dark", **kwargs) -> BrowserContext:  # type: ignore[no-untyped-def]
    kwargs.setdefault("viewport", {"width": 1280, "height": 800})
    context = browser.new_context(
        base_url=base_url, color_scheme=theme, accept_downloads=True, **kwargs
    )
    context.set_default_timeout(30_000)
    # The IDE works offline: any request off this machine is refused and remembered.
    external: list[str] = []

    def refuse(route) -> None:  # type: ignore[no-untyped-def]
        external.append(route.request.url)
        route.abort()

    context.route(lambda url: not is_local(url), refuse)
    context.external_requests = external  # type: ignore[attr-defined]
    return context


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "ws", "wss"):
        return True  # data:, blob:, about:
    host = parts.hostname or ""
    return host in ("127.0.0.1", "localhost", "::1") or host.endswith(".localhost")


class ConsoleLog:
    """JavaScript errors a page raised: a test fails on any uncaught exception."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        self.pending: dict[object, str] = {}  # requests sent and not answered yet
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("request", lambda r: self.pending.__setitem__(r, f"{r.method} {r.url}"))
        page.on("requestfinished", lambda r: self.pending.pop(r, None))
        page.on("requestfailed", self._failed)
        page.on(
            "console",
            lambda m: self.console.append(m.text) if m.type == "error" else None,
        )
        self.failed: list[str] = []
        self.console: list[str] = []

    def _failed(self, request) -> None:  # type: ignore[no-untyped-def]
        self.pending.pop(request, None)
        self.failed.append(f"{request.method} {request.url}: {request.failure}")

    def unanswered(self) -> list[str]:
        return sorted(self.pending.values())


@pytest.fixture
def page(browser: Browser, server) -> Iterator[Page]:  # type: ignore[no-untyped-def]
    context = new_context(browser, server.url)
    page = context.new_page()
    yield page
    context.close()


def shot(page: Page, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
