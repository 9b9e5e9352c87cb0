"""One name per image: no two cells of a matrix get the same image name, and no two chips the
same chip-stack name. Checked when the matrix is loaded, before anything is rendered or built.

Two images under one name would overwrite each other's aliases, and a multi-arch set would
publish two images of one arch as one. The name carries the pins, not every fact of a chip
(e.g. Ascend A2 and A3 both carry chip code `ascend001`), so chips that differ only in
what the name does not carry must say how they are told apart: `chips.<id>.spelling`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flagrelease.errors import ConfigError
from flagrelease.naming import image_name, name_fields, stack_fields
from flagrelease.schema import Cell


def check_unique_names(cells: list[Cell], source: Path) -> None:
    """Refuse the first pair of cells sharing an image name, then of chips sharing a stack name."""
    # A chip's fields are worked out once: a 10,000-cell matrix has a hundred chips, not 10,000.
    by_chip: dict[tuple[int, str], list[tuple[str, str]]] = {}
    release: dict[str, Cell] = {}
    stacks: dict[str, Cell] = {}
    for cell in cells:
        key = (id(cell.chip), cell.chip_id)  # the cells keep their chips alive, so ids stay theirs
        fields = by_chip.get(key)
        if fields is None:
            fields = by_chip[key] = stack_fields(cell.chip_id, cell.chip)
        name = image_name(cell, "release", [("model", cell.model_id), *fields])
        first = release.setdefault(name, cell)
        if first is not cell:
            raise _clash(first, cell, name, "image name", source)
        name = image_name(cell, "stack", fields)
        first = stacks.setdefault(name, cell)
        if first.chip_id != cell.chip_id:
            raise _clash(first, cell, name, "chip-stack image name", source)


def _clash(first: Cell, second: Cell, name: str, what: str, source: Path) -> ConfigError:
    who = (
        f"cells {first.label} and {second.label}"
        if what == "image name"
        else f"chips {first.chip_id} and {second.chip_id}"
    )
    differing = _differences(first.chip.model_dump(), second.chip.model_dump())
    hidden = (
        f"; they differ in {', '.join(differing)}, which the name does not carry"
        if differing
        else "; their chips are the same in every field"
    )
    fields = ", ".join(field for field, _ in name_fields(second, model=what == "image name"))
    return ConfigError(
        f"{who} would get the same {what} {name}: all of its fields ({fields}) are equal{hidden}",
        where=f"{source}: chips.{first.chip_id} / chips.{second.chip_id}",
        fix="give one of the chips its own spelling of a name field, e.g. "
        f'chips.{second.chip_id}.spelling: {{chip_code: "{{value}}.<variant>"}} (docs/matrix.md), '
        "or change a pin the name carries; drop one of them from the matrix if they are the same chip",
    )


def _differences(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two chip definitions."""
    found = []
    for key in sorted(a.keys() | b.keys()):
        left, right = a.get(key), b.get(key)
        if isinstance(left, dict) and isinstance(right, dict):
            found += _differences(left, right, f"{prefix}{key}.")
        elif left != right:
            found.append(prefix + key)
    return found
