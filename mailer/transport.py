"""SMTP over aiosmtplib: reusable connections, TLS, AUTH, per-connection message limits.

A reply to one message is returned as data (SmtpReply); only a relay we cannot reach or log in to at all
raises TransportError.
"""
from __future__ import annotations

import asyncio
import re
import ssl

import aiosmtplib

from mailer.errors import TransportError
from mailer.replies import DATA, DONE, END, MAIL, RCPT, SmtpReply  # noqa: F401  (re-exported)
from mailer.settings import SmtpTarget
from mailer.smtp_session import CRLF, Session, envelope_address
from mailer.wire import WireReady


DATA_TIMEOUT = 600.0  # RFC 5321 4.5.3.2.6: wait up to 10 minutes for the reply to the end of the message
_LINE_ENDINGS = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"(?m)^\.")


def data_bytes(message: bytes) -> bytes:
    """The message as it travels after DATA: CRLF line endings, leading dots doubled (RFC 5321 4.5.2), and
    the final dot. What aiosmtplib's own data() sends; here, so that the transport knows when the final dot
    has left (mailer.replies.END) and a lost line before it is known not to have delivered anything.

    Our messages are built that way (mailer.wire.WireReady) and go as they are; anything else is rewritten
    as aiosmtplib would."""
    if not isinstance(message, WireReady):
        message = _LEADING_DOT.sub(b"..", _LINE_ENDINGS.sub(b"\r\n", message))
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    return message + b".\r\n"


_TLS_CONTEXTS: dict[bool, ssl.SSLContext] = {}


def tls_context(validate: bool) -> ssl.SSLContext:
    """One client TLS context per process (loading the CA store costs milliseconds; every connection shares it)."""
    if validate not in _TLS_CONTEXTS:
        context = ssl.create_default_context()
        if not validate:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        _TLS_CONTEXTS[validate] = context
    return _TLS_CONTEXTS[validate]


class SmtpConnection:
    """One SMTP session, opened on first use and reopened after `max_messages` or a lost connection."""

    def __init__(
        self, target: SmtpTarget, *, timeout: float = 30, max_messages: int = 500, connect_retries: int = 3,
        data_timeout: float = DATA_TIMEOUT,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.data_timeout = data_timeout
        self.max_messages = max_messages
        self.connect_retries = connect_retries
        self._session: Session | None = None
        self._sent_on_connection = 0
        self._transactions_on_connection = 0  # answered transactions, accepted or not

    async def _connect(self) -> aiosmtplib.SMTP:
        t = self.target
        may_use_tls = t.implicit_tls or t.starttls is not False
        last: Exception | None = None
        for attempt in range(self.connect_retries):
            smtp = aiosmtplib.SMTP(
                hostname=t.host,
                port=t.port,
                use_tls=t.implicit_tls,
                start_tls=None if t.implicit_tls else t.starttls,  # None: upgrade whenever the server offers STARTTLS
                tls_context=tls_context(t.validate_certs) if may_use_tls else None,  # a plain session builds none
                timeout=self.timeout,
            )
            try:
                await smtp.connect()
                if t.username:
                    if smtp.get_transport_info("sslcontext") is None and t.starttls is not False:
                        smtp.close()
                        raise TransportError(
                            f"SMTP relay {t} offers no STARTTLS: the password would travel in clear. Use smtps://, "
                            "or add ?starttls=false if this relay is on a network you trust"
                        )
                    await smtp.login(t.username, t.password or "")
                if smtp.is_ehlo_or_helo_needed:  # a plain session without login has not greeted yet
                    try:
                        await smtp.ehlo()
                    except aiosmtplib.SMTPHeloError:
                        await smtp.helo()
                return smtp
            except aiosmtplib.SMTPAuthenticationError as exc:
                smtp.close()
                raise TransportError(f"SMTP login to {t} refused: {exc.code} {exc.message}") from None
            except (aiosmtplib.SMTPException, OSError) as exc:
                smtp.close()
                last = exc
                await asyncio.sleep(0.2 * 2**attempt)
        raise TransportError(f"cannot connect to SMTP relay {t}: {last}")

    async def send(self, envelope_from: str, recipient: str, data: bytes) -> SmtpReply:
        """One transaction: MAIL, RCPT, DATA. Returns the final reply, or the reply (or lost line) of the
        step that failed, with that step named: a line lost during DATA may have delivered the message.

        A reused connection that the server has meanwhile closed (idle timeout, or 421 at MAIL because of
        a per-connection limit) is reopened and the message tried once more on the fresh one."""
        reused = self._session is not None and self._transactions_on_connection > 0
        reply = await self._transaction(envelope_from, recipient, data)
        if reused and reply.stage == MAIL and (reply.code is None or reply.code == 421):
            await self.close()
            reply = await self._transaction(envelope_from, recipient, data)
        return reply

    async def _transaction(self, envelope_from: str, recipient: str, data: bytes) -> SmtpReply:
        if self._session is None or not self._session.is_open or self._sent_on_connection >= self.max_messages:
            await self.close()
            self._session = Session(await self._connect())
            self._sent_on_connection = self._transactions_on_connection = 0
        session = self._session
        commands = [b"MAIL FROM:" + envelope_address(envelope_from) + CRLF, b"RCPT TO:" + envelope_address(recipient) + CRLF, b"DATA\r\n"]
        replies = await session.exchange(commands, _OPENING, self.timeout)
        refused = next(((stage, r) for stage, r, code in zip(_STAGES, replies, _OPENING) if r[0] != code), None)
        if refused is not None:  # our sender, the recipient or DATA refused (pipelined: the first refusal is the answer)
            stage, (code, text) = refused
            self._transactions_on_connection += 1
            if len(replies) == 3 and replies[2][0] == 354:  # DATA accepted after all: an empty message ends it
                session.write(b".\r\n")
                replies += await session.reader.read(1, self.timeout)
            if code == 421 or not session.is_open:  # 421: the server is closing this session
                self._abort()
            else:
                await self._reset()
            return SmtpReply(code, text, stage)
        if len(replies) < 3:
            lost = SmtpReply(None, f"connection lost: {session.reader.lost or 'closed'}", _STAGES[len(replies)])
            self._abort()  # no QUIT: a stalled server would cost a second timeout
            return lost
        if not session.write(data_bytes(data)):
            lost = SmtpReply(None, f"connection lost: {session.reader.lost or 'closed'}", DATA)
            self._abort()
            return lost
        final = await session.reader.read(1, max(self.timeout, self.data_timeout))
        self._transactions_on_connection += 1
        if not final:  # the whole message went out, and no answer came: it may have been delivered
            lost = SmtpReply(None, f"connection lost after the end of the message: {session.reader.lost}", END)
            self._abort()
            return lost
        code, text = final[0]
        if code == 421:
            self._abort()
        elif code == 250:
            self._sent_on_connection += 1
            return SmtpReply(code, text, DONE)
        return SmtpReply(code, text, END)

    async def _reset(self) -> None:
        """RSET after a refused command so the session can carry the next message."""
        if self._session is None:
            return
        replies = await self._session.exchange([b"RSET\r\n"], (250,), self.timeout)
        if not replies or replies[0][0] != 250:
            self._abort()

    def _abort(self) -> None:
        """Drop the connection without QUIT (it is lost, stalled, or the server said 421)."""
        session, self._session = self._session, None
        if session is not None:
            session.drop()

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.quit(self.timeout)


_STAGES = (MAIL, RCPT, DATA)
_OPENING = (250, 250, 354)  # the replies that let a transaction go on: sender and recipient accepted, send the message
