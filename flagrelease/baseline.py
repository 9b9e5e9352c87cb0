"""Reference-stack baselines as data: scores with their n and, where kept, per-question results."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from flagrelease.errors import ConfigError
from flagrelease.gate import BenchScore


class BaselineEntry(BaseModel):
    score: float
    n: int
    note: str = ""
    per_question: str | None = None  # JSONL of {"id", "correct"} next to the baseline file


class Baseline(BaseModel):
    stack: str
    source: str
    benchmarks: dict[str, BaselineEntry]


def load_baseline(path: Path) -> Baseline:
    try:
        return Baseline.model_validate(yaml.safe_load(path.read_text()))
    except FileNotFoundError:
        raise ConfigError(f"baseline {path} does not exist", where="models.*.bench.reference") from None
    except ValidationError as err:
        first = err.errors()[0]
        raise ConfigError(f"baseline is invalid: {first['msg']}",
                          where=f"{path}: {'.'.join(map(str, first['loc']))}") from None


def bench_score(baseline: Baseline, name: str, base_dir: Path) -> BenchScore:
    entry = baseline.benchmarks[name]
    per_question = None
    if entry.per_question:
        rows = [json.loads(line) for line in (base_dir / entry.per_question).read_text().splitlines() if line]
        per_question = {str(r["id"]): float(r["correct"]) for r in rows}
    return BenchScore(score=entry.score, n=entry.n, per_question=per_question)
