"""Reading what comes back to the bounce address: real MTA formats (tests/bounce_samples.py) through
mailer.dsn and through `mailer bounces parse` as operators run it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailer.dsn import classify, read_message
from mailer.settings import PROJECT_ROOT, load_settings
from subscribers.tokens import TokenSigner
from tests.bounce_samples import SAMPLES, RETURN_PATH, postfix_dsn

MAILER = [sys.executable, "-c", "from mailer.cli import main; main()"]


@pytest.mark.parametrize(("name", "data", "kind", "expected"), SAMPLES, ids=[s[0] for s in SAMPLES])
def test_each_format_is_read_as_what_it_is(name: str, data: bytes, kind: str, expected: list[tuple[str, str]]) -> None:
    reading = read_message(data)
    assert reading.kind == kind
    assert [(f.recipient, f.kind) for f in reading.failures] == expected
    if kind == "complaint":
        assert reading.complainant == "angry@hotmail.example"


@pytest.mark.parametrize(("status", "text", "kind"), [
    ("5.1.1", "550 5.1.1 User unknown", "hard"),
    ("5.2.2", "552 5.2.2 Mailbox full", "soft"),
    ("5.2.2", "552 Requested mail action aborted: exceeded storage allocation (over quota)", "soft"),
    ("5.7.1", "550 5.7.1 Message rejected as spam by Content Filtering", "soft"),
    ("5.3.4", "552 5.3.4 Message size exceeds fixed maximum message size", "soft"),
    ("4.7.1", "450 4.7.1 Greylisted, please try again later", "soft"),
    ("5.7.1", "550 5.7.1 Unfortunately, messages from [192.0.2.44] weren't sent. Our system has detected an unusual rate of unsolicited mail", "soft"),
    ("5.4.4", "Host or domain name not found", "hard"),
    ("5.2.1", "550 5.2.1 The email account that you tried to reach is disabled", "hard"),
    ("", "550 No such user here", "hard"),
    ("", "421 Too many connections, slow down", "soft"),
    ("5.0.0", "550 5.0.0 Unknown error", "hard"),
])
def test_hard_or_soft_by_meaning_not_by_class_alone(status: str, text: str, kind: str) -> None:
    assert classify(status, text) == kind


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(MAILER + args, env={**os.environ, **env}, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)


def test_bounces_parse_names_recipients_kinds_and_the_signed_delivery(tmp_path: Path) -> None:
    env = {"MAILER_DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite'}"}
    signer = TokenSigner(load_settings(env).secret_keys)
    files = []
    for name, data, _, _ in SAMPLES:
        files.append(tmp_path / f"{name}.eml")
        files[-1].write_bytes(data)
    signed = tmp_path / "signed.eml"
    signed.write_bytes(postfix_dsn("ghost@example.org", "5.1.1", "550 5.1.1 User unknown", to=RETURN_PATH.format(tag=signer.bounce_tag(1001))))
    forged = tmp_path / "forged.eml"
    forged.write_bytes(postfix_dsn("ghost@example.org", "5.1.1", "550 5.1.1 User unknown", to=RETURN_PATH.format(tag="1001.forgedsignature")))
    result = run(["bounces", "parse", "--json", *map(str, files), str(signed), str(forged)], env)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    by_file = {Path(r["file"]).stem: r for r in rows}
    assert by_file["signed"]["delivery"] == 1001 and by_file["forged"]["delivery"] is None
    assert by_file["signed"] | {"file": ""} == {
        "file": "", "kind": "bounce", "delivery": 1001, "recipient": "ghost@example.org", "bounce": "hard", "status": "5.1.1",
        "diagnostic": "550 5.1.1 User unknown", "reason": "mailbox-unknown", "reporting_mta": "relay.comune.torino.it", "found_by": "dsn",
    }
    for name, _, kind, expected in SAMPLES:
        assert by_file[name]["kind"] == kind
        if expected:
            assert (by_file[name]["recipient"], by_file[name]["bounce"]) == expected[0]
    assert by_file["arf-complaint"]["complainant"] == "angry@hotmail.example"

    table = run(["bounces", "parse", str(signed), str(files[-2]), str(tmp_path / "missing.eml")], env)
    assert table.returncode == 1 and "Traceback" not in table.stderr
    assert "hard bounce ghost@example.org 5.1.1 (delivery 1001) via relay.comune.torino.it: 550 5.1.1 User unknown" in table.stdout
    assert "not a bounce report" in table.stdout and "missing.eml: cannot read" in table.stderr
