"""Use cases of the bounce mailbox: read what arrived at our return path and tie it to a delivery.

This step reads and matches (`mailer bounces parse`); recording and acting on what is read (suppression,
complaints, mailto unsubscribes) builds on it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from mailer.core import Core
from mailer.dsn import Failure, Reading, read_message
from subscribers.errors import InvalidToken


@dataclass(frozen=True)
class ReadBounce:
    reading: Reading
    delivery_id: int | None  # from our signed return path (VERP); None when absent or forged


class Inbox(Core):
    def read_bounce(self, data: bytes) -> ReadBounce:
        """What a message at the bounce address says, and which delivery it is about when the return path
        it was sent to carries a valid signed tag (a forged or damaged tag matches nothing)."""
        reading = read_message(data)
        return ReadBounce(reading, self._tagged_delivery(reading.to))

    def _tagged_delivery(self, addresses: tuple[str, ...]) -> int | None:
        for nl in self.settings.newsletters.values():
            local, _, domain = nl.bounce_address.partition("@")
            pattern = re.compile(rf"^{re.escape(local)}\+([A-Za-z0-9._-]+)@{re.escape(domain)}$", re.I)
            for address in addresses:
                found = pattern.match(address)
                if found:
                    try:
                        return self.signer.read_bounce_tag(found.group(1))
                    except InvalidToken:
                        continue
        return None


__all__ = ["Failure", "Inbox", "ReadBounce"]
