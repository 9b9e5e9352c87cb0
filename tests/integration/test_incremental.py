"""Incremental releases against the real dockerd and registry: a rerun of a released cell is
`unchanged` (nothing built, run or pushed), a changed pin rebuilds, a run killed after its
build resumes at the smoke test, and two models on one chip share every chip-stack layer."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest

from flagrelease.adapters import docker_engine
from flagrelease.adapters.registry import RegistryClient
from flagrelease.matrix import load_matrix, select
from flagrelease.naming import key_tag
from flagrelease.record import ReleaseRecord
from flagrelease.settings import Settings
from flagrelease.steps import base_image, build, publish, render
from flagrelease.steps.release_key import KEY_LABEL
from tests.conftest import ROOT, parse_json_stdout, run_cli, shipped_matrix, start_cli, write_matrix

# A second generated model for the cpu chip: its own name and served name, and a bench
# small enough to keep this module quick (accuracy only: identical stacks answer alike).
SECOND_MODEL = {
    "extends": "tiny-llama",
    "served_model_name": "tiny-llama-b-flagos",
    "description": "A second tiny model on the cpu chip, to show models sharing the chip stack.",
    "bench": {"perf": None},
}


def two_model_matrix(tmp_path, chip_changes: dict | None = None):
    """The shipped matrix plus `tiny-llama-b` on the cpu chip, with `chip_changes` merged into the cpu chip."""
    data = shipped_matrix()
    data["models"]["tiny-llama-b"] = SECOND_MODEL
    data["matrix"]["include"].append({"chip": "cpu", "model": "tiny-llama-b"})
    data["chips"]["cpu"] |= chip_changes or {}
    return write_matrix(tmp_path, data)


def started_by(client, run_id: str, since: float, until: float) -> list[dict]:
    """Every container event of the run (its containers carry the run id as owner label)."""
    return list(
        client.events(
            since=int(since),
            until=int(until) + 1,
            decode=True,
            filters={"type": "container", "label": f"{docker_engine.OWNER_LABEL}={run_id}"},
        )
    )


def test_a_rerun_of_a_released_cell_is_unchanged(released, registry, fr_home, docker_client):
    name = released["repository"].split("/", 1)[1]
    with RegistryClient(registry.address) as api:
        tags_before = api.tags(name)
    since = time.time()
    proc = run_cli(
        "build", "--model", "tiny-llama", "--chip", "cpu", "--registry", registry.address, "--json", home=fr_home
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    [summary] = parse_json_stdout(proc)
    assert summary["status"] == "unchanged"
    assert summary["release_key"] == released["release_key"]
    assert summary["digest"] == released["digest"] and summary["tags"] == released["tags"][:1]
    assert summary["unchanged"]["run_id"] == released["run_id"]
    assert summary["image"] is None and summary["stack"] is None and summary["smoke"] is None
    assert not {"stack", "build", "smoke", "bench", "push"} & set(summary["timings"])
    with RegistryClient(registry.address) as api:
        assert api.tags(name) == tags_before
    assert started_by(docker_client, summary["run_id"], since, time.time()) == []


def test_a_changed_pin_is_a_new_release_key_and_rebuilds(released, registry, tmp_path, docker_client):
    """One pin of the chip changes (the driver: a label only, so every cached layer stays good):
    the stack and the model image are built again, under a new key."""
    driver = "test-" + uuid.uuid4().hex[:8]
    matrix = two_model_matrix(tmp_path, {"driver": driver})
    proc = run_cli(
        "build",
        "--model",
        "tiny-llama",
        "--chip",
        "cpu",
        "--matrix",
        str(matrix),
        "--registry",
        registry.address,
        "--smoke-timeout",
        "0.01",  # stop right after the build
        "--json",
        home=tmp_path / "home",
    )
    assert proc.returncode == 3, proc.stderr[-3000:]
    [summary] = parse_json_stdout(proc)
    try:
        assert summary["release_key"] != released["release_key"]
        assert summary["stack"]["origin"] == "built" and summary["stack"]["key"] != released["stack"]["key"]
        assert summary["reused"] is False and "build" in summary["timings"]
        labels = docker_client.images.get(summary["image_id"]).labels
        assert labels["org.flagos.driver"] == driver and labels[KEY_LABEL] == summary["release_key"]
    finally:
        for image in (summary["image_id"], summary["stack"]["image_id"]):
            docker_client.images.remove(image, force=True)


@pytest.fixture(scope="module")
def second_model(released, registry, fr_home, docker_client, tmp_path_factory):
    """tiny-llama-b released in two runs: the first killed (SIGKILL, its whole process group)
    once its checkpoint shows the built image, the second resuming it."""
    matrix = two_model_matrix(tmp_path_factory.mktemp("two-models"))
    args = ("build", "--model", "tiny-llama-b", "--chip", "cpu", "--matrix", str(matrix))
    args += ("--registry", registry.address, "--json")
    runs = fr_home / "results" / "tiny-llama-b--cpu"
    proc = start_cli(*args, home=fr_home, log=tmp_path_factory.mktemp("killed") / "build.log")
    checkpoint = None
    deadline = time.monotonic() + 600
    while checkpoint is None and proc.poll() is None and time.monotonic() < deadline:
        checkpoint = next((r for r in _records(runs) if r.image is not None), None)
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert checkpoint is not None, "the first run ended before its image was built"
    for name in docker_engine.containers_owned_by(docker_client, checkpoint.run_id):
        docker_client.containers.get(name).remove(force=True)  # a kill -9 cleans nothing up
    killed = ReleaseRecord.load(runs / checkpoint.run_id)
    resumed = run_cli(*args, home=fr_home)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    [summary] = parse_json_stdout(resumed)
    yield killed, summary
    docker_client.images.remove(summary["image_id"], force=True)


def _records(runs) -> list[ReleaseRecord]:
    found = []
    for path in runs.glob("*/release.json"):
        try:
            found.append(ReleaseRecord.parse(path.read_bytes(), str(path)))
        except Exception:
            continue  # being written right now
    return found


def test_a_run_killed_after_its_build_resumes_at_the_smoke_test(second_model):
    killed, summary = second_model
    assert killed.status == "running" and killed.smoke is None, "killed after the build, before the smoke test"
    assert summary["status"] == "released"
    assert summary["resumed_from"] == killed.run_id and summary["taken_over"] == ["build"]
    assert killed.image is not None and summary["image_id"] == killed.image.image_id
    assert "build" not in summary["timings"] and {"smoke", "bench", "push"} <= set(summary["timings"])


def test_two_models_on_one_chip_share_every_stack_layer(second_model, released, registry):
    _, summary = second_model
    stack = summary["stack"]
    assert stack["key"] == released["stack"]["key"] and stack["origin"] == "local"  # built once, for tiny-llama
    stack_repository = stack["ref"].rsplit(":", 1)[0]
    with RegistryClient(registry.address) as api:
        stack_manifest = api.manifest(stack_repository, key_tag(stack["key"]))
        a = api.manifest(released["repository"].split("/", 1)[1], released["digest"])
        b = api.manifest(summary["repository"].split("/", 1)[1], summary["digest"])
    stack_layers = [layer["digest"] for layer in stack_manifest["layers"]]
    for image in (a, b):
        assert [layer["digest"] for layer in image["layers"]][: len(stack_layers)] == stack_layers
    [model_layer] = b["layers"][len(stack_layers) :]  # the serve config
    assert model_layer["size"] + b["config"]["size"] < 1_000_000


def test_a_stack_in_the_registry_is_pulled_not_built(released, registry, docker_client, tmp_path):
    """A host without the stack pulls it by its key (here: under a namespace this host never built in)."""
    matrix = load_matrix(ROOT / "matrix.yaml")
    cell = select(matrix, chip="cpu", model="tiny-llama")[0]
    settings = Settings()
    ctx = render.render_context(cell, matrix, settings.build, tmp_path / "ctx")
    base = base_image.ensure_base(docker_client, cell.chip, cell.chip_id, ctx.base_image, tmp_path, print)
    repository = f"flagrelease-pull-{uuid.uuid4().hex[:8]}/{ctx.stack.repository_name}"
    local = build.ensure_stack(
        docker_client,
        cell,
        ctx,
        base,
        settings.build,
        repository="flagrelease/" + ctx.stack.repository_name,
        registry=None,
    )
    pushed = local.model_copy(update={"ref": f"{repository}:{key_tag(local.key)}"})
    publish.push_stack(docker_client, pushed, registry.address, repository)
    try:
        pulled = build.ensure_stack(
            docker_client, cell, ctx, base, settings.build, repository=repository, registry=registry.address
        )
        assert pulled.origin == "pulled" and pulled.image_id == local.image_id and pulled.ref == pushed.ref
    finally:
        docker_engine.untag(docker_client, pushed.ref)
