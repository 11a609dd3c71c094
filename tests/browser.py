"""Debian's Chromium for the browser tests: where it is, how it is started, and skipping when it is missing."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Headless as root in a closed network: no sandbox, no GPU, and none of Chromium's own background traffic.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def require_chromium() -> None:
    """Skip the calling test module when Chromium is not installed, unless CI requires it
    (`.ci/run` installs it and sets MAILER_REQUIRE_BROWSER=1: then a missing browser fails)."""
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("MAILER_REQUIRE_BROWSER"):
        raise RuntimeError("MAILER_REQUIRE_BROWSER is set but Chromium is not installed")
    pytest.skip("Chromium is not installed (CI installs it and sets MAILER_REQUIRE_BROWSER=1)", allow_module_level=True)


@contextmanager
def chromium() -> Iterator["Browser"]:
    """Headless Debian Chromium driven by Playwright (tests share one per module)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()
