"""`flagrelease verify REF`: the image in the registry against its record, SBOM, provenance and card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from flagrelease.cli.common import JsonOpt, fail, out
from flagrelease.errors import FlagReleaseError
from flagrelease.settings import load_settings


def verify(
    ref: str = typer.Argument(..., help="the image: HOST[:PORT]/REPO:TAG or HOST[:PORT]/REPO@sha256:..."),
    record: Optional[Path] = typer.Option(
        None, "--record", help="the run directory (or release.json) to verify against, instead of the ledger's"
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Check a released image: its digest exists and is the released one, its labels carry the
    record's pins, the SBOM attached to it lists the pinned versions, the provenance attached
    to it names it, and the model card names it. Exit 0 when every check passes, 1 otherwise.

    Example: flagrelease verify 127.0.0.1:5000/flagrelease/<name>:latest
    """
    from flagrelease.steps.verify import verify as run_verify

    try:
        report = run_verify(ref, load_settings(), record)
    except FlagReleaseError as err:
        fail(err, as_json)
    if as_json:
        print(json.dumps(report.model_dump(mode="json") | {"passed": report.passed}, indent=2))
    else:
        table = Table(title=f"{report.ref} ({report.digest or 'no digest'}), run {report.run_id}")
        for column in ("check", "result", "detail"):
            table.add_column(column, overflow="fold")
        for check in report.checks:
            verdict = "[green]PASS[/green]" if check.passed else "[red]FAIL[/red]"
            table.add_row(check.name, verdict, check.detail)
        out.print(table)
        failed = [c.name for c in report.checks if not c.passed]
        out.print("verified: every check passed" if not failed else f"NOT verified: {', '.join(failed)} failed")
    raise typer.Exit(0 if report.passed else 1)
