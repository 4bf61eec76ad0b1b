"""Headless Chromium for the browser tests: Debian's ``chromium``, driven by Playwright.

Browsers are launched by path and never downloaded at test time; without Chromium the tests
skip locally and fail in CI (tests/external.py).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.external import missing
from tests.serverproc import ServerProcess

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000


def _chromium_path() -> str:
    """Debian's chromium, or a skip (locally) / failure (in CI) saying how to get it."""
    path = shutil.which("chromium") or "/usr/bin/chromium"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing("the playwright package is not installed (pip install -e '.[test]')")
    if not Path(path).exists():
        missing("chromium is not installed (apt-get install chromium)")
    return path


@pytest.fixture
def chromium() -> Iterator:
    """A headless Chromium browser."""
    path = _chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def base_url(server: ServerProcess) -> str:
    """Where the server answers."""
    return f"http://127.0.0.1:{server.port}"


def new_page(chromium, server: ServerProcess):
    """A fresh browser context (no cookies) and a page in it, addressed at ``server``."""
    context = chromium.new_context(base_url=base_url(server))
    context.set_default_timeout(TIMEOUT_MS)
    return context, context.new_page()
