"""Composer: both sample issues compose with every item; premailer keeps what the mobile layout needs."""
from __future__ import annotations

import html as htmllib
import re
from pathlib import Path

import pytest

from mailer.compose import EMAIL_SLOT, UNSUBSCRIBE_SLOT, compose, date_line, inline_css, mjml_to_html
from mailer.issue import load_issue
from mailer.settings import Settings
from tests.conftest import ISSUE_2021, ISSUE_2026


def visible_text(markup: str) -> str:
    """The HTML part's words, with its typographic quotes straightened back to compare with the source."""
    text = htmllib.unescape(re.sub(r"<[^>]+>", " ", markup))
    return " ".join(text.translate(str.maketrans("‘’“”", "''\"\"")).split())


@pytest.mark.parametrize("path", [ISSUE_2021, ISSUE_2026])
def test_every_item_title_date_and_link_reaches_both_parts(settings: Settings, path: Path) -> None:
    issue = load_issue(path)
    composed = compose(issue, settings.newsletter(issue.newsletter), settings.base_url)
    shown = visible_text(composed.html)
    text = " ".join(composed.text.split())
    for section in issue.sections:
        if not section.items and not section.intro:
            continue  # left out: see test_an_empty_section_is_left_out_of_both_parts
        assert section.title in shown and section.title.upper() in text
        for item in section.items:
            assert item.title in shown and item.title in text
            if item.date_label:
                assert item.date_label in shown and f"[{item.date_label}]" in text
    for href in re.findall(r"\]\((https?://[^)]+)\)", path.read_text(encoding="utf-8")):
        assert f'href="{href}"' in composed.html
        assert href in composed.text


def test_bare_urls_and_addresses_become_links(settings: Settings) -> None:
    issue = load_issue(ISSUE_2026)
    composed = compose(issue, settings.newsletter(issue.newsletter), settings.base_url)
    assert 'href="mailto:evs.torino@comune.torino.it"' in composed.html
    assert 'href="https://youth.europa.eu/go-abroad/volunteering/opportunities_it"' in composed.html
    assert 'href="http://www.comune.torino.it/torinogiovani/volontariato/opportunita-sve-con-il-comune-di-torino"' in composed.html


def test_masthead_footer_and_unsubscribe_text(settings: Settings) -> None:
    issue = load_issue(ISSUE_2021)
    composed = compose(issue, settings.newsletter(issue.newsletter), settings.base_url)
    shown = visible_text(composed.html)
    assert "Maggio 2021" in shown and "a cura del Servizio Gabinetto della Sindaca" in shown
    assert "Gabinetto della Sindaca" in composed.text  # the issue's own contact block overrides config
    assert "apposito modulo di questa pagina" in shown
    assert f'href="{settings.base_url}/unsubscribe"' in composed.html
    assert f'href="{UNSUBSCRIBE_SLOT}"' in composed.html and EMAIL_SLOT in composed.text
    assert not any("Gmail clips" in w.message for w in composed.warnings)  # well under Gmail's clipping size
    assert "fonts.googleapis.com" not in composed.html  # opening the mail fetches nothing from third parties


def test_premailer_keeps_doctype_media_queries_and_important(settings: Settings) -> None:
    issue = load_issue(ISSUE_2026)
    composed = compose(issue, settings.newsletter(issue.newsletter), settings.base_url)
    assert composed.html.startswith("<!DOCTYPE html>")
    media = re.findall(r"@media[^{]*\{(?:[^{}]*\{[^}]*\})+[^}]*\}", composed.html)
    assert any(".item-title" in m and "!important" in m for m in media), media
    assert any("max-width:100%" in m.replace(" ", "") for m in media)  # MJML's column query
    assert 'style="' in composed.html and re.search(r'<h3 class="item-title" style="[^"]*font-size:\s*18px', composed.html)


def test_premailer_defaults_would_break_the_layout() -> None:
    """Guards the reason inline_css exists: premailer's defaults drop the doctype and !important."""
    from premailer import transform

    compiled = mjml_to_html("<mjml><mj-head><mj-style>@media (max-width:480px){.x{color:red !important}}</mj-style></mj-head><mj-body><mj-section><mj-column><mj-text css-class='x'>a</mj-text></mj-column></mj-section></mj-body></mjml>")
    assert not transform(compiled, allow_network=False).lstrip().upper().startswith("<!DOCTYPE")
    ours = inline_css(compiled)
    assert ours.startswith("<!DOCTYPE html>") and "red !important" in ours


def test_inlining_with_the_sheets_kept_writes_what_premailer_writes() -> None:
    """The style sheets' rules and media-query text are kept between documents (mailer.css_inline); each
    document still comes out as premailer alone, with the same options and nothing kept, writes it."""
    import logging

    from premailer import Premailer

    def plain(html: str) -> str:
        html = re.sub(r"^\s*<!doctype html>", "<!DOCTYPE html>", html, count=1, flags=re.IGNORECASE)
        html = re.sub(r"<style(?=[ >])(?![^>]*data-premailer)([^>]*)>(?=\s*#outlook a)", r'<style data-premailer="ignore"\1>', html, count=1)
        out = Premailer(html, strip_important=False, keep_style_tags=False, disable_validation=True, allow_network=False,
                        cssutils_logging_level=logging.CRITICAL, remove_classes=False, cache_css_parsing=False).transform(pretty_print=False)
        return out if out.lstrip().upper().startswith("<!DOCTYPE") else "<!DOCTYPE html>\n" + out

    style = "<mj-style>.x{color:#123456} .y a{font-weight:bold} @media (max-width:480px){.x{color:red !important}}</mj-style>"
    documents = [
        mjml_to_html(f"<mjml><mj-head>{style}</mj-head><mj-body><mj-section><mj-column>{body}</mj-column></mj-section></mj-body></mjml>")
        for body in ("<mj-text css-class='x'>a</mj-text>", "<mj-text css-class='y'><a href='#'>b</a></mj-text><mj-text css-class='x'>c</mj-text>")
    ]
    for html in documents + documents:  # the second round finds every sheet kept
        ours = inline_css.__wrapped__(html)  # past the per-document cache
        assert ours == plain(html)
        assert "red !important" in ours and "#123456" in ours


def test_date_line_from_issue_id(settings: Settings) -> None:
    issue = load_issue(ISSUE_2026)
    assert date_line(issue) == "Maggio 2026"


@pytest.mark.parametrize("issue_path", [ISSUE_2026, ISSUE_2021])
def test_the_text_part_keeps_to_78_columns_with_a_real_signature_separator(settings: Settings, issue_path) -> None:  # type: ignore[no-untyped-def]
    """Every line within 78 columns, the footer and a long recipient address included; only a bare URL longer
    than that stays whole (breaking it would break the link)."""
    from email import message_from_bytes, policy

    from mailer.app import Mailer
    from mailer.message import Recipient

    mailer = Mailer(settings)
    composed = mailer.check_issue(issue_path).composed
    address = "giulia.ferrero-lo-russo.relazioni.internazionali@example.org"
    data = mailer.builder_for(composed, 3, 1).build(Recipient(address, "Giulia", 9, 0, 5)).data
    text = message_from_bytes(data, policy=policy.default).get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    lines = text.replace("\r\n", "\n").split("\n")
    too_long = [line for line in lines if len(line) > 78 and (" " in line or not line.startswith(("http", "www.")))]
    assert too_long == []
    assert "-- " in lines and address in lines  # the separator keeps its space; the address has a line of its own
    mailer.close()


def test_html_part_has_typographic_quotes_but_links_keep_straight_ones(settings: Settings, tmp_path: Path) -> None:
    issue = load_issue(ISSUE_2026)
    html = compose(issue, settings.newsletter(issue.newsletter), settings.base_url).html
    assert "Luci d’Artista" in html and "d'Artista" not in html
    assert "“Mission Cities”" in html and "Rockin’1000</h3>" in html
    source = tmp_path / "quotes.md"
    source.write_text(
        ISSUE_2026.read_text(encoding="utf-8").replace(
            "## Newsletter\n", "## L'apostrofo\n\nVedi [l'elenco](https://example.org/it's-here?q='x') e `l'uso`.\n\n## Newsletter\n", 1
        ),
        encoding="utf-8",
    )
    html = compose(load_issue(source), settings.newsletter(issue.newsletter), settings.base_url).html
    assert "L’apostrofo</h3>" in html and "l’elenco</a>" in html
    assert "href=\"https://example.org/it's-here?q='x'\"" in html.replace("&#x27;", "'").replace("&#39;", "'")
    assert "<code>l'uso</code>" in html.replace("&#x27;", "'").replace("&#39;", "'")


def test_an_empty_section_is_left_out_of_both_parts(settings: Settings) -> None:
    issue = load_issue(ISSUE_2026)
    assert any(s.title == "Coming Soon" and not s.items for s in issue.sections)  # the example has one
    composed = compose(issue, settings.newsletter(issue.newsletter), settings.base_url)
    assert "Coming Soon" not in composed.html and "COMING SOON" not in composed.text
    assert "Approfondimenti" in composed.html
