"""A released cell as the gate's reference: found in the (real, SQLite) ledger, its per-question
results read back from the artifact store (a local directory here; S3 in
tests/integration/test_artifact_store.py), checked, traced by sha256 and digested into the key."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
import yaml

from flagrelease.adapters.ledger import Ledger
from flagrelease.errors import ConfigError
from flagrelease.matrix import load_matrix, select
from flagrelease.record import ReleaseRecord
from flagrelease.results import AccuracyResult, PublishResult, QuestionResult, SideResult
from flagrelease.settings import Settings
from flagrelease.steps import gate, reference
from flagrelease.steps.report import save_run
from tests.conftest import ROOT

DIGEST = "sha256:" + "c" * 64


def accuracy(name: str, answers: list[bool]) -> AccuracyResult:
    results = [
        QuestionResult(id=f"q{i}", expected="A", answer="A" if ok else "B", correct=ok, attempts=1)
        for i, ok in enumerate(answers)
    ]
    score = sum(answers) / len(answers)
    return AccuracyResult(
        benchmark=name, kind="multiple_choice", n=len(answers), correct=sum(answers), score=score, se=0.0,
        settings={}, results=results,
    )  # fmt: skip


def sides(answers: dict[str, list[bool]]) -> dict[str, SideResult]:
    return {
        side: SideResult(
            side=side,
            use_flaggems=side == "flaggems",
            ready_seconds=1.0,
            perf=[],
            accuracy={name: accuracy(name, a) for name, a in answers.items()},
            seconds=1.0,
        )
        for side in ("native", "flaggems")
    }


def release_nvidia(settings: Settings, run_id: str, answers: list[bool], status: str = "released") -> ReleaseRecord:
    """Release qwen3-4b x nvidia-h100 as the pipeline records one: files, release.json, ledger."""
    record = ReleaseRecord(
        run_id=run_id,
        started=datetime.now(UTC),
        cell="qwen3-4b--nvidia-h100",
        model="qwen3-4b",
        chip="nvidia-h100",
        status=status,
        bench=sides({"gpqa": answers}),
        publish=PublishResult(
            registry="127.0.0.1:5000", repository="flagrelease/nvidia", tags=["2601010000"], digest=DIGEST, seconds=0
        ),
    )
    run_dir = save_run(record, settings.results_dir)
    Ledger(settings.ledger_path).record(ReleaseRecord.load(run_dir))
    return record


@pytest.fixture
def project(tmp_path):
    """The shipped matrix with qwen3-4b gated against the released native NVIDIA cell."""
    data = yaml.safe_load((ROOT / "matrix.yaml").read_text())
    data["models"]["qwen3-4b"]["bench"]["reference"] = {"chip": "nvidia-h100", "side": "native"}
    for name in ("dockerfiles", "datasets", "baselines"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / "matrix.yaml").write_text(yaml.safe_dump(data))
    matrix = load_matrix(tmp_path / "matrix.yaml")
    settings = Settings(home=tmp_path / "home", s3_url=None)
    return matrix, settings


RUN_1 = "20260101T000000Z-111111"
RUN_2 = "20260102T000000Z-222222"
ANSWERS = [True, True, False, True, False, True, True, False]


def test_a_released_reference_traces_to_its_run_image_and_per_question_file(project):
    matrix, settings = project
    release_nvidia(settings, RUN_1, ANSWERS)
    [a3] = select(matrix, chip="ascend-a3", model="qwen3-4b")
    found = reference.resolve(a3, matrix, settings)
    assert found is not None
    raw = settings.results_dir / "qwen3-4b--nvidia-h100" / RUN_1 / "accuracy-native-gpqa.jsonl"
    trace = found.trace["gpqa"]
    assert trace.origin == "released"
    assert trace.against == f"released qwen3-4b x nvidia-h100 run {RUN_1} (native side)"
    assert (trace.run_id, trace.image) == (RUN_1, f"127.0.0.1:5000/flagrelease/nvidia@{DIGEST}")
    assert trace.raw == str(raw) and trace.sha256 == hashlib.sha256(raw.read_bytes()).hexdigest()
    assert found.scores["gpqa"].per_question == {f"q{i}": float(a) for i, a in enumerate(ANSWERS)}
    # The gate pairs the candidate with the reference question by question.
    candidate = sides({"gpqa": ANSWERS[:-1] + [True]})
    report, compared = gate.judge(candidate, found, a3.model.bench.gate)
    assert report.accuracy[0].se_method == "paired" and report.accuracy[0].diff == pytest.approx(1 / 8)
    assert compared["gpqa"] == trace


def test_the_newest_release_is_the_reference_and_moves_the_digest(project):
    matrix, settings = project
    [a3] = select(matrix, chip="ascend-a3", model="qwen3-4b")
    release_nvidia(settings, RUN_1, ANSWERS)
    first = reference.resolve(a3, matrix, settings)
    assert first is not None and reference.resolve(a3, matrix, settings) == first  # stable
    release_nvidia(settings, RUN_2, ANSWERS)  # same numbers, a new release
    second = reference.resolve(a3, matrix, settings)
    assert second is not None and second.trace["gpqa"].run_id == RUN_2 and second.digest != first.digest
    pinned = reference.resolve(a3, matrix, settings, run=RUN_1)
    assert pinned == first


def test_the_reference_cell_itself_is_gated_against_its_own_native_side(project):
    matrix, settings = project
    [nvidia] = select(matrix, chip="nvidia-h100", model="qwen3-4b")
    assert reference.resolve(nvidia, matrix, settings) is None  # no ledger needed


def test_no_released_reference_stops_the_run_saying_what_to_release(project):
    matrix, settings = project
    [a3] = select(matrix, chip="ascend-a3", model="qwen3-4b")
    release_nvidia(settings, RUN_1, ANSWERS, status="gated")
    with pytest.raises(ConfigError, match="the reference cell qwen3-4b x nvidia-h100 has no released run") as err:
        reference.resolve(a3, matrix, settings)
    assert err.value.where.endswith("models.qwen3-4b.bench.reference")
    assert "release qwen3-4b x nvidia-h100 first" in (err.value.fix or "")
    with pytest.raises(ConfigError, match=f"run {RUN_1} is qwen3-4b x nvidia-h100 with status 'gated'"):
        reference.resolve(a3, matrix, settings, run=RUN_1)


def test_raw_results_that_do_not_give_the_recorded_score_are_refused(project):
    matrix, settings = project
    release_nvidia(settings, RUN_1, ANSWERS)
    raw = settings.results_dir / "qwen3-4b--nvidia-h100" / RUN_1 / "accuracy-native-gpqa.jsonl"
    raw.write_text(raw.read_text().replace('"correct": false', '"correct": true', 1))
    [a3] = select(matrix, chip="ascend-a3", model="qwen3-4b")
    with pytest.raises(ConfigError, match="give 8 questions scoring 0.7500; its record says 8 scoring 0.6250"):
        reference.resolve(a3, matrix, settings)


def test_a_reference_that_is_not_a_cell_of_the_matrix_is_refused_at_load(tmp_path):
    data = yaml.safe_load((ROOT / "matrix.yaml").read_text())
    data["models"]["qwen3-4b"]["bench"]["reference"] = {"chip": "cpu"}
    (tmp_path / "matrix.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="gated against the released cell qwen3-4b x cpu, which is not a cell"):
        load_matrix(tmp_path / "matrix.yaml")


def test_a_published_reference_keeps_its_numbers_and_says_it_has_no_raw_results():
    matrix = load_matrix(ROOT / "matrix.yaml")
    [a3] = select(matrix, chip="ascend-a3", model="qwen3-4b")
    found = reference.resolve(a3, matrix, Settings(home=ROOT / "nowhere", s3_url=None))
    assert found is not None
    trace = found.trace["aime"]
    assert (trace.origin, trace.score, trace.n, trace.raw, trace.against) == (
        "published",
        0.7,
        30,
        None,
        "baseline Qwen3-4B-H100-CUDA",
    )
