"""What every response and form of the web app needs: security headers, CSRF tokens, rate limits."""
from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Pages load only our own files; the archive's mail HTML needs its inline styles (set per response).
PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; font-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
MAIL_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'self'; base-uri 'none'; form-action 'none'"


class SecurityHeaders:
    """CSP (unless the response set its own), frame-ancestors, nosniff, referrer and permissions policies."""

    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        self.https = https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", PAGE_CSP)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY" if "frame-ancestors 'none'" in headers["Content-Security-Policy"] else "SAMEORIGIN")
                headers.setdefault("Referrer-Policy", "no-referrer")  # token URLs must not leak to other sites
                headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()")
                headers.setdefault("Cache-Control", "no-store")
                if self.https:
                    headers.setdefault("Strict-Transport-Security", "max-age=31536000")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use (so a login form gets one before anyone logs in)."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


def csrf_ok(request: Request, submitted: object) -> bool:
    expected = request.session.get("csrf")
    return bool(expected) and isinstance(submitted, str) and hmac.compare_digest(str(expected), submitted)


@dataclass(frozen=True)
class Limits:
    """Rate limits of the public forms and the login, per client (IP address) and per address or user."""

    form_per_client: str = "10/hour"
    form_per_address: str = "3/hour"
    login_per_client: str = "10/15 minutes"
    login_per_user: str = "5/15 minutes"
    link_per_client: str = "60/minute"  # unsubscribe, confirm and preferences posts
    min_fill_seconds: float = 3.0  # a signup or unsubscribe form sent sooner is a bot's


class RateLimiter:
    """Moving windows in memory (the `limits` library): one process's view; a deployment with several web
    processes keeps the per-address limits the store enforces (one confirmation per address per day)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def allow(self, rule: str, *keys: str) -> bool:
        """Count one hit for every key; False if any is over its limit."""
        item: RateLimitItem = parse(getattr(self.limits, rule))
        return all([self._limiter.hit(item, rule, key.lower()) for key in keys])


def client_key(request: Request) -> str:
    return f"client:{request.client.host if request.client else 'unknown'}"
