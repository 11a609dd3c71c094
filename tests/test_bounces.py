"""What an SMTP reply means: pure rules, checked reply by reply."""
from __future__ import annotations

import pytest

from mailer.bounces import classify, reason_group
from mailer.models import DeliveryStatus
from mailer.transport import DATA, DONE, END, MAIL, RCPT, SmtpReply

SENT, BOUNCED, DEFERRED, UNCERTAIN = DeliveryStatus.SENT, DeliveryStatus.BOUNCED, DeliveryStatus.DEFERRED, DeliveryStatus.UNCERTAIN


@pytest.mark.parametrize(
    "reply,status,bounce,suppress",
    [
        (SmtpReply(250, "2.0.0 Ok: queued", DONE), SENT, None, False),
        (SmtpReply(550, "5.1.1 <a@x>: User unknown", RCPT), BOUNCED, "hard", True),
        (SmtpReply(550, "Mailbox unavailable", RCPT), BOUNCED, "hard", True),  # no enhanced code: classic hard
        (SmtpReply(550, "No such user here", RCPT), BOUNCED, "hard", True),
        (SmtpReply(550, "Message refused by policy", RCPT), BOUNCED, "soft", False),  # bare 550, not the mailbox
        (SmtpReply(550, "5.2.1 Mailbox disabled", RCPT), BOUNCED, "hard", True),
        (SmtpReply(552, "5.2.2 Mailbox full", RCPT), BOUNCED, "soft", False),
        (SmtpReply(550, "5.7.1 Service unavailable, client host blocked", RCPT), BOUNCED, "soft", False),
        (SmtpReply(554, "5.7.1 Message rejected as spam", DATA), BOUNCED, "soft", False),
        (SmtpReply(552, "5.3.4 Message too big", DATA), BOUNCED, "soft", False),
        (SmtpReply(451, "4.7.1 Greylisted", RCPT), DEFERRED, "soft", False),
        (SmtpReply(421, "4.4.5 Too busy", DATA), DEFERRED, "soft", False),
        (SmtpReply(None, "connection lost", RCPT), DEFERRED, "soft", False),
        (SmtpReply(None, "connection lost", DATA), DEFERRED, "soft", False),  # before the final dot: nothing arrived
        (SmtpReply(None, "connection lost", END), UNCERTAIN, None, False),  # after it: may have been delivered
        (SmtpReply(421, "4.7.0 Try again later, closing connection", MAIL), DEFERRED, "soft", False),  # come back later
        (SmtpReply(451, "4.3.0 Local error in processing", MAIL), DEFERRED, "soft", False),
        (SmtpReply(550, "5.7.1 Rate limit exceeded, try again later", RCPT), DEFERRED, "soft", False),  # throttling
        (SmtpReply(554, "5.7.0 Too many messages, slow down", END), DEFERRED, "soft", False),
        (SmtpReply(554, "5.7.1 Message rejected as spam", END), BOUNCED, "soft", False),
    ],
)
def test_replies(reply: SmtpReply, status: DeliveryStatus, bounce: str | None, suppress: bool) -> None:
    verdict = classify(reply)
    assert (verdict.status, verdict.bounce, verdict.suppress, verdict.stop_run) == (status, bounce, suppress, False)


@pytest.mark.parametrize("code", [530, 550, 553, 554])
def test_a_refused_sender_stops_the_run_and_blames_no_one(code: int) -> None:
    verdict = classify(SmtpReply(code, "5.7.1 Sender address rejected: not owned by user", MAIL))
    assert verdict.stop_run and verdict.status is None and not verdict.suppress and verdict.bounce is None


@pytest.mark.parametrize(
    "reply",
    [
        SmtpReply(550, "5.1.8 <bounces+1.x@comune.torino.it>: Sender address rejected: Domain not found", RCPT),
        SmtpReply(553, "5.1.7 The sender address is malformed", RCPT),
        SmtpReply(554, "5.7.1 <r@example.org>: Relay access denied", RCPT),
        SmtpReply(550, "Relaying denied", RCPT),
        SmtpReply(530, "5.7.0 Authentication required", RCPT),
        SmtpReply(550, "Sender verify failed", RCPT),  # Exim
        SmtpReply(550, "Administrative prohibition", RCPT),
    ],
)
def test_refusals_of_us_at_rcpt_stop_the_run_and_blame_no_one(reply: SmtpReply) -> None:
    verdict = classify(reply)
    assert verdict.stop_run and verdict.status is None and not verdict.suppress


def test_reason_groups_blank_addresses_and_queue_ids() -> None:
    assert reason_group("5.1.1 <a.b@example.org>: User unknown") == reason_group("5.1.1 <zz@example.net>: User unknown")
    assert reason_group("4.7.0 try later 9-20020a05600c02c9 gsmtp") == "4.7.0 try later 9-<id> gsmtp"
