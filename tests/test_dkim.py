"""DKIM: keys made by `mailer dkim keygen`, every signature verified by dkimpy (not our code) against a
DNS stub that answers with the record keygen printed; tampering with what the signature covers breaks it."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import dkim
import pytest

from mailer.app import Mailer
from mailer.capture import CaptureServer
from mailer.message import Recipient
from mailer.settings import PROJECT_ROOT, load_settings
from tests.conftest import ISSUE_2021, ISSUE_2026

MAILER = [sys.executable, "-c", "from mailer.cli import main; main()"]
DOMAIN = "comune.torino.it"
REQUIRED = {"from", "to", "subject", "date", "message-id", "mime-version", "content-type", "list-id",
            "list-unsubscribe", "list-unsubscribe-post"}


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(MAILER + args, env={**os.environ, **env}, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)


def keygen(tmp_path: Path, selector: str, algorithm: str) -> tuple[Path, bytes]:
    """A key made with the CLI, and the TXT data its printed record holds."""
    path = tmp_path / f"{selector}.pem"
    result = run(["dkim", "keygen", "--selector", selector, "--algorithm", algorithm, "--out", str(path)], {})
    assert result.returncode == 0, result.stderr
    record = next(line for line in result.stdout.splitlines() if "._domainkey." in line)
    assert record.startswith(f"{selector}._domainkey.{DOMAIN}. IN TXT (")
    assert all(len(s) <= 255 for s in re.findall(r'"([^"]*)"', record))  # DNS character-strings
    assert path.stat().st_mode & 0o777 == 0o600
    return path, "".join(re.findall(r'"([^"]*)"', record)).encode()


def dns_stub(selector: str, txt: bytes):  # type: ignore[no-untyped-def]
    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return txt if name == f"{selector}._domainkey.{DOMAIN}.".encode() else None
    return lookup


@pytest.fixture(params=["rsa", "ed25519"])
def signing(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    selector = f"wip-{request.param}"
    path, txt = keygen(tmp_path, selector, request.param)
    env = {"MAILER_DATABASE_URL": f"sqlite:///{tmp_path / 'd.sqlite'}", "MAILER_BASE_URL": "https://newsletter.comune.torino.it",
           "MAILER_DKIM_KEY_FILE": str(path), "MAILER_DKIM_SELECTOR": selector}
    return env, dns_stub(selector, txt), request.param


def built(env: dict[str, str], issue: Path, recipient: Recipient) -> bytes:
    mailer = Mailer(load_settings(env))
    return mailer.builder_for(mailer.check_issue(issue).composed, 7, 3).build(recipient).data


@pytest.mark.parametrize("issue", [ISSUE_2026, ISSUE_2021])
def test_every_signature_verifies_and_covers_the_list_headers(signing, issue: Path) -> None:  # type: ignore[no-untyped-def]
    env, dns, algorithm = signing
    for n, recipient in enumerate([Recipient("lucia@example.org", "Lucia Ferrèro", 42, 0, 1001),
                                   Recipient("a.very.long.address.of.someone@sub.example.org", "Ünïcode " * 12, 43, 2, 1002)]):
        data = built(env, issue, recipient)
        assert data.startswith(b"DKIM-Signature: v=1; a=" + (b"rsa" if algorithm == "rsa" else b"ed25519") + b"-sha256;")
        assert dkim.verify(data, dnsfunc=dns), (algorithm, n)
        header = data.split(b"\r\n\r\n", 1)[0].split(b"\r\nDate:", 1)[0]
        assert all(len(line) <= 78 for line in header.split(b"\r\n"))
        tags = dict(t.strip().split("=", 1) for t in re.sub(r"\s+", "", header.decode().split(":", 1)[1]).split(";") if t)
        names = tags["h"].lower().split(":")
        assert REQUIRED <= set(names) and tags["d"] == DOMAIN and tags["c"] == "relaxed/simple"
        for over in ("list-id", "list-unsubscribe", "list-unsubscribe-post"):
            assert names.count(over) == 2  # once more than it occurs: no relay can add another


@pytest.mark.parametrize("tamper", [
    pytest.param(lambda d: d.replace(b"List-Unsubscribe: <https://", b"List-Unsubscribe: <https://evil.", 1), id="list-unsubscribe changed"),
    pytest.param(lambda d: d.replace(b"MIME-Version: 1.0\r\n", b"MIME-Version: 1.0\r\nList-Unsubscribe: <https://evil.example/u>\r\n", 1), id="second list-unsubscribe added"),
    pytest.param(lambda d: d.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", b"", 1), id="list-unsubscribe-post removed"),
    pytest.param(lambda d: d.replace(b"Subject: ", b"Subject: [offerta] ", 1), id="subject changed"),
    pytest.param(lambda d: d.replace(b"Torino", b"Roma", 1), id="body changed"),
])
def test_tampering_breaks_the_signature(signing, tamper) -> None:  # type: ignore[no-untyped-def]
    env, dns, _ = signing
    data = built(env, ISSUE_2026, Recipient("lucia@example.org", "Lucia", 42, 0, 1001))
    assert dkim.verify(data, dnsfunc=dns)
    changed = tamper(data)
    assert changed != data and not dkim.verify(changed, dnsfunc=dns)


def test_a_campaign_sent_through_the_relay_arrives_signed(signing, relay: CaptureServer) -> None:  # type: ignore[no-untyped-def]
    env, dns, _ = signing
    env = {**env, "MAILER_SMTP_URL": relay.url}
    for address in ("uno@example.org", "due@example.net", "tre@example.com"):
        assert run(["subscribers", "add", address, "--list", "work-in-progress"], env).returncode == 0
    sent = run(["send", str(ISSUE_2026), "--yes"], env)
    assert sent.returncode == 0, sent.stderr
    assert len(relay.messages) == 3 and all(dkim.verify(m.data, dnsfunc=dns) for m in relay.messages)
    check = run(["issue", "check", str(ISSUE_2026)], env)
    assert re.search(rf"^DKIM: signed as d={DOMAIN} s=wip-\w+ \((rsa|ed25519)-sha256\)$", check.stdout, re.M), check.stdout


def test_a_signed_message_still_scores_at_most_half_a_point(tmp_path: Path) -> None:
    from mailer.spam import spam_score, spamassassin_installed

    if not spamassassin_installed():
        if os.environ.get("MAILER_REQUIRE_SPAMASSASSIN"):
            pytest.fail("spamassassin is not installed")
        pytest.skip("spamassassin is not installed")
    path, _ = keygen(tmp_path, "wip", "rsa")
    env = {"MAILER_DATABASE_URL": f"sqlite:///{tmp_path / 'd.sqlite'}", "MAILER_BASE_URL": "https://newsletter.comune.torino.it",
           "MAILER_DKIM_KEY_FILE": str(path), "MAILER_DKIM_SELECTOR": "wip"}
    verdict = spam_score(built(env, ISSUE_2026, Recipient("lucia@example.org", "Lucia", 42, 0, 1001)))
    assert verdict.score <= 0.5, verdict


def test_unsigned_when_no_key_is_configured(tmp_path: Path) -> None:
    env = {"MAILER_DATABASE_URL": f"sqlite:///{tmp_path / 'd.sqlite'}"}
    assert not built(env, ISSUE_2026, Recipient("lucia@example.org")).startswith(b"DKIM-Signature")
    assert "DKIM: not configured" in run(["issue", "check", str(ISSUE_2026)], env).stdout


def test_bad_keys_and_selectors_are_one_clear_line(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    def pem(key) -> bytes:  # type: ignore[no-untyped-def]
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    (tmp_path / "short.pem").write_bytes(pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)))
    (tmp_path / "ec.pem").write_bytes(pem(ec.generate_private_key(ec.SECP256R1())))
    (tmp_path / "junk.pem").write_text("not a key\n")
    base = {"MAILER_DATABASE_URL": f"sqlite:///{tmp_path / 'd.sqlite'}", "MAILER_DKIM_SELECTOR": "wip"}
    cases = {
        "short.pem": "is RSA-1024: receivers want 2048 bits or more",
        "ec.pem": "use RSA-2048 or Ed25519",
        "junk.pem": "is not an unencrypted PEM private key",
        "missing.pem": "cannot read the DKIM key",
    }
    for name, expected in cases.items():
        result = run(["issue", "check", str(ISSUE_2026)], {**base, "MAILER_DKIM_KEY_FILE": str(tmp_path / name)})
        assert result.returncode == 1 and expected in result.stderr and "Traceback" not in result.stderr, (name, result.stderr)
        errors = [line for line in result.stderr.splitlines() if ": warning: " not in line]  # the issue's own warnings
        assert errors == [errors[0]] and errors[0].startswith("error: "), result.stderr
    no_selector = run(["issue", "check", str(ISSUE_2026)], {"MAILER_DKIM_KEY_FILE": str(tmp_path / "short.pem")})
    assert no_selector.returncode == 1 and "MAILER_DKIM_SELECTOR is not" in no_selector.stderr
    again = run(["dkim", "keygen", "--selector", "x", "--out", str(tmp_path / "junk.pem")], {})
    assert again.returncode == 1 and "never overwritten" in again.stderr and (tmp_path / "junk.pem").read_text() == "not a key\n"
    bad = run(["dkim", "keygen", "--selector", "bad selector", "--out", str(tmp_path / "new.pem")], {})
    assert bad.returncode == 1 and "DNS label" in bad.stderr and not (tmp_path / "new.pem").exists()


def test_a_signed_campaign_built_on_threads_reaches_everyone_once_and_every_signature_verifies(signing) -> None:  # type: ignore[no-untyped-def]
    """With DKIM on, the dispatcher builds messages on threads beside its event loop (mailer.dispatch)."""
    import asyncio

    from mailer.issue import load_issue
    from mailer.settings import parse_smtp_url
    from tests.conftest import add_people

    env, dns, _ = signing
    people = [f"p{n}@example.org" for n in range(40)]

    async def main() -> list[tuple[list[str], bytes]]:
        async with CaptureServer() as server:
            mailer = Mailer(load_settings(env).with_overrides(smtp=parse_smtp_url(server.url), smtp_connections=3))
            add_people(mailer.engine, people)
            plan = mailer.plan_send(load_issue(ISSUE_2026), None)
            outcome = await mailer.run_send(mailer.start_send(plan), plan.composed_by_language)
            mailer.close()
            assert outcome.summary.counts["sent"] == len(people)
            return [(m.recipients, m.data) for m in server.messages]

    received = asyncio.run(main())
    assert sorted(r for recipients, _ in received for r in recipients) == sorted(people)
    for recipients, data in received:
        assert dkim.verify(data, dnsfunc=dns), recipients
        assert re.search(rb"^To: .*<" + re.escape(recipients[0].encode()) + rb">\r$", data.split(b"\r\n\r\n", 1)[0], re.M)  # its own message
