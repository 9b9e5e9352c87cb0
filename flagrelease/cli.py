"""`flagrelease` command line: a thin Typer front over the steps and flows.

Prefect is imported only by commands that run a flow (its embedded server
costs seconds); listing, rendering and help answer at once.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from flagrelease.errors import FlagReleaseError
from flagrelease.matrix import find_matrix, load_matrix, select

app = typer.Typer(
    help="Release pipeline for the FlagOS stack: chip x model matrix -> tested, published images.\n\n"
    "Example: flagrelease build --model tiny-llama --chip cpu",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err_console = Console(stderr=True)

MatrixOpt = typer.Option(None, "--matrix", "-f", help="matrix file (default: ./matrix.yaml, else the project's)")
ModelOpt = typer.Option(..., "--model", "-m", help="model name from matrix.yaml, e.g. qwen3-4b")
ChipOpt = typer.Option(..., "--chip", "-c", help="chip id (ascend-a3) or vendor family (ascend)")
JsonOpt = typer.Option(False, "--json", help="print a machine-readable summary on stdout")


def _fail(err: FlagReleaseError, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"status": "error", "error": err.render(), "exit_code": err.exit_code}))
    err_console.print(f"[bold red]error:[/] {err.render()}", highlight=False)
    raise typer.Exit(err.exit_code)


@app.command()
def build(
    model: str = ModelOpt,
    chip: str = ChipOpt,
    matrix: Optional[Path] = MatrixOpt,
    registry: Optional[str] = typer.Option(
        None, "--registry", envvar="FLAGRELEASE_REGISTRY",
        help="HOST:PORT to push to; default: a local registry on 127.0.0.1:5000, started if needed"),
    push: bool = typer.Option(True, "--push/--no-push", help="push to the registry after the smoke test"),
    smoke_timeout: float = typer.Option(180.0, help="seconds the serve stack gets to become ready"),
    as_json: bool = JsonOpt,
) -> None:
    """Build, smoke-test and push one cell per selected chip.

    Examples:
      flagrelease build --model tiny-llama --chip cpu
      flagrelease build --model qwen3-4b --chip ascend --registry harbor.example.com --json
    """
    try:
        cells = select(load_matrix(find_matrix(matrix)), chip=chip, model=model)
    except FlagReleaseError as err:
        _fail(err, as_json)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    signal.signal(signal.SIGTERM, _interrupt)  # a cancelled CI job cleans up like Ctrl-C does
    from flows.release_cell import release_cell  # Prefect loads here, not at start-up

    records, failure = [], None
    for cell in cells:
        try:
            records.append(release_cell(model=cell.model_id, chip=cell.chip_id,
                                        matrix=str(matrix) if matrix else None, registry=registry,
                                        push=push, smoke_timeout_s=smoke_timeout))
        except FlagReleaseError as err:
            failure = err
            break
    if as_json:
        print(json.dumps([_summary(r) for r in records], indent=2))
    else:
        _print_table(records)
    if failure is not None:
        _fail(failure, False)


def _interrupt(signum, _frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _summary(record) -> dict:
    return {
        "cell": record.cell,
        "status": record.status,
        "image": record.image.ref if record.image else None,
        "image_id": record.image.image_id if record.image else None,
        "reused": record.image.reused if record.image else None,
        "tags": record.publish.tags if record.publish else [],
        "repository": f"{record.publish.registry}/{record.publish.repository}" if record.publish else None,
        "digest": record.publish.digest if record.publish else None,
        "smoke": {
            "passed": record.smoke.passed,
            "ready_seconds": record.smoke.ready_seconds,
            "models": record.smoke.models,
            "usage": record.smoke.usage,
        } if record.smoke else None,
        "timings": record.timings,
        "run_id": record.run_id,
    }


def _print_table(records) -> None:
    """One block per cell: image names are too long for a column layout."""
    for r in records:
        table = Table(title=f"{r.cell}: {r.status}", show_header=False, title_justify="left")
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        table.add_row("image", r.image.ref if r.image else "-")
        table.add_row("built", ("reused " if r.image and r.image.reused else "") + (r.image.image_id[:19] if r.image else "-"))
        table.add_row("pull", r.publish.pull_ref if r.publish else "-")
        if r.smoke:
            table.add_row("smoke", f"passed, ready in {r.smoke.ready_seconds:.1f} s, "
                          f"{r.smoke.usage.get('completion_tokens')} tokens" if r.smoke.passed else f"failed: {r.smoke.error}")
        table.add_row("seconds", "  ".join(f"{k} {v}" for k, v in r.timings.items()))
        out.print(table)


@app.command()
def weights(
    model: str = typer.Option("tiny-llama", "--model", "-m", help="model whose weights to produce"),
    out_dir: Path = typer.Option(..., "--out", "-o", help="directory to write the weights into"),
    matrix: Optional[Path] = MatrixOpt,
) -> None:
    """Produce a model's weights directory (the tiny model is generated offline).

    Example: flagrelease weights --model tiny-llama --out /data/weights/tiny-llama
    """
    from flagrelease.weights import ensure_weights

    try:
        cell = select(load_matrix(find_matrix(matrix)), model=model)[0]
        path = ensure_weights(cell, out_dir)
    except FlagReleaseError as err:
        _fail(err, False)
    out.print(f"weights for {model} in {path}")

