"""Reading FlagGems' record of the operators it served, and what it proves about the two sides.

The records here are written the way FlagGems writes them: Python logging to a file, with
the formatter of FlagGems' own `setup_flaggems_logging` (3.x/4.x: `[%(levelname)s]
%(name)s: %(message)s`; 5.x adds `.%(funcName)s`), from loggers named after the operator
modules, and the `GEMS <NAME>` messages of its operators."""

from __future__ import annotations

import logging

import pytest

from flagrelease import flaggems_record
from flagrelease.results import FlagGemsRecord, GateReport, SideResult
from flagrelease.schema import GatePolicy
from flagrelease.steps.gate import distinct_sides

FORMATS = {
    "flaggems-4": "[%(levelname)s] %(name)s: %(message)s",
    "flaggems-5": "[%(levelname)s] %(name)s.%(funcName)s: %(message)s",
    "flaggems-2": "%(levelname)s:%(name)s:%(message)s",  # 2.x logs to the root logger (basicConfig)
}


def write_record(path, fmt: str, calls: list[tuple[str, str]]) -> None:
    """Log `calls` (logger name, message) as FlagGems' record handler would, from functions
    named like FlagGems' own (funcName shows in the 5.x format)."""
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter(fmt))
    for name, message in calls:
        logger = logging.getLogger(name)
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
        logger.propagate = False

        def general_mm(logger: logging.Logger = logger, message: str = message) -> None:
            logger.debug(message)

        general_mm()
        logger.removeHandler(handler)
    handler.close()


CALLS = [
    ("flag_gems.ops.fill", "GEMS FILL_SCALAR_"),
    ("flag_gems.ops.fill", "GEMS FILL_SCALAR_"),
    (
        "flag_gems.ops.mm",
        "GEMS MM, [mm scenario]: general, [shape info]: [-, 128, 2560, 9728](batch, M, N, K), "
        "[A column-major]: False, [B column-major]: True",
    ),
    ("flag_gems.fused.reshape_and_cache", "GEMS RESHAPE_AND_CACHE"),
    ("flag_gems.ops.rms_norm", "GEMS LAYERNORM FORWARD"),
    ("flag_gems.runtime.backend._ascend.ops.add", "GEMS ADD"),
]
OPERATORS = ["add", "fill_scalar_", "layernorm_forward", "mm", "reshape_and_cache"]


@pytest.mark.parametrize("version", ["flaggems-4", "flaggems-5"])
def test_operators_of_a_flaggems_record(tmp_path, version):
    path = tmp_path / "gems_oplist.log.txt"
    write_record(path, FORMATS[version], CALLS)
    text = path.read_text()
    assert "[DEBUG] flag_gems.ops.mm" in text  # the record as FlagGems writes it
    assert flaggems_record.operators(text.splitlines()) == OPERATORS


def test_flaggems_2_logs_to_the_root_logger(tmp_path):
    path = tmp_path / "engine.log"
    write_record(path, FORMATS["flaggems-2"], [("root", "GEMS ADD"), ("root", "GEMS MM")])
    assert path.read_text().splitlines() == ["DEBUG:root:GEMS ADD", "DEBUG:root:GEMS MM"]
    assert flaggems_record.operators(path.read_text().splitlines()) == ["add", "mm"]


def test_other_log_lines_name_no_operator():
    lines = [
        "[INFO] flag_gems.runtime: Successfully enabled flag_gems as default ops implementation.",
        "Patched RMSNorm.forward_cuda with FLAGGEMS custom_gems_rms_forward_cuda",
        "INFO 12-02 02:11:05 [api_server.py:1090] Starting vLLM API server on http://0.0.0.0:9010",
        "",
    ]
    assert flaggems_record.operators(lines) == []


def record(operators: list[str] | None, present: bool = True) -> FlagGemsRecord | None:
    return (
        None
        if operators is None
        else FlagGemsRecord(path="/tmp/gems_oplist.log.txt", present=present, operators=operators)
    )


def sides(native: FlagGemsRecord | None, flaggems: FlagGemsRecord | None) -> dict[str, SideResult]:
    def side(name: str, found: FlagGemsRecord | None) -> SideResult:
        return SideResult(
            side=name, use_flaggems=name == "flaggems", ready_seconds=1, perf=[], accuracy={}, seconds=1, flaggems=found
        )

    return {"native": side("native", native), "flaggems": side("flaggems", flaggems)}


def passed() -> GateReport:
    return GateReport(verdict="PASS", release=True, reason="every gate passed", accuracy=[], perf=[])


def test_flaggems_on_one_side_only_proves_the_sides_distinct():
    report = distinct_sides(passed(), sides(record([]), record(OPERATORS)), GatePolicy())
    assert (report.verdict, report.release, report.sides_distinct) == ("PASS", True, True)


def test_a_stack_without_flaggems_is_not_looked_at():
    report = distinct_sides(passed(), sides(None, None), GatePolicy())
    assert (report.verdict, report.sides_distinct) == ("PASS", None)


@pytest.mark.parametrize(
    "native,flaggems,why",
    [
        (record([]), record([], present=False), "the flaggems side left no record at /tmp/gems_oplist.log.txt"),
        (record([]), record([]), "the flaggems side left an empty record at /tmp/gems_oplist.log.txt"),
        (record(["mm"]), record(OPERATORS), "FlagGems served 1 operator(s) on the native side (mm)"),
    ],
    ids=["no-record", "empty-record", "native-ran-flaggems"],
)
def test_sides_that_cannot_be_told_apart_are_inconclusive(native, flaggems, why):
    report = distinct_sides(passed(), sides(native, flaggems), GatePolicy())
    assert (report.verdict, report.release, report.sides_distinct) == ("INCONCLUSIVE", False, False)
    assert report.reason.startswith("inconclusive (blocks release): sides not distinct: ")
    assert why in report.reason


def test_a_failed_gate_stays_failed_and_says_the_sides_are_not_distinct():
    failed = GateReport(verdict="FAIL", release=False, reason="failed: gpqa", accuracy=[], perf=[])
    report = distinct_sides(failed, sides(record([]), record([])), GatePolicy())
    assert report.verdict == "FAIL" and report.reason.startswith("failed: gpqa; sides not distinct:")
