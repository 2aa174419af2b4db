"""Browser fixtures: Debian's Chromium driven by Playwright's sync API.

`playwright install` cannot download browsers on these machines, so the tests launch the
system Chromium. Without it they skip, unless REQUIRE_BROWSER=1 demands they run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.previews import PreviewSite, serve_previews

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _unavailable(reason: str) -> None:
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(f"REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per module; closed even if a test fails.

    Module scope, and the loop reset below, keep the sync API's trap (it leaves its event
    loop marked running in the main thread) away from the rest of the pytest session.
    """
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} not found (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                yield browser
            finally:
                browser.close()
    finally:
        asyncio.events._set_running_loop(None)


@pytest.fixture
def screenshots(tmp_path: Path) -> Iterator[Path]:
    """Directory for full-page screenshots; copied to $SCREENSHOT_DIR afterwards if set."""
    directory = tmp_path / "screenshots"
    directory.mkdir()
    yield directory
    target = os.environ.get("SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for png in sorted(directory.glob("*.png")):
            shutil.copy2(png, Path(target) / png.name)


@pytest.fixture(scope="module")
def preview_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PreviewSite]:
    """The app with an rspamd node, served over HTTP for the module: hold messages with
    ``preview_site.hold(content)`` and open the release page URL it returns."""
    with serve_previews(tmp_path_factory.mktemp("previews")) as site:
        yield site
