"""`flagrelease build` and `flagrelease release`: run cells of the matrix through the release flow."""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from flagrelease import fanout
from flagrelease.cli.common import (
    ChipOpt,
    JsonOpt,
    MatrixOpt,
    ModelOpt,
    err_console,
    fail,
    out,
    planning,
    positive,
    print_error,
    print_gate,
)
from flagrelease.cli.matrix import show_plan
from flagrelease.cli.progress import live_progress, progress_mode
from flagrelease.compat import ensure_compatible
from flagrelease.errors import FlagReleaseError, Interrupted
from flagrelease.fanout import CellOutcome
from flagrelease.matrix import expand, find_matrix, load_matrix, select
from flagrelease.plan import plan
from flagrelease.settings import load_settings

RegistryOpt = typer.Option(
    None,
    "--registry",
    envvar="FLAGRELEASE_REGISTRY",
    help="HOST:PORT to push to; default: a local registry on 127.0.0.1:5000, started if needed",
)
PushOpt = typer.Option(True, "--push/--no-push", help="push to the registry when the gate passed")
SmokeOpt = typer.Option(180.0, "--smoke-timeout", help="seconds a serve stack gets to become ready")
DryRunOpt = typer.Option(False, "--dry-run", help="print the resolved plan and stop")
ForceOpt = typer.Option(
    False,
    "--force",
    help="build and measure again, even when the registry holds a release of the same release key "
    "or a failed run could be resumed",
)


JobsOpt = typer.Option(
    None, "--jobs", "-j", min=1, help="cells at once in this process (default: fleet.jobs in matrix.yaml)"
)
ProgressOpt = typer.Option(
    "auto",
    "--progress",
    help="auto: a live display when stdout and stderr are terminals, else plain; "
    "tty: the live display (one line per stage, or per cell in a matrix run); plain: every log line",
)
LocalOpt = typer.Option(
    False, "--local", help="run the cells in this process even when PREFECT_API_URL points at a fleet server"
)


def build(
    model: str = ModelOpt,
    chip: str = ChipOpt,
    matrix: Optional[Path] = MatrixOpt,
    registry: Optional[str] = RegistryOpt,
    push: bool = PushOpt,
    smoke_timeout: float = SmokeOpt,
    jobs: Optional[int] = JobsOpt,
    local: bool = LocalOpt,
    dry_run: bool = DryRunOpt,
    as_json: bool = JsonOpt,
    force: bool = ForceOpt,
    progress: str = ProgressOpt,
) -> None:
    """Build, smoke-test, benchmark, gate and push one cell per selected chip.

    A cell whose release key the registry already serves is reported `unchanged` (nothing
    built, run or pushed); a failed run of the same key is resumed where it stopped.
    Examples:
      flagrelease build --model tiny-llama --chip cpu
      flagrelease build --model qwen3-4b --chip ascend --registry harbor.example.com --json
    """
    _release_cells(model, chip, matrix, registry, push, smoke_timeout, jobs, local, dry_run, as_json, force, progress)


def release(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="only this model"),
    chip: Optional[str] = typer.Option(None, "--chip", "-c", help="only this chip id or vendor family"),
    matrix: Optional[Path] = MatrixOpt,
    registry: Optional[str] = RegistryOpt,
    push: bool = PushOpt,
    smoke_timeout: float = SmokeOpt,
    jobs: Optional[int] = JobsOpt,
    local: bool = LocalOpt,
    dry_run: bool = DryRunOpt,
    as_json: bool = JsonOpt,
    force: bool = ForceOpt,
    progress: str = ProgressOpt,
) -> None:
    """Release the whole matrix (or the cells matching --model/--chip).

    In this process, up to --jobs cells at once; with PREFECT_API_URL set (after
    `flagrelease deploy`), on the chip hosts' workers. A cell that fails does not stop
    the others; a multi-arch set is published all or nothing; the exit code is the worst cell's.
    Examples:
      flagrelease release --dry-run
      flagrelease release --chip ascend --registry harbor.example.com
      flagrelease release --jobs 2 --json
    """
    _release_cells(model, chip, matrix, registry, push, smoke_timeout, jobs, local, dry_run, as_json, force, progress)


def _release_cells(
    model, chip, matrix, registry, push, smoke_timeout, jobs, local, dry_run, as_json, force, progress
) -> None:
    with planning():
        try:
            positive(smoke_timeout, "--smoke-timeout")
            mode = progress_mode(progress, sys.stdout.isatty(), sys.stderr.isatty())
            load_settings(registry=registry)  # --registry and every FLAGRELEASE_* setting, before anything runs
            matrix_file = load_matrix(find_matrix(matrix))
            cells = select(matrix_file, chip=chip, model=model) if chip or model else expand(matrix_file)
            ensure_compatible(cells, matrix_file.compatibility, str(matrix_file.source))
            if dry_run:
                show_plan(plan(cells, matrix_file, load_settings().build))
                return
        except FlagReleaseError as err:
            fail(err, as_json)
    # Prefect loads here, not at start-up.
    from flows import stopping
    from flows.console_logging import HideHandledFailures
    from flows.local_server import local_server
    from flows.release_matrix import release_matrix

    stopping.install()  # SIGTERM (a cancelled CI job) and SIGINT stop every cell cleanly

    try:
        # --progress tty asked for on a stream that is no terminal: draw all the same.
        console = err_console if err_console.is_terminal else Console(stderr=True, markup=False, force_terminal=True)
        with (
            local_server(load_settings().home / "prefect-server.log"),
            live_progress(console, HideHandledFailures()) if mode == "tty" else nullcontext(),
        ):
            outcomes = release_matrix(
                model=model,
                chip=chip,
                matrix=str(matrix_file.source),
                registry=registry,
                push=push,
                smoke_timeout_s=smoke_timeout,
                jobs=jobs,
                local=local,
                force=force,
            )
    except FlagReleaseError as err:
        fail(err, as_json)
    except KeyboardInterrupt as stop:
        _stopped(stop, as_json)
    if as_json:
        print(json.dumps([_summary(o) for o in outcomes], indent=2))
    else:
        _print_table(outcomes)
    for o in outcomes:
        if o.error:
            print_error(f"{o.cell}: {o.error}")
    if code := fanout.exit_code(outcomes):
        raise typer.Exit(code)


def _stopped(stop: KeyboardInterrupt, as_json: bool) -> None:
    """A signal stopped the run after its cells cleaned up: say so, exit 128 + the signal."""
    interrupt = type(stop) if isinstance(stop, Interrupted) else Interrupted
    problem = (
        f"stopped by {interrupt.signal_name}: every running cell removed its containers and unfinished "
        "release or staging tags, and its record says `interrupted` (a cell already reporting finished that)"
    )
    if as_json:
        print(json.dumps({"status": "interrupted", "error": problem, "exit_code": interrupt.exit_code}))
    print_error(problem)
    raise typer.Exit(interrupt.exit_code)


def _summary(outcome: CellOutcome) -> dict:
    record = outcome.record
    summary: dict = {
        "cell": outcome.cell,
        "status": outcome.status,
        "pool": outcome.pool,
        "run_id": outcome.run_id,
        "flow_run": outcome.flow_run,
        "exit_code": outcome.exit_code,
        "error": outcome.error,
    }
    if record is None:
        return summary
    # Where to pull the cell from: what this run published, or the release it found unchanged.
    published = record.publish or record.unchanged
    return summary | {
        "image": record.image.ref if record.image else None,
        "image_id": record.image.image_id if record.image else None,
        "reused": record.image.reused if record.image else None,
        "tags": record.publish.tags if record.publish else [record.unchanged.tag] if record.unchanged else [],
        "repository": f"{published.registry}/{published.repository}" if published else None,
        "digest": published.digest if published else None,
        "release_key": record.release_key,
        "unchanged": record.unchanged.model_dump() if record.unchanged else None,
        "resumed_from": record.resumed_from,
        "taken_over": record.reused,
        "stack": record.stack.model_dump() if record.stack else None,
        "attestations": {kind: a.model_dump() for kind, a in record.attestations.items()},
        "smoke": {
            "passed": record.smoke.passed,
            "ready_seconds": record.smoke.ready_seconds,
            "models": record.smoke.models,
            "usage": record.smoke.usage,
        }
        if record.smoke
        else None,
        "gate": {
            "verdict": record.gate.verdict,
            "release": record.gate.release,
            "reason": record.gate.reason,
            "accuracy": {
                v.benchmark: {
                    "verdict": v.verdict,
                    "diff": v.diff,
                    "se": v.se,
                    "against": record.compared_against.get(v.benchmark),
                }
                for v in record.gate.accuracy
            },
            "perf_levels_failed": sum(p.verdict == "FAIL" for p in record.gate.perf),
        }
        if record.gate
        else None,
        "timings": record.timings,
        "stores": [c.model_dump() for c in record.reports.stores] if record.reports else [],
        "card": str(record.reports.card) if record.reports and record.reports.card else None,
    }


def _print_table(outcomes: list[CellOutcome]) -> None:
    """One block per cell: image names are too long for a column layout."""
    for o in outcomes:
        table = Table(title=f"{o.cell}: {o.status}", show_header=False, title_justify="left")
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        r = o.record
        if o.flow_run:
            table.add_row("run", f"{o.flow_run} (pool {o.pool})")
        if r is None:
            out.print(table)
            continue
        table.add_row("image", r.image.ref if r.image else "-")
        table.add_row(
            "built", ("reused " if r.image and r.image.reused else "") + (r.image.image_id[:19] if r.image else "-")
        )
        published = r.publish or r.unchanged
        table.add_row("pull", published.pull_ref if published else "-")
        if r.unchanged:
            by = f" by run {r.unchanged.run_id}" if r.unchanged.run_id else ""
            table.add_row("unchanged", f"released as {r.unchanged.tag}{by}; nothing built, run or pushed")
        if r.resumed_from:
            table.add_row("resumed", f"from run {r.resumed_from}, taking over {', '.join(r.reused)}")
        if r.stack:
            table.add_row("stack", f"{r.stack.origin} {r.stack.ref}")
        if r.smoke:
            table.add_row(
                "smoke",
                f"passed, ready in {r.smoke.ready_seconds:.1f} s, {r.smoke.usage.get('completion_tokens')} tokens"
                if r.smoke.passed
                else f"failed: {r.smoke.error}",
            )
        table.add_row("seconds", "  ".join(f"{k} {v}" for k, v in r.timings.items()))
        for copy in r.reports.stores if r.reports else []:
            table.add_row(
                "stored",
                f"{copy.files} files in {copy.store}"
                if copy.ok
                else Text(f"not in {copy.store}: {copy.error}", style="yellow"),
            )
        out.print(table)
        if r.gate:
            print_gate(r.gate, r.compared_against)
