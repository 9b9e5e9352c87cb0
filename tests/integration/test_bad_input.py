"""Bad input: one clear message, a non-zero exit, nothing built or pushed, no container left."""

from __future__ import annotations

import pytest

from flagrelease.adapters import docker_engine
from flagrelease.adapters.registry import RegistryClient
from tests.conftest import ROOT, free_port, parse_json_stdout, run_cli


def _image_count(client) -> int:
    return len(client.images.list(all=True))


def _owned_containers(client) -> list:
    return client.containers.list(all=True, filters={"label": docker_engine.OWNER_LABEL})


@pytest.mark.parametrize(
    ("args", "message", "fix"),
    [
        (["--model", "tiny-llama", "--chip", "tpu-v9"], "unknown chip 'tpu-v9'", "use a chip id (ascend-a2,"),
        (["--model", "llama-9000", "--chip", "cpu"], "unknown model 'llama-9000'", "use one of:"),
    ],
)
def test_unknown_chip_or_model(args, message, fix, tmp_path, docker_client):
    before = _image_count(docker_client)
    proc = run_cli("build", *args, home=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr and fix in proc.stderr
    assert "Traceback" not in proc.stderr
    assert _image_count(docker_client) == before


def test_malformed_matrix_names_file_and_line(tmp_path, docker_client):
    bad = tmp_path / "matrix.yaml"
    bad.write_text((ROOT / "matrix.yaml").read_text().replace("  cpu:\n    vendor: cpu", "  cpu:\n   vendor: [cpu"))
    proc = run_cli("build", "--model", "tiny-llama", "--chip", "cpu", "--matrix", str(bad), home=tmp_path)
    assert proc.returncode == 2
    assert "not valid YAML" in proc.stderr and f"{bad}:" in proc.stderr


def test_invalid_pin_names_the_key(tmp_path, docker_client):
    bad = tmp_path / "matrix.yaml"
    bad.write_text((ROOT / "matrix.yaml").read_text().replace('python: "3.13"', 'python: "3.13 && curl evil"'))
    proc = run_cli("build", "--model", "tiny-llama", "--chip", "cpu", "--matrix", str(bad), "--json", home=tmp_path)
    assert proc.returncode == 2
    assert "chips.cpu.stack.python" in proc.stderr
    assert parse_json_stdout(proc)["status"] == "error"


def test_unreachable_registry_builds_and_pushes_nothing(tmp_path, docker_client):
    before = _image_count(docker_client)
    dead = f"127.0.0.1:{free_port()}"
    proc = run_cli("build", "--model", "tiny-llama", "--chip", "cpu", "--registry", dead, home=tmp_path)
    assert proc.returncode == 3
    assert f"registry {dead} cannot be reached" in proc.stderr
    assert "fix:" in proc.stderr
    assert _image_count(docker_client) == before
    assert _owned_containers(docker_client) == []


def test_serve_stack_never_ready_fails_and_pushes_nothing(released, registry, tmp_path, docker_client):
    """A deadline the stack cannot meet: smoke fails, the registry gets no new tag, no container stays."""
    name = released["repository"].split("/", 1)[1]
    with RegistryClient(registry.address) as api:
        tags_before = api.tags(name)
    proc = run_cli(
        "build",
        "--model",
        "tiny-llama",
        "--chip",
        "cpu",
        "--registry",
        registry.address,
        "--smoke-timeout",
        "0.01",
        "--force",  # the registry holds this release key: without it, the cell is unchanged
        home=tmp_path,
    )
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "smoke test failed: the serve stack did not become ready before the deadline" in proc.stderr
    with RegistryClient(registry.address) as api:
        assert api.tags(name) == tags_before
    assert _owned_containers(docker_client) == []
