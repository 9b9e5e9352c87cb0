"""The watch's decisions on invented index contents (the real index is in the integration test)."""

from __future__ import annotations

import yaml

from flagrelease.index_pins import IndexFile, ProjectFiles
from flagrelease.matrix import expand, load_matrix
from flagrelease.matrix_patch import scalar, set_pins, unified_diff
from flagrelease.steps.watch import chips_in_cells
from flagrelease.watch import propose
from tests.conftest import ROOT

MATRIX = load_matrix(ROOT / "matrix.yaml")
BY_CHIP = chips_in_cells(expand(MATRIX))


def listing(project: str, *versions: str) -> ProjectFiles:
    return ProjectFiles(
        project=project,
        files=[IndexFile(filename=f"{project}-{v}.tar.gz", version=v, kind="sdist") for v in versions],
    )


def index(**extra: ProjectFiles) -> dict[str, ProjectFiles | None]:
    """What the FL rows pin, and nothing newer; `extra` replaces projects."""
    base = {
        "torch": listing("torch", "2.9.0", "2.10.0"),
        "torch-npu": listing("torch-npu", "2.10.0.post4"),
        "vllm": listing("vllm", "0.23.0"),
        "vllm-ascend": listing("vllm-ascend", "0.23.0"),
        "flag-gems": listing("flag-gems", "5.0.2"),
    }
    return base | extra


def run(chip: str, releases, prereleases=False):
    news, candidates = propose({chip: BY_CHIP[chip]}, MATRIX.compatibility, releases, prereleases)
    return {n.pin: n for n in news}, candidates


def test_nothing_newer_proposes_nothing():
    news, candidates = run("ascend-a3-fl", index())
    assert candidates == [] and {n.status for n in news.values()} == {"current"}


def test_a_compatible_newer_release_is_proposed():
    news, [candidate] = run("ascend-a3-fl", index(**{"flag-gems": listing("flag-gems", "5.0.2", "5.1.0", "6.0.0rc1")}))
    assert candidate.chip == "ascend-a3-fl" and candidate.changes == {"flaggems": ("5.0.2", "5.1.0")}
    assert news["flaggems"].status == "newest" and news["flaggems"].newest == "5.1.0"  # no pre-release
    assert len(candidate.cells) == 3


def test_a_newer_release_a_rule_blocks_names_the_rule():
    """torch_npu 2.11 needs a CANN the table does not pair with it (and vllm-ascend 0.23 pins 2.10)."""
    news, candidates = run("ascend-a3-fl", index(**{"torch-npu": listing("torch-npu", "2.10.0.post4", "2.11.0")}))
    assert candidates == []
    row = news["torch_npu"]
    assert row.status == "blocked" and row.newest == "2.11.0" and row.proposed is None
    assert {"torch-npu-matches-torch", "torch-npu-supports-cann"} <= {b.rule for b in row.blocked_by}


def test_a_pin_stops_at_the_newest_release_the_rules_know():
    """vllm-ascend's table knows 0.23.0* on CANN 9.1: 0.23.1 is blocked by it, 0.23.0.post1 moves."""
    releases = index(**{"vllm-ascend": listing("vllm-ascend", "0.23.0", "0.23.0.post1", "0.23.1")})
    news, [candidate] = run("ascend-a3-fl", releases)
    assert candidate.changes == {"vllm_plugin": ("0.23.0", "0.23.0.post1")}
    assert news["vllm_plugin"].status == "newer"
    assert [b.rule for b in news["vllm_plugin"].blocked_by] == [
        "vllm-ascend-supports-cann",
        "vllm-ascend-pins-torch-npu",
    ]


def test_coupled_pins_move_together_when_the_rules_allow():
    """On the CUDA reference row vLLM pins torch: vLLM 0.23.0 comes with torch 2.11.0."""
    releases = {
        "torch": listing("torch", "2.7.1", "2.11.0", "2.12.0"),
        "vllm": listing("vllm", "0.10.0", "0.23.0"),
        "flag-scale": listing("flag-scale", "0.8.0"),
    }
    news, [candidate] = run("nvidia-h100", releases)
    assert candidate.changes == {"torch": ("2.7.1", "2.11.0"), "vllm": ("0.10.0", "0.23.0")}
    assert news["torch"].status == "newer" and [b.rule for b in news["torch"].blocked_by] == ["cuda-vllm-pins-torch"]


def test_a_project_missing_from_the_index_is_reported():
    news, candidates = run("ascend-a3-fl", index(**{"flag-gems": None}))
    assert news["flaggems"].status == "not-on-index" and candidates == []


def test_the_patch_edits_values_in_place_and_keeps_the_comments(tmp_path):
    text = (ROOT / "matrix.yaml").read_text()
    patched = set_pins(
        text,
        {
            "ascend-a3-fl": {"vllm_plugin": "0.23.0.post1"},  # inherited: the row gets its own key
            "nvidia-h100-fl": {"vllm": "0.23.1", "torch_npu": "2.10"},  # in place, and a new key
            "ascend-a3-cann83": {"torch": "2.7.2"},  # a flow mapping
        },
    )
    data = yaml.safe_load(patched)
    assert data["chips"]["ascend-a3-fl"]["stack"] == {"vllm_plugin": "0.23.0.post1"}
    assert data["chips"]["nvidia-h100-fl"]["stack"]["vllm"] == "0.23.1"
    assert data["chips"]["nvidia-h100-fl"]["stack"]["torch_npu"] == "2.10"  # a string, not 2.1
    assert data["chips"]["ascend-a3-cann83"]["stack"]["torch"] == "2.7.2"
    diff = unified_diff(text, patched, "matrix.yaml")
    assert sum(line.startswith("-") and not line.startswith("---") for line in diff.splitlines()) == 2
    assert [line for line in text.splitlines() if "#" in line] == [line for line in patched.splitlines() if "#" in line]
    (tmp_path / "matrix.yaml").write_text(patched)
    (tmp_path / "dockerfiles").symlink_to(ROOT / "dockerfiles")
    assert load_matrix(tmp_path / "matrix.yaml").chips["ascend-a3-fl"].stack.vllm_plugin == "0.23.0.post1"
    assert load_matrix(tmp_path / "matrix.yaml").chips["ascend-a2-fl"].stack.vllm_plugin == "0.23.0"


def test_scalars_read_back_as_the_strings_they_are():
    for value in ("2.2", "0.23.0", "2.10", "1:0.7.0", "true", "0.23.0.post1"):
        assert yaml.safe_load(f"x: {scalar(value)}")["x"] == value


def test_only_releases_the_image_can_install_are_candidates():
    """An aarch64-only wheel is news for the arm64 A3 row, not for the amd64 H100 row."""
    arm_only = ProjectFiles(
        project="flag-gems",
        files=[
            IndexFile(filename="flag_gems-5.0.2.tar.gz", version="5.0.2", kind="sdist"),
            IndexFile(filename="flag_gems-5.1.0-cp312-cp312-manylinux_2_28_aarch64.whl", version="5.1.0", kind="wheel"),
        ],
    )
    a3, [candidate] = run("ascend-a3-fl", index(**{"flag-gems": arm_only}))
    assert candidate.changes == {"flaggems": ("5.0.2", "5.1.0")}
    releases = index(**{"flag-gems": arm_only}) | {
        "torch": listing("torch", "2.11.0"),
        "vllm": listing("vllm", "0.23.0"),
    }
    h100, candidates = run("nvidia-h100-fl", releases)
    assert candidates == [] and h100["flaggems"].status == "current" and h100["flaggems"].newest is None
