"""Pure rules about SMTP replies: what a reply means for the delivery, the address and the run.

Only a refusal of the address itself (5.1.x bad mailbox or domain, 5.2.1 mailbox disabled, or a bare
550/551/553 to RCPT) is a hard bounce that suppresses the subscriber. A 5xx about the message or our
reputation (5.7.x policy, 5.3.4 too big, spam filters after DATA) or a full mailbox (5.2.2) ends this
delivery as bounced but keeps the address. A refusal of our sender or of relaying (at MAIL FROM, or at RCPT as Postfix
gives it: 5.1.7, 5.1.8, "Sender address rejected", "Relay access denied") is nobody's bounce: the run stops
and every unsent delivery stays queued. Any 4xx (a 421 at MAIL FROM included: come back later), and a
provider's rate limit or greylisting even when given as 5xx, defers. A lost line defers too, unless it was
lost after the message's final dot (mailer.replies.END): then the message may have arrived, and the
delivery is uncertain.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from mailer.bounce_meaning import Bounce, meaning, reason_group  # noqa: F401  (reason_group re-exported)
from mailer.models import DeliveryStatus
from mailer.replies import DATA, DONE, END, MAIL, SmtpReply

_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
# Refusals of us rather than of the recipient, which Postfix and others often give at RCPT time.
_REFUSES_US = re.compile(
    r"sender address rejected|relay(ing)? (access )?denied|not permitted to relay|relay not permitted|"
    r"authentication required|sender (domain|address) (not|is not)|sender verify|verification failed|"
    r"administrative prohibition",
    re.IGNORECASE,
)


THROTTLING = ("rate-limited", "greylisted")  # the provider asks us to slow down or come back: retry later


@dataclass(frozen=True)
class Verdict:
    status: DeliveryStatus | None  # None: not recorded, the delivery goes back to the queue
    bounce: str | None = None  # "hard", "soft" or None: the bounce event to log
    suppress: bool = False  # the address itself is refused (a hard bounce: mailer.policy decides)
    stop_run: bool = False  # the relay refuses us as a whole
    reason: str = ""  # mailer.bounce_meaning's reason, for a bounce

    def bounce_of(self, reply: SmtpReply, recipient: str) -> Bounce | None:
        """The bounce event this verdict logs, if any."""
        if self.bounce is None:
            return None
        return Bounce(self.bounce, self.reason, reply.text, "smtp", reply.code, _enhanced(reply.text), recipient)


def classify(reply: SmtpReply) -> Verdict:
    code, stage = reply.code, reply.stage
    if stage == DONE and code is not None and 200 <= code < 300:
        return Verdict(DeliveryStatus.SENT)
    if code is None:  # the line was lost
        if stage == END:  # the server had the whole message and may have kept it: never resend blindly
            return Verdict(DeliveryStatus.UNCERTAIN)
        return Verdict(DeliveryStatus.DEFERRED, bounce="soft", reason="connection")  # nothing can have arrived
    if code >= 500 and (stage == MAIL or refuses_us(reply)):
        return Verdict(None, stop_run=True)
    found = meaning(_enhanced(reply.text), reply.text)
    if 400 <= code < 500:  # 421 at MAIL FROM included: the server asks us to come back later
        return Verdict(DeliveryStatus.DEFERRED, bounce="soft", reason=found.reason if found.kind == "soft" else "temporary")
    if found.reason in THROTTLING:  # a provider's rate limit or greylisting, even with a 5xx, is never a hard failure
        return Verdict(DeliveryStatus.DEFERRED, bounce="soft", reason=found.reason)
    if address_refused(reply):
        return Verdict(DeliveryStatus.BOUNCED, bounce="hard", suppress=True, reason=found.reason)
    return Verdict(DeliveryStatus.BOUNCED, bounce="soft", reason=found.reason if found.kind == "soft" else "other")


def refuses_us(reply: SmtpReply) -> bool:
    """Does this reply refuse our sender or our right to relay (5.1.7, 5.1.8, or words to that effect)?"""
    return _enhanced(reply.text) in ("5.1.7", "5.1.8") or bool(_REFUSES_US.search(reply.text))


def address_refused(reply: SmtpReply) -> bool:
    """Does this 5xx say the address itself does not work? The words decide (mailer.bounce_meaning), with
    what only the session knows: a refusal with neither telling words nor a 5.1.x/5.2.1 code, or a bare 5xx
    after DATA, is about this message and suppresses nobody."""
    enhanced = _enhanced(reply.text)
    found = meaning(enhanced, reply.text)
    if found.kind != "hard" or (found.reason == "other" and not _address_code(enhanced)):
        return False
    return bool(enhanced) or reply.stage not in (DATA, END)


def _address_code(enhanced: str) -> bool:
    if not enhanced:
        return False
    _, subject, detail = enhanced.split(".")
    return (subject == "1" and detail not in ("7", "8")) or (subject == "2" and detail == "1")


def _enhanced(text: str) -> str:
    """The RFC 3463 enhanced status code a reply starts with ('5.1.1'), or ''."""
    match = _ENHANCED.match(text)
    return ".".join(match.groups()) if match else ""
