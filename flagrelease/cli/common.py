"""Shared pieces of the command line: consoles, common options, error and gate output."""

from __future__ import annotations

import gc
import json
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from flagrelease.errors import ConfigError, FlagReleaseError, did_you_mean, excerpt

# No console markup: messages carry user text (key paths such as matrix.include[0], patterns,
# registry answers) whose square brackets Rich would read as style tags. Styles are Text spans.
out = Console(markup=False)
err_console = Console(stderr=True, markup=False)

MatrixOpt = typer.Option(None, "--matrix", "-f", help="matrix file (default: ./matrix.yaml, else the project's)")
ModelOpt = typer.Option(..., "--model", "-m", help="model name from matrix.yaml, e.g. qwen3-4b")
ChipOpt = typer.Option(..., "--chip", "-c", help="chip id (ascend-a3) or vendor family (ascend)")
JsonOpt = typer.Option(False, "--json", help="print a machine-readable summary on stdout")


@contextmanager
def planning() -> Iterator[None]:
    """Loading and planning a large matrix allocates hundreds of thousands of small dicts and
    models, none of them in a reference cycle: the cyclic garbage collector would only scan
    the growing heap again and again (a third of the time of a 10,000-cell plan). Reference
    counting frees them all the same; the collector runs again afterwards."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def print_error(err: FlagReleaseError | str) -> None:
    """The error block on stderr, printed as it is (no markup, no highlighting)."""
    text = err if isinstance(err, str) else err.render()
    err_console.print(Text.assemble(("error:", "bold red"), " ", text), highlight=False, soft_wrap=True)


def fail(err: FlagReleaseError, as_json: bool) -> None:
    """Report a handled failure and exit with its code; with --json also as JSON on stdout."""
    if as_json:
        print(
            json.dumps(
                {
                    "status": "error",
                    "error": err.render(),
                    "problem": err.problem,
                    "where": err.where,
                    "fix": err.fix,
                    "exit_code": err.exit_code,
                }
            )
        )
    print_error(err)
    raise typer.Exit(err.exit_code)


def choice(value: str, allowed: Sequence[str], option: str) -> str:
    if value not in allowed:
        raise ConfigError(
            f"{option} {excerpt(value)} is not one of {', '.join(allowed)}{did_you_mean(value, allowed)}",
            where=option,
            fix=f"use one of: {', '.join(allowed)}",
        )
    return value


def at_least(value: float, low: float, option: str) -> None:
    """A number option that must be finite and at least `low`."""
    if not (math.isfinite(value) and value >= low):
        raise ConfigError(f"{option} {value:g} must be at least {low:g}", where=option, fix=f"e.g. {option} {low:g}")


def positive(value: float, option: str) -> None:
    """A number option that must be finite and above zero (a duration, a rate)."""
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{option} {value:g} must be above 0", where=option, fix=f"give {option} a positive number")


def output_file(path: Path | None, option: str) -> None:
    """A file the command will write, checked before any work is done."""
    if path is None:
        return
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a directory", where=option, fix=f"give {option} a file name")
    if not path.parent.is_dir():
        raise ConfigError(
            f"{option} {path}: directory {path.parent} does not exist", where=option, fix="create the directory first"
        )
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"{option} {path} cannot be written", where=option, fix="choose a writable place")


def output_dir(path: Path, option: str) -> None:
    """A directory the command will write into, created (with its parents) before any work is done."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"{option} {path} cannot be used as a directory: {err.strerror or err}",
            where=option,
            fix="give a directory you can write (it is created if missing)",
        ) from None
    if not os.access(path, os.W_OK):
        raise ConfigError(f"{option} {path} cannot be written", where=option, fix="choose a writable place")


def print_gate(report, against: dict[str, str]) -> None:
    table = Table(title=f"release gate: {report.verdict} ({report.reason})", title_justify="left")
    for column in ("check", "compared against", "candidate − reference", "SE", "verdict"):
        table.add_column(column, overflow="fold")
    colour = {"PASS": "green", "FAIL": "red", "INCONCLUSIVE": "yellow"}
    for v in report.accuracy:
        table.add_row(
            v.benchmark,
            against.get(v.benchmark, "-"),
            f"{v.diff:+.3f}",
            f"{v.se:.3f} ({v.se_method})",
            Text(v.verdict, style=colour[v.verdict]),
        )
    for p in report.perf:
        level = p.level
        table.add_row(
            f"perf c={level.max_concurrency} {level.input_len}/{level.output_len}",
            "native side of this run",
            f"out {level.output_throughput:.0%} / total {level.total_token_throughput:.0%}",
            "-",
            Text(p.verdict, style=colour[p.verdict]),
        )
    out.print(table)
