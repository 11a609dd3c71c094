"""The demo: the whole path on the embedded default, from a fresh folder to a delivery report.

SQLite file, a few hundred sample subscribers imported from CSV (example.org/.net/.com only), the sample
issue composed and previewed, an in-process capture SMTP server writing a Maildir, the real dispatcher.
"""
from __future__ import annotations

import asyncio
import csv
import random
import shutil
from pathlib import Path

from rich.console import Console
from sqlmodel import Session

from mailer import campaign as send_path
from mailer.capture import CaptureServer, demo_rule
from mailer.database import open_database
from mailer.issue import load_issue
from mailer.progress import send_progress
from mailer.report import delivery_report, render_table
from mailer.settings import Settings, load_settings, parse_smtp_url
from subscribers import store
from subscribers.csvio import read_subscribers_csv

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


def run_demo(folder: Path, issue_file: Path, count: int, console: Console) -> None:
    for stale in ("demo.sqlite", "demo.sqlite-wal", "demo.sqlite-shm", "maildir", "preview"):
        target = folder / stale
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    settings = load_settings().with_overrides(database_url=f"sqlite:///{folder / 'demo.sqlite'}")
    engine = open_database(settings.database_url)
    console.rule("[bold]Work in Progress: demo send")

    csv_path = folder / "subscribers.csv"
    sample_subscribers_csv(csv_path, count)
    parsed = read_subscribers_csv(csv_path)
    issue = load_issue(issue_file)
    newsletter = send_path.newsletter_for(settings, issue)
    with Session(engine) as session:
        mailing_list = store.get_or_create_list(session, newsletter.list, title=newsletter.title)
        counts = store.add_subscribers(session, mailing_list, parsed.people, source=f"import:{csv_path.name}")
        session.commit()
    console.print(f"database      {folder / 'demo.sqlite'} (SQLite, WAL)", highlight=False, markup=False)
    console.print(f"subscribers   {counts.added} imported from {csv_path} ({parsed.merged} duplicate rows merged)", highlight=False, markup=False)
    console.print(f"issue         {issue_file}: {len(issue.sections)} sections, {len(issue.items)} items, {len(issue.warnings)} warnings (see `mailer issue check`)", highlight=False, markup=False)
    files = send_path.write_preview(settings, issue, folder / "preview")

    maildir = folder / "maildir"
    campaign_id = asyncio.run(_send(settings, engine, issue, maildir, console))
    console.print(render_table(delivery_report(engine, str(campaign_id))))
    console.print(f"HTML preview  {files['html'].resolve()}", highlight=False, markup=False)
    console.print(f"text part     {files['text'].resolve()}", highlight=False, markup=False)
    console.print(f"whole message {files['eml'].resolve()}", highlight=False, markup=False)
    console.print(f"captured mail {len(list((maildir / 'new').iterdir()))} messages in {(maildir / 'new').resolve()}", highlight=False, markup=False)
    console.print(
        f"again         MAILER_DATABASE_URL=sqlite:///{folder / 'demo.sqlite'} .venv/bin/mailer report --json", highlight=False
    )


async def _send(settings: Settings, engine, issue, maildir: Path, console: Console) -> int:  # type: ignore[no-untyped-def]
    async with CaptureServer(maildir=maildir, rule=demo_rule, keep_in_memory=False) as server:
        settings = settings.with_overrides(smtp=parse_smtp_url(server.url))
        console.print(f"SMTP relay    capture server {server.url} -> {maildir}", highlight=False, markup=False)
        plan = send_path.plan_send(engine, settings, issue, None)
        campaign = send_path.start_campaign(engine, plan)
        progress, advance = send_progress(console, plan.to_send)
        with progress:
            await send_path.dispatch_campaign(engine, settings, campaign, plan.composed, on_result=advance)
        assert campaign.id is not None
        return campaign.id
