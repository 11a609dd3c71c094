"""Per-recipient message building: the splice against one email.message.EmailMessage per recipient.

Both run in this process, one after the other, on the same composed issue, so the ratio is what counts
(the machine is shared). Prints messages per second on one core and the ratio, and the time to compose
a 30-item issue with text the process has not seen (after the first compose, median of 7).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from email.message import EmailMessage

from mailer.compose import EMAIL_SLOT, SLOTS, compose
from mailer.issue import Issue
from mailer.issue import load_issue
from mailer.message import MessageBuilder, Recipient
from mailer.settings import PROJECT_ROOT, load_settings
from subscribers.tokens import TokenSigner


def new_thirty_item_issues(count: int) -> list[Issue]:
    """30-item issues of the examples' real items (tests/large_issue.py), each with text of its own, so that
    no cache of an earlier compose helps."""
    sys.path.insert(0, str(PROJECT_ROOT))
    from pathlib import Path

    from tests.large_issue import write_large_issue

    folder = Path(tempfile.mkdtemp())
    issues = []
    for n in range(count):
        path = write_large_issue(folder, items=30)
        path.write_text(path.read_text(encoding="utf-8").replace("Torino", f"Torino {n}"), encoding="utf-8")
        issues.append(load_issue(path))
    return issues


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000, help="spliced builds to time")
    parser.add_argument("--stdlib", type=int, default=300, help="EmailMessage builds to time (about 100x slower)")
    args = parser.parse_args()
    spliced, stdlib = args.messages, min(args.stdlib, args.messages)
    settings = load_settings({})
    issue = load_issue(PROJECT_ROOT / "examples" / "2026-05-work-in-progress.md")
    started = time.perf_counter()
    composed = compose(issue, settings.newsletter(issue.newsletter), settings.base_url)
    compose_s = time.perf_counter() - started
    started = time.perf_counter()
    compose(issue, settings.newsletter(issue.newsletter), settings.base_url)
    again_s = time.perf_counter() - started
    started = time.perf_counter()
    compose(issue, settings.newsletter(issue.newsletter), settings.base_url, test=True)  # a new subject: MJML and CSS again
    test_s = time.perf_counter() - started
    thirty = []
    for other in new_thirty_item_issues(7):
        started = time.perf_counter()
        compose(other, settings.newsletter(other.newsletter), settings.base_url)
        thirty.append(time.perf_counter() - started)
    builder = MessageBuilder(composed, TokenSigner(settings.secret_keys), base_url=settings.base_url, campaign_id=1, list_id=1)
    recipients = [Recipient(f"lettore{n}@example.org", f"Lettore Numero {n}", n, 0, n) for n in range(spliced)]

    started = time.perf_counter()
    size = 0
    for r in recipients:
        size += len(builder.build(r).data)
    spliced_s = time.perf_counter() - started

    # Every slot the composer leaves (the set grows with the templates), filled as a recipient's would be.
    url = builder.unsubscribe_url(recipients[0])
    values = {slot: url for slot in SLOTS} | {EMAIL_SLOT: "lettore@example.org"}
    started = time.perf_counter()
    for _ in recipients:
        b"".join(builder.text.render(values) + builder.html.render(values))
    splice_only_s = time.perf_counter() - started

    started = time.perf_counter()
    for r in recipients:
        builder.signer.unsubscribe_token(r.subscriber_id, 1, 0, 1)
        builder.signer.manage_token(r.subscriber_id, 0, 1)
        builder.signer.bounce_tag(r.delivery_id)
    signing_s = time.perf_counter() - started

    started = time.perf_counter()
    for r in recipients[:stdlib]:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "a@example.org", r.email, composed.subject
        msg["List-Unsubscribe"] = f"<{builder.unsubscribe_url(r)}>"
        msg.set_content(composed.text.replace(EMAIL_SLOT, r.email))
        msg.add_alternative(composed.html.replace(EMAIL_SLOT, r.email), subtype="html")
        msg.as_bytes()
    stdlib_s = time.perf_counter() - started

    per_splice = spliced_s / spliced
    per_stdlib = stdlib_s / stdlib
    print(f"compose once (Jinja + MJML + premailer): {compose_s * 1000:.0f} ms, HTML {len(composed.html) // 1000} KB; "
          f"again in this process {again_s * 1000:.1f} ms; its test copy (another subject) {test_s * 1000:.1f} ms")
    print(f"compose a 30-item issue with new text, after the first: {statistics.median(thirty) * 1000:.1f} ms (median of {len(thirty)})")
    print(f"spliced build:   {spliced / spliced_s:9.0f} messages/s  ({per_splice * 1e6:.1f} us each, {size / spliced / 1000:.0f} KB)")
    print(f"  of which body splice {splice_only_s / spliced * 1e6:.1f} us, signing its three tokens {signing_s / spliced * 1e6:.1f} us")
    print(f"EmailMessage:    {stdlib / stdlib_s:9.0f} messages/s  ({per_stdlib * 1e6:.0f} us each)")
    print(f"ratio:           {per_stdlib / per_splice:9.0f}x")


if __name__ == "__main__":
    main()
