"""The one place where errors become HTTP responses: a page in the visitor's language, never a traceback."""
from __future__ import annotations

import logging

from sqlalchemy.exc import DatabaseError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mailer.errors import MailerError, NotFound
from mailer.web.pages import render
from subscribers.errors import InvalidToken

log = logging.getLogger("mailer.web")


class TooManyRequests(Exception):
    """A rate limit was reached."""


class Forbidden(Exception):
    """A form without a valid CSRF token."""


def error_page(request: Request, status: int, key: str, hint: str = "") -> Response:
    return render(request, "error.html.j2", status=status, title_key=f"{key}_title", text_key=key, hint_key=hint)


async def bad_token(request: Request, exc: Exception) -> Response:
    """Forged, tampered, truncated, expired or revoked: the same page, nothing changed, nothing revealed."""
    return error_page(request, 400, "bad_link", "bad_link_hint")


async def not_found(request: Request, exc: Exception) -> Response:
    return error_page(request, 404, "not_found")


async def too_many(request: Request, exc: Exception) -> Response:
    response = error_page(request, 429, "too_many")
    response.headers["Retry-After"] = "900"
    return response


async def forbidden(request: Request, exc: Exception) -> Response:
    return error_page(request, 403, "bad_request")


async def http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404:
        return await not_found(request, exc)
    if status == 405:
        return error_page(request, 405, "bad_request")
    return error_page(request, status if 400 <= status < 600 else 500, "bad_request" if status < 500 else "server_error")


async def server_error(request: Request, exc: Exception) -> Response:
    """Anything unexpected: logged for operators with its traceback, a plain page for the visitor."""
    if isinstance(exc, DatabaseError):
        log.error("database error on %s %s: %s", request.method, request.url.path, exc)
    elif isinstance(exc, MailerError):
        log.error("error on %s %s: %s", request.method, request.url.path, exc)
    else:
        log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_page(request, 500, "server_error")


HANDLERS = {
    InvalidToken: bad_token,
    NotFound: not_found,
    TooManyRequests: too_many,
    Forbidden: forbidden,
    HTTPException: http_error,
    Exception: server_error,
}
