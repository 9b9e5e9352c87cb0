"""`flagrelease matrix`, `render` and `weights`: the declared matrix, resolved and rendered."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from pydantic_core import to_json
from rich.table import Table
from rich.text import Text

from flagrelease.cli.common import (
    JsonOpt,
    MatrixOpt,
    ModelOpt,
    fail,
    out,
    output_dir,
    planning,
    print_error,
)
from flagrelease.compat import Checker, Violation, ensure_compatible, violation_error
from flagrelease.errors import ConfigError, FlagReleaseError
from flagrelease.matrix import expand, find_matrix, load_matrix, select
from flagrelease.plan import plan
from flagrelease.schema import Cell, MatrixFile
from flagrelease.settings import load_settings


def weights(
    model: str = typer.Option("tiny-llama", "--model", "-m", help="model whose weights to produce"),
    out_dir: Path = typer.Option(..., "--out", "-o", help="directory to write the weights into"),
    matrix: Optional[Path] = MatrixOpt,
) -> None:
    """Produce a model's weights directory (the tiny model is generated offline).

    Example: flagrelease weights --model tiny-llama --out /data/weights/tiny-llama
    """
    from flagrelease.steps.weights import ensure_weights

    try:
        cell = select(load_matrix(find_matrix(matrix)), model=model)[0]
        output_dir(out_dir, "--out")
        path = ensure_weights(cell, out_dir)
    except FlagReleaseError as err:
        fail(err, False)
    out.print(f"weights for {model} in {path}")


def show_plan(plans: list[dict]) -> None:
    """The plan as indented JSON on stdout (pydantic's serializer: json.dumps with an indent
    takes seconds for a 10,000-cell plan)."""
    sys.stdout.flush()
    sys.stdout.buffer.write(to_json(plans, indent=2) + b"\n")
    sys.stdout.buffer.flush()


def matrix_cmd(
    print_plan: bool = typer.Option(False, "--print", help="print the fully resolved plan as JSON (like bake --print)"),
    as_json: bool = JsonOpt,
    chip: Optional[str] = typer.Option(None, "--chip", "-c", help="chip id or vendor family"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="model name"),
    matrix: Optional[Path] = MatrixOpt,
) -> None:
    """Show the matrix: every cell, its pins and whether it passes the compatibility rules.

    Exits 2 (after showing them) when a shown cell breaks a rule, as `build` would refuse it.

    Examples:
      flagrelease matrix
      flagrelease matrix --print --chip ascend
      flagrelease matrix --json --model qwen3-4b
    """
    with planning():
        try:
            matrix_file = load_matrix(find_matrix(matrix))
            cells = select(matrix_file, chip=chip, model=model) if chip or model else expand(matrix_file)
            build = load_settings().build
        except FlagReleaseError as err:
            fail(err, as_json)
        if print_plan or as_json:
            plans = plan(cells, matrix_file, build)
            show_plan(plans)
            violations = [Violation.model_validate(v) for p in plans for v in p["violations"]]
        else:
            violations = _print_table(cells, matrix_file)
    error = violation_error(violations, str(matrix_file.source))
    if error is not None:
        print_error(error)
        raise typer.Exit(error.exit_code)


def _print_table(cells: list[Cell], matrix_file: MatrixFile) -> list[Violation]:
    checker = Checker(matrix_file.compatibility)
    table = Table(title=f"{matrix_file.source} — {len(cells)} cells")
    for column in ("cell", "platform", "sdk", "python", "torch", "vllm", "gems", "scale", "rules"):
        table.add_column(column, overflow="fold")
    violations = []
    for cell in cells:
        stack, found = cell.chip.stack, checker.check(cell)
        violations += found
        torch = stack.torch + (f" / npu {stack.torch_npu}" if stack.torch_npu != "none" else "")
        rules = "ok" if not found else Text(", ".join(v.rule for v in found), style="red")
        table.add_row(
            cell.label,
            cell.chip.platform,
            f"{cell.chip.sdk.name} {cell.chip.sdk.version}",
            stack.python,
            torch,
            stack.vllm,
            stack.flaggems,
            stack.flagscale,
            rules,
        )
    out.print(table)
    return violations


def render(
    model: str = ModelOpt,
    chip: str = typer.Option(..., "--chip", "-c", help="chip id, e.g. ascend-a3"),
    out_dir: Path = typer.Option(
        ..., "--out", "-o", help="directory for the build context: new, empty, or a previous render (replaced)"
    ),
    force: bool = typer.Option(False, "--force", help="replace --out even when it holds something else"),
    matrix: Optional[Path] = MatrixOpt,
) -> None:
    """Write a cell's build contexts to a directory: OUT/stack (the chip-stack image) and
    OUT/model (the thin model image FROM it: Dockerfile, FlagScale serve config).

    Example: flagrelease render --model qwen3-4b --chip ascend-a3 --out ./ctx
      docker build -t my/stack ./ctx/stack && docker build --build-arg STACK_IMAGE=my/stack ./ctx/model
    """
    from flagrelease.steps.render import render_context

    try:
        matrix_file = load_matrix(find_matrix(matrix))
        cells = select(matrix_file, chip=chip, model=model)
        ensure_compatible(cells, matrix_file.compatibility, str(matrix_file.source))
        if len(cells) != 1:
            raise ConfigError(
                f"--chip {chip} selects {len(cells)} chips; render takes one chip id",
                fix="pass a chip id such as " + ", ".join(c.chip_id for c in cells),
            )
        ctx = render_context(cells[0], matrix_file, load_settings().build, out_dir, force=force)
    except FlagReleaseError as err:
        fail(err, False)
    for part in (ctx.stack, ctx.model):
        out.print(f"rendered {part.repository_name} into {part.path} (context {part.context_hash[:12]})")
        out.print("  " + ", ".join(part.files))
