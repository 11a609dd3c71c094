"""The ASGI app (Starlette) over the application core: recipients' pages, the archive, and /admin/.

    app = create_app(Mailer(load_settings()))   # served by uvicorn: `mailer serve`
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from mailer.app import Mailer
from mailer.web import admin, public
from mailer.web.errors import HANDLERS
from mailer.web.security import Limits, RateLimiter, SecurityHeaders

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY = 64 * 1024  # every form we have fits; a bigger body is refused before it is read


def create_app(mailer: Mailer, *, limits: Limits | None = None) -> Starlette:
    https = mailer.settings.base_url.startswith("https://")
    # The session cookie gets its own key, derived from the newest secret key (it never signs links).
    session_key = hashlib.sha256(b"mailer-session\0" + mailer.settings.secret_keys[0].encode("utf-8")).hexdigest()
    app = Starlette(
        routes=[*public.routes, *admin.routes, Mount("/static", StaticFiles(directory=STATIC), name="static")],
        middleware=[
            Middleware(SecurityHeaders, https=https),
            Middleware(RequestBodyLimitMiddleware, max_body_size=MAX_BODY),
            Middleware(SessionMiddleware, secret_key=session_key, session_cookie="mailer_admin", path="/admin",
                       max_age=8 * 3600, same_site="strict", https_only=https),
        ],
        exception_handlers=HANDLERS,  # type: ignore[arg-type]
    )
    mailer.ensure_lists()  # pages only read: the configured newsletters' lists exist from the start
    app.router.redirect_slashes = False  # Starlette builds those from the Host header; ours are relative
    app.state.mailer = mailer
    app.state.limiter = RateLimiter(limits or Limits())
    return app
