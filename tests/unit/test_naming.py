from __future__ import annotations

from datetime import UTC, datetime

import pytest
import yaml

from flagrelease.errors import ConfigError
from flagrelease.matrix import expand, load_matrix, select
from flagrelease.naming import (
    check_tag,
    full_repository,
    is_release_tag,
    newest_release_tags,
    release_time,
    repository_name,
    stack_repository_name,
    tag_version,
    timestamp_tag,
)
from flagrelease.plan import cell_plan
from flagrelease.schema import Cell, Chip
from flagrelease.settings import BuildSettings
from flagrelease.steps.publish import push_release
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


def test_timestamp_tag_in_the_twelve_digit_format():
    when = datetime(2025, 12, 10, 17, 14, 59, tzinfo=UTC)
    assert timestamp_tag(when, "YYYYMMDDHHMM") == "202512101714"


@pytest.mark.parametrize(
    "tag,when",
    [
        ("2512101714", datetime(2025, 12, 10, 17, 14, tzinfo=UTC)),  # the reference card's
        ("202512101714", datetime(2025, 12, 10, 17, 14, tzinfo=UTC)),  # FlagRelease's current tooling
        ("251210171", None),
        ("25121017140", None),
        ("2513101714", None),  # month 13
        ("latest", None),
        ("gems2.2-scale0.8.0", None),
        ("key-" + "0" * 10, None),
    ],
)
def test_release_tags_in_either_format_are_recognised(tag, when):
    assert release_time(tag) == when
    assert is_release_tag(tag) is (when is not None)


def test_release_tags_of_both_formats_sort_by_time_not_by_text():
    tags = ["latest", "2512101714", "202601050930", "2601050929", "202512101713", "key-abc"]
    assert newest_release_tags(tags) == ["202601050930", "2601050929", "2512101714", "202512101713"]


@pytest.mark.parametrize("alias", ["2512101714", "202512101714"])
def test_an_alias_shaped_like_a_release_tag_of_either_format_is_refused_before_any_push(alias):
    with pytest.raises(ConfigError, match="could overwrite a release or staging tag"):
        push_release(None, "sha256:0", "127.0.0.1:1", "flagrelease/x", "2512101714", aliases=[alias])


def test_the_timestamp_format_is_release_level_data(tmp_path):
    data = project_matrix()
    assert load(tmp_path, data).release.timestamp == "YYMMDDHHMM"  # as in the reference card
    data["release"]["timestamp"] = "YYYYMMDDHHMM"
    matrix = load(tmp_path, data)
    [cell] = select(matrix, chip="cpu")
    assert cell_plan(cell, matrix, BuildSettings(ca_bundle=None))["image"].endswith(":<YYYYMMDDHHMM>")
    data["release"]["timestamp"] = "YYMMDDHHMMSS"
    with pytest.raises(ConfigError, match="release.timestamp"):
        load(tmp_path, data)


def test_oci_limits():
    with pytest.raises(ConfigError, match="over the OCI limit of 255"):
        full_repository("registry.example.com", "x" * 200, REFERENCE_IMAGE)
    assert full_repository("127.0.0.1:5000", "flagrelease", "n") == "127.0.0.1:5000/flagrelease/n"
    with pytest.raises(ConfigError, match="not a valid OCI tag"):
        check_tag("-bad")
    with pytest.raises(ConfigError):
        check_tag("a" * 129)
    assert check_tag("2512101714") == "2512101714"


def project_matrix() -> dict:
    return yaml.safe_load((ROOT / "matrix.yaml").read_text())


def load(tmp_path, data: dict):
    (tmp_path / "matrix.yaml").write_text(yaml.safe_dump(data))
    return load_matrix(tmp_path / "matrix.yaml")


def test_the_shipped_matrix_gives_every_cell_its_own_name_and_the_reference_cell_its_card_name():
    cells = expand(load_matrix(ROOT / "matrix.yaml"))
    names = [repository_name(c) for c in cells]
    assert len(set(names)) == len(names) == 25
    stacks = {stack_repository_name(c): c.chip_id for c in cells}
    assert sorted(stacks.values()) == sorted({c.chip_id for c in cells})
    a3 = next(c for c in cells if c.label == "qwen3-4b x ascend-a3")
    assert repository_name(a3) == REFERENCE_IMAGE
    a2 = next(c for c in cells if c.label == "qwen3-4b x ascend-a2")
    assert repository_name(a2) == REFERENCE_IMAGE.replace("-gpu_ascend001-", "-gpu_ascend001.a2-")


def test_two_cells_with_one_name_are_refused_naming_both_the_fields_and_the_fix(tmp_path):
    data = project_matrix()
    del data["chips"]["ascend-a2"]["spelling"]
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, data)
    err = refused.value
    assert err.exit_code == 2
    assert "cells qwen3-4b x ascend-a2 and qwen3-4b x ascend-a3 would get the same image name" in err.problem
    assert REFERENCE_IMAGE in err.problem
    assert "(model, tree, gems, scale, cx, python, torch, pcp, gpu, arc, driver) are equal" in err.problem
    # What tells the chips apart, and is not in the name.
    assert "they differ in base.image, description, soc_version" in err.problem
    assert err.where.endswith("matrix.yaml: chips.ascend-a2 / chips.ascend-a3")
    assert 'chips.ascend-a3.spelling: {chip_code: "{value}.<variant>"}' in (err.fix or "")


def test_two_chips_with_one_stack_name_are_refused_even_without_a_common_model(tmp_path):
    data = project_matrix()
    data["chips"]["cpu-copy"] = {"extends": "cpu", "description": "the same hosts, another row"}
    data["matrix"]["include"].append({"chip": "cpu-copy", "model": "qwen3-0.6b"})
    with pytest.raises(ConfigError, match="chips cpu and cpu-copy would get the same chip-stack image name") as err:
        load(tmp_path, data)
    assert "they differ in description" in err.value.problem
    data["chips"]["cpu-copy"]["spelling"] = {"chip_code": "cpu001.copy"}
    cells = expand(load(tmp_path, data))
    copy = next(c for c in cells if c.chip_id == "cpu-copy")
    assert "-gpu_cpu001.copy-" in stack_repository_name(copy)


def test_an_override_that_makes_a_name_collide_is_refused_at_load(tmp_path):
    data = project_matrix()
    data["chips"]["cpu-arm"] = {"extends": "cpu", "arch": "arm64"}
    # The arm64 row, overridden back to amd64 for this cell: the cpu cell's name exactly.
    data["matrix"]["include"].append(
        {"chip": "cpu-arm", "model": "tiny-llama", "overrides": {"chip": {"arch": "amd64"}}}
    )
    with pytest.raises(ConfigError, match="tiny-llama x cpu and tiny-llama x cpu-arm would get the same image name"):
        load(tmp_path, data)


@pytest.mark.parametrize(
    "pin,spelling,field",
    [
        ("sdk_version", "{value}", "pcp_cann8.2.rc1.alpha002"),  # published names that keep the dot
        ("sdk_version", "{value|compact_rc}", "pcp_cann8.2rc1.alpha002"),  # the default, stated
        ("torch_npu", "{value}_{python}", "torch_npu2.6.0rc1_3.11.11"),
        ("chip_code", "ascend001.a3", "gpu_ascend001.a3"),
        ("driver", "{value}.{sdk_version|compact_rc}", "driver_25.2.0.8.2rc1.alpha002"),
    ],
)
def test_a_pin_is_spelled_as_its_chip_declares(pin, spelling, field):
    cell = reference_cell()
    chip = cell.chip.model_copy(update={"spelling": {pin: spelling}})
    assert f"-{field}-" in repository_name(cell.model_copy(update={"chip": chip})) + "-"


@pytest.mark.parametrize("spelling", ["{value}-a2", "{model}", "{value|upper}", "A2", ""])
def test_a_spelling_that_could_break_the_name_is_refused(tmp_path, spelling):
    data = project_matrix()
    data["chips"]["ascend-a2"]["spelling"] = {"chip_code": spelling}
    with pytest.raises(ConfigError, match="chips.ascend-a2.spelling.chip_code"):
        load(tmp_path, data)
