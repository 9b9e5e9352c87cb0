"""The typed values the pipeline steps return, and a release record is made of.

They live apart from the steps so that the record, the ledger, the card and the
CLI can read a run without importing the code that produced it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from flagrelease.perf_metrics import PerfResult

Kind = Literal["multiple_choice", "exact_match"]
Verdict = Literal["PASS", "FAIL", "INCONCLUSIVE"]


class ImageContext(BaseModel):
    """One rendered Docker build context; `context_hash` covers every byte of it."""

    path: Path
    context_hash: str
    repository_name: str
    labels: dict[str, str]
    files: list[str]


class BuildContext(BaseModel):
    """A cell's rendered build: its chip-stack image, and the thin model image FROM it."""

    stack: ImageContext
    model: ImageContext
    base_image: str
    pins: dict[str, str]


class BaseImageResult(BaseModel):
    ref: str
    image_id: str
    made: bool
    seconds: float


class ImageRef(BaseModel):
    image_id: str
    repository: str
    tag: str
    labels: dict[str, str]
    reused: bool
    seconds: float

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"


class StackImage(BaseModel):
    """The chip-stack image a model image is built FROM, named by its key.

    `origin`: found locally, pulled from the registry (built by another host), or built here.
    """

    ref: str  # local name:tag, what the model build's STACK_IMAGE names
    image_id: str
    key: str
    origin: Literal["local", "pulled", "built"]
    seconds: float
    digest: str | None = None  # its manifest in the registry, once pushed or found there


class ExistingRelease(BaseModel):
    """A release of the same key that the registry already serves, verified by digest."""

    registry: str
    repository: str
    tag: str
    digest: str
    run_id: str | None = None  # the run that released it, when a local record names it

    @property
    def pull_ref(self) -> str:
        return f"{self.registry}/{self.repository}@{self.digest}"


class SmokeResult(BaseModel):
    passed: bool
    error: str | None = None
    container: str
    host_port: int | None = None
    ready_seconds: float | None = None
    seconds: float
    models: list[str] = []
    reply: str = ""
    usage: dict[str, Any] = {}
    log: str = ""  # the container log; stored as smoke.log beside release.json


class QuestionResult(BaseModel):
    id: str
    expected: str
    answer: str
    correct: bool
    attempts: int
    sample: int = 0  # which of the question's k samples (avg@k), from 0


def question_records(jsonl: str) -> list[QuestionResult]:
    """Per-question records as stored (accuracy-<side>-<name>.jsonl), one JSON object a line."""
    return [QuestionResult.model_validate_json(line) for line in jsonl.splitlines() if line.strip()]


def per_question_means(results: list[QuestionResult]) -> dict[str, float]:
    """Question id -> the share of its samples answered correctly (0 or 1 with one sample)."""
    grouped: dict[str, list[bool]] = {}
    for r in results:
        grouped.setdefault(r.id, []).append(r.correct)
    return {q: sum(samples) / len(samples) for q, samples in grouped.items()}


def within_variance(results: list[QuestionResult]) -> float:
    """How much one sample of a question varies around the question's own mean: the mean over
    questions of the (unbiased) variance of its samples; 0 with one sample per question."""
    grouped: dict[str, list[bool]] = {}
    for r in results:
        grouped.setdefault(r.id, []).append(r.correct)
    variances = [_sample_variance(samples) for samples in grouped.values() if len(samples) > 1]
    return sum(variances) / len(grouped) if variances else 0.0


def _sample_variance(samples: list[bool]) -> float:
    k, mean = len(samples), sum(samples) / len(samples)
    return mean * (1 - mean) * k / (k - 1)


class AccuracyResult(BaseModel):
    benchmark: str
    kind: Kind
    n: int  # questions
    correct: int  # correct samples, over all n x samples
    score: float  # avg@k: the mean over questions of each question's share of correct samples
    se: float  # treating a question's samples as one cluster (binomial sqrt(p(1-p)/n) with one sample)
    settings: dict[str, Any]
    samples: int = 1  # k samples per question
    # Per-question records; stored beside release.json (accuracy-<side>-<name>.jsonl), not in it.
    results: list[QuestionResult] = []

    def per_question(self) -> dict[str, float]:
        return per_question_means(self.results)

    def within_variance(self) -> float:
        return within_variance(self.results)


class FlagGemsRecord(BaseModel):
    """The operators FlagGems recorded in one side's container (flaggems_record.py), read from
    `path` before the container stopped; `present` is False when no record was written."""

    path: str
    present: bool
    operators: list[str] = []


class SideResult(BaseModel):
    side: str
    use_flaggems: bool
    # The environment the chip's launcher declared for this side (what switched FlagOS on or off).
    env: dict[str, str] = {}
    ready_seconds: float
    perf: list[PerfResult]  # per level, the median-throughput repeat
    perf_repeats: list[list[PerfResult]] = []  # every repeat as measured; stored as perf-<side>.json
    accuracy: dict[str, AccuracyResult]
    seconds: float
    # What FlagGems recorded on this side; None when the stack has no FlagGems (nothing to read).
    flaggems: FlagGemsRecord | None = None


class BenchScore(BaseModel):
    score: float = Field(ge=0, le=1)
    n: int = Field(ge=1)  # questions
    per_question: dict[str, float] | None = None  # question id -> share of its samples correct, in [0, 1]
    samples: int = Field(default=1, ge=1)  # k samples per question (avg@k)
    # The variance of one sample around its question's mean (results.within_variance); 0 when
    # there is one sample per question or it is not known (published numbers).
    within_var: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _n_matches_questions(self) -> BenchScore:
        if self.per_question is not None and len(self.per_question) != self.n:
            raise ValueError(f"n={self.n} but {len(self.per_question)} per-question results")
        return self


class ReferenceScore(BaseModel):
    """What one benchmark of a release was gated against, and what that number traces to.

    `origin`: `published` numbers typed from a card (raw results only when the baseline ships
    per-question files), a `released` cell's record (its per-question file in the artifact
    store, with the file's sha256 and the image's digest), or the native side of `this run`.
    """

    against: str  # as `compared_against` says it: "baseline Qwen3-4B-H100-CUDA", ...
    origin: Literal["published", "released", "this run"]
    score: float
    n: int
    samples: int = 1
    raw: str | None = None  # the per-question results the score is computed from
    sha256: str | None = None  # of `raw`, as read when the gate compared against it
    run_id: str | None = None  # the released reference run
    image: str | None = None  # the released reference image, registry/repository@digest
    source: str = ""  # where published numbers come from


class BenchVerdict(BaseModel):
    benchmark: str
    verdict: Verdict
    rule: Literal["classic", "statistical"]
    se_method: Literal["paired", "unpaired"]
    diff: float  # candidate - reference
    se: float
    ci_low: float
    ci_high: float
    reason: str


class PerfRatio(BaseModel):
    """Candidate / reference throughput of one level, over paired measurement windows."""

    max_concurrency: int
    input_len: int
    output_len: int
    output_throughput: float  # geometric mean of the pairs' ratios
    total_token_throughput: float
    # Per pair of windows (one per side, measured back to back): the worse of the output and
    # total-token ratios. The gate's interval comes from their spread.
    pair_ratios: list[float] = []


class PerfVerdict(BaseModel):
    level: PerfRatio
    verdict: Verdict
    reason: str
    threshold: float = 0.8  # the policy's perf_min_ratio it was judged against
    ci_low: float | None = None  # the ratio's confidence interval (statistical rule, >= 2 pairs)
    ci_high: float | None = None


class GateReport(BaseModel):
    verdict: Verdict
    release: bool
    reason: str
    accuracy: list[BenchVerdict]
    perf: list[PerfVerdict]
    # Whether FlagGems served operators on the flaggems side and none on the native one (the
    # sides' records); None when the stack has no FlagGems, so both sides are the same stack.
    sides_distinct: bool | None = None


class PublishResult(BaseModel):
    registry: str
    repository: str
    tags: list[str]  # the release tag, then the aliases
    digest: str
    seconds: float
    key_tag: str | None = None  # names the release key; set last, so it marks a complete release

    @property
    def pull_ref(self) -> str:
        return f"{self.registry}/{self.repository}@{self.digest}"


class StagedImage(BaseModel):
    """An image of a multi-arch set, pushed under `staging-<tag>` and verified, not yet released."""

    registry: str
    repository: str
    tag: str  # the release tag it gets when the whole set is promoted
    aliases: list[str]
    key_tag: str | None = None  # set last, when the set is promoted
    digest: str
    artifacts: list[str] = []  # its SBOM and provenance (manifest digests): removed with it in a roll back


class StoredCopy(BaseModel):
    store: str
    ok: bool
    files: int
    error: str | None = None


class ReportResult(BaseModel):
    card: Path | None
    stores: list[StoredCopy]
    ledger: Path
