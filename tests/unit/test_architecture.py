"""The layout is the architecture: who may import whom, and one name for release.json."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "flagrelease"


def imports(path: Path) -> set[str]:
    """Every flagrelease module a file imports (at any level, lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("flagrelease"):
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("flagrelease")}
    return found


def modules(sub: str) -> list[Path]:
    return sorted((PACKAGE / sub).glob("*.py"))


def top_level() -> list[Path]:
    return sorted(PACKAGE.glob("*.py"))


@pytest.mark.parametrize("path", modules("adapters"), ids=lambda p: p.name)
def test_adapters_import_no_step_and_no_cli(path):
    assert not {m for m in imports(path) if m.startswith(("flagrelease.steps", "flagrelease.cli"))}


@pytest.mark.parametrize("path", modules("steps"), ids=lambda p: p.name)
def test_steps_import_no_cli(path):
    assert not {m for m in imports(path) if m.startswith("flagrelease.cli")}


@pytest.mark.parametrize("path", top_level(), ids=lambda p: p.name)
def test_the_core_imports_no_step_adapter_or_cli(path):
    """Matrix, cell facts, naming, record and results are pure data and decisions."""
    outward = {
        m for m in imports(path) if m.startswith(("flagrelease.steps", "flagrelease.adapters", "flagrelease.cli"))
    }
    assert not outward, f"{path.name} imports {sorted(outward)}"


# The build consumes the rendered context; nobody else needs the renderer.
@pytest.mark.parametrize(
    "path",
    [p for p in [*modules("steps"), *top_level()] if p.name not in ("render.py", "build.py")],
    ids=lambda p: p.name,
)
def test_no_step_asks_the_renderer_for_a_cell_fact(path):
    assert "flagrelease.steps.render" not in imports(path)


def test_release_json_is_named_in_one_place():
    """Only record.py spells the record's file name as a value (docstrings and messages may mention it)."""
    spelled = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and node.value == "release.json"
    ]
    assert spelled == ["flagrelease/record.py:" + str(_record_file_line())]


def _record_file_line() -> int:
    for node in ast.walk(ast.parse((PACKAGE / "record.py").read_text())):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "RECORD_FILE":
            return node.lineno
    raise AssertionError("record.py defines no RECORD_FILE")
