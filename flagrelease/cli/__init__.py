"""`flagrelease` command line: a thin Typer front over the steps and flows.

Prefect is imported only by commands that run a flow (its embedded server
costs seconds); listing, rendering and help answer at once.
"""

from __future__ import annotations

import typer

from flagrelease.cli.bench import bench_app, gate_cmd
from flagrelease.cli.fleet import deploy, worker
from flagrelease.cli.matrix import matrix_cmd, render, weights
from flagrelease.cli.release import build, release
from flagrelease.cli.releases import card, releases_app
from flagrelease.cli.verify import verify

app = typer.Typer(
    help="Release pipeline for the FlagOS stack: chip x model matrix -> tested, published images.\n\n"
    "Example: flagrelease build --model tiny-llama --chip cpu",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(build)
app.command()(release)
app.command()(deploy)
app.command()(worker)
app.command("matrix")(matrix_cmd)
app.command()(render)
app.command()(weights)
app.add_typer(bench_app, name="bench")
app.command("gate")(gate_cmd)
app.add_typer(releases_app, name="releases")
app.command()(card)
app.command()(verify)
