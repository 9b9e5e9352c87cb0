"""Progress events -> board -> what the live display draws, and --progress's modes."""

from __future__ import annotations

import logging
import sys

import pytest
from prefect.logging.loggers import PrefectLogAdapter  # what get_run_logger() returns
from rich.console import Console

from flagrelease.cli.progress import BoardHandler, progress_mode, render_board
from flagrelease.errors import ConfigError, ServiceError
from flagrelease.progress import (
    EVENT_ATTR,
    Board,
    CellFinished,
    CellsPlanned,
    CellStarted,
    LogLine,
    StageFinished,
    StageStarted,
    clean_line,
    emit,
    stage_passed,
    stage_result,
)
from flagrelease.record import ReleaseRecord
from tests.conftest import ROOT

CELL = "tiny-llama--cpu"


def draw(board: Board, now: float, width: int = 100) -> str:
    console = Console(record=True, width=width, force_terminal=False, color_system=None)
    console.print(render_board(board, now))
    return console.export_text()


def replay(events: list[tuple[float, object]]) -> Board:
    board = Board()
    for now, event in events:
        board.apply(event, now)  # type: ignore[arg-type]
    return board


def test_one_cell_shows_each_stage_its_time_and_result_and_the_running_stages_line():
    board = replay(
        [
            (0.0, CellStarted(cell=CELL, run_id="r1", log="/results/tiny-llama--cpu/r1/run.log")),
            (0.0, StageStarted(cell=CELL, stage="preflight")),
            (0.4, StageFinished(cell=CELL, stage="preflight", ok=True, seconds=0.4)),
            (0.4, StageStarted(cell=CELL, stage="build")),
            (3.0, LogLine(cell=CELL, text="#5 [1/2] FROM stack\r\n\x1b[32m#6 [2/2] COPY serve /workspace\x1b[0m\n")),
        ]
    )
    text = draw(board, now=12.4)
    lines = text.splitlines()
    assert lines[0].split()[1:4] == [CELL, "running", "12.4"]
    assert any(line.split()[:3] == ["✓", "preflight", "0.4"] for line in lines)
    build = next(line for line in lines if "build" in line)
    assert "12.0 s" in build  # elapsed since the stage started, from the clock passed in
    assert "#6 [2/2] COPY serve /workspace" in text and "#5" not in text and "\x1b" not in text
    assert "full log: /results/tiny-llama--cpu/r1/run.log" in text


def test_a_finished_cell_keeps_its_stage_results_and_drops_the_last_line():
    board = replay(
        [
            (0.0, CellStarted(cell=CELL, run_id="r1", log="run.log")),
            (0.0, StageStarted(cell=CELL, stage="key")),
            (0.5, LogLine(cell=CELL, text="hashing weights")),
            (0.7, StageFinished(cell=CELL, stage="key", ok=True, seconds=0.7, result="unchanged: released as 2612")),
            (0.8, CellFinished(cell=CELL, status="unchanged")),
        ]
    )
    text = draw(board, now=99.0)
    assert "unchanged: released as 2612" in text
    assert "hashing weights" not in text
    assert text.splitlines()[0].split()[:4] == ["✓", CELL, "unchanged", "0.8"]  # stopped at the finish
    assert board.done


def test_a_failed_stage_and_cell_are_marked():
    board = replay(
        [
            (0.0, StageStarted(cell=CELL, stage="smoke")),
            (2.0, StageFinished(cell=CELL, stage="smoke", ok=False, seconds=2.0)),
            (2.0, CellFinished(cell=CELL, status="failed")),
        ]
    )
    text = draw(board, now=5.0)
    assert text.splitlines()[0].startswith("✗")
    board.apply(CellFinished(cell=CELL, status="gated"), 6.0)
    assert draw(board, now=7.0).startswith("✗ tiny-llama--cpu  gated")
    assert any(line.split()[:2] == ["✗", "smoke"] for line in text.splitlines())


def test_a_matrix_run_draws_one_line_per_cell_in_plan_order():
    cells = ["qwen3-4b--ascend-a3", CELL, "tiny-llama--cpu-b"]
    board = replay(
        [
            (0.0, CellsPlanned(cells=cells)),
            (1.0, StageStarted(cell=CELL, stage="bench")),
            (2.0, LogLine(cell=CELL, text="perf c=4 128x128: 12.1 tok/s")),
            (3.0, CellFinished(cell="qwen3-4b--ascend-a3", status="failed")),
        ]
    )
    lines = draw(board, now=4.0).splitlines()
    assert lines[0] == "1/3 cells done"
    assert [line.split()[1] for line in lines[1:]] == cells
    assert lines[1].split()[2] == "failed"
    assert lines[2].split()[2:4] == ["bench", "3.0"] and "perf c=4 128x128" in lines[2]
    assert lines[3].split()[2] == "queued"
    assert not board.done


def test_a_long_log_line_is_cut_to_the_width_not_wrapped():
    board = replay([(0.0, StageStarted(cell=CELL, stage="build")), (0.1, LogLine(cell=CELL, text="x" * 500))])
    text = draw(board, now=1.0, width=80)
    assert all(len(line) <= 80 for line in text.splitlines())
    assert len(text.splitlines()) == 3  # header, the stage, its line


def test_clean_line_takes_the_last_visible_line():
    assert clean_line("a\r\nb\x1b[2K\r\n\n") == "b"
    assert clean_line("\x07\x1b[1A\n") == ""


def test_the_handler_maps_a_cells_flow_run_lines_to_the_cell_and_shows_warnings():
    board = Board()
    console = Console(record=True, width=100, force_terminal=False, color_system=None)
    handler = BoardHandler(board, console, logging.Filter())
    logger = logging.getLogger("test.progress")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        cell_run = PrefectLogAdapter(logger, {"flow_run_id": "f-1"})
        emit(cell_run, CellStarted(cell=CELL, run_id="r1", log="run.log"))
        emit(cell_run, StageStarted(cell=CELL, stage="build"))
        cell_run.info("#7 exporting layers")
        PrefectLogAdapter(logger, {"flow_run_id": "other"}).info("a line of another flow run")
        cell_run.warning("not stored in s3://bucket (the local copy stays)")
    finally:
        logger.removeHandler(handler)
    assert board.cells[CELL].line == "not stored in s3://bucket (the local copy stays)"
    assert "warning: not stored in s3://bucket" in console.export_text()
    assert set(board.cells) == {CELL}


def test_emit_logs_a_readable_line_carrying_the_event(caplog):
    event = StageFinished(cell=CELL, stage="build", ok=True, seconds=12.34, result="built sha256:1a2b")
    with caplog.at_level(logging.INFO, logger="test.emit"):
        emit(logging.getLogger("test.emit"), event)
    [record] = caplog.records
    assert record.getMessage() == "stage build done in 12.3 s: built sha256:1a2b"
    assert getattr(record, EVENT_ATTR) == event


def test_stage_results_come_from_the_record():
    record = ReleaseRecord.load(ROOT / "tests/data/card/tiny-llama--cpu/release.json")
    assert stage_result("gate", record) == f"{record.gate.verdict}: {record.gate.reason}"
    assert record.publish is not None
    assert stage_result("push", record) == f"{record.publish.tags[0]} {record.publish.digest[:19]}"
    assert stage_result("smoke", record).startswith("passed, ready in ")
    assert stage_result("preflight", record) == ""
    assert stage_passed("smoke", record) and stage_passed("gate", record) == record.gate.release
    failed = record.model_copy(
        update={"smoke": record.smoke.model_copy(update={"passed": False, "error": "no /health"})}
    )
    assert not stage_passed("smoke", failed) and stage_result("smoke", failed) == "no /health"


@pytest.mark.parametrize(
    ("option", "stdout_tty", "stderr_tty", "mode"),
    [
        ("auto", True, True, "tty"),
        ("auto", False, True, "plain"),  # piped, CI
        ("auto", True, False, "plain"),  # stderr to a file: no cursor movement in it
        ("tty", False, False, "tty"),
        ("plain", True, True, "plain"),
    ],
)
def test_progress_modes(option, stdout_tty, stderr_tty, mode):
    assert progress_mode(option, stdout_tty, stderr_tty) == mode


def test_an_unknown_progress_mode_is_a_config_error():
    with pytest.raises(ConfigError, match=r"--progress 'fancy' is not one of auto, tty, plain"):
        progress_mode("fancy", True, True)


def test_long_results_never_squeeze_out_the_stage_names():
    board = replay(
        [
            (0.0, StageStarted(cell=CELL, stage="gate")),
            (1.0, StageFinished(cell=CELL, stage="gate", ok=True, seconds=1.0, result="INCONCLUSIVE: " + "y" * 300)),
            (1.0, StageStarted(cell=CELL, stage="push")),
            (2.0, LogLine(cell=CELL, text="z" * 300)),
        ]
    )
    lines = draw(board, now=3.0, width=60).splitlines()
    assert lines[1].split()[:3] == ["✓", "gate", "1.0"] and lines[1].endswith("…")
    assert lines[2].split()[1:3] == ["push", "2.0"]
    assert all(len(line) <= 60 for line in lines)


def test_a_bugs_traceback_is_printed_above_the_display_and_a_handled_failure_is_not():
    from flows.console_logging import HideHandledFailures

    console = Console(record=True, width=200, force_terminal=False, color_system=None)
    handler = BoardHandler(Board(), console, HideHandledFailures())
    logger = logging.getLogger("prefect.flow_runs.test-progress")
    for exc in (KeyError("surprise"), ServiceError("registry refused")):
        try:
            raise exc
        except Exception:
            handler.handle(logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "boom", (), sys.exc_info()))
    text = console.export_text()
    assert text.count("error: boom") == 1
    assert "Traceback (most recent call last)" in text and "KeyError: 'surprise'" in text
    assert "registry refused" not in text
