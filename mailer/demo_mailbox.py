"""What a real relay would send back days after the demo's send: a few delivery reports and a complaint,
made from messages the capture server kept, into the demo's bounce Maildir. Demo data only."""
from __future__ import annotations

import mailbox
from email import message_from_bytes
from email.utils import formatdate, parseaddr
from pathlib import Path

# (what happens, the remote server's words, enhanced status) for the captured messages picked in order
LATE = [
    ("failed", "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table", "5.1.1"),
    ("failed", "552 5.2.2 <{rcpt}>: Mailbox full: quota exceeded", "5.2.2"),
    ("failed", "554 5.7.1 Service unavailable; Client host [192.0.2.44] blocked using zen.spamhaus.org", "5.7.1"),
    ("delayed", "connect to mx.{domain}[198.51.100.7]:25: Connection timed out", "4.4.1"),
]


def fill_bounce_mailbox(captured: Path, bounces: Path) -> int:
    """Write the late reports and one complaint into `bounces` (a Maildir); returns how many."""
    box = mailbox.Maildir(str(captured), factory=None, create=False)
    keys = sorted(box.keys())[3::23][: len(LATE) + 1]
    out = mailbox.Maildir(str(bounces), create=True)
    for n, key in enumerate(keys):
        data = box.get_bytes(key)
        original = message_from_bytes(data)
        rcpt = parseaddr(str(original["To"]))[1]
        return_path = parseaddr(str(original["Return-Path"]))[1]
        headers = "".join(f"{k}: {v}\n" for k, v in original.items() if k.lower() != "return-path").replace("\r\n", "\n")
        if n < len(LATE):
            action, words, status = LATE[n]
            out.add(_dsn(return_path, rcpt, action, words.format(rcpt=rcpt, domain=rcpt.partition("@")[2]), status, headers))
        else:
            out.add(_arf(rcpt, headers))
    out.close()
    return len(keys)


def _dsn(to: str, rcpt: str, action: str, words: str, status: str, headers: str) -> bytes:
    subject = "Delayed Mail (still being retried)" if action == "delayed" else "Undelivered Mail Returned to Sender"
    return f"""Return-Path: <>
From: MAILER-DAEMON@relay.comune.torino.it (Mail Delivery System)
To: {to}
Subject: {subject}
Date: {formatdate()}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="demo-report"

--demo-report
Content-Type: text/plain; charset=us-ascii

This is the mail system at host relay.comune.torino.it.

<{rcpt}>: host mx.{rcpt.partition("@")[2]} said: {words}

--demo-report
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.comune.torino.it

Final-Recipient: rfc822; {rcpt}
Original-Recipient: rfc822;{rcpt}
Action: {action}
Status: {status}
Diagnostic-Code: smtp; {words}

--demo-report
Content-Type: text/rfc822-headers

{headers}
--demo-report--
""".encode()


def _arf(rcpt: str, headers: str) -> bytes:
    return f"""From: feedback@mailbox-provider.example
To: bounces@comune.torino.it
Subject: Abuse report
Date: {formatdate()}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="demo-arf"

--demo-arf
Content-Type: text/plain

This is an email abuse report for a message received from 192.0.2.44.

--demo-arf
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: DemoFeedbackLoop/1.0
Version: 1

--demo-arf
Content-Type: text/rfc822-headers

{headers}
--demo-arf--
""".encode()
