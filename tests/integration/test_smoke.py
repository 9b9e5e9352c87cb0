"""The smoke step against real containers: a stack that never gets ready, one that dies,
Ctrl-C in the middle, and a clean `docker stop` of the real serve stack."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from flagrelease.adapters import docker_engine
from flagrelease.matrix import load_matrix, select
from flagrelease.steps.release_key import KEY_LABEL
from flagrelease.steps.smoke import run_options, smoke_test
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def cell():
    return select(load_matrix(ROOT / "matrix.yaml"), chip="cpu", model="tiny-llama")[0]


@pytest.fixture(scope="module")
def hanging_image(released, docker_client):
    """The released image with its serve stack replaced by a process that never serves."""
    dockerfile = f'FROM {released["image"]}\nENTRYPOINT ["sleep", "infinity"]\n'
    image, _ = docker_client.images.build(
        fileobj=io.BytesIO(dockerfile.encode()), tag="flagrelease-test/hang:1", rm=True
    )
    yield image.id
    docker_client.images.remove(image.id, force=True)


def _owned(client, owner):
    return docker_engine.containers_owned_by(client, owner)


def test_never_ready_times_out_and_removes_container(hanging_image, cell, docker_client, fr_home):
    owner = uuid.uuid4().hex
    options = run_options(cell, fr_home / "weights" / "tiny-llama")
    result = smoke_test(docker_client, hanging_image, cell, options, owner=owner, timeout_s=2.0, on_line=lambda _: None)
    assert not result.passed
    assert result.error == "the serve stack did not become ready before the deadline"
    assert _owned(docker_client, owner) == []


def test_engine_that_dies_fails_fast_with_its_log(released, cell, docker_client, tmp_path):
    """Weights that are not a model: the engine exits; the result carries the engine's own log."""
    (tmp_path / "tiny-llama.gguf").write_bytes(b"not a gguf file")
    owner = uuid.uuid4().hex
    result = smoke_test(
        docker_client,
        released["image_id"],
        cell,
        run_options(cell, tmp_path),
        owner=owner,
        timeout_s=60.0,
        on_line=lambda _: None,
    )
    assert not result.passed
    assert result.error.startswith("the serve stack exited")
    assert "llama" in result.log.lower() and "gguf" in result.log.lower()
    assert _owned(docker_client, owner) == []


# A terminal user's Ctrl-C: restore the default handler, which a non-interactive
# parent (CI running us in the background) may have set to "ignore".
CTRL_C_SCRIPT = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
from pathlib import Path
from flagrelease.adapters import docker_engine
from flagrelease.matrix import load_matrix, select
from flagrelease.steps.release_key import KEY_LABEL
from flagrelease.steps.smoke import run_options, smoke_test
cell = select(load_matrix(Path(sys.argv[1])), chip="cpu", model="tiny-llama")[0]
smoke_test(docker_engine.connect(), sys.argv[2], cell, run_options(cell, Path(sys.argv[3])), owner=sys.argv[4],
           timeout_s=300.0, on_line=lambda _: None)
"""


def test_ctrl_c_during_smoke_removes_container(hanging_image, docker_client, fr_home):
    owner = uuid.uuid4().hex
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CTRL_C_SCRIPT,
            str(ROOT / "matrix.yaml"),
            hanging_image,
            str(fr_home / "weights" / "tiny-llama"),
            owner,
        ],
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 60
        while not _owned(docker_client, owner) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _owned(docker_client, owner), "the smoke container never started"
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) != 0
    finally:
        proc.kill()
    assert _owned(docker_client, owner) == []


def test_docker_stop_shuts_the_serve_stack_down_on_sigterm(released, cell, docker_client, fr_home):
    """The supervisor forwards SIGTERM: exit 143 (128+15), not a SIGKILL after the grace period (137)."""
    options = run_options(cell, fr_home / "weights" / "tiny-llama")
    owner = uuid.uuid4().hex
    with docker_engine.running_container(
        docker_client,
        released["image_id"],
        name=f"flagrelease-stoptest-{owner[:8]}",
        env=options.env,
        container_port=options.port,
        volumes=options.volumes,
        devices=[],
        shm_size=None,
        labels={docker_engine.OWNER_LABEL: owner},
    ) as container:
        deadline = time.monotonic() + 60
        while "listening on" not in docker_engine.container_log(container) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "listening on" in docker_engine.container_log(container)
        container.stop(timeout=30)
        status, code = docker_engine.container_state(container)
        assert (status, code) == ("exited", 143)
        assert "stopping the engine" in docker_engine.container_log(container)


def test_rebuild_reuses_our_build_not_an_image_derived_from_it(released, hanging_image, cell, docker_client, tmp_path):
    """The derived image carries our labels (release key included) but is not our build: the
    build of the key is the image its `build-<key>` tag names (the release's, or a --force rebuild's)."""
    from flagrelease.settings import Settings
    from flagrelease.steps import base_image, build, render

    matrix = load_matrix(ROOT / "matrix.yaml")
    settings = Settings()
    ctx = render.render_context(cell, matrix, settings.build, tmp_path / "ctx")
    base = base_image.ensure_base(docker_client, cell.chip, cell.chip_id, ctx.base_image, tmp_path, lambda _: None)
    stack_repository = "flagrelease/" + ctx.stack.repository_name
    stack = build.ensure_stack(
        docker_client, cell, ctx, base, settings.build, repository=stack_repository, registry=None, on_line=print
    )
    assert stack.origin == "local" and stack.key == released["stack"]["key"]
    repository = released["image"].rsplit(":", 1)[0]
    image = build.build_image(
        docker_client,
        cell,
        ctx,
        stack,
        settings.build,
        repository=repository,
        tag="reuse-test",
        release_key=released["release_key"],
        on_line=lambda _: None,
    )
    ours = docker_engine.image_id(docker_client, f"{repository}:{build.build_tag(released['release_key'])}")
    assert image.reused and image.image_id == ours != hanging_image
    assert docker_client.images.get(hanging_image).labels[KEY_LABEL] == released["release_key"]
    docker_client.images.remove(f"{repository}:reuse-test")


def test_a_container_that_cannot_start_is_not_left_behind(hanging_image, docker_client):
    """Docker creates the container before it fails to start it (here: a device that does not
    exist): the failure is a clear ServiceError and the created container goes too."""
    from flagrelease.errors import ServiceError

    owner = f"test-{uuid.uuid4().hex[:8]}"
    with (
        pytest.raises(ServiceError, match="cannot start container"),
        docker_engine.running_container(
            docker_client,
            hanging_image,
            name=f"flagrelease-test-nostart-{owner}",
            env={},
            container_port=9010,
            volumes={},
            devices=["/dev/flagrelease-no-such-device"],
            shm_size=None,
            labels={docker_engine.OWNER_LABEL: owner},
        ),
    ):
        pass
    assert _owned(docker_client, owner) == []
