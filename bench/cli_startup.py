"""CLI start-up: wall-clock time of whole `mailer` processes, as a user meets them.

Each command runs as a subprocess, --runs times (median printed, min and max beside it), on a small SQLite
database made with the CLI itself (one subscriber, one campaign sent to an in-process capture relay), then
`python -X importtime` shows the imports that cost most on `mailer --help`. The machine is shared: compare
figures within one run.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mailer.capture import capture_in_thread
from mailer.settings import PROJECT_ROOT

ISSUE = "examples/2026-05-work-in-progress.md"
COMMANDS = [
    ["--help"],
    ["issue", "--help"],
    ["report"],
    ["report", "--json"],
    ["campaigns"],
    ["subscribers", "list"],
    ["issue", "check", ISSUE],
]


def mailer_command() -> list[str]:
    """The installed `mailer` script next to this interpreter (what users run), else the module."""
    script = Path(sys.executable).parent / "mailer"
    return [str(script)] if script.exists() else [sys.executable, "-c", "from mailer.cli import main; main()"]


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(mailer_command() + args, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)


def prepare(env: dict[str, str]) -> None:
    for args in (["subscribers", "add", "bench@example.org", "--list", "work-in-progress"], ["send", ISSUE, "--yes"]):
        result = run(args, env)
        if result.returncode != 0:
            raise SystemExit(f"mailer {' '.join(args)} failed: {result.stderr.strip()}")


def time_command(args: list[str], env: dict[str, str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = run(args, env)
        times.append(time.perf_counter() - started)
        if result.returncode != 0:
            raise SystemExit(f"mailer {' '.join(args)} failed: {result.stderr.strip()}")
    return times


IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def top_imports(env: dict[str, str], count: int) -> list[tuple[int, int, int, str]]:
    """(cumulative us, self us, depth, module) of the costliest imports of `mailer --help`."""
    command = mailer_command()
    command = [sys.executable, "-X", "importtime", *(command[1:] if command[0] == sys.executable else command), "--help"]
    result = subprocess.run(command, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    rows = []
    for line in result.stderr.splitlines():
        match = IMPORT_LINE.match(line)
        if match:
            own, cumulative, indent, name = match.groups()
            rows.append((int(cumulative), int(own), (len(indent) - 1) // 2, name))
    return sorted(rows, reverse=True)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7, help="runs of each command (the median is reported)")
    parser.add_argument("--top", type=int, default=8, help="how many imports to list")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, capture_in_thread() as relay:
        env = {
            **os.environ,
            "MAILER_DATABASE_URL": f"sqlite:///{Path(tmp) / 'startup.sqlite'}",
            "MAILER_SMTP_URL": relay.url,
            "COLUMNS": "120",
        }
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # as users run it: bytecode cached after the first run
        prepare(env)
        print(f"`mailer` start-up: wall clock of a whole process, {args.runs} runs each ({os.cpu_count()} CPUs)")
        print(f"{'command':56} {'median':>8} {'min':>8} {'max':>8}")
        for command in COMMANDS:
            times = time_command(command, env, args.runs)
            print(f"{'mailer ' + ' '.join(command):56} {statistics.median(times) * 1000:6.0f} ms"
                  f" {min(times) * 1000:5.0f} ms {max(times) * 1000:5.0f} ms")
        print()
        print(f"top {args.top} imports of `mailer --help` by cumulative time (python -X importtime)")
        print(f"{'cumulative':>10} {'self':>8}  module")
        for cumulative, own, depth, name in top_imports(env, args.top):
            print(f"{cumulative / 1000:7.1f} ms {own / 1000:5.1f} ms  {'  ' * depth}{name}")


if __name__ == "__main__":
    main()
