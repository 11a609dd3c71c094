"""Send throughput: the dispatcher into a local sink, against Postfix's smtp-source into the same sink.

The sink is Postfix's smtp-sink when installed (`apt-get install postfix`), else an aiosmtpd server in
another process. Both senders use the same number of connections and message size, one after the other in
this run; the ratio is the figure (the machine is shared and noisy). The dispatcher's run is the real path:
SQLite file, claims, per-message build, aiosmtplib, a committed result per message.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session

from mailer.app import Mailer
from mailer.database import open_database
from mailer.issue import load_issue
from mailer.models import Campaign
from mailer.sending import PREVIEW_RECIPIENT, SendPlan
from mailer.settings import PROJECT_ROOT, Settings, load_settings, parse_smtp_url
from subscribers import store

SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
AIOSMTPD_SINK = """
import asyncio, sys
from mailer.capture import CaptureServer
async def main():
    async with CaptureServer(port=int(sys.argv[1]), keep_in_memory=False):
        await asyncio.Event().wait()
asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sink(port: int) -> tuple[subprocess.Popen[bytes], str]:
    if Path(SINK).exists():
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        proc = subprocess.Popen([SINK, *user, f"127.0.0.1:{port}", "256"])
        name = "Postfix smtp-sink"
    else:
        proc = subprocess.Popen([sys.executable, "-c", AIOSMTPD_SINK, str(port)], cwd=PROJECT_ROOT)
        name = "aiosmtpd in another process"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, name
        except OSError:
            time.sleep(0.05)
    raise SystemExit("sink did not start")


def prepare_campaign(settings: Settings, count: int) -> tuple[Engine, Mailer, SendPlan, Campaign]:
    """`count` subscribers in a new database, and the May 2026 issue's campaign to them, started."""
    engine = open_database(settings.database_url)
    with Session(engine) as session:
        wip = store.get_or_create_list(session, "work-in-progress")
        people = [store.NewSubscriber(f"lettore{n}@example.org", f"Lettore {n}") for n in range(count)]
        store.add_subscribers(session, wip, people, source="bench")
        session.commit()
    mailer = Mailer(settings, engine=engine)
    plan = mailer.plan_send(load_issue(PROJECT_ROOT / "examples" / "2026-05-work-in-progress.md"), None)
    return engine, mailer, plan, mailer.start_send(plan)


def dispatcher_run(port: int, count: int, connections: int, folder: Path) -> tuple[float, int, int]:
    settings = load_settings({}).with_overrides(
        database_url=f"sqlite:///{folder / 'bench.sqlite'}",
        smtp=parse_smtp_url(f"smtp://127.0.0.1:{port}"),
        smtp_connections=connections,
        smtp_messages_per_connection=100_000,
    )
    engine, mailer, plan, campaign = prepare_campaign(settings, count)
    started = time.perf_counter()
    outcome = asyncio.run(mailer.run_send(campaign, plan.composed_by_language))
    elapsed = time.perf_counter() - started
    size = len(mailer.builder_for(plan.composed, 1, 1).build(PREVIEW_RECIPIENT).data)
    engine.dispose()
    return elapsed, outcome.summary.counts.get("sent", 0), size


def smtp_source_run(port: int, count: int, connections: int, size: int) -> float | None:
    if not Path(SOURCE).exists():
        return None
    started = time.perf_counter()
    subprocess.run(
        [SOURCE, "-s", str(connections), "-m", str(count), "-l", str(size), "-f", "bench@example.org",
         "-t", "lettore@example.org", f"127.0.0.1:{port}"],
        check=True,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    port = free_port()
    sink, sink_name = start_sink(port)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            elapsed, sent, size = dispatcher_run(port, args.messages, args.connections, Path(tmp))
        reference = smtp_source_run(port, args.messages, args.connections, size)
    finally:
        sink.terminate()
        sink.wait()
    rate = sent / elapsed
    print(f"sink: {sink_name}; {args.messages} messages of {size // 1000} KB over {args.connections} connections")
    print(f"dispatcher (SQLite ledger, commit per result): {sent} sent in {elapsed:.2f} s = {rate:7.0f} msg/s")
    if reference:
        print(f"Postfix smtp-source (no ledger, no build):      {args.messages} in {reference:.2f} s = {args.messages / reference:7.0f} msg/s")
        print(f"ratio dispatcher / smtp-source: {rate / (args.messages / reference):.2f}")
    else:
        print("smtp-source not installed (apt-get install postfix): no reference figure")


if __name__ == "__main__":
    main()
