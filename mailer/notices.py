"""Messages to one person that the web app sends: a signup's confirmation link, the unsubscribe form's link.

Built with the stdlib (a handful a day, so no splice is needed), plain text, with their own headers:
Auto-Submitted (RFC 3834) and no List-Unsubscribe, since they are not list mail.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, formatdate

from mailer.settings import NewsletterSettings

CONFIRM = "confirm"
UNSUBSCRIBE_LINK = "unsubscribe-link"


@dataclass(frozen=True)
class NoticeMessage:
    kind: str
    envelope_from: str
    recipient: str
    message_id: str
    data: bytes


def build_notice(
    kind: str, *, to: str, newsletter: NewsletterSettings, subject: str, lines: list[str], url: str
) -> NoticeMessage:
    """One plain-text message: the lines, the link on a line of its own, the sender's signature."""
    domain = newsletter.from_address.partition("@")[2] or "localhost"
    message_id = f"<{kind}.{secrets.token_hex(10)}@{domain}>"
    message = EmailMessage()
    message["From"] = formataddr((newsletter.from_name, newsletter.from_address))
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    message["Reply-To"] = newsletter.reply_to
    body = "\n\n".join([*lines, url, "-- ", newsletter.from_name, newsletter.website]).replace("-- \n\n", "-- \n")
    message.set_content(body + "\n", cte="quoted-printable")
    data = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
    return NoticeMessage(kind, newsletter.bounce_address, to, message_id, data)
