"""A real browser for the UI tests: Playwright driving Debian's Chromium, never its own build.

`make install` puts Chromium at /usr/bin/chromium (scripts/ensure-chromium.sh); Playwright's
own browser download is never used, so nothing is fetched at test time. Each browser gets a
fresh profile directory, so no test sees another's session storage.

Screenshots go to `HOOKLINE_SCREENSHOT_DIR` when set (`docs/` to refresh the README's), else
to the test's temporary directory.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import BrowserContext, Page, async_playwright

CHROMIUM = os.environ.get("HOOKLINE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@asynccontextmanager
async def browser(profile: Path) -> AsyncIterator[BrowserContext]:
    """A headless Chromium with a fresh profile in `profile`, at laptop size."""
    if not os.access(CHROMIUM, os.X_OK):
        raise AssertionError(f"{CHROMIUM} is missing: run `make install` (it installs chromium)")
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport=LAPTOP,
            color_scheme="light",
        )
        try:
            yield context
        finally:
            await context.close()


async def new_page(context: BrowserContext) -> tuple[Page, list[str], list[str]]:
    """A page, every URL it requested, and every script error it raised."""
    page = await context.new_page()
    requested: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    return page, requested, errors


async def screenshot(page: Page, name: str, fallback: Path) -> Path:
    """A full-page PNG named `name`, in `HOOKLINE_SCREENSHOT_DIR` or `fallback`."""
    folder = Path(os.environ.get("HOOKLINE_SCREENSHOT_DIR") or fallback)
    path = folder / f"{name}.png"
    # Playwright makes the folder when it is missing.
    await page.screenshot(path=str(path), full_page=True)
    return path
