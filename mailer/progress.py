"""The Rich progress bar of a send: deliveries recorded/total, sent messages per second, ETA.

The rate is the delivery report's rate (mailer.report: sent messages per second of sending time) measured
on this run: messages accepted by the relay, divided by the time since the run began. Bounces, deferrals
and skips advance the bar and the ETA but are not counted as sent, so for a single run the bar's last
figure and the report's agree.
"""
from __future__ import annotations

from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from mailer.models import DeliveryStatus


def sent_rate(task: Task) -> float | None:
    """Sent messages per second of elapsed time (up to the moment the last delivery was recorded)."""
    elapsed = task.finished_time if task.finished_time is not None else task.elapsed
    sent = task.fields.get("sent", 0)
    return sent / elapsed if elapsed and sent else None


class SentRateColumn(ProgressColumn):
    """Sent messages per second, the report's 'rate'."""

    def render(self, task: Task) -> Text:
        rate = sent_rate(task)
        return Text(f"{rate:7.1f} sent/s" if rate is not None else "     -- sent/s")


def send_progress(console: Console, total: int) -> tuple[Progress, Callable[[DeliveryStatus], None]]:
    """A progress bar and the callback that advances it once per recorded delivery (any outcome)."""
    progress = Progress(
        TextColumn("[bold]sending"), BarColumn(), MofNCompleteColumn(), SentRateColumn(),
        TextColumn("ETA"), TimeRemainingColumn(), TimeElapsedColumn(), console=console,
    )
    task = progress.add_task("send", total=total, sent=0)
    sent = 0

    def advance(status: DeliveryStatus) -> None:
        nonlocal sent
        if status == DeliveryStatus.SENT:
            sent += 1
        progress.update(task, advance=1, sent=sent)

    return progress, advance
