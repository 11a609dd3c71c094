"""Use cases that need no database: check an issue file, preview the message one sample recipient gets,
and make a DKIM key.

`mailer issue check` and `mailer preview` construct this part of the application core alone, so they
import the composer but no ORM.
"""
from __future__ import annotations

from dataclasses import dataclass
from email import message_from_bytes, policy
from pathlib import Path
from typing import TYPE_CHECKING

from mailer.core import Core
from mailer.errors import MailerError
from mailer.issue import Issue, load_issue
from mailer.message import MessageBuilder, Recipient

if TYPE_CHECKING:
    from mailer.compose import Composed
    from mailer.dkim import DkimKey
    from mailer.spam import SpamScore

PREVIEW_RECIPIENT = Recipient("anteprima@example.org", "Anteprima Redazione")


@dataclass(frozen=True)
class IssueCheck:
    issue: Issue
    composed: "Composed"

    @property
    def html_bytes(self) -> int:
        return len(self.composed.html.encode("utf-8"))


class Checking(Core):
    def check_issue(self, path: str | Path) -> IssueCheck:
        """Load, validate and compose an issue file (raises IssueError with every problem found)."""
        from mailer.compose import compose

        issue = load_issue(path)
        return IssueCheck(issue, compose(issue, self.newsletter_for(issue), self.settings.base_url))

    def preview(self, path: str | Path, out: Path) -> tuple[IssueCheck, dict[str, Path]]:
        """index.html (the HTML part), message.txt (the text part), message.eml (the whole message) for one sample recipient."""
        check = self.check_issue(path)
        outgoing = self.builder_for(check.composed).build(PREVIEW_RECIPIENT)
        parsed = message_from_bytes(outgoing.data, policy=policy.default)
        text_part, html_part = list(parsed.iter_parts())  # type: ignore[attr-defined]
        files = {"html": out / "index.html", "text": out / "message.txt", "eml": out / "message.eml"}
        try:
            out.mkdir(parents=True, exist_ok=True)
            files["html"].write_text(html_part.get_content(), encoding="utf-8")
            files["text"].write_text(text_part.get_content(), encoding="utf-8")
            files["eml"].write_bytes(outgoing.data)
        except OSError as exc:
            raise MailerError(f"cannot write the preview to {out}: {exc.strerror or exc}") from None
        return check, files

    def builder_for(self, composed: Composed, campaign_id: int = 0, list_id: int = 0) -> MessageBuilder:
        return MessageBuilder(
            composed, self.signer, base_url=self.settings.base_url, campaign_id=campaign_id, list_id=list_id,
            dkim=self.dkim_signer(composed.newsletter),
        )

    def spam_check(self, check: IssueCheck) -> "SpamScore | None":
        """SpamAssassin's score of the message a sample recipient gets; None when it is not installed."""
        from mailer.spam import spam_score, spamassassin_installed

        if not spamassassin_installed():
            return None
        try:
            return spam_score(self.builder_for(check.composed).build(PREVIEW_RECIPIENT).data)
        except RuntimeError as exc:
            raise MailerError(str(exc)) from None

    def create_dkim_key(self, selector: str, out: Path, *, algorithm: str = "rsa", domain: str = "") -> "tuple[DkimKey, str]":
        """Write a new DKIM key to `out`; returns it and the DNS TXT record to publish for `domain`
        (default: the configured DKIM domain, else the first newsletter's From domain)."""
        from mailer.dkim import check_selector, dns_record, load_key, write_new_key

        domain = domain or self.settings.dkim_domain or next(
            (nl.from_address.rpartition("@")[2] for nl in self.settings.newsletters.values()), ""
        )
        if not domain:
            raise MailerError("no domain to publish the key under: pass --domain")
        check_selector(selector)
        write_new_key(out, algorithm)
        key = load_key(out, selector, domain)
        return key, dns_record(key, domain)

