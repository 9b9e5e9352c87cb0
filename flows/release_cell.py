"""Prefect flow `release-cell`: one cell of the matrix, preflight -> registry -> base ->
weights -> render -> key -> stack -> build -> smoke -> bench (native, flaggems) -> gate ->
push -> reports.

After `key`, a cell whose release key the registry already serves is `unchanged`: the
run stops there, having built, started and pushed nothing. A failed run of the same key
is resumed: its image and completed measurements are taken over (steps/incremental.py).
The record is saved after every stage from the build on, so even a killed run can be resumed.

Only wiring lives here; every step is a plain function in `flagrelease.steps`.
`release-matrix` (flows/release_matrix.py) runs it: as a subflow in one process, or as
a run of the `release-cell/<pool>` deployment on a chip host's worker.
"""

from __future__ import annotations

import time
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flagrelease import naming, progress
from flagrelease.adapters import docker_engine
from flagrelease.adapters.cell_lock import CellLock, home_id
from flagrelease.adapters.ledger import Ledger
from flagrelease.baseline import Reference
from flagrelease.cell_facts import flaggems_installed
from flagrelease.errors import (
    ConfigError,
    FlagReleaseError,
    GateFailed,
    Interrupted,
    ServiceError,
    ServiceUnavailable,
)
from flagrelease.matrix import find_matrix, load_matrix, select
from flagrelease.progress import CellFinished, CellStarted, StageFinished, StageStarted
from flagrelease.provenance import BuildInputs
from flagrelease.record import ReleaseRecord, new_run_id
from flagrelease.results import (
    BaseImageResult,
    BuildContext,
    ExistingRelease,
    GateReport,
    ImageRef,
    PublishResult,
    ReferenceScore,
    ReportResult,
    SideResult,
    SmokeResult,
    StackImage,
    StagedImage,
)
from flagrelease.schema import Cell, MatrixFile
from flagrelease.settings import Settings, load_settings
from flagrelease.steps import (
    attest,
    base_image,
    bench,
    build,
    gate,
    incremental,
    plan_bundle,
    provenance,
    publish,
    reference,
    release_key,
    render,
    report,
    smoke,
    weights,
)
from flagrelease.steps.preflight import check_index_pins, preflight
from flagrelease.supply_chain import SBOM_KIND, Attestation
from flows import fleet, stopping
from flows.console_logging import hide_handled_failures
from flows.fleet import cell_slot
from flows.run_log import run_log, run_logger

hide_handled_failures()  # the CLI prints handled failures itself; their tracebacks stay in the run log


def _log(line: str) -> None:
    run_logger().info(line)


@task(name="preflight", cache_policy=NO_CACHE)
def preflight_task(cell: Cell, matrix: MatrixFile, settings: Settings) -> None:
    preflight(cell, matrix, docker_engine.connect(), settings.build)


@task(name="registry", cache_policy=NO_CACHE)
def registry_task(settings: Settings, cell: Cell, namespace: str) -> str:
    repositories = [naming.repository_name(cell), naming.stack_repository_name(cell)]
    return publish.resolve_registry(settings, [naming.full_repository(None, namespace, r) for r in repositories])


@task(name="weights", cache_policy=NO_CACHE)
def weights_task(cell: Cell, settings: Settings) -> Path:
    return weights.ensure_weights(cell, settings.weights_dir / cell.model_id, settings.s3_endpoint_url)


@task(name="base-image", cache_policy=NO_CACHE)
def base_task(cell: Cell, settings: Settings) -> BaseImageResult:
    ref = naming.base_reference(cell.chip.base.image, settings.build.base_mirror)
    return base_image.ensure_base(docker_engine.connect(), cell.chip, cell.chip_id, ref, settings.home / "tmp", _log)


@task(name="render", cache_policy=NO_CACHE)
def render_task(cell: Cell, matrix: MatrixFile, settings: Settings, run_id: str) -> BuildContext:
    return render.render_context(cell, matrix, settings.build, settings.contexts_dir / cell.slug / run_id)


@task(name="reference", cache_policy=NO_CACHE)
def reference_task(cell: Cell, matrix: MatrixFile, settings: Settings) -> Reference | None:
    return reference.resolve(cell, matrix, settings)


@task(name="key", cache_policy=NO_CACHE)
def key_task(
    cell: Cell,
    matrix: MatrixFile,
    ctx: BuildContext,
    base: BaseImageResult,
    weights_dir: Path,
    settings: Settings,
    against: Reference | None,
) -> dict[str, str]:
    digests = settings.home / "cache/file-digests.json"
    return release_key.key_parts(cell, matrix, ctx, base, weights_dir, digests, against)


@task(name="released-before", cache_policy=NO_CACHE)
def released_before_task(
    cell: Cell, registry: str, repository: str, key: str, settings: Settings
) -> ExistingRelease | None:
    return incremental.released_before(
        registry, repository, key, Ledger(settings.ledger_path), cell.model_id, cell.chip_id
    )


@task(name="resume", cache_policy=NO_CACHE)
def resume_task(cell: Cell, record: ReleaseRecord, settings: Settings, tag: str) -> None:
    client = docker_engine.connect()
    found = incremental.resumable(client, settings.results_dir, cell.slug, record.release_key or "")
    if found:
        incremental.take_over(client, record, *found, tag)
        _log(f"resuming run {record.resumed_from}: taking over {', '.join(record.reused)}")


@task(name="stack", cache_policy=NO_CACHE)
def stack_task(
    cell: Cell,
    matrix: MatrixFile,
    ctx: BuildContext,
    base: BaseImageResult,
    settings: Settings,
    namespace: str,
    registry: str | None,
) -> StackImage:
    def pins_on_index() -> None:
        _log(f"preflight: the pins {cell.chip_id} installs from the package index")
        check_index_pins(cell, matrix, settings.build)

    return build.ensure_stack(
        docker_engine.connect(),
        cell,
        ctx,
        base,
        settings.build,
        repository=naming.full_repository(None, namespace, ctx.stack.repository_name),
        registry=registry,
        on_line=_log,
        before_build=pins_on_index,
    )


@task(name="build", cache_policy=NO_CACHE)
def build_task(
    cell: Cell,
    ctx: BuildContext,
    stack: StackImage,
    settings: Settings,
    repository: str,
    tag: str,
    key: str,
    force: bool,
) -> ImageRef:
    return build.build_image(
        docker_engine.connect(),
        cell,
        ctx,
        stack,
        settings.build,
        repository=repository,
        tag=tag,
        release_key=key,
        force=force,
        on_line=_log,
    )


@task(name="reap", cache_policy=NO_CACHE)
def reap_task(cell: Cell, settings: Settings, home: str, run_id: str) -> None:
    """What dead runs of this cell left (this run holds the cell's lock, so no other lives):
    their containers, and records still saying `running`, which now say `interrupted`."""
    for name in docker_engine.remove_containers_of_others(docker_engine.connect(), cell.slug, home, run_id):
        get_run_logger().warning(f"removed {name}, left behind by an earlier run of {cell.slug} that was killed")
    for dead in report.mark_dead_runs(settings.results_dir, cell.slug, run_id):
        get_run_logger().warning(f"run {dead} of {cell.slug} was killed before it ended: its record says interrupted")


@task(name="smoke", cache_policy=NO_CACHE)
def smoke_task(cell: Cell, image: ImageRef, weights_dir: Path, run_id: str, home: str, timeout_s: float) -> SmokeResult:
    options = smoke.run_options(cell, weights_dir)
    return smoke.smoke_test(
        docker_engine.connect(),
        image.image_id,
        cell,
        options,
        owner=run_id,
        timeout_s=timeout_s,
        on_line=_log,
        home=home,
    )


@task(name="bench", cache_policy=NO_CACHE)
def bench_task(
    cell: Cell, matrix: MatrixFile, image: ImageRef, weights_dir: Path, run_id: str, home: str, timeout_s: float
) -> dict[str, SideResult]:
    return bench.measure_sides(
        docker_engine.connect(),
        image.image_id,
        cell,
        matrix,
        weights_dir,
        owner=run_id,
        timeout_s=timeout_s,
        on_line=_log,
        home=home,
    )


@task(name="gate", cache_policy=NO_CACHE)
def gate_task(
    cell: Cell, sides: dict[str, SideResult], against: Reference | None
) -> tuple[GateReport, dict[str, ReferenceScore]]:
    decision, compared = gate.judge(sides, against, cell.model.bench.gate)
    for verdict in decision.accuracy:
        _log(f"gate {verdict.verdict}: {verdict.reason} (vs {compared[verdict.benchmark].against})")
    _log(f"gate: {decision.verdict}: {decision.reason}")
    return decision, compared


def _retry_push(task, task_run, state) -> bool:
    """Retry a push only when the registry or dockerd was unavailable, never a refusal that
    would only repeat itself (an immutable tag, wrong credentials, a read-only registry)."""
    try:
        state.result()
    except ServiceUnavailable:
        return True
    except Exception:
        return False
    return False


@task(name="push-stack", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=3, retry_condition_fn=_retry_push)
def push_stack_task(stack: StackImage, registry: str, repository: str) -> str:
    return publish.push_stack(docker_engine.connect(), stack, registry, repository, on_line=_log)


@task(name="sbom", cache_policy=NO_CACHE)
def sbom_task(image: ImageRef, matrix: MatrixFile, run_dir: Path, labels: dict[str, str]) -> Attestation:
    return attest.make_sbom(docker_engine.connect(), image, matrix.release.sbom, run_dir, labels=labels)


@task(name="provenance-inputs", cache_policy=NO_CACHE)
def provenance_inputs_task(
    matrix_path: Path,
    matrix: MatrixFile,
    cell: Cell,
    ctx: BuildContext,
    base: BaseImageResult,
    parameters: dict,
    settings: Settings,
) -> BuildInputs:
    client = docker_engine.connect()
    return provenance.build_inputs(client, matrix_path, matrix, cell, ctx, base, parameters, settings.build)


class _Attacher:
    """publish's `attach`: the run's SBOM and provenance onto the digest it is given; what it attached."""

    def __init__(self, registry: str, repository: str, run_dir: Path, record: ReleaseRecord, inputs: BuildInputs):
        self.where, self.run_dir, self.record, self.inputs = (registry, repository), run_dir, record, inputs
        self.attached: dict[str, Attestation] = {}

    def __call__(self, digest: str) -> list[str]:
        registry, repository = self.where
        documents = attest.attach_documents(registry, repository, digest, self.run_dir, self.record, self.inputs, _log)
        self.attached.update(documents)
        return [a.manifest_digest for a in documents.values() if a.manifest_digest]


@task(name="push", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=3, retry_condition_fn=_retry_push)
def push_task(
    image: ImageRef,
    registry: str,
    repository: str,
    tag: str,
    aliases: list[str],
    key: str | None,
    record: ReleaseRecord,
    inputs: BuildInputs,
    run_dir: Path,
) -> tuple[PublishResult, dict[str, Attestation]]:
    """Push, attach the SBOM and provenance to the pushed digest, then move the aliases."""
    attach = _Attacher(registry, repository, run_dir, record, inputs)
    result = publish.push_release(
        docker_engine.connect(),
        image.image_id,
        registry,
        repository,
        tag,
        aliases=aliases,
        on_line=_log,
        key=key,
        attach=attach,
    )
    return result, attach.attached


@task(name="stage", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=3, retry_condition_fn=_retry_push)
def stage_task(
    image: ImageRef,
    registry: str,
    repository: str,
    tag: str,
    aliases: list[str],
    key: str,
    record: ReleaseRecord,
    inputs: BuildInputs,
    run_dir: Path,
) -> tuple[StagedImage, dict[str, Attestation]]:
    """Stage a set member, with its SBOM and provenance attached to the staged digest."""
    attach = _Attacher(registry, repository, run_dir, record, inputs)
    item = publish.PublishItem(
        image_id=image.image_id, repository=repository, tag=tag, aliases=aliases, key_tag=naming.key_tag(key)
    )
    return publish.stage(docker_engine.connect(), item, registry, on_line=_log, attach=attach), attach.attached


@task(name="reports", cache_policy=NO_CACHE)
def reports_task(run_dir: Path, cell: Cell, matrix: MatrixFile, settings: Settings, released: bool) -> ReportResult:
    result = report.publish_reports(run_dir, cell, matrix, settings, released=released)
    for copy in result.stores:
        if copy.ok:
            _log(f"stored {copy.files} files in {copy.store}")
        else:
            get_run_logger().warning(f"not stored in {copy.store} (the local copy stays): {copy.error}")
    return result


@contextmanager
def _timed(record: ReleaseRecord, stage: str):
    """Time a stage into the record and report its start and its end as progress events."""
    logger = run_logger()
    progress.emit(logger, StageStarted(cell=record.cell, stage=stage))
    started, completed = time.monotonic(), False
    try:
        yield
        completed = True
    finally:
        seconds = record.timings[stage] = round(time.monotonic() - started, 2)
        ok = completed and progress.stage_passed(stage, record)
        result = progress.stage_result(stage, record) if completed else ""
        progress.emit(logger, StageFinished(cell=record.cell, stage=stage, ok=ok, seconds=seconds, result=result))


def one_cell(matrix: MatrixFile, model: str, chip: str) -> Cell:
    cells = select(matrix, chip=chip, model=model)
    if len(cells) != 1:
        raise ConfigError(
            f"release-cell takes one cell; {model} x {chip} selects {len(cells)}",
            fix="pass a chip id, not a vendor family",
        )
    return cells[0]


@flow(name="release-cell")
def release_cell(
    model: str,
    chip: str,
    matrix: str | None = None,
    registry: str | None = None,
    push: bool = True,
    smoke_timeout_s: float = 180.0,
    defer_push: bool = False,
    bundle: str | None = None,
    run_id: str | None = None,
    force: bool = False,
) -> ReleaseRecord:
    """Release one cell: `release_cell("tiny-llama", "cpu")`.

    `defer_push`: a member of a multi-arch set; push it under its staging tag only and
    leave the release tag (and the card) to the set, which is published all or nothing.
    `bundle`: the digest of the plan bundle in the artifact store to take the matrix from
    (how a fleet worker runs exactly what the orchestrator planned) instead of `matrix`.
    `run_id`: chosen by the caller that will look for this run's record.
    `force`: build and measure again even when the registry holds a release of the
    same key or an earlier run could be resumed.
    """
    settings = load_settings(registry=registry)
    matrix_path = (
        plan_bundle.fetch_bundle(settings, bundle) if bundle else find_matrix(Path(matrix) if matrix else None)
    )
    matrix_file = load_matrix(matrix_path)
    cell = one_cell(matrix_file, model, chip)
    run_id = run_id or new_run_id()
    tag = naming.timestamp_tag(timestamp=matrix_file.release.timestamp)
    record = ReleaseRecord(
        run_id=run_id, started=datetime.now(UTC), cell=cell.slug, model=cell.model_id, chip=cell.chip_id
    )
    namespace = matrix_file.release.namespace
    interrupted = False
    # Before anything is written: a second run of the cell is refused here and leaves nothing.
    lock = CellLock(settings.home, cell.slug, run_id).acquire()
    home = home_id(settings.home)
    slot = ExitStack()
    run_dir = record.directory(settings.results_dir)
    with run_log(run_dir / report.RUN_LOG) as log_path:
        progress.emit(run_logger(), CellStarted(cell=cell.slug, run_id=run_id, log=str(log_path)))
        try:
            with stopping.stoppable():  # SIGTERM / SIGINT reach this thread (flows/stopping.py)
                with _timed(record, "queued"):
                    # The fleet's limit on cells at once, where one is set, and on runs of this cell.
                    slot.enter_context(cell_slot(cell.slug, in_fleet=fleet.api_url() is not None))
                with _timed(record, "preflight"):
                    preflight_task(cell, matrix_file, settings)
                    reap_task(cell, settings, home, run_id)
                with _timed(record, "registry"):
                    registry_addr = record.registry = registry_task(settings, cell, namespace) if push else None
                with _timed(record, "base"):
                    record.base = base_task(cell, settings)
                with _timed(record, "weights"):
                    weights_dir = weights_task(cell, settings)
                with _timed(record, "render"):
                    ctx = render_task(cell, matrix_file, settings, run_id)
                record.pins, record.context_hash = ctx.pins, ctx.model.context_hash
                repository = naming.full_repository(None, namespace, ctx.model.repository_name)
                with _timed(record, "reference"):
                    against = reference_task(cell, matrix_file, settings)
                with _timed(record, "key"):
                    record.key_parts = key_task(cell, matrix_file, ctx, record.base, weights_dir, settings, against)
                    key = record.release_key = release_key.release_key(record.key_parts)
                    if registry_addr is not None and not force:
                        record.unchanged = released_before_task(cell, registry_addr, repository, key, settings)
                if record.unchanged is not None:
                    record.status = "unchanged"
                    _log(f"unchanged: {record.unchanged.pull_ref} (tag {record.unchanged.tag}) is this release key")
                    return record
                if not force:
                    resume_task(cell, record, settings, tag)
                with _timed(record, "stack"):
                    record.stack = stack_task(cell, matrix_file, ctx, record.base, settings, namespace, registry_addr)
                if record.image is None:
                    with _timed(record, "build"):
                        record.image = build_task(cell, ctx, record.stack, settings, repository, tag, key, force)
                    _checkpoint(record, settings)
                if record.smoke is None:
                    with _timed(record, "smoke"):
                        record.smoke = smoke_task(cell, record.image, weights_dir, run_id, home, smoke_timeout_s)
                    _checkpoint(record, settings)
                if not record.smoke.passed:
                    raise ServiceError(
                        f"smoke test failed: {record.smoke.error}\n--- container log (tail) ---\n"
                        + "\n".join(record.smoke.log.splitlines()[-25:]),
                        where=f"image {record.image.ref}",
                        fix=f"full log: {record.directory(settings.results_dir) / 'smoke.log'}",
                    )
                if not record.bench:
                    record.flaggems_installed = flaggems_installed(cell)
                    with _timed(record, "bench"):
                        record.bench = bench_task(
                            cell, matrix_file, record.image, weights_dir, run_id, home, smoke_timeout_s
                        )
                    _checkpoint(record, settings)
                with _timed(record, "gate"):
                    record.gate, record.reference = gate_task(cell, record.bench, against)
                    record.compared_against = {name: score.against for name, score in record.reference.items()}
                if not record.gate.release:
                    record.status = "gated"
                    raise GateFailed(
                        f"release gate {record.gate.verdict}: {record.gate.reason}; nothing was pushed",
                        where=f"image {record.image.ref} (kept locally)",
                        fix=f"see the gate table and the raw results in {record.directory(settings.results_dir)}",
                    )
                if registry_addr is not None:
                    aliases = naming.alias_tags(matrix_file.release.aliases, record.pins)
                    with _timed(record, "sbom"):
                        probe = docker_engine.run_labels(run_id, cell.slug, home)
                        record.attestations = {SBOM_KIND: sbom_task(record.image, matrix_file, run_dir, probe)}
                        parameters = {
                            "registry": registry_addr,
                            "repository": repository,
                            "tag": tag,
                            "aliases": aliases,
                            "force": force,
                            "bundle": bundle,
                            "smoke_timeout_s": smoke_timeout_s,
                            "set_member": defer_push,  # staged, released only with its whole set
                        }
                        inputs = provenance_inputs_task(
                            matrix_path, matrix_file, cell, ctx, record.base, parameters, settings
                        )
                    with _timed(record, "push"):
                        stack_repository = naming.full_repository(None, namespace, ctx.stack.repository_name)
                        record.stack.digest = push_stack_task(record.stack, registry_addr, stack_repository)
                        if defer_push:
                            record.staged, record.attestations = stage_task(
                                record.image, registry_addr, repository, tag, aliases, key, record, inputs, run_dir
                            )
                        else:
                            record.publish, record.attestations = push_task(
                                record.image, registry_addr, repository, tag, aliases, key, record, inputs, run_dir
                            )
                record.status = "released" if record.publish else "built"
        except BaseException as err:  # Ctrl-C and SIGTERM too: the record says how far the run got
            interrupted = isinstance(err, KeyboardInterrupt)
            record.status = "gated" if isinstance(err, GateFailed) else "interrupted" if interrupted else "failed"
            record.error = err.render() if isinstance(err, FlagReleaseError) else _unhandled(err)
            record.exit_code = getattr(err, "exit_code", Interrupted.exit_code if interrupted else 1)
            if isinstance(err, FlagReleaseError):
                err.record = record
            raise
        finally:
            try:
                slot.close()
                _finish(record, cell, matrix_file, settings, report_it=not interrupted and record.status != "unchanged")
            finally:
                lock.release()
                progress.emit(run_logger(), CellFinished(cell=cell.slug, status=record.status))
    return record


def _unhandled(err: BaseException) -> str:
    if isinstance(err, KeyboardInterrupt):
        name = err.signal_name if isinstance(err, Interrupted) else "SIGINT"
        return f"interrupted by {name}: its containers, staging tags and an unfinished release tag were removed"
    return f"{type(err).__name__}: {err}"


def _finish(record: ReleaseRecord, cell: Cell, matrix: MatrixFile, settings: Settings, *, report_it: bool) -> None:
    """Save the record; report it unless the user is stopping us (no uploads then) or the cell
    was unchanged (no release to report). A failure to save (a full disk) does not hide the
    error the run ended with: it is logged, and raised only when the run had none."""
    try:
        run_dir = report.save_run(record, settings.results_dir)
    except ServiceError as err:
        if record.status in ("failed", "gated", "interrupted"):
            run_logger().error(f"the record was not saved: {err.problem}")
            return
        raise
    if report_it:
        record.reports = reports_task(run_dir, cell, matrix, settings, record.status == "released")
    create_markdown_artifact(
        key=f"release-{cell.slug}", markdown=_summary_markdown(record), description=f"FlagRelease {cell.label}"
    )


def _checkpoint(record: ReleaseRecord, settings: Settings) -> None:
    """Save the record as it stands (status `running`): a run killed now can be resumed."""
    report.save_run(record, settings.results_dir)


def _summary_markdown(record: ReleaseRecord) -> str:
    published = record.publish or record.unchanged
    rows = [
        ("status", record.status),
        ("image", record.image.ref if record.image else "-"),
        ("digest", published.pull_ref if published else "-"),
        ("release key", record.release_key or "-"),
        ("resumed from", f"{record.resumed_from} ({', '.join(record.reused)})" if record.resumed_from else "-"),
        ("smoke", ("passed" if record.smoke.passed else f"failed: {record.smoke.error}") if record.smoke else "-"),
        ("gate", f"{record.gate.verdict}: {record.gate.reason}" if record.gate else "-"),
    ] + [(f"{stage} (s)", str(seconds)) for stage, seconds in record.timings.items()]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return f"# {record.cell}\n\n| field | value |\n|---|---|\n{table}\n" + _gate_markdown(record)


def _gate_markdown(record: ReleaseRecord) -> str:
    """The gate's table, one row per check, as the terminal and the catalog show it."""
    if record.gate is None:
        return ""
    against = record.compared_against
    rows = [
        f"| {v.benchmark} | {against.get(v.benchmark, '-')} | {v.diff:+.3f} | {v.se:.3f} ({v.se_method}) "
        f"| **{v.verdict}** |"
        for v in record.gate.accuracy
    ] + [
        f"| perf c={p.level.max_concurrency} {p.level.input_len}/{p.level.output_len} | native side of this run "
        f"| out {p.level.output_throughput:.0%} / total {p.level.total_token_throughput:.0%} | - | **{p.verdict}** |"
        for p in record.gate.perf
    ]
    head = "| check | compared against | candidate − reference | SE | verdict |\n|---|---|---|---|---|\n"
    return f"\n## release gate: {record.gate.verdict}\n\n{record.gate.reason}\n\n{head}" + "\n".join(rows) + "\n"
