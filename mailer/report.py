"""Delivery report of a campaign: the query, the model, and its table and JSON renderings."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import distinct, func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col
from sqlmodel import select as sm_select

from mailer import ledger
from mailer.errors import NotFound
from mailer.models import BounceEvent, Campaign, DeliveryStatus
from subscribers.models import EventKind, MailingList, SubscriberEvent

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

    @property
    def state(self) -> str:
        """'done', 'sending', or 'waiting for retries until TIME' when only deferred deliveries are left."""
        if self.retry_at is not None:
            return f"waiting for retries until {self.retry_at:%Y-%m-%d %H:%M} UTC"
        return self.status

    def to_json(self) -> str:
        return to_json({**asdict(self), "state": self.state})


def to_json(data: Any) -> str:
    """JSON with every timestamp in ISO 8601."""
    return json.dumps(data, indent=2, ensure_ascii=False, default=_iso)


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def resolve_campaign(session: Session, selector: str | None) -> Campaign:
    """A campaign by id, by issue id (its newest campaign), or the newest of all when selector is None."""
    query = sm_select(Campaign).order_by(col(Campaign.id).desc())
    if selector is not None:
        query = query.where(Campaign.id == int(selector)) if selector.isdigit() else query.where(Campaign.issue == selector)
    campaign = session.exec(query).first()
    if campaign is None:
        raise NotFound("no campaign yet" if selector is None else f"no campaign {selector!r}")
    return campaign


B = BounceEvent.__table__.c  # type: ignore[attr-defined]
U = SubscriberEvent.__table__.c  # type: ignore[attr-defined]


def delivery_report(engine: Engine, selector: str | None = None, *, top: int = 5) -> Report:
    with Session(engine) as session:
        campaign = resolve_campaign(session, selector)
        mailing_list = session.get(MailingList, campaign.list_id)
        session.expunge_all()
    cid = campaign.id or 0
    counts = {s: 0 for s in STATUS_ORDER} | ledger.count_by_status(engine, cid)
    with engine.connect() as conn:
        kinds: dict[str, int] = {
            kind: n
            for kind, n in conn.execute(
                select(B.kind, func.count(distinct(B.delivery_id))).where(B.campaign_id == cid).group_by(B.kind)
            )
        }
        reasons = [
            BounceReason(kind, code, reason, n)
            for kind, code, reason, n in conn.execute(
                select(B.kind, B.smtp_code, B.reason_group, func.count())
                .where(B.campaign_id == cid)
                .group_by(B.kind, B.smtp_code, B.reason_group)
                .order_by(func.count().desc(), B.smtp_code)
                .limit(top)
            )
        ]
        unsubscribed = conn.execute(select(func.count()).where(U.campaign_id == cid, U.kind == EventKind.UNSUBSCRIBED)).scalar_one()
    duration = campaign.sending_seconds or None  # summed over the runs: reruns days apart do not dilute the rate
    sent = counts[DeliveryStatus.SENT]
    waiting = campaign.status != "done" and not any(counts[s] for s in ("queued", "sending")) and counts["deferred"] > 0
    return Report(
        campaign_id=cid,
        newsletter=campaign.newsletter,
        issue=campaign.issue,
        list_name=mailing_list.name if mailing_list else str(campaign.list_id),
        subject=campaign.subject,
        status=campaign.status,
        total=sum(counts.values()),
        counts=counts,
        bounced_hard=kinds.get("hard", 0),
        bounced_soft=kinds.get("soft", 0),
        unsubscribed=unsubscribed,
        started_at=campaign.started_at,
        finished_at=campaign.finished_at,
        duration_seconds=duration,
        rate_per_second=(sent / duration) if duration else None,
        top_reasons=reasons,
        retry_at=ledger.next_retry_at(engine, cid) if waiting else None,
    )


ROWS = [
    ("queued", "queued"),
    ("sending", "in flight"),
    ("sent", "sent"),
    ("deferred", "deferred (will be retried)"),
    ("bounced", "bounced"),
    ("failed", "failed (retries exhausted)"),
    ("skipped", "skipped (left before their turn)"),
    ("uncertain", "uncertain (may have arrived)"),
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
        table.add_row(label, str(report.counts.get(status, 0)))
    table.add_section()
    table.add_row("hard bounces (address refused)", str(report.bounced_hard))
    table.add_row("soft bounces (temporary, or not the address)", str(report.bounced_soft))
    table.add_row("unsubscribed", str(report.unsubscribed))
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
    return Group(*parts)


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


def campaign_history(engine: Engine, limit: int = 24) -> list[CampaignLine]:
    """The newest campaigns first, with their delivery counts."""
    D, C, L = ledger.D, ledger.C, MailingList.__table__.c  # type: ignore[attr-defined]

    def status_count(status: DeliveryStatus) -> Any:
        return select(func.count()).where(D.campaign_id == C.id, D.status == status).scalar_subquery()

    query = (
        select(
            C.id, C.newsletter, C.issue, L.name, C.status, C.started_at,
            select(func.count()).where(D.campaign_id == C.id).scalar_subquery(),
            status_count(DeliveryStatus.SENT), status_count(DeliveryStatus.BOUNCED),
            status_count(DeliveryStatus.DEFERRED), status_count(DeliveryStatus.FAILED),
            select(func.count()).where(U.campaign_id == C.id, U.kind == EventKind.UNSUBSCRIBED).scalar_subquery(),
        )
        .join_from(Campaign.__table__, MailingList.__table__, L.id == C.list_id)  # type: ignore[attr-defined]
        .order_by(C.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [CampaignLine(*row) for row in conn.execute(query)]  # type: ignore[call-arg]  # columns in field order


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
