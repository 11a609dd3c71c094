"""The whole path as deployed: `mailer serve` as a process, the `mailer` command for subscribers and sends,
a real SMTP relay (CaptureServer in a thread), and a mail client's RFC 8058 one-click POST over HTTP.

    subscribers add (CLI) -> send (CLI) -> List-Unsubscribe of a received message -> one-click POST
    -> `subscribers list` shows them unsubscribed -> the next issue's send does not reach them
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path

import httpx
import pytest

from mailer.capture import CaptureServer, Received, capture_in_thread
from mailer.settings import PROJECT_ROOT
from tests.conftest import ISSUE_2021, ISSUE_2026

MAILER = [sys.executable, "-c", "from mailer.cli import main; main()"]
LIST = "work-in-progress"
PEOPLE = ["anna@example.org", "bruno@example.org", "carla@example.net", "dario@example.com"]


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(MAILER + args, env={**os.environ, **env}, capture_output=True, text=True, cwd=PROJECT_ROOT,
                          timeout=120, stdin=subprocess.DEVNULL)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def relay() -> Iterator[CaptureServer]:
    """A capture server in its own thread's event loop."""
    with capture_in_thread() as server:
        yield server


@pytest.fixture
def served(tmp_path: Path, relay: CaptureServer) -> Iterator[tuple[str, dict[str, str]]]:
    """`mailer serve` on a free port of 127.0.0.1, ready (GET / answers); yields its base URL and the env."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"MAILER_DATABASE_URL": f"sqlite:///{tmp_path / 'e2e.sqlite'}", "MAILER_BASE_URL": base,
           "MAILER_SMTP_URL": relay.url, "COLUMNS": "120"}
    log = (tmp_path / "serve.log").open("w+", encoding="utf-8")
    server = subprocess.Popen(MAILER + ["serve", "--port", str(port)], env={**os.environ, **env}, cwd=PROJECT_ROOT,
                              stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            if server.poll() is not None:
                log.seek(0)
                raise AssertionError(f"mailer serve exited with {server.returncode}:\n{log.read()}")
            try:
                if httpx.get(base + "/", timeout=1).status_code < 500:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "mailer serve did not answer within 20 s"
            time.sleep(0.1)
        yield base, env
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
        log.close()


def unsubscribe_url(received: Received, base: str) -> str:
    message = message_from_bytes(received.data, policy=policy.default)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    links = re.findall(r"<([^>]+)>", str(message["List-Unsubscribe"]))
    web = [u for u in links if u.startswith(base + "/u/")]
    assert len(web) == 1 and any(u.startswith("mailto:") for u in links), links
    return web[0]


def statuses(env: dict[str, str]) -> dict[str, str]:
    listed = run(["subscribers", "list", "--list", LIST], env)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0] == "email,name,language,status,since"
    return {line.split(",")[0]: line.split(",")[3] for line in lines[1:]}


def test_one_click_unsubscribe_against_mailer_serve(served: tuple[str, dict[str, str]], relay: CaptureServer,
                                                   tmp_path: Path) -> None:
    base, env = served
    people = tmp_path / "people.csv"  # one import, not one process per person: each `mailer` start costs seconds
    people.write_text("email,name\n" + "".join(f"{e},Persona {n}\n" for n, e in enumerate(PEOPLE)), encoding="utf-8")
    imported = run(["subscribers", "import", str(people), "--list", LIST], env)
    assert imported.returncode == 0 and "4 added" in imported.stdout, imported.stdout + imported.stderr
    sent = run(["send", str(ISSUE_2026), "--yes"], env)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    first = list(relay.messages)
    assert sorted(r for m in first for r in m.recipients) == sorted(PEOPLE)
    by_address = {m.recipients[0]: m for m in first}

    # A mail client's one-click: urlencoded body, no cookie, no redirect, 200.
    with httpx.Client(timeout=10, follow_redirects=False) as client:
        answer = client.post(unsubscribe_url(by_address["anna@example.org"], base), data={"List-Unsubscribe": "One-Click"})
        assert answer.status_code == 200, answer.text
        assert answer.request.headers["content-type"] == "application/x-www-form-urlencoded"
        assert "location" not in answer.headers

        # RFC 8058 allows multipart/form-data too.
        answer = client.post(unsubscribe_url(by_address["bruno@example.org"], base), files={"List-Unsubscribe": (None, "One-Click")})
        assert answer.status_code == 200, answer.text
        assert answer.request.headers["content-type"].startswith("multipart/form-data; boundary=")
        assert "location" not in answer.headers

        # A second click (a client retrying) is harmless.
        again = client.post(unsubscribe_url(by_address["anna@example.org"], base), data={"List-Unsubscribe": "One-Click"})
        assert again.status_code == 200

    assert statuses(env) == {"anna@example.org": "unsubscribed", "bruno@example.org": "unsubscribed",
                             "carla@example.net": "active", "dario@example.com": "active"}

    second = run(["send", str(ISSUE_2021), "--yes"], env)
    assert second.returncode == 0, second.stdout + second.stderr
    reached = sorted(r for m in relay.messages[len(first):] for r in m.recipients)
    assert reached == ["carla@example.net", "dario@example.com"]
