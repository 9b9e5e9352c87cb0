"""After a release: tags and aliases in the registry, card and reports in the local store
and in S3, the ledger, and ModelScope's real code paths failing clearly here."""

from __future__ import annotations

import json

import pytest

from flagrelease.adapters import docker_engine
from flagrelease.adapters.modelscope_hub import publish_card
from flagrelease.adapters.registry import RegistryClient
from flagrelease.errors import ConfigError, ServiceError
from flagrelease.matrix import load_matrix, select
from flagrelease.settings import Settings
from flagrelease.steps.report import publish_reports
from flagrelease.steps.weights import ensure_weights
from tests.conftest import ROOT, free_port, run_cli
from tests.integration.conftest import S3_BUCKET


def run_dir_of(released, fr_home):
    return fr_home / "results" / "tiny-llama--cpu" / released["run_id"]


def test_aliases_point_at_the_release_and_pull(released, registry, docker_client):
    name = released["repository"].split("/", 1)[1]
    release_tag, *aliases = released["tags"]
    assert aliases == ["latest", "gemsnone-scale0.8.0"]
    with RegistryClient(registry.address) as api:
        assert {api.manifest_digest(name, t) for t in released["tags"]} == {released["digest"]}
    pulled = docker_client.images.pull(released["repository"], tag="latest")
    assert pulled.id == released["image_id"]


def test_card_is_written_with_measured_numbers_and_the_digest(released, fr_home):
    run_dir = run_dir_of(released, fr_home)
    card = (run_dir / "card.md").read_text()
    record = json.loads((run_dir / "release.json").read_text())
    assert f"{released['repository']}@{released['digest']}" in card
    score = record["bench"]["flaggems"]["accuracy"]["arith-mc"]["score"]
    assert f"{score:.3f}" in card
    assert "perf.png" in card and record["run_id"] in card


def test_reports_are_in_s3(released, s3):
    keys = [o["Key"] for o in s3["client"].list_objects_v2(Bucket=S3_BUCKET, Prefix="releases/")["Contents"]]
    run = f"releases/tiny-llama--cpu/{released['run_id']}/"
    for name in (
        "release.json",
        "card.md",
        "perf.png",
        "smoke.log",
        "perf-native.json",
        "accuracy-flaggems-arith-mc.jsonl",
    ):
        assert run + name in keys
    stored = json.loads(s3["client"].get_object(Bucket=S3_BUCKET, Key=run + "release.json")["Body"].read())
    assert stored["publish"]["digest"] == released["digest"]


def test_releases_list_and_show(released, fr_home):
    proc = run_cli("releases", "list", "--qualified", "--json", home=fr_home)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert released["run_id"] in [r["run_id"] for r in rows]
    for ref in (
        released["run_id"],
        f"{released['repository']}@{released['digest']}",
        f"{released['repository']}:latest",
    ):
        shown = run_cli("releases", "show", ref, home=fr_home)
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["run_id"] == released["run_id"]


def test_latest_qualified_release_is_what_to_pull(released, fr_home):
    proc = run_cli("releases", "latest", "-m", "tiny-llama", "-c", "cpu", home=fr_home)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{released['repository']}@{released['digest']}"
    none = run_cli("releases", "latest", "-m", "qwen3-4b", "-c", "ascend-a3", home=fr_home)
    assert none.returncode == 2 and "no qualified release" in none.stderr


def test_build_summary_says_where_reports_went(released, s3):
    stores = {c["store"]: c for c in released["stores"]}
    assert all(c["ok"] for c in stores.values()) and "s3://flagrelease-test-reports/releases" in stores
    assert released["card"].endswith("card.md")


def test_ledger_rebuilds_from_s3(released, fr_home, s3, tmp_path):
    proc = run_cli("releases", "rebuild", "--source", "s3", home=tmp_path, extra_env=s3["env"])
    assert proc.returncode == 0, proc.stderr
    listed = run_cli("releases", "list", "--json", home=tmp_path)
    assert released["run_id"] in [r["run_id"] for r in json.loads(listed.stdout)]


def test_s3_down_keeps_the_local_copy_and_says_so(released, fr_home, s3, monkeypatch):
    for key, value in s3["env"].items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("FLAGRELEASE_S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    cell = select(load_matrix(ROOT / "matrix.yaml"), chip="cpu", model="tiny-llama")[0]
    run_dir = run_dir_of(released, fr_home)
    result = publish_reports(run_dir, cell, load_matrix(ROOT / "matrix.yaml"), Settings(home=fr_home), released=True)
    local, remote = result.stores
    assert local.ok and local.files > 5
    assert not remote.ok and "S3 unavailable" in remote.error
    assert s3["env"]["AWS_SECRET_ACCESS_KEY"] not in remote.error
    assert (run_dir / "card.md").exists()


def test_weights_from_an_s3_uri(released, fr_home, s3, tmp_path, monkeypatch):
    for key, value in s3["env"].items():
        monkeypatch.setenv(key, value)
    gguf = next((fr_home / "weights" / "tiny-llama").glob("*.gguf"))
    s3["client"].put_object(Bucket=S3_BUCKET, Key="weights/tiny-llama/tiny-llama.gguf", Body=gguf.read_bytes())
    matrix = load_matrix(ROOT / "matrix.yaml")
    cell = select(matrix, chip="cpu", model="tiny-llama")[0]
    weights = cell.model.weights.model_copy(update={"source": "s3", "uri": f"s3://{S3_BUCKET}/weights/tiny-llama"})
    cell = cell.model_copy(update={"model": cell.model.model_copy(update={"weights": weights})})
    target = ensure_weights(cell, tmp_path / "w", s3_endpoint_url=s3["url"])
    assert (target / "tiny-llama.gguf").read_bytes() == gguf.read_bytes()


def test_modelscope_download_fails_clearly_when_the_hub_is_unreachable(tmp_path):
    cell = select(load_matrix(ROOT / "matrix.yaml"), chip="ascend-a3", model="qwen3-4b")[0]
    with pytest.raises(ServiceError) as err:
        ensure_weights(cell, tmp_path)
    assert "cannot download Qwen/Qwen3-4B from ModelScope" in err.value.problem
    assert "weights.source: local" in err.value.fix


def test_modelscope_card_publishing_needs_a_token_and_the_hub(tmp_path, monkeypatch):
    card = tmp_path / "card.md"
    card.write_text("# card\n")
    monkeypatch.delenv("MODELSCOPE_API_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="MODELSCOPE_API_TOKEN"):
        publish_card(card, "FlagRelease/tiny-llama-flagos")
    monkeypatch.setenv("MODELSCOPE_API_TOKEN", "ms-secret-token-value")
    with pytest.raises(ServiceError) as err:
        publish_card(card, "FlagRelease/tiny-llama-flagos")
    assert "ms-secret-token-value" not in err.value.render()
    assert "the card stays at" in err.value.fix


def test_no_release_container_is_left_running(released, docker_client):
    owner = f"{docker_engine.OWNER_LABEL}={released['run_id']}"  # other runs may share this dockerd
    assert docker_client.containers.list(all=True, filters={"label": owner}) == []
