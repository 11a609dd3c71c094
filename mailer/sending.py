"""Use cases of the send path: plan a send, start it, run it, test-send (checking and previewing an issue
are in mailer.checking).

Each step lives in its own module (issue, compose, message, ledger, dispatch, transport); this mixin of
the application core (mailer.app.Mailer) wires them, so the CLI, the web app and the tests call one thing.
"""
from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from mailer import ledger
from mailer.bounces import classify
from mailer.checking import PREVIEW_RECIPIENT, Checking, IssueCheck  # noqa: F401  (re-exported)
from mailer.errors import CampaignError, MailerError
from mailer.issue import Issue, load_issue
from mailer.editions import Editions, editions_of
from mailer.message import EditionBuilders, Recipient
from mailer.models import Campaign, DeliveryStatus
from mailer.threaded_ledger import settle_dead_claims
from subscribers.models import MailingList, utcnow
from subscribers.store import count_active, get_list

if TYPE_CHECKING:  # the composer, dispatcher and transport are imported when a use case needs them
    from mailer.compose import Composed
    from mailer.dispatch import RunSummary
    from mailer.replies import SmtpReply

@dataclass(frozen=True)
class SendPlan:
    issue: Issue  # the edition the editor named
    composed: "Composed"  # ...composed
    editions: Editions  # every language edition of the issue (the named one included)
    composed_by_language: dict[str, "Composed"]  # ...each composed, the named one first
    mailing_list: MailingList
    campaign_id: int | None  # the existing campaign of this issue and list, if any
    active: int  # active subscribers of the list
    new_recipients: int  # active subscribers not yet enqueued
    pending: int  # deliveries already queued, or deferred with their retry due
    waiting: int  # deferred deliveries whose retry is not due yet
    next_retry: datetime | None
    done: dict[str, int]  # existing deliveries by final status ('sending': held by another live process)
    lease_seconds: int = 60  # how soon a dead process's claims come back

    @property
    def to_send(self) -> int:
        return self.new_recipients + self.pending

    @property
    def uncertain(self) -> int:
        return self.done.get(DeliveryStatus.UNCERTAIN, 0)

    @property
    def warnings(self) -> list[str]:
        """Each as 'file:line: warning: ...', ready to print."""
        return [str(p) for c in self.composed_by_language.values() for p in [*c.issue.warnings, *c.warnings]]


@dataclass(frozen=True)
class SendOutcome:
    """What a run of a campaign did, and what is left for the next one."""

    summary: "RunSummary"
    left_queued: int  # deliveries due now that this run did not send (stopped, relay refused)
    next_retry: datetime | None  # when the first deferred delivery is due again


class Sending(Checking):
    def plan_send(self, issue: Issue, list_name: str | None) -> SendPlan:
        """What a send of this issue to this list would do now; changes nothing but settling a killed run's leases."""
        from mailer.compose import compose

        newsletter = self.newsletter_for(issue)
        editions = editions_of(issue)
        composed_by_language = {
            language: compose(editions.by_language[language], newsletter, self.settings.base_url) for language in editions.languages
        }
        engine = self.engine
        with self.session() as session:
            mailing_list = get_list(session, list_name or newsletter.list)
            campaign = ledger.find_campaign(session, issue, mailing_list)
            refused = ledger.halted_campaign(campaign) if campaign else None
            if refused:
                raise CampaignError(refused)
            cid = campaign.id if campaign else None
            if cid is not None:
                settle_dead_claims(engine, cid)  # a killed run's claims: back to the queue, or uncertain
            active = count_active(session, mailing_list)
        assert mailing_list.id is not None
        counts = ledger.count_by_status(engine, cid) if cid else {}
        pending = ledger.count_due(engine, cid) if cid else 0
        waiting = sum(counts.get(s, 0) for s in ledger.PENDING) - pending
        return SendPlan(
            issue=issue,
            composed=composed_by_language[issue.language],
            editions=editions,
            composed_by_language=composed_by_language,
            mailing_list=mailing_list,
            campaign_id=cid,
            active=active,
            new_recipients=ledger.count_not_enqueued(engine, cid, mailing_list.id),
            pending=pending,
            waiting=waiting,
            next_retry=ledger.next_retry_at(engine, cid) if waiting and cid else None,
            done={s: n for s, n in counts.items() if s not in ledger.PENDING},
            lease_seconds=self.settings.lease_seconds,
        )

    def start_send(
        self, plan: SendPlan, *, allow_changed: bool = False, resend_uncertain: bool = False, at: datetime | None = None
    ) -> Campaign:
        """Open (or reopen) the campaign and enqueue every active subscriber not already in it; with
        resend_uncertain (an operator's yes), deliveries whose outcome was lost go back to the queue too.
        With `at` in the future the campaign is only scheduled: a worker enqueues and sends it then."""
        if at is not None and at <= utcnow():
            at = None  # a time already past: start now (the CLI asks first when it is long past)
        from mailer.threaded_ledger import retry_locked

        def open_it() -> Campaign:
            with self.session() as session:
                return ledger.open_campaign(session, plan.editions, plan.mailing_list, allow_changed=allow_changed, at=at)

        campaign = retry_locked(open_it)
        if at is None:
            self.enqueue(campaign, plan.editions, plan.composed.newsletter.language)
        if resend_uncertain and campaign.id is not None:
            retry_locked(lambda: ledger.requeue_uncertain(self.engine, campaign.id or 0))
        return campaign

    def enqueue(self, campaign: Campaign, editions: Editions, default_language: str) -> int:
        """A delivery for every active subscriber of the campaign's list not yet in it, each with its edition."""
        from mailer.threaded_ledger import retry_locked

        fallback = editions.fallback(default_language)
        return retry_locked(lambda: ledger.enqueue(self.engine, campaign, editions.languages, fallback))

    async def run_send(
        self,
        campaign: Campaign,
        composed_by_language: dict[str, Composed],
        *,
        on_result: Callable[[DeliveryStatus], None] | None = None,
        handle_signals: bool = False,
        stop: asyncio.Event | None = None,
    ) -> SendOutcome:
        """Send what is due in this campaign. With handle_signals, Ctrl-C or SIGTERM lets the messages in
        flight finish and be recorded and gives the rest back to the queue; setting `stop` does the same."""
        from mailer.dispatch import Dispatcher, DispatchOptions, Lane
        from mailer.threaded_ledger import SharedThrottle, ThreadedLedger

        assert campaign.id is not None
        s = self.settings
        campaign_ledger = ThreadedLedger(self.engine, campaign.id, s.bounce_policy)
        throttles = {r.name: SharedThrottle(self.engine, r.name, r.limits) for r in s.relays if r.limits}
        dispatcher = Dispatcher(
            campaign_ledger,
            self.edition_builders(composed_by_language, campaign.id, campaign.list_id),
            [Lane(sender, relay.name, throttles.get(relay.name)) for relay in s.relays for sender in self.senders(relay=relay)],
            DispatchOptions(
                batch_size=s.batch_size, lease_seconds=s.lease_seconds, retry=s.retry_rule,
                pause_failure_rate=s.pause_failure_rate, failure_window=s.failure_window,
            ),
            on_result=on_result,
        )
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM) if handle_signals else ()
        for signum in signals:
            loop.add_signal_handler(signum, dispatcher.stop)
        watcher = asyncio.create_task(_stop_when(stop, dispatcher.stop)) if stop is not None else None
        try:
            summary = await dispatcher.run()
        finally:
            for signum in signals:
                loop.remove_signal_handler(signum)
            if watcher:
                watcher.cancel()
            campaign_ledger.close()
            for throttle in throttles.values():
                throttle.close()
        ledger.add_sending_time(self.engine, campaign.id, summary.elapsed)
        return SendOutcome(summary, ledger.count_due(self.engine, campaign.id), ledger.next_retry_at(self.engine, campaign.id))

    def edition_builders(self, composed_by_language: dict[str, Composed], campaign_id: int, list_id: int) -> EditionBuilders:
        """A builder per language edition; deliveries naming no known edition get the newsletter's default
        language edition, else the first given (the one the editor named)."""
        first = next(iter(composed_by_language.values()))
        default = first.newsletter.language
        return EditionBuilders(
            {language: self.builder_for(c, campaign_id, list_id) for language, c in composed_by_language.items()},
            default if default in composed_by_language else first.issue.language,
        )

    async def test_send(self, issue: Issue, address: str) -> tuple["SmtpReply", "Composed"]:
        """One message to one address, subject marked as a test; no campaign, nothing recorded.
        Returns the relay's reply and what was composed (its warnings); MailerError if the relay refuses it."""
        from mailer.compose import compose

        composed = compose(issue, self.newsletter_for(issue), self.settings.base_url, test=True)
        outgoing = self.builder_for(composed).build(Recipient(address, ""))
        connection = self.senders(1)[0]
        try:
            reply = await connection.send(outgoing.envelope_from, outgoing.recipient, outgoing.data)
        finally:
            await connection.close()
        if classify(reply).status != DeliveryStatus.SENT:
            raise MailerError(f"test message to {address} not accepted: {reply.code or '-'} {reply.text}")
        return reply, composed


async def _stop_when(event: asyncio.Event, stop: Callable[[], None]) -> None:
    await event.wait()
    stop()
