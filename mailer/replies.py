"""An SMTP server's answer to one message, as data: what the transport returns and the bounce rules read."""
from __future__ import annotations

from dataclasses import dataclass

# The step of an SMTP transaction a reply answers: our sender, the recipient, the message, or success.
MAIL, RCPT, DATA, DONE = "mail", "rcpt", "data", "done"


@dataclass(frozen=True)
class SmtpReply:
    """The server's answer to one message. code None: the line was lost at that stage without an answer."""

    code: int | None
    text: str
    stage: str = DONE
