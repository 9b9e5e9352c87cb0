"""The fully resolved plan of a selection, as `docker buildx bake --print` shows one:
every cell with its pins, image name, base, template, runtime, serve config and launcher."""

from __future__ import annotations

from typing import Any

from flagrelease import naming
from flagrelease.cell_facts import chip_pins, serve_config
from flagrelease.compat import Checker
from flagrelease.naming import base_reference
from flagrelease.schema import Cell, Chip, MatrixFile
from flagrelease.settings import BuildSettings


def plan(cells: list[Cell], matrix: MatrixFile, build: BuildSettings) -> list[dict[str, Any]]:
    """Every cell's plan. What depends on the chip alone is worked out once per chip, and the
    compatibility rules share their work across cells: a 10,000-cell matrix plans in well
    under a second (bench/plan_scale.py)."""
    checker = Checker(matrix.compatibility)
    # By chip object (kept alive here, so that its id stays its own) and chip id.
    chips: dict[tuple[int, str], tuple[Chip, dict[str, Any], list[tuple[str, str]]]] = {}
    plans = []
    for cell in cells:
        key = (id(cell.chip), cell.chip_id)
        known = chips.get(key)
        if known is None:
            known = chips[key] = (
                cell.chip,
                _chip_plan(cell.chip_id, cell.chip, matrix, build),
                naming.stack_fields(cell.chip_id, cell.chip),
            )
        plans.append(_cell_plan(cell, matrix, known[1], known[2], checker))
    return plans


def cell_plan(cell: Cell, matrix: MatrixFile, build: BuildSettings) -> dict[str, Any]:
    return plan([cell], matrix, build)[0]


def _chip_plan(chip_id: str, chip: Chip, matrix: MatrixFile, build: BuildSettings) -> dict[str, Any]:
    runtime = chip.runtime
    return {
        "pins": chip_pins(chip_id, chip),
        "platform": chip.platform,
        "base_image": base_reference(chip.base.image, build.base_mirror),
        "base_made_locally": chip.base.bootstrap is not None,
        "template": str(matrix.dockerfiles / chip.template),
        "runtime": {
            "devices": runtime.devices,
            "mounts": [m.model_dump() for m in runtime.mounts],
            "env": runtime.env,
            "visible_devices_env": runtime.visible_devices_env,
            "gpus": runtime.gpus,
            "shm_size": runtime.shm_size,
        },
        # How the image serves and switches its sides (the command is rendered with the image).
        "launcher": chip.stack.launcher.model_dump(),
    }


def _cell_plan(
    cell: Cell, matrix: MatrixFile, chip_plan: dict[str, Any], stack_fields: list[tuple[str, str]], checker: Checker
) -> dict[str, Any]:
    name = naming.image_name(cell, "release", [("model", cell.model_id), *stack_fields])
    experiment, serve_list = serve_config(cell)
    return {
        "cell": cell.label,
        "chip": cell.chip_id,
        "model": cell.model_id,
        "platform": chip_plan["platform"],
        "image": f"{naming.full_repository(None, matrix.release.namespace, name)}:<{matrix.release.timestamp}>",
        "base_image": chip_plan["base_image"],
        "base_made_locally": chip_plan["base_made_locally"],
        "template": chip_plan["template"],
        "pins": {"model": cell.model_id} | chip_plan["pins"],
        "runtime": chip_plan["runtime"] | {"weights_mount": cell.weights_mount},
        "serve": {"experiment": experiment, "serve": serve_list},
        "launcher": chip_plan["launcher"],
        "violations": [v.model_dump() for v in checker.check(cell)],
    }
