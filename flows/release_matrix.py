"""Prefect flow `release-matrix`: the matrix (or a selection of it) released in one run.

It selects the cells, checks the compatibility rules, groups multi-arch sets, runs the
cells, publishes each set all or nothing, collects every record and summarises them in
a Prefect artifact. `flagrelease build`, `flagrelease release` and the schedules all run it.

- In one process (no PREFECT_API_URL): lanes of cells that share a chip run one after
  another, lanes concurrently up to `jobs`; each cell is a `release-cell` subflow.
- In a fleet (PREFECT_API_URL, after `flagrelease deploy`): each cell is a run of its
  chip pool's `release-cell/<pool>` deployment, all created at once and picked up by the
  workers on the chip hosts. They get the plan as a content-addressed bundle in the
  artifact store, and leave their records there, where this flow reads them back.

A multi-arch set's cells push under staging tags; the set is promoted (release tags,
aliases, cards) only when every cell passed, otherwise the staged images are removed.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from flagrelease import catalog, fanout, progress
from flagrelease.adapters.artifact_store import shared_store, store_from_settings
from flagrelease.compat import ensure_compatible
from flagrelease.errors import FlagReleaseError, ServiceError, ServiceUnavailable
from flagrelease.fanout import CellOutcome, Unit
from flagrelease.matrix import expand, find_matrix, load_matrix, select
from flagrelease.progress import CellFinished, CellsPlanned
from flagrelease.record import RECORD_FILE, ReleaseRecord, new_run_id
from flagrelease.schema import Cell, MatrixFile
from flagrelease.settings import Settings, load_settings
from flagrelease.steps import catalog as catalog_step
from flagrelease.steps import plan_bundle, publish, report
from flows import fleet, stopping
from flows.release_cell import one_cell, release_cell


@flow(name="release-matrix")
def release_matrix(
    model: str | None = None,
    chip: str | None = None,
    matrix: str | None = None,
    registry: str | None = None,
    push: bool = True,
    smoke_timeout_s: float = 180.0,
    jobs: int | None = None,
    local: bool = False,
    force: bool = False,
) -> list[CellOutcome]:
    """Release every selected cell: `release_matrix(model="tiny-llama", chip="cpu")`.

    `local`: run the cells in this process even when a Prefect server is configured.
    `force`: rebuild and re-measure cells even when nothing changed.
    """
    settings = load_settings(registry=registry)
    matrix_file = load_matrix(find_matrix(Path(matrix) if matrix else None))
    cells = select(matrix_file, chip=chip, model=model) if chip or model else expand(matrix_file)
    ensure_compatible(cells, matrix_file.compatibility, str(matrix_file.source))
    plan = fanout.units(cells, push=push)
    logger = get_run_logger()
    progress.emit(logger, CellsPlanned(cells=[cell.slug for unit in plan for cell in unit.cells]))
    options = {"registry": registry, "push": push, "smoke_timeout_s": smoke_timeout_s, "force": force}
    if fleet.api_url() and not local:
        outcomes = _in_fleet(plan, matrix_file, settings, options)
    else:
        outcomes = _in_process(plan, matrix_file, settings, options, jobs or matrix_file.fleet.jobs)
    for outcome in outcomes:  # a set member's status is decided here, after its cell run ended
        progress.emit(logger, CellFinished(cell=outcome.cell, status=outcome.status))
    _summarise(outcomes)
    _catalog_artifact(settings)
    return outcomes


def _in_process(
    plan: list[Unit], matrix: MatrixFile, settings: Settings, options: dict, jobs: int
) -> list[CellOutcome]:
    """Lanes concurrently, up to `jobs`; a lane's units, and a set's cells, in order."""
    runner: ThreadPoolTaskRunner = ThreadPoolTaskRunner(max_workers=jobs)
    with runner:
        futures = [
            runner.submit(run_lane, parameters={"lane": lane, "matrix": str(matrix.source), "options": options})
            for lane in fanout.lanes(plan)
        ]
        try:
            stopping.wait_awake([future.wrapped_future for future in futures])
            done = {o.cell: o for future in futures for o in future.result()}
        except BaseException as err:  # SIGTERM / SIGINT: the cells' threads stop too, and clean up
            stopping.stop_cells(err)
            raise
    return [done[cell.slug] for unit in plan for cell in unit.cells]


@task(name="lane", cache_policy=NO_CACHE)
def run_lane(lane: list[Unit], matrix: str, options: dict) -> list[CellOutcome]:
    outcomes = []
    for unit in lane:
        together = unit.is_set
        members = [_run_here(cell, matrix, options | {"defer_push": together}) for cell in unit.cells]
        if together:
            members = _publish_set(
                members, load_matrix(Path(matrix)), load_settings(registry=options["registry"]), get_run_logger().info
            )
        outcomes += members
    return outcomes


def _run_here(cell: Cell, matrix: str, options: dict) -> CellOutcome:
    run_id = new_run_id()
    try:
        record = release_cell(model=cell.model_id, chip=cell.chip_id, matrix=matrix, run_id=run_id, **options)
    except FlagReleaseError as err:  # a failed cell never stops the others
        return _outcome(cell, run_id, err.record, error=err.render(), exit_code=err.exit_code)
    return _outcome(cell, run_id, record)


def _in_fleet(plan: list[Unit], matrix: MatrixFile, settings: Settings, options: dict) -> list[CellOutcome]:
    """Every cell a deployment run on its pool, all created at once; wait, then read the records."""
    cells = [cell for unit in plan for cell in unit.cells]
    fleet.check_deployed({cell.pool for cell in cells})
    bundle = plan_bundle.publish_bundle(settings, matrix, {cell.model_id for cell in cells})
    sets = {cell.slug: unit.is_set for unit in plan for cell in unit.cells}
    runs = {}
    for cell in cells:
        run_id = new_run_id()
        parameters = {
            "model": cell.model_id,
            "chip": cell.chip_id,
            "bundle": bundle,
            "run_id": run_id,
            "defer_push": sets[cell.slug],
        } | options
        runs[cell.slug] = (run_id, fleet.submit(cell.pool, parameters, key=run_id))
    get_run_logger().info(f"{len(runs)} cell runs created on {len({c.pool for c in cells})} pool(s)")
    latest = fleet.wait(
        [run for _, run in runs.values()], matrix.fleet.deadline_minutes * 60, matrix.fleet.worker_wait_seconds
    )
    store = shared_store(store_from_settings(settings.s3_url, settings.s3_endpoint_url, settings.results_dir))
    outcomes = {}
    for cell in cells:
        run_id, created = runs[cell.slug]
        run = latest.get(str(created.id), created)
        outcomes[cell.slug] = _fleet_outcome(cell, run_id, run, store)
    result = []
    for unit in plan:
        members = [outcomes[cell.slug] for cell in unit.cells]
        result += _publish_set(members, matrix, settings, get_run_logger().info) if unit.is_set else members
    return result


def _fleet_outcome(cell: Cell, run_id: str, run, store) -> CellOutcome:
    url = fleet.run_url(run)
    if fleet.waiting(run):
        why = f"no worker started it: is `flagrelease worker --chip {cell.chip_id}` running (pool {cell.pool})?"
        fleet.cancel(run, why)  # it must not start later, unobserved
        return _outcome(
            cell, run_id, None, status="waiting", error=why, exit_code=ServiceUnavailable.exit_code, url=url
        )
    if not (run.state and run.state.is_final()):
        return _outcome(
            cell,
            run_id,
            None,
            status="timed-out",
            exit_code=ServiceUnavailable.exit_code,
            url=url,
            error=f"still {run.state.name if run.state else 'unknown'} at the deadline (fleet.deadline_minutes)",
        )
    try:
        record = ReleaseRecord.parse(store.get(f"{cell.slug}/{run_id}/{RECORD_FILE}"), store.location)
    except FlagReleaseError as err:
        return _outcome(
            cell,
            run_id,
            None,
            status="crashed",
            exit_code=ServiceError.exit_code,
            url=url,
            error=f"the run ended {run.state.name} without a record in {store.location}: {err.problem}",
        )
    return _outcome(cell, run_id, record, error=record.error, exit_code=record.exit_code, url=url)


def _publish_set(members: list[CellOutcome], matrix: MatrixFile, settings: Settings, on_line) -> list[CellOutcome]:
    """Promote a set whose every cell staged its image, or remove what was staged. A cell found
    unchanged is released already (under the same key): the rest of its set is what is left."""
    pending = [m for m in members if m.status != "unchanged"]
    if not pending:
        return members
    staged = [m.record.staged for m in pending if m.record is not None and m.record.staged is not None]
    registry = staged[0].registry if staged else None
    if len(staged) < len(pending) or registry is None:
        failed = [m.cell for m in pending if m.record is None or m.record.staged is None]
        left = publish.discard_staged(staged, registry, on_line=on_line) if staged and registry else []
        problem = ServiceError(
            f"the set is not published: {', '.join(failed)} did not pass its gate or build"
            + (f"; staged tags left: {'; '.join(left)}" if left else ""),
            where="multi-arch set " + ", ".join(m.cell for m in members),
            fix="a set is released all or nothing; fix the failing cells and release the set again",
        )
        return [
            m
            if m.status == "unchanged"
            else m.model_copy(
                update={"exit_code": max(m.exit_code, problem.exit_code), "error": m.error or problem.render()}
            )
            for m in members
        ]
    try:
        results = publish.promote_set(staged, registry, on_line=on_line)
    except FlagReleaseError as err:
        return [
            m if m.status == "unchanged" else m.model_copy(update={"exit_code": err.exit_code, "error": err.render()})
            for m in members
        ]
    promoted = [m for m in members if m.status == "unchanged"]
    for member, result in zip(pending, results, strict=True):
        assert member.record is not None
        record = member.record.model_copy(update={"status": "released", "publish": result})
        run_dir = record.directory(settings.results_dir)
        _local_copy(record, run_dir, settings)
        record.save(run_dir)
        record.reports = report.publish_reports(
            run_dir, one_cell(matrix, member.model, member.chip), matrix, settings, released=True
        )
        promoted.append(member.model_copy(update={"status": "released", "record": record}))
    return promoted


def _local_copy(record: ReleaseRecord, run_dir: Path, settings: Settings) -> None:
    """The run's files from the shared store, when its cell ran on another host."""
    if (run_dir / RECORD_FILE).is_file():
        return
    store = shared_store(store_from_settings(settings.s3_url, settings.s3_endpoint_url, settings.results_dir))
    for name in [RECORD_FILE, *record.files.values()]:
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / name).write_bytes(store.get(f"{record.cell}/{record.run_id}/{name}"))


def _outcome(
    cell: Cell,
    run_id: str,
    record: ReleaseRecord | None,
    *,
    status=None,
    error: str | None = None,
    exit_code: int = 0,
    url: str | None = None,
) -> CellOutcome:
    return CellOutcome(
        cell=cell.slug,
        model=cell.model_id,
        chip=cell.chip_id,
        pool=cell.pool,
        run_id=run_id,
        status=status or (record.status if record else "failed"),
        exit_code=exit_code,
        error=error,
        flow_run=url,
        record=record,
    )


def _catalog_artifact(settings: Settings) -> None:
    """The latest qualified release per model x chip after this run, as a Prefect table artifact
    (what `flagrelease catalog` publishes as a site). A store it cannot read costs the artifact,
    not the run."""
    try:
        records, _ = catalog_step.catalog_records(settings, "s3" if settings.s3_url else "local")
    except FlagReleaseError as err:
        get_run_logger().warning(f"no release-catalog artifact: {err.render()}")
        return
    create_table_artifact(
        table=catalog.table_rows(catalog.latest_qualified(records)),
        key="release-catalog",
        description="FlagRelease catalog: the latest qualified release of every model x chip",
    )


def _summarise(outcomes: list[CellOutcome]) -> None:
    """The matrix table as Prefect artifacts: one row per cell, linked to its run."""
    rows = []
    for o in outcomes:
        record = o.record
        rows.append(
            {
                "cell": o.cell,
                "pool": o.pool,
                "status": o.status,
                "digest": record.publish.digest if record and record.publish else "",
                "gate": record.gate.verdict if record and record.gate else "",
                "seconds": f"{sum(record.timings.values()):.1f}" if record else "",
                "run": o.flow_run or "",
            }
        )
    create_table_artifact(table=rows, key="release-matrix", description="FlagRelease matrix run")
    lines = ["| cell | pool | status | gate | digest | s | run |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        link = f"[{row['run'].rsplit('/', 1)[-1][:8]}]({row['run']})" if row["run"] else ""
        lines.append(
            f"| {row['cell']} | {row['pool']} | **{row['status']}** | {row['gate']} | "
            f"`{row['digest'][:19]}` | {row['seconds']} | {link} |"
        )
    create_markdown_artifact(
        markdown="\n".join(lines),
        key="release-matrix-summary",
        description="FlagRelease matrix run, linked to its cell runs",
    )
