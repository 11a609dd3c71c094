"""The application core: built from Settings, it owns the database, the token signer and the SMTP senders,
and exposes every use case as a method. The CLI, the web app and the tests are thin front ends over it.

    mailer = Mailer(load_settings())
    plan = mailer.plan_send(load_issue(path), None)
    campaign = mailer.start_send(plan)
    outcome = asyncio.run(mailer.run_send(campaign, plan.composed_by_language))
"""
from __future__ import annotations

from mailer.archive import Archive
from mailer.inbox import Inbox
from mailer.maintenance import Maintenance
from mailer.operators import Operators
from mailer.people import People
from mailer.recipients import Recipients
from mailer.reports import Reports
from mailer.workers import Workers


class Mailer(Workers, People, Recipients, Archive, Operators, Reports, Inbox, Maintenance):
    """One per process (or per test): the use cases of sending, subscribers, recipients, archive, operators
    and reports. `mailer.reports.Reports(settings)` alone serves the report commands: it imports no ORM."""
