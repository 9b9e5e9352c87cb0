"""The "adding a chip or a model" examples of docs/matrix.md work as written."""

from __future__ import annotations

import re

import yaml

from flagrelease.compat import check_cell
from flagrelease.matrix import deep_merge, load_matrix, select
from flagrelease.naming import repository_name
from flagrelease.settings import BuildSettings
from flagrelease.steps.render import render_dockerfile
from tests.conftest import ROOT


def test_docs_examples_add_a_chip_and_a_model(tmp_path):
    docs = (ROOT / "docs/matrix.md").read_text()
    section = docs[docs.index("## Adding a chip or a model") :]
    chip_block, model_block = (yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", section, re.S))
    data = yaml.safe_load((ROOT / "matrix.yaml").read_text())
    data["chips"] |= chip_block["chips"]
    data["models"] |= model_block["models"]
    data["matrix"]["chip"] += list(chip_block["chips"])
    data["matrix"]["model"] += list(model_block["models"])
    (tmp_path / "dockerfiles").symlink_to(ROOT / "dockerfiles")
    (tmp_path / "matrix.yaml").write_text(yaml.safe_dump(data))
    matrix = load_matrix(tmp_path / "matrix.yaml")

    [cell] = select(matrix, chip="ascend-a2-cann83", model="qwen3-14b")
    assert check_cell(cell, matrix.compatibility) == []
    assert "pcp_cann8.3rc2" in repository_name(cell) and "model_qwen3-14b" in repository_name(cell)
    text, _, _ = render_dockerfile(cell, matrix, BuildSettings(ca_bundle=None), "stack")
    assert "FROM quay.io/ascend/cann:8.3.rc2-910b-ubuntu22.04-py3.11 AS system" in text
    assert "ARG SOC_VERSION=ascend910b1" in text


def test_docs_spelling_example_gives_the_names_it_says(tmp_path):
    docs = (ROOT / "docs/matrix.md").read_text()
    section = docs[docs.index("## Image names") : docs.index("## `fleet`")]
    [block] = (yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", section, re.S))
    data = deep_merge(yaml.safe_load((ROOT / "matrix.yaml").read_text()), block)
    (tmp_path / "matrix.yaml").write_text(yaml.safe_dump(data))
    matrix = load_matrix(tmp_path / "matrix.yaml")
    [a2] = select(matrix, chip="ascend-a2", model="qwen3-4b")
    [metax] = select(matrix, chip="metax-c550", model="qwen3-4b")
    assert "-gpu_ascend001.a2-" in repository_name(a2)
    assert "-torch_2.6.0_metax3.0.0.8-" in repository_name(metax)
