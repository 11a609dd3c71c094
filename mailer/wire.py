"""Message bytes as SMTP carries them after DATA."""
from __future__ import annotations


class WireReady(bytes):
    """A message whose lines all end in CRLF and none of which begins with a dot (mailer.message builds
    them so: quoted-printable writes a leading dot as =2E). The transport sends it as it is, plus the final
    dot, instead of rewriting line endings and dot-stuffing every message (two regular expressions over
    50-100 KB each)."""
