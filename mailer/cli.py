"""`mailer` command line: flags -> Mailer(settings) -> one use case -> printed result.

Heavy modules (SQLAlchemy, the composer, aiosmtplib) are imported inside the commands that need them, so
`mailer --help` and argument errors answer at once. `main()` is the one place where errors become messages.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

if TYPE_CHECKING:
    from datetime import datetime

    from rich.console import Console

    from mailer.app import Mailer
    from mailer.checking import Checking
    from mailer.errors import Problem
    from mailer.issue import Issue
    from mailer.reports import Reports
    from mailer.models import Campaign
    from mailer.sending import SendPlan

# Plain (click-style) help and usage errors: Rich's help formatter alone takes longer to import (~0.17 s)
# than the whole start-up budget leaves it (bench/cli_startup.py).
PLAIN = {"no_args_is_help": True, "rich_markup_mode": None}
app = typer.Typer(help="Compose and send the newsletter; manage subscribers; read delivery reports.", add_completion=False, pretty_exceptions_enable=False, **PLAIN)
issue_app = typer.Typer(help="Work with issue files.", **PLAIN)
subscribers_app = typer.Typer(help="Manage subscribers and lists.", **PLAIN)
admin_app = typer.Typer(help="Operators of the web app's /admin/ area.", **PLAIN)
app.add_typer(issue_app, name="issue")
app.add_typer(subscribers_app, name="subscribers")
app.add_typer(admin_app, name="admin")
dkim_app = typer.Typer(help="DKIM keys for signing the messages we send.", **PLAIN)
app.add_typer(dkim_app, name="dkim")
bounces_app = typer.Typer(help="Messages that came back to the bounce address.", **PLAIN)
app.add_typer(bounces_app, name="bounces")
inbox_app = typer.Typer(help="The bounce and unsubscribe mailbox: bounces, complaints, mailto unsubscribes.", **PLAIN)
app.add_typer(inbox_app, name="inbox")
db_app = typer.Typer(help="The database's schema: check it, upgrade it.", **PLAIN)
app.add_typer(db_app, name="db")
campaign_app = typer.Typer(help="Control a campaign from any machine: pause, resume, cancel.", **PLAIN)
app.add_typer(campaign_app, name="campaign")


def main() -> None:
    """Run the command; every error a user can meet becomes one line on stderr and exit status 1."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001: the one place that turns errors into messages
        say(error_message(exc), style="red", console=_console(stderr=True))
        if os.environ.get("MAILER_DEBUG"):
            raise
        sys.exit(1)


def error_message(exc: Exception) -> str:
    """The line a user reads for an error; an unexpected one says so instead of showing a traceback."""
    import sqlite3

    from mailer.errors import IssueError, MailerError
    from subscribers.errors import CsvImportError, StoreError

    sqlalchemy_errors = sys.modules.get("sqlalchemy.exc")  # loaded if SQLAlchemy was: else none of its errors can occur

    if isinstance(exc, (IssueError, CsvImportError)):  # already one 'file:line: ...' line per problem
        return str(exc)
    if isinstance(exc, (MailerError, StoreError)):
        return f"error: {exc}"
    if sqlalchemy_errors and isinstance(exc, sqlalchemy_errors.DatabaseError):  # unreachable, locked, read-only, not a database
        return f"error: database: {getattr(exc, 'orig', None) or exc}{_which_database()}"
    if isinstance(exc, sqlite3.Error):  # the same, met on the reports' path (mailer.reader)
        return f"error: database: {exc}{_which_database()}"
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if exc.filename else ""
        return f"error:{where}: {exc.strerror or exc}"
    return f"error: unexpected {type(exc).__name__}: {exc} (set MAILER_DEBUG=1 to see where)"


def _which_database() -> str:
    """' (URL)' of the configured database, password masked, for a database error; '' if settings fail too."""
    from mailer.settings import load_settings, mask_url

    try:
        return f" ({mask_url(load_settings().database_url)})"
    except Exception:  # noqa: BLE001: the original error is the one to report
        return ""


_consoles: dict[bool, "Console"] = {}


def _console(*, stderr: bool = False) -> "Console":
    if stderr not in _consoles:
        from rich.console import Console

        _consoles[stderr] = Console(stderr=stderr, soft_wrap=True)
    return _consoles[stderr]


def say(text: str, *, style: str | None = None, console: "Console | None" = None) -> None:
    """Print user data literally: '[link](#)' in a warning is text, not Rich markup."""
    (console or _console()).print(text, style=style, markup=False, highlight=False)


def warn(text: str) -> None:
    say(text, style="yellow", console=_console(stderr=True))


def _mailer() -> "Mailer":
    from mailer.app import Mailer
    from mailer.settings import load_settings

    return Mailer(load_settings())


# Commands that need less than the whole core construct only their part of it, and start sooner
# (bench/cli_startup.py): reports read through the DB-API driver, checks need no database at all.

def _reports() -> "Reports":
    from mailer.reports import Reports
    from mailer.settings import load_settings

    return Reports(load_settings())


def _checking() -> "Checking":
    from mailer.checking import Checking
    from mailer.settings import load_settings

    return Checking(load_settings())


# ---- issues ---------------------------------------------------------------------------------------------

@issue_app.command("check")
def issue_check(file: Path) -> None:
    """Validate an issue file.

    Every error (with file and line) fails the check; warnings are listed once."""
    checking = _checking()
    check = checking.check_issue(file)
    _print_warnings(check.issue, check.composed.warnings)
    items = len(check.issue.items)
    say(f"{file}: ok: {len(check.issue.sections)} sections, {items} items, {len(check.issue.warnings)} warnings, "
        f"HTML part {check.html_bytes / 1000:.0f} KB")
    from mailer.editions import editions_of

    others = [e for e in editions_of(check.issue).by_language.values() if e is not check.issue]
    if others:
        say("other editions: " + ", ".join(f"{e.language} ({e.path})" for e in others))
    dkim = checking.dkim_signer(check.composed.newsletter)
    if dkim is None:
        say("DKIM: not configured, messages go unsigned (see `mailer dkim keygen`)")
    else:
        say(f"DKIM: signed as d={dkim.domain} s={dkim.key.selector} ({dkim.key.algorithm})")
    spam = checking.spam_check(check)
    if spam is None:
        say("spam score: not checked (install Debian's spamassassin to see it)")
    elif spam.score > SPAM_SCORE_LIMIT:
        warn(f"{file}: warning: spam score {spam} is over {SPAM_SCORE_LIMIT} (SpamAssassin, local rules)")
    else:
        say(f"spam score {spam} (SpamAssassin, local rules)")


SPAM_SCORE_LIMIT = 0.5  # what every message we build scores at most (tests/test_mail_quality.py)


def _print_warnings(issue: "Issue", composed_warnings: "list[Problem]") -> None:
    for warning in [*issue.warnings, *composed_warnings]:
        warn(str(warning))  # already 'file:line: warning: ...'


@app.command()
def preview(file: Path, out_dir: Path = typer.Option(..., "--out", help="Folder for index.html, message.txt, message.eml")) -> None:
    """Write the HTML, text and whole message of a sample.

    The HTML part, the text part and the whole message as one sample recipient gets it."""
    check, files = _checking().preview(file, out_dir)
    _print_warnings(check.issue, check.composed.warnings)
    for kind, path in files.items():
        size = f" ({check.html_bytes / 1000:.0f} KB; Gmail clips past 102 KB)" if kind == "html" else ""
        say(f"{kind:5} {path}{size}")


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
    queue: bool = typer.Option(False, "--queue", help="Only start the campaign: `mailer worker` processes send it"),
    at: Optional[str] = typer.Option(
        None, "--at", metavar="TIME", help="Schedule for this time (e.g. '2026-12-05 09:00', local time, or with +01:00); workers send it"
    ),
    start_late: bool = typer.Option(False, "--start-late", help="Start now although --at is more than an hour in the past"),
) -> None:
    """Send an issue to every active subscriber of a list. Running it again never sends anyone the issue twice."""
    import asyncio

    from mailer.issue import load_issue
    from subscribers.store import normalise_address

    mailer = _mailer()
    issue = load_issue(file)
    if test:
        reply, composed = asyncio.run(mailer.test_send(issue, normalise_address(test)))
        _print_warnings(issue, composed.warnings)
        say(f"test message sent to {test} via {mailer.settings.smtp}: {reply.code} {reply.text}")
        return
    plan = mailer.plan_send(issue, list_name)
    resend = plan.uncertain if resend_uncertain else 0
    total = plan.to_send + resend
    _describe_plan(plan, str(mailer.settings.smtp), resend)
    if dry_run:
        say("dry run: nothing sent")
        return
    if total == 0:
        say("nothing to send")
        return
    when = _schedule(at, start_late) if at else None
    question = f"Send to {total} subscribers" + (f" despite {len(plan.warnings)} warning(s)" if plan.warnings else "")
    question += f" at {when:%Y-%m-%d %H:%M %Z}?" if when else "?"
    if not yes and not typer.confirm(question, default=False):
        raise typer.Exit(1)
    campaign = mailer.start_send(plan, allow_changed=allow_changed, resend_uncertain=bool(resend), at=when)
    if at or queue:
        state = f"scheduled for {when:%Y-%m-%d %H:%M %Z}" if campaign.status == "scheduled" and when else "started"
        say(f"campaign {campaign.id} {state}: `mailer worker` processes send it "
            f"(see `mailer report {campaign.id}`; `mailer campaign pause {campaign.id}` stops it)")
        return
    _run_with_progress(mailer, campaign, plan, total)
    from mailer.report import render_table

    _console().print(render_table(mailer.report(str(campaign.id))))


def _schedule(text: str, start_late: bool) -> "datetime":
    """The time --at names (local time unless it says its offset); refused when long past, unless confirmed."""
    from datetime import datetime, timedelta

    from mailer.errors import MailerError

    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise MailerError(f"--at {text!r} is not a time: write it as 2026-12-05 09:00 (local time) or 2026-12-05T09:00+01:00") from None
    when = when.astimezone() if when.tzinfo is None else when  # naive: this machine's local time
    late = datetime.now(when.tzinfo) - when
    if late > timedelta(hours=1) and not start_late:
        hours = late.total_seconds() / 3600
        if not sys.stdin.isatty() or not typer.confirm(
            f"{when:%Y-%m-%d %H:%M %Z} is {hours:.1f} hours in the past: start sending now?", default=False
        ):
            raise MailerError(f"--at {text} is {hours:.1f} hours in the past; nothing scheduled (pass --start-late to start it now)")
    return when


def _describe_plan(plan: "SendPlan", relay: str, resend: int) -> None:
    say(f"{plan.issue.subject}  ({plan.issue.newsletter} {plan.issue.issue})", style="bold")
    say(
        f"list '{plan.mailing_list.name}': {plan.active} active subscribers; "
        f"to send now: {plan.to_send} ({plan.new_recipients} new, {plan.pending} queued or due for a retry)"
        + (f"; {plan.waiting} waiting for a retry from {plan.next_retry:%Y-%m-%d %H:%M} UTC" if plan.next_retry else "")
        + (f"; already done: {', '.join(f'{n} {s}' for s, n in sorted(plan.done.items()))}" if plan.done else "")
    )
    held = plan.done.get("sending", 0)
    if held:
        say(f"{held} deliveries are being sent by another process (a worker, or a run on another machine); if it has "
            f"died, they come back within {plan.lease_seconds} s, when its lease runs out", style="yellow")
    if resend:
        say(f"also resending {resend} uncertain deliveries: some of these people may get the issue twice", style="yellow")
    if len(plan.composed_by_language) > 1:
        fallback = plan.editions.fallback(plan.composed.newsletter.language)
        say(f"editions: {', '.join(plan.composed_by_language)}; subscribers whose language has none get '{fallback}'")
    for warning in plan.warnings:
        say(warning, style="yellow")
    say(f"relay: {relay}")


def _run_with_progress(mailer: "Mailer", campaign: "Campaign", plan: "SendPlan", total: int) -> None:
    import asyncio

    from mailer.errors import MailerError
    from mailer.models import DeliveryStatus
    from mailer.progress import send_progress

    progress, advance = send_progress(_console(), total)
    with progress:
        outcome = asyncio.run(mailer.run_send(campaign, plan.composed_by_language, on_result=advance, handle_signals=True))
    summary = outcome.summary
    for lost in summary.relays_lost:
        warn(f"{lost}; the other relays carried the send on")
    if summary.halted:
        warn(f"campaign {campaign.id} {summary.halted}; messages in flight were recorded, {outcome.left_queued} "
             f"deliveries wait: `mailer campaign resume {campaign.id}` to go on")
        raise typer.Exit(3)
    if summary.error:
        raise MailerError(f"{summary.error}; {outcome.left_queued} deliveries left queued: run the same send again to continue")
    if summary.stopped:
        warn(f"stopped: messages in flight were recorded, {outcome.left_queued} deliveries left queued; "
             "run the same send again to continue")
        raise typer.Exit(130)
    deferred = summary.counts.get(DeliveryStatus.DEFERRED, 0)
    if deferred and outcome.next_retry:
        say(f"{deferred} deferred; next retry due at {outcome.next_retry:%Y-%m-%d %H:%M} UTC: run the same send again then")
    uncertain = summary.counts.get(DeliveryStatus.UNCERTAIN, 0)
    if uncertain:
        say(f"{uncertain} uncertain: the line was lost while the message was being handed over, so it may have "
            "arrived; they are not resent unless you run the send again with --resend-uncertain", style="yellow")


@app.command()
def report(
    campaign: Optional[str] = typer.Argument(None, help="Campaign id or issue id (default: the latest campaign)"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table"),
) -> None:
    """Delivery report of a campaign.

    Counts by status, bounces, sending time, rate, top bounce reasons."""
    result = _reports().report(campaign)
    if as_json:
        print(result.to_json())
    else:
        from mailer.report import render_table

        _console().print(render_table(result))


@app.command()
def campaigns(
    limit: int = typer.Option(24, help="How many, newest first"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table"),
) -> None:
    """Recent campaigns side by side.

    Delivery figures of each: how each issue fared over time."""
    from dataclasses import asdict

    from mailer.report import render_history, to_json

    lines = _reports().campaign_history(limit)
    if as_json:
        print(to_json([asdict(line) for line in lines]))
    else:
        _console().print(render_history(lines))


# ---- subscribers ----------------------------------------------------------------------------------------

@subscribers_app.command("import")
def subscribers_import(
    csv_file: Path,
    list_name: str = typer.Option(..., "--list", help="List to add them to (created when missing)"),
    language: str = typer.Option("it", help="Language for rows without one"),
) -> None:
    """Import a CSV (email, name, language). A bad row stops the import: nothing is half-imported."""
    result = _mailer().import_subscribers(csv_file, list_name, language)
    c = result.counts
    say(
        f"{csv_file}: {result.rows} rows, {result.merged} duplicates merged; list '{list_name}': "
        f"{c.added} added, {c.updated} already subscribed, {c.suppressed} unsubscribed or bounced (left out)"
    )


@subscribers_app.command("add")
def subscribers_add(
    email: str,
    list_name: str = typer.Option(..., "--list"),
    name: str = typer.Option("", "--name"),
    language: Optional[str] = typer.Option(None, "--language", help="it or en (default: keep theirs; the list's for someone new)"),
) -> None:
    """Add one subscriber by hand.

    An operator's action: it re-subscribes someone who had left."""
    address, added = _mailer().add_subscriber(email, list_name, name=name, language=language)
    say(f"{address}: {'added to' if added else 'already on'} '{list_name}'")


@subscribers_app.command("remove")
def subscribers_remove(email: str, list_name: Optional[str] = typer.Option(None, "--list", help="Only this list (default: all)")) -> None:
    """Unsubscribe an address from a list.

    Recorded as an operator's action; the record stays, so imports do not bring it back."""
    address, ended = _mailer().remove_subscriber(email, list_name)
    say(f"{address}: {ended} subscription(s) ended")


@subscribers_app.command("unsuppress")
def subscribers_unsuppress(email: str) -> None:
    """Let a bounced or complained address get mail again.

    An operator's decision, on record; the subscriptions are as they were."""
    address, previous = _mailer().unsuppress_subscriber(email)
    say(f"{address}: no longer {previous}; mail goes to it again")


@subscribers_app.command("list")
def subscribers_list(
    list_name: Optional[str] = typer.Option(None, "--list"),
    status: Optional[str] = typer.Option(None, "--status", help="active, pending, unsubscribed, bounced, complained"),
) -> None:
    """Print subscribers as CSV rows (of one list, or all)."""
    count = _mailer().list_subscribers(sys.stdout, list_name, status)
    say(f"{count} subscribers", console=_console(stderr=True))


@subscribers_app.command("export")
def subscribers_export(
    list_name: str = typer.Option(..., "--list", help="The list (statuses are per list: who left it, who bounced)"),
    output: Path = typer.Option(..., "--out", help="CSV file to write"),
    status: Optional[str] = typer.Option(None, "--status"),
) -> None:
    """Write subscribers to a CSV file.

    `subscribers import` reads the file back."""
    count = _mailer().export_subscribers(output, list_name, status)
    say(f"{count} subscribers written to {output}")


# ---- web app and operators ------------------------------------------------------------------------------

@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on"),
    port: int = typer.Option(8000, help="Port"),
    forwarded_allow_ips: str = typer.Option(
        "127.0.0.1", help="Reverse proxies whose X-Forwarded-For is trusted (their addresses; never '*')"
    ),
) -> None:
    """Serve the web app.

    Unsubscribe and preferences pages, signup, archive, and /admin/ for operators."""
    import uvicorn

    from mailer.web import create_app

    mailer = _mailer()
    mailer.engine  # open (and migrate) the database before the first request; errors surface here
    say(f"serving {mailer.settings.base_url} on http://{host}:{port} (Ctrl-C to stop)")
    uvicorn.run(create_app(mailer), host=host, port=port, log_level="warning", proxy_headers=True,
                forwarded_allow_ips=forwarded_allow_ips)


@admin_app.command("add-user")
def admin_add_user(
    username: str,
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from standard input"),
) -> None:
    """Create an operator (or set a new password for one). The password is asked for twice unless piped in."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif not sys.stdin.isatty():
        from mailer.errors import MailerError

        raise MailerError("no terminal to ask for the password on: pipe it in with --password-stdin")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    created = _mailer().add_admin_user(username, password)
    say(f"operator '{username}' {'created' if created else 'given a new password'}")


@dkim_app.command("keygen")
def dkim_keygen(
    selector: str = typer.Option(..., "--selector", help="DNS selector the key is published under, e.g. wip2026"),
    out: Optional[Path] = typer.Option(None, "--out", help="Where to write the private key (default var/dkim/SELECTOR.pem)"),
    algorithm: str = typer.Option("rsa", "--algorithm", help="rsa (RSA-2048, read by every receiver) or ed25519"),
    domain: str = typer.Option("", "--domain", help="Signing domain (default: MAILER_DKIM_DOMAIN, else the From domain)"),
) -> None:
    """Make a DKIM key and print the DNS record to publish.

    The private key is written readable by its owner only, and never over an existing file."""
    path = out or Path("var/dkim") / f"{selector}.pem"
    key, record = _checking().create_dkim_key(selector, path, algorithm=algorithm, domain=domain)
    say(f"private key ({key.algorithm}): {path}")
    say("publish this TXT record in the domain's DNS:")
    say(record)
    say("then sign with:")
    say(f"  MAILER_DKIM_KEY_FILE={path.resolve()} MAILER_DKIM_SELECTOR={selector}"
        + (f" MAILER_DKIM_DOMAIN={domain}" if domain else ""))


@bounces_app.command("parse")
def bounces_parse(
    files: list[Path] = typer.Argument(..., help="Messages as files (.eml, or a Maildir's files)"),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per failed recipient (or per message) per line"),
) -> None:
    """Show what bounce messages say.

    For each file: the failed recipients, each with kind (hard or soft), enhanced status, the server's
    words, the reporting server and the delivery our signed return path names; or what else it is
    (a complaint, an auto-reply, a delay notice). Nothing is recorded."""
    import json

    from mailer.inbox import Inbox
    from mailer.settings import load_settings

    inbox = Inbox(load_settings())
    unreadable = 0
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            warn(f"{path}: cannot read: {exc.strerror or exc}")
            unreadable += 1
            continue
        found = inbox.read_bounce(data)
        r = found.reading
        base = {"file": str(path), "kind": r.kind, "delivery": found.delivery_id}
        if r.kind == "bounce":
            for f in r.failures:
                row = {**base, "recipient": f.recipient, "bounce": f.kind, "status": f.status, "diagnostic": f.diagnostic,
                       "reason": f.why, "reporting_mta": f.reporting_mta, "found_by": f.source}
                if as_json:
                    print(json.dumps(row, ensure_ascii=False))
                else:
                    say(f"{path}: {f.kind} bounce {f.recipient} {f.status or '-'}"
                        + (f" (delivery {found.delivery_id})" if found.delivery_id else "")
                        + (f" via {f.reporting_mta}" if f.reporting_mta else "") + (f": {f.diagnostic}" if f.diagnostic else ""))
        elif as_json:
            print(json.dumps({**base, "complainant": r.complainant} if r.kind == "complaint" else base, ensure_ascii=False))
        else:
            what = {"complaint": f"complaint (abuse report) from {r.complainant or 'an unnamed recipient'}",
                    "auto-reply": "auto-reply (not a bounce)", "delayed": "delay notice (not a failure: the server keeps trying)",
                    "other": "not a bounce report"}[r.kind]
            say(f"{path}: {what}" + (f" (delivery {found.delivery_id})" if found.delivery_id else ""))
    if unreadable:
        raise typer.Exit(1)


@inbox_app.command("process")
def inbox_process(
    maildir: Optional[Path] = typer.Option(None, "--maildir", help="A Maildir (new/, cur/, tmp/)"),
    mbox: Optional[Path] = typer.Option(None, "--mbox", help="An mbox file (only read, never changed)"),
    imap: Optional[str] = typer.Option(None, "--imap", help="imaps://USER:PASSWORD@HOST/FOLDER (or imap:// with STARTTLS)"),
    move_to: str = typer.Option("", "--move-to", help="Move each message recorded into this folder"),
    delete: bool = typer.Option(False, "--delete", help="Delete each message once it is on record (never by default)"),
) -> None:
    """Take in what arrived at the bounce and unsubscribe addresses.

    Delivery reports mark their deliveries bounced and go through the bounce policy; abuse reports
    suppress and unsubscribe their sender; a message to the List-Unsubscribe address with a valid signed
    token unsubscribes its owner; auto-replies and delay notices change nothing. Every message is kept on
    record; what cannot be acted on is listed for review. Running it again on the same mail records nothing twice."""
    from mailer.mailboxes import open_source

    source = open_source(maildir=maildir, mbox=mbox, imap=imap, move_to=move_to, delete=delete)
    summary = _mailer().process_mailbox(source)
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(summary.kinds.items())) or "nothing new"
    say(f"{summary.mailbox}: {summary.seen} message(s): {kinds}"
        + (f"; {summary.duplicates} already taken in" if summary.duplicates else ""))
    say(f"{summary.bounces} bounce(s) recorded, {summary.suppressed} address(es) suppressed, "
        f"{summary.unsubscribed} subscription(s) ended by complaint or mailto")
    for key, taken in summary.review:
        say(f"kept for review: {key} (inbound message {taken.inbound_id}): {taken.outcome}")


@inbox_app.command("list")
def inbox_list(
    review: bool = typer.Option(False, "--review", help="Only the messages intake could not act on"),
    limit: int = typer.Option(50, "--limit", min=1),
) -> None:
    """What arrived at the bounce and unsubscribe addresses, newest first, and what was done with each."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title="Inbound messages" + (" waiting for review" if review else ""), title_justify="left")
    for column in ("id", "received", "kind", "from", "subject", "outcome"):
        table.add_column(column, overflow="fold")
    for m in _mailer().inbound_messages(review_only=review, limit=limit):
        table.add_row(str(m.inbound_id), f"{m.received_at:%Y-%m-%d %H:%M}", m.kind + (" (review)" if m.needs_review else ""),
                      Text(m.sender), Text(m.subject[:60]), Text(m.outcome))
    _console().print(table)


@inbox_app.command("show")
def inbox_show(inbound_id: int) -> None:
    """Print an inbound message exactly as it arrived (for review; pipe it to a file to keep it)."""
    data = _mailer().inbound_raw(inbound_id)
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


# ---- local tools ----------------------------------------------------------------------------------------

# ---- workers and campaign control -----------------------------------------------------------------------

@app.command()
def worker(
    once: bool = typer.Option(False, "--once", help="Work on what is due now, then exit"),
    poll: float = typer.Option(2.0, "--poll", help="Seconds between looks for due campaigns"),
) -> None:
    """Send started and scheduled campaigns, beside any number of other workers on this or other machines.
    Ctrl-C or SIGTERM: the messages in flight finish and are recorded, the rest stays queued."""
    import asyncio
    import signal

    from mailer.workers import WorkerRun

    mailer = _mailer()

    def log(run: WorkerRun) -> None:
        s = run.outcome.summary
        counts = ", ".join(f"{n} {status}" for status, n in sorted(s.counts.items())) or "nothing sent"
        extra = f"; {s.halted}" if s.halted else (f"; {s.error}" if s.error else "")
        extra += "".join(f"; {lost} (the other relays carried on)" for lost in s.relays_lost if lost != s.error)
        say(f"campaign {run.campaign_id} ({run.issue}): {counts} in {s.elapsed:.1f} s{extra}")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        if once:
            await mailer.work_once(stop=stop, on_run=log)
        else:
            say(f"worker {os.getpid()} on {mask_url(mailer.settings.database_url)}, relay {mailer.settings.smtp}: waiting for campaigns")
            await mailer.work(stop, poll=poll, on_run=log)

    from mailer.settings import mask_url

    asyncio.run(main())


@campaign_app.command("pause")
def campaign_pause(campaign_id: int, reason: str = typer.Option("", "--reason", help="Said in reports and to workers")) -> None:
    """Stop sending a campaign, on every worker, within seconds; `resume` goes on where it stopped."""
    campaign = _mailer().pause_campaign(campaign_id, reason)
    why = f" ({campaign.status_reason})" if campaign.status_reason else ""
    say(f"campaign {campaign_id} paused{why}; messages in flight finish and are recorded")


@campaign_app.command("resume")
def campaign_resume(campaign_id: int) -> None:
    """Let workers send a paused campaign again."""
    _mailer().resume_campaign(campaign_id)
    say(f"campaign {campaign_id} resumed: workers send the rest (or run the same `mailer send` again)")


@campaign_app.command("cancel")
def campaign_cancel(
    campaign_id: int,
    reason: str = typer.Option("", "--reason", help="Kept with the campaign"),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation"),
) -> None:
    """End a campaign for good: what has not been sent never will be."""
    if not yes and not typer.confirm(f"Cancel campaign {campaign_id} for good?", default=False):
        raise typer.Exit(1)
    cancelled = _mailer().cancel_campaign(campaign_id, reason)
    say(f"campaign {campaign_id} cancelled: {cancelled} deliveries will not be sent")


# ---- database -------------------------------------------------------------------------------------------

@db_app.command("check")
def db_check() -> None:
    """Say whether the database's schema is at this version's newest revision; exit 1 if not. Changes nothing."""
    from mailer.settings import mask_url

    mailer = _mailer()
    state = mailer.database_state()
    where = mask_url(mailer.settings.database_url)
    if state.current:
        say(f"{where}: schema at revision {state.head}, the newest; tables match the models")
        return
    if state.revision != state.head:
        say(f"{where}: schema at revision {state.revision or 'none (empty database)'}, the newest is {state.head}: "
            "run `mailer db upgrade`", style="yellow")
    for difference in state.differences:
        say(f"differs from the models: {difference}", style="yellow")
    raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Upgrade the database's schema to this version's newest revision (in one transaction)."""
    from mailer.settings import mask_url

    mailer = _mailer()
    before, state = mailer.upgrade_database()
    where = mask_url(mailer.settings.database_url)
    if before == state.head:
        say(f"{where}: schema already at revision {state.head}")
    else:
        say(f"{where}: schema upgraded from revision {before or 'none (empty database)'} to {state.head}")
    for difference in state.differences:
        warn(f"differs from the models: {difference}")


@app.command("capture-server")
def capture_server(
    port: int = typer.Option(8025, help="Port on 127.0.0.1"),
    maildir: Path = typer.Option(Path("var/maildir"), help="Maildir that receives every message"),
) -> None:
    """Run a local SMTP server that keeps every message.

    Messages go to a Maildir; this is the default relay in config."""
    import asyncio

    from mailer.capture import CaptureServer

    async def serve_forever() -> None:
        async with CaptureServer(maildir=maildir, port=port, keep_in_memory=False) as server:
            say(f"capturing on {server.url} into {maildir}/new (Ctrl-C to stop)")
            await asyncio.Event().wait()

    try:
        asyncio.run(serve_forever())
    except KeyboardInterrupt:
        pass


@app.command()
def demo(
    subscribers: int = typer.Option(300, help="How many sample subscribers"),
    folder: Path = typer.Option(Path("var/demo"), "--dir", help="Where the demo's database, Maildir and preview go"),
    issue_file: Path = typer.Option(Path("examples/2026-05-work-in-progress.md"), "--issue"),
    serve_web: bool = typer.Option(False, "--serve", help="Then serve the web app on the demo's database"),
    port: int = typer.Option(8000, help="Port for --serve"),
) -> None:
    """Run the whole path on the embedded default.

    SQLite, sample subscribers, capture SMTP server, real dispatcher."""
    from mailer.demo import run_demo

    run_demo(folder, issue_file, subscribers, _console(), serve_port=port if serve_web else None)
