"""Report step: a run's raw results, record, card and copies in every artifact store.

`save_run` writes the raw results beside the record (container log, every perf
trace, every per-question record, the perf plot) and then release.json naming
them. `publish_reports` adds the card for a released run, copies the run to
every store and tells the ledger. S3 being down does not undo a release: the
local copy stays and the result says what failed.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

from pydantic import ValidationError

from flagrelease.adapters.artifact_store import publish_artifacts, store_from_settings
from flagrelease.adapters.ledger import Ledger
from flagrelease.baseline import reference_for
from flagrelease.errors import ConfigError, ServiceError
from flagrelease.input_files import read_text
from flagrelease.perf_metrics import PerfResult
from flagrelease.record import RECORD_FILE, ReleaseRecord
from flagrelease.results import QuestionResult, ReportResult, SideResult, StoredCopy
from flagrelease.schema import Cell, MatrixFile
from flagrelease.settings import Settings
from flagrelease.steps.accuracy import write_records
from flagrelease.steps.card import write_card
from flagrelease.steps.loadgen import plot_sweep
from flagrelease.validation import config_error

SMOKE_LOG = "smoke.log"
PLOT = "perf.png"
# Every line of the run (flows/run_log.py writes it while the run goes on).
RUN_LOG = "run.log"


def save_run(record: ReleaseRecord, results_dir: Path) -> Path:
    """Write the run's raw results and its release.json; the run directory.

    A disk that cannot take them (full, read-only) is a ServiceError naming the directory."""
    out = record.directory(results_dir)
    try:
        _write_run(record, out)
    except OSError as err:
        full = err.errno in (errno.ENOSPC, errno.EDQUOT)
        raise ServiceError(
            f"cannot write the run's results to {out}: {err.strerror or err}",
            where=str(out),
            fix="free space on that disk, then run again (the run resumes)"
            if full
            else "make FLAGRELEASE_HOME writable, then run again",
        ) from None
    return out


def mark_dead_runs(results_dir: Path, cell_slug: str, run_id: str) -> list[str]:
    """Records of `cell_slug` other than `run_id` that still say `running`: their runs died
    without a word (kill -9, a lost host). The caller holds the cell's lock, so none of them
    lives; each now says `interrupted` (resumable as before). Their run ids."""
    dead = []
    for path in sorted((results_dir / cell_slug).glob(f"*/{RECORD_FILE}")):
        try:
            record = ReleaseRecord.load(path)
        except ConfigError:
            continue  # torn or unreadable: nothing to say about it
        if record.status != "running" or record.run_id == run_id:
            continue
        record.status = "interrupted"
        record.error = "the run was killed before it ended (nothing cleaned up after it until the next run)"
        record.exit_code = 137
        record.save(path.parent)
        dead.append(record.run_id)
    return dead


def _write_run(record: ReleaseRecord, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    if record.smoke is not None:
        (out / SMOKE_LOG).write_text(record.smoke.log)
        files["smoke"] = SMOKE_LOG
    for side, result in record.bench.items():
        raw = f"perf-{side}.json"
        (out / raw).write_text(
            json.dumps([[json.loads(r.model_dump_json()) for r in run] for run in result.perf_repeats], indent=1)
        )
        files[f"perf-{side}"] = raw
        for name, acc in result.accuracy.items():
            path = f"accuracy-{side}-{name}.jsonl"
            write_records(acc, out / path)
            files[f"accuracy-{side}-{name}"] = path
    if any(r.perf for r in record.bench.values()):
        verdicts = record.gate.perf if record.gate else []
        plot_sweep({side: r.perf for side, r in record.bench.items()}, out / PLOT, verdicts)
        files["plot"] = PLOT
    for kind, attestation in record.attestations.items():
        files[kind] = attestation.file  # written by the supply-chain step when it was made
    if (out / RUN_LOG).is_file():
        files["log"] = RUN_LOG
    record.files = files
    record.save(out)


def load_sides(run_dir: Path, record: ReleaseRecord) -> dict[str, SideResult]:
    """The record's bench sides with their per-question records and every perf repeat read
    back from their files."""
    sides = {}
    for side, result in record.bench.items():
        accuracy = {}
        for name, acc in result.accuracy.items():
            rel = record.files.get(f"accuracy-{side}-{name}")
            if rel is None:
                raise ConfigError(
                    f"run {record.run_id} names no per-question file for {side}/{name}",
                    where=str(run_dir / RECORD_FILE),
                    fix="restore the run from the artifact store",
                )
            path = run_dir / rel
            lines = read_text(path, "per-question results", missing_fix="restore the run from the artifact store")
            results = []
            for number, line in enumerate(lines.splitlines(), start=1):
                if not line:
                    continue
                try:
                    results.append(QuestionResult.model_validate_json(line))
                except ValidationError as err:
                    raise config_error(
                        err,
                        QuestionResult,
                        what="per-question result",
                        where=f"{path}:{number}",
                        fix="restore the run from the artifact store",
                    ) from None
            accuracy[name] = acc.model_copy(update={"results": results})
        repeats = [
            [PerfResult.model_validate(level) for level in run]
            for run in json.loads(_read(run_dir, record, f"perf-{side}") or "[]")
        ]
        sides[side] = result.model_copy(update={"accuracy": accuracy, "perf_repeats": repeats})
    return sides


def load_raw(run_dir: Path, record: ReleaseRecord) -> ReleaseRecord:
    """The record as it was before it was saved: raw results (smoke log, perf repeats,
    per-question records) read back from the files beside release.json."""
    smoke = record.smoke.model_copy(update={"log": _read(run_dir, record, "smoke")}) if record.smoke else None
    return record.model_copy(update={"smoke": smoke, "bench": load_sides(run_dir, record)})


def _read(run_dir: Path, record: ReleaseRecord, role: str) -> str:
    rel = record.files.get(role)
    if rel is None:
        raise ConfigError(
            f"run {record.run_id} names no file for {role}",
            where=str(run_dir / RECORD_FILE),
            fix="restore the run from the artifact store",
        )
    try:
        return (run_dir / rel).read_text()
    except OSError as err:
        raise ConfigError(
            f"cannot read {rel}: {err.strerror}",
            where=str(run_dir / rel),
            fix="restore the run from the artifact store",
        ) from None


def publish_reports(
    run_dir: Path, cell: Cell, matrix: MatrixFile, settings: Settings, *, released: bool
) -> ReportResult:
    card = write_card(run_dir, cell, reference_for(cell, matrix)) if released else None
    stores = store_from_settings(settings.s3_url, settings.s3_endpoint_url, settings.results_dir)
    copies = [
        StoredCopy(store=r.store, ok=r.ok, files=len(r.keys), error=r.error) for r in publish_artifacts(run_dir, stores)
    ]
    Ledger(settings.ledger_path).record(ReleaseRecord.load(run_dir))
    return ReportResult(card=card, stores=copies, ledger=settings.ledger_path)
