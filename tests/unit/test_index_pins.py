"""Which pins come from the package index, and whether the index can install them (pure)."""

from __future__ import annotations

from flagrelease.index_pins import IndexFile, IndexPin, ProjectFiles, index_pins, pin_problem
from flagrelease.matrix import load_matrix
from tests.conftest import ROOT

MATRIX = load_matrix(ROOT / "matrix.yaml")
INDEX = "http://127.0.0.1:1/simple/"


def wheel(name: str, version: str, tag: str = "py3-none-any", requires: str | None = None, yanked=False):
    return IndexFile(
        filename=f"{name}-{version}-{tag}.whl", version=version, kind="wheel", requires_python=requires, yanked=yanked
    )


def pin(project="flag-gems", version="5.0.2", python="3.12", arch="arm64", key="flaggems") -> IndexPin:
    return IndexPin(chip="ascend-a3-fl", pin=key, project=project, version=version, python=python, arch=arch)


def test_pins_from_the_index_are_data_and_sources_win():
    """The reference card's FlagGems 2.2 comes from git and is not looked up; its FlagScale is."""
    seed = {p.pin: p.project for p in index_pins("ascend-a3", MATRIX.chips["ascend-a3"])}
    assert seed == {
        "torch": "torch",
        "torch_npu": "torch-npu",
        "vllm": "vllm",
        "vllm_plugin": "vllm-ascend",
        "flagscale": "flag-scale",
    }
    fl = {p.pin: p.version for p in index_pins("ascend-a3-fl", MATRIX.chips["ascend-a3-fl"])}
    # vllm-plugin-FL comes from its git tag; FlagScale is `none` there
    assert fl == {
        "torch": "2.10.0",
        "torch_npu": "2.10.0.post4",
        "vllm": "0.23.0",
        "vllm_plugin": "0.23.0",
        "flaggems": "5.0.2",
    }
    assert [p.pin for p in index_pins("cpu", MATRIX.chips["cpu"])] == ["flagscale"]
    assert pin().key == "chips.ascend-a3-fl.stack.flaggems"


def test_a_pinned_version_the_index_has_passes():
    files = ProjectFiles(project="flag-gems", files=[wheel("flag_gems", "5.0.2", requires=">=3.10")])
    assert pin_problem(pin(), files, INDEX) is None
    assert pin_problem(pin(version="5.0.2.0"), files, INDEX) is None  # PEP 440 equal


def test_a_missing_version_is_named_with_the_releases_near_it():
    files = ProjectFiles(
        project="flag-gems", files=[wheel("flag_gems", v) for v in ("4.0", "4.2.0", "5.0.0", "5.0.2", "1.0")]
    )
    problem = pin_problem(pin(version="2.2"), files, INDEX)
    assert problem is not None and problem.startswith(f"flag-gems==2.2 is not on {INDEX}")
    assert "4.0" in problem and "1.0" in problem


def test_a_missing_project_and_a_yanked_release():
    assert pin_problem(pin(), None, INDEX) == f"flag-gems==5.0.2: the index {INDEX} has no project flag-gems"
    yanked = ProjectFiles(project="flag-gems", files=[wheel("flag_gems", "5.0.2", yanked=True)])
    assert pin_problem(pin(), yanked, INDEX) == f"flag-gems==5.0.2 is yanked on {INDEX}"


def test_a_release_without_a_file_for_the_python_or_the_platform():
    """FlagScale 0.8.0 is on PyPI as one x86_64 wheel: an arm64 (A3) image cannot install it."""
    scale = ProjectFiles(
        project="flag-scale", files=[wheel("flag_scale", "0.8.0", tag="py3-none-manylinux2014_x86_64")]
    )
    arm = pin(project="flag-scale", version="0.8.0", python="3.11.11", arch="arm64", key="flagscale")
    problem = pin_problem(arm, scale, INDEX)
    assert problem is not None and "no file for python 3.11.11 on linux/arm64" in problem
    assert pin_problem(arm.model_copy(update={"arch": "amd64"}), scale, INDEX) is None
    ascend = ProjectFiles(
        project="vllm-ascend",
        files=[wheel("vllm_ascend", "0.23.0", tag=f"cp3{m}-cp3{m}-manylinux_2_34_aarch64") for m in (10, 11, 12)],
    )
    plugin = pin(project="vllm-ascend", version="0.23.0", key="vllm_plugin")
    assert pin_problem(plugin, ascend, INDEX) is None
    assert "no file for python 3.13" in (pin_problem(plugin.model_copy(update={"python": "3.13"}), ascend, INDEX) or "")
    gems = ProjectFiles(project="flag-gems", files=[wheel("flag_gems", "5.0.2", requires=">=3.10")])
    assert "no file for python 3.9" in (pin_problem(pin(python="3.9"), gems, INDEX) or "")
