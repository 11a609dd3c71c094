"""Use cases of the web archive: every sent issue at a stable URL, an index per newsletter, an Atom feed.

An archived issue is composed again from the issue file kept with its campaign, in its archive edition:
no address and no personal links, so anyone may read it and no one's unsubscribe link leaks.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, select

from mailer.core import Core
from mailer.errors import IssueError, NotFound, SettingsError
from mailer.models import Campaign, CampaignEdition
from mailer.settings import LANGUAGE_NAMES, NewsletterSettings


@dataclass(frozen=True)
class ArchivedIssue:
    newsletter: str
    issue: str
    subject: str
    preheader: str
    sent_at: datetime
    url: str


class Archive(Core):
    def archived_newsletter(self, newsletter_id: str) -> NewsletterSettings:
        try:
            return self.settings.newsletter(newsletter_id)
        except SettingsError:
            raise NotFound(f"no newsletter {newsletter_id!r}") from None

    def archive_issues(self, newsletter_id: str) -> list[ArchivedIssue]:
        """Issues of a newsletter that were sent (at least one campaign started), newest first; one entry
        per issue however many lists it went to."""
        self.archived_newsletter(newsletter_id)
        with self.session() as session:
            campaigns = session.exec(
                select(Campaign)
                .where(Campaign.newsletter == newsletter_id, col(Campaign.started_at).is_not(None))
                .order_by(col(Campaign.issue).desc(), col(Campaign.id).desc())
            ).all()
        seen: dict[str, ArchivedIssue] = {}
        for c in campaigns:
            if c.issue not in seen and c.started_at is not None:
                seen[c.issue] = ArchivedIssue(
                    newsletter_id, c.issue, c.subject, self._preheader(c), c.started_at,
                    f"{self.settings.base_url}/archive/{newsletter_id}/{c.issue}",
                )
        return list(seen.values())

    def _preheader(self, campaign: Campaign) -> str:
        """An issue's preheader, for the index and the feed: parsed once per issue version and process."""
        key = ("preheader", campaign.issue, campaign.issue_digest)
        if key not in self.archive_cache:
            from mailer.issue import parse_issue

            try:
                self.archive_cache[key] = parse_issue(campaign.issue_source).preheader if campaign.issue_source else ""
            except IssueError:
                self.archive_cache[key] = ""
        return self.archive_cache[key]

    def archive_page(self, newsletter_id: str, issue_id: str, language: str | None = None) -> str:
        """The archive edition of a sent issue, as an HTML document (composed once per process): the
        edition the editor sent, or its edition in `language`; with links to the issue's other editions."""
        newsletter = self.archived_newsletter(newsletter_id)
        with self.session() as session:
            campaign = session.exec(
                select(Campaign)
                .where(Campaign.newsletter == newsletter_id, Campaign.issue == issue_id, col(Campaign.started_at).is_not(None))
                .order_by(col(Campaign.id).desc())
            ).first()
            editions = {} if campaign is None else {
                e.language: e for e in session.exec(select(CampaignEdition).where(CampaignEdition.campaign_id == campaign.id))
            }
        if campaign is None or not campaign.issue_source:
            raise NotFound(f"no sent issue {issue_id!r} of {newsletter_id!r}")
        if language is not None and language not in editions and language not in LANGUAGE_NAMES:
            raise NotFound(f"issue {issue_id!r} has no such edition")  # before any parsing: junk URLs cost nothing
        source, path = campaign.issue_source, campaign.issue_path
        shown = language or newsletter.language  # the issue's own URL shows the default language's edition
        if shown in editions:
            source, path = editions[shown].issue_source or "", editions[shown].issue_path
        cache = self.archive_cache
        key = (newsletter_id, f"{issue_id}/{language or ''}", campaign.issue_digest)
        if key not in cache:
            from mailer.compose import compose
            from mailer.issue import parse_issue

            try:
                issue = parse_issue(source, path or f"{issue_id}.md")
            except IssueError:
                raise NotFound(f"issue {issue_id!r} cannot be shown") from None
            if language is not None and issue.language != language:
                raise NotFound(f"issue {issue_id!r} has no {language!r} edition")
            others = {lang: f"/archive/{newsletter_id}/{issue_id}" + ("" if lang == newsletter.language else f"/{lang}")
                      for lang in sorted(editions) if lang != issue.language}
            cache[key] = as_web_page(compose(issue, newsletter, self.settings.base_url, archive=True).html, others)
        return cache[key]


def as_web_page(html: str, editions: dict[str, str] | None = None) -> str:
    """The mail's HTML with its content in a <main> landmark, as a page needs (a mail has no landmarks),
    and links to the issue's other language editions (language -> URL), each named in its own language."""
    links = "".join(
        f'<a href="{url}" hreflang="{lang}" lang="{lang}" style="color:#1f2933;margin:0 8px;">{LANGUAGE_NAMES.get(lang, lang)}</a>'
        for lang, url in (editions or {}).items()
    )
    nav = f'<nav aria-label="Editions" style="text-align:center;padding:12px;font:15px Helvetica,Arial,sans-serif;">{links}</nav>' if links else ""
    opened = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + nav + "<main>", html, count=1)
    return re.sub(r"</body>", "</main></body>", opened, count=1)
