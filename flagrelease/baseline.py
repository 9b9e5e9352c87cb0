"""Reference-stack baselines as data: scores with their n and, where kept, per-question results.

A model's baseline is named by `models.<m>.bench.reference` (relative to matrix.yaml);
`reference_for` is the one place that resolves it.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from pydantic import BaseModel, Field, ValidationError

from flagrelease.errors import ConfigError
from flagrelease.results import BenchScore
from flagrelease.schema import Cell, MatrixFile


class BaselineEntry(BaseModel):
    score: float
    n: int
    note: str = ""
    per_question: str | None = None  # JSONL of {"id", "correct"} next to the baseline file


class Baseline(BaseModel):
    stack: str
    source: str
    benchmarks: dict[str, BaselineEntry]
    # The directory the baseline file lives in: per-question files are relative to it.
    directory: Path = Field(default=Path("."), exclude=True)


def load_baseline(path: Path) -> Baseline:
    try:
        baseline = Baseline.model_validate(yaml.safe_load(path.read_text()))
    except FileNotFoundError:
        raise ConfigError(f"baseline {path} does not exist", where="models.*.bench.reference") from None
    except ValidationError as err:
        first = err.errors()[0]
        raise ConfigError(
            f"baseline is invalid: {first['msg']}", where=f"{path}: {'.'.join(map(str, first['loc']))}"
        ) from None
    return baseline.model_copy(update={"directory": path.parent})


def reference_for(cell: Cell, matrix: MatrixFile) -> Baseline | None:
    """The reference-stack baseline a cell's model is gated against, if it names one."""
    reference = cell.model.bench.reference
    if reference is None:
        return None
    assert matrix.source is not None, "a loaded matrix knows its file"
    return load_baseline(matrix.source.parent / reference)


def bench_score(baseline: Baseline, name: str) -> BenchScore:
    entry = baseline.benchmarks[name]
    per_question = None
    if entry.per_question:
        rows = [json.loads(line) for line in (baseline.directory / entry.per_question).read_text().splitlines() if line]
        per_question = {str(r["id"]): float(r["correct"]) for r in rows}
    return BenchScore(score=entry.score, n=entry.n, per_question=per_question)
