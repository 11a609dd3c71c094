"""The dispatcher against a real SMTP server (aiosmtpd, in process, port 0) and a real SQLite file."""
from __future__ import annotations

import asyncio
import email
from collections import Counter
from datetime import timedelta
from email import policy

from sqlalchemy import func, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

import pytest

from mailer.app import Mailer
from mailer.sending import SendPlan
from mailer import ledger
from mailer.capture import DROP, CaptureServer, Rule
from mailer.dispatch import RunSummary
from mailer.issue import load_issue
from mailer.models import BounceEvent, Campaign, Delivery, DeliveryStatus

from mailer.settings import Settings, parse_smtp_url
from subscribers import store
from subscribers.models import Subscriber, SubscriberStatus, utcnow
from subscribers.tokens import TokenSigner
from tests.conftest import ISSUE_2026, add_people



@pytest.fixture
def settings(any_settings: Settings) -> Settings:
    """These tests run on SQLite and on PostgreSQL."""
    return any_settings

def send(engine: Engine, settings: Settings, server: CaptureServer, **overrides: object) -> tuple[Campaign, RunSummary]:
    """What `mailer send --yes` does: plan, open the campaign, enqueue, dispatch."""
    settings = settings.with_overrides(smtp=parse_smtp_url(server.url), **overrides)
    plan = Mailer(settings, engine=engine).plan_send(load_issue(ISSUE_2026), None)
    campaign = Mailer(settings, engine=engine).start_send(plan)
    return campaign, asyncio.run(Mailer(settings, engine=engine).run_send(campaign, plan.composed_by_language)).summary


async def dispatch(engine: Engine, settings: Settings, plan: SendPlan) -> RunSummary:
    """Start the planned campaign and run it (what `mailer send --yes` does after planning)."""
    mailer = Mailer(settings, engine=engine)
    return (await mailer.run_send(mailer.start_send(plan), plan.composed_by_language)).summary


def with_server(rule: Rule | None, body):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        async with CaptureServer(rule=rule) as server:
            return await body(server)
    return asyncio.run(main())


def deliveries(engine: Engine) -> dict[str, Delivery]:
    with Session(engine) as session:
        return {d.email: d for d in session.exec(select(Delivery))}


def run_in_loop(engine: Engine, settings: Settings, rule: Rule | None = None, **overrides: object):  # type: ignore[no-untyped-def]
    """Start a capture server and send through it, all in one event loop; returns (server, summary)."""
    async def body(server: CaptureServer):  # type: ignore[no-untyped-def]
        s = settings.with_overrides(smtp=parse_smtp_url(server.url), **overrides)
        plan = Mailer(s, engine=engine).plan_send(load_issue(ISSUE_2026), None)
        campaign = Mailer(settings, engine=engine).start_send(plan)
        summary = (await Mailer(s, engine=engine).run_send(campaign, plan.composed_by_language)).summary
        return server, summary
    return with_server(rule, body)


def test_a_thousand_subscribers_get_exactly_one_message_each(engine: Engine, settings: Settings) -> None:
    emails = [f"reader{n}@example.{('org', 'net', 'com')[n % 3]}" for n in range(1000)]
    add_people(engine, emails)
    server, summary = run_in_loop(engine, settings)
    received = Counter(r for m in server.messages for r in m.recipients)
    assert received == Counter({e: 1 for e in emails})
    assert summary.counts == {DeliveryStatus.SENT: 1000}
    ids = set()
    for m in server.messages:
        parsed = email.message_from_bytes(m.data, policy=policy.default)
        assert parsed["To"].addresses[0].addr_spec == m.recipients[0]
        ids.add(parsed["Message-ID"])
        assert m.envelope_from.startswith("bounces+")
    assert len(ids) == 1000
    rows = deliveries(engine)
    assert all(d.status == DeliveryStatus.SENT and d.smtp_code == 250 and d.smtp_reply.startswith("2.0.0 Ok") for d in rows.values())
    report = Mailer(settings, engine=engine).report()
    assert report.counts["sent"] == 1000 and report.status == "done" and report.rate_per_second


def test_550_bounces_and_451_defers_with_the_servers_text(engine: Engine, settings: Settings) -> None:
    def rule(rcpt: str) -> str | None:
        if rcpt.startswith("nobody"):
            return f"550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown"
        if rcpt.startswith("later"):
            return "451 4.7.1 Greylisted, please try again in 300 seconds"
        return None

    add_people(engine, ["ok1@example.org", "nobody1@example.org", "later1@example.net", "ok2@example.com", "nobody2@example.net"])
    server, summary = run_in_loop(engine, settings, rule)
    assert sorted(r for m in server.messages for r in m.recipients) == ["ok1@example.org", "ok2@example.com"]
    rows = deliveries(engine)
    bounced = rows["nobody1@example.org"]
    assert (bounced.status, bounced.smtp_code) == (DeliveryStatus.BOUNCED, 550)
    assert bounced.smtp_reply == "5.1.1 <nobody1@example.org>: Recipient address rejected: User unknown"
    deferred = rows["later1@example.net"]
    assert (deferred.status, deferred.smtp_code, deferred.attempts) == (DeliveryStatus.DEFERRED, 451, 1)
    assert deferred.smtp_reply == "4.7.1 Greylisted, please try again in 300 seconds"
    assert deferred.next_attempt_at.replace(tzinfo=None) > utcnow().replace(tzinfo=None) + timedelta(seconds=0.8 * 300 - 10)  # 5 min ±20%
    with Session(engine) as session:
        events = session.exec(select(BounceEvent).order_by(BounceEvent.id)).all()
        assert sorted((e.kind, e.smtp_code) for e in events) == [("hard", 550), ("hard", 550), ("soft", 451)]
        assert store.find_subscriber(session, "nobody1@example.org").status == SubscriberStatus.BOUNCED
        assert store.find_subscriber(session, "later1@example.net").status == SubscriberStatus.ACTIVE
    report = Mailer(settings, engine=engine).report()
    assert (report.bounced_hard, report.bounced_soft, report.counts["deferred"]) == (2, 1, 1)
    assert report.top_reasons[0].count == 2 and "User unknown" in report.top_reasons[0].reason
    assert report.status == "sending"  # a retry is still due


def test_running_send_again_sends_nothing_twice(engine: Engine, settings: Settings) -> None:
    def rule(rcpt: str) -> str | None:
        return "451 4.3.0 try later" if rcpt.startswith("later") else None

    add_people(engine, ["a@example.org", "b@example.org", "later@example.org"])

    async def body(server: CaptureServer):  # type: ignore[no-untyped-def]
        s = settings.with_overrides(smtp=parse_smtp_url(server.url))
        issue = load_issue(ISSUE_2026)
        for _ in range(3):
            plan = Mailer(s, engine=engine).plan_send(issue, None)
            campaign = Mailer(settings, engine=engine).start_send(plan)
            (await Mailer(s, engine=engine).run_send(campaign, plan.composed_by_language)).summary
        first_rounds = len(server.messages)
        waiting = Mailer(s, engine=engine).plan_send(issue, None)
        assert (waiting.to_send, waiting.waiting) == (0, 1) and waiting.next_retry is not None
        # the retry falls due: only the deferred delivery is tried again, once
        with engine.begin() as conn:
            conn.execute(update(Delivery).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
        server.handler.rule = None
        plan = Mailer(s, engine=engine).plan_send(issue, None)
        assert plan.to_send == 1 and plan.new_recipients == 0
        await dispatch(engine, s, plan)
        return first_rounds, [r for m in server.messages for r in m.recipients]

    first_rounds, received = with_server(rule, body)
    assert first_rounds == 2
    assert sorted(received) == ["a@example.org", "b@example.org", "later@example.org"]
    rows = deliveries(engine)
    assert len(rows) == 3 and rows["later@example.org"].attempts == 2
    assert all(d.status == DeliveryStatus.SENT for d in rows.values())
    with Session(engine) as session:
        assert len(session.exec(select(Campaign)).all()) == 1


def test_new_subscribers_join_a_rerun_without_repeating_the_others(engine: Engine, settings: Settings) -> None:
    add_people(engine, ["first@example.org"])
    run_in_loop(engine, settings)
    add_people(engine, ["second@example.org"])
    server, summary = run_in_loop(engine, settings)
    assert [r for m in server.messages for r in m.recipients] == ["second@example.org"]


def test_a_dropped_connection_defers_and_the_rest_still_go(engine: Engine, settings: Settings) -> None:
    add_people(engine, [f"r{n}@example.org" for n in range(6)] + ["cut@example.org"])
    server, summary = run_in_loop(engine, settings, lambda r: DROP if r.startswith("cut") else None, smtp_connections=2)
    rows = deliveries(engine)
    cut = rows["cut@example.org"]
    assert cut.status == DeliveryStatus.DEFERRED and cut.smtp_code is None and cut.smtp_reply.startswith("connection lost")
    assert sorted(r for m in server.messages for r in m.recipients) == [f"r{n}@example.org" for n in range(6)]


def test_someone_who_left_after_enqueue_is_skipped(engine: Engine, settings: Settings) -> None:
    add_people(engine, ["stays@example.org", "leaves@example.org"])

    async def body(server: CaptureServer):  # type: ignore[no-untyped-def]
        s = settings.with_overrides(smtp=parse_smtp_url(server.url))
        plan = Mailer(s, engine=engine).plan_send(load_issue(ISSUE_2026), None)
        campaign = Mailer(settings, engine=engine).start_send(plan)
        with Session(engine) as session:
            store.unsubscribe(session, store.find_subscriber(session, "leaves@example.org"), None, method="one-click")
            session.commit()
        (await Mailer(s, engine=engine).run_send(campaign, plan.composed_by_language)).summary
        return [r for m in server.messages for r in m.recipients]

    assert with_server(None, body) == ["stays@example.org"]
    assert deliveries(engine)["leaves@example.org"].status == DeliveryStatus.SKIPPED


def test_an_unreachable_relay_stops_and_leaves_everything_queued(engine: Engine, settings: Settings) -> None:
    add_people(engine, ["a@example.org", "b@example.org"])
    s = settings.with_overrides(smtp=parse_smtp_url("smtp://127.0.0.1:9"))  # discard port: nothing listens
    plan = Mailer(s, engine=engine).plan_send(load_issue(ISSUE_2026), None)
    campaign = Mailer(settings, engine=engine).start_send(plan)
    summary = asyncio.run(Mailer(s, engine=engine).run_send(campaign, plan.composed_by_language)).summary
    assert summary.error and "cannot connect to SMTP relay smtp://127.0.0.1:9" in summary.error
    assert summary.released == 2
    assert {(d.status, d.attempts) for d in deliveries(engine).values()} == {(DeliveryStatus.QUEUED, 0)}


def test_a_killed_runs_claims_are_settled_by_whether_they_reached_smtp(engine: Engine, settings: Settings) -> None:
    add_people(engine, ["handed@example.org", "claimed@example.org", "fresh@example.org"])
    plan = Mailer(settings, engine=engine).plan_send(load_issue(ISSUE_2026), None)
    Mailer(settings, engine=engine).start_send(plan)
    past = utcnow() - timedelta(seconds=1)
    with engine.begin() as conn:  # a worker claimed two rows, handed one to SMTP, then was killed
        conn.execute(
            update(Delivery).where(Delivery.email.in_(["handed@example.org", "claimed@example.org"]))
            .values(status="sending", lease_owner="dead", lease_until=past, attempts=1)
        )
        conn.execute(update(Delivery).where(Delivery.email == "handed@example.org").values(handed_at=past))
    server, summary = run_in_loop(engine, settings)
    assert sorted(r for m in server.messages for r in m.recipients) == ["claimed@example.org", "fresh@example.org"]
    rows = deliveries(engine)
    assert rows["handed@example.org"].status == DeliveryStatus.UNCERTAIN  # may have arrived: not resent
    assert (rows["claimed@example.org"].status, rows["claimed@example.org"].attempts) == (DeliveryStatus.SENT, 1)


def test_each_result_is_on_record_before_the_next_message_of_its_connection_reaches_the_server(
    engine: Engine, settings: Settings
) -> None:
    """A message's result and the next one's mark share a commit: at the end of every DATA, the deliveries
    handed to SMTP and not yet recorded are at most one per connection (a crash could leave no more uncertain)."""
    add_people(engine, [f"reader{n}@example.org" for n in range(400)])
    in_flight: list[int] = []

    def count_in_flight(recipient: str) -> None:
        with engine.connect() as conn:
            in_flight.append(conn.execute(
                select(func.count()).select_from(Delivery).where(
                    Delivery.status == DeliveryStatus.SENDING, Delivery.handed_at.is_not(None)  # type: ignore[union-attr]
                )
            ).scalar_one())
        return None

    async def body(server: CaptureServer):  # type: ignore[no-untyped-def]
        server.handler.data_rule = count_in_flight
        s = settings.with_overrides(smtp=parse_smtp_url(server.url), smtp_connections=4)
        plan = Mailer(s, engine=engine).plan_send(load_issue(ISSUE_2026), None)
        campaign = Mailer(s, engine=engine).start_send(plan)
        return (await Mailer(s, engine=engine).run_send(campaign, plan.composed_by_language)).summary

    summary = with_server(None, body)
    assert summary.counts == {DeliveryStatus.SENT: 400}
    assert len(in_flight) == 400
    assert max(in_flight) <= 4
    assert min(in_flight) >= 1  # the message at the server is itself marked


def test_a_row_whose_lease_was_taken_over_is_not_sent(engine: Engine, settings: Settings) -> None:
    add_people(engine, ["a@example.org"])
    plan = Mailer(settings, engine=engine).plan_send(load_issue(ISSUE_2026), None)
    campaign = Mailer(settings, engine=engine).start_send(plan)
    claimed = ledger.claim_batch(engine, campaign.id or 0, "slow-worker", 10, 600)
    with engine.begin() as conn:  # an operator's later run settled the lease meanwhile
        conn.execute(update(Delivery).values(status="queued", lease_owner=None))
    assert not ledger.mark_handed(engine, claimed[0].delivery_id, "slow-worker")


def test_deferred_too_often_becomes_failed(engine: Engine, settings: Settings) -> None:
    add_people(engine, ["never@example.org"])
    for _ in range(2):
        run_in_loop(engine, settings, lambda r: "421 4.4.5 too busy", max_attempts=2, retry_backoff=(0,))
    row = deliveries(engine)["never@example.org"]
    assert (row.status, row.attempts, row.smtp_code) == (DeliveryStatus.FAILED, 2, 421)


def test_rate_limit_spaces_messages(engine: Engine, settings: Settings) -> None:
    add_people(engine, [f"p{n}@example.org" for n in range(10)])
    server, summary = run_in_loop(engine, settings, smtp_rate=20.0)
    assert summary.counts[DeliveryStatus.SENT] == 10 and summary.elapsed >= (10 - 2) / 20  # a burst of 2, then 20/s


def test_a_relay_refusing_our_sender_stops_without_blaming_anyone(engine: Engine, settings: Settings) -> None:
    add_people(engine, ["a@example.org", "b@example.org", "c@example.org"])

    async def body(server: CaptureServer):  # type: ignore[no-untyped-def]
        s = settings.with_overrides(smtp=parse_smtp_url(server.url))
        plan = Mailer(s, engine=engine).plan_send(load_issue(ISSUE_2026), None)
        return await dispatch(engine, s, plan)

    async def main():  # type: ignore[no-untyped-def]
        async with CaptureServer(sender_rule=lambda a: "553 5.7.1 Sender address rejected: not owned by user") as server:
            return await body(server)

    summary = asyncio.run(main())
    assert summary.error and "refused our sender bounces+" in summary.error and "553" in summary.error
    assert {(d.status, d.attempts) for d in deliveries(engine).values()} == {(DeliveryStatus.QUEUED, 0)}
    with Session(engine) as session:
        assert {s.status for s in session.exec(select(Subscriber))} == {SubscriberStatus.ACTIVE}
        assert session.exec(select(BounceEvent)).all() == []


def test_content_rejections_keep_the_address_and_a_blocked_relay_stops_the_run(engine: Engine, settings: Settings) -> None:
    add_people(engine, [f"r{n:02d}@example.org" for n in range(30)])

    async def main():  # type: ignore[no-untyped-def]
        async with CaptureServer(data_rule=lambda r: "554 5.7.1 Message rejected: spam content") as server:
            s = settings.with_overrides(smtp=parse_smtp_url(server.url), smtp_connections=1)
            plan = Mailer(s, engine=engine).plan_send(load_issue(ISSUE_2026), None)
            return await dispatch(engine, s, plan)

    summary = asyncio.run(main())
    assert summary.error and "refused 10 messages in a row" in summary.error and "spam content" in summary.error
    rows = deliveries(engine)
    assert {d.status for d in rows.values()} == {DeliveryStatus.QUEUED}  # all still to be sent, none lost
    with Session(engine) as session:
        assert {s.status for s in session.exec(select(Subscriber))} == {SubscriberStatus.ACTIVE}
        assert {e.kind for e in session.exec(select(BounceEvent))} == {"soft"}


def test_a_line_lost_after_the_message_is_uncertain_and_never_resent_blindly(engine: Engine, settings: Settings) -> None:
    add_people(engine, ["ok@example.org", "lost@example.org"])

    async def body(server: CaptureServer):  # type: ignore[no-untyped-def]
        s = settings.with_overrides(smtp=parse_smtp_url(server.url))
        issue = load_issue(ISSUE_2026)
        for _ in range(2):
            plan = Mailer(s, engine=engine).plan_send(issue, None)
            await dispatch(engine, s, plan)
        after_reruns = [r for m in server.messages for r in m.recipients]
        server.handler.data_rule = None
        campaign_id = plan.campaign_id or 0
        assert ledger.requeue_uncertain(engine, campaign_id) == 1  # the operator's explicit choice
        plan = Mailer(s, engine=engine).plan_send(issue, None)
        await dispatch(engine, s, plan)
        return after_reruns, [r for m in server.messages for r in m.recipients]

    async def main():  # type: ignore[no-untyped-def]
        async with CaptureServer(data_rule=lambda r: DROP if r.startswith("lost") else None) as server:
            return await body(server)

    after_reruns, finally_received = asyncio.run(main())
    assert sorted(after_reruns) == ["lost@example.org", "ok@example.org"]  # the server did keep it: once
    assert sorted(finally_received) == ["lost@example.org", "lost@example.org", "ok@example.org"]
    assert deliveries(engine)["lost@example.org"].status == DeliveryStatus.SENT


def test_a_failing_producer_ends_the_run_instead_of_hanging(engine: Engine, settings: Settings) -> None:
    from mailer.dispatch import Dispatcher, DispatchOptions
    from mailer.message import EditionBuilders, MessageBuilder, Recipient
    from mailer.threaded_ledger import ThreadedLedger
    from mailer.transport import SmtpConnection

    class BrokenBuilder(MessageBuilder):
        def build(self, r: Recipient):  # type: ignore[no-untyped-def]
            if r.email.startswith("p07"):
                raise RuntimeError("template blew up")
            return super().build(r)

    add_people(engine, [f"p{n:02d}@example.org" for n in range(12)])
    plan = Mailer(settings, engine=engine).plan_send(load_issue(ISSUE_2026), None)
    campaign = Mailer(settings, engine=engine).start_send(plan)

    async def main():  # type: ignore[no-untyped-def]
        async with CaptureServer() as server:
            s = settings.with_overrides(smtp=parse_smtp_url(server.url))
            builder = BrokenBuilder(plan.composed, TokenSigner(s.secret_keys), base_url=s.base_url, campaign_id=campaign.id or 0)
            senders = [SmtpConnection(s.smtp) for _ in range(2)]
            campaign_ledger = ThreadedLedger(engine, campaign.id or 0, s.bounce_policy)
            dispatcher = Dispatcher(campaign_ledger, EditionBuilders({"it": builder}, "it"), senders, DispatchOptions(batch_size=5))
            with pytest.raises(RuntimeError, match="template blew up"):
                await asyncio.wait_for(dispatcher.run(), timeout=20)
            campaign_ledger.close()
            return [r for m in server.messages for r in m.recipients]

    received = asyncio.run(main())
    rows = deliveries(engine)
    assert {d.status for d in rows.values()} <= {DeliveryStatus.SENT, DeliveryStatus.QUEUED}
    assert sorted(received) == sorted(e for e, d in rows.items() if d.status == DeliveryStatus.SENT)
    assert rows["p07@example.org"].status == DeliveryStatus.QUEUED


def test_a_changed_issue_file_is_refused_midway_unless_allowed(engine: Engine, settings: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from mailer.errors import CampaignError

    add_people(engine, ["a@example.org"])
    issue_file = tmp_path / "issue.md"
    issue_file.write_text(ISSUE_2026.read_text(encoding="utf-8"), encoding="utf-8")
    Mailer(settings, engine=engine).start_send(Mailer(settings, engine=engine).plan_send(load_issue(issue_file), None))
    issue_file.write_text(ISSUE_2026.read_text(encoding="utf-8").replace("Rockin'1000", "Rockin' 1000"), encoding="utf-8")
    changed = Mailer(settings, engine=engine).plan_send(load_issue(issue_file), None)
    with pytest.raises(CampaignError, match="changed since campaign 1 began"):
        Mailer(settings, engine=engine).start_send(changed)
    campaign = Mailer(settings, engine=engine).start_send(changed, allow_changed=True)
    with Session(engine) as session:
        stored = session.get(Campaign, campaign.id)
        assert stored is not None and "Rockin' 1000" in stored.issue_source


def test_a_sender_refused_at_rcpt_stops_the_run_without_suppressing_anyone(engine: Engine, settings: Settings) -> None:
    add_people(engine, [f"r{n}@example.org" for n in range(5)])
    rule = lambda r: "550 5.1.8 <bounces@comune.torino.it>: Sender address rejected: Domain not found"  # noqa: E731
    server, summary = run_in_loop(engine, settings, rule)
    assert summary.error and "Sender address rejected" in summary.error
    assert {d.status for d in deliveries(engine).values()} == {DeliveryStatus.QUEUED}
    with Session(engine) as session:
        assert {s.status for s in session.exec(select(Subscriber))} == {SubscriberStatus.ACTIVE}


def test_hard_bounces_before_any_success_are_suppressed_only_once_the_relay_delivers(engine: Engine, settings: Settings) -> None:
    def statuses() -> dict[str, str]:
        with Session(engine) as session:
            return {s.email: s.status for s in session.exec(select(Subscriber))}

    add_people(engine, ["dead1@example.org", "dead2@example.org", "alive@example.org"])
    run_in_loop(engine, settings, lambda r: "550 5.1.1 User unknown" if r.startswith("dead") else None, smtp_connections=1)
    assert statuses() == {"dead1@example.org": "bounced", "dead2@example.org": "bounced", "alive@example.org": "active"}


def test_a_relay_refusing_everyone_trips_the_breaker_before_suppressing_anyone(engine: Engine, settings: Settings) -> None:
    add_people(engine, [f"r{n:02d}@example.org" for n in range(25)])
    server, summary = run_in_loop(engine, settings, lambda r: "550 5.1.1 User unknown", smtp_connections=1)
    assert summary.error and "refused 10 messages in a row" in summary.error
    rows = deliveries(engine)
    assert {(d.status, d.attempts) for d in rows.values()} == {(DeliveryStatus.QUEUED, 0)}
    with Session(engine) as session:
        assert {s.status for s in session.exec(select(Subscriber))} == {SubscriberStatus.ACTIVE}


def test_a_relay_that_turns_bad_midway_suppresses_no_one(engine: Engine, settings: Settings) -> None:
    add_people(engine, [f"r{n:02d}@example.org" for n in range(30)])
    accepted: list[str] = []

    def quota(rcpt: str) -> str | None:
        if len(accepted) < 5:
            accepted.append(rcpt)
            return None
        return "550 5.1.1 User unknown"  # what a broken relay says once its quota is gone

    server, summary = run_in_loop(engine, settings, quota, smtp_connections=1)
    assert summary.error and "refused 10 messages in a row" in summary.error
    rows = deliveries(engine)
    assert sum(d.status == DeliveryStatus.SENT for d in rows.values()) == 5
    assert sum(d.status == DeliveryStatus.QUEUED for d in rows.values()) == 25
    with Session(engine) as session:
        assert {s.status for s in session.exec(select(Subscriber))} == {SubscriberStatus.ACTIVE}
        assert {e.kind for e in session.exec(select(BounceEvent))} == {"soft"}


def test_real_bounces_at_the_end_of_a_run_are_suppressed(engine: Engine, settings: Settings) -> None:
    add_people(engine, ["alive@example.org"])
    run_in_loop(engine, settings)
    add_people(engine, ["dead1@example.org", "dead2@example.org"])  # a later run meets only these two
    run_in_loop(engine, settings, lambda r: "550 5.1.1 User unknown" if r.startswith("dead") else None)
    with Session(engine) as session:
        assert {s.email: s.status for s in session.exec(select(Subscriber))} == {
            "alive@example.org": "active", "dead1@example.org": "bounced", "dead2@example.org": "bounced",
        }


def test_a_run_stopped_before_its_bounces_are_settled_suppresses_no_one(engine: Engine, settings: Settings) -> None:
    """Nine 550s, then SIGTERM before any delivery: the run cannot tell real bounces from a relay gone bad,
    so it suppresses no one and gives those nine deliveries back to the queue (as a tripped breaker does)."""
    import os
    import signal

    add_people(engine, [f"dead{n}@example.org" for n in range(9)] + [f"later{n}@example.org" for n in range(5)])

    async def body(server: CaptureServer):  # type: ignore[no-untyped-def]
        s = settings.with_overrides(smtp=parse_smtp_url(server.url), smtp_connections=1)
        mailer = Mailer(s, engine=engine)
        plan = mailer.plan_send(load_issue(ISSUE_2026), None)
        campaign = mailer.start_send(plan)
        results: list[DeliveryStatus] = []

        def on_result(status: DeliveryStatus) -> None:
            results.append(status)
            if len(results) == 9:
                os.kill(os.getpid(), signal.SIGTERM)  # what an operator's Ctrl-C or a service stop does

        return (await mailer.run_send(campaign, plan.composed_by_language, on_result=on_result, handle_signals=True)).summary

    # the relay then stalls: nothing is delivered after the nine (a delivery would prove them real)
    summary = with_server(lambda r: "550 5.1.1 User unknown" if r.startswith("dead") else "451 4.3.0 Try again later", body)
    assert summary.stopped and summary.counts[DeliveryStatus.BOUNCED] == 9
    with Session(engine) as session:
        assert {s.status for s in session.exec(select(Subscriber))} == {SubscriberStatus.ACTIVE}
        assert {e.kind for e in session.exec(select(BounceEvent))} == {"soft"}  # kept as the record of what was said
        assert len(session.exec(select(BounceEvent).where(BounceEvent.smtp_code == 550)).all()) == 9
    rows = deliveries(engine)
    assert {rows[f"dead{n}@example.org"].status for n in range(9)} == {DeliveryStatus.QUEUED}
    assert {rows[f"later{n}@example.org"].status for n in range(5)} <= {DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED}


def test_a_relay_that_has_never_delivered_this_campaign_suppresses_no_one(engine: Engine, settings: Settings) -> None:
    """Six 550 5.1.1, fewer than the breaker's ten, and not one message through: a misconfigured relay
    looks exactly like this, so the run judges nobody and the six stay queued for the next run."""
    add_people(engine, [f"p{n}@example.org" for n in range(6)])
    run_in_loop(engine, settings, lambda r: "550 5.1.1 User unknown in local recipient table")
    with Session(engine) as session:
        assert {s.status for s in session.exec(select(Subscriber))} == {"active"}
        assert {d.status for d in session.exec(select(Delivery))} == {"queued"}


def test_a_send_spreads_over_several_relays_each_with_its_own_limits(engine: Engine, settings: Settings) -> None:
    from mailer.rate_limits import RateLimits
    from mailer.settings import RelaySettings

    emails = [f"p{n:02d}@example.org" for n in range(60)]
    add_people(engine, emails)

    async def main():  # type: ignore[no-untyped-def]
        async with CaptureServer() as first, CaptureServer() as backup:
            s = settings.with_overrides(
                smtp=parse_smtp_url(first.url), smtp_connections=1,
                extra_relays=(RelaySettings("backup", parse_smtp_url(backup.url), connections=1, limits=RateLimits(per_second=10)),),
            )
            plan = Mailer(s, engine=engine).plan_send(load_issue(ISSUE_2026), None)
            summary = await dispatch(engine, s, plan)
            return summary, first.messages, backup.messages

    summary, first, backup = asyncio.run(main())
    got = Counter(r for m in [*first, *backup] for r in m.recipients)
    assert summary.counts[DeliveryStatus.SENT] == 60 and got == {e: 1 for e in emails}
    assert first and backup and len(backup) <= 10 * summary.elapsed + 2  # the backup relay kept to its 10/s


def test_a_421_at_mail_from_on_a_fresh_connection_defers_and_the_run_goes_on(engine: Engine, settings: Settings) -> None:
    add_people(engine, [f"p{n}@example.org" for n in range(8)])
    refusals = iter(range(3))

    def busy_at_first(address: str) -> str | None:  # the relay's first three sessions: come back later
        return "421 4.7.0 Try again later, closing connection" if next(refusals, None) is not None else None

    async def main():  # type: ignore[no-untyped-def]
        async with CaptureServer(sender_rule=busy_at_first) as server:
            s = settings.with_overrides(smtp=parse_smtp_url(server.url), smtp_connections=1)
            plan = Mailer(s, engine=engine).plan_send(load_issue(ISSUE_2026), None)
            return await dispatch(engine, s, plan), server.messages

    summary, received = asyncio.run(main())
    assert summary.error is None and summary.counts[DeliveryStatus.DEFERRED] >= 1
    assert summary.counts[DeliveryStatus.SENT] + summary.counts[DeliveryStatus.DEFERRED] == 8
    rows = deliveries(engine)
    deferred = [d for d in rows.values() if d.status == DeliveryStatus.DEFERRED]
    assert deferred and all(d.smtp_code == 421 and d.smtp_stage == "mail" for d in deferred)
    assert len(received) == summary.counts[DeliveryStatus.SENT]


def test_a_stalled_server_costs_one_timeout_on_that_connection_only(engine: Engine, settings: Settings) -> None:
    from tests.fault_server import fault_server

    emails = [f"p{n:02d}@example.org" for n in range(20)]
    add_people(engine, [*emails, "stall@example.org"])
    with fault_server(stall_for=frozenset({"stall@example.org"}), stall_seconds=5) as (server, port):
        s = settings.with_overrides(smtp=parse_smtp_url(f"smtp://127.0.0.1:{port}"), smtp_connections=2, smtp_timeout=0.5)
        plan = Mailer(s, engine=engine).plan_send(load_issue(ISSUE_2026), None)
        summary = asyncio.run(dispatch(engine, s, plan))
    assert summary.counts[DeliveryStatus.SENT] == 20 and summary.counts[DeliveryStatus.DEFERRED] == 1
    assert summary.elapsed < 2.5  # one 0.5 s timeout (no QUIT to wait out), while the other connection carried on
    assert deliveries(engine)["stall@example.org"].smtp_stage == "rcpt"


def test_a_failure_rate_past_the_limit_pauses_the_campaign_and_says_why(engine: Engine, settings: Settings) -> None:
    add_people(engine, [f"p{n:02d}@example.org" for n in range(60)])

    async def main():  # type: ignore[no-untyped-def]
        async with CaptureServer(rule=lambda r: "451 4.3.2 System not accepting network messages") as server:
            s = settings.with_overrides(smtp=parse_smtp_url(server.url), pause_failure_rate=0.5, failure_window=6, smtp_connections=2)
            plan = Mailer(s, engine=engine).plan_send(load_issue(ISSUE_2026), None)
            return await dispatch(engine, s, plan)

    summary = asyncio.run(main())
    assert summary.halted.startswith("paused: 6 of the last 6 attempts failed (limit 50%); last reply: 451 4.3.2")
    assert summary.counts[DeliveryStatus.DEFERRED] < 12  # it stopped well before the end of the list
    with Session(engine) as session:
        campaign = session.exec(select(Campaign)).one()
    assert campaign.status == "paused" and "6 of the last 6 attempts failed" in campaign.status_reason
    assert {d.status for d in deliveries(engine).values()} == {DeliveryStatus.DEFERRED, DeliveryStatus.QUEUED}


def test_a_per_domain_rate_spaces_the_messages_to_one_domain(engine: Engine, settings: Settings) -> None:
    add_people(engine, [f"p{n:02d}@libero.it" for n in range(16)])
    server, summary = run_in_loop(engine, settings, smtp_rate_per_domain_per_minute=120.0)  # 2/s after a burst of 12
    assert summary.counts[DeliveryStatus.SENT] == 16 and summary.elapsed >= (16 - 12) / 2


def test_enqueue_says_how_many_it_added_and_adds_nobody_twice(engine: Engine, settings: Settings) -> None:
    add_people(engine, [f"p{n}@example.org" for n in range(25)])
    plan = Mailer(settings, engine=engine).plan_send(load_issue(ISSUE_2026), None)
    campaign = Mailer(settings, engine=engine).start_send(plan)  # enqueues the 25
    add_people(engine, ["late@example.org"])
    assert ledger.enqueue(engine, campaign, plan.editions.languages, "it") == 1
    assert ledger.enqueue(engine, campaign, plan.editions.languages, "it") == 0
    assert len(deliveries(engine)) == 26


def test_a_relay_that_cannot_be_reached_leaves_its_share_to_the_others(engine: Engine, settings: Settings) -> None:
    from mailer.settings import RelaySettings

    emails = [f"p{n:02d}@example.org" for n in range(40)]
    add_people(engine, emails)

    async def main():  # type: ignore[no-untyped-def]
        async with CaptureServer() as working:
            s = settings.with_overrides(
                smtp=parse_smtp_url("smtp://127.0.0.1:9"), smtp_connections=2,  # nothing listens there
                extra_relays=(RelaySettings("backup", parse_smtp_url(working.url), connections=2),),
            )
            plan = Mailer(s, engine=engine).plan_send(load_issue(ISSUE_2026), None)
            return await dispatch(engine, s, plan), working.messages

    summary, received = asyncio.run(main())
    assert summary.error is None and len(summary.relays_lost) == 1
    assert "cannot connect to SMTP relay smtp://127.0.0.1:9" in summary.relays_lost[0]
    assert Counter(r for m in received for r in m.recipients) == {e: 1 for e in emails}
    assert {d.status for d in deliveries(engine).values()} == {DeliveryStatus.SENT}


def test_a_group_commit_with_a_lost_lease_writes_the_others_and_says_which_was_lost(engine: Engine, settings: Settings) -> None:
    """Marks and first-time successes go in one executemany per statement; when a row's lease was taken
    over meanwhile, the group is written again one row at a time, so each caller gets its own answer."""
    import time

    from mailer.ledger import Recorded, Result
    from mailer.threaded_ledger import ThreadedLedger

    add_people(engine, [f"g{n}@example.org" for n in range(6)])
    plan = Mailer(settings, engine=engine).plan_send(load_issue(ISSUE_2026), None)
    campaign = Mailer(settings, engine=engine).start_send(plan)
    claimed = ledger.claim_batch(engine, campaign.id or 0, "run-a", 6, 60)
    taken = {claimed[1].delivery_id, claimed[4].delivery_id}
    with engine.begin() as conn:
        conn.execute(update(Delivery).where(Delivery.id.in_(taken)).values(lease_owner="run-b"))  # type: ignore[attr-defined]

    async def main() -> tuple[list[bool], list[Recorded], int]:
        campaign_ledger = ThreadedLedger(engine, campaign.id or 0, settings.bounce_policy)
        try:
            campaign_ledger._thread.submit(time.sleep, 0.3)  # the database thread is busy: the marks queue up as one group
            marks = await asyncio.gather(*(campaign_ledger.mark_handed(c.delivery_id, "run-a") for c in claimed[:3]))
            campaign_ledger._thread.submit(time.sleep, 0.3)
            recorded = await asyncio.gather(*(
                campaign_ledger.record(c, "run-a", Result(DeliveryStatus.SENT, 250, "2.0.0 Ok", stage="done")) for c in claimed[3:]
            ))
            return list(marks), list(recorded), campaign_ledger.commits
        finally:
            campaign_ledger.close()

    marks, recorded, commits = asyncio.run(main())
    assert marks == [True, False, True]
    assert [r.status for r in recorded] == [DeliveryStatus.SENT, DeliveryStatus.UNCERTAIN, DeliveryStatus.SENT]
    assert commits == 2  # one group each
    rows = {d.id: d for d in deliveries(engine).values()}
    assert [rows[c.delivery_id].handed_at is not None for c in claimed[:3]] == [True, False, True]
    assert [rows[c.delivery_id].status for c in claimed[3:]] == [DeliveryStatus.SENT, DeliveryStatus.SENDING, DeliveryStatus.SENT]
    assert rows[claimed[4].delivery_id].lease_owner == "run-b"  # the other run's row is left alone
