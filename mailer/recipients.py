"""Use cases of recipients: unsubscribe (one-click, page, form), subscribe with double opt-in, preferences.

Every token is checked here (purpose, signature, age, the subscriber's token version) and every choice is
an event on record. Notices (confirmation and unsubscribe links) are recorded when asked for and sent by
deliver_notice(), so a web request can answer before, and the same whether or not an address is known.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from mailer.core import Core
from mailer.errors import MailerError
from mailer.i18n import page_strings
from mailer.models import Notice
from mailer.notices import CONFIRM, UNSUBSCRIBE_LINK, NoticeMessage, build_notice
from mailer.settings import LANGUAGES, NewsletterSettings
from subscribers import choices, store
from subscribers.errors import InvalidAddress, InvalidToken
from subscribers.models import MailingList, Subscriber, utcnow
from subscribers.tokens import Claim, Signup

MAX_NOTICES_PER_DAY = {CONFIRM: 1, UNSUBSCRIBE_LINK: 3}  # per address: a form cannot be used to mail-bomb anyone


@dataclass(frozen=True)
class LinkTarget:
    """Who an unsubscribe link is for, and from what: shown on the page before anything changes."""

    email: str
    language: str
    title: str  # the list's title, or "" when the link is for every list
    subscribed: bool  # still on that list (or, for every list, on any)


@dataclass(frozen=True)
class OfferedList:
    id: int
    name: str
    title: str
    chosen: bool = False


@dataclass(frozen=True)
class SignupView:
    email: str
    language: str
    lists: tuple[str, ...]  # titles
    name: str = ""


@dataclass(frozen=True)
class PreferencesView:
    email: str
    language: str
    lists: tuple[OfferedList, ...]


def consent_version(language: str) -> str:
    """A short digest of the consent text in a language: the confirmation link carries it, so the text
    recorded at confirmation is provably the one shown when the form was filled in."""
    return hashlib.sha256(page_strings(language)["subscribe_consent"].encode("utf-8")).hexdigest()[:12]


class Recipients(Core):
    # ---- unsubscribe ---------------------------------------------------------------------------------

    def unsubscribe_target(self, token: str, *, from_form: bool = False) -> LinkTarget:
        """What the link would do; changes nothing (mail scanners follow links)."""
        with self.session() as session:
            subscriber, claim = self._link_owner(session, token, from_form)
            return self._target(session, subscriber, claim)

    def unsubscribe(self, token: str, *, method: str, from_form: bool = False) -> LinkTarget:
        """Leave the link's list (or every list). Repeating it is harmless: nothing more is recorded."""
        with self.session() as session:
            subscriber, claim = self._link_owner(session, token, from_form)
            mailing_list = session.get(MailingList, claim.list_id) if claim.list_id else None
            target = self._target(session, subscriber, claim)
            store.unsubscribe(session, subscriber, mailing_list, method=method, campaign_id=claim.campaign_id or None)
            return target

    def _link_owner(self, session: Session, token: str, from_form: bool) -> tuple[Subscriber, Claim]:
        read = self.signer.read_unsubscribe_link_token if from_form else self.signer.read_unsubscribe_token
        claim = read(token)
        return choices.subscriber_for(session, claim), claim

    def _target(self, session: Session, subscriber: Subscriber, claim: Claim) -> LinkTarget:
        active = choices.active_list_ids(session, subscriber)
        mailing_list = session.get(MailingList, claim.list_id) if claim.list_id else None
        title = self.list_title(mailing_list.name, mailing_list.title) if mailing_list else ""
        subscribed = claim.list_id in active if claim.list_id else bool(active)
        return LinkTarget(subscriber.email, subscriber.language, title, subscribed)

    def request_unsubscribe_link(self, email: str) -> NoticeMessage | None:
        """The unsubscribe form: a signed link valid 24 h for a known address, None otherwise (the caller
        answers the same either way). None also when the address had its share of links today."""
        try:
            address = store.normalise_address(email)
        except InvalidAddress:
            return None
        with self.session() as session:
            subscriber = session.exec(select(Subscriber).where(Subscriber.email == address)).first()
            if subscriber is None or subscriber.id is None or self._notices_today(session, UNSUBSCRIBE_LINK, address):
                return None
            t = page_strings(subscriber.language)
            newsletter = self.default_newsletter
            url = f"{self.settings.base_url}/unsubscribe/{self.signer.unsubscribe_link_token(subscriber.id, subscriber.token_version)}"
            notice = build_notice(
                UNSUBSCRIBE_LINK, to=address, newsletter=newsletter, url=url,
                subject=t["notice_unsubscribe_subject"].format(title=newsletter.title), lines=list(t["notice_unsubscribe_lines"]),
            )
            self._record_notice(session, notice, subscriber.id)
            return notice

    # ---- subscribe with double opt-in ----------------------------------------------------------------

    def ensure_lists(self) -> None:
        """Create the list of every configured newsletter that has none yet (once, when the web app starts),
        so that showing a page never writes."""
        with self.session() as session:
            for newsletter in self.settings.newsletters.values():
                store.get_or_create_list(session, newsletter.list, title=newsletter.title)

    def offered_lists(self) -> list[OfferedList]:
        """The lists a visitor can subscribe to: each configured newsletter's list."""
        with self.session() as session:
            return self._offered(session)

    def _offered(self, session: Session) -> list[OfferedList]:
        names = [nl.list for nl in self.settings.newsletters.values()]
        found = {m.name: m for m in session.exec(select(MailingList).where(col(MailingList.name).in_(names)))}
        return [OfferedList(m.id, m.name, self.list_title(m.name, m.title)) for name in names
                if (m := found.get(name)) is not None and m.id is not None]

    def request_signup(self, *, email: str, name: str, language: str, list_ids: list[int]) -> NoticeMessage | None:
        """Mail a confirmation link that carries the whole request; nothing about the person is stored
        until they confirm. None when there is nothing to confirm or the address had a link today."""
        address = store.normalise_address(email)  # InvalidAddress: the form shows it to the visitor
        if language not in LANGUAGES:
            raise MailerError(f"language {language!r} is not offered")
        offered = {o.id: o for o in self.offered_lists()}
        chosen = tuple(i for i in dict.fromkeys(list_ids) if i in offered)
        if not chosen:
            raise MailerError("no newsletter chosen")
        with self.session() as session:
            existing = session.exec(select(Subscriber).where(Subscriber.email == address)).first()
            if existing is not None and choices.active_list_ids(session, existing) >= set(chosen):
                return None  # already receiving all of them
            if self._notices_today(session, CONFIRM, address):
                return None
            signup = Signup(address, store.clean_name(name)[:200], language, chosen, consent_version(language))
            t = page_strings(language)
            titles = ", ".join(offered[i].title for i in chosen)
            newsletter = self.default_newsletter
            notice = build_notice(
                CONFIRM, to=address, newsletter=newsletter, url=f"{self.settings.base_url}/confirm/{self.signer.signup_token(signup)}",
                subject=t["notice_confirm_subject"].format(title=newsletter.title),
                lines=[line.format(lists=titles) for line in t["notice_confirm_lines"]],
            )
            self._record_notice(session, notice, existing.id if existing else None)
            return notice

    def signup_target(self, token: str) -> SignupView:
        signup = self.signer.read_signup_token(token)
        return SignupView(signup.email, signup.language, self._titles(signup.list_ids), signup.name)

    def confirm_signup(self, token: str) -> SignupView:
        """Apply the request the link carries; the consent text recorded is the one its digest names."""
        signup = self.signer.read_signup_token(token)
        text = page_strings(signup.language)["subscribe_consent"]
        if consent_version(signup.language) != signup.consent_version:
            text = f"(consent text version {signup.consent_version}, since replaced)"
        with self.session() as session:
            choices.confirm_signup(session, signup, consent_text=text)
        return SignupView(signup.email, signup.language, self._titles(signup.list_ids), signup.name)

    def _titles(self, list_ids: tuple[int, ...]) -> tuple[str, ...]:
        with self.session() as session:
            found = [session.get(MailingList, i) for i in list_ids]
        return tuple(self.list_title(m.name, m.title) for m in found if m is not None)

    # ---- preferences ---------------------------------------------------------------------------------

    def preferences(self, token: str) -> PreferencesView:
        with self.session() as session:
            subscriber = choices.subscriber_for(session, self.signer.read_manage_token(token))
            return self._preferences(session, subscriber)

    def save_preferences(self, token: str, *, language: str, list_ids: list[int]) -> tuple[PreferencesView, bool]:
        if language not in LANGUAGES:
            raise InvalidToken("language not offered")  # only a forged form sends one
        with self.session() as session:
            claim = self.signer.read_manage_token(token)
            subscriber = choices.subscriber_for(session, claim)
            offered = self._preferences(session, subscriber).lists
            lists = [session.get(MailingList, o.id) for o in offered]
            changed = choices.set_preferences(
                session, subscriber, language=language, list_ids=list_ids, offered=[m for m in lists if m is not None],
                campaign_id=claim.campaign_id or None,
            )
            return self._preferences(session, subscriber), changed

    def leave_all(self, token: str) -> LinkTarget:
        """'Unsubscribe from everything' on the preferences page."""
        with self.session() as session:
            claim = self.signer.read_manage_token(token)
            subscriber = choices.subscriber_for(session, claim)
            target = self._target(session, subscriber, Claim(claim.subscriber_id, 0, claim.version))
            store.unsubscribe(session, subscriber, None, method="page", campaign_id=claim.campaign_id or None)
            return target

    def _preferences(self, session: Session, subscriber: Subscriber) -> PreferencesView:
        assert subscriber.id is not None
        active = choices.active_list_ids(session, subscriber)
        offered = {o.id: o for o in self._offered(session)}
        for list_id in choices.memberships(session, subscriber.id):
            mailing_list = session.get(MailingList, list_id)
            if list_id not in offered and mailing_list is not None:
                offered[list_id] = OfferedList(list_id, mailing_list.name, self.list_title(mailing_list.name, mailing_list.title))
        lists = tuple(OfferedList(o.id, o.name, o.title, o.id in active) for o in offered.values())
        return PreferencesView(subscriber.email, subscriber.language, lists)

    # ---- notices -------------------------------------------------------------------------------------

    @property
    def default_newsletter(self) -> NewsletterSettings:
        """The sender of notices: the first configured newsletter."""
        return next(iter(self.settings.newsletters.values()))

    def _notices_today(self, session: Session, kind: str, address: str) -> bool:
        since = utcnow() - timedelta(days=1)
        sent = session.exec(
            select(func.count()).select_from(Notice).where(Notice.kind == kind, Notice.email == address, col(Notice.created_at) > since)
        ).one()
        return sent >= MAX_NOTICES_PER_DAY[kind]

    def _record_notice(self, session: Session, notice: NoticeMessage, subscriber_id: int | None) -> None:
        session.add(Notice(kind=notice.kind, email=notice.recipient, subscriber_id=subscriber_id, message_id=notice.message_id))

    async def mail_unsubscribe_link(self, email: str) -> None:
        """The unsubscribe form's work, done after the response: look the address up, record and send the
        link. Whether the address is known then changes neither the answer nor how long it took."""
        import asyncio

        notice = await asyncio.to_thread(self.request_unsubscribe_link, email)
        if notice is not None:
            await self.deliver_notice(notice)

    async def mail_signup_confirmation(self, *, email: str, name: str, language: str, list_ids: list[int]) -> None:
        """The signup form's work after the response (see mail_unsubscribe_link)."""
        import asyncio

        notice = await asyncio.to_thread(self.request_signup, email=email, name=name, language=language, list_ids=list_ids)
        if notice is not None:
            await self.deliver_notice(notice)

    async def deliver_notice(self, notice: NoticeMessage) -> None:
        """Send a recorded notice through the configured relay and record the relay's answer."""
        import asyncio

        from mailer.errors import TransportError

        connection = self.senders(1)[0]
        try:
            reply = await connection.send(notice.envelope_from, notice.recipient, notice.data)
            code, text = reply.code, reply.text
        except TransportError as exc:
            code, text = None, str(exc)
        finally:
            await connection.close()
        await asyncio.to_thread(self._record_delivery, notice.message_id, code, text)

    def _record_delivery(self, message_id: str, code: int | None, text: str) -> None:
        with self.session() as session:
            row = session.exec(select(Notice).where(Notice.message_id == message_id)).first()
            if row is not None:
                ok = code is not None and 200 <= code < 300
                row.status, row.smtp_code, row.smtp_reply = ("sent" if ok else "failed"), code, text[:1000]
                row.sent_at = utcnow() if ok else None
                session.add(row)


