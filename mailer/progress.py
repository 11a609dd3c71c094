"""The Rich progress bar of a send: sent/total, rate, ETA."""
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


class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:7.1f} msg/s" if speed else "    -- msg/s")


def send_progress(console: Console, total: int) -> tuple[Progress, Callable[[DeliveryStatus], None]]:
    """A progress bar and the callback that advances it once per recorded delivery."""
    progress = Progress(
        TextColumn("[bold]sending"), BarColumn(), MofNCompleteColumn(), RateColumn(),
        TextColumn("ETA"), TimeRemainingColumn(), TimeElapsedColumn(), console=console,
    )
    task = progress.add_task("send", total=total)
    return progress, lambda status: progress.advance(task)
