"""Fixed strings of the web pages and notices (templates/web/i18n/<language>.toml), and the choice of language."""
from __future__ import annotations

import tomllib
from functools import lru_cache
from typing import Any

from mailer.settings import LANGUAGES, TEMPLATES_DIR

DEFAULT_LANGUAGE = LANGUAGES[0]


@lru_cache(maxsize=None)
def page_strings(language: str) -> dict[str, Any]:
    language = language if language in LANGUAGES else DEFAULT_LANGUAGE
    return tomllib.loads((TEMPLATES_DIR / "web" / "i18n" / f"{language}.toml").read_text(encoding="utf-8"))


def negotiate(accept_language: str | None, preferred: str | None = None) -> str:
    """The subscriber's language when known, else the browser's first offered one (Accept-Language), else Italian."""
    if preferred in LANGUAGES:
        return preferred  # type: ignore[return-value]
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, position, primary))
    return sorted(ranked)[0][2] if ranked else DEFAULT_LANGUAGE
