"""How a running batch shows itself: a rich progress bar, one line per item, or nothing.

``bar`` draws counts per outcome and the rate on stderr while the run goes
(rich is imported only then: a cron job never loads it). ``lines`` prints one
line per settled item, for logs and for programs that follow a run. ``none``
prints nothing while the run goes (``--quiet`` also drops the final summary).
"""

from __future__ import annotations

import sys
from collections import Counter
from types import TracebackType
from typing import Any, Literal

import click
from flowengine.cli import printable

from ._results import ItemResult

__all__ = ["PROGRESS_MODES", "Progress", "ProgressMode"]

ProgressMode = Literal["bar", "lines", "none"]
PROGRESS_MODES: tuple[ProgressMode, ...] = ("bar", "lines", "none")


class Progress:
    """Shows results as they settle; use as a context manager around the run."""

    def __init__(self, mode: ProgressMode, job: str) -> None:
        self.mode = mode
        self.job = job
        self.counts: Counter[str] = Counter()
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if self.mode == "bar":
            self._open_bar()
        return self

    def _open_bar(self) -> None:
        try:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress
        except ImportError:  # the bar is optional: say how to get it, and print lines instead
            click.echo("(install flowengine[batch] for a progress bar)", err=True)
            self.mode = "lines"
            return
        self._bar = RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[counts]}"),
            console=Console(file=sys.stderr),
            transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task(self.job, total=None, rate="", counts="")

    def start(self, total: int) -> None:
        """The plan is known: ``total`` items."""
        if self._bar is not None:
            self._bar.update(self._task, total=total)

    def advance(self, result: ItemResult, rate: float) -> None:
        """One item settled."""
        self.counts[result.outcome] += 1
        if self._bar is not None:
            counts = " ".join(f"{name} {count}" for name, count in self.counts.most_common())
            self._bar.update(self._task, advance=1, rate=f"{rate:.1f}/s", counts=counts)
        elif self.mode == "lines":
            click.echo(printable(result.line()), err=True)

    def note(self, text: str) -> None:
        """A message for the person (stopping, resuming), above the bar."""
        text = printable(text)
        if self._bar is not None:
            self._bar.console.print(text, highlight=False, markup=False)
        elif self.mode != "none":
            click.echo(text, err=True)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
