"""SMTP connections against a real aiosmtpd server: reuse, reconnects, limits, refusals."""
from __future__ import annotations

import asyncio

import pytest

from mailer.capture import CaptureServer
from mailer.errors import TransportError
from mailer.settings import parse_smtp_url
from mailer.bounces import classify
from mailer.models import DeliveryStatus
from mailer.replies import SmtpReply
from mailer.transport import DATA, DONE, END, MAIL, RCPT, SmtpConnection

MESSAGE = b"Subject: t\r\n\r\n.leading dot\r\nbody\r\n"


def test_one_connection_carries_many_messages_and_reconnects_at_its_limit() -> None:
    async def main() -> tuple[int, list[bytes]]:
        async with CaptureServer() as server:
            peers = set()
            connection = SmtpConnection(parse_smtp_url(server.url), max_messages=3)
            for n in range(7):
                reply = await connection.send("from@example.org", f"r{n}@example.org", MESSAGE)
                assert (reply.code, reply.stage) == (250, DONE)
                assert connection._session is not None
                peers.add(connection._session.transport.get_extra_info("sockname"))
            await connection.close()
            return len(peers), [m.data for m in server.messages]

    connections, data = asyncio.run(main())
    assert connections == 3  # 3 + 3 + 1 messages
    assert all(d.startswith(b"Subject: t") and b"\r\n.leading dot\r\n" in d for d in data)  # dot-stuffing undone


def test_a_connection_the_server_dropped_while_idle_is_reopened() -> None:
    async def main() -> list[str]:
        async with CaptureServer() as server:
            connection = SmtpConnection(parse_smtp_url(server.url))
            assert (await connection.send("f@example.org", "one@example.org", MESSAGE)).code == 250
            assert connection._session is not None
            connection._session.transport.close()  # what an idle timeout on the server side looks like to us
            await asyncio.sleep(0.05)
            reply = await connection.send("f@example.org", "two@example.org", MESSAGE)
            assert (reply.code, reply.stage) == (250, DONE)
            await connection.close()
            return [r for m in server.messages for r in m.recipients]

    assert asyncio.run(main()) == ["one@example.org", "two@example.org"]


def test_421_at_mail_on_a_reused_connection_is_retried_on_a_fresh_one() -> None:
    calls = []

    def per_connection_limit(sender: str) -> str | None:
        calls.append(sender)
        return "421 4.7.0 Too many messages on this connection" if len(calls) == 2 else None

    async def main() -> list[str]:
        async with CaptureServer(sender_rule=per_connection_limit) as server:
            connection = SmtpConnection(parse_smtp_url(server.url))
            for rcpt in ("one@example.org", "two@example.org"):
                reply = await connection.send("f@example.org", rcpt, MESSAGE)
                assert (reply.code, reply.stage) == (250, DONE), reply
            await connection.close()
            return [r for m in server.messages for r in m.recipients]

    assert asyncio.run(main()) == ["one@example.org", "two@example.org"]
    assert len(calls) == 3


def test_refusals_name_their_stage_and_the_session_goes_on() -> None:
    async def main() -> None:
        async with CaptureServer(rule=lambda r: "550 5.1.1 unknown" if r.startswith("x") else None,
                                 sender_rule=lambda s: "553 5.7.1 not yours" if s.startswith("bad") else None) as server:
            connection = SmtpConnection(parse_smtp_url(server.url))
            refused = await connection.send("f@example.org", "x@example.org", MESSAGE)
            assert (refused.code, refused.text, refused.stage) == (550, "5.1.1 unknown", RCPT)
            sender = await connection.send("bad@example.org", "ok@example.org", MESSAGE)
            assert (sender.code, sender.stage) == (553, MAIL)
            ok = await connection.send("f@example.org", "ok@example.org", MESSAGE)  # RSET kept the session usable
            assert ok.code == 250
            await connection.close()

    asyncio.run(main())


def test_an_unreachable_relay_raises_after_retries() -> None:
    connection = SmtpConnection(parse_smtp_url("smtp://127.0.0.1:9"), connect_retries=2)
    with pytest.raises(TransportError, match="cannot connect to SMTP relay smtp://127.0.0.1:9"):
        asyncio.run(connection.send("f@example.org", "r@example.org", MESSAGE))


async def _scripted_server(hang_up_after: str, pipelining: bool = False) -> tuple[asyncio.AbstractServer, int, list[bytes]]:
    """A raw SMTP server that answers every command with success and hangs up without a word at one point:
    'rcpt' right after its 250 to RCPT TO, 'dot' after reading the message's final dot. With `pipelining`
    it advertises PIPELINING and answers MAIL only once RCPT and DATA have come too: a client that waited
    for each reply would get nothing (RFC 2920 lets a server wait so)."""
    received: list[bytes] = []

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 scripted ESMTP\r\n")
        while line := await reader.readline():
            command = line[:4].upper()
            if command == b"EHLO":
                writer.write(b"250-scripted\r\n" + (b"250-PIPELINING\r\n" if pipelining else b"") + b"250 8BITMIME\r\n")
            elif command == b"MAIL" and pipelining:
                group = [command, (await reader.readline())[:4].upper(), (await reader.readline())[:4].upper()]
                assert group == [b"MAIL", b"RCPT", b"DATA"], group
                writer.write(b"250 OK\r\n250 OK\r\n" + (b"" if hang_up_after == "rcpt" else b"354 go ahead\r\n"))
                if hang_up_after == "rcpt" or not await _message(reader, writer, received, hang_up_after):
                    break
            elif command == b"QUIT":
                writer.write(b"221 bye\r\n")
                break
            elif command == b"DATA":
                writer.write(b"354 go ahead\r\n")
                if not await _message(reader, writer, received, hang_up_after):
                    break
            else:
                writer.write(b"250 OK\r\n")
                if command == b"RCPT" and hang_up_after == "rcpt":
                    await writer.drain()
                    break
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(session, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], received


async def _message(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, received: list[bytes], hang_up_after: str) -> bool:
    """Read one message up to its final dot; answer it, or (hanging up after the dot) return False."""
    await writer.drain()
    data = b""
    while not data.endswith(b"\r\n.\r\n"):
        data += await reader.readline()
    received.append(data)
    if hang_up_after == "dot":
        return False
    writer.write(b"250 2.0.0 queued\r\n")
    return True


@pytest.mark.parametrize("pipelining", [False, True], ids=["one-by-one", "pipelined"])
@pytest.mark.parametrize(("hang_up_after", "stage", "kept"), [("rcpt", DATA, 0), ("dot", END, 1), ("never", DONE, 1)])
def test_the_stage_a_line_is_lost_at_says_whether_the_message_can_have_arrived(hang_up_after: str, stage: str, kept: int, pipelining: bool) -> None:
    async def main() -> tuple[SmtpReply, list[bytes]]:
        server, port, received = await _scripted_server(hang_up_after, pipelining)
        async with server:
            connection = SmtpConnection(parse_smtp_url(f"smtp://127.0.0.1:{port}"), timeout=5)
            reply = await connection.send("from@example.org", "to@example.org", MESSAGE)
            await connection.close()
        return reply, received

    reply, received = asyncio.run(main())
    assert reply.stage == stage and (reply.code is None) == (stage != DONE), reply
    assert len(received) == kept
    if stage != DONE:
        assert classify(reply).status == (DeliveryStatus.UNCERTAIN if kept else DeliveryStatus.DEFERRED)
    if kept:  # what went over the line: CRLF, the leading dot doubled, the final dot (mailer.transport.data_bytes)
        assert received[0] == b"Subject: t\r\n\r\n..leading dot\r\nbody\r\n.\r\n"


class _Recorder:
    """An aiosmtpd handler that notes whether each message came over TLS, and accepts one login."""

    def __init__(self) -> None:
        self.over_tls: list[bool] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.over_tls.append(session.ssl is not None)
        return "250 2.0.0 Ok"


def _starttls_server(tmp_path, *, offer_tls: bool):  # type: ignore[no-untyped-def]
    """A real aiosmtpd on loopback offering STARTTLS with a self-signed certificate (or not), with AUTH."""
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    from tests.imap_server import _free_port, _write_certificate

    context = None
    if offer_tls:
        _write_certificate(tmp_path / "cert.pem", tmp_path / "key.pem")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    handler = _Recorder()
    accept = lambda server, session, envelope, mechanism, auth_data: AuthResult(success=True)  # noqa: E731
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port(), tls_context=context,
                            authenticator=accept, auth_require_tls=False, auth_required=False)
    controller.start()
    return controller, handler


@pytest.mark.parametrize(("query", "expected_tls"), [("?verify=false", True), ("?starttls=false", False)])
def test_smtp_upgrades_with_starttls_whenever_the_server_offers_it(tmp_path, query: str, expected_tls: bool) -> None:  # type: ignore[no-untyped-def]
    controller, handler = _starttls_server(tmp_path, offer_tls=True)
    try:
        async def main() -> None:
            connection = SmtpConnection(parse_smtp_url(f"smtp://user:secret@127.0.0.1:{controller.port}{query}"))
            reply = await connection.send("from@example.org", "r@example.org", MESSAGE)
            assert reply.code == 250, reply
            await connection.close()
        asyncio.run(main())
    finally:
        controller.stop()
    assert handler.over_tls == [expected_tls]


def test_a_password_is_never_sent_in_clear_to_a_relay_without_starttls(tmp_path) -> None:  # type: ignore[no-untyped-def]
    controller, handler = _starttls_server(tmp_path, offer_tls=False)
    try:
        async def main() -> str:
            connection = SmtpConnection(parse_smtp_url(f"smtp://user:secret@127.0.0.1:{controller.port}"), connect_retries=1)
            with pytest.raises(TransportError) as refused:
                await connection.send("from@example.org", "r@example.org", MESSAGE)
            allowed = SmtpConnection(parse_smtp_url(f"smtp://user:secret@127.0.0.1:{controller.port}?starttls=false"))
            assert (await allowed.send("from@example.org", "r@example.org", MESSAGE)).code == 250  # the operator's choice
            await allowed.close()
            return str(refused.value)
        message = asyncio.run(main())
    finally:
        controller.stop()
    assert "password would travel in clear" in message and "secret" not in message
    assert handler.over_tls == [False]


def test_a_plain_session_builds_no_tls_context() -> None:
    import ssl

    from mailer import transport

    built: list[int] = []
    real = ssl.create_default_context
    transport._TLS_CONTEXTS.clear()

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        built.append(1)
        return real(*args, **kwargs)

    ssl.create_default_context = counting  # counts calls; the real function still does the work
    try:
        async def main() -> None:
            async with CaptureServer() as server:
                connection = SmtpConnection(parse_smtp_url(server.url + "?starttls=false"), max_messages=1)
                for n in range(3):
                    assert (await connection.send("f@example.org", f"r{n}@example.org", MESSAGE)).code == 250
                await connection.close()
        asyncio.run(main())
    finally:
        ssl.create_default_context = real
    assert built == []


class _PipeliningRelay:
    """An aiosmtpd handler that advertises PIPELINING and refuses some senders and recipients."""

    def __init__(self) -> None:
        self.sessions: set[int] = set()
        self.kept: list[str] = []

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # type: ignore[no-untyped-def]
        session.host_name = hostname
        self.sessions.add(id(session))
        return responses[:-1] + ["250-PIPELINING"] + responses[-1:]

    async def handle_MAIL(self, server, session, envelope, address, options):  # type: ignore[no-untyped-def]
        if address.startswith("blocked"):
            return "550 5.7.1 Sender blocked"
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, options):  # type: ignore[no-untyped-def]
        if address.startswith("unknown"):
            return "550 5.1.1 User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.kept += envelope.rcpt_tos
        return "250 2.0.0 Ok: queued"


def test_pipelined_refusals_are_told_by_the_first_refused_step_and_the_session_carries_on() -> None:
    """MAIL, RCPT and DATA go in one write; a refused sender or recipient makes the later commands fail
    too, and the answer is the first refusal, after which RSET readies the same session for the next one."""
    from aiosmtpd.controller import Controller

    from tests.imap_server import _free_port

    handler = _PipeliningRelay()
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        async def main() -> list[SmtpReply]:
            connection = SmtpConnection(parse_smtp_url(f"smtp://127.0.0.1:{controller.port}"))
            assert connection._session is None
            replies = [
                await connection.send("blocked@example.org", "a@example.org", MESSAGE),
                await connection.send("f@example.org", "unknown@example.org", MESSAGE),
                await connection.send("f@example.org", "b@example.org", MESSAGE),
            ]
            assert connection._session is not None and connection._session.pipelining
            await connection.close()
            return replies

        replies = asyncio.run(main())
    finally:
        controller.stop()
    assert [(r.code, r.stage) for r in replies] == [(550, MAIL), (550, RCPT), (250, DONE)]
    assert "Sender blocked" in replies[0].text and "User unknown" in replies[1].text
    assert handler.kept == ["b@example.org"] and len(handler.sessions) == 1
