"""Bench hook: before each side's container stops, read which operators FlagGems recorded in it.

Only for stacks with FlagGems (`cell_facts.flaggems_installed`); a stack without it has
nothing to read, and its record says that both sides run the same operators. The record
is read from the container itself (the path is `chips.<id>.stack.flaggems_record`), after
the side's measurements, so every operator the benchmarks used had its chance to appear;
the gate then requires operators on the flaggems side and none on the native side.

    records: dict[str, FlagGemsRecord] = {}
    read_before_stop(stack, cell, "flaggems", container, records)   # in the side's ExitStack
    ...
    attach(results, records)                                         # once every side is done
"""

from __future__ import annotations

from contextlib import ExitStack

from flagrelease import flaggems_record
from flagrelease.adapters import docker_engine
from flagrelease.cell_facts import flaggems_installed
from flagrelease.results import FlagGemsRecord, SideResult
from flagrelease.schema import Cell


def read_record(container, path: str) -> FlagGemsRecord:
    """The operators FlagGems recorded at `path` in a running container."""
    with docker_engine.file_in_container(container, path) as record:
        if record is None:
            return FlagGemsRecord(path=path, present=False)
        lines = (raw.decode(errors="replace") for raw in record)
        return FlagGemsRecord(path=path, present=True, operators=flaggems_record.operators(lines))


def read_before_stop(stack: ExitStack, cell: Cell, side: str, container, records: dict[str, FlagGemsRecord]) -> None:
    """Have `stack` read the side's record when it unwinds, before the container is removed,
    unless a measurement failed (the run fails anyway; no read may hide why)."""
    if not flaggems_installed(cell):
        return

    def read(exc_type, _exc, _tb) -> bool:
        if exc_type is None:
            records[side] = read_record(container, cell.chip.stack.flaggems_record)
        return False

    stack.push(read)


def attach(results: dict[str, SideResult], records: dict[str, FlagGemsRecord]) -> None:
    for side, record in records.items():
        results[side].flaggems = record
