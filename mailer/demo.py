"""`mailer demo`: the whole path on the embedded default, over the application core.

SQLite file, sample subscribers imported from CSV, the sample issue composed, an in-process capture SMTP
server that keeps every message in a Maildir, the real dispatcher, the report; then where to look, and
how to open the archive and a real unsubscribe page from the captured mail.
"""
from __future__ import annotations

import asyncio
import csv
import mailbox
import random
import shutil
from dataclasses import replace
from email import policy
from pathlib import Path

from rich.console import Console

from mailer.app import Mailer
from mailer.capture import CaptureServer, demo_rule
from mailer.demo_mailbox import fill_bounce_mailbox
from mailer.issue import load_issue
from mailer.mailboxes import MaildirSource
from mailer.progress import send_progress
from mailer.report import render_table
from mailer.settings import load_settings, parse_smtp_url

DEMO_LOGO = "/static/logo-wip.png"  # shipped in mailer/web/static, served by the demo's web app

FIRST = ["Giulia", "Marco", "Francesca", "Luca", "Chiara", "Alessandro", "Sara", "Matteo", "Elena", "Davide",
         "Martina", "Paolo", "Anna", "Stefano", "Valentina", "Giorgio", "Federica", "Andrea", "Ilaria", "Simone",
         "Zoé", "Niccolò", "Noemi", "Lorenzo", "Aurora", "Pierre", "Hannah", "Amina", "Kenji", "Olga"]
LAST = ["Rossi", "Bianchi", "Ferrero", "Russo", "Colombo", "Romano", "Gallo", "Conti", "Esposito", "Ricci",
        "Bruno", "Greco", "Marino", "Fontana", "Moretti", "Barbero", "Cavallo", "Gili", "Dupont", "Müller",
        "Tanaka", "Haddad", "Novak", "D'Angelo", "Lo Russo"]
DOMAINS = ["example.org", "example.net", "example.com"]


def sample_subscribers_csv(path: Path, count: int, seed: int = 2026) -> None:
    """A CSV like an office's export: a few duplicate rows, a few addresses the demo relay bounces or greylists."""
    rng = random.Random(seed)
    rows = []
    for n in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        local = f"{first}.{last}".lower().replace("'", "").replace(" ", "")
        local = local.encode("ascii", "ignore").decode() + str(n)
        if n % 97 == 13:
            local = f"bounce.{local}"  # answered 550 by the demo relay
        elif n % 89 == 7:
            local = f"greylist.{local}"  # answered 451
        elif n == 150:
            local = f"full.{local}"  # answered 552
        rows.append([f"{local}@{DOMAINS[n % 3]}", f"{first} {last}", "en" if n % 10 == 0 else "it"])
    rows += [[rows[5][0].upper(), rows[5][1], rows[5][2]], [rows[8][0], "", ""]]  # duplicates to merge
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name", "language"])
        writer.writerows(rows)


def run_demo(folder: Path, issue_file: Path, count: int, console: Console, *, serve_port: int | None = None) -> None:
    for stale in ("demo.sqlite", "demo.sqlite-wal", "demo.sqlite-shm", "maildir", "preview", "bounces"):
        target = folder / stale
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    database_url = f"sqlite:///{folder / 'demo.sqlite'}"
    settings = load_settings()
    newsletters = {nid: replace(nl, logo_url=nl.logo_url or DEMO_LOGO) for nid, nl in settings.newsletters.items()}
    mailer = Mailer(settings.with_overrides(database_url=database_url, newsletters=newsletters))
    show = lambda label, text: console.print(f"{label:13} {text}", highlight=False, markup=False)  # noqa: E731
    console.rule("[bold]Work in Progress: demo send")

    csv_path = folder / "subscribers.csv"
    sample_subscribers_csv(csv_path, count)
    issue = load_issue(issue_file)
    imported = mailer.import_subscribers(csv_path, mailer.newsletter_for(issue).list)
    show("database", f"{folder / 'demo.sqlite'} (SQLite, WAL)")
    show("subscribers", f"{imported.counts.added} imported from {csv_path} ({imported.merged} duplicate rows merged)")
    show("issue", f"{issue_file}: {len(issue.sections)} sections, {len(issue.items)} items, "
         f"{len(issue.warnings)} warnings (see `mailer issue check`)")
    _, files = mailer.preview(issue_file, folder / "preview")

    maildir = folder / "maildir"
    campaign_id = asyncio.run(_send(mailer, issue_file, maildir, console))
    bounces = folder / "bounces"
    written = fill_bounce_mailbox(maildir, bounces)
    intake = mailer.process_mailbox(MaildirSource(bounces))
    show("bounce mail", f"{written} late reports and complaints in {bounces}: {intake.bounces} bounces recorded, "
         f"{intake.suppressed} addresses suppressed, {intake.unsubscribed} subscriptions ended (`mailer inbox process`)")
    console.print(render_table(mailer.report(str(campaign_id))))
    show("HTML preview", files["html"].resolve())
    show("text part", files["text"].resolve())
    show("whole message", files["eml"].resolve())
    show("captured mail", f"{len(list((maildir / 'new').iterdir()))} messages in {(maildir / 'new').resolve()}")
    show("report again", f"MAILER_DATABASE_URL={database_url} .venv/bin/mailer report --json")
    base = mailer.settings.base_url
    console.rule("[bold]The web app on the demo's data")
    show("serve it", f"MAILER_DATABASE_URL={database_url} .venv/bin/mailer serve   (or: .venv/bin/mailer demo --serve)")
    show("archive", f"{base}/archive/{issue.newsletter}/   (the issue's 'view in browser' link: {base}/archive/{issue.newsletter}/{issue.issue})")
    show("unsubscribe", f"{first_unsubscribe_link(maildir)}   (List-Unsubscribe of a captured message)")
    show("subscribe", f"{base}/subscribe   (with --serve, its confirmation mail lands in {(maildir / 'new').resolve()})")
    show("operators", f"{base}/admin/   after: MAILER_DATABASE_URL={database_url} .venv/bin/mailer admin add-user NAME")
    if serve_port is not None:
        show("serving", f"{base} on 127.0.0.1:{serve_port}, mail to the capture server (Ctrl-C to stop)")
        try:
            asyncio.run(_serve(mailer, maildir, serve_port))
        except KeyboardInterrupt:
            pass


async def _serve(mailer: Mailer, maildir: Path, port: int) -> None:
    """The web app on the demo's database; the mail it sends (confirmations, links) goes to the Maildir."""
    import uvicorn

    from mailer.web import create_app

    async with CaptureServer(maildir=maildir, keep_in_memory=False) as server:
        web = Mailer(mailer.settings.with_overrides(smtp=parse_smtp_url(server.url)), engine=mailer.engine)
        await uvicorn.Server(uvicorn.Config(create_app(web), host="127.0.0.1", port=port, log_level="warning")).serve()


def first_unsubscribe_link(maildir: Path) -> str:
    """The https link of the List-Unsubscribe header of one captured message."""
    box = mailbox.Maildir(str(maildir), factory=None, create=False)
    for key in sorted(box.keys()):
        from email import message_from_bytes

        message = message_from_bytes(box.get_bytes(key), policy=policy.default)
        header = str(message.get("List-Unsubscribe", ""))
        if header:
            return header.split(">", 1)[0].lstrip("<")
    return "(no message captured)"


async def _send(mailer: Mailer, issue_file: Path, maildir: Path, console: Console) -> int:
    async with CaptureServer(maildir=maildir, rule=demo_rule, keep_in_memory=False) as server:
        relay = Mailer(mailer.settings.with_overrides(smtp=parse_smtp_url(server.url)), engine=mailer.engine)
        console.print(f"SMTP relay    capture server {server.url} -> {maildir}", highlight=False, markup=False)
        plan = relay.plan_send(load_issue(issue_file), None)
        campaign = relay.start_send(plan)
        progress, advance = send_progress(console, plan.to_send)
        with progress:
            await relay.run_send(campaign, plan.composed_by_language, on_result=advance)
        assert campaign.id is not None
        return campaign.id
