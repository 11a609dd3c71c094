"""Pure helpers about bounce replies: grouping servers' texts into reasons an operator can count."""
from __future__ import annotations

import re

_ADDRESS = re.compile(r"<?[^\s<>@]+@[^\s<>]+>?")
_QUEUE_ID = re.compile(r"\b(?=[A-Za-z0-9]*\d)[A-Za-z0-9]{8,}\b")


def reason_group(reply: str) -> str:
    """The reply with what varies per recipient (addresses, queue ids) blanked, so that
    '550 5.1.1 <a@x>: User unknown' and '550 5.1.1 <b@y>: User unknown' count as one reason."""
    text = _ADDRESS.sub("<address>", reply)
    text = _QUEUE_ID.sub("<id>", text)
    return " ".join(text.split())[:300]
