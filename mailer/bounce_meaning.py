"""What a server's refusal means, by its words first and its status code second: hard (the address does not
work) or soft (the message, the sender or the moment did not), and a reason to count bounces by.

Pure and shared: SMTP-time replies (mailer.bounces) and bounce messages (mailer.dsn) are read by the same
rules, and mailer.policy decides from the result what happens to the address.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_REPLY_ADDRESS = re.compile(r"<?[^\s<>@]+@[^\s<>]+>?")
_QUEUE_ID = re.compile(r"\b(?=[A-Za-z0-9]*\d)[A-Za-z0-9]{8,}\b")
STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
FAILURE_STATUS = re.compile(r"\b([45])\.(\d{1,3})\.(\d{1,3})\b")  # in a transcript, the status of the refusal

# Each reason: a pattern of words, the kind it implies. Checked in this order; the first match wins, except
# that a hard reason's words lose to a full mailbox named in the same text ("mailbox full, user unknown" is rare;
# "over quota" with "mailbox unavailable" is common).
_REASONS: list[tuple[str, str, re.Pattern[str]]] = [
    ("temporary", "soft", re.compile(  # words of a passing failure that would otherwise read as hard
        r"not found, try again|temporary (?:dns|lookup|name|server) (?:error|failure)|command died"
        r"|retry time(?:out)? (?:not reached|exceeded)|have been failing for a long time|failed \d+ attempts|after \d+ attempts"
        r"|temporarily (?:unavailable|rejected)|try to resend", re.I)),
    ("account-disabled", "hard", re.compile(r"out of storage space and inactive|inactive (?:account|mailbox)|account (?:is )?inactive", re.I)),
    ("rate-limited", "soft", re.compile(r"sending quota|sending limit|daily (?:user )?sending|messages? per (?:hour|day)", re.I)),
    ("mailbox-full", "soft", re.compile(
        r"quota|mail ?folder is full|enough (?:disk |storage )?(?:space|storage)|out of (?:disk |storage )?space|storage space|mailbox (?:is )?full|mailbox full|box is full|over ?quota|quota (?:exceeded|full)|exceeded (?:the |its |their )?(?:storage|quota)"
        r"|insufficient (?:system )?storage|out of storage|storage (?:limit|quota)|mailbox size limit|casella piena", re.I)),
    ("greylisted", "soft", re.compile(r"grey ?list|gray ?list|greylisting|try (?:again )?later", re.I)),
    ("mailbox-unknown", "hard", re.compile(
        r"user unknown|unknown user|no such (?:user|mailbox|recipient|address|account)|does(?: not|n't|n.t) exist|not exist"
        r"|unknown (?:recipient|address|mailbox|local[- ]part)|invalid (?:recipient|mailbox|address)|user (?:not found|doesn)"
        r"|recipient (?:address )?rejected: (?:user|unknown|undeliverable|access denied)|recipient not found|address rejected"
        r"|mailbox (?:unavailable|not found|does not)|no mailbox|not our customer|unrouteable address|unroutable address"
        r"|address (?:is )?(?:not valid|invalid|unknown)|bad destination mailbox|no longer (?:valid|available|in use)"
        r"|utente (?:sconosciuto|inesistente)|indirizzo (?:inesistente|non valido)|not listed in", re.I)),
    ("account-disabled", "hard", re.compile(
        r"account (?:is |has been )?(?:disabled|inactive|deactivated|closed|suspended|expired|locked|blocked)"
        r"|(?:disabled|inactive|suspended) (?:account|mailbox|user)|mailbox (?:is )?(?:disabled|inactive|suspended)", re.I)),
    ("domain-unknown", "hard", re.compile(
        r"host (?:or domain name )?not found|domain (?:name )?(?:not found|does not exist|unknown|not exist)|no mx\b|nxdomain"
        r"|name service error|unrouteable mail domain|unknown domain|no route to domain|dns (?:type \w+ )?lookup failed"
        r"|relay(?:ing)? (?:access )?denied|we do not relay", re.I)),
    ("rate-limited", "soft", re.compile(
        r"rate limit|rate-limit|too many (?:messages|connections|recipients|emails)|throttl|unusual rate|sending limit"
        r"|receiving mail at a rate|temporarily deferred|exceeded (?:the )?(?:rate|message limit)", re.I)),
    ("message-too-large", "soft", re.compile(
        r"message (?:is )?too (?:large|big)|size exceeds|exceeds (?:the )?(?:maximum|size|message size)|message size|too large", re.I)),
    ("connection", "soft", re.compile(
        r"connection (?:dropped|timed out|refused|reset|lost|closed)|could not (?:initiate|connect|establish)|temp_failure"
        r"|timed out|unable to connect|no route to host|network is unreachable", re.I)),
    ("spam-block", "soft", re.compile(r"spam|junk|bulk mail|unsolicited|content (?:rejected|filter)|virus|malware|phish", re.I)),
    ("policy-block", "soft", re.compile(
        r"blocked|block ?list|blacklist|listed|reputation|policy|dmarc|\bspf\b|dkim|not authori[sz]ed|access denied"
        r"|refused|prohibited|poor reputation|banned|denied|not accepted here|are not accepted|ptr (?:resource )?record"
        r"|reverse dns|service not available|no smtp service", re.I)),
    ("temporary", "soft", re.compile(r"temporar|transient|try again", re.I)),
]
_SOFT_STATUS = {(2, 2): "mailbox-full", (3, 4): "message-too-large", (2, 3): "message-too-large",
                (4, 5): "rate-limited", (7, 1): "policy-block", (7, 26): "policy-block", (7, 509): "policy-block"}
_HARD_STATUS = {(1, 1): "mailbox-unknown", (1, 2): "domain-unknown", (1, 3): "mailbox-unknown", (1, 6): "mailbox-unknown",
                (1, 10): "mailbox-unknown", (2, 1): "account-disabled", (4, 4): "domain-unknown"}

REASON_LABELS = {
    "mailbox-unknown": "unknown address",
    "domain-unknown": "domain does not exist",
    "account-disabled": "account disabled",
    "mailbox-full": "mailbox full",
    "message-too-large": "message too large",
    "greylisted": "greylisted / try later",
    "rate-limited": "rate limited",
    "spam-block": "refused as spam",
    "policy-block": "policy or reputation block",
    "temporary": "temporary failure",
    "connection": "connection lost",
    "other": "other",
}
# Reasons that say something about the address (counted towards its bounce score), as opposed to the
# message, the sender's reputation or the moment, which the next message may not meet at all.
ABOUT_THE_ADDRESS = {"mailbox-unknown", "domain-unknown", "account-disabled", "mailbox-full", "other", "temporary"}


@dataclass(frozen=True)
class Meaning:
    kind: str  # "hard" or "soft"
    reason: str  # a key of REASON_LABELS


def meaning(status: str, text: str) -> Meaning:
    """Hard or soft, and why, for a refusal with this enhanced status code (may be '') and these words.

    Words first: a full mailbox, greylisting, rate limits, size, spam and policy blocks are soft even with a
    5.x.x code; an unknown user, a missing domain or a disabled account is hard. Without telling words, the
    enhanced code decides, then the class of the basic code (4xx soft, 5xx hard)."""
    text = text or ""
    for reason, kind, pattern in _REASONS:
        if pattern.search(text):
            return Meaning(kind, reason)
    found = STATUS.search(status or "") or STATUS.search(text)
    if found:
        klass, subject, detail = (int(g) for g in found.groups())
        if (subject, detail) in _SOFT_STATUS:
            return Meaning("soft", _SOFT_STATUS[(subject, detail)])
        if klass == 4:
            return Meaning("soft", "temporary")
        if (subject, detail) in _HARD_STATUS:
            return Meaning("hard", _HARD_STATUS[(subject, detail)])
        return Meaning("hard", "other") if klass == 5 else Meaning("soft", "temporary")
    code = re.search(r"\b([45])\d\d\b", text)
    if code and code.group(1) == "4":
        return Meaning("soft", "temporary")
    return Meaning("hard", "other")


def classify(status: str, diagnostic: str) -> str:
    """'hard' or 'soft' (see meaning())."""
    return meaning(status, diagnostic).kind


def reason_group(reply: str) -> str:
    """The reply with what varies per recipient (addresses, queue ids) blanked, so that
    '550 5.1.1 <a@x>: User unknown' and '550 5.1.1 <b@y>: User unknown' count as one reason."""
    text = _REPLY_ADDRESS.sub("<address>", reply)
    text = _QUEUE_ID.sub("<id>", text)
    return " ".join(text.split())[:300]


@dataclass(frozen=True)
class Bounce:
    """One bounce of one recipient, as met in the session or read in a bounce message."""

    kind: str  # hard or soft
    reason: str  # mailer.bounce_meaning's reason
    text: str  # the server's words
    source: str  # smtp or dsn
    code: int | None = None  # the basic SMTP code, when known
    status: str = ""  # the enhanced status code, when known
    recipient: str = ""
    reporting_mta: str = ""
