"""An SMTP server's answer to one message, as data: what the transport returns and the bounce rules read."""
from __future__ import annotations

from dataclasses import dataclass

# The step of an SMTP transaction a reply answers: our sender, the recipient, the DATA command and the
# message's lines, the reply to the message's final dot, or success. Only a line lost at END can have
# delivered the message: the server had all of it, and we never heard what it did with it.
MAIL, RCPT, DATA, END, DONE = "mail", "rcpt", "data", "end", "done"


@dataclass(frozen=True)
class SmtpReply:
    """The server's answer to one message. code None: the line was lost at that stage without an answer."""

    code: int | None
    text: str
    stage: str = DONE
