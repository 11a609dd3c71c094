"""Use cases of workers and campaign control: `mailer worker` (any number of them, on any machines sharing
one database) and `mailer campaign pause|resume|cancel`.

A worker needs nothing but the database: a campaign carries the source of each of its language editions,
so the worker composes what `mailer send` recorded, whichever machine it runs on. Several workers share a
campaign through the ledger's claims (FOR UPDATE SKIP LOCKED on PostgreSQL); a pause or cancel, written
to the campaign by any process, stops every worker's run of it within a second or so.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mailer import ledger
from mailer.editions import Editions
from mailer.errors import CampaignError
from mailer.issue import parse_issue
from mailer.models import Campaign, CampaignStatus
from mailer.sending import Sending, SendOutcome

if TYPE_CHECKING:
    from mailer.compose import Composed


@dataclass(frozen=True)
class WorkerRun:
    """One run of one campaign by a worker, for its log."""

    campaign_id: int
    issue: str
    outcome: SendOutcome


class Workers(Sending):
    def recorded_editions(self, campaign: Campaign) -> tuple[Editions, dict[str, "Composed"]]:
        """The campaign's editions as `mailer send` recorded them, composed (once per process and text)."""
        from mailer.compose import compose

        assert campaign.id is not None
        with self.session() as session:
            rows = ledger.campaign_editions(session, campaign.id)
        sources = {r.language: (r.issue_source, r.issue_path) for r in rows if r.issue_source}
        if not sources:  # a campaign from before editions were recorded
            primary = parse_issue(campaign.issue_source, campaign.issue_path)
            sources = {primary.language: (campaign.issue_source, campaign.issue_path)}
        key = (campaign.id, campaign.issue_digest)
        cached = self._composed_campaigns.get(key)
        if cached is None:
            issues = {lang: parse_issue(source, path) for lang, (source, path) in sources.items()}
            primary = next((i for i in issues.values() if i.source == campaign.issue_source), next(iter(issues.values())))
            editions = Editions(primary, issues)
            newsletter = self.newsletter_for(primary)
            composed = {lang: compose(editions.by_language[lang], newsletter, self.settings.base_url) for lang in editions.languages}
            cached = self._composed_campaigns[key] = (editions, composed)
        return cached

    async def work_once(self, *, stop: asyncio.Event | None = None, on_run: Callable[[WorkerRun], None] | None = None) -> int:
        """Work on every campaign that has something due now, one after the other; returns how many runs."""
        runs = 0
        for campaign_id in ledger.campaigns_to_work(self.engine):
            if stop is not None and stop.is_set():
                break
            campaign = self.campaign(campaign_id)
            editions, composed = self.recorded_editions(campaign)
            if campaign.status == CampaignStatus.SCHEDULED:
                self.enqueue(campaign, editions, next(iter(composed.values())).newsletter.language)
                if not ledger.start_scheduled(self.engine, campaign_id):
                    continue  # paused or cancelled meanwhile, or another worker started it: its deliveries are queued
            outcome = await self.run_send(campaign, composed, stop=stop)
            runs += 1
            if on_run:
                on_run(WorkerRun(campaign_id, campaign.issue, outcome))
        return runs

    async def work(
        self, stop: asyncio.Event, *, poll: float = 2.0, on_run: Callable[[WorkerRun], None] | None = None
    ) -> None:
        """Until `stop` is set: work on whatever is due, then look again every `poll` seconds."""
        while not stop.is_set():
            if not await self.work_once(stop=stop, on_run=on_run):
                try:
                    await asyncio.wait_for(stop.wait(), timeout=poll)
                except TimeoutError:
                    pass

    def pause_campaign(self, campaign_id: int, reason: str = "") -> Campaign:
        campaign = self.campaign(campaign_id)
        if not ledger.pause(self.engine, campaign_id, reason):
            raise CampaignError(f"campaign {campaign_id} is {campaign.status}: only a sending or scheduled campaign can be paused")
        return self.campaign(campaign_id)

    def resume_campaign(self, campaign_id: int) -> Campaign:
        campaign = self.campaign(campaign_id)
        if not ledger.resume(self.engine, campaign_id):
            raise CampaignError(f"campaign {campaign_id} is {campaign.status}, not paused")
        return self.campaign(campaign_id)

    def cancel_campaign(self, campaign_id: int, reason: str = "") -> int:
        """Cancel for good; returns how many deliveries will now never be sent."""
        campaign = self.campaign(campaign_id)
        cancelled = ledger.cancel(self.engine, campaign_id, reason)
        if cancelled is None:
            raise CampaignError(f"campaign {campaign_id} is already {campaign.status}")
        return cancelled
