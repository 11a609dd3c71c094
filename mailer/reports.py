"""Use cases of reading delivery reports: one campaign's report, and the campaigns side by side."""
from __future__ import annotations

from mailer.core import Core
from mailer.ledger_report import campaign_history, delivery_report
from mailer.report import CampaignLine, Report


class Reports(Core):
    def report(self, selector: str | None = None) -> Report:
        """A campaign's delivery report: by id, by issue id, or the newest campaign."""
        with self.reading() as db:
            report = delivery_report(db, selector)
        report.policy = self.settings.bounce_policy.describe()
        return report

    def campaign_history(self, limit: int = 24) -> list[CampaignLine]:
        with self.reading() as db:
            return campaign_history(db, limit)
