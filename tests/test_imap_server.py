"""The IMAP test server (tests/imap_server.py) is a real Dovecot over verified TLS, and it leaves nothing behind."""
from __future__ import annotations

import imaplib
import re
import ssl
import time
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from tests.imap_server import ImapServer, _alive, _children, imap_server, require_dovecot  # noqa: F401 (fixture)

FIRST = b"From: MAILER-DAEMON@example.org\r\nTo: bounces@example.org\r\nSubject: first\r\n\r\nOne.\r\n"
SECOND = b"From: MAILER-DAEMON@example.org\r\nTo: bounces@example.org\r\nSubject: second\r\n\r\nTwo.\r\n"


def uids(client: imaplib.IMAP4, folder: str) -> list[bytes]:
    typ, _ = client.select(f'"{folder}"')
    assert typ == "OK"
    typ, data = client.uid("SEARCH", None, "ALL")
    assert typ == "OK"
    return data[0].split()


def test_append_list_and_move_over_verified_tls() -> None:
    require_dovecot()
    began = time.monotonic()
    with ImapServer() as server:
        assert time.monotonic() - began < 2, f"Dovecot took {time.monotonic() - began:.2f} s to start"
        master = server.process
        assert master is not None and server.running

        server.deliver("INBOX", FIRST)
        server.deliver("INBOX", SECOND)

        context = ssl.create_default_context(cafile=server.cafile)
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        client = imaplib.IMAP4_SSL(server.host, server.port, ssl_context=context, timeout=10)
        try:
            client.login(server.user, server.password)
            typ, data = client.capability()
            assert typ == "OK" and b"MOVE" in data[0].split()
            inbox = uids(client, "INBOX")
            assert len(inbox) == 2
            typ, data = client.uid("FETCH", b",".join(inbox).decode(), "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            assert typ == "OK"
            assert [item[1].strip() for item in data if isinstance(item, tuple)] == [b"Subject: first",
                                                                                    b"Subject: second"]

            typ, _ = client.create('"Processed"')
            assert typ == "OK"
            client.select('"INBOX"')
            typ, data = client.uid("MOVE", inbox[0].decode(), '"Processed"')
            assert typ == "OK", data
            assert len(uids(client, "INBOX")) == 1
            assert len(uids(client, "Processed")) == 1
        finally:
            client.logout()

        # The fixture's own reading agrees, and has not marked anything \Seen on the way.
        assert server.messages("INBOX") == [SECOND]
        assert server.messages("Processed") == [FIRST]
        assert set(server.folders()) == {"INBOX", "Processed"}

        # The TLS is verified for real: without the fixture's certificate the handshake fails.
        with pytest.raises(ssl.SSLCertVerificationError):
            imaplib.IMAP4_SSL(server.host, server.port, ssl_context=ssl.create_default_context(), timeout=10)

        processes = {master.pid} | _children(master.pid)
        root = server.root
        assert len(processes) > 1  # the master and its auth, config, log... services

    assert master.poll() is not None, "the Dovecot master is still running after stop()"
    assert not [pid for pid in processes if _alive(pid)], "Dovecot processes outlived the server"
    assert not Path(root).exists()
    assert server.process is None and not server.running


def test_fixture_url_and_wrong_password(imap_server: ImapServer) -> None:
    url = imap_server.url("Bounces/2026", processed="Processed", delete="no")
    parts = urlsplit(url)
    assert parts.scheme == "imaps" and parts.hostname == "127.0.0.1" and parts.port == imap_server.port
    assert unquote(parts.username) == imap_server.user and unquote(parts.password) == imap_server.password
    assert re.search(r"[@/?#+]", imap_server.password), "the password should need URL-quoting"
    assert unquote(parts.path) == "/Bounces/2026"
    assert parse_qs(parts.query) == {"processed": ["Processed"], "delete": ["no"]}
    assert imap_server.url() == url.split("/Bounces")[0] + "/INBOX"

    assert imap_server.messages() == []
    imap_server.deliver("Bounces/2026", FIRST)  # creates the folder (and its parent)
    assert imap_server.messages("Bounces/2026") == [FIRST]

    client = imaplib.IMAP4_SSL(imap_server.host, imap_server.port, ssl_context=imap_server.ssl_context(), timeout=10)
    try:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            client.login(imap_server.user, imap_server.password + "x")
    finally:
        client.shutdown()
