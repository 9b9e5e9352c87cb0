"""Scheduled deployments of `release-cell`: one per cell of the matrix, nightly by default.

Serve them from a chip host (each host serves the cells of its chips):

    python -m flows.deployments --chip ascend            # long-running, polls the Prefect API
    PREFECT_API_URL=http://prefect:4200/api python -m flows.deployments --cron "0 2 * * *"

or register them with a work pool and run `prefect worker start --pool P` on the hosts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prefect import serve

from flagrelease.matrix import expand, find_matrix, load_matrix, select
from flows.release_cell import release_cell

NIGHTLY = "0 2 * * *"


def deployments(
    matrix: Path | None = None,
    *,
    chip: str | None = None,
    model: str | None = None,
    cron: str = NIGHTLY,
    registry: str | None = None,
) -> list:
    matrix_file = load_matrix(find_matrix(matrix))
    cells = select(matrix_file, chip=chip, model=model) if chip or model else expand(matrix_file)
    return [
        release_cell.to_deployment(
            name=cell.slug,
            cron=cron,
            tags=[cell.chip.vendor, cell.chip_id, cell.model_id],
            parameters={
                "model": cell.model_id,
                "chip": cell.chip_id,
                "registry": registry,
                "matrix": str(matrix_file.source),
            },
            description=f"Nightly FlagRelease of {cell.label}",
        )
        for cell in cells
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--matrix", type=Path)
    parser.add_argument("--chip")
    parser.add_argument("--model")
    parser.add_argument("--cron", default=NIGHTLY)
    parser.add_argument("--registry")
    args = parser.parse_args()
    serve(*deployments(args.matrix, chip=args.chip, model=args.model, cron=args.cron, registry=args.registry))


if __name__ == "__main__":
    main()
