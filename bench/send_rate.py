"""Send throughput: `mailer send`'s real path (a database, claims, per-message build, aiosmtplib, a recorded
result per message) into Postfix's smtp-sink, against Postfix's own load generator smtp-source into the
same sink, in the same run: same sessions (8), same message size, connections kept open (-d; ours reopen
after the product's default messages_per_connection). Medians of --runs runs; the ratio is the figure.

The Postfix tools come from bench/postfix_tools.py (PATH, /usr/sbin, or Debian's package extracted into a
cache). Without them the script says so and stops: an aiosmtpd sink would measure aiosmtpd.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session

sys.path.insert(0, str(Path(__file__).parent))
from postfix_tools import find_postfix_tools, free_port  # noqa: E402

from mailer.app import Mailer  # noqa: E402
from mailer.database import open_database  # noqa: E402
from mailer.issue import load_issue  # noqa: E402
from mailer.models import Campaign  # noqa: E402
from mailer.sending import PREVIEW_RECIPIENT, SendPlan  # noqa: E402
from mailer.settings import PROJECT_ROOT, Settings, load_settings, parse_smtp_url  # noqa: E402
from subscribers import store  # noqa: E402

ISSUE = PROJECT_ROOT / "examples" / "2026-05-work-in-progress.md"


def prepare_campaign(settings: Settings, count: int, issue: Path = ISSUE) -> tuple[Engine, Mailer, SendPlan, Campaign]:
    """`count` subscribers in a new database, and the issue's campaign to them, started."""
    engine = open_database(settings.database_url)
    with Session(engine) as session:
        wip = store.get_or_create_list(session, "work-in-progress")
        people = [store.NewSubscriber(f"lettore{n}@example.org", f"Lettore {n}") for n in range(count)]
        store.add_subscribers(session, wip, people, source="bench")
        session.commit()
    mailer = Mailer(settings, engine=engine)
    plan = mailer.plan_send(load_issue(issue), None)
    return engine, mailer, plan, mailer.start_send(plan)


def dispatcher_run(url: str, port: int, count: int, sessions: int, **overrides: object) -> tuple[float, int, int, float]:
    """(seconds, messages sent, message size, CPU seconds per message) of one send."""
    settings = load_settings({}).with_overrides(
        database_url=url, smtp=parse_smtp_url(f"smtp://127.0.0.1:{port}"), smtp_connections=sessions, **overrides
    )
    engine, mailer, plan, campaign = prepare_campaign(settings, count)
    size = len(mailer.builder_for(plan.composed, 1, 1).build(PREVIEW_RECIPIENT).data)
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    outcome = asyncio.run(mailer.run_send(campaign, plan.composed_by_language))
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    engine.dispose()
    sent = outcome.summary.counts.get("sent", 0)
    cpu_s = (after.ru_utime + after.ru_stime) - (cpu.ru_utime + cpu.ru_stime)
    return elapsed, sent, size, cpu_s / max(sent, 1)


def rsa_key(folder: Path) -> Path:
    """An RSA-2048 DKIM key for the signed runs (made once per benchmark)."""
    from mailer.dkim import write_new_key

    path = folder / "dkim-bench.pem"
    if not path.exists():
        write_new_key(path, "rsa")
    return path


def fresh_database(kind: str, folder: Path, n: int, postgresql: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{folder / f'bench-{n}.sqlite'}"
    from databases import fresh_postgresql_database

    return fresh_postgresql_database(postgresql, f"bench_send_{os.getpid()}_{n}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgresql", default=os.environ.get("MAILER_TEST_POSTGRESQL_URL", ""),
                        help="also measure with this PostgreSQL server as the store (a role that may create databases)")
    parser.add_argument("--dkim", action="store_true", help="also measure SQLite with every message DKIM-signed (RSA-2048)")
    args = parser.parse_args()
    tools = find_postfix_tools()
    if tools is None:
        raise SystemExit("Postfix's smtp-sink/smtp-source not found and could not be downloaded (apt-get download postfix)")
    port = free_port()
    sink = tools.start_sink(port)
    kinds = ["sqlite"] + (["postgresql"] if args.postgresql else []) + (["sqlite+dkim"] if args.dkim else [])
    ours: dict[str, list[float]] = {k: [] for k in kinds}
    cpu: dict[str, list[float]] = {k: [] for k in kinds}
    reference: list[float] = []
    size = 0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in range(args.runs):
                for kind in kinds:
                    url = fresh_database(kind.split("+")[0], Path(tmp), n if kind == "sqlite" else 100 + n, args.postgresql)
                    signing = {"dkim_key_file": str(rsa_key(Path(tmp))), "dkim_selector": "bench"} if kind.endswith("dkim") else {}
                    elapsed, sent, size, cpu_per = dispatcher_run(url, port, args.messages, args.sessions, **signing)
                    assert sent == args.messages, f"{sent} of {args.messages} sent"
                    ours[kind].append(sent / elapsed)
                    cpu[kind].append(cpu_per)
                reference.append(args.messages / tools.run_source(port, messages=args.messages, sessions=args.sessions, size=size))
    finally:
        sink.terminate()
        sink.wait()
    ref = statistics.median(reference)
    print(f"{args.messages} messages of {size / 1000:.0f} KB, {args.sessions} sessions, into Postfix smtp-sink; medians of {args.runs} runs")
    print(f"Postfix smtp-source -s {args.sessions} -d:         {ref:7.0f} msg/s")
    for kind in kinds:
        rate = statistics.median(ours[kind])
        print(f"mailer send ({kind:11}):          {rate:7.0f} msg/s, {statistics.median(cpu[kind]) * 1000:.2f} ms CPU per message, "
              f"ratio {rate / ref:.2f} (runs: {', '.join(f'{r:.0f}' for r in ours[kind])})")


if __name__ == "__main__":
    main()
