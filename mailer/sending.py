"""The send path, wired end to end: plan a send, open the campaign and enqueue, dispatch, test-send, preview.

This is the composition root the CLI (and later the web app) calls; each step is in its own module.
"""
from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, policy
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session

from mailer import ledger
from mailer.compose import Composed, compose
from mailer.dispatch import Dispatcher, DispatchOptions, RunSummary
from mailer.issue import Issue
from mailer.message import MessageBuilder, Recipient
from mailer.models import Campaign, DeliveryStatus
from mailer.errors import IssueError, SettingsError
from mailer.settings import NewsletterSettings, Settings
from mailer.transport import SmtpConnection, SmtpReply
from subscribers.models import MailingList
from subscribers.store import count_active, get_list
from subscribers.tokens import TokenSigner


@dataclass(frozen=True)
class SendPlan:
    issue: Issue
    composed: Composed
    mailing_list: MailingList
    campaign_id: int | None  # the existing campaign of this issue and list, if any
    active: int  # active subscribers of the list
    new_recipients: int  # active subscribers not yet enqueued
    pending: int  # deliveries already queued, or deferred with their retry due
    waiting: int  # deferred deliveries whose retry is not due yet
    next_retry: datetime | None
    done: dict[str, int]  # existing deliveries by final status

    @property
    def to_send(self) -> int:
        return self.new_recipients + self.pending

    @property
    def warnings(self) -> list[str]:
        return [str(w) for w in self.issue.warnings] + self.composed.warnings


def newsletter_for(settings: Settings, issue: Issue) -> NewsletterSettings:
    """The configured newsletter an issue names; an unknown one is reported at its front matter line."""
    try:
        return settings.newsletter(issue.newsletter)
    except SettingsError as exc:
        raise IssueError([issue.problem("newsletter", str(exc))]) from None


def plan_send(engine: Engine, settings: Settings, issue: Issue, list_name: str | None) -> SendPlan:
    newsletter = newsletter_for(settings, issue)
    composed = compose(issue, newsletter, settings.base_url)
    with Session(engine) as session:
        mailing_list = get_list(session, list_name or newsletter.list)
        campaign = ledger.find_campaign(session, issue, mailing_list)
        if campaign is not None and campaign.id is not None:
            ledger.expire_leases(engine, campaign.id)  # a killed run's claims: back to the queue, or uncertain
        active = count_active(session, mailing_list)
        session.expunge(mailing_list)
    assert mailing_list.id is not None
    counts = ledger.count_by_status(engine, campaign.id) if campaign and campaign.id else {}
    pending = ledger.count_due(engine, campaign.id) if campaign and campaign.id else 0
    waiting = sum(counts.get(s, 0) for s in (DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED)) - pending
    return SendPlan(
        issue=issue,
        composed=composed,
        mailing_list=mailing_list,
        campaign_id=campaign.id if campaign else None,
        active=active,
        new_recipients=ledger.count_not_enqueued(engine, campaign.id if campaign else None, mailing_list.id),
        pending=pending,
        waiting=waiting,
        next_retry=ledger.next_retry_at(engine, campaign.id) if waiting and campaign and campaign.id else None,
        done={s: n for s, n in counts.items() if s not in (DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED)},
    )


def start_campaign(engine: Engine, plan: SendPlan, *, allow_changed: bool = False) -> Campaign:
    """Open (or reopen) the campaign and enqueue every active subscriber not already in it."""
    source = Path(plan.issue.path).read_text(encoding="utf-8") if Path(plan.issue.path).is_file() else ""
    with Session(engine) as session:
        campaign = ledger.open_campaign(session, plan.issue, plan.mailing_list, source, allow_changed=allow_changed)
        session.expunge(campaign)
    ledger.enqueue(engine, campaign)
    return campaign


def make_senders(settings: Settings, count: int | None = None) -> list[SmtpConnection]:
    return [
        SmtpConnection(settings.smtp, timeout=settings.smtp_timeout, max_messages=settings.smtp_messages_per_connection)
        for _ in range(count or settings.smtp_connections)
    ]


def builder_for(settings: Settings, composed: Composed, campaign_id: int = 0, list_id: int = 0) -> MessageBuilder:
    return MessageBuilder(
        composed, TokenSigner(settings.secret_keys), base_url=settings.base_url, campaign_id=campaign_id, list_id=list_id
    )


async def dispatch_campaign(
    engine: Engine,
    settings: Settings,
    campaign: Campaign,
    composed: Composed,
    *,
    on_result: Callable[[DeliveryStatus], None] | None = None,
    handle_signals: bool = False,
) -> RunSummary:
    assert campaign.id is not None
    dispatcher = Dispatcher(
        engine,
        campaign.id,
        builder_for(settings, composed, campaign.id, campaign.list_id),
        make_senders(settings),
        DispatchOptions(
            batch_size=settings.batch_size,
            lease_seconds=settings.lease_seconds,
            max_attempts=settings.max_attempts,
            retry_backoff=settings.retry_backoff,
            rate=settings.smtp_rate,
        ),
        on_result=on_result,
    )
    if not handle_signals:
        return await dispatcher.run()
    # Ctrl-C or SIGTERM: finish the messages in flight, record them, give the rest back to the queue.
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, dispatcher.stop)
    try:
        return await dispatcher.run()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def send_test(settings: Settings, issue: Issue, address: str) -> SmtpReply:
    """One message to one address, subject marked as a test; no campaign, nothing recorded."""
    composed = compose(issue, newsletter_for(settings, issue), settings.base_url, test=True)
    outgoing = builder_for(settings, composed).build(Recipient(address, ""))
    connection = make_senders(settings, 1)[0]
    try:
        return await connection.send(outgoing.envelope_from, outgoing.recipient, outgoing.data)
    finally:
        await connection.close()


PREVIEW_RECIPIENT = Recipient("anteprima@example.org", "Anteprima Redazione")


def write_preview(settings: Settings, issue: Issue, out: Path) -> dict[str, Path]:
    """index.html (the HTML part), message.txt (the text part), message.eml (the whole message) for one sample recipient."""
    composed = compose(issue, newsletter_for(settings, issue), settings.base_url)
    outgoing = builder_for(settings, composed).build(PREVIEW_RECIPIENT)
    parsed = message_from_bytes(outgoing.data, policy=policy.default)
    text_part, html_part = list(parsed.iter_parts())  # type: ignore[attr-defined]
    out.mkdir(parents=True, exist_ok=True)
    files = {"html": out / "index.html", "text": out / "message.txt", "eml": out / "message.eml"}
    files["html"].write_text(html_part.get_content(), encoding="utf-8")
    files["text"].write_text(text_part.get_content(), encoding="utf-8")
    files["eml"].write_bytes(outgoing.data)
    return files
