"""SpamAssassin's verdict on a message we built, when Debian's `spamassassin` is installed.

Local rules only (`--local`: no network lookups), in test mode (no learning): what a receiving server's
content filter would say of the message itself, before any reputation of the sending host counts.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

STATUS = re.compile(rb"X-Spam-Status: \w+, score=(-?[\d.]+) required=[\d.]+\s+tests=(.*?)\s+autolearn", re.S)


@dataclass(frozen=True)
class SpamScore:
    score: float
    tests: tuple[str, ...]  # the rules that matched, e.g. HTML_MESSAGE

    def __str__(self) -> str:
        return f"{self.score:.1f} ({', '.join(self.tests) or 'no rule matched'})"


def spamassassin_installed() -> bool:
    return shutil.which("spamassassin") is not None


def spam_score(message: bytes, *, timeout: float = 120) -> SpamScore:
    """Run `spamassassin --local --test-mode` on the message; raises RuntimeError if it gives no verdict."""
    try:
        result = subprocess.run(
            ["spamassassin", "--local", "--test-mode"], input=message, capture_output=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"spamassassin did not run: {exc}") from None
    found = STATUS.search(result.stdout)
    if found is None:
        raise RuntimeError(f"spamassassin gave no verdict (exit status {result.returncode})")
    tests = tuple(t for t in re.split(rb"[,\s]+", found.group(2).strip()) if t and t != b"none")
    return SpamScore(float(found.group(1)), tuple(t.decode() for t in tests))
