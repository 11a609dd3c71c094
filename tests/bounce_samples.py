"""Bounce messages in the exact formats real servers send, each with what it should be read as.

Not a test module: tests/test_dsn.py runs them through `mailer bounces parse` and mailer.dsn. Each sample
is (name, message bytes, kind, [(recipient, hard|soft), ...]).
"""
from __future__ import annotations

RETURN_PATH = "bounces+{tag}@comune.torino.it"
ORIGINAL = (
    "From: =?utf-8?q?Citt=C3=A0_di_Torino?= <international.affairs@comune.torino.it>\n"
    "To: {rcpt}\nSubject: Work in Progress - maggio 2026\nMessage-ID: <work-in-progress.2026-05.c7.d1001@comune.torino.it>\n"
)


def postfix_dsn(rcpt: str, status: str, diagnostic: str, *, action: str = "failed", to: str = "bounces@comune.torino.it") -> bytes:
    """Postfix's bounce(8) notice: a human part, an RFC 3464 delivery-status part, the returned headers."""
    subject = "Delayed Mail (still being retried)" if action == "delayed" else "Undelivered Mail Returned to Sender"
    return f"""Return-Path: <>
Delivered-To: {to}
Date: Mon, 30 Nov 2026 10:12:03 +0100 (CET)
From: MAILER-DAEMON@relay.comune.torino.it (Mail Delivery System)
Subject: {subject}
To: {to}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="A1B2C3.1796000000/relay.comune.torino.it"
Message-Id: <20261130091203.A1B2C3@relay.comune.torino.it>

This is a MIME-encapsulated message.

--A1B2C3.1796000000/relay.comune.torino.it
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host relay.comune.torino.it.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

<{rcpt}>: host mx.example.org[192.0.2.10] said: {diagnostic} (in reply to RCPT TO command)

--A1B2C3.1796000000/relay.comune.torino.it
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.comune.torino.it
X-Postfix-Queue-ID: A1B2C3
X-Postfix-Sender: rfc822; {to}
Arrival-Date: Mon, 30 Nov 2026 10:11:58 +0100 (CET)

Final-Recipient: rfc822; {rcpt}
Original-Recipient: rfc822;{rcpt}
Action: {action}
Status: {status}
Remote-MTA: dns; mx.example.org
Diagnostic-Code: smtp; {diagnostic}

--A1B2C3.1796000000/relay.comune.torino.it
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

{ORIGINAL.format(rcpt=rcpt)}
--A1B2C3.1796000000/relay.comune.torino.it--
""".encode()


def exim_text(rcpt: str, reply: str, to: str = "bounces@comune.torino.it") -> bytes:
    """Exim's classic bounce: plain text, no delivery-status part."""
    return f"""Return-path: <>
Envelope-to: {to}
From: Mail Delivery System <Mailer-Daemon@mx.example.net>
To: {to}
Subject: Mail delivery failed: returning message to sender
Auto-Submitted: auto-replied
X-Failed-Recipients: {rcpt}

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  {rcpt}
    host mx.example.net [198.51.100.7]
    SMTP error from remote mail server after RCPT TO:<{rcpt}>:
    {reply}

------ This is a copy of the message, including all the headers. ------

{ORIGINAL.format(rcpt=rcpt)}
Torna la newsletter della Citta di Torino.
""".encode()


def qmail_text(rcpt: str, reply: str, to: str = "bounces@comune.torino.it") -> bytes:
    return f"""Return-Path: <>
Delivered-To: {to}
From: MAILER-DAEMON@mail.example.com
To: {to}
Subject: failure notice

Hi. This is the qmail-send program at mail.example.com.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<{rcpt}>:
203.0.113.5 does not like recipient.
Remote host said: {reply}
Giving up on 203.0.113.5.

--- Below this line is a copy of the message.

{ORIGINAL.format(rcpt=rcpt)}
""".encode()


def arf_complaint(rcpt: str, to: str = "bounces@comune.torino.it") -> bytes:
    """An RFC 5965 feedback report, as a mailbox provider's feedback loop sends it."""
    return f"""From: staff@hotmail.example
To: {to}
Subject: complaint about message from 192.0.2.44
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="part1_13d.2e68ed54"

--part1_13d.2e68ed54
Content-Type: text/plain; charset="US-ASCII"

This is an email abuse report for an email message received from IP 192.0.2.44.

--part1_13d.2e68ed54
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: SomeGenerator/1.0
Version: 1
Original-Mail-From: <{to}>
Original-Rcpt-To: <{rcpt}>
Arrival-Date: Mon, 30 Nov 2026 10:11:58 +0100

--part1_13d.2e68ed54
Content-Type: message/rfc822
Content-Disposition: inline

{ORIGINAL.format(rcpt=rcpt)}
Torna la newsletter.

--part1_13d.2e68ed54--
""".encode()


def auto_reply(sender: str, to: str = "bounces@comune.torino.it") -> bytes:
    return f"""From: {sender}
To: {to}
Subject: Risposta automatica: Work in Progress - maggio 2026
Auto-Submitted: auto-replied
X-Autoreply: yes

Sono fuori ufficio fino al 7 dicembre, con accesso limitato alla posta.
""".encode()


SAMPLES: list[tuple[str, bytes, str, list[tuple[str, str]]]] = [
    ("postfix-550-user-unknown", postfix_dsn("ghost@example.org", "5.1.1", "550 5.1.1 <ghost@example.org>: Recipient address rejected: User unknown in virtual mailbox table"), "bounce", [("ghost@example.org", "hard")]),
    ("postfix-552-mailbox-full", postfix_dsn("full@example.org", "5.2.2", "552 5.2.2 <full@example.org>: Mailbox full"), "bounce", [("full@example.org", "soft")]),
    ("postfix-554-spam-policy", postfix_dsn("strict@example.org", "5.7.1", "554 5.7.1 Service unavailable; Client host [192.0.2.44] blocked using zen.spamhaus.org"), "bounce", [("strict@example.org", "soft")]),
    ("postfix-domain-not-found", postfix_dsn("someone@nonexistent.example", "5.4.4", "Host or domain name not found. Name service error for name=nonexistent.example type=MX: Host not found"), "bounce", [("someone@nonexistent.example", "hard")]),
    ("gmail-550-no-such-account", postfix_dsn("nobody.here@gmail.example", "5.1.1", "550-5.1.1 The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos"), "bounce", [("nobody.here@gmail.example", "hard")]),
    ("office365-disabled", postfix_dsn("former@outlook.example", "5.2.1", "550 5.2.1 The email account that you tried to reach is disabled."), "bounce", [("former@outlook.example", "hard")]),
    ("yahoo-421-rate-limited-final", postfix_dsn("busy@yahoo.example", "5.7.0", "554 5.7.0 [TSS04] Messages from 192.0.2.44 temporarily deferred due to unexpected volume or user complaints"), "bounce", [("busy@yahoo.example", "soft")]),
    ("postfix-delayed", postfix_dsn("slow@example.net", "4.4.1", "connect to mx.example.net[198.51.100.7]:25: Connection timed out", action="delayed"), "delayed", []),
    ("exim-550-unknown", exim_text("gone@example.net", "550 5.1.1 <gone@example.net>: Recipient address rejected: User unknown"), "bounce", [("gone@example.net", "hard")]),
    ("exim-552-too-big", exim_text("small@example.net", "552 5.3.4 Message size exceeds fixed limit"), "bounce", [("small@example.net", "soft")]),
    ("qmail-550-unknown", qmail_text("left@example.com", "550 5.1.1 <left@example.com>... User unknown"), "bounce", [("left@example.com", "hard")]),
    ("arf-complaint", arf_complaint("angry@hotmail.example"), "complaint", []),
    ("auto-reply", auto_reply("away@example.org"), "auto-reply", []),
    ("garbage", b"\x00\xff\xfe garbage that is not a message at all\r\n\r\n\xde\xad\xbe\xef", "other", []),
    ("plain-reply", b"From: someone@example.org\nTo: bounces@comune.torino.it\nSubject: Re: Work in Progress\n\nGrazie!\n", "other", []),
]
