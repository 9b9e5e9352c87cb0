"""`flagrelease watch`: new upstream releases of the pinned packages, proposed as matrix rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from rich.text import Text

from flagrelease.cli.common import JsonOpt, MatrixOpt, fail, out, print_error
from flagrelease.errors import ConfigError, FlagReleaseError, excerpt
from flagrelease.matrix import find_matrix, load_matrix
from flagrelease.settings import load_settings

STYLE = {"newest": "green", "newer": "green", "blocked": "red", "not-on-index": "yellow", "not-pep440": "yellow"}


def watch_cmd(
    matrix: Optional[Path] = MatrixOpt,
    index: Optional[str] = typer.Option(
        None, "--index", help="PEP 503 / PEP 691 simple index to read (default: watch.index in matrix.yaml, PyPI)"
    ),
    apply: bool = typer.Option(False, "--apply", help="write the proposed patch into the matrix file"),
    build: bool = typer.Option(
        False,
        "--build",
        help="run the proposed cells through the release path (pushed only after their gate passed); "
        "with --apply, the patch is written only when every one of them released",
    ),
    registry: Optional[str] = typer.Option(
        None, "--registry", envvar="FLAGRELEASE_REGISTRY", help="HOST:PORT the built candidates push to"
    ),
    push: bool = typer.Option(True, "--push/--no-push", help="with --build: push a candidate that passed its gate"),
    as_json: bool = JsonOpt,
) -> None:
    """Look for new releases of the pinned FlagOS and vendor packages on the package index and
    propose matrix rows for them: a patch of matrix.yaml that satisfies every compatibility rule,
    or the rule that blocks a release. Nothing is written without --apply.

    Exit codes: 0 nothing to propose (or the patch applied), 1 a patch proposed and not applied,
    2 bad input, 3 the index (or a build's service) failed, 4 a built candidate's gate refused it.
    Examples:
      flagrelease watch
      flagrelease watch --index http://127.0.0.1:8080/simple/ --json
      flagrelease watch --build --apply
    """
    try:
        settings = load_settings(registry=registry)
        matrix_path = find_matrix(matrix)
        matrix_file = load_matrix(matrix_path)
        url = index or matrix_file.watch.index
        if not url.startswith(("http://", "https://")) or any(c.isspace() for c in url):
            raise ConfigError(
                f"--index {excerpt(url)} is not an http(s) URL",
                where="--index",
                fix="give the simple index's URL, e.g. https://pypi.org/simple/",
            )
        if build:
            from flows.local_server import local_server  # Prefect loads here, not at start-up
            from flows.watch_upstream import watch_upstream

            with local_server(settings.home / "prefect-server.log"):
                report = watch_upstream(
                    matrix=str(matrix_file.source), index=url, build=True, apply=apply, registry=registry, push=push
                )
        else:
            from flagrelease.steps import watch as watch_step

            report = watch_step.watch(matrix_file, url, ca_bundle=settings.build.ca_bundle)
            if apply and report.candidates:
                watch_step.apply(report)
    except FlagReleaseError as err:
        fail(err, as_json)
    if as_json:
        print(
            json.dumps(report.model_dump(mode="json", exclude={"patched"}) | {"exit_code": report.exit_code}, indent=2)
        )
    else:
        _print(report)
    for built in report.built:
        if built.error:
            print_error(f"{built.cell}: {built.error}")
    raise typer.Exit(report.exit_code)


def _print(report) -> None:
    table = Table(title=f"upstream watch: {report.index}", title_justify="left")
    for column in ("chip", "pin", "pinned", "newest", "proposed", "status", "blocked by"):
        table.add_column(column, overflow="fold")
    for n in report.pins:
        blockers = ", ".join(b.rule for b in n.blocked_by) or "-"  # the details are in --json
        table.add_row(
            n.chip,
            f"{n.pin} ({n.project})",
            n.pinned,
            n.newest or "-",
            n.proposed or "-",
            Text(n.status, style=STYLE.get(n.status, "")),
            blockers,
        )
    out.print(table)
    for p in report.projects:
        out.print(f"{p.project}: newest {p.newest or 'not on the index'} (watched, pinned by no chip)")
    if not report.patch:
        out.print("nothing to propose: every watched pin is current or blocked by a rule")
        return
    out.print(Text(report.patch), soft_wrap=True, highlight=False)
    for b in report.built:
        out.print(f"built {b.cell}: {b.status}")
    if report.applied:
        out.print(f"applied to {report.matrix}")
    else:
        out.print(f"proposed, not applied: {report.matrix} is unchanged (--apply writes it)")
