"""A release's progress as typed events, and the board a display draws from them.

The flows emit events on their Prefect run logger (`emit`): the event rides on the log
record (attribute `EVENT_ATTR`) beside a readable line, so one record reaches the Prefect
API, the run's run.log, a plain console and the live display alike. `Board` folds events
into what there is to show: which cells, which stage each is in, since when, how each
finished stage ended and the latest log line. It holds no clock: the caller passes `now`
(time.monotonic()), so a test can replay events at the times it likes. The terminal
drawing lives in `flagrelease.cli.progress`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel

from flagrelease.record import ReleaseRecord

EVENT_ATTR = "flagrelease_progress"
# Final statuses a cell can end in (record statuses and the fleet's own).
RUNNING, QUEUED = "running", "queued"


class CellsPlanned(BaseModel):
    """A matrix run's cells, in plan order, before any starts."""

    kind: Literal["planned"] = "planned"
    cells: list[str]

    def line(self) -> str:
        return f"{len(self.cells)} cell(s) planned: {', '.join(self.cells)}"


class CellStarted(BaseModel):
    kind: Literal["cell-started"] = "cell-started"
    cell: str
    run_id: str
    log: str  # the run's full log file

    def line(self) -> str:
        return f"cell {self.cell}: run {self.run_id}, full log in {self.log}"


class StageStarted(BaseModel):
    kind: Literal["stage-started"] = "stage-started"
    cell: str
    stage: str

    def line(self) -> str:
        return f"stage {self.stage} started"


class StageFinished(BaseModel):
    kind: Literal["stage-finished"] = "stage-finished"
    cell: str
    stage: str
    ok: bool
    seconds: float
    result: str = ""  # one short phrase: "built 1a2b3c4d5e6f", "passed, ready in 2.1 s"

    def line(self) -> str:
        how = f"done in {self.seconds:.1f} s" if self.ok else f"failed after {self.seconds:.1f} s"
        return f"stage {self.stage} {how}" + (f": {self.result}" if self.result else "")


class CellFinished(BaseModel):
    kind: Literal["cell-finished"] = "cell-finished"
    cell: str
    status: str

    def line(self) -> str:
        return f"cell {self.cell}: {self.status}"


class LogLine(BaseModel):
    """A line a cell's run logged; made by the display from log records, never emitted."""

    kind: Literal["log"] = "log"
    cell: str
    text: str


Emitted = CellsPlanned | CellStarted | StageStarted | StageFinished | CellFinished
Event = Emitted | LogLine


def emit(logger: logging.Logger | logging.LoggerAdapter, event: Emitted) -> None:
    """Log `event` as its readable line, carrying the event itself for a display."""
    logger.info(event.line(), extra={EVENT_ATTR: event})


@dataclass
class StageRow:
    name: str
    started: float
    seconds: float | None = None  # set when finished
    ok: bool | None = None
    result: str = ""


@dataclass
class CellRow:
    cell: str
    status: str = QUEUED
    run_id: str | None = None
    log: str | None = None
    started: float | None = None
    finished: float | None = None
    stages: list[StageRow] = field(default_factory=list)
    line: str = ""

    @property
    def current(self) -> StageRow | None:
        """The stage in progress, if one is."""
        return self.stages[-1] if self.stages and self.stages[-1].ok is None else None

    def elapsed(self, now: float) -> float:
        if self.started is None:
            return 0.0
        return (self.finished if self.finished is not None else now) - self.started


# Terminal control sequences and carriage returns in build and container output.
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x08\x0b-\x1f\x7f]")


def clean_line(text: str) -> str:
    """The last non-empty line of `text`, without terminal control characters."""
    lines = [_CONTROL.sub("", part).strip() for part in text.replace("\r", "\n").splitlines()]
    return next((line for line in reversed(lines) if line), "")


class Board:
    """Every cell of the run and how far it got."""

    def __init__(self) -> None:
        self.cells: dict[str, CellRow] = {}

    def _row(self, cell: str) -> CellRow:
        return self.cells.setdefault(cell, CellRow(cell))

    def apply(self, event: Event, now: float) -> None:
        if isinstance(event, CellsPlanned):
            for cell in event.cells:
                self._row(cell)
        elif isinstance(event, CellStarted):
            row = self._row(event.cell)
            # A cell runs once per matrix run; a second start is a new run of it (a retry).
            row.status, row.run_id, row.log, row.started, row.finished = RUNNING, event.run_id, event.log, now, None
            row.stages, row.line = [], ""
        elif isinstance(event, StageStarted):
            row = self._row(event.cell)
            if row.started is None:
                row.status, row.started = RUNNING, now
            row.stages.append(StageRow(event.stage, started=now))
        elif isinstance(event, StageFinished):
            row = self._row(event.cell)
            stage = next((s for s in reversed(row.stages) if s.name == event.stage and s.ok is None), None)
            if stage is None:  # a finish without its start (joined late): show it all the same
                stage = StageRow(event.stage, started=now - event.seconds)
                row.stages.append(stage)
            stage.seconds, stage.ok, stage.result = event.seconds, event.ok, event.result
            row.line = ""
        elif isinstance(event, CellFinished):
            row = self._row(event.cell)
            row.status = event.status
            if row.finished is None:
                row.finished = now
            row.line = ""
        elif isinstance(event, LogLine):
            row = self._row(event.cell)
            if row.finished is None and (text := clean_line(event.text)):
                row.line = text

    @property
    def done(self) -> bool:
        return all(row.finished is not None for row in self.cells.values())


def stage_passed(stage: str, record: ReleaseRecord) -> bool:
    """Whether a stage that completed also succeeded: a smoke test can complete and fail, a gate
    can complete and refuse."""
    if stage == "smoke" and record.smoke:
        return record.smoke.passed
    if stage == "gate" and record.gate:
        return record.gate.release
    return True


def stage_result(stage: str, record: ReleaseRecord) -> str:
    """What a finished stage came to, in a few words, from the record it filled in."""
    if stage == "registry":
        return record.registry or "no push"
    if stage == "base" and record.base:
        return ("made " if record.base.made else "present ") + record.base.ref
    if stage == "render" and record.context_hash:
        return f"context {record.context_hash[:12]}"
    if stage == "key":
        if record.unchanged:
            return f"unchanged: released as {record.unchanged.tag}"
        return f"key {record.release_key[:12]}" if record.release_key else ""
    if stage == "stack" and record.stack:
        return f"{record.stack.origin} {record.stack.image_id[:19]}"
    if stage == "build" and record.image:
        return ("reused " if record.image.reused else "built ") + record.image.image_id[:19]
    if stage == "smoke" and record.smoke:
        if not record.smoke.passed:
            return record.smoke.error or ""
        return f"passed, ready in {record.smoke.ready_seconds or 0:.1f} s"
    if stage == "bench" and record.bench:
        sides = record.bench.items()
        return ", ".join(f"{side}: {len(r.perf)} perf level(s), {len(r.accuracy)} accuracy" for side, r in sides)
    if stage == "gate" and record.gate:
        return f"{record.gate.verdict}: {record.gate.reason}"
    if stage == "push":
        if record.publish:
            return f"{record.publish.tags[0]} {record.publish.digest[:19]}"
        if record.staged:
            return f"staged {record.staged.tag}"
    return ""
