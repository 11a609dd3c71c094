"""Rendering of the web pages: one Jinja environment, the language of each request, the shared context."""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from mailer.i18n import negotiate, page_strings
from mailer.settings import LANGUAGE_NAMES, LANGUAGES, TEMPLATES_DIR
from mailer.web.security import csrf_token


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR / "web"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2", "atom.j2")),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["xml_text"] = xml_text
    return env


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xml_text(value: object) -> str:
    """Text without the characters XML 1.0 forbids (one would make a feed reader drop the whole feed)."""
    return _NOT_XML.sub("", str(value))


def language_of(request: Request, preferred: str | None = None) -> str:
    """?lang= when a visitor chose, else the subscriber's language, else the browser's."""
    chosen = request.query_params.get("lang")
    if chosen in LANGUAGES:
        return chosen
    return negotiate(request.headers.get("accept-language"), preferred)


def render(request: Request, template: str, *, language: str | None = None, status: int = 200, **context: Any) -> HTMLResponse:
    lang = language or language_of(request)
    other = next(code for code in LANGUAGES if code != lang)
    html = environment().get_template(template).render(
        request=request,
        lang=lang,
        t=page_strings(lang),
        other_lang=other,
        languages=LANGUAGE_NAMES,
        other_lang_url=f"?lang={other}",  # query only: a path like //other.site/ must not become a link there
        csrf=csrf_token(request) if template.startswith("admin/") else "",
        **context,
    )
    return HTMLResponse(html, status_code=status, headers={"Content-Language": lang})
