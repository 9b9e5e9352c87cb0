"""Opt-in (--run-slow): the Ascend template's non-hardware stages built for real, against a
locally made stand-in of the CANN base carrying the real base's name.

The stand-in is Debian bookworm with Python 3.11, so pins are relaxed for it: the
platform (this host's amd64 instead of the A3's arm64), python (3.11 instead of
3.11.11 or 3.12), and what comes from GitHub, which this machine cannot reach: the
reference row's FlagGems v2.2 is installed from PyPI as 4.2.0, and the current line's
vllm-plugin-FL (its git tag) is left out; its FlagGems 5.0.2 is PyPI's own. The chip
stack's last stage needs the CANN toolkit and is not built here.
"""

from __future__ import annotations

import io

import pytest

from flagrelease.adapters import docker_engine
from flagrelease.matrix import deep_merge, load_matrix, select
from flagrelease.schema import Bootstrap, Chip
from flagrelease.settings import load_settings
from flagrelease.steps import base_image
from flagrelease.steps.render import render_context
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


# chip -> (pins relaxed for the stand-in, what `pip show` must then find in the flagos stage)
ROWS = {
    "ascend-a3": ({"flaggems": "4.2.0", "sources": {}}, {"flag-scale": "0.8.0", "flag-gems": "4.2.0"}),
    "ascend-a3-fl": ({"vllm_fl": "none", "sources": {}}, {"flag-gems": "5.0.2"}),
    "ascend-a2-fl": ({"vllm_fl": "none", "sources": {}}, {"flag-gems": "5.0.2"}),
}


@pytest.mark.parametrize("chip_id", list(ROWS))
def test_ascend_flagos_stage_builds_on_a_standin_base(chip_id, docker_client, tmp_path):
    relaxed, expected = ROWS[chip_id]
    matrix = load_matrix(ROOT / "matrix.yaml")
    real = select(matrix, chip=chip_id, model="qwen3-4b")[0]
    chip = Chip.model_validate(deep_merge(real.chip.model_dump(), {"arch": "amd64", "stack": {"python": "3.11"}}))
    chip = chip.model_copy(update={"stack": chip.stack.model_copy(update=relaxed)})
    cell = real.model_copy(update={"chip": chip})
    settings = load_settings()
    ctx = render_context(cell, matrix, settings.build, tmp_path / "ctx")

    if docker_engine.image_id(docker_client, ctx.base_image) is None:
        raw = "flagrelease-test/bookworm-python:standin"
        if docker_engine.image_id(docker_client, raw) is None:
            recipe = Bootstrap(suite="bookworm", include=["python3", "python3-pip", "ca-certificates"])
            base_image.make_with_debootstrap(docker_client, recipe, raw, tmp_path, print)
        # Ubuntu 22.04 (the CANN bases) has no PEP 668 marker; Debian's would refuse `pip install`.
        dockerfile = f"FROM {raw}\nRUN rm -f /usr/lib/python3*/EXTERNALLY-MANAGED\n"
        docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=ctx.base_image, rm=True)

    image = docker_engine.build(
        settings.build.docker_cli,
        ctx.stack.path,
        tags=[f"flagrelease-test/{chip_id}-flagos:standin"],
        labels={},
        secrets={"ca_bundle": settings.build.ca_bundle},
        platform=cell.chip.platform,
        on_line=print,
        target="flagos",
    )
    for package, version in expected.items():
        shown = docker_client.containers.run(
            image, ["python3", "-m", "pip", "show", package], entrypoint=[], remove=True
        ).decode()
        assert f"Version: {version}" in shown, shown
    env = docker_client.images.get(image).attrs["Config"]["Env"]
    assert f"SOC_VERSION={cell.chip.soc_version}" in env
