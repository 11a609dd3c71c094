"""The application core: built from Settings, it owns the database, the token signer and the SMTP senders,
and exposes every use case as a method. The CLI, the web app and the tests are thin front ends over it.

    mailer = Mailer(load_settings())
    plan = mailer.plan_send(load_issue(path), None)
    campaign = mailer.start_send(plan)
    outcome = asyncio.run(mailer.run_send(campaign, plan.composed))
"""
from __future__ import annotations

from mailer.archive import Archive
from mailer.operators import Operators
from mailer.people import People
from mailer.recipients import Recipients
from mailer.report import CampaignLine, Report, campaign_history, delivery_report
from mailer.sending import Sending


class Mailer(Sending, People, Recipients, Archive, Operators):
    """One per process (or per test): the use cases of sending, subscribers, recipients, archive and operators."""

    def report(self, selector: str | None = None) -> Report:
        """A campaign's delivery report: by id, by issue id, or the newest campaign."""
        return delivery_report(self.engine, selector)

    def campaign_history(self, limit: int = 24) -> list[CampaignLine]:
        return campaign_history(self.engine, limit)
