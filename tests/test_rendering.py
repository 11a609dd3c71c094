"""The HTML part in a real browser (Debian's Chromium via Playwright): phone and desktop layouts."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mailer.app import Mailer
from mailer.settings import Settings
from tests.browser import chromium, require_chromium
from tests.conftest import ISSUE_2021, ISSUE_2026

require_chromium()

from playwright.sync_api import Browser, Page  # noqa: E402


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def open_mail(browser: Browser, html: Path, width: int) -> Page:
    page = browser.new_page(viewport={"width": width, "height": 900})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(html.as_uri())
    page.wait_for_load_state("load")
    assert [u for u in requests if not u.startswith("file:")] == []  # nothing fetched from the network
    return page


def box(page: Page, selector: str) -> dict[str, float]:
    found = page.locator(selector).first.bounding_box()
    assert found is not None, selector
    return found


@pytest.mark.parametrize("issue_path", [ISSUE_2026, ISSUE_2021])
def test_phone_layout_stacks_and_fits(browser: Browser, settings: Settings, tmp_path: Path, issue_path: Path) -> None:
    html = Mailer(settings).preview(issue_path, tmp_path)[1]["html"]
    page = open_mail(browser, html, 375)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375  # no sideways scrolling
    title, dates = box(page, ".mj-column-per-60"), box(page, ".mj-column-per-40")
    assert dates["y"] >= title["y"] + title["height"] - 1  # masthead columns stack
    assert dates["width"] > 300
    # the phone media query beats the inlined desktop size only because !important survived premailer
    assert page.evaluate("getComputedStyle(document.querySelector('.item-title')).fontSize") == "17px"
    page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)


def test_desktop_layout_side_by_side(browser: Browser, settings: Settings, tmp_path: Path) -> None:
    html = Mailer(settings).preview(ISSUE_2026, tmp_path)[1]["html"]
    page = open_mail(browser, html, 1024)
    title, dates = box(page, ".mj-column-per-60"), box(page, ".mj-column-per-40")
    assert abs(title["y"] - dates["y"]) < 2 and dates["x"] > title["x"] + title["width"] - 1
    assert 600 <= title["width"] + dates["width"] <= 640
    assert page.evaluate("getComputedStyle(document.querySelector('.item-title')).fontSize") == "18px"
    text = page.inner_text("body")
    for phrase in ("Work in Progress", "Maggio 2026", "CITIES MISSION CONFERENCE 2026", "Delegazioni ricevute",
                   "apposito modulo di questa pagina", "anteprima@example.org"):
        assert phrase in text
