"""`flagrelease releases ...` (the ledger) and `flagrelease card`."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from flagrelease.cli.common import JsonOpt, MatrixOpt, choice, fail, out
from flagrelease.errors import ConfigError, FlagReleaseError, excerpt
from flagrelease.matrix import find_matrix, load_matrix, select
from flagrelease.settings import load_settings

releases_app = typer.Typer(
    help="The release ledger: what was released, where, and whether it qualified.", no_args_is_help=True
)


def _ledger():
    from flagrelease.adapters.ledger import Ledger

    return Ledger(load_settings().ledger_path)


@releases_app.command("list")
def releases_list(
    model: Optional[str] = typer.Option(None, "--model", "-m"),
    chip: Optional[str] = typer.Option(None, "--chip", "-c"),
    qualified: bool = typer.Option(False, "--qualified", help="only releases whose gate passed and were pushed"),
    as_json: bool = JsonOpt,
) -> None:
    """Releases, newest first.

    Example: flagrelease releases list --model qwen3-4b --chip ascend-a3 --qualified
    """
    try:
        rows = _ledger().list(model=model, chip=chip, qualified=True if qualified else None)
    except FlagReleaseError as err:
        fail(err, as_json)
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "run_id": r.run_id,
                        "started": r.started.isoformat(),
                        "cell": r.cell,
                        "status": r.status,
                        "image": f"{r.registry}/{r.repository}" if r.repository else None,
                        "tags": list(r.tags),
                        "digest": r.digest,
                    }
                    for r in rows
                ],
                indent=2,
            )
        )
        return
    table = Table(title=f"{len(rows)} release(s)")
    for column in ("run", "started (UTC)", "cell", "status", "tags", "digest"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(
            r.run_id, r.started.strftime("%Y-%m-%d %H:%M"), r.cell, r.status, ", ".join(r.tags), (r.digest or "-")[:19]
        )
    out.print(table)


@releases_app.command("show")
def releases_show(ref: str = typer.Argument(..., help="run id, or image as REPO:TAG or REPO@sha256:...")) -> None:
    """One release's full record, and under `supply_chain` where its SBOM and provenance are
    (local file, S3 copy, OCI artifact in the registry).

    Example: flagrelease releases show 127.0.0.1:5000/flagrelease/flagrelease-cpu-release-...:latest
    """
    from flagrelease.supply_chain import locations

    try:
        settings = load_settings()
        record = _ledger().show(ref)
    except FlagReleaseError as err:
        fail(err, False)
    publish = record.publish
    where = locations(
        record.attestations,
        f"{record.cell}/{record.run_id}",
        str(settings.results_dir),
        settings.s3_url,
        f"{publish.registry}/{publish.repository}" if publish else None,
        publish.digest if publish else None,
    )
    print(json.dumps(record.as_dict() | {"supply_chain": where}, indent=2))


@releases_app.command("latest")
def releases_latest(
    model: str = typer.Option(..., "--model", "-m"),
    chip: str = typer.Option(..., "--chip", "-c", help="chip id"),
    as_json: bool = JsonOpt,
) -> None:
    """The newest qualified release of a cell: what a consumer should pull.

    Example: docker pull $(flagrelease releases latest -m qwen3-4b -c ascend-a3)
    """
    try:
        row = _ledger().latest_qualified(model, chip)
        if row is None:
            raise ConfigError(
                f"no qualified release of {model} x {chip} in the ledger",
                where=str(load_settings().ledger_path),
                fix="release the cell, or `flagrelease releases rebuild` from the artifact store",
            )
    except FlagReleaseError as err:
        fail(err, as_json)
    ref = f"{row.registry}/{row.repository}@{row.digest}"
    print(json.dumps({"run_id": row.run_id, "image": ref, "tags": list(row.tags)}) if as_json else ref)


@releases_app.command("rebuild")
def releases_rebuild(
    source: str = typer.Option("local", help="rebuild from the `local` results or from `s3` (FLAGRELEASE_S3_URL)"),
) -> None:
    """Rebuild the ledger from the JSON records in an artifact store (they are the source of truth)."""
    from flagrelease.adapters.artifact_store import store_from_settings

    try:
        choice(source, ("local", "s3"), "--source")
        settings = load_settings()
        stores = store_from_settings(settings.s3_url, settings.s3_endpoint_url, settings.results_dir)
        if source == "s3" and len(stores) < 2:
            raise ConfigError("--source s3 needs FLAGRELEASE_S3_URL", where="FLAGRELEASE_S3_URL")
        store = stores[-1 if source == "s3" else 0]
        records = store.list_records()
        _ledger().rebuild(records)
    except FlagReleaseError as err:
        fail(err, False)
    out.print(f"ledger rebuilt from {len(records)} record(s) in {store.location}")


def card(
    run_dir: Path = typer.Argument(..., help="a released run's results directory"),
    matrix: Optional[Path] = MatrixOpt,
    modelscope_repo: Optional[str] = typer.Option(
        None, "--publish-modelscope", help="also upload the card as README.md of this ModelScope model repo"
    ),
) -> None:
    """(Re)write a released run's model card from its record, optionally publishing it to ModelScope.

    Example: flagrelease card ~/.local/share/flagrelease/results/tiny-llama--cpu/<run>
    """
    from flagrelease.baseline import reference_for
    from flagrelease.record import ReleaseRecord
    from flagrelease.steps.card import write_card

    try:
        if modelscope_repo:
            _check_modelscope_target(modelscope_repo)
        record = ReleaseRecord.load(run_dir)
        matrix_file = load_matrix(find_matrix(matrix))
        [cell] = select(matrix_file, chip=record.chip, model=record.model)
        path = write_card(run_dir, cell, reference_for(cell, matrix_file))
        if modelscope_repo:
            from flagrelease.adapters.modelscope_hub import publish_card

            publish_card(path, modelscope_repo)
    except FlagReleaseError as err:
        fail(err, False)
    out.print(
        f"card written to {path}"
        + (f" and published to modelscope.cn/models/{modelscope_repo}" if modelscope_repo else "")
    )


def _check_modelscope_target(repo: str) -> None:
    """--publish-modelscope and its token, before the card is written."""
    from flagrelease.adapters.modelscope_hub import TOKEN_ENV

    if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", repo):
        raise ConfigError(
            f"--publish-modelscope {excerpt(repo)} is not a ModelScope model id",
            where="--publish-modelscope",
            fix="give ORG/REPO, e.g. FlagRelease/Qwen3-4B-FlagOS-Ascend",
        )
    if not os.environ.get(TOKEN_ENV):
        raise ConfigError(
            f"publishing to ModelScope needs {TOKEN_ENV}",
            where=TOKEN_ENV,
            fix="create an access token at modelscope.cn and export it",
        )
