"""The fully resolved plan of a selection, as `docker buildx bake --print` shows one:
every cell with its pins, image name, base, template, runtime and serve config."""

from __future__ import annotations

from typing import Any

from flagrelease import naming
from flagrelease.cell_facts import pins, serve_config
from flagrelease.compat import check_cell
from flagrelease.naming import base_reference
from flagrelease.schema import Cell, MatrixFile
from flagrelease.settings import BuildSettings


def cell_plan(cell: Cell, matrix: MatrixFile, build: BuildSettings) -> dict[str, Any]:
    name = naming.repository_name(cell)
    experiment, serve_list = serve_config(cell)
    runtime = cell.chip.runtime
    return {
        "cell": cell.label,
        "chip": cell.chip_id,
        "model": cell.model_id,
        "platform": cell.chip.platform,
        "image": f"{naming.full_repository(None, matrix.release.namespace, name)}:<{matrix.release.timestamp}>",
        "base_image": base_reference(cell.chip.base.image, build.base_mirror),
        "base_made_locally": cell.chip.base.bootstrap is not None,
        "template": str(matrix.dockerfiles / cell.chip.template),
        "pins": pins(cell),
        "runtime": {
            "devices": runtime.devices,
            "mounts": [m.model_dump() for m in runtime.mounts],
            "env": runtime.env,
            "visible_devices_env": runtime.visible_devices_env,
            "gpus": runtime.gpus,
            "shm_size": runtime.shm_size,
            "weights_mount": cell.weights_mount,
        },
        "serve": {"experiment": experiment, "serve": serve_list},
        "violations": [v.model_dump() for v in check_cell(cell, matrix.compatibility)],
    }
