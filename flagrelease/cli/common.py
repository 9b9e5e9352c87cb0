"""Shared pieces of the command line: consoles, common options, error and gate output."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from flagrelease.errors import FlagReleaseError

out = Console()
err_console = Console(stderr=True)

MatrixOpt = typer.Option(None, "--matrix", "-f", help="matrix file (default: ./matrix.yaml, else the project's)")
ModelOpt = typer.Option(..., "--model", "-m", help="model name from matrix.yaml, e.g. qwen3-4b")
ChipOpt = typer.Option(..., "--chip", "-c", help="chip id (ascend-a3) or vendor family (ascend)")
JsonOpt = typer.Option(False, "--json", help="print a machine-readable summary on stdout")


def fail(err: FlagReleaseError, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"status": "error", "error": err.render(), "exit_code": err.exit_code}))
    err_console.print(f"[bold red]error:[/] {err.render()}", highlight=False, soft_wrap=True)
    raise typer.Exit(err.exit_code)


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
            f"[{colour[v.verdict]}]{v.verdict}",
        )
    for p in report.perf:
        level = p.level
        table.add_row(
            f"perf c={level.max_concurrency} {level.input_len}/{level.output_len}",
            "native side of this run",
            f"out {level.output_throughput:.0%} / total {level.total_token_throughput:.0%}",
            "-",
            f"[{colour[p.verdict]}]{p.verdict}",
        )
    out.print(table)
