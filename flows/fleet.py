"""Prefect's distributed engine, as FlagRelease uses it: work pools per chip, deployments,
workers, the global limit on cells at once, and waiting for cell runs on other hosts.

Only Prefect calls live here; what to run where is decided in flagrelease.fanout.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
    WorkPoolCreate,
    WorkPoolUpdate,
)
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, WorkerFilter, WorkerFilterStatus
from prefect.client.schemas.objects import FlowRun
from prefect.concurrency.sync import concurrency
from prefect.deployments import run_deployment
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.schedules import Cron
from prefect.utilities.urls import url_for
from prefect.workers.process import ProcessWorker

from flagrelease.errors import ConfigError
from flagrelease.schema import MatrixFile

# Every cell run holds one slot of this Prefect global concurrency limit (`fleet.concurrency`).
CELL_LIMIT = "flagrelease-cells"
CELL_DEPLOYMENT = "release-cell"
MATRIX_DEPLOYMENT = "release-matrix"
WATCH_DEPLOYMENT = "watch-upstream"


def api_url() -> str | None:
    """The Prefect server a fleet runs on; None means this process's embedded server."""
    return os.environ.get("PREFECT_API_URL") or None


def require_server(what: str) -> str:
    url = api_url()
    if url is None:
        raise ConfigError(
            f"{what} needs a Prefect server, and PREFECT_API_URL is not set",
            where="PREFECT_API_URL",
            fix="start one (`prefect server start --host 127.0.0.1`) and export "
            "PREFECT_API_URL=http://127.0.0.1:4200/api on this host",
        )
    with get_client(sync_client=True) as client:
        try:
            client.api_healthcheck()
            client.read_work_pools(limit=1)
        except Exception as err:  # any transport or HTTP failure: the server is not usable
            raise ConfigError(
                f"the Prefect server at {url} cannot be reached: {type(err).__name__}: {str(err)[:200]}",
                where=f"PREFECT_API_URL={url}",
                fix="start the server or correct PREFECT_API_URL; nothing was registered",
            ) from None
    return url


@contextmanager
def cell_slot(cell: str, *, in_fleet: bool) -> Iterator[None]:
    """Hold one of the fleet's cell slots while a cell runs. Out of a fleet (this process's
    embedded server, which starts with no limits) there is nothing to hold: the cell runs at
    once, and on one host the cell lock (adapters/cell_lock.py) refuses a second run of it.

    In a fleet, also hold the cell's own limit of one, so a second run of the cell on another
    host waits for the first instead of pushing over it. Created on first use: a matrix of
    many cells needs no limit per cell before one runs."""
    if not in_fleet:
        yield
        return
    with get_client(sync_client=True) as client:
        names = [CELL_LIMIT, ensure_one_run_limit(client, cell)]
    # A slot is leased, renewed while the run lives: a run killed outright frees it when the
    # lease runs out. 60 s, Prefect's shortest, is how long the next run of the cell waits then.
    with concurrency(names, occupy=1, strict=False, lease_duration=60):
        yield


def ensure_one_run_limit(client: SyncPrefectClient, cell: str) -> str:
    """The global concurrency limit of one that runs of `cell` share; its name."""
    name = f"{CELL_LIMIT}-{cell}"
    try:
        client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        with contextlib.suppress(ObjectAlreadyExists):  # another host's run created it meanwhile
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
    return name


def ensure_pool(client: SyncPrefectClient, name: str, limit: int, description: str) -> str:
    """Create or update a process work pool; 'created', 'updated' or 'unchanged'."""
    try:
        pool = client.read_work_pool(name)
    except ObjectNotFound:
        try:
            client.create_work_pool(
                WorkPoolCreate(
                    name=name,
                    type="process",
                    description=description,
                    concurrency_limit=limit,
                    base_job_template=ProcessWorker.get_default_base_job_template(),
                )
            )
            return "created"
        except ObjectAlreadyExists:  # another `deploy` created it meanwhile
            pool = client.read_work_pool(name)
    if pool.type != "process":
        raise ConfigError(
            f"work pool {name} exists with type {pool.type!r}; FlagRelease runs cells in process pools",
            where=f"Prefect work pool {name}",
            fix="delete that pool or give the chip another `pool:` in matrix.yaml",
        )
    if pool.concurrency_limit == limit and (pool.description or "") == description:
        return "unchanged"
    client.update_work_pool(name, WorkPoolUpdate(concurrency_limit=limit, description=description))
    return "updated"


def ensure_cell_limit(client: SyncPrefectClient, limit: int) -> str:
    try:
        found = client.read_global_concurrency_limit_by_name(CELL_LIMIT)
    except ObjectNotFound:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=CELL_LIMIT, limit=limit))
        return "created"
    if found.limit == limit and found.active:
        return "unchanged"
    client.update_global_concurrency_limit(CELL_LIMIT, GlobalConcurrencyLimitUpdate(limit=limit, active=True))
    return "updated"


def register(matrix: MatrixFile, pools: dict[str, list[str]], registry: str | None) -> dict[str, str]:
    """Pools, the cell limit and the deployments, on the server at PREFECT_API_URL; what was done.
    Idempotent: deployments are created or updated by name."""
    from flows.release_cell import release_cell
    from flows.release_matrix import release_matrix
    from flows.watch_upstream import watch_upstream

    fleet = matrix.fleet
    if fleet.orchestrator_pool in pools:
        raise ConfigError(
            f"fleet.orchestrator_pool {fleet.orchestrator_pool} is also a chip's pool",
            where=f"{matrix.source}: fleet.orchestrator_pool",
            fix="give the orchestrator a pool of its own: a matrix run waits for its cells, which need the slot",
        )
    done: dict[str, str] = {}
    with get_client(sync_client=True) as client:
        for pool, chips in pools.items():
            limit = fleet.pool_concurrency.get(pool, fleet.default_pool_concurrency)
            done[f"pool {pool}"] = ensure_pool(client, pool, limit, f"FlagRelease cells of {', '.join(chips)}")
        done[f"pool {fleet.orchestrator_pool}"] = ensure_pool(
            client, fleet.orchestrator_pool, 1, "FlagRelease orchestrator: scheduled release-matrix runs"
        )
        done[f"limit {CELL_LIMIT}"] = ensure_cell_limit(client, fleet.concurrency)
    for pool, chips in pools.items():
        deployment = cast(
            RunnerDeployment,
            release_cell.to_deployment(
                name=pool,
                entrypoint_type=EntrypointType.MODULE_PATH,  # the worker imports the installed flows package
                work_pool_name=pool,
                tags=["flagrelease", *chips],
                description=f"One FlagRelease cell on a host of {', '.join(chips)}",
            ),
        )
        done[f"deployment {CELL_DEPLOYMENT}/{pool}"] = str(deployment.apply())
    assert matrix.source is not None
    schedules = [Cron(s.cron, timezone=s.timezone, slug=s.name, parameters={"force": s.force}) for s in fleet.schedules]
    deployment = cast(
        RunnerDeployment,
        release_matrix.to_deployment(
            name=Path(matrix.source).stem,
            entrypoint_type=EntrypointType.MODULE_PATH,
            work_pool_name=fleet.orchestrator_pool,
            parameters={"matrix": str(matrix.source), "registry": registry},
            schedules=schedules,
            tags=["flagrelease"],
            description=f"FlagRelease of {matrix.source}",
        ),
    )
    name = f"{MATRIX_DEPLOYMENT}/{Path(matrix.source).stem}"
    done[f"deployment {name}"] = str(deployment.apply())
    done |= _prune_schedules(name, {s.name for s in fleet.schedules})
    # The upstream watch: scheduled runs report and may build candidates; they never apply.
    watch = matrix.watch
    deployment = cast(
        RunnerDeployment,
        watch_upstream.to_deployment(
            name=Path(matrix.source).stem,
            entrypoint_type=EntrypointType.MODULE_PATH,
            work_pool_name=fleet.orchestrator_pool,
            parameters={"matrix": str(matrix.source), "index": watch.index, "registry": registry},
            schedules=[
                Cron(s.cron, timezone=s.timezone, slug=s.name, parameters={"build": s.build}) for s in watch.schedules
            ],
            tags=["flagrelease"],
            description=f"FlagRelease upstream watch of {matrix.source}",
        ),
    )
    name = f"{WATCH_DEPLOYMENT}/{Path(matrix.source).stem}"
    done[f"deployment {name}"] = str(deployment.apply())
    done |= _prune_schedules(name, {s.name for s in watch.schedules})
    return done


def _prune_schedules(deployment: str, wanted: set[str]) -> dict[str, str]:
    """Prefect upserts schedules by slug but never drops one: remove those matrix.yaml dropped."""
    removed = {}
    with get_client(sync_client=True) as client:
        registered = client.read_deployment_by_name(deployment)
        for schedule in registered.schedules:
            if schedule.slug not in wanted:
                client.delete_deployment_schedule(deployment_id=registered.id, schedule_id=schedule.id)
                removed[f"schedule {deployment} {schedule.slug}"] = "removed"
    return removed


def check_deployed(pools: set[str]) -> None:
    """Every pool's cell deployment exists: checked before any run is created, so a missing
    one never leaves the other cells' runs behind."""
    with get_client(sync_client=True) as client:
        for pool in sorted(pools):
            try:
                client.read_deployment_by_name(f"{CELL_DEPLOYMENT}/{pool}")
            except ObjectNotFound:
                raise ConfigError(
                    f"no deployment {CELL_DEPLOYMENT}/{pool} on the Prefect server at {api_url()}",
                    where=f"work pool {pool}",
                    fix="run `flagrelease deploy` with this matrix first (or `--local` to run in this process)",
                ) from None


def submit(pool: str, parameters: dict, key: str) -> FlowRun:
    """A run of the pool's cell deployment, scheduled now; returns at once (timeout=0).
    `key` makes it idempotent: a retried parent does not start the cell twice."""
    try:
        return cast(
            FlowRun,
            run_deployment(
                f"{CELL_DEPLOYMENT}/{pool}",
                parameters=parameters,
                timeout=0,
                as_subflow=True,
                tags=["flagrelease"],
                idempotency_key=key,
            ),
        )
    except ObjectNotFound:
        raise ConfigError(
            f"no deployment {CELL_DEPLOYMENT}/{pool} on the Prefect server at {api_url()}",
            where=f"work pool {pool}",
            fix="run `flagrelease deploy` with this matrix first",
        ) from None


def wait(runs: list[FlowRun], deadline_s: float, worker_wait_s: float, poll_s: float = 2.0) -> dict[str, FlowRun]:
    """Poll the runs until all are final or the deadline passes, or until the ones left
    cannot start: none is running and their pools have had no worker online for
    `worker_wait_s`. The runs as last read, by id."""
    ids = [run.id for run in runs]
    deadline = time.monotonic() + deadline_s
    workerless_since: float | None = None
    with get_client(sync_client=True) as client:
        while True:
            current = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=len(ids))
            latest = {str(run.id): run for run in current}
            pending = [run for run in current if not (run.state and run.state.is_final())]
            if not pending or time.monotonic() > deadline:
                return latest
            stuck = all(waiting(run) and not online_workers(client, run.work_pool_name) for run in pending)
            workerless_since = (workerless_since or time.monotonic()) if stuck else None
            if workerless_since is not None and time.monotonic() - workerless_since >= worker_wait_s:
                return latest  # nothing runs and nothing can: no worker for what is left
            time.sleep(poll_s)


def online_workers(client: SyncPrefectClient, pool: str | None) -> list[str]:
    if pool is None:
        return []
    found = client.read_workers_for_work_pool(
        pool, worker_filter=WorkerFilter(status=WorkerFilterStatus(any_=["ONLINE"]))
    )
    return [worker.name for worker in found]


def cancel(run: FlowRun, why: str) -> None:
    from prefect.states import Cancelled

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run.id, Cancelled(message=why), force=True)


def waiting(run: FlowRun) -> bool:
    """Scheduled (or Late) or Pending: created, not yet picked up by a worker."""
    return run.state is not None and run.state.type.value in ("SCHEDULED", "PENDING")


def run_url(run: FlowRun) -> str | None:
    return url_for("flow-run", obj_id=run.id)
