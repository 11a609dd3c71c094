"""Operators' pages under /admin/: login, campaigns, a campaign's report with charts, the bounce log,
subscriber search with each person's history, CSV exports. Every page refuses anonymous access; every
form carries the session's CSRF token."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from mailer.web.charts import SERIES_COLOURS, horizontal_bars, stacked_timeline
from mailer.web.errors import Forbidden
from mailer.i18n import page_strings
from mailer.web.pages import language_of, render
from mailer.errors import NotFound
from mailer.settings import LANGUAGE_NAMES
from mailer.web.public import limit, mailer_of, small_number
from mailer.web.security import csrf_ok

Endpoint = Callable[[Request], Awaitable[Response]]
SERIES = ("sent", "deferred", "bounced", "failed", "uncertain", "skipped")


def operator_only(endpoint: Endpoint) -> Endpoint:
    @wraps(endpoint)
    async def guarded(request: Request) -> Response:
        operator, epoch = request.session.get("operator"), request.session.get("epoch")
        if not operator or not await run_in_threadpool(mailer_of(request).session_valid, operator, epoch):
            request.session.clear()  # logged out elsewhere, or the password changed: this cookie is dead
            return RedirectResponse(f"/admin/login?next={request.url.path}", status_code=303)
        return await endpoint(request)
    return guarded


def path_id(request: Request) -> int:
    """The {id} of an admin URL; a number no row can have is a 404, not a database overflow."""
    number = small_number(request.path_params["id"])
    if number is None:
        raise NotFound("no such record")
    return number


async def check_csrf(request: Request) -> None:
    form = await request.form()
    if not csrf_ok(request, form.get("csrf")):
        raise Forbidden()


async def login(request: Request) -> Response:
    if request.method == "GET":
        return render(request, "admin/login.html.j2", error=False, username="")
    await check_csrf(request)
    form = await request.form()
    username = str(form.get("username", "")).strip()[:100]  # as authenticate() reads it, so the per-user limit holds
    password = str(form.get("password", ""))[:1000]
    limit(request, "login_per_client")
    limit(request, "login_per_user", f"login:{username}")
    epoch = await run_in_threadpool(mailer_of(request).authenticate, username, password)
    if epoch is None:
        return render(request, "admin/login.html.j2", error=True, username=username, status=401)
    request.session.clear()  # a new session on login: no fixation
    request.session["operator"], request.session["epoch"] = username, epoch
    target = request.query_params.get("next", "/admin/")
    return RedirectResponse(target if target.startswith("/admin/") else "/admin/", status_code=303)


async def logout(request: Request) -> Response:
    await check_csrf(request)
    if request.session.get("operator"):
        await run_in_threadpool(mailer_of(request).end_sessions, request.session["operator"])
    request.session.clear()
    return RedirectResponse("/admin/login", status_code=303)


@operator_only
async def campaigns(request: Request) -> Response:
    lines = await run_in_threadpool(mailer_of(request).campaign_history, 100)
    return render(request, "admin/campaigns.html.j2", lines=lines, operator=request.session["operator"])


@operator_only
async def campaign(request: Request) -> Response:
    mailer = mailer_of(request)
    campaign_id = path_id(request)
    report = await run_in_threadpool(mailer.report, str(campaign_id))
    figures = await run_in_threadpool(mailer.campaign_figures, campaign_id)
    bounces = await run_in_threadpool(lambda: mailer.bounce_log(campaign_id=campaign_id, limit=50))
    a = page_strings(language_of(request))["admin"]
    labels = a["outcome_labels"]
    series = [(key, labels[key], SERIES_COLOURS[key]) for key in SERIES]
    counts = ", ".join(f"{labels[k]} {report.counts.get(k, 0)}" for k in SERIES)
    timeline = stacked_timeline(
        figures.timeline, series, id_prefix="timeline", title=a["outcomes_over_time"], no_data=a["no_data"],
        desc=a["timeline_desc"].format(bucket=a["buckets"][figures.bucket], counts=counts),
    )
    domains = horizontal_bars(
        [(domain, sum(counts.values())) for domain, counts in figures.domains], id_prefix="domains", colour=SERIES_COLOURS["sent"],
        title=a["by_domain"], desc="; ".join(f"{d}: {sum(c.values())}" for d, c in figures.domains), no_data=a["no_data"],
    )
    reasons = horizontal_bars(
        [(f"{r.code or '-'} {r.reason}", r.count) for r in report.top_reasons], id_prefix="reasons", colour=SERIES_COLOURS["bounced"],
        title=a["top_reasons"], desc="; ".join(f"{r.count} × {r.code or '-'} {r.reason}" for r in report.top_reasons), no_data=a["no_data"],
    )
    return render(request, "admin/campaign.html.j2", report=report, figures=figures, timeline=timeline, domains=domains,
                  reasons=reasons, bounces=bounces, operator=request.session["operator"], language_names=LANGUAGE_NAMES)


@operator_only
async def bounces(request: Request) -> Response:
    page = max(small_number(request.query_params.get("page", "1")) or 1, 1)
    lines = await run_in_threadpool(lambda: mailer_of(request).bounce_log(limit=100, offset=(page - 1) * 100))
    return render(request, "admin/bounces.html.j2", lines=lines, page=page, operator=request.session["operator"])


@operator_only
async def inbox(request: Request) -> Response:
    """What came back to the bounce and unsubscribe addresses; ?review=1 only what waits for an operator."""
    page = max(small_number(request.query_params.get("page", "1")) or 1, 1)
    review = request.query_params.get("review") == "1"
    lines = await run_in_threadpool(lambda: mailer_of(request).inbound_messages(review_only=review, limit=100, offset=(page - 1) * 100))
    return render(request, "admin/inbox.html.j2", lines=lines, page=page, review=review, operator=request.session["operator"])


@operator_only
async def inbound_raw(request: Request) -> Response:
    """One inbound message as it arrived: a download, never rendered (it is untrusted mail)."""
    inbound_id = path_id(request)
    data = await run_in_threadpool(mailer_of(request).inbound_raw, inbound_id)
    return Response(data, media_type="message/rfc822",
                    headers={"Content-Disposition": f'attachment; filename="inbound-{inbound_id}.eml"'})


@operator_only
async def subscribers(request: Request) -> Response:
    query = request.query_params.get("q", "")[:200]
    found = await run_in_threadpool(mailer_of(request).search_subscribers, query) if query else []
    return render(request, "admin/subscribers.html.j2", query=query, found=found, operator=request.session["operator"])


@operator_only
async def subscriber(request: Request) -> Response:
    mailer = mailer_of(request)
    subscriber_id = path_id(request)
    person = await run_in_threadpool(mailer.subscriber, subscriber_id)
    history = await run_in_threadpool(mailer.subscriber_history, subscriber_id)
    return render(request, "admin/subscriber.html.j2", person=person, history=history, operator=request.session["operator"])


@operator_only
async def deliveries_csv(request: Request) -> Response:
    campaign_id = path_id(request)
    rows = await run_in_threadpool(mailer_of(request).deliveries_csv, campaign_id)
    return _csv(rows, f"campaign-{campaign_id}-deliveries.csv")


@operator_only
async def bounces_csv(request: Request) -> Response:
    campaign_id = path_id(request) if "id" in request.path_params else None
    rows = await run_in_threadpool(mailer_of(request).bounces_csv, campaign_id)
    return _csv(rows, f"campaign-{campaign_id}-bounces.csv" if campaign_id else "bounces.csv")


def _csv(rows: object, filename: str) -> Response:
    return StreamingResponse(rows, media_type="text/csv; charset=utf-8",  # type: ignore[arg-type]
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})


routes = [
    Route("/admin/login", login, methods=["GET", "POST"]),
    Route("/admin/logout", logout, methods=["POST"]),
    Route("/admin/", campaigns),
    Route("/admin/campaigns/{id:int}", campaign),
    Route("/admin/campaigns/{id:int}/deliveries.csv", deliveries_csv),
    Route("/admin/campaigns/{id:int}/bounces.csv", bounces_csv),
    Route("/admin/bounces", bounces),
    Route("/admin/bounces.csv", bounces_csv),
    Route("/admin/inbox", inbox),
    Route("/admin/inbox/{id:int}.eml", inbound_raw),
    Route("/admin/subscribers", subscribers),
    Route("/admin/subscribers/{id:int}", subscriber),
]
ADMIN_PATHS = [r.path for r in routes if r.path not in ("/admin/login", "/admin/logout")]
