"""Reference-stack baselines as data: scores with their n and, where kept, per-question results.

A model's reference is named by `models.<m>.bench.reference`: a published baseline file
(relative to matrix.yaml; numbers typed from a card) or a released cell of the matrix.
`steps/reference.py` resolves either into a `Reference`, what the gate compares with;
`reference_for` loads the published file alone (for cards of records that predate
`ReleaseRecord.reference`).
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from flagrelease.errors import ConfigError, excerpt
from flagrelease.input_files import load_yaml, read_text
from flagrelease.results import BenchScore, ReferenceScore
from flagrelease.schema import Cell, MatrixFile
from flagrelease.validation import config_error


class BaselineEntry(BaseModel):
    score: float
    n: int
    samples: int = 1  # the card's score is avg@k over k samples per question
    note: str = ""
    per_question: str | None = None  # JSONL of {"id", "correct"} next to the baseline file


class Baseline(BaseModel):
    stack: str
    source: str
    benchmarks: dict[str, BaselineEntry]
    # The directory the baseline file lives in: per-question files are relative to it.
    directory: Path = Field(default=Path("."), exclude=True)


def load_baseline(path: Path) -> Baseline:
    raw = load_yaml(path, "baseline", missing_fix="create it or correct models.<model>.bench.reference")
    try:
        baseline = Baseline.model_validate(raw)
    except ValidationError as err:
        raise config_error(
            err, Baseline, what="baseline", where=str(path), fix="see baselines/qwen3-4b-h100-cuda.yaml"
        ) from None
    return baseline.model_copy(update={"directory": path.parent})


class Reference(BaseModel):
    """What a cell's accuracy is gated against, resolved: per benchmark its scores (with
    per-question results where they exist) and what they trace to. `digest` covers every
    file the numbers come from; it is part of the release key."""

    scores: dict[str, BenchScore]
    trace: dict[str, ReferenceScore]
    digest: str


def reference_for(cell: Cell, matrix: MatrixFile) -> Baseline | None:
    """The published baseline a cell's model is gated against, if it names one."""
    reference = cell.model.bench.reference
    if not isinstance(reference, str):
        return None
    assert matrix.source is not None, "a loaded matrix knows its file"
    return load_baseline(matrix.source.parent / reference)


def bench_score(baseline: Baseline, name: str) -> BenchScore:
    entry = baseline.benchmarks[name]
    per_question = None
    if entry.per_question:
        path = baseline.directory / entry.per_question
        lines = read_text(path, "per-question baseline").splitlines()
        try:
            per_question = {str(r["id"]): float(r["correct"]) for r in (json.loads(line) for line in lines if line)}
        except (ValueError, TypeError, KeyError) as err:
            raise ConfigError(
                f"per-question baseline is malformed: {excerpt(str(err))}",
                where=str(path),
                fix='one JSON object per line: {"id": ..., "correct": 0 or 1}',
            ) from None
    return BenchScore(score=entry.score, n=entry.n, per_question=per_question, samples=entry.samples)


def published_score(baseline: Baseline, name: str, sha256: str | None = None) -> ReferenceScore:
    """What a published baseline's benchmark traces to: typed numbers and, where kept, the
    per-question file (with its sha256 when the caller read it)."""
    entry = baseline.benchmarks[name]
    return ReferenceScore(
        against=f"baseline {baseline.stack}",
        origin="published",
        score=entry.score,
        n=entry.n,
        samples=entry.samples,
        raw=str(baseline.directory / entry.per_question) if entry.per_question else None,
        sha256=sha256,
        source=baseline.source,
    )
