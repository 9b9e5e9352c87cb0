"""How a matrix run is divided: units (sets), lanes (ordering), pools, exit codes, the plan bundle."""

from __future__ import annotations

import io
import tarfile

import pytest
import yaml

from flagrelease import bundle, fanout
from flagrelease.errors import ConfigError
from flagrelease.fanout import CellOutcome
from flagrelease.matrix import expand, load_matrix, select
from tests.conftest import ROOT


def matrix_with(tmp_path, **chips):
    data = yaml.safe_load((ROOT / "matrix.yaml").read_text())
    data["chips"] |= chips
    data["matrix"]["include"] += [{"chip": chip, "model": "tiny-llama"} for chip in chips]
    for name in ("dockerfiles", "datasets", "baselines"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / "matrix.yaml").write_text(yaml.safe_dump(data))
    return load_matrix(tmp_path / "matrix.yaml")


def test_cells_differing_only_in_arch_are_one_unit_when_pushed(tmp_path):
    matrix = matrix_with(tmp_path, **{"cpu-arm": {"extends": "cpu", "arch": "arm64"}})
    cells = select(matrix, model="tiny-llama")
    pushed = fanout.units(cells, push=True)
    assert [[c.chip_id for c in u.cells] for u in pushed] == [["cpu", "cpu-arm"]] and pushed[0].is_set
    assert [[c.chip_id for c in u.cells] for u in fanout.units(cells, push=False)] == [["cpu"], ["cpu-arm"]]


def test_a_multi_arch_set_never_holds_two_cells_of_one_arch():
    """Cells that bypass the load check (one arch, one name) stay separate units."""
    matrix = load_matrix(ROOT / "matrix.yaml")
    [cpu] = select(matrix, chip="cpu")
    twin = cpu.model_copy(update={"chip_id": "cpu-twin"})
    arm = cpu.model_copy(update={"chip_id": "cpu-arm", "chip": cpu.chip.model_copy(update={"arch": "arm64"})})
    units = fanout.units([cpu, twin, arm], push=True)
    assert [[c.chip_id for c in u.cells] for u in units] == [["cpu", "cpu-arm"], ["cpu-twin"]]


def test_the_shipped_matrix_has_no_set_of_two_cells_of_one_arch():
    for unit in fanout.units(expand(load_matrix(ROOT / "matrix.yaml")), push=True):
        arches = [c.chip.arch for c in unit.cells]
        assert len(set(arches)) == len(arches), unit.label


def test_lanes_keep_a_chip_in_order_and_run_other_chips_beside_it(tmp_path):
    matrix = matrix_with(
        tmp_path, **{"cpu-b": {"extends": "cpu", "chip_code": "cpu002"}, "cpu-arm": {"extends": "cpu", "arch": "arm64"}}
    )
    lanes = fanout.lanes(fanout.units(expand(matrix), push=True))
    by_chip = {frozenset(c.chip_id for u in lane for c in u.cells): lane for lane in lanes}
    # The set (cpu + cpu-arm) and cpu's other units share one lane; cpu-b has its own.
    assert frozenset({"cpu-b"}) in by_chip
    assert any({"cpu", "cpu-arm"} <= chips for chips in by_chip)
    assert all(
        len({c.chip_id for u in lane for c in u.cells} & {"cpu", "cpu-b"}) == 1
        for lane in lanes
        if any(c.chip_id.startswith("cpu") for u in lane for c in u.cells)
    )


def test_lanes_join_transitively():
    matrix = load_matrix(ROOT / "matrix.yaml")
    units = fanout.units(expand(matrix), push=False)
    lanes = fanout.lanes(units)
    assert sum(len(lane) for lane in lanes) == len(units)
    for lane in lanes:  # one chip per lane here: no unit spans two chips without a set
        assert len({c.chip_id for u in lane for c in u.cells}) == 1


def test_pools_default_per_chip_and_may_be_shared(tmp_path):
    matrix = matrix_with(tmp_path, **{"cpu-b": {"extends": "cpu", "chip_code": "cpu002", "pool": "flagrelease-cpu"}})
    assert fanout.pools(select(matrix, model="tiny-llama")) == {"flagrelease-cpu": ["cpu", "cpu-b"]}
    assert select(matrix, chip="ascend-a3", model="qwen3-4b")[0].pool == "flagrelease-ascend-a3"


@pytest.mark.parametrize(("codes", "worst"), [([0, 0], 0), ([0, 4, 3], 4), ([2, 3], 3), ([], 0)])
def test_the_exit_code_is_the_worst_cells(codes, worst):
    outcomes = [
        CellOutcome(cell=f"m--c{i}", model="m", chip=f"c{i}", pool="p", run_id=str(i), status="built", exit_code=code)
        for i, code in enumerate(codes)
    ]
    assert fanout.exit_code(outcomes) == worst


def test_the_bundle_is_reproducible_and_holds_what_the_cells_need():
    matrix = load_matrix(ROOT / "matrix.yaml")
    data, digest = bundle.pack(matrix, ["tiny-llama", "qwen3-4b"])
    assert bundle.pack(matrix, ["qwen3-4b", "tiny-llama"]) == (data, digest)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        assert all(m.mtime == 0 and m.uid == 0 for m in tar.getmembers())
    assert "matrix.yaml" in names and "dockerfiles/cpu.Dockerfile.j2" in names
    assert "datasets/tiny-arith-mc.jsonl" in names and "baselines/qwen3-4b-h100-cuda.yaml" in names
    assert not [n for n in names if n.startswith("/")]  # host datasets (/data/...) stay on the hosts


def test_a_bundle_that_is_not_the_planned_one_is_refused(tmp_path):
    data, digest = bundle.pack(load_matrix(ROOT / "matrix.yaml"), ["tiny-llama"])
    tampered = data.replace(b"tiny-llama-flagos", b"tiny-llama-evilos")
    with pytest.raises(ConfigError, match="not the matrix the orchestrator planned"):
        bundle.unpack(tampered, digest, tmp_path / "b")
    assert not (tmp_path / "b").exists()
    matrix = bundle.unpack(data, digest, tmp_path / "b")
    assert load_matrix(matrix).models["tiny-llama"].served_model_name == "tiny-llama-flagos"


def test_a_bundle_cannot_write_outside_its_directory(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("../escaped")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    data = buffer.getvalue()
    with pytest.raises(ConfigError, match="cannot be unpacked"):
        bundle.unpack(data, bundle.digest_of(data), tmp_path / "b")
    assert not (tmp_path / "escaped").exists() and sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_matrix_referring_outside_its_directory_is_refused(tmp_path):
    data = yaml.safe_load((ROOT / "matrix.yaml").read_text())
    data["models"]["tiny-llama"]["bench"]["accuracy"][0]["path"] = "../outside.jsonl"
    (tmp_path / "m").mkdir()
    (tmp_path / "outside.jsonl").write_text("{}\n")
    (tmp_path / "m" / "dockerfiles").symlink_to(ROOT / "dockerfiles")
    (tmp_path / "m" / "matrix.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="outside the matrix directory"):
        bundle.pack(load_matrix(tmp_path / "m" / "matrix.yaml"), ["tiny-llama"])
