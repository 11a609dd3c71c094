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

from mailer.bounce_meaning import STATUS as _STATUS, classify, meaning  # noqa: F401  (classify re-exported)

_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")

AUTO_REPLY_SUBJECT = re.compile(
    r"^(?:auto(?:matic)?[ -]?(?:reply|response|risposta)|out of (?:the )?office|fuori sede|assente|absence|abwesend|vacation)", re.I
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
    subject = str(msg.get("Subject", ""))
    if _is_report(msg, "feedback-report"):
        return Reading("complaint", complainant=_complainant(msg), to=to, subject=subject)
    failures, delayed, reported = _delivery_status(msg)
    if not reported:  # no RFC 3464 part: an auto-reply, or a bounce in another format
        if _is_auto_reply(msg, subject) and not _looks_like_bounce(msg, subject):
            return Reading("auto-reply", to=to, subject=subject)
        failures = _flufl(msg)
    if failures:
        return Reading("bounce", tuple(failures), to=to, subject=subject, bounce_like=True)
    return Reading("delayed" if delayed else "other", to=to, subject=subject, bounce_like=reported or _looks_like_bounce(msg, subject))


BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery (?:status|fail|notification)|failure notice|returned mail|mail delivery failed|non-?delivery"
    r"|could not be delivered|mancato recapito|impossibile recapitare", re.I,
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
    if auto.startswith("auto-replied"):
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
    delivery-status part at all (then it is trusted alone: its own words say who failed and who waits)."""
    failures: list[Failure] = []
    delayed = reported = False
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        reported = True
        blocks = [dict(b.items()) for b in part.get_payload()] if part.is_multipart() else _field_blocks(_part_text(part))
        blocks = [{k.lower(): str(v) for k, v in b.items()} for b in blocks]
        mta = next((b.get("reporting-mta", "") for b in blocks if "reporting-mta" in b), "")
        mta = mta.split(";", 1)[-1].strip()
        for block in blocks:
            recipient = block.get("final-recipient") or block.get("original-recipient")
            if not recipient:
                continue
            action = block.get("action", "").strip().lower()
            if action == "delayed":
                delayed = True
                continue
            if action not in ("failed", ""):
                continue  # delivered, relayed, expanded
            address = _ADDRESS.search(recipient.split(";", 1)[-1])
            if not address:
                continue
            status = (_STATUS.search(block.get("status", "")) or _STATUS.search(block.get("diagnostic-code", "")))
            code = status.group(0) if status else ""
            diagnostic = " ".join(block.get("diagnostic-code", "").split(";", 1)[-1].split())
            found = meaning(code, diagnostic)
            failures.append(Failure(address.group(0).lower(), found.kind, code, diagnostic, mta, reason=found.reason))
    return failures, delayed, reported


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


def _flufl(msg: Message) -> list[Failure]:
    """flufl.bounce's detectors; each address gets our hard/soft call from the text near it."""
    import logging

    from flufl.bounce import all_failures

    logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)  # a detector choking on odd input logs a traceback

    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # noqa: BLE001: a detector choking on a malformed message is not our failure
        return []
    body = _all_text(msg)
    out = []
    for raw, default in [(a, "soft") for a in temporary] + [(a, "hard") for a in permanent]:
        address = raw.decode("utf-8", "replace").strip("<>").lower() if isinstance(raw, bytes) else str(raw).lower()
        if not _ADDRESS.fullmatch(address):
            continue
        near = _text_near(body, address)
        status = _STATUS.search(near)
        code = status.group(0) if status else ""
        found = meaning(code, near) if near else None
        kind = found.kind if found else default
        reason = found.reason if found else ("temporary" if default == "soft" else "other")
        out.append(Failure(address, kind, code, " ".join(near.split())[:300], "", "flufl", reason))
    return out


def _all_text(msg: Message) -> str:
    return "\n".join(_part_text(p) for p in msg.walk() if p.get_content_maintype() == "text")


def _text_near(body: str, address: str) -> str:
    """The lines that follow the first mention of the address: where MTAs put the server's reply."""
    at = body.lower().find(address)
    if at < 0:
        return ""
    tail = body[at:at + 600]
    paragraph = re.split(r"\n\s*\n(?=\S)", tail, maxsplit=1)[0]
    return paragraph
