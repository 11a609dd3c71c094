"""Every message we build, checked by tools nobody on this project wrote: size against Gmail's clip,
line lengths, SpamAssassin's score, Chromium's layout at phone and desktop widths (also inside an
iframe, as webmail shows it), axe-core's accessibility rules, and the dark colour scheme.

Run on each example issue and on a 30-item issue made of their real items (tests/large_issue.py).
Screenshots (light and dark, 375 and 700 px) go to var/test-artifacts/mail/.
"""
from __future__ import annotations

import email
import os
import re
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailer.checking import PREVIEW_RECIPIENT
from mailer.compose import Composed
from mailer.app import Mailer
from mailer.settings import PROJECT_ROOT, Settings, load_settings
from tests.conftest import EXAMPLES, ISSUE_2021, ISSUE_2026
from tests.large_issue import write_large_issue

ISSUE_2026_EN = EXAMPLES / "2026-05-work-in-progress.en.md"
ARTIFACTS = PROJECT_ROOT / "var" / "test-artifacts" / "mail"
NAMES = ["2026-05-it", "2026-05-en", "2021-05-it", "30-items"]


@pytest.fixture(scope="module")
def mail_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    folder = tmp_path_factory.mktemp("quality")
    return load_settings({"MAILER_DATABASE_URL": f"sqlite:///{folder / 'q.sqlite'}", "MAILER_BASE_URL": "https://newsletter.comune.torino.it"})


@pytest.fixture(scope="module")
def issues(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    large = write_large_issue(tmp_path_factory.mktemp("large"), items=32)
    return dict(zip(NAMES, [ISSUE_2026, ISSUE_2026_EN, ISSUE_2021, large]))


@pytest.fixture(scope="module")
def built(issues: dict[str, Path], mail_settings: Settings) -> dict[str, tuple[Composed, bytes]]:
    """Each issue composed, and the message a sample recipient gets."""
    mailer = Mailer(mail_settings)
    out = {}
    for name, path in issues.items():
        composed = mailer.check_issue(path).composed
        out[name] = (composed, mailer.builder_for(composed, 7, 3).build(PREVIEW_RECIPIENT).data)
    return out


def parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=policy.default)  # type: ignore[return-value]


# ---- size and structure ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_html_part_stays_under_gmails_clip(built: dict[str, tuple[Composed, bytes]], name: str) -> None:
    composed, _ = built[name]
    size = len(composed.html.encode("utf-8"))
    assert size < 100_000, f"{name}: HTML part {size} bytes"
    assert not any("Gmail clips" in w.message for w in composed.warnings)
    assert composed.html.count("border-collapse") == 1  # MJML's reset, once in the head, not on every cell


def test_thirty_items_fit_and_the_reset_is_not_repeated(built: dict[str, tuple[Composed, bytes]]) -> None:
    composed, _ = built["30-items"]
    assert sum(len(s.items) for s in composed.issue.sections) == 32
    assert composed.html.count('class="item-title"') == 32
    assert composed.html.count("<!--[if mso | IE]>") < 60  # one MJML section per newsletter section, not per item


def test_a_message_gmail_would_clip_is_warned_about(mail_settings: Settings, tmp_path: Path) -> None:
    composed = Mailer(mail_settings).check_issue(write_large_issue(tmp_path, items=80)).composed
    assert len(composed.html.encode()) > 102_000
    assert any("Gmail clips" in w.message for w in composed.warnings)


@pytest.mark.parametrize("name", NAMES)
def test_message_structure(built: dict[str, tuple[Composed, bytes]], name: str) -> None:
    composed, data = built[name]
    msg = parse(data)
    assert msg["Date"].datetime is not None and re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", msg["Message-ID"])
    assert msg["To"].addresses[0].addr_spec == PREVIEW_RECIPIENT.email
    https, mailto = [part.strip().strip("<>") for part in msg["List-Unsubscribe"].split(",")]
    assert https.startswith("https://") and mailto.startswith("mailto:")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click" and msg["List-Id"]
    text, html = [part.get_content_type() for part in msg.iter_parts()]
    assert (text, html) == ("text/plain", "text/html")  # clients show the last part they can: HTML
    body = composed.html
    assert "<mj-" not in body and body.startswith("<!DOCTYPE html>")
    assert re.search(r"@media only screen and \(max-width: ?480px\)", body) and "prefers-color-scheme: dark" in body
    assert '<meta name="color-scheme" content="light dark">' in body


@pytest.mark.parametrize("name", NAMES)
def test_text_part_lines_and_signature(built: dict[str, tuple[Composed, bytes]], name: str) -> None:
    _, data = built[name]
    text = next(parse(data).iter_parts()).get_content()
    # Our own links fit; a link the editor wrote that is longer than a line stays whole on a line of its
    # own (broken, it could not be followed), and `issue check` warns about it.
    long = [line for line in text.splitlines() if len(line) > 78]
    composed = built[name][0]
    assert all(re.fullmatch(r"(https?://|www\.)\S+", line) and line in composed.issue.source for line in long), long
    assert all(any(w.message.startswith(f"a link of {len(line)} characters") and w.message.endswith(line) and w.line
                   for w in composed.warnings) for line in long)
    assert "\n-- \r\n" in text  # the signature separator, with its space


# ---- SpamAssassin ------------------------------------------------------------------------------------------

def spamassassin_score(message: bytes) -> tuple[float, str]:
    """(score, tests hit) of SpamAssassin's local rules (no network tests), through the product's own check."""
    from mailer.spam import spam_score, spamassassin_installed

    if not spamassassin_installed():
        if os.environ.get("MAILER_REQUIRE_SPAMASSASSIN"):
            pytest.fail("spamassassin is not installed (CI installs Debian's spamassassin)")
        pytest.skip("spamassassin is not installed (apt-get install spamassassin)")
    verdict = spam_score(message)
    return verdict.score, " ".join(verdict.tests)


@pytest.mark.parametrize("name", NAMES)
def test_spamassassin_scores_each_message_at_most_half_a_point(built: dict[str, tuple[Composed, bytes]], name: str) -> None:
    score, tests = spamassassin_score(built[name][1])
    assert score <= 0.5, f"{name}: {score} ({tests})"


def test_spamassassin_sees_a_faulty_message(built: dict[str, tuple[Composed, bytes]]) -> None:
    data = built["2026-05-it"][1]
    faulty = re.sub(rb"(?m)^(Date|Message-ID): .*\r\n", b"", data, count=2)
    assert b"\r\nDate:" not in faulty and b"\r\nMessage-ID:" not in faulty
    score, tests = spamassassin_score(faulty)
    assert score > 0.5 and "MISSING_DATE" in tests and "MISSING_MID" in tests, tests


# ---- Chromium -----------------------------------------------------------------------------------------------

VISIBLE_SMALL_TEXT = """() => {
  const small = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (!node.textContent.trim()) continue;
    const element = node.parentElement;
    const style = getComputedStyle(element);
    if (style.display === 'none' || style.visibility === 'hidden' || element.getClientRects().length === 0) continue;
    if (element.closest('[style*="display:none"]')) continue;
    if (parseFloat(style.fontSize) < 12) small.push(style.fontSize + ' ' + node.textContent.trim().slice(0, 40));
  }
  return small;
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from tests.browser import chromium, require_chromium

    require_chromium()
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def html_files(built: dict[str, tuple[Composed, bytes]], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The HTML part each recipient sees (the preview's splice), as files Chromium opens."""
    folder = tmp_path_factory.mktemp("html")
    files = {}
    for name, (_, data) in built.items():
        html = list(parse(data).iter_parts())[1].get_content()
        files[name] = folder / f"{name}.html"
        files[name].write_text(html, encoding="utf-8")
        (folder / f"{name}.frame.html").write_text(
            f'<!DOCTYPE html><html lang="en"><title>frame</title><body style="margin:0">'
            f'<iframe title="mail" src="{name}.html" style="width:375px;height:3000px;border:0"></iframe></body></html>',
            encoding="utf-8",
        )
    return files


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("width", [375, 700])
def test_layout_fits_with_no_tiny_text_and_every_image_described(browser, html_files: dict[str, Path], name: str, width: int) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": width, "height": 900})
    try:
        page.goto(html_files[name].as_uri())
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        assert page.evaluate("document.querySelectorAll('img:not([alt])').length") == 0
        assert page.evaluate(VISIBLE_SMALL_TEXT) == []
        if width == 375:  # the footer's two blocks stack: they must not touch
            first, second = [page.locator(".footer .mj-column-per-50").nth(n).bounding_box() for n in (0, 1)]
            assert first and second and second["y"] >= first["y"] + first["height"] - 1
            texts = page.locator(".footer .mj-column-per-50 div[style*='font-size']")
            top_of_second, bottom_of_first = texts.nth(1).bounding_box()["y"], sum(texts.nth(0).bounding_box()[k] for k in ("y", "height"))
            assert top_of_second - bottom_of_first >= 12
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{name}-{width}-light.png"), full_page=True)
    finally:
        page.close()


@pytest.mark.parametrize("name", ["2026-05-it", "30-items"])
def test_inside_a_375px_iframe_nothing_overflows(browser, html_files: dict[str, Path], name: str) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 1024, "height": 900})
    try:
        page.goto(html_files[name].with_suffix(".frame.html").as_uri())
        frame = next(f for f in page.frames if f.url.endswith(f"{name}.html"))
        frame.wait_for_load_state("load")
        assert frame.evaluate("window.innerWidth") == 375
        assert frame.evaluate("document.documentElement.scrollWidth") <= 375
        assert frame.evaluate(VISIBLE_SMALL_TEXT) == []
    finally:
        page.close()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_nothing_serious_in_light_or_dark(browser, html_files: dict[str, Path], name: str, scheme: str) -> None:  # type: ignore[no-untyped-def]
    from tests.a11y import assert_accessible

    page = browser.new_page(viewport={"width": 700, "height": 900}, color_scheme=scheme)
    try:
        page.goto(html_files[name].as_uri())
        assert_accessible(page, f"mail {name} {scheme}", artifacts=ARTIFACTS)
        assert page.evaluate("document.querySelectorAll('h1').length") == 1
        assert page.evaluate("document.documentElement.lang") in ("it", "en")
        sections = page.evaluate("document.querySelectorAll('h2').length")
        assert sections >= 1 and page.evaluate("document.querySelectorAll('h3').length") > sections
        assert page.evaluate("[...document.querySelectorAll('table')].every(t => t.getAttribute('role') === 'presentation')")
        background = page.evaluate("getComputedStyle(document.querySelector('.content')).backgroundColor")
        assert (background == "rgb(255, 255, 255)") == (scheme == "light"), background
        if scheme == "dark":
            page.screenshot(path=str(ARTIFACTS / f"{name}-700-dark.png"), full_page=True)
    finally:
        page.close()


def test_the_logo_shipped_for_the_demo_renders_in_the_masthead(browser, mail_settings: Settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The demo's logo (mailer/web/static, served by `mailer serve` at /static/) in the message's masthead:
    an absolute https URL on our web app, the configured width, alt text present (empty: decorative)."""
    from dataclasses import replace

    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from mailer.demo import DEMO_LOGO
    from mailer.web import create_app

    settings = mail_settings.with_overrides(newsletters={
        nid: replace(nl, logo_url=DEMO_LOGO, logo_width=64) for nid, nl in mail_settings.newsletters.items()
    })
    mailer = Mailer(settings)
    composed = mailer.check_issue(ISSUE_2026).composed
    img = re.findall(r"<img[^>]*>", composed.html)
    assert len(img) == 1 and f'src="{settings.base_url}/static/logo-wip.png"' in img[0] and 'alt=""' in img[0] and 'width="64"' in img[0]
    async def fetch() -> httpx.Response:  # the web app serves the file the message points at
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(mailer)), base_url="http://testserver") as client:
            return await client.get(DEMO_LOGO)

    with ThreadPoolExecutor(1) as thread:  # Playwright's sync API holds this thread's event loop
        served = thread.submit(asyncio.run, fetch()).result()
    assert served.status_code == 200 and served.headers["content-type"] == "image/png" and served.content[:8] == b"\x89PNG\r\n\x1a\n"
    page = browser.new_page(viewport={"width": 375, "height": 900})
    try:
        page.route(f"{settings.base_url}/static/**", lambda route: route.fulfill(body=served.content, content_type="image/png"))
        html = tmp_path / "logo.html"
        html.write_text(list(parse(mailer.builder_for(composed).build(PREVIEW_RECIPIENT).data).iter_parts())[1].get_content(), encoding="utf-8")
        page.goto(html.as_uri())
        logo = page.locator(".masthead img")
        assert logo.evaluate("i => [i.complete, i.naturalWidth, Math.round(i.getBoundingClientRect().width)]") == [True, 128, 64]
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        page.screenshot(path=str(ARTIFACTS / "logo-375.png"))
    finally:
        page.close()
        mailer.close()
