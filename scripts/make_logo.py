"""Render the newsletter's masthead emblem (mailer/web/static/logo-wip.png) from its SVG source, in Chromium.

Mail clients do not show SVG, so the masthead carries a PNG: drawn at twice its display size (64 px) for
sharp phones, white on transparent for the accent-coloured masthead. Run again after editing logo-wip.svg:
    .venv/bin/python scripts/make_logo.py
"""
from __future__ import annotations

from pathlib import Path

import sys

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.browser import chromium  # noqa: E402  (the same headless Chromium the tests drive)

STATIC = Path(__file__).resolve().parent.parent / "mailer" / "web" / "static"


def main() -> None:
    svg = (STATIC / "logo-wip.svg").read_text(encoding="utf-8")
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 128, "height": 128})
        page.set_content(f'<html><body style="margin:0;background:transparent">{svg}</body></html>')
        page.locator("svg").screenshot(path=str(STATIC / "logo-wip.png"), omit_background=True)
    print(STATIC / "logo-wip.png")


if __name__ == "__main__":
    main()
