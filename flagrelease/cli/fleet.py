"""`flagrelease deploy` and `flagrelease worker`: the matrix on a Prefect server and its chip hosts.

prefect server start --host 127.0.0.1          # the orchestrator host (or any reachable one)
export PREFECT_API_URL=http://127.0.0.1:4200/api
flagrelease deploy --registry harbor.example.com
flagrelease worker --chip ascend-a3            # on every chip host, for its chip
flagrelease worker --orchestrator              # on the host that runs scheduled matrix runs
flagrelease release                            # fans the cells out to the workers
"""

from __future__ import annotations

import difflib
import json
import os
import socket
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from flagrelease import fanout
from flagrelease.cli.common import JsonOpt, MatrixOpt, fail, out
from flagrelease.errors import ConfigError, FlagReleaseError
from flagrelease.matrix import expand, find_matrix, load_matrix
from flagrelease.schema import pool_of


def deploy(
    matrix: Optional[Path] = MatrixOpt,
    registry: Optional[str] = typer.Option(
        None, "--registry", envvar="FLAGRELEASE_REGISTRY", help="HOST:PORT scheduled matrix runs push to"
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Register the fleet on the Prefect server at PREFECT_API_URL (idempotent).

    Creates a process work pool per chip pool (`chips.<id>.pool`, default flagrelease-<chip id>)
    and the orchestrator pool, with their concurrency limits; the global limit on cells at once
    (fleet.concurrency); a `release-cell/<pool>` deployment per pool; and the `release-matrix`
    deployment with the schedules of fleet.schedules.

    Example: PREFECT_API_URL=http://127.0.0.1:4200/api flagrelease deploy --registry harbor.example.com
    """
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        matrix_file = load_matrix(find_matrix(matrix))
        pools = fanout.pools(expand(matrix_file))
        from flows import fleet  # Prefect loads here, not at start-up

        url = fleet.require_server("flagrelease deploy")
        done = fleet.register(matrix_file, pools, registry)
    except FlagReleaseError as err:
        fail(err, as_json)
    if as_json:
        print(json.dumps({"server": url, "registered": done}, indent=2))
        return
    table = Table(title=f"registered on {url}", show_header=False, title_justify="left")
    for what, result in done.items():
        table.add_row(what, result)
    out.print(table)


def worker(
    chip: Optional[str] = typer.Option(None, "--chip", "-c", help="the chip of this host, e.g. ascend-a3"),
    orchestrator: bool = typer.Option(False, "--orchestrator", help="serve scheduled release-matrix runs instead"),
    matrix: Optional[Path] = MatrixOpt,
) -> None:
    """Start a Prefect process worker for this host's chip pool (runs until stopped).

    The same as `prefect worker start --pool <pool> --type process`, with the pool
    looked up in matrix.yaml. The worker's flow runs inherit this environment
    (FLAGRELEASE_HOME, FLAGRELEASE_S3_URL, registry credentials).
    Examples:
      flagrelease worker --chip ascend-a3
      flagrelease worker --orchestrator
    """
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        matrix_file = load_matrix(find_matrix(matrix))
        if orchestrator == (chip is not None):
            raise ConfigError(
                "give either --chip ID or --orchestrator",
                where="flagrelease worker",
                fix="e.g. flagrelease worker --chip " + next(iter(matrix_file.chips)),
            )
        if chip is not None and chip not in matrix_file.chips:
            near = difflib.get_close_matches(chip, list(matrix_file.chips), n=1)
            raise ConfigError(
                f"unknown chip {chip!r}" + (f"; did you mean {near[0]!r}?" if near else ""),
                where=f"{matrix_file.source}: chips",
                fix=f"use one of: {', '.join(sorted(matrix_file.chips))}",
            )
        pool = matrix_file.fleet.orchestrator_pool if chip is None else pool_of(chip, matrix_file.chips[chip])
        from flows import fleet

        fleet.require_server("flagrelease worker")
    except FlagReleaseError as err:
        fail(err, False)
    prefect = str(Path(sys.executable).parent / "prefect")
    name = f"{socket.gethostname()}-{chip or 'orchestrator'}"
    out.print(f"worker {name} polls pool {pool}; stop it with Ctrl-C")
    sys.stdout.flush()
    os.execv(prefect, [prefect, "worker", "start", "--pool", pool, "--type", "process", "--name", name])
