"""`flagrelease watch` against a real PEP 503 simple index on loopback, with newer releases
planted: the proposal, the rule that blocks an incompatible release, nothing written without
`--apply`, the patch written with it; and preflight's missing-version error before a build."""

from __future__ import annotations

import json

import pytest
import yaml

from flagrelease.matrix import load_matrix
from tests.conftest import ROOT, free_port, parse_json_stdout, run_cli
from tests.local_index import LocalIndex

# What the shipped matrix pins, so that its rows start current ...
PINNED = {
    "torch": ["2.6.0", "2.7.1", "2.10.0", "2.11.0"],
    "torch-npu": ["2.6.0rc1", "2.7.1", "2.10.0.post4"],
    "vllm": ["0.9.1", "0.10.0", "0.11.0", "0.23.0"],
    "vllm-ascend": ["0.9.1", "0.11.0rc1", "0.23.0"],
    "flag-gems": ["5.0.2"],
    "flag-scale": ["0.8.0"],
}
FL_ROWS = ["ascend-a2-fl", "ascend-a3-fl", "nvidia-h100-fl"]


def sdist(project: str, version: str) -> str:
    return f"{project.replace('-', '_')}-{version}.tar.gz"


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    """The pinned releases, plus FlagGems 5.1.0 (compatible) and torch_npu 2.11.0 (no rule pairs it
    with a CANN yet)."""
    local = LocalIndex(tmp_path_factory.mktemp("index"))
    for project, versions in PINNED.items():
        for version in versions:
            local.publish(project, sdist(project, version))
    local.publish("flag-gems", "flag_gems-5.1.0-py3-none-any.whl", requires_python=">=3.10")
    local.publish("flag-gems", "flag_gems-5.2.0rc1-py3-none-any.whl", requires_python=">=3.10")  # pre-release
    local.publish("torch-npu", "torch_npu-2.11.0-cp312-cp312-manylinux_2_28_aarch64.whl")
    local.publish("flagcx", "flagcx-0.9.0.tar.gz")
    with local.serving() as url:
        yield url


def matrix_copy(directory):
    directory.mkdir()
    (directory / "matrix.yaml").write_text((ROOT / "matrix.yaml").read_text())
    for part in ("dockerfiles", "datasets", "baselines"):
        (directory / part).symlink_to(ROOT / part)
    return directory / "matrix.yaml"


def test_watch_proposes_names_the_blocking_rule_and_writes_nothing_without_apply(index, tmp_path):
    matrix = matrix_copy(tmp_path / "m")
    before = {p.name: p.read_bytes() for p in matrix.parent.iterdir() if p.is_file()}

    proc = run_cli("watch", "--matrix", str(matrix), "--index", index, "--json", home=tmp_path / "home")
    assert proc.returncode == 1, proc.stderr  # a patch is proposed, not applied
    report = parse_json_stdout(proc)
    assert report["index"] == index and report["applied"] is False and report["exit_code"] == 1
    changes = {c["chip"]: c["changes"] for c in report["candidates"]}
    for chip in FL_ROWS:  # 5.1.0, not the pre-release 5.2.0rc1
        assert changes[chip]["flaggems"] == ["5.0.2", "5.1.0"]
    # two pins that move together: the CUDA reference row's vLLM pins its torch (rule cuda-vllm-pins-torch)
    assert changes["nvidia-h100"] == {"torch": ["2.7.1", "2.11.0"], "vllm": ["0.10.0", "0.23.0"]}
    rows = {(p["chip"], p["pin"]): p for p in report["pins"]}
    blocked = rows[("ascend-a3-fl", "torch_npu")]
    assert blocked["status"] == "blocked" and blocked["newest"] == "2.11.0" and blocked["proposed"] is None
    rules = {b["rule"]: b["detail"] for b in blocked["blocked_by"]}
    assert "torch-npu-supports-cann" in rules and "stack.torch_npu=2.11.0" in rules["torch-npu-supports-cann"]
    assert rows[("cpu", "flagscale")]["status"] == "current"
    assert report["projects"] == [
        {"project": "vllm-fl", "newest": None},
        {"project": "flagcx", "newest": "0.9.0"},
        {"project": "flagtree", "newest": None},
    ]
    assert "+    stack: {flaggems: 5.1.0}" in report["patch"] and "-      vllm: 0.10.0" in report["patch"]
    # nothing written: the matrix and its directory are as they were
    assert {p.name: p.read_bytes() for p in matrix.parent.iterdir() if p.is_file()} == before

    table = run_cli(
        "watch", "--matrix", str(matrix), "--index", index, home=tmp_path / "home", extra_env={"COLUMNS": "200"}
    )
    assert table.returncode == 1
    assert "torch-npu-supports-cann" in table.stdout and "blocked" in table.stdout
    assert "proposed, not applied" in table.stdout and "Traceback" not in table.stderr
    assert matrix.read_bytes() == before["matrix.yaml"]


def test_watch_apply_writes_the_patch_and_the_next_watch_has_nothing_to_propose(index, tmp_path):
    matrix = matrix_copy(tmp_path / "m")
    original = matrix.read_text()
    proc = run_cli("watch", "--matrix", str(matrix), "--index", index, "--apply", "--json", home=tmp_path / "home")
    assert proc.returncode == 0, proc.stderr
    assert parse_json_stdout(proc)["applied"] is True
    loaded = load_matrix(matrix)
    assert {loaded.chips[c].stack.flaggems for c in FL_ROWS} == {"5.1.0"}
    assert (loaded.chips["nvidia-h100"].stack.torch, loaded.chips["nvidia-h100"].stack.vllm) == ("2.11.0", "0.23.0")
    # only the pins changed: every comment is still there
    assert [line for line in original.splitlines() if "#" in line] == [
        line for line in matrix.read_text().splitlines() if "#" in line
    ]
    assert yaml.safe_load(matrix.read_text())["chips"]["ascend-a3-fl"]["stack"] == {"flaggems": "5.1.0"}
    assert run_cli("matrix", "--matrix", str(matrix), home=tmp_path / "home").returncode == 0

    again = run_cli("watch", "--matrix", str(matrix), "--index", index, "--json", home=tmp_path / "home")
    assert again.returncode == 0, again.stderr  # torch_npu 2.11.0 stays blocked: nothing to propose
    assert parse_json_stdout(again)["candidates"] == []


def test_an_index_that_cannot_be_reached_is_exit_3_and_writes_nothing(tmp_path):
    matrix = matrix_copy(tmp_path / "m")
    before = matrix.read_bytes()
    dead = f"http://127.0.0.1:{free_port()}/simple/"
    proc = run_cli("watch", "--matrix", str(matrix), "--index", dead, "--apply", home=tmp_path / "home")
    assert proc.returncode == 3
    assert "cannot be reached" in proc.stderr and "Traceback" not in proc.stderr
    assert matrix.read_bytes() == before


def test_a_pinned_version_missing_from_the_index_stops_the_build_before_it(index, released, tmp_path):
    """FlagScale pinned at a release the configured index does not have: the cell stops where its
    stack would be built, named with the pin's key and the fix; nothing is built."""
    data = yaml.safe_load((ROOT / "matrix.yaml").read_text())
    data["chips"]["cpu"]["stack"]["flagscale"] = "0.8.1"
    data["matrix"] = {"chip": ["cpu"], "model": ["tiny-llama"]}
    directory = tmp_path / "m"
    directory.mkdir()
    for part in ("dockerfiles", "datasets", "baselines"):
        (directory / part).symlink_to(ROOT / part)
    (directory / "matrix.yaml").write_text(yaml.safe_dump(data))
    proc = run_cli(
        "build",
        "--matrix",
        str(directory / "matrix.yaml"),
        "--model",
        "tiny-llama",
        "--chip",
        "cpu",
        "--no-push",
        "--json",
        home=tmp_path / "home",
        extra_env={"FLAGRELEASE_PIP_INDEX_URL": index},
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr[-3000:]
    [outcome] = json.loads(proc.stdout)
    error = outcome["error"]
    assert "tiny-llama x cpu" in error and "chips.cpu.stack.flagscale" in error
    assert f"flag-scale==0.8.1 is not on {index}" in error and "nearest to it: 0.8.0" in error
    assert "FLAGRELEASE_PIP_INDEX_URL" in error and "nothing was built" in error
    assert "building chip stack" not in proc.stderr


def test_build_runs_the_candidate_through_the_release_path_and_applies_nothing_it_refused(
    index, released, tmp_path_factory, tmp_path
):
    """--build --apply on a cpu-only matrix: the watched index has FlagScale 0.8.1 (a planted file),
    the index the build installs from does not. The candidate runs through release-matrix from
    the patched copy, stops where its stack would be built, and the patch is not written."""
    watched = LocalIndex(tmp_path_factory.mktemp("watched-index"))
    for version in ("0.8.0", "0.8.1"):
        watched.publish("flag-scale", f"flag_scale-{version}-py3-none-any.whl")
    directory = tmp_path / "m"
    directory.mkdir()
    data = yaml.safe_load((ROOT / "matrix.yaml").read_text())
    data["matrix"] = {"chip": ["cpu"], "model": ["tiny-llama"]}
    data["models"]["tiny-llama"]["bench"]["perf"] = None
    for part in ("dockerfiles", "datasets", "baselines"):
        (directory / part).symlink_to(ROOT / part)
    (directory / "matrix.yaml").write_text(yaml.safe_dump(data))
    before = (directory / "matrix.yaml").read_bytes()
    home = tmp_path / "home"
    with watched.serving() as watched_url:
        proc = run_cli(
            "watch",
            "--matrix",
            str(directory / "matrix.yaml"),
            "--index",
            watched_url,
            "--build",
            "--apply",
            "--no-push",
            "--json",
            home=home,
            extra_env={"FLAGRELEASE_PIP_INDEX_URL": index},
        )
    assert proc.returncode == 2, proc.stdout + proc.stderr[-3000:]
    report = parse_json_stdout(proc)
    assert report["candidates"][0]["changes"] == {"flagscale": ["0.8.0", "0.8.1"]}
    [built] = report["built"]
    assert built["cell"] == "tiny-llama--cpu" and built["status"] == "failed" and built["exit_code"] == 2
    assert "flag-scale==0.8.1 is not on" in built["error"]
    assert report["applied"] is False and (directory / "matrix.yaml").read_bytes() == before
    # the candidate ran from the patched copy under FLAGRELEASE_HOME/watch, through the release path
    [copy] = (home / "watch").glob("*/matrix.yaml")
    assert "flagscale: 0.8.1" in copy.read_text()
    [record] = (home / "results" / "tiny-llama--cpu").glob("*/release.json")
    assert '"status": "failed"' in record.read_text()
