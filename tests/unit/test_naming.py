from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flagrelease.errors import ConfigError
from flagrelease.matrix import load_matrix, select
from flagrelease.naming import (
    check_tag,
    full_repository,
    repository_name,
    tag_version,
    timestamp_tag,
)
from flagrelease.schema import Cell, Chip
from tests.conftest import ROOT

REFERENCE_IMAGE = (
    "flagrelease-ascend-release-model_qwen3-4b-tree_none-gems_2.2-scale_0.8.0-cx_none-python_3.11.11"
    "-torch_npu2.6.0rc1-pcp_cann8.2rc1.alpha002-gpu_ascend001-arc_arm64-driver_25.2.0"
)


def reference_cell() -> Cell:
    """The reference card's pins, stated directly (the matrix rows come with the Ascend chips)."""
    matrix = load_matrix(ROOT / "matrix.yaml")
    chip = Chip.model_validate(
        {
            "vendor": "ascend",
            "chip_code": "ascend001",
            "arch": "arm64",
            "sdk": {"name": "cann", "version": "8.2.rc1.alpha002"},
            "driver": "25.2.0",
            "base": {"image": "quay.io/ascend/cann:8.2.rc1-a3-ubuntu22.04-py3.11"},
            "template": "ascend.Dockerfile.j2",
            "stack": {
                "python": "3.11.11",
                "torch": "2.6.0",
                "torch_npu": "2.6.0rc1",
                "flaggems": "2.2",
                "flagscale": "0.8.0",
                "engine": "vllm",
            },
        }
    )
    return Cell(chip_id="ascend-a3", model_id="qwen3-4b", chip=chip, model=matrix.models["qwen3-4b"])


def test_reference_card_image_name_byte_for_byte():
    assert repository_name(reference_cell()) == REFERENCE_IMAGE


def test_cpu_cell_name():
    cell = select(load_matrix(ROOT / "matrix.yaml"), chip="cpu", model="tiny-llama")[0]
    assert repository_name(cell) == (
        "flagrelease-cpu-release-model_tiny-llama-tree_none-gems_none-scale_0.8.0-cx_none-python_3.13"
        "-torch_none-pcp_none-gpu_cpu001-arc_amd64-driver_none"
    )


@pytest.mark.parametrize(
    "pin,tagged",
    [
        ("8.2.rc1.alpha002", "8.2rc1.alpha002"),
        ("8.3.RC2", "8.3rc2"),
        ("2.5.1+cpu", "2.5.1.cpu"),
        ("none", "none"),
    ],
)
def test_tag_version(pin, tagged):
    assert tag_version(pin) == tagged


def test_timestamp_tag_is_yymmddhhmm_utc():
    assert timestamp_tag(datetime(2025, 12, 10, 17, 14, 59, tzinfo=UTC)) == "2512101714"


def test_oci_limits():
    with pytest.raises(ConfigError, match="over the OCI limit of 255"):
        full_repository("registry.example.com", "x" * 200, REFERENCE_IMAGE)
    assert full_repository("127.0.0.1:5000", "flagrelease", "n") == "127.0.0.1:5000/flagrelease/n"
    with pytest.raises(ConfigError, match="not a valid OCI tag"):
        check_tag("-bad")
    with pytest.raises(ConfigError):
        check_tag("a" * 129)
    assert check_tag("2512101714") == "2512101714"
