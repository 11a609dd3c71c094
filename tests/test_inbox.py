"""The bounce and unsubscribe mailbox, taken in by `mailer inbox process` as operators run it: a real send
through a real relay, then a real Maildir of what came back (DSNs, a complaint, auto-replies, mailto
unsubscribes, a forged tag, garbage), processed twice."""
from __future__ import annotations

import email
import json
import mailbox
import os
import re
import sqlite3
import subprocess
from pathlib import Path

from mailer.capture import CaptureServer
from tests.bounce_samples import arf_complaint, auto_reply, postfix_dsn
from tests.conftest import ISSUE_2026
from tests.imap_server import ImapServer, imap_server  # noqa: F401  (the fixture)
from mailer.settings import PROJECT_ROOT, Settings
from tests.test_cli import MAILER, run

PEOPLE = ["gone", "full", "angry", "leaver", "away", "tagged", "keep", "keep2"]


def _sent(env: dict[str, str], relay: CaptureServer) -> dict[str, tuple[str, email.message.Message]]:
    """Send the May issue to everyone; returns address -> (envelope sender, message as received)."""
    for name in PEOPLE:
        assert run(["subscribers", "add", f"{name}@example.org", "--list", "work-in-progress"], env).returncode == 0
    sent = run(["send", str(ISSUE_2026), "--yes"], env)
    assert sent.returncode == 0, sent.stderr
    return {m.recipients[0]: (m.envelope_from, email.message_from_bytes(m.data)) for m in relay.messages}


def _mailto_token(msg: email.message.Message) -> str:
    return re.search(r"subject=unsubscribe%20([^>]+)>", str(msg["List-Unsubscribe"])).group(1)  # type: ignore[union-attr]


def _returned(msg: email.message.Message) -> str:
    """The headers of our message as a provider returns them inside a report."""
    return "".join(f"{k}: {v}\n".replace("\r\n", "\n") for k, v in msg.items())


def _mailbox(tmp_path: Path, sent: dict[str, tuple[str, email.message.Message]]) -> Path:
    verp = {address: envelope for address, (envelope, _) in sent.items()}
    keep_tag = verp["keep@example.org"].split("+", 1)[1].split("@")[0]
    forged = f"bounces+{keep_tag.split('.')[0]}.AAAAforgedsignatureAAAA@comune.torino.it"
    angry_headers = _returned(sent["angry@example.org"][1])
    complaint = arf_complaint("redacted@example.org").decode()
    complaint = complaint.replace("Original-Rcpt-To: <redacted@example.org>\n", "")  # providers often redact it
    complaint = re.sub(r"(Content-Type: message/rfc822\nContent-Disposition: inline\n\n)(.*?)(\n\n)", lambda m: m.group(1) + angry_headers.rstrip("\n") + m.group(3),
                       complaint, count=1, flags=re.S)
    messages = {
        "dsn-hard": postfix_dsn("gone@example.org", "5.1.1", "550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown",
                                to=verp["gone@example.org"]),
        "dsn-soft": postfix_dsn("full@example.org", "5.2.2", "552 5.2.2 <full@example.org>: Mailbox full", to=verp["full@example.org"]),
        "complaint": complaint.encode(),
        "mailto": (f"From: Leaver <leaver@example.org>\nTo: unsubscribe@comune.torino.it\nSubject: unsubscribe "
                   f"{_mailto_token(sent['leaver@example.org'][1])}\n\n").encode(),
        "mailto-without-token": b"From: keep@example.org\nTo: unsubscribe@comune.torino.it\nSubject: unsubscribe\n\nplease\n",
        "auto-reply": auto_reply("away@example.org", to=verp["away@example.org"]),
        "forged-tag": postfix_dsn("stranger@example.com", "5.1.1", "550 5.1.1 User unknown", to=forged),
        "garbage": b"\x00\xff\xfe not a message\r\n\r\n\xde\xad",
        "tag-only": (f"From: MAILER-DAEMON@mx.example.org\nTo: {verp['tagged@example.org']}\nSubject: Undelivered Mail\n\n"
                     "Sorry, we were unable to deliver your message: 550 no such user here.\n").encode(),
    }
    box = mailbox.Maildir(tmp_path / "bounces", create=True)
    for name, data in messages.items():
        (tmp_path / "bounces" / "new" / f"1796000000.{name}.mx").write_bytes(data)
    box.close()
    return tmp_path / "bounces"


def test_a_mailbox_taken_in_twice_acts_once_and_keeps_everything(env: dict[str, str], tmp_path: Path, relay: CaptureServer) -> None:
    env = {**env, "MAILER_SMTP_URL": relay.url}
    sent = _sent(env, relay)
    folder = _mailbox(tmp_path, sent)

    first = run(["inbox", "process", "--maildir", str(folder)], env)
    assert first.returncode == 0, first.stderr
    assert "9 message(s)" in first.stdout and "3 bounce(s) recorded" in first.stdout, first.stdout
    assert first.stdout.count("kept for review") == 3  # no token, forged tag, garbage
    db = sqlite3.connect(env["MAILER_DATABASE_URL"].removeprefix("sqlite:///"))

    def state() -> dict[str, object]:
        return {
            "subscribers": dict(db.execute("SELECT email, status FROM subscriber")),
            "deliveries": dict(db.execute("SELECT email, status FROM delivery")),
            "memberships": dict(db.execute("SELECT s.email, m.status FROM subscription m JOIN subscriber s ON s.id = m.subscriber_id")),
            "bounces": db.execute("SELECT recipient, kind, source, status, category FROM bounce_event ORDER BY id").fetchall(),
            "events": db.execute("SELECT s.email, e.kind, e.method, e.campaign_id FROM subscriber_event e "
                                 "JOIN subscriber s ON s.id = e.subscriber_id WHERE e.method != 'admin' ORDER BY e.id").fetchall(),
            "inbound": db.execute("SELECT kind, needs_review FROM inbound_message ORDER BY id").fetchall(),
            "scores": dict(db.execute("SELECT email, bounce_score FROM subscriber WHERE bounce_score > 0")),
        }

    after = state()
    assert after["subscribers"] == {
        "gone@example.org": "bounced", "full@example.org": "active", "angry@example.org": "complained", "leaver@example.org": "active",
        "away@example.org": "active", "tagged@example.org": "bounced", "keep@example.org": "active", "keep2@example.org": "active",
    }
    assert after["deliveries"] == {a: ("bounced" if a.split("@")[0] in ("gone", "full", "tagged") else "sent") for a in after["deliveries"]}
    assert after["memberships"]["leaver@example.org"] == "unsubscribed" and after["memberships"]["angry@example.org"] == "unsubscribed"
    assert after["memberships"]["keep@example.org"] == "active"  # a From header alone unsubscribes nobody
    assert after["bounces"] == [
        ("gone@example.org", "hard", "dsn", "5.1.1", "mailbox-unknown"),
        ("full@example.org", "soft", "dsn", "5.2.2", "mailbox-full"),
        ("tagged@example.org", "hard", "dsn", "", "mailbox-unknown"),
    ]
    events = {(e[0], e[1], e[2]) for e in after["events"]}  # type: ignore[union-attr]
    assert {("gone@example.org", "suppressed", "bounce"), ("angry@example.org", "unsubscribed", "complaint"),
            ("angry@example.org", "suppressed", "complaint"), ("leaver@example.org", "unsubscribed", "mailto"),
            ("tagged@example.org", "suppressed", "bounce")} <= events
    assert all(e[3] == 1 for e in after["events"] if e[2] in ("complaint", "mailto", "bounce"))  # type: ignore[union-attr]  # campaign named
    assert after["scores"] == {"full@example.org": 0.5, "gone@example.org": 5.0, "tagged@example.org": 5.0}
    assert sorted(k for k, _ in after["inbound"]) == sorted(  # type: ignore[union-attr]
        ["bounce", "bounce", "complaint", "unsubscribe", "unsubscribe", "auto-reply", "bounce", "other", "bounce"])
    assert sum(r for _, r in after["inbound"]) == 3  # type: ignore[union-attr]

    # Nothing lost: every message is still in the Maildir, now seen; the raw bytes are on record too.
    assert not list((folder / "new").iterdir()) and len(list((folder / "cur").iterdir())) == 9
    assert all(name.name.endswith(":2,S") for name in (folder / "cur").iterdir())
    second = run(["inbox", "process", "--maildir", str(folder)], env)
    assert second.returncode == 0 and "9 already taken in" in second.stdout and "0 bounce(s)" in second.stdout, second.stdout
    assert state() == after

    report = json.loads(run(["report", "--json"], env).stdout)
    assert report["bounced_hard"] == 2 and report["bounced_soft"] == 1 and report["complained"] == 1
    assert report["counts"]["bounced"] == 3 and report["counts"]["sent"] == 5
    assert {(r["source"], r["reason"], r["count"]) for r in report["bounces_by_reason"]} == {
        ("dsn", "mailbox-unknown", 2), ("dsn", "mailbox-full", 1)}
    assert report["bounces_by_domain"] == [{"domain": "example.org", "hard": 2, "soft": 1}]


def test_an_mbox_is_read_and_left_as_it_was(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "bounces.mbox"
    box = mailbox.mbox(path)
    box.add(postfix_dsn("nobody@example.org", "5.1.1", "550 5.1.1 User unknown"))
    box.add(b"From: a@example.org\nSubject: hello\n\nhi\n")
    box.close()
    before = path.read_bytes()
    result = run(["inbox", "process", "--mbox", str(path)], env)
    assert result.returncode == 0 and "2 message(s)" in result.stdout and result.stdout.count("kept for review") == 2, result.stdout
    assert path.read_bytes() == before
    again = run(["inbox", "process", "--mbox", str(path)], env)
    assert "2 already taken in" in again.stdout


def test_a_mailbox_that_is_not_there_is_one_clear_error(env: dict[str, str], tmp_path: Path) -> None:
    missing = run(["inbox", "process", "--maildir", str(tmp_path / "nope")], env)
    assert missing.returncode == 1 and "is not a Maildir" in missing.stderr and "Traceback" not in missing.stderr
    none = run(["inbox", "process"], env)
    assert none.returncode == 1 and "name one mailbox" in none.stderr
    refused = run(["inbox", "process", "--imap", "imaps://u:p@127.0.0.1:1/INBOX"], env)
    assert refused.returncode == 1 and "imaps://127.0.0.1:1/INBOX" in refused.stderr and "u:p" not in refused.stderr


def test_an_imap_folder_over_tls_is_taken_in_and_moved_once_recorded(
    env: dict[str, str], relay: CaptureServer, imap_server: ImapServer,
) -> None:
    env = {**env, "MAILER_SMTP_URL": relay.url}
    sent = _sent(env, relay)
    imap_server.deliver("INBOX", postfix_dsn("gone@example.org", "5.1.1", "550 5.1.1 User unknown", to=sent["gone@example.org"][0]))
    # The same words with no signed tag: anyone could have written it, so it scores but suppresses nobody.
    imap_server.deliver("INBOX", postfix_dsn("keep@example.org", "5.1.1", "550 5.1.1 User unknown", to="bounces@comune.torino.it"))
    imap_server.deliver("INBOX", auto_reply("away@example.org", to=sent["away@example.org"][0]))
    imap_server.deliver("INBOX", b"From: someone@example.org\r\nSubject: ciao\r\n\r\nnot for us\r\n")
    url = imap_server.url("INBOX", cafile=str(imap_server.cafile))

    seen = run(["inbox", "process", "--imap", url], env)  # no move: flagged seen, left where it was
    assert seen.returncode == 0 and "4 message(s)" in seen.stdout and "2 bounce(s) recorded" in seen.stdout, seen.stdout + seen.stderr
    assert "matched by address only" in seen.stdout and imap_server.password not in seen.stdout + seen.stderr
    assert len(imap_server.messages("INBOX")) == 4
    moved = run(["inbox", "process", "--imap", url, "--move-to", "Processed"], env)
    assert moved.returncode == 0 and "4 already taken in" in moved.stdout and "0 bounce(s)" in moved.stdout, moved.stdout + moved.stderr
    assert imap_server.messages("INBOX") == [] and len(imap_server.messages("Processed")) == 4  # moved, none deleted
    db = sqlite3.connect(env["MAILER_DATABASE_URL"].removeprefix("sqlite:///"))
    assert db.execute("SELECT COUNT(*) FROM inbound_message").fetchone() == (4,)
    assert dict(db.execute("SELECT email, status FROM subscriber WHERE email IN ('gone@example.org', 'keep@example.org')")) == {
        "gone@example.org": "bounced", "keep@example.org": "active"}
    assert db.execute("SELECT bounce_score FROM subscriber WHERE email = 'keep@example.org'").fetchone() == (0.5,)
    assert db.execute("SELECT COUNT(*) FROM bounce_event WHERE source = 'dsn'").fetchone() == (2,)
    db.close()

    imap_server.deliver("INBOX", b"From: other@example.org\r\nSubject: later\r\n\r\nhello\r\n")
    refused = run(["inbox", "process", "--imap", url, "--move-to", "Bad/../x"], env)  # a folder the server will not make
    assert refused.returncode == 1 and "cannot copy" in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
    assert len(imap_server.messages("INBOX")) == 1  # not copied, so not deleted either

    untrusted = run(["inbox", "process", "--imap", imap_server.url("INBOX")], env)  # the test CA is not trusted by default
    assert untrusted.returncode == 1 and "certificate verify failed" in untrusted.stderr and "Traceback" not in untrusted.stderr


def test_operators_list_what_waits_for_review_and_read_it_as_it_arrived(env: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "box"
    mailbox.Maildir(folder, create=True).close()
    odd = b"From: someone@example.org\nSubject: Una domanda\n\nBuongiorno, vorrei sapere...\n"
    (folder / "new" / "1.odd").write_bytes(odd)
    (folder / "new" / "2.away").write_bytes(auto_reply("away@example.org"))
    assert run(["inbox", "process", "--maildir", str(folder)], env).returncode == 0
    review = run(["inbox", "list", "--review"], env)
    assert review.returncode == 0 and "Una domanda" in review.stdout and "Risposta automatica" not in review.stdout, review.stdout
    everything = run(["inbox", "list"], env)
    assert "Risposta automatica" in everything.stdout and "auto-reply" in everything.stdout
    shown = subprocess.run(MAILER + ["inbox", "show", "1"], env={**os.environ, **env}, capture_output=True, cwd=PROJECT_ROOT, timeout=60)
    assert shown.returncode == 0 and shown.stdout == odd
    missing = run(["inbox", "show", "99"], env)
    assert missing.returncode == 1 and "no inbound message 99" in missing.stderr


def test_damaged_messages_are_all_kept_and_none_stops_the_run(settings: Settings, tmp_path: Path) -> None:
    """Every corpus message cut short at random points or with bytes flipped: each is taken in (or kept for
    review) and none raises, so one odd message can never stop a mailbox run."""
    import random

    from mailer.app import Mailer

    rng = random.Random(7)
    corpus = sorted((PROJECT_ROOT / "tests" / "bounce_corpus").rglob("*.*"))
    samples = [p.read_bytes() for p in corpus if p.suffix in (".eml", ".txt") and p.parent.name != "bounce_corpus"]
    damaged = []
    for data in rng.sample(samples, 60):
        cut = data[: rng.randrange(1, max(len(data), 2))]
        flipped = bytearray(data)
        for _ in range(20):
            flipped[rng.randrange(len(flipped))] = rng.randrange(256)
        damaged += [cut, bytes(flipped), data.replace(b"\n", b"\r", 50), data[: len(data) // 2] + b"\x00" * 40]
    mailer = Mailer(settings)
    taken = [mailer.take_in(data, mailbox="test") for data in damaged]
    distinct = {d.replace(b"\r\n", b"\n").rstrip(b"\n") for d in damaged}
    assert len({t.inbound_id for t in taken}) == len(distinct)  # every distinct message is on record, once
    assert all(t.outcome for t in taken)
    mailer.close()


def _signed_setup(env: dict[str, str], relay: CaptureServer) -> tuple[Settings, dict[str, tuple[str, email.message.Message]]]:
    from mailer.settings import load_settings

    return load_settings({"MAILER_DATABASE_URL": env["MAILER_DATABASE_URL"]}), _sent(env, relay)


def test_nothing_unsigned_or_successful_suppresses_anyone(env: dict[str, str], relay: CaptureServer) -> None:
    """A complaint naming an address but carrying no signature of ours, and a success notice (Action:
    relayed) to a tagged return path, leave everyone as they were."""
    from mailer.app import Mailer

    settings, sent = _signed_setup({**env, "MAILER_SMTP_URL": relay.url}, relay)
    mailer = Mailer(settings)
    forged = mailer.take_in(arf_complaint("keep@example.org"))
    assert forged.kind == "complaint" and forged.needs_review and "nobody unsubscribed" in forged.outcome
    relayed = postfix_dsn("keep2@example.org", "2.0.0", "250 2.0.0 Ok: queued as 4Xq", to=sent["keep2@example.org"][0])
    relayed = relayed.replace(b"Action: failed", b"Action: relayed")
    assert b"Action: relayed" in relayed
    success = mailer.take_in(relayed)
    assert success.kind == "other" and success.bounces == 0
    db = sqlite3.connect(env["MAILER_DATABASE_URL"].removeprefix("sqlite:///"))
    assert dict(db.execute("SELECT email, status FROM subscriber WHERE email LIKE 'keep%'")) == {
        "keep@example.org": "active", "keep2@example.org": "active"}
    assert db.execute("SELECT COUNT(*) FROM subscription WHERE status != 'active'").fetchone() == (0,)
    db.close()
    mailer.close()
