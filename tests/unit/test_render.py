from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from flagrelease.errors import ConfigError
from flagrelease.matrix import load_matrix, select
from flagrelease.render import render_context, render_dockerfile, serve_config
from flagrelease.settings import BuildSettings
from tests.conftest import ROOT

GOLDEN = ROOT / "tests/golden"
SETTINGS = BuildSettings(ca_bundle=None, pip_index_url=None, apt_mirror=None, base_mirror=None, docker_cli="docker")


def cpu_cell():
    matrix = load_matrix(ROOT / "matrix.yaml")
    return matrix, select(matrix, chip="cpu", model="tiny-llama")[0]


def test_cpu_dockerfile_matches_golden():
    """Regenerate with FLAGRELEASE_UPDATE_GOLDEN=1 after an intended template change."""
    matrix, cell = cpu_cell()
    text, _, _ = render_dockerfile(cell, matrix, SETTINGS)
    golden = GOLDEN / "cpu--tiny-llama.Dockerfile"
    if os.environ.get("FLAGRELEASE_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_rendered_dockerfile_is_structurally_sound():
    matrix, cell = cpu_cell()
    text, labels, base = render_dockerfile(cell, matrix, SETTINGS)
    parser = DockerfileParser(fileobj=__import__("io").BytesIO(text.encode()))
    assert parser.baseimage == base == "flagrelease/debian-minbase:sid"
    assert parser.labels == labels
    args = {i["value"].split("=", 1)[0]: i["value"].split("=", 1)[1] for i in parser.structure
            if i["instruction"] == "ARG"}
    assert args["FLAGRELEASE_FLAGSCALE"] == "0.8.0"
    assert args["FLAGRELEASE_PKG_LLAMA_CPP_TOOLS"] == "1:0.7.0+dfsg-2"
    assert "{{" not in text and "{%" not in text
    assert "llama.cpp-tools=1:0.7.0+dfsg-2" in text


def test_apt_mirror_setting_is_rendered():
    matrix, cell = cpu_cell()
    text, _, _ = render_dockerfile(cell, matrix, SETTINGS.model_copy(update={"apt_mirror": "http://mirror.example/debian"}))
    assert '"http://mirror.example/debian" > /etc/apt/sources.list' in text


def test_serve_config_is_flagscale_shaped():
    _, cell = cpu_cell()
    experiment, serve_list = serve_config(cell)
    experiment, [entry] = yaml.safe_load(experiment), yaml.safe_load(serve_list)
    assert experiment["defaults"] == ["_self_", {"serve": "tiny-llama"}]
    assert experiment["experiment"]["task"]["type"] == "serve"
    assert entry["serve_id"] == "vllm_model" and entry["engine"] == "llama_cpp"
    assert entry["engine_args"] == {"model": "/data/weights/tiny-llama", "served_model_name": "tiny-llama-flagos",
                                    "host": "0.0.0.0", "port": 9010, "max_model_len": 4096, "max_num_seqs": 4}
    assert entry["engine_args_specific"] == {"llama_cpp": {"threads": 2}}


def test_missing_template_value_is_an_error_not_an_empty_string(tmp_path):
    (tmp_path / "dockerfiles/files").mkdir(parents=True)
    (tmp_path / "dockerfiles/cpu.Dockerfile.j2").write_text("FROM {{ base_image }}\nARG X={{ stack.flagsacle }}\n")
    (tmp_path / "matrix.yaml").write_text((ROOT / "matrix.yaml").read_text())
    matrix = load_matrix(tmp_path / "matrix.yaml")
    cell = select(matrix, chip="cpu", model="tiny-llama")[0]
    with pytest.raises(ConfigError, match="flagsacle"):
        render_dockerfile(cell, matrix, SETTINGS)


def test_context_hash_tracks_content(tmp_path):
    matrix, cell = cpu_cell()
    one = render_context(cell, matrix, SETTINGS, tmp_path / "a")
    two = render_context(cell, matrix, SETTINGS, tmp_path / "b")
    assert one.context_hash == two.context_hash
    assert set(one.files) == {"Dockerfile", "serve/conf/serve.yaml", "serve/conf/serve/tiny-llama.yaml",
                              "flagrelease-serve.py", "flagscale-serve-deps.txt"}
    mirrored = render_context(cell, matrix, SETTINGS.model_copy(update={"apt_mirror": "http://m/debian"}),
                              tmp_path / "c")
    assert mirrored.context_hash != one.context_hash
