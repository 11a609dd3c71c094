"""Delivery reports: the models (a campaign's report, a line of the campaign history) and their table and
JSON renderings. The queries that fill them are in mailer.ledger_report."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mailer.statuses import DeliveryStatus

if TYPE_CHECKING:  # Rich is imported by the renderers only: JSON output and the web app need none of it
    from rich.console import Group
    from rich.table import Table

STATUS_ORDER = [str(s) for s in DeliveryStatus]


@dataclass(frozen=True)
class BounceReason:
    kind: str
    code: int | None
    reason: str
    count: int


@dataclass(frozen=True)
class ReasonCount:
    """Bounced deliveries for one reason: met during our SMTP session ('smtp') or reported later ('dsn')."""

    source: str
    kind: str
    reason: str  # a key of mailer.bounce_meaning.REASON_LABELS
    count: int


@dataclass(frozen=True)
class DomainBounces:
    domain: str
    hard: int
    soft: int


@dataclass(frozen=True)
class EditionFigures:
    """A campaign's figures for the deliveries of one language edition."""

    counts: dict[str, int]
    bounced_hard: int
    bounced_soft: int
    unsubscribed: int

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class Report:
    campaign_id: int
    newsletter: str
    issue: str
    list_name: str
    subject: str
    status: str
    total: int
    counts: dict[str, int]
    bounced_hard: int  # deliveries with a hard bounce (5xx)
    bounced_soft: int  # deliveries that met at least one soft bounce (4xx or lost connection)
    unsubscribed: int  # unsubscribes attributed to this campaign
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    rate_per_second: float | None  # sent messages per second of sending time
    top_reasons: list[BounceReason] = field(default_factory=list)
    retry_at: datetime | None = None  # set when only deferred deliveries are left: when the next is due
    editions: dict[str, EditionFigures] = field(default_factory=dict)  # by language ('' before editions existed)
    complained: int = 0  # recipients who reported this campaign's message as spam
    suppressed: int = 0  # addresses the bounce policy suppressed on this campaign's bounces
    bounces_by_reason: list[ReasonCount] = field(default_factory=list)
    bounces_by_domain: list[DomainBounces] = field(default_factory=list)
    policy: str = ""  # the bounce policy in force, in words
    status_reason: str = ""  # why it is paused or cancelled

    @property
    def state(self) -> str:
        """'done', 'sending', or 'waiting for retries until TIME' when only deferred deliveries are left."""
        if self.retry_at is not None:
            return f"waiting for retries until {self.retry_at:%Y-%m-%d %H:%M} UTC"
        return f"{self.status}: {self.status_reason}" if self.status_reason else self.status

    def to_json(self) -> str:
        return to_json({**asdict(self), "state": self.state})


def to_json(data: Any) -> str:
    """JSON with every timestamp in ISO 8601."""
    return json.dumps(data, indent=2, ensure_ascii=False, default=_iso)


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


ROWS = [
    ("queued", "queued"),
    ("sending", "in flight"),
    ("sent", "sent"),
    ("deferred", "deferred (will be retried)"),
    ("bounced", "bounced"),
    ("failed", "failed (retries exhausted)"),
    ("skipped", "skipped (left before their turn)"),
    ("uncertain", "uncertain (may have arrived)"),
    ("cancelled", "cancelled (campaign cancelled before their turn)"),
]


def render_table(report: Report) -> "Group":
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    title = Text(f"Campaign {report.campaign_id}: {report.newsletter} {report.issue} to list '{report.list_name}' ({report.state})")
    table = Table(title=title, title_justify="left", show_header=False, min_width=50)
    table.add_column("what")
    table.add_column("count", justify="right")
    for status, label in ROWS:
        if status != "cancelled" or report.counts.get(status):
            table.add_row(label, str(report.counts.get(status, 0)))
    table.add_section()
    table.add_row("hard bounces (address refused)", str(report.bounced_hard))
    table.add_row("soft bounces (temporary, or not the address)", str(report.bounced_soft))
    table.add_row("unsubscribed", str(report.unsubscribed))
    table.add_row("complained (reported as spam)", str(report.complained))
    table.add_row("suppressed by the bounce policy", str(report.suppressed))
    table.add_section()
    table.add_row("total deliveries", str(report.total))
    table.add_row("sending time", f"{report.duration_seconds:.1f} s" if report.duration_seconds is not None else "-")
    table.add_row("rate (sent per second of sending)", f"{report.rate_per_second:.1f} sent/s" if report.rate_per_second else "-")
    parts: list[Table] = [table]
    if report.top_reasons:
        reasons = Table(title="Top bounce reasons", title_justify="left")
        for column in ("kind", "code", "count", "server's reply"):
            reasons.add_column(column, justify="right" if column in ("code", "count") else "left")
        for r in report.top_reasons:
            reasons.add_row(r.kind, str(r.code or "-"), str(r.count), Text(r.reason))  # server text is not markup
        parts.append(reasons)
    if report.bounces_by_reason:
        parts.append(render_bounce_breakdown(report))
    if report.policy:
        parts.append(Text(f"Bounce policy: {report.policy}"))
    if len(report.editions) > 1:
        parts.append(render_editions(report.editions))
    return Group(*parts)


SOURCES = {"smtp": "during sending", "dsn": "reported later"}


def render_bounce_breakdown(report: Report) -> "Table":
    """Bounced deliveries by reason (and whether the relay refused them in our session or reported them
    later), then by recipient domain."""
    from rich.table import Table

    from mailer.bounce_meaning import REASON_LABELS

    table = Table(title="Bounces by reason and by domain", title_justify="left")
    for column in ("reason", "kind", "when", "deliveries"):
        table.add_column(column, justify="right" if column == "deliveries" else "left")
    for r in report.bounces_by_reason:
        table.add_row(REASON_LABELS.get(r.reason, r.reason), r.kind, SOURCES.get(r.source, r.source), str(r.count))
    table.add_section()
    for d in report.bounces_by_domain:
        table.add_row(d.domain, "hard / soft", "", f"{d.hard} / {d.soft}")
    return table


def render_editions(editions: dict[str, EditionFigures]) -> "Table":
    """Every figure split by language edition, one column each."""
    from rich.table import Table

    table = Table(title="By edition", title_justify="left")
    table.add_column("what")
    languages = sorted(editions)
    for language in languages:
        table.add_column(language or "-", justify="right")
    rows = [(label, lambda e, s=status: e.counts.get(s, 0)) for status, label in ROWS if any(e.counts.get(status) for e in editions.values())]
    rows += [("hard bounces", lambda e: e.bounced_hard), ("soft bounces", lambda e: e.bounced_soft),
             ("unsubscribed", lambda e: e.unsubscribed), ("total deliveries", lambda e: e.total)]
    for label, value in rows:
        table.add_row(label, *(str(value(editions[language])) for language in languages))
    return table


@dataclass(frozen=True)
class CampaignLine:
    """One campaign in the history: what operators compare issue to issue."""

    campaign_id: int
    newsletter: str
    issue: str
    list_name: str
    status: str
    started_at: datetime | None
    total: int
    sent: int
    bounced: int
    deferred: int
    failed: int
    unsubscribed: int


def render_history(lines: list[CampaignLine]) -> "Table":
    """Fits 80 columns: one space between columns; the list name (the only long free text) takes what is
    left and is cut with an ellipsis, so ids, dates and counts are never cut."""
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title="Campaigns, newest first", title_justify="left", box=None, pad_edge=False, padding=(0, 1), collapse_padding=True,
    )
    for column in ("id", "issue", "list", "started", "status", "sent", "bounced", "deferred", "failed", "unsub"):
        justify = "left" if column in ("issue", "list", "status", "started") else "right"
        if column == "list":  # the one column that may shrink: its cells never wrap, they are cut
            table.add_column(column, justify="left", min_width=4, max_width=24, overflow="ellipsis")
        else:
            table.add_column(column, justify=justify, max_width=9 if column == "issue" else None, overflow="ellipsis", no_wrap=True)
    for c in lines:
        table.add_row(
            str(c.campaign_id), Text(c.issue), Text(c.list_name, no_wrap=True, overflow="ellipsis"),
            f"{c.started_at:%Y-%m-%d}" if c.started_at else "-", c.status,
            f"{c.sent}/{c.total}", str(c.bounced), str(c.deferred), str(c.failed), str(c.unsubscribed),
        )
    return table
