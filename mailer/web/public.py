"""Recipients' pages: unsubscribe (link, one-click, form), subscribe and confirm, preferences, archive.

GET never changes anything (mail scanners follow links); every change is a POST. The List-Unsubscribe
link's POST works with no cookie and no CSRF token, as RFC 8058 requires: the signed token is the authority.
"""
from __future__ import annotations

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from mailer.app import Mailer
from mailer.settings import LANGUAGES
from mailer.web.errors import TooManyRequests
from mailer.web.pages import language_of, render
from mailer.web.security import MAIL_CSP, RateLimiter, client_key
from subscribers.errors import InvalidAddress, InvalidToken
from subscribers.store import normalise_address

ONE_CLICK = "List-Unsubscribe=One-Click"


def mailer_of(request: Request) -> Mailer:
    return request.app.state.mailer  # type: ignore[no-any-return]


def limiter_of(request: Request) -> RateLimiter:
    return request.app.state.limiter  # type: ignore[no-any-return]


def limit(request: Request, rule: str, key: str | None = None) -> None:
    """Count a hit against a rule, for the client (no key) or for the key given (an address, a username)."""
    if not limiter_of(request).allow(rule, key or client_key(request)):
        raise TooManyRequests()


async def home(request: Request) -> Response:
    return RedirectResponse("/subscribe", status_code=303)


# ---- the List-Unsubscribe link, and the link the form mails ---------------------------------------------

async def unsubscribe_link(request: Request) -> Response:
    """GET: a page naming the newsletter and the address, with one button. POST: unsubscribe (one-click
    from a mail client, or the page's button); the answer is 200 either way, never a redirect."""
    return await _unsubscribe(request, from_form=False)


async def unsubscribe_form_link(request: Request) -> Response:
    """The link the unsubscribe form mails: the same page and the same POST, with a 24-hour token."""
    return await _unsubscribe(request, from_form=True)


async def _unsubscribe(request: Request, *, from_form: bool) -> Response:
    token = request.path_params["token"]
    mailer = mailer_of(request)
    if request.method == "GET":
        target = await run_in_threadpool(mailer.unsubscribe_target, token, from_form=from_form)
        return render(request, "unsubscribe.html.j2", language=language_of(request, target.language), target=target, done=False)
    limit(request, "link_per_client")
    form = await request.form()
    one_click = form.get("List-Unsubscribe") == "One-Click"
    method = "form" if from_form else ("one-click" if one_click else "page")
    target = await run_in_threadpool(mailer.unsubscribe, token, method=method, from_form=from_form)
    if one_click:
        return Response("unsubscribed\n", status_code=200, media_type="text/plain")
    return render(request, "unsubscribe.html.j2", language=language_of(request, target.language), target=target, done=True)


# ---- the unsubscribe form: type your address, get a link ------------------------------------------------

async def unsubscribe_form(request: Request) -> Response:
    mailer = mailer_of(request)
    if request.method == "GET":
        return render(request, "unsubscribe_form.html.j2", stamp=mailer.signer.form_stamp(), error="", email="")
    form = await request.form()
    email = _text(form, "email")
    if not _human(request, form):
        return render(request, "unsubscribe_form.html.j2", stamp=mailer.signer.form_stamp(), error="subscribe_error_fast", email=email, status=400)
    limit(request, "form_per_client")
    limit(request, "form_per_address", f"unsubscribe:{email}")
    response = render(request, "unsubscribe_form_sent.html.j2")  # the same page whether or not the address is known
    response.background = BackgroundTask(mailer.mail_unsubscribe_link, email)  # the lookup too comes after the answer
    return response


# ---- subscribe with double opt-in ----------------------------------------------------------------------

async def subscribe(request: Request) -> Response:
    mailer = mailer_of(request)
    offered = await run_in_threadpool(mailer.offered_lists)
    lang = language_of(request)
    if request.method == "GET":
        return _signup_page(request, offered, lang, {}, {"language": lang, "lists": [o.id for o in offered][:1]})
    form = await request.form()
    name, email, lists = _text(form, "name"), _text(form, "email"), list_ids(form)
    language = _text(form, "language") if _text(form, "language") in LANGUAGES else lang
    errors: dict[str, str] = {}
    if not _human(request, form):
        errors["form"] = "subscribe_error_fast"
    if form.get("consent") != "yes":
        errors["consent"] = "subscribe_error_consent"
    if not lists or not set(lists) <= {o.id for o in offered}:
        errors["lists"] = "subscribe_error_lists"
    try:
        email = normalise_address(email)
    except InvalidAddress:
        errors["email"] = "subscribe_error_email"
    if errors:
        values = {"name": name, "email": email, "language": language, "lists": lists}
        return _signup_page(request, offered, lang, errors, values, status=400)
    limit(request, "form_per_client")
    limit(request, "form_per_address", f"subscribe:{email}")
    response = render(request, "subscribe_sent.html.j2")  # the same whether the address is new, known or limited
    response.background = BackgroundTask(  # looking the address up comes after the answer, so timing tells nothing
        mailer.mail_signup_confirmation, email=email, name=name, language=language, list_ids=lists,
    )
    return response


def _signup_page(request: Request, offered: list, lang: str, errors: dict[str, str], values: dict, status: int = 200) -> Response:  # type: ignore[type-arg]
    mailer = mailer_of(request)
    return render(request, "subscribe.html.j2", language=lang, offered=offered, errors=errors, values=values,
                  stamp=mailer.signer.form_stamp(), status=status)


async def confirm(request: Request) -> Response:
    """GET shows what the link would confirm, with a button; POST confirms (scanners do not subscribe anyone)."""
    token = request.path_params["token"]
    mailer = mailer_of(request)
    if request.method == "GET":
        view = await run_in_threadpool(mailer.signup_target, token)
        return render(request, "confirm.html.j2", language=language_of(request, view.language), view=view, done=False)
    limit(request, "link_per_client")
    view = await run_in_threadpool(mailer.confirm_signup, token)
    return render(request, "confirm.html.j2", language=language_of(request, view.language), view=view, done=True)


# ---- preferences ----------------------------------------------------------------------------------------

async def preferences(request: Request) -> Response:
    token = request.path_params["token"]
    mailer = mailer_of(request)
    saved: bool | None = None
    if request.method == "POST":
        limit(request, "link_per_client")
        form = await request.form()
        if form.get("action") == "leave":
            target = await run_in_threadpool(mailer.leave_all, token)
            return render(request, "unsubscribe.html.j2", language=language_of(request, target.language), target=target, done=True)
        view, saved = await run_in_threadpool(mailer.save_preferences, token, language=_text(form, "language"), list_ids=list_ids(form))
    else:
        view = await run_in_threadpool(mailer.preferences, token)
    return render(request, "preferences.html.j2", language=language_of(request, view.language), view=view, saved=saved, token=token)


# ---- archive --------------------------------------------------------------------------------------------

async def archive_root(request: Request) -> Response:
    newsletters = list(mailer_of(request).settings.newsletters.values())
    if len(newsletters) == 1:
        return RedirectResponse(f"/archive/{newsletters[0].id}/", status_code=303)
    return render(request, "archive_root.html.j2", newsletters=newsletters)


async def archive_index(request: Request) -> Response:
    mailer = mailer_of(request)
    newsletter = mailer.archived_newsletter(request.path_params["newsletter"])
    issues = await run_in_threadpool(mailer.archive_issues, newsletter.id)
    return render(request, "archive_index.html.j2", newsletter=newsletter, issues=issues)


async def archive_issue(request: Request) -> Response:
    mailer = mailer_of(request)
    params = request.path_params
    html = await run_in_threadpool(mailer.archive_page, params["newsletter"], params["issue"], params.get("language"))
    return HTMLResponse(html, headers={"Content-Security-Policy": MAIL_CSP, "Cache-Control": "public, max-age=300"})


async def archive_feed(request: Request) -> Response:
    mailer = mailer_of(request)
    newsletter = mailer.archived_newsletter(request.path_params["newsletter"])
    issues = await run_in_threadpool(mailer.archive_issues, newsletter.id)
    from mailer.web.pages import environment

    xml = environment().get_template("feed.atom.j2").render(
        newsletter=newsletter, issues=issues, base_url=mailer.settings.base_url,
        updated=max((i.sent_at for i in issues), default=None),
    )
    return Response(xml, media_type="application/atom+xml; charset=utf-8", headers={"Cache-Control": "public, max-age=300"})


# ---- helpers --------------------------------------------------------------------------------------------

def small_number(value: object) -> int | None:
    """A database id from a form or a URL: ASCII digits, at most 9 of them (not '²', not 5,000 digits)."""
    text = str(value)
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else None


def list_ids(form: FormData) -> list[int]:
    return [n for n in (small_number(v) for v in form.getlist("lists")) if n is not None]


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip()[:320] if isinstance(value, str) else ""


def _human(request: Request, form: FormData) -> bool:
    """The honeypot is empty and the form took a person's time to fill in (its signed stamp says when it was served)."""
    if _text(form, "website"):
        return False
    try:
        age = mailer_of(request).signer.form_age(_text(form, "stamp") or "-")
    except InvalidToken:
        return False
    return age >= limiter_of(request).limits.min_fill_seconds


async def to_slash(request: Request) -> Response:
    """/archive -> /archive/ with a relative Location (never built from the Host a request claims)."""
    return RedirectResponse(request.url.path + "/", status_code=308)


routes = [
    Route("/", home),
    Route("/archive", to_slash),
    Route("/archive/{newsletter}", to_slash),
    Route("/admin", to_slash),
    Route("/u/{token}", unsubscribe_link, methods=["GET", "POST"]),
    Route("/unsubscribe", unsubscribe_form, methods=["GET", "POST"]),
    Route("/unsubscribe/{token}", unsubscribe_form_link, methods=["GET", "POST"]),
    Route("/subscribe", subscribe, methods=["GET", "POST"]),
    Route("/confirm/{token}", confirm, methods=["GET", "POST"]),
    Route("/p/{token}", preferences, methods=["GET", "POST"]),  # short: the text part's line stays within 78 columns
    Route("/preferences/{token}", preferences, methods=["GET", "POST"]),  # the path of links sent before
    Route("/archive/", archive_root),
    Route("/archive/{newsletter}/", archive_index),
    Route("/archive/{newsletter}/feed.atom", archive_feed),
    Route("/archive/{newsletter}/{issue}", archive_issue),
    Route("/archive/{newsletter}/{issue}/{language}", archive_issue),  # another language edition
]
