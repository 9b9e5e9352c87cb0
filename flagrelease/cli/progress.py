"""The live progress display of `build` and `release` (`--progress auto|tty|plain`, as buildx).

`tty`: a Rich live display on stderr drawn from the flows' progress events (flagrelease.progress):
one cell shows a line per stage (spinner and elapsed time while it runs, then how it ended),
a matrix run one line per cell; under the running stage, the line it logged last. The Prefect
console lines stay off the terminal (warnings and errors are printed above the display);
every line still reaches the Prefect API and the run's run.log. `plain`: Prefect's log lines
as they come, nothing drawn. `auto`: `tty` when stdout and stderr are terminals, else `plain`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from flagrelease.cli.common import choice
from flagrelease.progress import EVENT_ATTR, RUNNING, Board, CellRow, CellStarted, LogLine, StageRow

Mode = Literal["tty", "plain"]
MODES = ("auto", "tty", "plain")
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_DONE = ("released", "unchanged", "built")


def progress_mode(option: str, stdout_tty: bool, stderr_tty: bool) -> Mode:
    """The mode `--progress option` means on this terminal."""
    choice(option, MODES, "--progress")
    if option == "auto":
        return "tty" if stdout_tty and stderr_tty else "plain"
    return "tty" if option == "tty" else "plain"


def _spinner(now: float) -> str:
    return SPINNER[int(now * 10) % len(SPINNER)]


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 60 else f"{int(value // 60)}m{value % 60:04.1f}s"


def _status(row: CellRow, now: float) -> Text:
    if row.finished is None:
        return Text(_spinner(now) if row.status == RUNNING else "·", style="cyan")
    if row.status in _DONE:
        return Text("✓", style="green")
    return Text("✗", style="yellow" if row.status == "gated" else "red")


def _line(*parts: str | tuple[str, str] | Text) -> Text:
    """One line of the display, cut with an ellipsis at the terminal's edge, never wrapped."""
    line = Text.assemble(*parts)
    line.no_wrap, line.overflow = True, "ellipsis"
    return line


def _stage_line(stage: StageRow, now: float) -> Text:
    if stage.ok is None:
        icon, seconds, result = Text(_spinner(now), style="cyan"), now - stage.started, Text("")
    else:
        icon = Text("✓", style="green") if stage.ok else Text("✗", style="red")
        seconds, result = stage.seconds or 0.0, Text(stage.result, style="dim" if stage.ok else "red")
    return _line(" ", icon, f" {stage.name:<10} ", (f"{_seconds(seconds):>8}", "dim"), "  ", result)


def render_cell(row: CellRow, now: float) -> RenderableType:
    """One cell in detail: a header, a line per stage, the running stage's latest log line."""
    lines = [_line(_status(row, now), " ", (row.cell, "bold"), f"  {row.status}  {_seconds(row.elapsed(now))}")]
    for stage in row.stages:
        lines.append(_stage_line(stage, now))
        if stage.ok is None and row.line:
            lines.append(_line(" " * 25, (row.line, "dim")))
    if row.log:
        lines.append(Text(f"  full log: {row.log}", style="dim"))
    return Group(*lines)


def render_matrix(board: Board, now: float) -> RenderableType:
    """One line per cell: status, cell, stage (or how it ended), elapsed time, latest log line."""
    width = max(len(cell) for cell in board.cells)
    lines = []
    for row in board.cells.values():
        current = row.current
        what = current.name if current and row.finished is None else row.status
        elapsed = _seconds(row.elapsed(now)) if row.started is not None else ""
        lines.append(
            _line(
                _status(row, now),
                " ",
                (f"{row.cell:<{width}}", "bold"),
                f" {what:<10} {elapsed:>8}  ",
                (row.line, "dim"),
            )
        )
    finished = sum(row.finished is not None for row in board.cells.values())
    return Group(Text(f"{finished}/{len(board.cells)} cells done", style="bold"), *lines)


def render_board(board: Board, now: float) -> RenderableType:
    if len(board.cells) == 1:
        return render_cell(next(iter(board.cells.values())), now)
    return render_matrix(board, now)


class BoardHandler(logging.Handler):
    """Feeds the board from log records: progress events, and every other line of a cell's
    flow run (and its tasks) as that cell's latest line. Warnings and errors that `shown`
    lets through are printed above the display."""

    def __init__(self, board: Board, console: Console, shown: logging.Filter) -> None:
        super().__init__(level=logging.INFO)
        self.board = board
        self.console = console
        self.shown = shown
        self.runs: dict[str, str] = {}  # flow run id -> cell

    def emit(self, record: logging.LogRecord) -> None:
        now = time.monotonic()
        event = getattr(record, EVENT_ATTR, None)
        flow_run = str(getattr(record, "flow_run_id", ""))
        if event is not None:
            if isinstance(event, CellStarted):
                self.runs[flow_run] = event.cell
            self.board.apply(event, now)
        elif flow_run in self.runs:
            self.board.apply(LogLine(cell=self.runs[flow_run], text=record.getMessage()), now)
        if record.levelno >= logging.WARNING and self.shown.filter(record):
            text = f"{record.levelname.lower()}: {record.getMessage()}"
            if record.exc_info:  # not a handled failure (`shown` drops those): a bug, traceback and all
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            self.console.print(Text(text, style="yellow" if record.levelno == logging.WARNING else "red"))


def _quiet(record: logging.LogRecord) -> bool:
    return False


@contextmanager
def live_progress(console: Console, shown: logging.Filter) -> Iterator[Board]:
    """Draw the run's progress on `console` while the block runs; Prefect's console lines are
    held back meanwhile (they still reach the API and run.log)."""
    from prefect.logging.handlers import PrefectConsoleHandler  # Prefect loads with the flows, not at start-up

    board = Board()
    handler = BoardHandler(board, console, shown)
    root = logging.getLogger()
    consoles = [h for h in root.handlers if isinstance(h, PrefectConsoleHandler)]
    for h in consoles:
        h.addFilter(_quiet)
    root.addHandler(handler)

    lock = handler.lock  # the handler updates the board under it, from the flows' threads
    assert lock is not None

    def draw() -> RenderableType:
        with lock:
            return render_board(board, time.monotonic()) if board.cells else Text("starting…", style="dim")

    try:
        with Live(get_renderable=draw, console=console, refresh_per_second=8, redirect_stdout=False):
            yield board
    finally:
        root.removeHandler(handler)
        for h in consoles:
            h.removeFilter(_quiet)
