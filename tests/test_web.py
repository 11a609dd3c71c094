"""The web app in process (httpx over ASGI), with a real SQLite file and a real SMTP server for its notices."""
from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest
from sqlalchemy import text
from starlette.applications import Starlette

from mailer.app import Mailer
from mailer.capture import CaptureServer
from mailer.issue import load_issue
from mailer.settings import Settings, parse_smtp_url
from mailer.web import create_app
from mailer.web.admin import ADMIN_PATHS
from mailer.web.security import Limits
from subscribers.errors import InvalidToken
from tests.conftest import ISSUE_2026, add_people

Scenario = Callable[[httpx.AsyncClient, Mailer, CaptureServer], Awaitable[Any]]
AppScenario = Callable[[httpx.AsyncClient, Mailer, CaptureServer, Starlette], Awaitable[Any]]
NO_WAIT = Limits(min_fill_seconds=0)


def run_app(settings: Settings, scenario: AppScenario, *, limits: Limits = NO_WAIT, rule: Any = None) -> Any:
    """A capture relay, the Mailer core over the test's SQLite file, the app, and an httpx client on it;
    the scenario gets all four (the app, to call or wrap it directly)."""
    async def main() -> Any:
        async with CaptureServer(rule=rule) as relay:
            mailer = Mailer(settings.with_overrides(smtp=parse_smtp_url(relay.url)))
            app = create_app(mailer, limits=limits)
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                try:
                    return await scenario(client, mailer, relay, app)
                finally:
                    mailer.close()
    return asyncio.run(main())


def run(settings: Settings, scenario: Scenario, *, limits: Limits = NO_WAIT, rule: Any = None) -> Any:
    """run_app for scenarios that do not need the app itself."""
    return run_app(settings, lambda client, mailer, relay, app: scenario(client, mailer, relay), limits=limits, rule=rule)


def rows(mailer: Mailer, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with mailer.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def subscribed(mailer: Mailer, email: str) -> bool:
    return bool(rows(mailer, "SELECT 1 FROM subscription m JOIN subscriber s ON s.id = m.subscriber_id "
                             "WHERE s.email = :e AND m.status = 'active' AND s.status = 'active'", e=email))


def stamp_of(page: str) -> str:
    found = re.search(r'name="stamp" value="([^"]+)"', page)
    assert found, "no form stamp"
    return found.group(1)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF token"
    return found.group(1)


def body_of(data: bytes) -> str:
    message = message_from_bytes(data, policy=policy.default)
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


async def send_issue(mailer: Mailer, people: list[str]) -> int:
    for email in people:
        mailer.add_subscriber(email, "work-in-progress", name="Test")
    plan = mailer.plan_send(load_issue(ISSUE_2026), None)
    campaign = mailer.start_send(plan)
    await mailer.run_send(campaign, plan.composed_by_language)
    assert campaign.id is not None
    return campaign.id


def link_token(mailer: Mailer, email: str, campaign_id: int = 0) -> str:
    (sid, version), = rows(mailer, "SELECT id, token_version FROM subscriber WHERE email = :e", e=email)
    (lid,), = rows(mailer, "SELECT id FROM mailing_list WHERE name = 'work-in-progress'")
    return mailer.signer.unsubscribe_token(sid, lid, version, campaign_id)


# ---- the List-Unsubscribe link -------------------------------------------------------------------------

def test_the_unsubscribe_link_from_a_sent_message_asks_then_unsubscribes(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        campaign_id = await send_issue(mailer, ["anna@example.org", "ben@example.org"])
        message = next(m for m in relay.messages if m.recipients == ["anna@example.org"])
        header = str(message_from_bytes(message.data, policy=policy.default)["List-Unsubscribe"])
        path = re.search(r"<http://localhost:8000(/u/[^>]+)>", header).group(1)  # type: ignore[union-attr]
        page = await client.get(path)
        assert page.status_code == 200 and "anna@example.org" in page.text and "Work in Progress" in page.text
        await client.get(path)
        assert subscribed(mailer, "anna@example.org")  # GET never changes anything
        done = await client.post(path)
        assert done.status_code == 200 and "Iscrizione annullata" in done.text
        assert not subscribed(mailer, "anna@example.org") and subscribed(mailer, "ben@example.org")
        again = await client.post(path)
        assert again.status_code == 200 and "non era più iscritto" in again.text  # harmless repeat
        events = rows(mailer, "SELECT kind, method, campaign_id FROM subscriber_event WHERE kind != 'subscribed'")
        assert events == [("unsubscribed", "page", campaign_id)]
    run(settings, scenario)


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_post_unsubscribes_without_cookie_or_redirect(settings: Settings, encoding: str) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        mailer.add_subscriber("carla@example.org", "work-in-progress")
        path = f"/u/{link_token(mailer, 'carla@example.org', campaign_id=42)}"
        if encoding == "urlencoded":
            response = await client.post(path, data={"List-Unsubscribe": "One-Click"})
        else:
            response = await client.post(path, files={"List-Unsubscribe": (None, "One-Click")})
        assert response.status_code == 200 and not response.is_redirect and "set-cookie" not in response.headers
        assert not subscribed(mailer, "carla@example.org")
        assert (await client.post(path, data={"List-Unsubscribe": "One-Click"})).status_code == 200
        assert rows(mailer, "SELECT method, campaign_id FROM subscriber_event WHERE kind = 'unsubscribed'") == [("one-click", 42)]
    run(settings, scenario)


@pytest.mark.parametrize("mutate", [
    lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # tampered signature
    lambda t: t.split(".")[0],  # truncated
    lambda t: "WzksMSwwXQ." + t.split(".", 1)[1],  # forged payload: [9,1,0] with another's signature
    lambda t: "",
    lambda t: "x" * 5000,
])
def test_bad_tokens_get_a_friendly_400_and_change_nothing(settings: Settings, mutate: Callable[[str], str]) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        mailer.add_subscriber("dora@example.org", "work-in-progress")
        bad = mutate(link_token(mailer, "dora@example.org"))
        for method in ("GET", "POST"):
            for prefix in ("/u/", "/unsubscribe/", "/confirm/", "/preferences/"):
                response = await client.request(method, prefix + bad, data={"List-Unsubscribe": "One-Click"})
                assert response.status_code in (307, 400, 404, 405), (method, prefix, response.status_code)
                assert "Traceback" not in response.text and "dora@example.org" not in response.text
        assert subscribed(mailer, "dora@example.org")
    run(settings, scenario)


def test_a_token_for_one_purpose_never_works_for_another(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        mailer.add_subscriber("eva@example.org", "work-in-progress")
        (sid,), = rows(mailer, "SELECT id FROM subscriber WHERE email = 'eva@example.org'")
        unsubscribe, manage = link_token(mailer, "eva@example.org"), mailer.signer.manage_token(sid, 0)
        form_link = mailer.signer.unsubscribe_link_token(sid, 0)
        for path in (f"/u/{manage}", f"/u/{form_link}", f"/preferences/{unsubscribe}", f"/unsubscribe/{unsubscribe}",
                     f"/confirm/{unsubscribe}", f"/confirm/{manage}"):
            response = await client.post(path, data={"List-Unsubscribe": "One-Click"})
            assert response.status_code == 400, path
            assert "Link non valido" in response.text
        assert subscribed(mailer, "eva@example.org")
    run(settings, scenario)


def test_revoked_and_expired_links_are_refused(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        mailer.add_subscriber("fabio@example.org", "work-in-progress")
        path = f"/u/{link_token(mailer, 'fabio@example.org')}"
        with mailer.engine.begin() as conn:
            conn.execute(text("UPDATE subscriber SET token_version = token_version + 1"))
        assert (await client.get(path)).status_code == 400
        (sid,), = rows(mailer, "SELECT id FROM subscriber")
        form_link = mailer.signer.unsubscribe_link_token(sid, 1)
        assert (await client.get(f"/unsubscribe/{form_link}")).status_code == 200  # within its 24 hours
        await asyncio.sleep(2.1)
        with pytest.raises(InvalidToken, match="expired"):
            mailer.signer.read_unsubscribe_link_token(form_link, max_age=1)  # the same check, with a 1 s window
        assert subscribed(mailer, "fabio@example.org")
    run(settings, scenario)


# ---- the unsubscribe form ------------------------------------------------------------------------------

def test_the_form_answers_the_same_for_known_and_unknown_addresses(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        mailer.add_subscriber("gina@example.org", "work-in-progress", language="en")
        answers = []
        for email in ("gina@example.org", "nobody@example.org"):
            stamp = stamp_of((await client.get("/unsubscribe")).text)
            response = await client.post("/unsubscribe", data={"email": email, "stamp": stamp, "website": ""})
            answers.append((response.status_code, response.text))
        assert answers[0] == answers[1] and answers[0][0] == 200
        assert [m.recipients for m in relay.messages] == [["gina@example.org"]]
        message = message_from_bytes(relay.messages[0].data, policy=policy.default)
        assert message["Auto-Submitted"] == "auto-generated" and message["List-Unsubscribe"] is None
        assert message["Subject"].startswith("Unsubscribe from")  # her language
        link = re.search(r"http://localhost:8000(/unsubscribe/\S+)", body_of(relay.messages[0].data)).group(1)  # type: ignore[union-attr]
        assert subscribed(mailer, "gina@example.org")
        assert "gina@example.org" in (await client.get(link)).text
        assert (await client.post(link)).status_code == 200 and not subscribed(mailer, "gina@example.org")
        assert rows(mailer, "SELECT kind, status, email FROM notice") == [("unsubscribe-link", "sent", "gina@example.org")]
        (sid,), = rows(mailer, "SELECT id FROM subscriber")
        assert "notice unsubscribe-link (sent)" in [line.what for line in mailer.subscriber_history(sid)]
        assert rows(mailer, "SELECT method FROM subscriber_event WHERE kind = 'unsubscribed'") == [("form",)]
    run(settings, scenario)


def test_the_form_is_rate_limited_per_client_and_per_address(settings: Settings) -> None:
    limits = Limits(min_fill_seconds=0, form_per_client="4/hour", form_per_address="2/hour")

    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        mailer.add_subscriber("hugo@example.org", "work-in-progress")

        async def ask(email: str) -> int:
            stamp = stamp_of((await client.get("/unsubscribe")).text)
            return (await client.post("/unsubscribe", data={"email": email, "stamp": stamp})).status_code

        assert [await ask("hugo@example.org") for _ in range(3)] == [200, 200, 429]
        assert [await ask(f"x{n}@example.org") for n in range(2)] == [200, 429]  # the client's 4 are used up
        assert len(relay.messages) == 2
    run(settings, scenario, limits=limits)


# ---- subscribe with double opt-in ----------------------------------------------------------------------

async def fill_signup(client: httpx.AsyncClient, **fields: Any) -> httpx.Response:
    page = await client.get("/subscribe")
    lists = re.findall(r'name="lists" id="list-\d+" value="(\d+)"', page.text)
    data = {"name": "Ines Neri", "email": "ines@example.org", "language": "en", "lists": lists[0], "consent": "yes",
            "stamp": stamp_of(page.text), "website": ""} | fields
    return await client.post("/subscribe", data=data)


def test_subscribe_confirm_records_consent_and_a_second_click_changes_nothing(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        response = await fill_signup(client)
        assert response.status_code == 200 and "Conferma la tua iscrizione" in response.text
        assert rows(mailer, "SELECT count(*) FROM subscriber") == [(0,)]  # nothing stored before confirmation
        confirmation = message_from_bytes(relay.messages[0].data, policy=policy.default)
        assert confirmation["List-Unsubscribe"] is None and confirmation["Subject"].startswith("Confirm your subscription")
        link = re.search(r"http://localhost:8000(/confirm/\S+)", body_of(relay.messages[0].data)).group(1)  # type: ignore[union-attr]
        page = await client.get(link)
        assert page.status_code == 200 and "ines@example.org" in page.text and "Confirm" in page.text
        assert rows(mailer, "SELECT count(*) FROM subscriber") == [(0,)]  # GET confirms nothing
        assert (await client.post(link)).status_code == 200
        assert subscribed(mailer, "ines@example.org")
        (name, language, source, consent, at), = rows(mailer, "SELECT name, language, consent_source, consent_text, consent_at FROM subscriber")
        assert (name, language, source) == ("Ines Neri", "en", "form:double-opt-in") and at
        assert consent.startswith("I agree that the City of Turin")
        await client.post(link)
        assert rows(mailer, "SELECT kind, method FROM subscriber_event") == [("confirmed", "form")]
    run(settings, scenario)


def test_someone_who_left_comes_back_through_the_confirmation(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        mailer.add_subscriber("ines@example.org", "work-in-progress")
        mailer.remove_subscriber("ines@example.org")
        with mailer.engine.begin() as conn:
            conn.execute(text("UPDATE subscriber SET status = 'bounced'"))
        await fill_signup(client)
        link = re.search(r"http://localhost:8000(/confirm/\S+)", body_of(relay.messages[0].data)).group(1)  # type: ignore[union-attr]
        await client.post(link)
        assert subscribed(mailer, "ines@example.org")
    run(settings, scenario)


@pytest.mark.parametrize(("fields", "reason"), [
    ({"website": "http://spam.example"}, "honeypot"),
    ({"stamp": "forged"}, "stamp"),
    ({"consent": ""}, "consent"),
    ({"email": "not an address"}, "address"),
    ({"lists": "999"}, "list"),
])
def test_signups_that_fail_the_checks_send_nothing(settings: Settings, fields: dict[str, str], reason: str) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        response = await fill_signup(client, **fields)
        assert response.status_code == 400, reason
        assert 'role="alert"' in response.text
        assert relay.messages == [] and rows(mailer, "SELECT count(*) FROM notice") == [(0,)]
    run(settings, scenario)


def test_a_form_sent_faster_than_a_person_types_is_refused(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        assert (await fill_signup(client)).status_code == 400 and relay.messages == []
    run(settings, scenario, limits=Limits(min_fill_seconds=30))


def test_one_pending_confirmation_per_address_per_day(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        first, second = await fill_signup(client), await fill_signup(client, name="Someone Else")
        assert first.text == second.text and first.status_code == second.status_code == 200
        assert len(relay.messages) == 1
    run(settings, scenario)


# ---- preferences ---------------------------------------------------------------------------------------

def test_preferences_change_language_and_lists_and_leave_all(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        mailer.add_subscriber("lia@example.org", "work-in-progress")
        mailer.add_subscriber("lia@example.org", "eventi")
        (sid,), = rows(mailer, "SELECT id FROM subscriber")
        path = f"/preferences/{mailer.signer.manage_token(sid, 0, campaign_id=7)}"
        page = await client.get(path)
        assert page.status_code == 200 and page.text.count('type="checkbox"') == 2 and page.text.count("checked") >= 3
        (wip,), = rows(mailer, "SELECT id FROM mailing_list WHERE name = 'work-in-progress'")
        saved = await client.post(path, data={"language": "en", "lists": str(wip), "action": "save"})
        assert saved.status_code == 200 and "Preferences saved" in saved.text  # now in her new language
        assert rows(mailer, "SELECT language FROM subscriber") == [("en",)]
        assert rows(mailer, "SELECT l.name, m.status FROM subscription m JOIN mailing_list l ON l.id = m.list_id ORDER BY l.name") == [
            ("eventi", "unsubscribed"), ("work-in-progress", "active")]
        unchanged = await client.post(path, data={"language": "en", "lists": str(wip), "action": "save"})
        assert "Nothing changed" in unchanged.text
        left = await client.post(path, data={"action": "leave"})
        assert left.status_code == 200 and not subscribed(mailer, "lia@example.org")
        assert rows(mailer, "SELECT kind, method, campaign_id FROM subscriber_event ORDER BY id") == [
            ("subscribed", "admin", None), ("subscribed", "admin", None), ("unsubscribed", "preferences", 7),
            ("preferences", "page", 7), ("unsubscribed", "page", 7)]
    run(settings, scenario)


# ---- archive -------------------------------------------------------------------------------------------

def test_the_archive_shows_sent_issues_without_anyones_links(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        assert "Nessun numero" in (await client.get("/archive/work-in-progress/")).text
        await send_issue(mailer, ["mara@example.org"])
        index = await client.get("/archive/work-in-progress/")
        assert index.status_code == 200 and 'href="/archive/work-in-progress/2026-05"' in index.text
        issue = await client.get("/archive/work-in-progress/2026-05")
        assert issue.status_code == 200 and "CITIES MISSION CONFERENCE 2026" in issue.text
        assert "__MAILER_" not in issue.text and "/u/" not in issue.text and "/p/" not in issue.text and "/preferences/" not in issue.text
        assert "mara@example.org" not in issue.text
        assert "style-src 'unsafe-inline'" in issue.headers["content-security-policy"]
        # the "view in browser" link every message carries leads here
        sent = body_of(relay.messages[0].data)
        assert "http://localhost:8000/archive/work-in-progress/2026-05" in sent
        feed = await client.get("/archive/work-in-progress/feed.atom")
        assert feed.headers["content-type"].startswith("application/atom+xml")
        entries = ElementTree.fromstring(feed.content).findall("{http://www.w3.org/2005/Atom}entry")
        assert [e.findtext("{http://www.w3.org/2005/Atom}id") for e in entries] == ["http://localhost:8000/archive/work-in-progress/2026-05"]
        assert (await client.get("/archive/work-in-progress/2099-01")).status_code == 404
        assert (await client.get("/archive/nope/")).status_code == 404
    run(settings, scenario)


# ---- pages, languages, headers -------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/subscribe", "/unsubscribe", "/archive/work-in-progress/", "/admin/login", "/u/bad", "/nope"])
def test_every_page_has_security_headers_and_no_outside_assets(settings: Settings, path: str) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        response = await client.get(path)
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp and "script-src" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert not re.search(r'(src|href)="(https?:)?//(?!www\.comune\.torino\.it)', response.text)
    run(settings, scenario)


def test_pages_speak_the_browsers_language_unless_asked(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        english = await client.get("/subscribe", headers={"Accept-Language": "en-GB,en;q=0.9,it;q=0.5"})
        assert '<html lang="en">' in english.text and "Subscribe to the newsletter" in english.text
        italian = await client.get("/subscribe", headers={"Accept-Language": "fr, it;q=0.4"})
        assert '<html lang="it">' in italian.text
        chosen = await client.get("/subscribe?lang=en", headers={"Accept-Language": "it"})
        assert '<html lang="en">' in chosen.text
        mailer.add_subscriber("nora@example.org", "work-in-progress", language="en")
        page = await client.get(f"/u/{link_token(mailer, 'nora@example.org')}", headers={"Accept-Language": "it"})
        assert '<html lang="en">' in page.text  # the subscriber's language wins
    run(settings, scenario)


def test_a_body_too_large_is_refused_before_it_is_read(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        response = await client.post("/subscribe", content=b"a=" + b"x" * 200_000,
                                     headers={"content-type": "application/x-www-form-urlencoded"})
        assert response.status_code == 413 and relay.messages == []
    run(settings, scenario)


# ---- operators -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [*[p.replace("{id:int}", "1") for p in ADMIN_PATHS], "/admin/subscribers?q=a"])
def test_every_admin_page_refuses_anonymous_access(settings: Settings, path: str) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        await send_issue(mailer, ["olga@example.org"])
        response = await client.get(path)
        assert response.status_code == 303 and response.headers["location"].startswith("/admin/login")
        assert "olga@example.org" not in response.text
    run(settings, scenario)


async def log_in(client: httpx.AsyncClient, username: str = "redazione", password: str = "correct horse battery") -> httpx.Response:
    page = await client.get("/admin/login")
    return await client.post("/admin/login", data={"username": username, "password": password, "csrf": csrf_of(page.text)})


def test_an_operator_logs_in_and_reads_reports_and_exports(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        campaign_id = await send_issue(mailer, ["pia@example.org", "ghost@example.org", "=1+2@example.org"])
        mailer.add_admin_user("redazione", "correct horse battery")
        response = await log_in(client)
        assert response.status_code == 303 and response.headers["location"] == "/admin/"
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/admin" in cookie
        campaigns = await client.get("/admin/")
        assert f'href="/admin/campaigns/{campaign_id}"' in campaigns.text
        report = await client.get(f"/admin/campaigns/{campaign_id}")
        assert report.status_code == 200 and 'role="img"' in report.text and "User unknown" in report.text
        deliveries = (await client.get(f"/admin/campaigns/{campaign_id}/deliveries.csv")).text
        assert deliveries.splitlines()[0].startswith("email,status") and "'=1+2@example.org" in deliveries
        bounces = (await client.get("/admin/bounces.csv")).text
        assert "ghost@example.org" in bounces and "5.1.1 User unknown" in bounces
        found = await client.get("/admin/subscribers", params={"q": "pia"})
        (sid,), = rows(mailer, "SELECT id FROM subscriber WHERE email = 'pia@example.org'")
        assert f'href="/admin/subscribers/{sid}"' in found.text
        history = await client.get(f"/admin/subscribers/{sid}")
        assert "delivery sent" in history.text and "joined list" in history.text
        assert (await client.get("/admin/campaigns/999")).status_code == 404
    run(settings, scenario, rule=lambda r: "550 5.1.1 User unknown" if r.startswith("ghost") else None)


def test_login_needs_csrf_and_is_rate_limited(settings: Settings) -> None:
    limits = Limits(login_per_client="20/15 minutes", login_per_user="3/15 minutes")

    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        mailer.add_admin_user("redazione", "correct horse battery")
        await client.get("/admin/login")
        forged = await client.post("/admin/login", data={"username": "redazione", "password": "correct horse battery", "csrf": "x"})
        assert forged.status_code == 403 and "set-cookie" not in forged.headers or "operator" not in forged.text
        assert (await client.get("/admin/")).status_code == 303
        assert [(await log_in(client, password="wrong password!")).status_code for _ in range(3)] == [401, 401, 401]
        assert (await log_in(client)).status_code == 429  # even the right password waits now
        logged = await client.get("/admin/")
        assert logged.status_code == 303
        page = await client.get("/admin/login")
        logout = await client.post("/admin/logout", data={"csrf": "wrong"})
        assert logout.status_code == 403 and csrf_of(page.text)
    run(settings, scenario, limits=limits)


def test_logout_ends_the_session(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        mailer.add_admin_user("redazione", "correct horse battery")
        await log_in(client)
        page = await client.get("/admin/")
        assert page.status_code == 200
        out = await client.post("/admin/logout", data={"csrf": csrf_of(page.text)})
        assert out.status_code == 303 and (await client.get("/admin/")).status_code == 303
    run(settings, scenario)


def test_short_operator_passwords_are_refused(tmp_path: Path, settings: Settings) -> None:
    from mailer.errors import MailerError

    mailer = Mailer(settings)
    with pytest.raises(MailerError, match="at least 12"):
        mailer.add_admin_user("redazione", "short")
    assert mailer.add_admin_user("redazione", "long enough password") is True
    assert mailer.add_admin_user("redazione", "another long password") is False
    assert mailer.authenticate("redazione", "another long password") is not None
    assert mailer.authenticate("redazione", "long enough password") is None
    assert mailer.authenticate("nobody", "another long password") is None
    mailer.close()


def test_an_old_confirmation_link_does_not_bring_back_someone_who_left(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        await fill_signup(client)
        link = re.search(r"http://localhost:8000(/confirm/\S+)", body_of(relay.messages[0].data)).group(1)  # type: ignore[union-attr]
        await client.post(link)
        assert subscribed(mailer, "ines@example.org")
        await asyncio.sleep(1.1)  # link times are whole seconds
        mailer.remove_subscriber("ines@example.org")
        replay = await client.post(link)
        assert replay.status_code == 400 and not subscribed(mailer, "ines@example.org")
    run(settings, scenario)


def test_an_operator_reviews_returned_mail_and_downloads_it_as_it_arrived(settings: Settings) -> None:
    question = b"From: someone@example.org\nSubject: <b>Una domanda</b>\n\n<script>alert(1)</script>\n"

    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        await send_issue(mailer, ["pia@example.org"])
        kept = mailer.take_in(question, mailbox="maildir:/var/mail/bounces")
        away = mailer.take_in(b"From: pia@example.org\nSubject: Fuori sede\nAuto-Submitted: auto-replied\n\nTorno lunedi.\n")
        mailer.add_admin_user("redazione", "correct horse battery")
        await log_in(client)
        listing = await client.get("/admin/inbox")
        assert listing.status_code == 200 and "&lt;b&gt;Una domanda&lt;/b&gt;" in listing.text and "<script>" not in listing.text
        assert "risposta automatica" in listing.text and f'href="/admin/inbox/{kept.inbound_id}.eml"' in listing.text
        review = await client.get("/admin/inbox", params={"review": "1"})
        assert "Una domanda" in review.text and "Fuori sede" not in review.text and away.kind == "auto-reply"
        raw = await client.get(f"/admin/inbox/{kept.inbound_id}.eml")
        assert raw.content == question and raw.headers["content-disposition"].startswith("attachment")
        assert raw.headers["x-content-type-options"] == "nosniff"
        assert (await client.get("/admin/inbox/999.eml")).status_code == 404
    run(settings, scenario)


def test_a_paused_then_cancelled_campaign_says_so_and_why_in_the_pages_language(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        add_people(mailer.engine, ["pia@example.org", "ugo@example.org"])
        plan = mailer.plan_send(load_issue(ISSUE_2026), None)
        campaign = mailer.start_send(plan)  # queued for the workers, nobody sent yet
        assert campaign.id is not None
        mailer.pause_campaign(campaign.id, "link sbagliato nella notizia 3")
        mailer.add_admin_user("redazione", "correct horse battery")
        await log_in(client)
        page = (await client.get(f"/admin/campaigns/{campaign.id}", headers={"Accept-Language": "it"})).text
        assert "in pausa" in page and "Motivo: link sbagliato nella notizia 3" in page
        assert "annullati" not in page  # the cancelled row only appears when some are
        assert ">in pausa</td>" in (await client.get("/admin/", headers={"Accept-Language": "it"})).text
        mailer.cancel_campaign(campaign.id, "inviata per errore")
        page = (await client.get(f"/admin/campaigns/{campaign.id}", headers={"Accept-Language": "it"})).text
        assert "annullata" in page and "Motivo: inviata per errore" in page
        assert "annullati (campagna annullata prima del loro turno)" in page
        report = mailer.report(str(campaign.id))
        assert report.state == "cancelled: inviata per errore" and report.counts["cancelled"] == 2
    run(settings, scenario)
