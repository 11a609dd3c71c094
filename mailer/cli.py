"""`mailer` command line: thin commands over the modules; errors become one red line, never a traceback."""
from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.text import Text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DatabaseError
from sqlmodel import Session

from mailer import campaign as send_path
from mailer.bounces import classify
from mailer.compose import Composed, compose
from mailer.database import open_database
from mailer.errors import IssueError, MailerError
from mailer.issue import Issue, load_issue
from mailer.ledger import next_retry_at, requeue_uncertain
from mailer.models import Campaign, DeliveryStatus
from mailer.progress import send_progress
from mailer.report import campaign_history, delivery_report, render_history, render_table
from mailer.settings import Settings, load_settings
from subscribers import store
from subscribers.csvio import read_subscribers_csv, write_subscribers_csv
from subscribers.errors import CsvImportError, StoreError

app = typer.Typer(help="Compose and send the newsletter; manage subscribers; read delivery reports.", no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False)
issue_app = typer.Typer(help="Work with issue files.", no_args_is_help=True)
subscribers_app = typer.Typer(help="Manage subscribers and lists.", no_args_is_help=True)
app.add_typer(issue_app, name="issue")
app.add_typer(subscribers_app, name="subscribers")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def main() -> None:
    try:
        app()
    except (IssueError, CsvImportError) as exc:  # already one 'file:line: ...' line per problem
        err.print(Text(str(exc), style="red"), highlight=False)
        sys.exit(1)
    except (MailerError, StoreError) as exc:
        err.print(Text("error: ", style="red") + Text(str(exc)), highlight=False)
        sys.exit(1)
    except DatabaseError as exc:  # database unreachable, locked, read-only, not a database...
        err.print(Text("error: ", style="red") + Text(f"database: {exc.orig}"), highlight=False)
        sys.exit(1)


def say(text: str, *, style: str | None = None, console: Console = out) -> None:
    """Print user data literally: '[link](#)' in a warning is text, not Rich markup."""
    console.print(text, style=style, markup=False, highlight=False)


def _settings() -> Settings:
    return load_settings()


def _print_warnings(issue: Issue) -> None:
    for warning in issue.warnings:
        say(f"{warning}", style="yellow", console=err)


# ---- issues ---------------------------------------------------------------------------------------------

@issue_app.command("check")
def issue_check(file: Path) -> None:
    """Validate an issue file: errors (with file and line) fail; warnings are listed."""
    settings = _settings()
    issue = load_issue(file)
    newsletter = send_path.newsletter_for(settings, issue)
    _print_warnings(issue)
    composed = compose(issue, newsletter, settings.base_url)
    for warning in composed.warnings:
        say(f"{file}: warning: {warning}", style="yellow", console=err)
    items = sum(len(s.items) for s in issue.sections)
    say(f"{file}: ok: {len(issue.sections)} sections, {items} items, {len(issue.warnings)} warnings")


@app.command()
def preview(file: Path, out_dir: Path = typer.Option(..., "--out", help="Folder for index.html, message.txt, message.eml")) -> None:
    """Write the HTML part, the text part and the whole message as one sample recipient gets it."""
    settings = _settings()
    issue = load_issue(file)
    _print_warnings(issue)
    files = send_path.write_preview(settings, issue, out_dir)
    for kind, path in files.items():
        say(f"{kind:5} {path}")


# ---- sending --------------------------------------------------------------------------------------------

@app.command()
def send(
    file: Path,
    list_name: Optional[str] = typer.Option(None, "--list", help="List to send to (default: the newsletter's list in config)"),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation"),
    test: Optional[str] = typer.Option(None, "--test", metavar="ADDRESS", help="Send only to this address, subject marked as a test"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be sent; send nothing"),
    allow_changed: bool = typer.Option(False, "--allow-changed", help="Continue a campaign although the issue file changed"),
    resend_uncertain: bool = typer.Option(
        False, "--resend-uncertain", help="Also resend deliveries whose outcome was lost (some may arrive twice)"
    ),
) -> None:
    """Send an issue to every active subscriber of a list. Running it again never sends anyone the issue twice."""
    settings = _settings()
    issue = load_issue(file)
    if test:
        _print_warnings(issue)
        reply = asyncio.run(send_path.send_test(settings, issue, store.normalise_address(test)))
        line = f"{reply.code or '-'} {reply.text}"
        if classify(reply).status != DeliveryStatus.SENT:
            raise MailerError(f"test message to {test} not accepted: {line}")
        say(f"test message sent to {test} via {settings.smtp}: {line}")
        return

    engine = open_database(settings.database_url)
    plan = send_path.plan_send(engine, settings, issue, list_name)
    resend = plan.done.get(DeliveryStatus.UNCERTAIN, 0) if resend_uncertain else 0
    total = plan.to_send + resend
    say(f"{issue.subject}  ({issue.newsletter} {issue.issue})", style="bold")
    say(
        f"list '{plan.mailing_list.name}': {plan.active} active subscribers; "
        f"to send now: {plan.to_send} ({plan.new_recipients} new, {plan.pending} queued or due for a retry)"
        + (f"; {plan.waiting} waiting for a retry from {plan.next_retry:%Y-%m-%d %H:%M} UTC" if plan.next_retry else "")
        + (f"; already done: {', '.join(f'{n} {s}' for s, n in sorted(plan.done.items()))}" if plan.done else "")
    )
    if resend:
        say(f"also resending {resend} uncertain deliveries: some of these people may get the issue twice", style="yellow")
    for warning in plan.warnings:
        say(f"warning: {warning}", style="yellow")
    say(f"relay: {settings.smtp}")
    if dry_run:
        say("dry run: nothing sent")
        return
    if total == 0:
        say("nothing to send")
        return
    question = f"Send to {total} subscribers" + (f" despite {len(plan.warnings)} warning(s)" if plan.warnings else "") + "?"
    if not yes and not typer.confirm(question, default=False):
        raise typer.Exit(1)
    campaign = send_path.start_campaign(engine, plan, allow_changed=allow_changed)
    if resend and campaign.id is not None:
        requeue_uncertain(engine, campaign.id)  # only now that the operator has said yes
    _dispatch_with_progress(engine, settings, campaign, plan.composed, total)
    out.print(render_table(delivery_report(engine, str(campaign.id))))


def _dispatch_with_progress(engine: Engine, settings: Settings, campaign: Campaign, composed: Composed, total: int) -> None:
    progress, advance = send_progress(out, total)
    with progress:
        summary = asyncio.run(
            send_path.dispatch_campaign(engine, settings, campaign, composed, on_result=advance, handle_signals=True)
        )
    if summary.error:
        raise MailerError(f"{summary.error}; {summary.released} deliveries left queued: run the same send again to continue")
    if summary.stopped:
        say(f"stopped: messages in flight were recorded, {summary.released} deliveries left queued; "
            "run the same send again to continue", style="yellow", console=err)
        raise typer.Exit(130)
    deferred = summary.counts.get(DeliveryStatus.DEFERRED, 0)
    if deferred:
        assert campaign.id is not None
        due = next_retry_at(engine, campaign.id)
        say(f"{deferred} deferred; next retry due at {due:%Y-%m-%d %H:%M} UTC: run the same send again then")
    uncertain = summary.counts.get(DeliveryStatus.UNCERTAIN, 0)
    if uncertain:
        say(f"{uncertain} uncertain: the line was lost while the message was being handed over, so it may have "
            "arrived; they are not resent unless you run the send again with --resend-uncertain", style="yellow")


@app.command()
def report(
    campaign: Optional[str] = typer.Argument(None, help="Campaign id or issue id (default: the latest campaign)"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table"),
) -> None:
    """Delivery report of a campaign: counts by status, bounces, duration, rate, top bounce reasons."""
    engine = open_database(_settings().database_url)
    result = delivery_report(engine, campaign)
    if as_json:
        print(result.to_json())
    else:
        out.print(render_table(result))


@app.command()
def campaigns(
    limit: int = typer.Option(24, help="How many, newest first"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table"),
) -> None:
    """Delivery figures of recent campaigns side by side: how each issue fared over time."""
    engine = open_database(_settings().database_url)
    lines = campaign_history(engine, limit)
    if as_json:
        print(json.dumps([asdict(line) for line in lines], default=str, indent=2, ensure_ascii=False))
    else:
        out.print(render_history(lines))


# ---- subscribers ----------------------------------------------------------------------------------------

@subscribers_app.command("import")
def subscribers_import(
    csv_file: Path,
    list_name: str = typer.Option(..., "--list", help="List to add them to (created when missing)"),
    language: str = typer.Option("it", help="Language for rows without one"),
) -> None:
    """Import a CSV (email, name, language). A bad row stops the import: nothing is half-imported."""
    parsed = read_subscribers_csv(csv_file, default_language=language)
    engine = open_database(_settings().database_url)
    with Session(engine) as session:
        mailing_list = store.get_or_create_list(session, list_name, language=language)
        counts = store.add_subscribers(session, mailing_list, parsed.people, source=f"import:{csv_file.name}")
        session.commit()
    say(
        f"{csv_file}: {parsed.rows} rows, {parsed.merged} duplicates merged; list '{list_name}': "
        f"{counts.added} added, {counts.updated} already subscribed, {counts.suppressed} unsubscribed or bounced (left out)"
    )


@subscribers_app.command("add")
def subscribers_add(
    email: str,
    list_name: str = typer.Option(..., "--list"),
    name: str = typer.Option("", "--name"),
    language: str = typer.Option("it", "--language"),
) -> None:
    """Add one subscriber by hand (an operator's action: re-subscribes someone who had left)."""
    address = store.normalise_address(email)
    engine = open_database(_settings().database_url)
    with Session(engine) as session:
        mailing_list = store.get_or_create_list(session, list_name, language=language)
        counts = store.add_subscribers(
            session, mailing_list, [store.NewSubscriber(address, store.clean_name(name), language)], source="admin", resubscribe=True
        )
        session.commit()
    say(f"{address}: {'added to' if counts.added else 'already on'} '{list_name}'")


@subscribers_app.command("remove")
def subscribers_remove(email: str, list_name: Optional[str] = typer.Option(None, "--list", help="Only this list (default: all)")) -> None:
    """Unsubscribe an address (recorded as an operator's action); the record stays, so imports do not bring it back."""
    engine = open_database(_settings().database_url)
    with Session(engine) as session:
        subscriber = store.find_subscriber(session, email)
        mailing_list = store.get_list(session, list_name) if list_name else None
        ended = store.unsubscribe(session, subscriber, mailing_list, method="admin")
        address = subscriber.email
        session.commit()
    say(f"{address}: {ended} subscription(s) ended")


@subscribers_app.command("list")
def subscribers_list(
    list_name: Optional[str] = typer.Option(None, "--list"),
    status: Optional[str] = typer.Option(None, "--status", help="active, unsubscribed, bounced, ..."),
) -> None:
    """Print subscribers as CSV rows (of one list, or all)."""
    engine = open_database(_settings().database_url)
    with Session(engine) as session:
        mailing_list = store.get_list(session, list_name) if list_name else None
        count = write_subscribers_csv(store.list_members(session, mailing_list, status), sys.stdout)
    say(f"{count} subscribers", console=err)


@subscribers_app.command("export")
def subscribers_export(
    list_name: str = typer.Option(..., "--list", help="The list (statuses are per list: who left it, who bounced)"),
    output: Path = typer.Option(..., "--out", help="CSV file to write"),
    status: Optional[str] = typer.Option(None, "--status"),
) -> None:
    """Write subscribers to a CSV file that `subscribers import` reads back."""
    engine = open_database(_settings().database_url)
    with Session(engine) as session, output.open("w", encoding="utf-8", newline="") as handle:
        count = write_subscribers_csv(store.list_members(session, store.get_list(session, list_name), status), handle)
    say(f"{count} subscribers written to {output}")


# ---- local tools ----------------------------------------------------------------------------------------

@app.command("capture-server")
def capture_server(
    port: int = typer.Option(8025, help="Port on 127.0.0.1"),
    maildir: Path = typer.Option(Path("var/maildir"), help="Maildir that receives every message"),
) -> None:
    """Run a local SMTP server that keeps every message in a Maildir (the default relay in config)."""
    from mailer.capture import CaptureServer

    async def serve() -> None:
        async with CaptureServer(maildir=maildir, port=port, keep_in_memory=False) as server:
            say(f"capturing on {server.url} into {maildir}/new (Ctrl-C to stop)")
            await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


@app.command()
def demo(
    subscribers: int = typer.Option(300, help="How many sample subscribers"),
    folder: Path = typer.Option(Path("var/demo"), "--dir", help="Where the demo's database, Maildir and preview go"),
    issue_file: Path = typer.Option(Path("examples/2026-05-work-in-progress.md"), "--issue"),
) -> None:
    """The whole path on the embedded default: SQLite, sample subscribers, capture SMTP server, real dispatcher."""
    from mailer.demo import run_demo

    run_demo(folder, issue_file, subscribers, out)
