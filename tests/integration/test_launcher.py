"""The launcher switch end to end on the cpu cell: a launcher declared in matrix.yaml (which
command starts the engine, and the environment of each side) is rendered into the model image,
and in the running container the engine gets exactly the environment its side declares.

Two launchers run here for real: `flagscale` (the seed rows' path: `flagscale serve` starts
llama-server in the background) and `llama-server` (the engine in the foreground, the shape of
`vllm serve` under vllm-plugin-FL, which cannot run on this machine: its code path is the same
entrypoint mode, its command is checked by the golden files). Both sides declare the variables
vllm-plugin-FL reads; llama.cpp ignores them, the test reads them back from the engine process.
Both reuse the chip stack the session's release built: a launcher lives in the model image.
"""

from __future__ import annotations

import json
import uuid

import pytest
import yaml

from flagrelease import naming
from flagrelease.adapters import docker_engine
from flagrelease.adapters.serve_client import ServeClient
from flagrelease.cell_facts import served_name
from flagrelease.matrix import load_matrix, select
from flagrelease.schema import SIDES
from flagrelease.settings import load_settings
from flagrelease.steps import base_image, build
from flagrelease.steps.render import render_context
from flagrelease.steps.smoke import run_options, serving
from tests.conftest import ROOT

SIDE_ENV = {
    "native": {"USE_FLAGGEMS": "0", "VLLM_PLUGINS": "", "VLLM_FL_PREFER_ENABLED": "false"},
    "flaggems": {
        "USE_FLAGGEMS": "1",
        "VLLM_PLUGINS": "fl",
        "VLLM_FL_PREFER_ENABLED": "true",
        "VLLM_FL_FLAGOS_WHITELIST": "rms_norm,silu_and_mul",
    },
}
# The engine's environment, read inside the container: the process named llama-server.
ENGINE_ENV = """
import json, os
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        if open(f"/proc/{pid}/comm").read().strip() == "llama-server":
            raw = open(f"/proc/{pid}/environ", "rb").read().split(b"\\0")
            print(json.dumps(dict(e.decode().split("=", 1) for e in raw if b"=" in e)))
            break
    except OSError:
        pass
"""


def launcher_matrix(directory, name: str):
    data = yaml.safe_load((ROOT / "matrix.yaml").read_text())
    data["chips"]["cpu"]["stack"]["launcher"] = {"name": name, "sides": SIDE_ENV}
    data["matrix"] = {"chip": ["cpu"], "model": ["tiny-llama"]}
    for part in ("dockerfiles", "datasets", "baselines"):
        (directory / part).symlink_to(ROOT / part)
    (directory / "matrix.yaml").write_text(yaml.safe_dump(data))
    return directory / "matrix.yaml"


@pytest.mark.parametrize("launcher", ["flagscale", "llama-server"])
def test_each_side_runs_with_the_environment_its_launcher_declares(
    launcher, released, docker_client, fr_home, tmp_path
):
    matrix = load_matrix(launcher_matrix(tmp_path, launcher))
    [cell] = select(matrix, chip="cpu", model="tiny-llama")
    settings = load_settings()
    ctx = render_context(cell, matrix, settings.build, tmp_path / "ctx")
    spec = json.loads((ctx.model.path / "serve/launch.json").read_text())
    assert spec["launcher"] == launcher and spec["sides"] == SIDE_ENV
    assert spec["mode"] == ("flagscale" if launcher == "flagscale" else "foreground")

    base = base_image.ensure_base(docker_client, cell.chip, cell.chip_id, ctx.base_image, tmp_path, print)
    stack = build.ensure_stack(
        docker_client,
        cell,
        ctx,
        base,
        settings.build,
        repository=naming.full_repository(None, matrix.release.namespace, ctx.stack.repository_name),
        registry=None,
    )
    assert stack.origin == "local"  # the released cell's stack: the launcher changed the model image only
    repository = f"flagrelease-test/launcher-{launcher}"
    image = build.build_image(
        docker_client, cell, ctx, stack, settings.build, repository=repository, tag="t", release_key=uuid.uuid4().hex
    )
    assert image.labels.get("org.flagos.launcher", "flagscale") == launcher
    try:
        for side in SIDES:
            options = run_options(cell, fr_home / "weights" / "tiny-llama", side=side)
            # A variable only the other side declares is removed even when the container has it.
            options.env["VLLM_FL_FLAGOS_WHITELIST"] = "from-docker-run"
            owner = uuid.uuid4().hex
            with serving(docker_client, image.image_id, cell, options, owner=owner, timeout_s=120, on_line=print) as (
                url,
                container,
                _,
            ):
                found = container.exec_run(["/opt/flagscale/bin/python", "-c", ENGINE_ENV])
                engine_env = json.loads(found.output.decode())
                with ServeClient(url, timeout=60.0) as api:
                    reply = api.chat(served_name(cell), [{"role": "user", "content": "hi"}], max_tokens=4)
                log = docker_engine.container_log(container)
            assert reply["usage"]["completion_tokens"] >= 1
            for name, value in SIDE_ENV[side].items():
                assert engine_env.get(name) == value, (side, name, engine_env.get(name))
            other = SIDE_ENV["flaggems" if side == "native" else "native"]
            for name in other.keys() - SIDE_ENV[side].keys():
                assert name not in engine_env, (side, name)
            assert f"{launcher} launcher, side {side}:" in log
            assert docker_engine.containers_owned_by(docker_client, owner) == []
    finally:
        docker_client.images.remove(image.image_id, force=True)
