"""What a message arriving at the bounce address says: which recipients failed, how, and whether it is a
bounce at all (auto-replies and complaints are not). Pure: bytes in, values out; matching to deliveries
and acting on it are the inbox's job.

Order of reading: an ARF complaint (RFC 5965); an auto-reply (RFC 3834); the RFC 3464 delivery-status
part; then flufl.bounce's detectors for the many non-standard formats (its hard/soft call is replaced by
ours, by meaning). Hard or soft is decided by what the server said, not by the status class alone.
"""
from __future__ import annotations

import email
import re
from dataclasses import dataclass, field
from email.message import Message
from email.utils import getaddresses

from mailer.bounce_meaning import FAILURE_STATUS, STATUS as _STATUS, Meaning, classify, meaning  # noqa: F401  (classify re-exported)

_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")

AUTO_REPLY_SUBJECT = re.compile(
    r"^(?:auto(?:matic)?[ -]?(?:reply|response|risposta)|risposta automatica|r[ée]ponse automatique|out of (?:the )?office"
    r"|fuori sede|assente|absence|abwesend|abwesenheitsnotiz|vacation|on leave|in ferie|fuera de (?:la )?oficina|ausente)", re.I
)


@dataclass(frozen=True)
class Failure:
    """One recipient the report says was not delivered."""

    recipient: str
    kind: str  # "hard" or "soft"
    status: str = ""  # enhanced status code, e.g. 5.1.1
    diagnostic: str = ""  # the remote server's words
    reporting_mta: str = ""
    source: str = "dsn"  # dsn (RFC 3464), flufl (another format flufl.bounce knows)
    reason: str = ""  # a key of mailer.bounce_meaning.REASON_LABELS

    @property
    def why(self) -> str:
        return self.reason or meaning(self.status, self.diagnostic).reason


@dataclass(frozen=True)
class Reading:
    """What one inbound message is."""

    kind: str  # bounce, delayed, complaint, auto-reply, other
    failures: tuple[Failure, ...] = ()
    complainant: str = ""  # for a complaint: the recipient who complained, when the report says
    to: tuple[str, ...] = field(default=())  # the addresses it was sent to (our VERP return path is among them)
    subject: str = ""
    bounce_like: bool = False  # sent by a mail system about a failure, whether or not its report could be read


def read_message(data: bytes) -> Reading:
    """Read one message; never raises on malformed input (what cannot be read is kind 'other')."""
    try:
        msg = email.message_from_bytes(data)
    except Exception:  # noqa: BLE001: the stdlib parser is lenient, but a message is untrusted input
        return Reading("other")
    to = tuple(a for _, a in getaddresses(msg.get_all("To", []) + msg.get_all("Delivered-To", []) + msg.get_all("X-Original-To", [])) if a)
    subject = _decoded(msg.get("Subject", ""))
    if _is_report(msg, "feedback-report"):
        return Reading("complaint", complainant=_complainant(msg), to=to, subject=subject)
    failures, delayed, reported = _delivery_status(msg)
    if not reported:  # no RFC 3464 report naming a recipient: an auto-reply, or a bounce in another format
        if _is_auto_reply(msg, subject) and not _looks_like_bounce(msg, subject):
            return Reading("auto-reply", to=to, subject=subject)
        failures, warned = _flufl(msg)
        if not failures and not warned and _looks_like_bounce(msg, subject):
            failures = _named_in_notice(msg)
        delayed = warned and not failures
    if failures:
        return Reading("bounce", tuple(failures), to=to, subject=subject, bounce_like=True)
    # A report that named its recipients and failed none of them (delivered, relayed, delayed) is no bounce.
    return Reading("delayed" if delayed else "other", to=to, subject=subject, bounce_like=not reported and _looks_like_bounce(msg, subject))


BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery (?:status|fail|notification)|failure notice|returned mail|mail delivery failed|non-?delivery"
    r"|could not be delivered|mancato recapito|impossibile recapitare|rejected mail|automatically rejected|not delivered"
    r"|delivery has failed|returned to sender|nicht zustellbar|non recapitabile|mancata consegna", re.I,
)


def _looks_like_bounce(msg: Message, subject: str) -> bool:
    """Bounces carry Auto-Submitted: auto-replied too (Postfix, Exim); tell them from out-of-office notes."""
    sender = " ".join(a for _, a in getaddresses(msg.get_all("From", []))).lower()
    return (
        bool(msg.get("X-Failed-Recipients"))
        or any(f"{name}@" in sender for name in ("mailer-daemon", "postmaster", "mail-daemon"))
        or bool(BOUNCE_SUBJECT.search(subject))
    )


def _is_report(msg: Message, report_type: str) -> bool:
    return msg.get_content_type() == "multipart/report" and msg.get_param("report-type", "").lower() == report_type


def _is_auto_reply(msg: Message, subject: str) -> bool:
    auto = str(msg.get("Auto-Submitted", "no")).lower()
    if auto.startswith(("auto-replied", "auto-generated")):
        return True
    if msg.get("X-Autoreply") or msg.get("X-Autorespond") or str(msg.get("Precedence", "")).lower() == "auto_reply":
        return True
    return bool(AUTO_REPLY_SUBJECT.search(subject.strip()))


def _complainant(msg: Message) -> str:
    """The complaining recipient: Original-Rcpt-To of the feedback report, else the returned message's To."""
    for part in msg.walk():
        if part.get_content_type() == "message/feedback-report":
            for line in _part_text(part).splitlines():
                name, _, value = line.partition(":")
                if name.strip().lower() == "original-rcpt-to" and _ADDRESS.search(value):
                    return _ADDRESS.search(value).group(0).lower()  # type: ignore[union-attr]
        if part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            enclosed = part.get_payload(0) if part.is_multipart() else email.message_from_string(_part_text(part))
            found = getaddresses(enclosed.get_all("To", []))  # type: ignore[union-attr]
            if found and found[0][1]:
                return found[0][1].lower()
    return ""


def _part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload.decode("utf-8", "replace")
    if isinstance(payload, list):  # message/* parts hold their fields as sub-messages
        return "\n".join(str(p) for p in payload)
    return str(part.get_payload() or "")


def _delivery_status(msg: Message) -> tuple[list[Failure], bool, bool]:
    """The failed recipients of an RFC 3464 report, whether it reported any delay, and whether it had a
    delivery-status part at all. The address we sent to (Original-Recipient) is preferred to the one the
    mail ended at (Final-Recipient, after aliases), and either must be an Internet address (not X.400).
    A returned message is not read: a bounce of a bounce reports only its own recipient. `reported` is
    true when the report named at least one recipient: then it is trusted alone."""
    failures: list[Failure] = []
    delayed = reported = False
    notice = _notice_text(msg)
    for part in _own_parts(msg):
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = [dict(b.items()) for b in part.get_payload()] if part.is_multipart() else _field_blocks(_part_text(part))
        blocks = [{k.lower(): str(v) for k, v in b.items()} for b in blocks]
        mta = next((b.get("reporting-mta", "") for b in blocks if "reporting-mta" in b), "")
        mta = mta.split(";", 1)[-1].strip()
        for block in blocks:
            address = _recipient(block)
            if not address:
                continue
            reported = True  # a recipient block: the report speaks for itself, no guessing from its text
            action = block.get("action", "").strip().lower()
            if action.startswith("delayed"):
                delayed = True
                continue
            if action and not action.startswith(("failed", "failure", "error", "undeliverable", "bounced")):
                continue  # delivered, relayed, expanded
            status = (_STATUS.search(block.get("status", "")) or _STATUS.search(block.get("diagnostic-code", "")))
            code = status.group(0) if status else ""
            diagnostic = " ".join(block.get("diagnostic-code", "").split(";", 1)[-1].split())
            if not diagnostic:  # the human-readable part often says why (Exim: "retry timeout exceeded")
                diagnostic = " ".join(_text_near(notice, address).split())[:300]
            found = meaning(code, diagnostic)
            failures.append(Failure(address, found.kind, code, diagnostic, mta, reason=found.reason))
    return failures, delayed, reported


def _recipient(block: dict[str, str]) -> str:
    for name in ("original-recipient", "final-recipient"):
        kind, _, value = block.get(name, "").partition(";")
        if not value:
            value, kind = kind, "rfc822"
        if kind.strip().lower() not in ("rfc822", "") :
            continue
        found = _ADDRESS.search(value)
        if found and _plausible(found.group(0)):
            return found.group(0).lower()
    return ""


def _plausible(address: str) -> bool:
    """A real address: not a redacted one (david...@gmail.com), not a host's internal name."""
    local, _, domain = address.partition("@")
    return ".." not in local and not local.startswith(".") and "." in domain and not domain.endswith(("-daemon", ".local"))


def _own_parts(msg: Message) -> list[Message]:
    """The message's parts, without descending into enclosed messages (message/rfc822)."""
    parts = [msg]
    if msg.is_multipart() and msg.get_content_maintype() != "message":
        for sub in msg.get_payload():
            if isinstance(sub, Message):
                parts.extend(_own_parts(sub))
    return parts


def _notice_text(msg: Message) -> str:
    """The human-readable text of the report itself (not of the returned message)."""
    return "\n".join(_part_text(p) for p in _own_parts(msg) if p.get_content_maintype() == "text" and p.get_content_subtype() != "rfc822-headers")


def _field_blocks(text: str) -> list[dict[str, str]]:
    """'Name: value' blocks separated by blank lines (a delivery-status body the parser left as text)."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
            current, last = {}, ""
        elif line[:1] in " \t" and last:
            current[last] += " " + line.strip()
        elif ":" in line:
            last, _, value = line.partition(":")
            current[last] = value.strip()
    if current:
        blocks.append(current)
    return blocks


def _flufl(msg: Message) -> tuple[list[Failure], bool]:
    """flufl.bounce's detectors: its permanent failures get our hard/soft call from the text around the
    address; its temporary ones are warnings (the server keeps trying). Returns (failures, warned)."""
    import logging

    from flufl.bounce import all_failures

    logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)  # a detector choking on odd input logs a traceback

    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # noqa: BLE001: a detector choking on a malformed message is not our failure
        return [], False
    body = _notice_text(msg) or _all_text(msg)
    out = []
    for raw in permanent:
        address = raw.decode("utf-8", "replace").strip("<>").lower() if isinstance(raw, bytes) else str(raw).lower()
        if not _ADDRESS.fullmatch(address) or not _plausible(address):
            continue
        out.append(_failure_in(body, address, "flufl"))
    return out, bool(temporary) and not out


def _named_in_notice(msg: Message) -> list[Failure]:
    """A bounce neither RFC 3464 nor flufl.bounce can read (a text-only Exchange notice, an Italian provider's
    "mancato recapito"): the addresses its own text names, before the returned copy, other than the mail
    system's and ours."""
    text = _notice_text(msg)
    text = _COPY_MARKER.split(text, maxsplit=1)[0]
    own = {a.lower() for _, a in getaddresses(msg.get_all("From", []) + msg.get_all("To", []) + msg.get_all("Reply-To", []))}
    seen: list[str] = []
    quoted = re.compile(r"(?i)^\s*(?:from|da|mittente|sender|reply-to|message-id|x-riferimento-message-id|in-reply-to|references)\s*:")
    for found in _ADDRESS.finditer(text):
        line = text[text.rfind("\n", 0, found.start()) + 1:found.start()]
        if quoted.match(line) or "message-id" in line.lower():
            continue  # the original's sender or an identifier, not a recipient
        address = found.group(0).lower().rstrip(".").strip("'\"")
        local = address.partition("@")[0]
        if address in own or address in seen or not _plausible(address) or local in ("postmaster", "mailer-daemon", "mail-daemon"):
            continue
        seen.append(address)
    if not seen or len(seen) > 5:
        return []
    out = []
    for address in seen:
        out.append(_failure_in(text, address, "text"))
    return out


def _failure_in(notice: str, address: str, source: str) -> Failure:
    """A failed recipient read from a notice's own words: the refusal's status and meaning next to the address."""
    near = _text_near(notice, address)
    status = FAILURE_STATUS.search(near)
    code = status.group(0) if status else ""
    found = _meaning_in(code, near, notice)
    return Failure(address, found.kind, code, " ".join(near.split())[:300], "", source, found.reason)


def _meaning_in(code: str, near: str, notice: str) -> Meaning:
    """The meaning of the words next to the address; when they say nothing telling, of the whole notice
    before the returned copy (many MTAs give the reason in a paragraph of its own)."""
    found = meaning(code, near)
    if found.reason != "other":
        return found
    before_copy = _COPY_MARKER.split(notice, maxsplit=1)[0]
    wider = meaning(code, before_copy)
    return wider if wider.reason != "other" else found


_COPY_MARKER = re.compile(r"(?im)^.*(?:original message|copy of the message|below this line|messaggio originale"
                          r"|returned message|message follows|headers of the original).*$")


def _decoded(value: object) -> str:
    """A header as text, its RFC 2047 encoded words decoded."""
    from email.header import decode_header, make_header

    try:
        return str(make_header(decode_header(str(value))))
    except Exception:  # noqa: BLE001: a malformed encoded word is left as it is
        return str(value)


def _all_text(msg: Message) -> str:
    return "\n".join(_part_text(p) for p in msg.walk() if p.get_content_maintype() == "text")


def _text_near(body: str, address: str) -> str:
    """The line that names the address and the paragraph after it: where MTAs put the server's reply
    ("User's mailbox is full: <a@b>" gives it before, Postfix and Exim after)."""
    at = body.lower().find(address)
    if at < 0:
        return ""
    start = body.rfind("\n", 0, at) + 1
    tail = body[start:at + 600]
    paragraph = re.split(r"\n\s*\n(?=\S)", tail, maxsplit=1)[0]
    return paragraph
