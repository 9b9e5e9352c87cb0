"""Resolve what a cell's accuracy is gated against into numbers and what they trace to.

`models.<m>.bench.reference` names either
- a published baseline file (`baselines/qwen3-4b-h100-cuda.yaml`): numbers typed from a
  card, "published numbers, no raw results" unless the file ships per-question results; or
- a released cell of the matrix (`{chip: nvidia-h100, side: native}`): its newest released
  run in the ledger, or a pinned `run`. Its per-question results are read from the artifact
  store (where every host of a fleet finds them), must give the scores its record states,
  and are recorded with their sha256 and the reference image's digest.

Resolved before the build, so that a missing reference stops a run before anything is
built, and its digest is part of the release key: a new reference release re-gates.

    reference = resolve(cell, matrix, settings)   # None: gate against this run's native side
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from flagrelease.adapters.artifact_store import shared_store, store_from_settings
from flagrelease.adapters.ledger import Ledger
from flagrelease.baseline import Reference, bench_score, load_baseline, published_score
from flagrelease.errors import ConfigError
from flagrelease.record import RECORD_FILE, ReleaseRecord
from flagrelease.results import BenchScore, ReferenceScore, per_question_means, question_records, within_variance
from flagrelease.schema import Cell, MatrixFile, ReleasedReference
from flagrelease.settings import Settings

# Scores are means of the stored per-question records; only float rounding may separate them.
TOLERANCE = 1e-9


def resolve(cell: Cell, matrix: MatrixFile, settings: Settings, *, run: str | None = None) -> Reference | None:
    """The cell's reference, or None when it has none (or is itself the released reference:
    that cell is gated against its own native side). `run` pins a released reference to the
    run a record was gated against (`flagrelease gate` deciding again)."""
    spec = cell.model.bench.reference
    if spec is None:
        return None
    assert matrix.source is not None, "a loaded matrix knows its file"
    where = f"{matrix.source}: models.{cell.model_id}.bench.reference"
    if isinstance(spec, str):
        return published(matrix.source.parent, spec, where)
    if (spec.model or cell.model_id, spec.chip) == (cell.model_id, cell.chip_id):
        return None
    return released(spec, cell, settings, where, run=run or spec.run)


def published(root: Path, relative: str, where: str) -> Reference:
    path = root / relative
    baseline = load_baseline(path)
    files = {relative: _sha256(path.read_bytes())}
    scores, trace = {}, {}
    for name, entry in baseline.benchmarks.items():
        sha = None
        if entry.per_question:
            data = _read(baseline.directory / entry.per_question, f"{path}: benchmarks.{name}.per_question")
            sha = files[f"{name}.per_question"] = _sha256(data)
        scores[name] = bench_score(baseline, name)
        trace[name] = published_score(baseline, name, sha)
    return Reference(scores=scores, trace=trace, digest=_sha256(json.dumps(files, sort_keys=True).encode()))


def released(spec: ReleasedReference, cell: Cell, settings: Settings, where: str, *, run: str | None) -> Reference:
    model = spec.model or cell.model_id
    label = f"{model} x {spec.chip}"
    record = _released_record(Ledger(settings.ledger_path), model, spec.chip, run, where)
    side = record.bench.get(spec.side)
    if side is None or not side.accuracy:
        raise ConfigError(
            f"the released run {record.run_id} of {label} has no accuracy results on its {spec.side} side",
            where=where,
            fix="release that cell with the model's accuracy benchmarks, or choose its other side",
        )
    store = shared_store(store_from_settings(settings.s3_url, settings.s3_endpoint_url, settings.results_dir))
    image = record.publish.pull_ref if record.publish else None
    scores, trace, files = {}, {}, {"run": record.run_id}
    for name, summary in side.accuracy.items():
        role = f"accuracy-{spec.side}-{name}"
        if role not in record.files:
            raise ConfigError(
                f"run {record.run_id} of {label} names no per-question file for {name}",
                where=f"{store.location}/{record.cell}/{record.run_id}/{RECORD_FILE}",
                fix="restore the run's files in the artifact store",
            )
        key = f"{record.cell}/{record.run_id}/{record.files[role]}"
        data = store.get(key)
        results = question_records(data.decode())
        means = per_question_means(results)
        recomputed = sum(means.values()) / len(means) if means else -1.0
        if len(means) != summary.n or abs(recomputed - summary.score) > TOLERANCE:
            raise ConfigError(
                f"the raw results of {name} in run {record.run_id} of {label} give {len(means)} questions "
                f"scoring {recomputed:.4f}; its record says {summary.n} scoring {summary.score:.4f}",
                where=f"{store.location}/{key}",
                fix="restore the run's files from the store it was released to; do not gate against it as it is",
            )
        files[name] = sha = _sha256(data)
        scores[name] = BenchScore(
            score=summary.score,
            n=summary.n,
            per_question=means,
            samples=summary.samples,
            within_var=within_variance(results),
        )
        trace[name] = ReferenceScore(
            against=f"released {label} run {record.run_id} ({spec.side} side)",
            origin="released",
            score=summary.score,
            n=summary.n,
            samples=summary.samples,
            raw=f"{store.location}/{key}",
            sha256=sha,
            run_id=record.run_id,
            image=image,
        )
    return Reference(scores=scores, trace=trace, digest=_sha256(json.dumps(files, sort_keys=True).encode()))


def _released_record(ledger: Ledger, model: str, chip: str, run: str | None, where: str) -> ReleaseRecord:
    label = f"{model} x {chip}"
    if run is None:
        row = ledger.latest_qualified(model, chip)
        if row is None:
            raise ConfigError(
                f"the reference cell {label} has no released run in the ledger ({ledger.path})",
                where=where,
                fix=f"release {label} first, or refill the ledger from the artifact store "
                "(flagrelease releases rebuild --source s3)",
            )
        run = row.run_id
    record = ledger.show(run)
    if (record.model, record.chip) != (model, chip) or record.status != "released":
        raise ConfigError(
            f"run {run} is {record.model} x {record.chip} with status {record.status!r}, "
            f"not a released run of the reference cell {label}",
            where=where,
            fix=f"pin a released run of {label} (flagrelease releases list --model {model} --qualified)",
        )
    return record


def _read(path: Path, where: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise ConfigError(
            f"cannot read {path}: {err.strerror}", where=where, fix="put the per-question file next to the baseline"
        ) from None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
