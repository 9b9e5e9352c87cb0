"""How a matrix run is divided up: units, lanes and pools. Pure decisions, no I/O.

- A unit is what is published together: one cell, or a multi-arch set (cells that
  differ only in arch), released all or nothing.
- A lane is a sequence of units that must not overlap on one machine: units that
  share a chip share its base image and stack build (and, on a chip host, its
  accelerator). Lanes run concurrently, up to `--jobs`, when the matrix runs in
  one process.
- In a fleet, each cell goes to its chip's Prefect work pool; the pool's and the
  global concurrency limits keep the rest in order.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from flagrelease import naming
from flagrelease.record import ReleaseRecord, Status
from flagrelease.schema import Cell

# Beyond a record's own statuses: a fleet cell run that never started (no worker polled its
# pool), that was still running at the deadline, or whose process died without a record.
Outcome = Status | Literal["waiting", "timed-out", "crashed"]


class Unit(BaseModel):
    cells: list[Cell]

    @property
    def is_set(self) -> bool:
        return len(self.cells) > 1

    @property
    def label(self) -> str:
        return " + ".join(c.label for c in self.cells)


def units(cells: list[Cell], *, push: bool) -> list[Unit]:
    """Cells grouped into multi-arch sets (same model and pins but the arch), in matrix order.
    A set only groups cells whose arches differ: two cells of one arch and one set key share
    an image name, which loading a matrix refuses (name_clash.py); here they stay apart.
    Without a push there is nothing to publish together: every cell is its own unit."""
    if not push:
        return [Unit(cells=[cell]) for cell in cells]
    groups: list[tuple[str, list[Cell]]] = []
    for cell in cells:
        key = naming.set_key(cell)
        group = next((g for k, g in groups if k == key and cell.chip.arch not in {c.chip.arch for c in g}), None)
        if group is None:
            groups.append((key, [cell]))
        else:
            group.append(cell)
    return [Unit(cells=group) for _, group in groups]


def lanes(plan: list[Unit]) -> list[list[Unit]]:
    """Units joined (transitively) by a shared chip run in one lane, in matrix order."""
    parent = list(range(len(plan)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_with_chip: dict[str, int] = {}
    for i, unit in enumerate(plan):
        for cell in unit.cells:
            j = first_with_chip.setdefault(cell.chip_id, i)
            parent[root(i)] = root(j)
    grouped: dict[int, list[Unit]] = {}
    for i, unit in enumerate(plan):
        grouped.setdefault(root(i), []).append(unit)
    return list(grouped.values())


def pools(cells: list[Cell]) -> dict[str, list[str]]:
    """Work pool -> the chips whose hosts poll it."""
    found: dict[str, list[str]] = {}
    for cell in cells:
        chips = found.setdefault(cell.pool, [])
        if cell.chip_id not in chips:
            chips.append(cell.chip_id)
    return found


class CellOutcome(BaseModel):
    """How one cell of a matrix run ended, with its record when it left one."""

    cell: str
    model: str
    chip: str
    pool: str
    run_id: str
    status: Outcome
    exit_code: int = 0
    error: str | None = None
    flow_run: str | None = None  # URL of the cell's flow run in the Prefect UI
    record: ReleaseRecord | None = None


def exit_code(outcomes: list[CellOutcome]) -> int:
    """The worst cell's: a CI job fails when any cell did, with the most serious code."""
    return max((o.exit_code for o in outcomes), default=0)
