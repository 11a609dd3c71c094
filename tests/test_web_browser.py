"""The web app in a real browser: uvicorn serving create_app() over a real SQLite file, a real SMTP relay
(CaptureServer in its own thread) receiving what the app and the dispatcher send, Debian's Chromium driven
by Playwright, axe-core on every page (tests/a11y.py: serious or critical findings fail).

Each test serves its own database on 127.0.0.1 (a free port); MAILER_BASE_URL is that address, so the links
in the messages the relay captures open the running app. Screenshots (and axe's JSON) go to
$MAILER_ARTIFACTS (default var/test-artifacts) under the test's name, so CI keeps them.
"""
from __future__ import annotations

import asyncio
import contextlib
from contextlib import AbstractContextManager
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from mailer.app import Mailer
from mailer.capture import CaptureServer, Received, capture_in_thread
from mailer.i18n import page_strings
from mailer.issue import load_issue
from mailer.settings import load_settings
from tests.browser import chromium, require_chromium
from tests.conftest import ISSUE_2026

require_chromium()

import uvicorn  # noqa: E402
from playwright.sync_api import Browser, BrowserContext, Page  # noqa: E402

from mailer.web import create_app  # noqa: E402
from mailer.web.security import Limits  # noqa: E402
from tests.a11y import assert_accessible, explain  # noqa: E402

LIST = "work-in-progress"
IT = page_strings("it")
PASSWORD = "correct horse battery staple"
GHOST_RULE = lambda r: "550 5.1.1 User unknown" if r.startswith("ghost") else None  # noqa: E731


def artifacts_dir() -> Path:
    folder = Path(os.environ.get("MAILER_ARTIFACTS", "var/test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def shot(page: Page, request: pytest.FixtureRequest, step: str = "") -> Path:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name).strip("-")
    path = artifacts_dir() / f"{name}{'-' + step if step else ''}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# ---- the relay, the server, the browser ------------------------------------------------------------------

def relay_thread(rule: Callable[[str], str | None] | None = None) -> AbstractContextManager[CaptureServer]:
    """A CaptureServer in its own thread's event loop."""
    return capture_in_thread(rule=rule)


class Deferred:
    """The ASGI app uvicorn serves: the real app, plugged in once the bound port (hence MAILER_BASE_URL) is known."""

    app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert self.app is not None, "request before the app was plugged in"
        await self.app(scope, receive, send)


@dataclass
class Site:
    base: str
    mailer: Mailer
    relay: CaptureServer
    requests: list[str] = field(default_factory=list)

    # -- mail ---------------------------------------------------------------------------------------------
    def mails_to(self, address: str) -> list[Received]:
        return [m for m in list(self.relay.messages) if address in m.recipients]

    def wait_for_mail(self, address: str, contains: str, timeout: float = 10.0) -> EmailMessage:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for received in self.mails_to(address):
                message = parse(received)
                if contains in text_body(message):
                    return message
            time.sleep(0.1)
        raise AssertionError(f"no message to {address} containing {contains!r} within {timeout} s "
                             f"({len(self.relay.messages)} captured)")

    # -- database -----------------------------------------------------------------------------------------
    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.mailer.engine.connect() as connection:
            return list(connection.execute(text(sql), params))

    def list_status(self, email: str, list_name: str = LIST) -> str | None:
        found = self.rows(
            "SELECT s.status FROM subscription s JOIN subscriber p ON p.id = s.subscriber_id "
            "JOIN mailing_list l ON l.id = s.list_id WHERE p.email = :email AND l.name = :list",
            email=email, list=list_name,
        )
        return found[0][0] if found else None

    # -- sending ------------------------------------------------------------------------------------------
    def send_issue(self, path: Path = ISSUE_2026) -> int:
        """The dispatcher's real send; the relay answers from its own thread. The asyncio.run happens in a
        short-lived thread: Playwright's sync API keeps an event loop running in the test's thread, where
        asyncio.run refuses to start."""
        plan = self.mailer.plan_send(load_issue(path), None)
        campaign = self.mailer.start_send(plan)
        with ThreadPoolExecutor(1) as pool:
            pool.submit(lambda: asyncio.run(self.mailer.run_send(campaign, plan.composed_by_language))).result(timeout=60)
        assert campaign.id is not None
        return campaign.id


def parse(received: Received) -> EmailMessage:
    return message_from_bytes(received.data, policy=policy.default)  # type: ignore[return-value]


def text_body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",)) if message.is_multipart() else message
    assert part is not None
    return str(part.get_content())


def http_link(message: EmailMessage, base: str) -> str:
    """The https (here http) URL of the List-Unsubscribe header."""
    links = re.findall(r"<([^>]+)>", str(message["List-Unsubscribe"]))
    web = [u for u in links if u.startswith(base + "/")]
    assert len(web) == 1, f"List-Unsubscribe: {message['List-Unsubscribe']!r}"
    return web[0]


def link_in(body: str, base: str, path: str) -> str:
    found = re.search(re.escape(base + path) + r"[^\s<>\"')\]]+", body)
    assert found, f"no {path} link to {base} in:\n{body[-1500:]}"
    return found.group(0)


@contextlib.contextmanager
def running_site(tmp_path: Path, rule: Callable[[str], str | None] | None = GHOST_RULE) -> Iterator[Site]:
    with relay_thread(rule) as relay:
        holder = Deferred()
        config = uvicorn.Config(holder, host="127.0.0.1", port=0, log_level="warning", lifespan="off", ws="none",
                                access_log=False)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        settings = load_settings({
            "MAILER_DATABASE_URL": f"sqlite:///{tmp_path / 'web.sqlite'}",
            "MAILER_BASE_URL": base,
            "MAILER_SMTP_URL": relay.url,
        })
        mailer = Mailer(settings)
        holder.app = create_app(mailer, limits=Limits(min_fill_seconds=0))
        try:
            yield Site(base, mailer, relay)
        finally:
            server.should_exit = True
            thread.join(10)
            mailer.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with running_site(tmp_path) as running:
        yield running


@pytest.fixture
def context(browser: Browser, site: Site) -> Iterator[BrowserContext]:
    """An Italian visitor's browser; every request any of its pages makes is recorded on the site."""
    context = browser.new_context(locale="it-IT", viewport={"width": 1280, "height": 900})
    context.on("request", lambda r: site.requests.append(r.url))
    context.set_default_timeout(10_000)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


class AxeLog:
    """axe on several pages of one test: every page is checked, then the test fails once, naming them all."""

    def __init__(self) -> None:
        self.blocking: list[str] = []
        self.moderate: dict[str, str] = {}

    def check(self, page: Page, name: str) -> None:
        try:
            others = assert_accessible(page, name, artifacts=artifacts_dir())
        except AssertionError as exc:
            self.blocking.append(str(exc))
            return
        if others:
            self.moderate[name] = explain(others)
            print(f"axe, moderate/minor on {name} ({page.url}):\n{self.moderate[name]}")

    def assert_clean(self) -> None:
        assert not self.blocking, "\n\n".join(self.blocking)


def add_people(site: Site, *emails: str) -> None:
    for n, email in enumerate(emails):
        assert site.mailer.add_subscriber(email, LIST, name=f"Persona {n}", language="it")


def tab_to(page: Page, selector: str, presses: int = 40) -> None:
    """Focus `selector` the way a keyboard user does: Tab from the top of the page until it has focus."""
    page.evaluate("() => { document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); }")
    target = page.locator(selector)
    for _ in range(presses):
        page.keyboard.press("Tab")
        if target.evaluate("el => el === document.activeElement"):
            return
    raise AssertionError(f"{selector} never got focus in {presses} Tab presses")


def log_in(page: Page, site: Site, next_path: str = "") -> None:
    site.mailer.add_admin_user("operatrice", PASSWORD)
    page.goto(site.base + "/admin/login" + (f"?next={next_path}" if next_path else ""))
    page.get_by_label("Nome utente", exact=True).fill("operatrice")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Accedi").click()


# ---- 1. the List-Unsubscribe link of a message the dispatcher sent ----------------------------------------

def test_unsubscribe_link_from_a_sent_message_by_keyboard(site: Site, page: Page, request: pytest.FixtureRequest) -> None:
    add_people(site, "anna@example.org", "bruno@example.org")
    campaign_id = site.send_issue()
    [received] = site.mails_to("anna@example.org")
    link = http_link(parse(received), site.base)
    assert "/u/" in link

    response = page.goto(link)
    assert response is not None and response.status == 200
    lead = page.locator("main p.lead").inner_text()
    assert "anna@example.org" in lead and "Work in Progress" in lead  # the newsletter's title, not the list's name
    axe = AxeLog()
    axe.check(page, "unsubscribe link page")
    assert site.list_status("anna@example.org") == "active"  # opening the link changed nothing
    assert site.rows("SELECT count(*) FROM subscriber_event WHERE kind = 'unsubscribed'")[0][0] == 0

    button = "main form button[type=submit]"
    tab_to(page, button)
    assert page.locator(button).inner_text().strip() == IT["unsubscribe_button"]
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.locator("h1").inner_text() == IT["unsubscribe_done_title"]
    assert page.get_by_role("status").inner_text().strip() == IT["unsubscribe_done"].format(
        email="anna@example.org", title="Work in Progress")
    axe.check(page, "unsubscribe done page")
    shot(page, request)

    assert site.list_status("anna@example.org") == "unsubscribed"
    assert site.list_status("bruno@example.org") == "active"
    events = site.rows(
        "SELECT e.method, e.campaign_id, l.name FROM subscriber_event e JOIN subscriber p ON p.id = e.subscriber_id "
        "JOIN mailing_list l ON l.id = e.list_id WHERE p.email = 'anna@example.org' AND e.kind = 'unsubscribed'")
    assert [tuple(r) for r in events] == [("page", campaign_id, LIST)]
    axe.assert_clean()


# ---- 2. subscribe, then confirm from the mailed link -----------------------------------------------------

def test_subscribe_and_confirm_from_the_mail(site: Site, page: Page, request: pytest.FixtureRequest) -> None:
    axe = AxeLog()
    page.goto(site.base + "/subscribe")
    assert page.locator("html").get_attribute("lang") == "it"
    axe.check(page, "subscribe form")

    page.get_by_label(IT["subscribe_name"], exact=True).click()
    page.keyboard.type("Chiara Neri")
    page.keyboard.press("Tab")  # to the address field, as a person would
    assert page.evaluate("document.activeElement.id") == "email"
    page.keyboard.type("chiara@example.org")
    assert page.get_by_label(IT["subscribe_email"], exact=True).input_value() == "chiara@example.org"
    assert page.get_by_label("Work in Progress", exact=True).is_checked()  # the one list is offered, ticked
    consent = page.get_by_label(IT["subscribe_consent"], exact=True)
    consent.focus()
    page.keyboard.press("Space")
    assert consent.is_checked()
    shot(page, request, "filled")
    page.get_by_role("button", name=IT["subscribe_button"]).focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.locator("h1").inner_text() == IT["subscribe_sent_title"]
    axe.check(page, "subscribe sent page")
    assert site.rows("SELECT count(*) FROM subscriber WHERE email = 'chiara@example.org'")[0][0] == 0  # nothing stored yet

    message = site.wait_for_mail("chiara@example.org", "/confirm/")
    link = link_in(text_body(message), site.base, "/confirm/")
    page.goto(link)
    assert "chiara@example.org" in page.locator("main p.lead").inner_text()
    axe.check(page, "confirm page")
    assert site.rows("SELECT count(*) FROM subscriber WHERE email = 'chiara@example.org'")[0][0] == 0  # GET changed nothing
    shot(page, request, "confirm")
    with page.expect_navigation():
        page.get_by_role("button", name=IT["confirm_button"]).click()
    assert page.locator("h1").inner_text() == IT["confirm_done_title"]
    axe.check(page, "confirm done page")
    shot(page, request)

    [(status, name, consent_text, source)] = site.rows(
        "SELECT status, name, consent_text, consent_source FROM subscriber WHERE email = 'chiara@example.org'")
    assert (status, name) == ("active", "Chiara Neri")
    assert consent_text == IT["subscribe_consent"] and source.endswith("double-opt-in")
    assert site.list_status("chiara@example.org") == "active"
    axe.assert_clean()


# ---- 3. an operator reads a campaign report ----------------------------------------------------------------

def test_operator_logs_in_and_reads_a_campaign_report(site: Site, page: Page, request: pytest.FixtureRequest) -> None:
    # three domains with 3, 2 and 1 deliveries, so the domain chart has bars of different lengths
    add_people(site, "anna@example.org", "bruno@example.org", "ghost@example.org", "carla@example.net",
               "dario@example.net", "elena@example.com")
    assert site.mailer.add_subscriber("frank@example.com", LIST, name="Frank", language="en")  # gets the English edition
    campaign_id = site.send_issue()
    axe = AxeLog()

    site.mailer.add_admin_user("operatrice", PASSWORD)
    page.goto(site.base + "/admin/")
    assert page.url.startswith(site.base + "/admin/login")  # anonymous: sent to the login
    axe.check(page, "admin login")
    page.get_by_label("Nome utente", exact=True).fill("operatrice")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Accedi").click()
    assert page.url == site.base + "/admin/"
    assert page.locator("h1").inner_text() == "Campagne"
    axe.check(page, "admin campaigns")

    with page.expect_navigation():
        page.get_by_role("link", name="work-in-progress 2026-05").click()
    assert page.url == f"{site.base}/admin/campaigns/{campaign_id}"
    chart = page.locator("#chart-timeline svg[role=img]")
    assert chart.count() == 1 and chart.is_visible()
    box = chart.bounding_box()
    assert box is not None and box["width"] > 200 and box["height"] > 100
    bounce_row = page.locator("main table tbody tr", has_text="ghost@example.org")
    assert bounce_row.count() == 1 and bounce_row.is_visible()
    assert "User unknown" in bounce_row.inner_text() and "permanente" in bounce_row.inner_text()
    by_reason = page.locator("main table", has=page.locator("caption", has_text="Consegne rimbalzate per motivo"))
    assert by_reason.locator("tbody tr").all_inner_texts() == ["indirizzo inesistente\tpermanente\tdurante l'invio\t1"]
    by_domain = page.locator("main table", has=page.locator("caption", has_text="per dominio del destinatario"))
    assert by_domain.locator("tbody tr").all_inner_texts() == ["example.org\t1\t0"]
    assert "User unknown" in page.locator("main .chart").nth(2).inner_text()  # the top reasons chart
    editions = page.locator("main table", has=page.locator("th", has_text="English"))
    assert editions.count() == 1 and editions.locator("thead th").all_inner_texts()[1:] == ["English", "Italiano"]
    sent = editions.locator("tbody tr").filter(has=page.get_by_role("rowheader", name="inviati", exact=True)).locator("td").all_inner_texts()
    assert sent == ["1", "5"], sent  # frank in English; six Italians, one of them bounced
    axe.check(page, "admin campaign report")
    shot(page, request)
    axe.assert_clean()

    # The bars are drawn as long as their numbers say: each rect's rendered width (in the SVG's user units)
    # is its width attribute, so 3, 2 and 1 deliveries show as 3:2:1 and the value labels sit past the bars.
    drawn = page.evaluate("""() => [...document.querySelectorAll('.chart svg')].slice(1).flatMap(svg => {
        const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
        return [...svg.querySelectorAll('rect.bar')].map(r => ({
            chart: svg.id || svg.getAttribute('aria-labelledby'), attribute: Number(r.getAttribute('width')),
            rendered: Math.round(r.getBoundingClientRect().width / scale * 10) / 10}));
    })""")
    assert len(drawn) == 4, drawn  # 3 domains + 1 bounce reason
    wrong = [d for d in drawn if abs(d["rendered"] - d["attribute"]) > 1]
    assert wrong == [], f"bars not drawn at their length (a page stylesheet overrides their width): {wrong}"

    # Returned mail, reached from the menu with the keyboard alone: a question kept for review, an auto-reply.
    site.mailer.take_in(b"From: someone@example.org\nSubject: Una domanda sulla newsletter\n\nBuongiorno...\n")
    site.mailer.take_in(b"From: anna@example.org\nSubject: Fuori sede\nAuto-Submitted: auto-replied\n\nTorno lunedi.\n")
    menu = page.get_by_role("link", name="Posta di ritorno")
    menu.focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == f"{site.base}/admin/inbox" and page.locator("h1").inner_text() == "Posta di ritorno"
    rows = page.locator("main table tbody tr").all_inner_texts()
    assert len(rows) == 2 and "da esaminare" in rows[1] and "risposta automatica" in rows[0], rows
    axe.check(page, "admin returned mail")
    shot(page, request, "inbox")
    axe.assert_clean()


# ---- 4. every other page -------------------------------------------------------------------------------------

def test_every_other_public_page_passes_axe(site: Site, page: Page, context: BrowserContext,
                                            request: pytest.FixtureRequest) -> None:
    add_people(site, "anna@example.org", "bruno@example.org")
    site.send_issue()
    axe = AxeLog()

    page.goto(site.base + "/unsubscribe")
    axe.check(page, "unsubscribe form")
    page.get_by_label(IT["form_email"], exact=True).fill("bruno@example.org")
    with page.expect_navigation():
        page.get_by_role("button", name=IT["form_button"]).click()
    assert page.locator("h1").inner_text() == IT["form_sent_title"]
    axe.check(page, "unsubscribe form sent")
    page.goto(link_in(text_body(site.wait_for_mail("bruno@example.org", "/unsubscribe/")), site.base, "/unsubscribe/"))
    assert "bruno@example.org" in page.locator("main p.lead").inner_text()
    axe.check(page, "unsubscribe page from the mailed link")

    [received] = site.mails_to("anna@example.org")
    page.goto(link_in(text_body(parse(received)), site.base, "/p/"))
    assert page.locator("h1").inner_text() == IT["preferences_title"]
    assert "anna@example.org" in page.locator("main p.lead").inner_text()
    axe.check(page, "preferences")

    page.goto(site.base + "/archive/")
    assert page.url == site.base + "/archive/work-in-progress/"
    axe.check(page, "archive index")
    with page.expect_navigation():
        page.locator("main a[href='/archive/work-in-progress/2026-05']").click()
    assert "CITIES MISSION CONFERENCE 2026" in page.inner_text("body")
    archived = AxeLog()
    archived.check(page, "archived issue (mail HTML)")

    response = page.goto(site.base + "/u/garbage")
    assert response is not None and response.status == 400
    assert page.locator("h1").inner_text() == IT["bad_link_title"]
    axe.check(page, "bad link (400)")
    response = page.goto(site.base + "/no-such-page")
    assert response is not None and response.status == 404
    assert page.locator("h1").inner_text() == IT["not_found_title"]
    axe.check(page, "not found (404)")

    phone = context.new_page()
    try:
        phone.set_viewport_size({"width": 375, "height": 800})
        phone.goto(site.base + "/subscribe")
        phone.wait_for_load_state("load")
        assert phone.evaluate("window.innerWidth") == 375
        assert phone.evaluate("document.documentElement.scrollWidth") <= 375  # no sideways scrolling
        shot(phone, request, "phone-subscribe")
    finally:
        phone.close()
    axe.assert_clean()
    archived.assert_clean()


def test_admin_pages_pass_axe(site: Site, page: Page, request: pytest.FixtureRequest) -> None:
    add_people(site, "anna@example.org", "bruno@example.org", "ghost@example.org")
    site.send_issue()
    axe = AxeLog()
    log_in(page, site, "/admin/bounces")
    assert page.url == site.base + "/admin/bounces"  # the login goes back where the operator was headed
    assert page.locator("main table tbody tr", has_text="ghost@example.org").count() == 1
    axe.check(page, "admin bounce log")
    page.goto(site.base + "/admin/subscribers?q=example")
    assert page.locator("main table tbody tr").count() == 3
    axe.check(page, "admin subscriber search")
    with page.expect_navigation():
        page.get_by_role("link", name="anna@example.org").click()
    assert page.locator("h1").inner_text() == "anna@example.org"
    axe.check(page, "admin subscriber")
    shot(page, request)
    axe.assert_clean()

    # The operators' pages speak the language their <html lang> declares (WCAG 3.1.1): Italian here, from
    # the browser's Accept-Language, and English when asked.
    headings = {"/admin/": ("Campagne", "Campaigns"), "/admin/bounces": ("Registro dei rimbalzi", "Bounce log"),
                "/admin/subscribers?q=example": ("Iscritti", "Subscribers")}
    for path, (italian, english) in headings.items():
        page.goto(site.base + path)
        assert (page.locator("html").get_attribute("lang"), page.locator("main h1").inner_text()) == ("it", italian)
        page.goto(site.base + path + ("&" if "?" in path else "?") + "lang=en")
        assert (page.locator("html").get_attribute("lang"), page.locator("main h1").inner_text()) == ("en", english)


# ---- 5. nothing from another origin --------------------------------------------------------------------------

def test_pages_load_nothing_from_another_origin(site: Site, page: Page) -> None:
    add_people(site, "anna@example.org", "ghost@example.org")
    campaign_id = site.send_issue()
    message = parse(site.mails_to("anna@example.org")[0])
    body = text_body(message)
    paths = ["/subscribe", "/unsubscribe", "/archive/work-in-progress/", "/archive/work-in-progress/2026-05",
             "/u/garbage", "/no-such-page", http_link(message, site.base)[len(site.base):],
             link_in(body, site.base, "/p/")[len(site.base):]]
    for path in paths:
        page.goto(site.base + path)
        page.wait_for_load_state("load")
    log_in(page, site)
    for path in ["/admin/", f"/admin/campaigns/{campaign_id}", "/admin/bounces", "/admin/subscribers?q=anna"]:
        page.goto(site.base + path)
        page.wait_for_load_state("load")
    assert len(site.requests) > len(paths)  # the stylesheets and fonts were seen too
    foreign = sorted({u for u in site.requests if not (u.startswith(site.base + "/") or u.startswith("data:"))})
    assert foreign == []


# ---- 6. keyboard on the signup form ----------------------------------------------------------------------------

def test_subscribe_form_is_keyboard_operable_with_visible_focus(site: Site, page: Page) -> None:
    page.goto(site.base + "/subscribe")
    page.wait_for_load_state("load")
    page.evaluate("() => document.fonts.ready.then(() => true)")
    seen: list[str] = []
    unstyled: list[str] = []
    for _ in range(20):
        page.keyboard.press("Tab")
        focus = page.evaluate("""() => {
            const el = document.activeElement;
            const style = getComputedStyle(el);
            return {id: el.id, tag: el.tagName.toLowerCase(), type: el.type || '', text: (el.innerText || '').trim(),
                    outline: style.outlineStyle === 'none' || style.outlineWidth === '0px' ? 'none' : style.outlineStyle,
                    shadow: style.boxShadow};
        }""")
        key = focus["id"] or f"{focus['tag']}:{focus['type'] or focus['text'][:40]}"
        seen.append(key)
        if focus["tag"] != "body" and focus["outline"] == "none" and focus["shadow"] == "none":
            unstyled.append(key)
    assert {"name", "email", "language-it", "consent", "button:submit"} <= set(seen), seen
    assert any(key.startswith("list-") for key in seen), seen  # the newsletter checkbox
    assert "website" not in seen  # the honeypot is out of the tab order
    assert unstyled == [], f"focus not visible on {unstyled}"
