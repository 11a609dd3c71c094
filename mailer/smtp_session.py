"""The transactions of an SMTP session that aiosmtplib opened (greeting, EHLO, STARTTLS, AUTH), read with
a protocol of our own that takes as many replies as a read brings.

aiosmtplib reads one reply per command it sent and drops whatever else arrives, so it cannot pipeline
(RFC 2920). Here MAIL, RCPT and DATA go out in one write when the server advertises PIPELINING (one at a
time otherwise), their three replies come back together, then the message and its final dot. Each
message costs two round trips instead of four, and a few parsed lines instead of aiosmtplib's command
machinery: at a few thousand messages a second, that is most of the sender's CPU.
"""
from __future__ import annotations

import asyncio
import re
from collections import deque

import aiosmtplib
from aiosmtplib.email import quote_address

CRLF = b"\r\n"
MAX_LINE = 8192  # longer is not an SMTP reply line (RFC 5321 says 512); the session is dropped
_ENVELOPE = re.compile(r"[!-;=?-~]+@[!-;=?-~]+")  # printable ASCII without '<', '>' or spaces


def envelope_address(address: str) -> bytes:
    """`<address>` for MAIL FROM and RCPT TO. Our stored addresses are plain; anything else goes through
    aiosmtplib's own quoting, as its mail() and rcpt() would have done (non-ASCII raises, as there)."""
    if _ENVELOPE.fullmatch(address):
        return b"<" + address.encode("ascii") + b">"
    return quote_address(address).encode("ascii")


class ReplyReader(asyncio.Protocol):
    """Takes over a connection's reads once the session is set up: every reply the server sends is parsed
    and kept, in order, until read() hands it out."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._lines: list[str] = []  # the lines so far of a multi-line reply
        self._replies: deque[tuple[int, str]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._wanted = 0
        self.lost: str = ""  # why the line is gone (lost, closed, garbled, stalled); empty while it works

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[: end + 1])
            del self._buffer[: end + 1]
            if not line[:3].isdigit() or line[3:4] not in (b" ", b"-", b"\r", b"\n"):
                self._lose(f"not an SMTP reply: {line[:80]!r}")
                return
            self._lines.append(line[4:].strip().decode("utf-8", "surrogateescape"))
            if line[3:4] != b"-":
                self._replies.append((int(line[:3]), "\n".join(self._lines)))
                self._lines = []
        if len(self._buffer) > MAX_LINE:
            self._lose("reply line too long")
            return
        if len(self._replies) >= self._wanted:
            self._wake()

    def eof_received(self) -> bool:
        self._lose("the server closed the connection")
        return False  # close our end too

    def connection_lost(self, exc: Exception | None) -> None:
        self._lose(str(exc) or type(exc).__name__ if exc else "the server closed the connection")

    def _lose(self, why: str) -> None:
        self.lost = self.lost or why
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _time_out(self, seconds: float) -> None:
        self._lose(f"no reply within {seconds:g} s")

    async def read(self, count: int, timeout: float) -> list[tuple[int, str]]:
        """The next `count` replies; fewer when the line is lost or stalls first (then `lost` says why)."""
        if len(self._replies) < count and not self.lost:
            loop = asyncio.get_running_loop()
            self._wanted, self._waiter = count, loop.create_future()
            timer = loop.call_later(timeout, self._time_out, timeout)
            try:
                while len(self._replies) < count and not self.lost:
                    await self._waiter
                    self._waiter = loop.create_future()
            finally:
                timer.cancel()
                self._waiter, self._wanted = None, 0
        return [self._replies.popleft() for _ in range(min(count, len(self._replies)))]


class Session:
    """One open SMTP session: aiosmtplib's client (which set it up, and closes it) and our reader."""

    def __init__(self, smtp: aiosmtplib.SMTP) -> None:
        transport = smtp.transport
        assert isinstance(transport, asyncio.WriteTransport)
        self.smtp = smtp
        self.transport = transport
        self.pipelining = smtp.supports_extension("pipelining")
        self.reader = ReplyReader()
        transport.set_protocol(self.reader)  # from here on every reply comes to the reader

    @property
    def is_open(self) -> bool:
        return not self.reader.lost and not self.transport.is_closing()

    def write(self, data: bytes) -> bool:
        """False, writing nothing, when the line is already gone."""
        if not self.is_open:
            return False
        self.transport.write(data)
        return True

    async def exchange(self, commands: list[bytes], expected: tuple[int, ...], timeout: float) -> list[tuple[int, str]]:
        """Send the commands (in one write when pipelining) and return their replies: all of them, or up to
        the first one that is not the expected code, or up to where the line was lost (`reader.lost`)."""
        if self.pipelining:
            if not self.write(b"".join(commands)):
                return []
            return await self.reader.read(len(commands), timeout)
        replies: list[tuple[int, str]] = []
        for command, code in zip(commands, expected):
            if not self.write(command):
                break
            got = await self.reader.read(1, timeout)
            replies += got
            if not got or got[0][0] != code:
                break
        return replies

    async def quit(self, timeout: float) -> None:
        if self.write(b"QUIT\r\n"):
            await self.reader.read(1, timeout)
        self.drop(abort=False)

    def drop(self, *, abort: bool = True) -> None:
        """Close the socket; with `abort`, now, not once a stalled peer has read what is still buffered."""
        if abort:
            self.transport.abort()
        elif not self.transport.is_closing():
            self.transport.close()
        self.smtp.close()
