"""A send with 100,000 and with 1,000,000 deliveries queued: the enqueue of the whole list, the send rate of
the first --send messages, and a full report over the campaign, each on a fresh SQLite file (and on
PostgreSQL with --postgresql). The claim walks the partial index ix_delivery_due in id order, so the rate
should not fall as the queue grows; the figure is the ratio of the two rates, measured in one run.

Subscribers are written straight into the store's tables (importing a million through the CSV path is
measured elsewhere); everything after that is the product's own path. The sink is Postfix's smtp-sink.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from postfix_tools import find_postfix_tools, free_port  # noqa: E402

from sqlalchemy import text  # noqa: E402

from mailer.app import Mailer  # noqa: E402
from mailer.database import open_database  # noqa: E402
from mailer.issue import load_issue  # noqa: E402
from mailer.settings import PROJECT_ROOT, load_settings, parse_smtp_url  # noqa: E402

ISSUE = PROJECT_ROOT / "examples" / "2026-05-work-in-progress.md"


def fill_store(url: str, count: int) -> None:
    """`count` active subscribers of list 'work-in-progress', in chunks of 50,000 rows per statement."""
    engine = open_database(url)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO mailing_list (name, title, language, created_at) VALUES ('work-in-progress', '', 'it', :now)"), {"now": now})
        for start in range(0, count, 50_000):
            rows = [{"email": f"lettore{n}@example.org", "name": f"Lettore {n}", "now": now} for n in range(start, min(count, start + 50_000))]
            conn.execute(text(
                "INSERT INTO subscriber (email, name, language, status, consent_source, consent_text, token_version, "
                "bounce_score, created_at, updated_at) VALUES (:email, :name, 'it', 'active', 'bench', '', 0, 0, :now, :now)"
            ), rows)
        conn.execute(text(
            "INSERT INTO subscription (list_id, subscriber_id, status, created_at, updated_at) "
            "SELECT 1, id, 'active', created_at, created_at FROM subscriber"
        ))
    engine.dispose()


def one_depth(url: str, port: int, depth: int, send: int) -> dict[str, float]:
    fill_store(url, depth)
    settings = load_settings({}).with_overrides(database_url=url, smtp=parse_smtp_url(f"smtp://127.0.0.1:{port}"), smtp_connections=8)
    mailer = Mailer(settings)
    plan = mailer.plan_send(load_issue(ISSUE), None)
    started = time.perf_counter()
    campaign = mailer.start_send(plan)
    enqueue_s = time.perf_counter() - started
    sent = 0
    holder: dict[str, object] = {}

    def count(status: str) -> None:
        nonlocal sent
        sent += 1
        if sent >= send and "stop" in holder:
            holder["stop"].set()  # type: ignore[attr-defined]

    async def run() -> float:
        holder["stop"] = asyncio.Event()
        began = time.perf_counter()
        await mailer.run_send(campaign, plan.composed_by_language, on_result=count, stop=holder["stop"])  # type: ignore[arg-type]
        return time.perf_counter() - began

    elapsed = asyncio.run(run())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # this process: one depth each (see main)
    started = time.perf_counter()
    report = mailer.report(str(campaign.id))
    report_s = time.perf_counter() - started
    assert sum(report.counts.values()) == depth, report.counts
    mailer.close()
    return {"enqueue": enqueue_s, "rate": sent / elapsed, "report": report_s, "sent": sent, "rss": peak_mb}


def in_child(url: str, port: int, depth: int, send: int) -> dict[str, float]:
    result = subprocess.run([sys.executable, __file__, "--send", str(send), "--one", url, str(port), str(depth)],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depths", default="100000,1000000")
    parser.add_argument("--send", type=int, default=5000, help="messages sent at each depth")
    parser.add_argument("--postgresql", default=os.environ.get("MAILER_TEST_POSTGRESQL_URL", ""))
    parser.add_argument("--one", nargs=3, metavar=("URL", "PORT", "DEPTH"), help=argparse.SUPPRESS)  # a child's run
    args = parser.parse_args()
    if args.one:  # one depth in a process of its own, so its peak memory is its own
        url, port, depth = args.one
        print(json.dumps(one_depth(url, int(port), int(depth), args.send)))
        return
    tools = find_postfix_tools()
    if tools is None:
        raise SystemExit("Postfix's smtp-sink not found and could not be downloaded (apt-get download postfix)")
    depths = [int(d) for d in args.depths.split(",")]
    port = free_port()
    sink = tools.start_sink(port)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            stores = [("sqlite", lambda d: f"sqlite:///{tmp}/depth-{d}.sqlite")]
            if args.postgresql:
                from databases import fresh_postgresql_database

                stores.append(("postgresql", lambda d: fresh_postgresql_database(args.postgresql, f"bench_depth_{os.getpid()}_{d}")))
            for name, url_for in stores:
                figures = {d: in_child(url_for(d), port, d, args.send) for d in depths}
                for d, f in figures.items():
                    print(f"{name:10} {d:>9,} queued: enqueue {f['enqueue']:6.2f} s, send {f['rate']:6.0f} msg/s "
                          f"(first {f['sent']:.0f}), full report {f['report']:5.2f} s, peak RSS {f['rss']:.0f} MB")
                first, last = figures[depths[0]]["rate"], figures[depths[-1]]["rate"]
                print(f"{name:10} send rate at {depths[-1]:,} / at {depths[0]:,}: {last / first:.2f}; "
                      f"peak RSS x{figures[depths[-1]]['rss'] / figures[depths[0]]['rss']:.2f}")
    finally:
        sink.terminate()
        sink.wait()


if __name__ == "__main__":
    main()
