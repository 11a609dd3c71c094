"""Issue -> Composed (subject, HTML, text), once per issue.

Jinja renders the MJML template, mjml-python compiles it, premailer inlines the CSS. The plain-text part
comes from its own template. Per-recipient values (address, unsubscribe link) are left as slot markers (see SLOTS) that the message
builder splices in; the markers are plain ASCII words, so MJML, premailer and quoted-printable leave them whole.
"""
from __future__ import annotations

import functools
import re
import textwrap
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jinja2
from markdown_it import MarkdownIt
from markupsafe import Markup
from mjml import mjml2html

from mailer.css_inline import inline_css
from mailer.errors import ComposeError, Problem
from mailer.issue import Issue, markdown_parser
from mailer.markdown_text import markdown_to_text
from mailer.settings import TEMPLATES_DIR, NewsletterSettings

from mailer.slots import EMAIL_SLOT, PREFERENCES_SLOT, SLOTS, UNSUBSCRIBE_SLOT  # noqa: F401  (re-exported)

SIGNATURE_SEPARATOR = "-- "  # RFC 3676: mail clients hide or grey what follows
TEXT_WIDTH = 72  # the text part's sentences; with a quoted-printable soft break, lines stay within 78
TEXT_LINE_LIMIT = 78  # RFC 5322's recommended line length; only a link longer than that may pass it

# Gmail clips an HTML body past ~102 KB and hides the rest (our footer with the unsubscribe link).
GMAIL_CLIP_BYTES = 102_000


@dataclass(frozen=True)
class Composed:
    issue: Issue
    newsletter: NewsletterSettings
    subject: str
    html: str  # complete HTML document with slot markers
    text: str  # plain text with slot markers
    archive_url: str

    @property
    def warnings(self) -> list[Problem]:
        """What the composed message will show badly: Gmail's clip, links too long for a text line."""
        path, source = self.issue.path, self.issue.source
        found = []
        size = len(self.html.encode("utf-8"))
        if size > GMAIL_CLIP_BYTES:
            found.append(Problem(path, None, f"the HTML part is {size // 1000} KB: Gmail clips messages over 102 KB, hiding the footer", "warning"))
        for line in self.text.splitlines():
            if len(line) > TEXT_LINE_LIMIT and not any(slot in line for slot in SLOTS):
                at = source.find(line)
                found.append(Problem(
                    path, source.count("\n", 0, at) + 1 if at >= 0 else None,
                    f"a link of {len(line)} characters will stand alone on a line over {TEXT_LINE_LIMIT} columns "
                    f"in the text part (a shorter address reads better): {line}", "warning",
                ))
        return found


@lru_cache(maxsize=None)
def strings(language: str) -> dict[str, Any]:
    """Fixed strings of the newsletter in one language (templates/i18n/<language>.toml)."""
    path = TEMPLATES_DIR / "i18n" / f"{language}.toml"
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ComposeError(f"no translations for language {language!r} ({path})") from None


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(enabled_extensions=("mjml.j2", "html.j2", "html")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["wrap_text"] = wrap_text
    env.filters["heading"] = heading
    return env


def heading(title: str, rule: str) -> str:
    """A text-part heading: the title wrapped, underlined as long as its longest line."""
    lines = wrap_text(title).split("\n")
    return "\n".join(lines) + "\n" + rule * max(len(line) for line in lines)


def wrap_text(text: str, width: int = TEXT_WIDTH) -> str:
    """A sentence of the text part wrapped to `width`, each recipient's slot on a line of its own, so that a
    long address spliced in later cannot push a line past 78 columns."""
    pieces = re.split("(" + "|".join(map(re.escape, SLOTS)) + ")", text)
    lines: list[str] = []
    for piece in pieces:
        if piece in SLOTS:
            lines.append(piece)
        elif piece.strip():
            lines += textwrap.wrap(piece.strip(), width=width, break_long_words=False, break_on_hyphens=False)
    return "\n".join(lines)


def date_line(issue: Issue) -> str:
    """'Maggio 2026' from issue id '2026-05' unless the issue gives its own date_line."""
    if issue.date_line:
        return issue.date_line
    match = re.match(r"^(\d{4})-(\d{2})$", issue.issue)
    if not match or not 1 <= int(match.group(2)) <= 12:
        return issue.issue
    month = strings(issue.language)["months"][int(match.group(2)) - 1]
    return f"{month[:1].upper()}{month[1:]} {match.group(1)}"


def compose(issue: Issue, newsletter: NewsletterSettings, base_url: str, *, test: bool = False, archive: bool = False) -> Composed:
    """Render the issue once: HTML (MJML -> inlined CSS) and text, with slot markers for each recipient.
    The archive's edition (archive=True) has no slots: no address, no personal links."""
    t = strings(issue.language)
    subject = f"{t['test_prefix']} {issue.subject}" if test else issue.subject
    def inline(text: str) -> Markup:
        return Markup(_render_inline(text))

    contact = list(issue.contact if issue.contact is not None else newsletter.contact)
    context = {
        "issue": issue,
        "newsletter": newsletter,
        "subject": subject,
        "t": t,
        "date_line": date_line(issue),
        "preheader_html": inline(issue.preheader) if issue.preheader else "",
        "logo_src": f"{base_url}{newsletter.logo_url}" if newsletter.logo_url.startswith("/") else newsletter.logo_url,
        "archive_url": f"{base_url}/archive/{newsletter.id}/{issue.issue}" + ("" if issue.language == newsletter.language else f"/{issue.language}"),
        "unsubscribe_form_url": f"{base_url}/unsubscribe",
        "archive": archive,
        "unsubscribe_url": UNSUBSCRIBE_SLOT,
        "preferences_url": PREFERENCES_SLOT,
        "one_click_text": t["unsubscribe_one_click"].format(email=EMAIL_SLOT),
        "sent_to": t["sent_to"].format(email=EMAIL_SLOT, title=newsletter.title),
        "contact": contact,
        "contact_html": [inline(line) for line in contact],
        "sections": [
            {
                "title": section.title,
                "title_html": inline(section.title),
                "intro_html": Markup(_render_block(section.intro)) if section.intro else "",
                "intro_text": markdown_to_text(section.intro),
                "news": [
                    {
                        "title": item.title,
                        "title_html": inline(item.title),
                        "date_label": item.date_label,
                        "body_html": Markup(_render_block(item.body)),
                        "body_text": markdown_to_text(item.body),
                    }
                    for item in section.items
                ],
            }
            for section in issue.sections
            if section.items or section.intro  # an empty section ('Coming Soon') is left out; issue check warns
        ],
    }
    env = _environment()
    try:
        mjml_source = env.get_template("newsletter/newsletter.mjml.j2").render(context)
        text = env.get_template("newsletter/newsletter.txt.j2").render(context)
    except jinja2.TemplateError as exc:
        raise ComposeError(f"newsletter template: {exc}") from exc
    html = inline_css(mjml_to_html(mjml_source))
    return Composed(issue, newsletter, subject, html, _tidy_text(text), context["archive_url"])


# Composing is a pure function of the issue's text: its costly steps keep their last results, so composing
# an issue again in one process (each language edition's archive page, a worker's next run, a preview after
# a small edit) redoes only what changed. bench/message_build.py times the first and a second compose.
@functools.cache
def _html_markdown() -> MarkdownIt:
    return markdown_parser(typographic=True)  # the HTML part's; the text part's comes from markdown_to_text


@functools.lru_cache(maxsize=4096)
def _render_block(text: str) -> str:
    return _html_markdown().render(text)


@functools.lru_cache(maxsize=4096)
def _render_inline(text: str) -> str:
    return _html_markdown().renderInline(text)


@functools.lru_cache(maxsize=16)
def mjml_to_html(source: str) -> str:
    try:
        return str(mjml2html(source, disable_comments=True))
    except Exception as exc:  # mjml-python raises plain exceptions for template errors
        raise ComposeError(f"MJML compile failed: {exc}") from exc


def _tidy_text(text: str) -> str:
    """At most one blank line in a row, no trailing spaces (but the signature separator's, '-- '), one final newline."""
    lines = [line if line == SIGNATURE_SEPARATOR else line.rstrip() for line in text.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
    return text.strip() + "\n"
