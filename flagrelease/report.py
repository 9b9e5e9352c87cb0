"""Report step: after a release, its card, its record and raw results go to every
artifact store, and the ledger learns of it. S3 being down does not undo a
release: the local copy stays and the result says what failed."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from flagrelease.artifact_store import publish_artifacts, store_from_settings
from flagrelease.baseline import load_baseline
from flagrelease.card import write_card
from flagrelease.ledger import Ledger
from flagrelease.schema import Cell, MatrixFile
from flagrelease.settings import Settings


class StoredCopy(BaseModel):
    store: str
    ok: bool
    files: int
    error: str | None = None


class ReportResult(BaseModel):
    card: Path | None
    stores: list[StoredCopy]
    ledger: Path


def publish_reports(run_dir: Path, cell: Cell, matrix: MatrixFile, settings: Settings, *, released: bool
                    ) -> ReportResult:
    card = None
    if released:
        plan = cell.model.bench
        baseline = load_baseline(matrix.source.parent / plan.reference) if plan.reference else None
        card = write_card(run_dir, cell, baseline)
    stores = store_from_settings(settings.s3_url, settings.s3_endpoint_url, settings.results_dir)
    copies = [StoredCopy(store=r.store, ok=r.ok, files=len(r.keys), error=r.error)
              for r in publish_artifacts(run_dir, stores)]
    ledger = Ledger(settings.ledger_path)
    ledger.record(json.loads((run_dir / "release.json").read_text()))
    return ReportResult(card=card, stores=copies, ledger=settings.ledger_path)


def alias_tags(aliases: list[str], pins: dict[str, str]) -> list[str]:
    return [alias.format(**pins) for alias in aliases]
