"""Use cases of the bounce and unsubscribe mailbox: read what arrived, tie it to a delivery, act on it.

`read_bounce` only reads (`mailer bounces parse`). `take_in` records one message and does what it asks, in
one transaction: a bounce marks its delivery and goes through the bounce policy; a complaint suppresses and
unsubscribes its sender; a mailto unsubscribe carrying a valid signed token unsubscribes its owner. Every
message is kept whole; what intake cannot act on is flagged for review. The same message taken in twice
changes nothing the second time.
"""
from __future__ import annotations

import email
import re
from collections import Counter
from dataclasses import dataclass, field
from email.message import Message
from email.utils import getaddresses, parseaddr
from typing import TYPE_CHECKING

from mailer.core import Core
from mailer.dsn import Failure, Reading, read_message
from subscribers.errors import InvalidToken

if TYPE_CHECKING:
    from sqlmodel import Session

    from mailer.inbound_store import DeliveryRef, InboundLine
    from mailer.mailboxes import MailSource
    from subscribers.tokens import Claim

_TOKEN = re.compile(r"[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{10,}")  # itsdangerous: payload.signature
_LINK_TOKEN = re.compile(r"/u/([A-Za-z0-9_.-]+)|subject=unsubscribe(?:%20|\+|\s)+([A-Za-z0-9_.%-]+)", re.I)
_UNSUBSCRIBE_SUBJECT = re.compile(r"^\s*(?:unsubscribe|cancellami|cancellazione|disiscrivi)", re.I)


@dataclass(frozen=True)
class ReadBounce:
    reading: Reading
    delivery_id: int | None  # from our signed return path (VERP); None when absent or forged


@dataclass(frozen=True)
class Taken:
    """What intake did with one message."""

    kind: str  # bounce, delayed, complaint, auto-reply, unsubscribe, other
    outcome: str
    inbound_id: int
    duplicate: bool = False
    needs_review: bool = False
    bounces: int = 0  # bounce events recorded
    suppressed: int = 0
    unsubscribed: int = 0


@dataclass
class IntakeSummary:
    mailbox: str
    seen: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    bounces: int = 0
    suppressed: int = 0
    unsubscribed: int = 0
    review: list[tuple[str, Taken]] = field(default_factory=list)  # (mailbox key, what was kept)


class Inbox(Core):
    def read_bounce(self, data: bytes) -> ReadBounce:
        """What a message at the bounce address says, and which delivery it is about when the return path
        it was sent to carries a valid signed tag (a forged or damaged tag matches nothing)."""
        reading = read_message(data)
        return ReadBounce(reading, self._tagged_delivery(reading.to))

    def process_mailbox(self, source: MailSource) -> IntakeSummary:
        """Take in every message of a mailbox; each is marked done in the mailbox only once it is on record."""
        summary = IntakeSummary(source.label)
        try:
            for key, data in source.messages():
                taken = self.take_in(data, mailbox=source.label)
                source.done(key)
                summary.seen += 1
                if taken.duplicate:
                    summary.duplicates += 1
                    continue
                summary.kinds[taken.kind] += 1
                summary.bounces += taken.bounces
                summary.suppressed += taken.suppressed
                summary.unsubscribed += taken.unsubscribed
                if taken.needs_review:
                    summary.review.append((key, taken))
        finally:
            source.close()
        return summary

    def take_in(self, data: bytes, *, mailbox: str = "") -> Taken:
        """Record one inbound message and act on it (see the module's docstring)."""
        from mailer import inbound_store as inbound
        from subscribers.models import utcnow

        digest = inbound.digest_of(data)
        try:
            with self.session() as session:
                conn = session.connection()
                earlier = inbound.already_taken(conn, digest)
                if earlier is not None:
                    return Taken(earlier[1], f"already taken in as message {earlier[0]}: {earlier[2]}", earlier[0], duplicate=True)
                msg = _parse(data)
                record = inbound.Inbound(digest, mailbox, _header(msg, "Message-ID"), parseaddr(_header(msg, "From"))[1],
                                         _header(msg, "Subject"), data)
                inbound_id = inbound.keep(conn, record, utcnow())
                taken = self._act(session, inbound_id, data, msg)
                inbound.settle_inbound(conn, inbound_id, taken.kind, taken.outcome, taken.needs_review)
                return taken
        except Exception as exc:  # noqa: BLE001: one odd message must not stop the mailbox; the database failing must
            if _is_duplicate(exc):  # another run took the same message in meanwhile
                return Taken("other", "taken in by another run meanwhile", 0, duplicate=True)
            if _is_database_error(exc):
                raise
            with self.session() as session:  # what it did is rolled back; the message itself is kept for review
                conn = session.connection()
                record = inbound.Inbound(digest, mailbox, "", "", "", data)
                inbound_id = inbound.keep(conn, record, utcnow())
                outcome = f"could not be processed ({type(exc).__name__}: {str(exc)[:200]})"
                inbound.settle_inbound(conn, inbound_id, "other", outcome, True)
            return Taken("other", outcome, inbound_id, needs_review=True)

    def inbound_messages(self, *, review_only: bool = False, limit: int = 100, offset: int = 0) -> list[InboundLine]:
        """What arrived at the bounce and unsubscribe addresses, newest first."""
        from mailer import inbound_store as inbound

        with self.session() as session:
            return inbound.inbound_lines(session.connection(), review_only=review_only, limit=limit, offset=offset)

    def inbound_raw(self, inbound_id: int) -> bytes:
        """The message as it arrived, for review."""
        from mailer import inbound_store as inbound
        from mailer.errors import NotFound

        with self.session() as session:
            data = inbound.raw_message(session.connection(), inbound_id)
        if data is None:
            raise NotFound(f"no inbound message {inbound_id}")
        return data

    # ---- what each kind of message does ------------------------------------------------------------

    def _act(self, session: Session, inbound_id: int, data: bytes, msg: Message | None) -> Taken:
        if msg is None or not msg.keys():
            return Taken("other", "not a mail message (no headers)", inbound_id, needs_review=True)
        found = self.read_bounce(data)
        reading = found.reading
        if reading.kind == "complaint":
            return self._complaint(session, inbound_id, data, found)
        if reading.kind == "bounce":
            return self._bounces(session, inbound_id, data, found, list(reading.failures))
        if reading.kind == "delayed":
            return Taken("delayed", "delay notice: the relay is still trying, nothing to do", inbound_id)
        if reading.kind == "auto-reply":
            return Taken("auto-reply", "auto-reply: nothing to do", inbound_id)
        if self._is_unsubscribe_request(msg, reading):
            return self._mailto(session, inbound_id, msg)
        if found.delivery_id is not None and reading.bounce_like:
            # Our signed return path names the delivery even when the report itself cannot be read.
            return self._bounces(session, inbound_id, data, found, [])
        return Taken("other", "not a bounce, complaint or unsubscribe request", inbound_id, needs_review=True)

    def _bounces(self, session: Session, inbound_id: int, data: bytes, found: ReadBounce, failures: list[Failure]) -> Taken:
        from mailer import inbound_store as inbound
        from mailer.bounce_log import apply_policy, log_bounce
        from mailer.bounce_meaning import Bounce, meaning
        from subscribers.models import utcnow

        conn = session.connection()
        now = utcnow()
        tagged = inbound.delivery(conn, found.delivery_id) if found.delivery_id else None
        if not failures and tagged is not None:  # unreadable report, trusted tag
            text = _plain_text(_parse(data))
            m = meaning("", text)
            kind = m.kind if m.reason != "other" else "soft"  # no telling words: never hard on a guess
            failures = [Failure(tagged.email, kind, "", " ".join(text.split())[:300], "", "tag", m.reason)]
        claims = self._link_claims(data, session)
        logged = suppressed = 0
        unmatched: list[str] = []
        by_address = 0
        for failure in failures:
            ref, signed = self._delivery_for(conn, failure.recipient, tagged, claims, single=len(failures) == 1)
            if ref is None:
                unmatched.append(failure.recipient)
                continue
            bounce = Bounce(failure.kind, failure.why, failure.diagnostic, "dsn", _basic_code(failure.diagnostic),
                            failure.status, failure.recipient, failure.reporting_mta)
            log_bounce(conn, bounce, delivery_id=ref.delivery_id, campaign_id=ref.campaign_id,
                       subscriber_id=ref.subscriber_id, now=now, inbound_id=inbound_id)
            inbound.mark_bounced(conn, ref.delivery_id, now)
            # Matched by a signature of ours: the policy as it stands. By address alone (anyone can write a
            # DSN naming anyone): scored as a soft bounce, never suppressed at once, and flagged for review.
            kind = failure.kind if signed else "soft"
            by_address += not signed
            decision = apply_policy(conn, self.settings.bounce_policy, ref.subscriber_id, kind, failure.why, now, ref.campaign_id)
            logged += 1
            suppressed += bool(decision and decision.suppress)
        parts = [f"{logged} bounce{'s' if logged != 1 else ''} recorded"]
        if suppressed:
            parts.append(f"{suppressed} address{'es' if suppressed != 1 else ''} suppressed")
        if by_address:
            parts.append(f"{by_address} matched by address only (no signed tag): scored, not suppressed at once")
        if unmatched:
            parts.append(f"no subscriber for {', '.join(unmatched[:5])}")
        return Taken("bounce", "; ".join(parts), inbound_id, needs_review=bool(unmatched) or not logged or bool(by_address),
                     bounces=logged, suppressed=suppressed)

    def _complaint(self, session: Session, inbound_id: int, data: bytes, found: ReadBounce) -> Taken:
        """An abuse report (ARF): its sender gets no more mail, marked complained and off every list."""
        from mailer import inbound_store as inbound
        from subscribers import store
        from subscribers.models import Subscriber
        from subscribers.statuses import SubscriberStatus

        conn = session.connection()
        subscriber_id, campaign_id = None, None
        claims = self._link_claims(data, session)
        if claims:
            subscriber_id, campaign_id = claims[0].subscriber_id, claims[0].campaign_id or None
        elif found.delivery_id and (ref := inbound.delivery(conn, found.delivery_id)):
            subscriber_id, campaign_id = ref.subscriber_id, ref.campaign_id
        elif found.reading.complainant:
            # A report naming an address but carrying no signature of ours could come from anyone: an
            # operator decides (mailer subscribers remove), intake does not.
            who = found.reading.complainant
            known = store.find_subscriber_id(conn, who) is not None
            return Taken("complaint", f"complaint naming {who} ({'a subscriber' if known else 'not a subscriber'}) without a signed "
                         "token or tag: nobody unsubscribed", inbound_id, needs_review=True)
        subscriber = session.get(Subscriber, subscriber_id) if subscriber_id else None
        if subscriber is None:
            who = found.reading.complainant or "an unnamed recipient"
            return Taken("complaint", f"complaint from {who}: no subscriber found", inbound_id, needs_review=True)
        assert subscriber.id is not None
        ended = store.unsubscribe(session, subscriber, None, method="complaint", campaign_id=campaign_id)
        changed = store.suppress(conn, subscriber.id, SubscriberStatus.COMPLAINED, method="complaint",
                                 detail="abuse report (ARF)", campaign_id=campaign_id)
        session.expire(subscriber)
        outcome = f"complaint from {subscriber.email}: " + ("marked complained, " if changed else "") + f"{ended} subscription(s) ended"
        return Taken("complaint", outcome, inbound_id, suppressed=int(changed), unsubscribed=ended)

    def _mailto(self, session: Session, inbound_id: int, msg: Message) -> Taken:
        """A message to the List-Unsubscribe mailto: address. Only a valid signed token in its subject or
        body unsubscribes anyone; the From header alone proves nothing."""
        from subscribers import choices, store
        from subscribers.models import MailingList

        sender = parseaddr(str(msg.get("From", "")))[1] or "an unnamed sender"
        for candidate in _TOKEN.findall(str(msg.get("Subject", "")) + "\n" + _plain_text(msg)):
            try:
                claim = self.signer.read_unsubscribe_token(candidate)
                subscriber = choices.subscriber_for(session, claim)
            except InvalidToken:
                continue
            mailing_list = session.get(MailingList, claim.list_id) if claim.list_id else None
            if claim.list_id and mailing_list is None:
                return Taken("unsubscribe", f"unsubscribe token of {subscriber.email} for a list that no longer exists: "
                             "nobody unsubscribed", inbound_id, needs_review=True)
            ended = store.unsubscribe(session, subscriber, mailing_list, method="mailto", campaign_id=claim.campaign_id or None)
            what = f"list '{mailing_list.name}'" if mailing_list else "every list"
            return Taken("unsubscribe", f"mailto unsubscribe of {subscriber.email} from {what}: {ended} subscription(s) ended",
                         inbound_id, unsubscribed=ended)
        return Taken("unsubscribe", f"unsubscribe request from {sender} without a valid link token: nobody unsubscribed",
                     inbound_id, needs_review=True)

    # ---- matching -----------------------------------------------------------------------------------

    def _delivery_for(
        self, conn: object, recipient: str, tagged: DeliveryRef | None, claims: list[Claim], *, single: bool,
    ) -> tuple[DeliveryRef | None, bool]:
        """The delivery a failed recipient is about, and whether a signature of ours says so: the signed
        return path's, the signed unsubscribe link's in the returned headers; else (unsigned) the newest
        delivery to the subscriber with that address."""
        from mailer import inbound_store as inbound
        from subscribers import store

        if tagged is not None and (single or tagged.email == recipient):
            return tagged, True
        for claim in claims:
            ref = inbound.delivery_of(conn, claim.campaign_id, claim.subscriber_id) if claim.campaign_id else None  # type: ignore[arg-type]
            if ref is not None and (single or ref.email == recipient):
                return ref, True
        subscriber_id = store.find_subscriber_id(conn, recipient)  # type: ignore[arg-type]
        return (inbound.latest_delivery(conn, subscriber_id) if subscriber_id else None), False  # type: ignore[arg-type]

    def _link_claims(self, data: bytes, session: Session | None = None) -> list[Claim]:
        """Valid signed unsubscribe tokens in the message (the List-Unsubscribe header of a returned copy),
        of subscribers whose links were not revoked since."""
        from subscribers import choices

        claims = []
        text = data.decode("utf-8", "replace").replace("=\r\n", "").replace("=\n", "")
        for match in _LINK_TOKEN.finditer(text):
            token = (match.group(1) or match.group(2) or "").replace("%2E", ".").replace("%2e", ".")
            try:
                claim = self.signer.read_unsubscribe_token(token)
                if session is not None:
                    choices.subscriber_for(session, claim)  # revoked links (token version bumped) count for nothing
            except InvalidToken:
                continue
            claims.append(claim)
        return claims

    def _is_unsubscribe_request(self, msg: Message, reading: Reading) -> bool:
        ours = {nl.unsubscribe_mailto.lower() for nl in self.settings.newsletters.values()}
        to = {a.lower() for _, a in getaddresses(msg.get_all("To", []) + msg.get_all("Delivered-To", []) + msg.get_all("X-Original-To", []))}
        return bool(to & ours) or bool(_UNSUBSCRIBE_SUBJECT.search(reading.subject))

    def _tagged_delivery(self, addresses: tuple[str, ...]) -> int | None:
        for nl in self.settings.newsletters.values():
            local, _, domain = nl.bounce_address.partition("@")
            pattern = re.compile(rf"^{re.escape(local)}\+([A-Za-z0-9._-]+)@{re.escape(domain)}$", re.I)
            for address in addresses:
                found = pattern.match(address)
                if found:
                    try:
                        return self.signer.read_bounce_tag(found.group(1))
                    except InvalidToken:
                        continue
        return None


def _header(msg: Message | None, name: str) -> str:
    if msg is None:
        return ""
    try:
        return str(msg.get(name, "")).strip()
    except Exception:  # noqa: BLE001: a header the parser cannot turn into text
        return ""


def _is_duplicate(exc: Exception) -> bool:
    import sys

    sqlalchemy_errors = sys.modules.get("sqlalchemy.exc")
    return bool(sqlalchemy_errors and isinstance(exc, sqlalchemy_errors.IntegrityError) and "digest" in str(exc).lower())


def _is_database_error(exc: Exception) -> bool:
    import sqlite3
    import sys

    sqlalchemy_errors = sys.modules.get("sqlalchemy.exc")
    return isinstance(exc, sqlite3.Error) or bool(sqlalchemy_errors and isinstance(exc, sqlalchemy_errors.SQLAlchemyError))


def _parse(data: bytes) -> Message | None:
    try:
        return email.message_from_bytes(data)
    except Exception:  # noqa: BLE001: untrusted input; the stdlib parser is lenient but not infallible
        return None


def _plain_text(msg: Message | None) -> str:
    if msg is None:
        return ""
    texts = []
    for part in msg.walk():
        if part.get_content_type() == "text/plain" and not part.get_filename():
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                try:
                    texts.append(payload.decode(part.get_content_charset() or "utf-8", "replace"))
                except LookupError:  # a charset Python does not know
                    texts.append(payload.decode("utf-8", "replace"))
    return "\n".join(texts)


def _basic_code(text: str) -> int | None:
    found = re.search(r"\b([245]\d\d)\b", text or "")
    return int(found.group(1)) if found else None


__all__ = ["Failure", "Inbox", "IntakeSummary", "ReadBounce", "Taken"]
