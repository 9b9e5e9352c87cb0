"""Multi-arch sets are published all or nothing, through the real release path."""

from __future__ import annotations

import json

from flagrelease.adapters.registry import RegistryClient
from flagrelease.matrix import load_matrix, select
from flagrelease.naming import set_key
from flagrelease.settings import load_settings
from tests.conftest import ROOT, run_cli, shipped_matrix, write_matrix


def two_arch_matrix(tmp_path):
    """The cpu chip twice: as it is (amd64) and for arm64, which this host cannot build."""
    data = shipped_matrix()
    data["chips"]["cpu-arm64"] = {"extends": "cpu", "arch": "arm64"}
    # The set is what is tested here, not the perf gate (tests of its own): accuracy only.
    data["models"]["tiny-llama"]["bench"]["perf"] = None
    data["matrix"]["include"].append({"chip": "cpu-arm64", "model": "tiny-llama"})
    return write_matrix(tmp_path, data)


def test_cells_differing_only_in_arch_form_one_set(tmp_path):
    matrix = load_matrix(two_arch_matrix(tmp_path))
    amd, arm = select(matrix, chip="cpu")[0], select(matrix, chip="cpu-arm64")[0]
    assert set_key(amd) == set_key(arm)
    assert set_key(amd) != set_key(select(matrix, chip="ascend-a3", model="qwen3-4b")[0])


def test_half_a_set_is_not_published(released, registry, tmp_path, docker_client):
    """arm64 cannot be built here, so the amd64 image, built and gated, gets no release tag."""
    matrix = two_arch_matrix(tmp_path)
    name = released["repository"].split("/", 1)[1]
    with RegistryClient(registry.address) as api:
        before = api.tags(name)
    proc = run_cli(
        "release",
        "--model",
        "tiny-llama",
        "--matrix",
        str(matrix),  # both chips
        "--registry",
        registry.address,
        "--json",
        "--force",  # the amd64 cell is released already: built and gated again, it must not be published
        home=tmp_path / "home",
    )
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "the set is not published: tiny-llama--cpu-arm64" in proc.stderr
    summary = {s["cell"]: s for s in json.loads(proc.stdout)}
    assert summary["tiny-llama--cpu"]["status"] == "built" and summary["tiny-llama--cpu"]["digest"] is None
    assert summary["tiny-llama--cpu-arm64"]["status"] == "failed"
    with RegistryClient(registry.address) as api:
        assert api.tags(name) == before


def test_a_complete_set_is_published_with_records_and_cards(
    released, registry, fr_home, tmp_path, monkeypatch, docker_client
):
    """A set whose every member staged its image (here one member: the tiny-llama build under a
    new tag) is promoted: release tags and aliases land, the record turns `released` with the
    digest, the card is written."""
    import shutil

    from flagrelease.fanout import CellOutcome
    from flagrelease.record import ReleaseRecord
    from flagrelease.steps import publish
    from flows.release_matrix import _publish_set

    monkeypatch.setenv("FLAGRELEASE_HOME", str(tmp_path))
    run_dir = tmp_path / "results" / "tiny-llama--cpu" / released["run_id"]
    shutil.copytree(fr_home / "results" / "tiny-llama--cpu" / released["run_id"], run_dir)
    (run_dir / "card.md").unlink()
    tag = "9912312359"  # a release tag no other test uses
    item = publish.PublishItem(
        image_id=released["image_id"], repository=released["image"].rsplit(":", 1)[0], tag=tag, aliases=["set-test"]
    )
    staged = publish.stage(docker_client, item, registry.address, on_line=lambda _: None)
    record = ReleaseRecord.load(run_dir).model_copy(update={"status": "built", "publish": None, "staged": staged})
    record.save(run_dir)
    member = CellOutcome(
        cell=record.cell,
        model="tiny-llama",
        chip="cpu",
        pool="flagrelease-cpu",
        run_id=record.run_id,
        status="built",
        record=record,
    )
    [promoted] = _publish_set([member], load_matrix(ROOT / "matrix.yaml"), load_settings(), print)
    result = promoted.record.publish
    assert promoted.status == "released" and result.tags == [tag, "set-test"]
    with RegistryClient(registry.address) as api:
        assert api.manifest_digest(item.repository, tag) == result.digest == staged.digest == released["digest"]
    stored = json.loads((run_dir / "release.json").read_text())
    assert stored["status"] == "released" and stored["publish"]["digest"] == result.digest
    reports = promoted.record.reports
    assert reports.card == run_dir / "card.md" and result.digest in reports.card.read_text()
