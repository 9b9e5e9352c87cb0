"""`flagrelease` command line: a thin Typer front over the steps and flows.

Prefect is imported only by commands that run a flow (its embedded server
costs seconds); listing, rendering and help answer at once.
"""

from __future__ import annotations

import json
import sys

import typer

from flagrelease.cli.bench import bench_app, gate_cmd
from flagrelease.cli.catalog import catalog
from flagrelease.cli.fleet import deploy, worker
from flagrelease.cli.matrix import matrix_cmd, render, weights
from flagrelease.cli.release import build, release
from flagrelease.cli.releases import card, releases_app
from flagrelease.cli.verify import verify
from flagrelease.cli.watch import watch_cmd

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
app.command()(catalog)
app.command("watch")(watch_cmd)


def main() -> None:
    """The `flagrelease` console script. With --json a usage error (an unknown option, a value
    of the wrong type) is also JSON on stdout, as every other error is; without, Typer's own."""
    if "--json" not in sys.argv[1:]:
        app()
        return
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        sys.exit(130)
    except typer.TyperException as err:  # Typer's (vendored) click errors: UsageError exits 2
        problem = err.format_message() if hasattr(err, "format_message") else str(err)
        context = getattr(err, "ctx", None)
        fix = f"see '{context.command_path} --help'" if context is not None else "see 'flagrelease --help'"
        exit_code = getattr(err, "exit_code", 2)
        error = {"status": "error", "error": problem, "problem": problem, "where": "command line", "fix": fix}
        print(json.dumps(error | {"exit_code": exit_code}))
        if hasattr(err, "show"):
            err.show()
        sys.exit(exit_code)
    sys.exit(code if isinstance(code, int) else 0)
