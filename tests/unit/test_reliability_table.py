"""docs/reliability.md keeps one row per fault-injection test, and no row for a test that is gone."""

from __future__ import annotations

import ast
import re

from tests.conftest import ROOT

SUITE = ROOT / "tests/integration/test_faults.py"
DOC = ROOT / "docs/reliability.md"


def suite_tests() -> set[str]:
    tree = ast.parse(SUITE.read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def table_tests() -> set[str]:
    section = DOC.read_text().split("## Faults injected", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`test_" in line]
    return {name for row in rows for name in re.findall(r"`(test_\w+)", row.rsplit("|", 2)[-2])}


def test_every_fault_test_has_a_row_and_every_row_a_test():
    assert suite_tests(), "no fault-injection tests found"
    assert table_tests() == suite_tests()
