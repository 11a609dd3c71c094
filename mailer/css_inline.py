"""The template's CSS inlined into the composed HTML, with premailer."""
from __future__ import annotations

import functools
import logging
import re
from typing import Any, ClassVar

from premailer import Premailer

_SHEETS_KEPT = 16


class _SheetCachingPremailer(Premailer):
    """premailer, with each style sheet's rules, and the text of its leftover rules (the media queries kept in
    the head), made once per process. The template's CSS is the same for every issue, and serialising its
    media queries again with cssutils was 60% of inlining a 30-item issue. premailer hands the leftover
    list it got from _parse_style_rules to _css_rules_to_string, so that list is the key."""

    _sheets: ClassVar[dict[tuple[Any, ...], tuple[list[Any], list[Any]]]] = {}
    _leftover_text: ClassVar[dict[int, tuple[list[Any], str]]] = {}

    def _parse_style_rules(self, css_body: str, ruleset_index: int) -> tuple[list[Any], list[Any]]:
        key = (css_body, ruleset_index, self.strip_important, self.disable_validation)
        sheets = _SheetCachingPremailer._sheets
        if key not in sheets:
            if len(sheets) >= _SHEETS_KEPT:
                sheets.clear()
                _SheetCachingPremailer._leftover_text.clear()
            sheets[key] = super()._parse_style_rules(css_body, ruleset_index)
        return sheets[key]

    def _css_rules_to_string(self, rules: list[Any]) -> str:
        kept = _SheetCachingPremailer._leftover_text.get(id(rules))
        if kept is not None and kept[0] is rules:
            return kept[1]
        text = str(super()._css_rules_to_string(rules))
        if any(rules is leftover for _, leftover in _SheetCachingPremailer._sheets.values()):
            _SheetCachingPremailer._leftover_text[id(rules)] = (rules, text)
        return text


@functools.lru_cache(maxsize=16)
def inline_css(html: str) -> str:
    """Inline the CSS with premailer, keeping what the mobile layout and dark mode need.

    Only the template's own class rules are inlined (and then left out of the head): MJML's reset
    (`table, td {border-collapse...}`, `p {margin...}`) stays in the head alone, where every client that
    needs it reads it, instead of being repeated on every cell (~12 KB of a 30-item issue). Media queries
    (phone layout, dark mode) are kept in the head. premailer drops the doctype when its case differs from
    lxml's ('<!doctype html>' from MJML) and strips !important by default, which would let inline styles
    beat the media queries.
    """
    html = re.sub(r"^\s*<!doctype html>", "<!DOCTYPE html>", html, count=1, flags=re.IGNORECASE)
    html = re.sub(r"<style(?=[ >])(?![^>]*data-premailer)([^>]*)>(?=\s*#outlook a)", r'<style data-premailer="ignore"\1>', html, count=1)
    premailer = _SheetCachingPremailer(
        html,
        strip_important=False,
        keep_style_tags=False,
        disable_validation=True,
        allow_network=False,
        cssutils_logging_level=logging.CRITICAL,
        remove_classes=False,
    )
    out = premailer.transform(pretty_print=False)
    if not out.lstrip().upper().startswith("<!DOCTYPE"):
        out = "<!DOCTYPE html>\n" + out
    return out
