"""The base-image step against the real engine and debootstrap."""

from __future__ import annotations

import pytest

from flagrelease.errors import ServiceError
from flagrelease.schema import Bootstrap
from flagrelease.steps import base_image
from tests.conftest import free_port


def test_existing_base_is_used_not_remade(released, docker_client, tmp_path):
    from flagrelease.matrix import load_matrix, select
    from tests.conftest import ROOT

    cell = select(load_matrix(ROOT / "matrix.yaml"), chip="cpu", model="tiny-llama")[0]
    result = base_image.ensure_base(docker_client, cell.chip, "cpu", cell.chip.base.image, tmp_path, lambda _: None)
    assert not result.made and result.image_id.startswith("sha256:")
    labels = docker_client.images.get(result.ref).labels
    assert labels["org.flagos.base.recipe"].startswith("debootstrap --variant=minbase sid ")


def test_unreachable_mirror_fails_with_debootstraps_own_words(docker_client, tmp_path):
    recipe = Bootstrap(suite="sid", mirror=f"http://127.0.0.1:{free_port()}/debian")
    lines = []
    with pytest.raises(ServiceError) as err:
        base_image.make_with_debootstrap(docker_client, recipe, "flagrelease-test/never:made", tmp_path, lines.append)
    assert "debootstrap of sid failed" in err.value.problem and "mirror" in err.value.fix
    assert lines and lines[0].startswith("making base image flagrelease-test/never:made")
    assert base_image.docker_engine.image_id(docker_client, "flagrelease-test/never:made") is None
    assert list(tmp_path.iterdir()) == []  # the half-made rootfs is gone
