from __future__ import annotations

import io
import os

import pytest
from dockerfile_parse import DockerfileParser

from flagrelease.cell_facts import pins, serve_config, served_name
from flagrelease.errors import ConfigError
from flagrelease.matrix import load_matrix, select
from flagrelease.schema import Cell
from flagrelease.settings import BuildSettings
from flagrelease.steps.render import render_context, render_dockerfile, render_launcher
from tests.conftest import ROOT

GOLDEN = ROOT / "tests/golden"
SETTINGS = BuildSettings(ca_bundle=None, pip_index_url=None, apt_mirror=None, base_mirror=None, docker_cli="docker")


def cpu_cell():
    matrix = load_matrix(ROOT / "matrix.yaml")
    return matrix, select(matrix, chip="cpu", model="tiny-llama")[0]


MATRIX = load_matrix(ROOT / "matrix.yaml")
ONE_CELL_PER_CHIP = [select(MATRIX, chip=chip)[0] for chip in MATRIX.chips]
PARTS = ("stack", "model")


def every_model_on(cell: Cell) -> list[Cell]:
    """The cell's chip with every model of the matrix, declared on it or not."""
    return [cell.model_copy(update={"model_id": m, "model": model}) for m, model in MATRIX.models.items()]


@pytest.mark.parametrize("part", PARTS)
@pytest.mark.parametrize("cell", ONE_CELL_PER_CHIP, ids=lambda c: c.chip_id)
def test_dockerfile_matches_golden(cell, part):
    """Regenerate with FLAGRELEASE_UPDATE_GOLDEN=1 after an intended template change, and review the diff."""
    text, _, _ = render_dockerfile(cell, MATRIX, SETTINGS, part)
    golden = GOLDEN / f"{cell.chip_id}--{cell.model_id if part == 'model' else 'stack'}.Dockerfile"
    if os.environ.get("FLAGRELEASE_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


@pytest.mark.parametrize("cell", ONE_CELL_PER_CHIP, ids=lambda c: c.chip_id)
def test_launch_spec_matches_golden(cell):
    """The launcher the image's entrypoint runs (serve/launch.json): its command and both sides'
    environment. Regenerate with FLAGRELEASE_UPDATE_GOLDEN=1 and review the diff."""
    text = render_launcher(cell, MATRIX).model_dump_json(indent=2) + "\n"
    golden = GOLDEN / f"{cell.chip_id}--{cell.model_id}.launch.json"
    if os.environ.get("FLAGRELEASE_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_launchers_switch_sides_by_their_declared_environment():
    """The seed rows keep FlagScale's switch; the vllm-plugin-FL rows declare the plugin's."""
    seed = render_launcher(select(MATRIX, chip="ascend-a3", model="qwen3-4b")[0], MATRIX)
    assert seed.mode == "flagscale" and seed.command[:3] == ["flagscale", "serve", "qwen3-4b"]
    assert seed.sides == {"native": {"USE_FLAGGEMS": "false"}, "flaggems": {"USE_FLAGGEMS": "true"}}
    fl = render_launcher(select(MATRIX, chip="ascend-a3-fl", model="qwen3-4b")[0], MATRIX)
    assert fl.mode == "foreground" and fl.launcher == "vllm"
    # CANN's environment first, then bash becomes `vllm serve` with FlagScale's flag rule
    assert fl.command[:2] == ["bash", "-c"] and fl.command[2].startswith("source /usr/local/Ascend/")
    argv = fl.command[4:]
    assert argv[:3] == ["vllm", "serve", "/data/weights/Qwen3-4B"]
    assert "--enforce-eager" in argv and argv[argv.index("--max-model-len") + 1] == "35536"
    assert fl.sides["native"]["VLLM_PLUGINS"] == "ascend" and fl.sides["flaggems"]["VLLM_PLUGINS"] == "fl"
    assert fl.sides["flaggems"]["USE_FLAGGEMS"] == "1" and fl.sides["flaggems"]["GEMS_VENDOR"] == "ascend"


def test_a_launcher_without_a_template_names_the_key_and_the_known_ones(tmp_path):
    matrix, cell = cpu_cell()
    stack = cell.chip.stack.model_copy(
        update={"launcher": cell.chip.stack.launcher.model_copy(update={"name": "sglang"})}
    )
    odd = cell.model_copy(update={"chip": cell.chip.model_copy(update={"stack": stack})})
    with pytest.raises(ConfigError) as err:
        render_launcher(odd, matrix)
    assert "chips.cpu.stack.launcher.name" in err.value.where
    assert "flagscale" in err.value.fix and "vllm" in err.value.fix


@pytest.mark.parametrize("cell", ONE_CELL_PER_CHIP, ids=lambda c: c.chip_id)
def test_the_chip_stack_holds_nothing_of_a_model(cell):
    """Every model renders the same stack, byte for byte, and none of its values is in it:
    so N models on a chip share one stack build and every stack layer."""
    cells = every_model_on(cell)
    stacks = {render_dockerfile(c, MATRIX, SETTINGS, "stack")[0] for c in cells}
    assert len(stacks) == 1
    [stack] = stacks
    for other in cells:
        for value in (other.model_id, served_name(other), other.weights_mount):
            assert value not in stack


@pytest.mark.parametrize("cell", ONE_CELL_PER_CHIP, ids=lambda c: c.chip_id)
def test_rendered_dockerfiles_are_structurally_sound(cell):
    """Parsed by a real Dockerfile parser: the stack FROM the pinned base, the model image a
    thin layer FROM the stack (no RUN); every pin a label of one of them."""
    stack_text, stack_labels, base = render_dockerfile(cell, MATRIX, SETTINGS, "stack")
    model_text, model_labels, _ = render_dockerfile(cell, MATRIX, SETTINGS, "model")
    stack = DockerfileParser(fileobj=io.BytesIO(stack_text.encode()))
    model = DockerfileParser(fileobj=io.BytesIO(model_text.encode()))
    froms = [i["value"] for i in stack.structure if i["instruction"] == "FROM"]
    assert froms == [f"{cell.chip.base.image} AS system", "system AS flagos", "flagos AS stack"]
    assert base == cell.chip.base.image
    assert [i["value"] for i in model.structure if i["instruction"] == "FROM"] == ["${STACK_IMAGE}"]
    instructions = {i["instruction"] for i in model.structure} - {"COMMENT"}
    assert instructions == {"ARG", "FROM", "COPY", "ENV", "LABEL", "EXPOSE", "ENTRYPOINT"}
    assert stack.labels == stack_labels and model.labels == model_labels
    labels = stack_labels | model_labels  # what the model image carries: its own on top of the stack's
    for key, value in pins(cell).items():
        assert labels[f"org.flagos.{key.replace('_', '-')}"] == value
    assert "org.flagos.model" not in stack_labels
    for text in (stack_text, model_text):
        assert "{{" not in text and "{%" not in text and "{#" not in text
    entrypoint = [i["value"] for i in model.structure if i["instruction"] == "ENTRYPOINT"]
    assert len(entrypoint) == 1 and entrypoint[0].endswith('"/usr/local/bin/flagrelease-serve"]')


def test_vendor_pins_reach_the_install_commands():
    ascend = select(MATRIX, chip="ascend-a3", model="qwen3-4b")[0]
    text, _, _ = render_dockerfile(ascend, MATRIX, SETTINGS, "stack")
    for needle in (
        "ARG SOC_VERSION=ascend910_9391",
        "torch==2.6.0 torch_npu==2.6.0rc1",
        "vllm==0.9.1",
        "vllm-ascend==0.9.1",
        "FlagGems.git@v2.2",
        "Version: 2.2",
        "flag-scale==0.8.0",
        "USE_FLAGGEMS=true",
    ):
        assert needle in text


def test_apt_mirror_setting_is_rendered():
    matrix, cell = cpu_cell()
    text, _, _ = render_dockerfile(
        cell, matrix, SETTINGS.model_copy(update={"apt_mirror": "http://mirror.example/debian"}), "stack"
    )
    assert '"http://mirror.example/debian" > /etc/apt/sources.list' in text


def test_serve_config_is_flagscale_shaped():
    _, cell = cpu_cell()
    experiment, [entry] = serve_config(cell)
    assert experiment["defaults"] == ["_self_", {"serve": "tiny-llama"}]
    assert experiment["experiment"]["task"]["type"] == "serve"
    assert entry["serve_id"] == "vllm_model" and entry["engine"] == "llama_cpp"
    assert entry["engine_args"] == {
        "model": "/data/weights/tiny-llama",
        "served_model_name": "tiny-llama-flagos",
        "host": "0.0.0.0",
        "port": 9010,
        "max_model_len": 4096,
        "max_num_seqs": 4,
    }
    assert entry["engine_args_specific"] == {"llama_cpp": {"threads": 1}}


def test_missing_template_value_is_an_error_not_an_empty_string(tmp_path):
    (tmp_path / "dockerfiles/files").mkdir(parents=True)
    (tmp_path / "dockerfiles/cpu.Dockerfile.j2").write_text("FROM {{ base_image }}\nARG X={{ stack.flagsacle }}\n")
    (tmp_path / "matrix.yaml").write_text((ROOT / "matrix.yaml").read_text())
    matrix = load_matrix(tmp_path / "matrix.yaml")
    cell = select(matrix, chip="cpu", model="tiny-llama")[0]
    with pytest.raises(ConfigError, match="flagsacle"):
        render_dockerfile(cell, matrix, SETTINGS, "stack")


def test_context_hash_tracks_content(tmp_path):
    matrix, cell = cpu_cell()
    one = render_context(cell, matrix, SETTINGS, tmp_path / "a")
    two = render_context(cell, matrix, SETTINGS, tmp_path / "b")
    assert one.stack.context_hash == two.stack.context_hash and one.model.context_hash == two.model.context_hash
    assert set(one.stack.files) == {"Dockerfile", "flagrelease-serve.py", "flagscale-serve-deps.txt"}
    assert set(one.model.files) == {
        "Dockerfile",
        "serve/conf/serve.yaml",
        "serve/conf/serve/tiny-llama.yaml",
        "serve/launch.json",
    }
    mirrored = render_context(
        cell, matrix, SETTINGS.model_copy(update={"apt_mirror": "http://m/debian"}), tmp_path / "c"
    )
    assert mirrored.stack.context_hash != one.stack.context_hash
    assert mirrored.model.context_hash == one.model.context_hash
    other = cell.model_copy(update={"model_id": "tiny-llama-b"})
    second = render_context(other, matrix, SETTINGS, tmp_path / "d")
    assert second.stack.context_hash == one.stack.context_hash
    assert second.model.context_hash != one.model.context_hash


def test_a_render_is_marked_and_the_mark_is_not_part_of_the_context(tmp_path):
    from flagrelease.steps.render import MARKER, context_hash

    matrix, cell = cpu_cell()
    ctx = render_context(cell, matrix, SETTINGS, tmp_path / "a")
    assert (tmp_path / "a" / MARKER).is_file()
    for part in (ctx.stack, ctx.model):
        assert MARKER not in part.files and context_hash(part.path, part.files) == part.context_hash
    (tmp_path / "a" / MARKER).write_text("changed\n")
    again = render_context(cell, matrix, SETTINGS, tmp_path / "a")
    assert (again.stack.context_hash, again.model.context_hash) == (ctx.stack.context_hash, ctx.model.context_hash)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"], "no staging directory left behind"


def test_a_render_refuses_what_is_not_its_own_and_leaves_it_alone(tmp_path):
    matrix, cell = cpu_cell()
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "thesis.tex").write_text("years of work\n")
    with pytest.raises(ConfigError, match="is not a previous render"):
        render_context(cell, matrix, SETTINGS, theirs)
    assert [p.name for p in theirs.iterdir()] == ["thesis.tex"]
    (tmp_path / "link").symlink_to(theirs)
    with pytest.raises(ConfigError, match="is a symbolic link"):
        render_context(cell, matrix, SETTINGS, tmp_path / "link", force=True)
    assert [p.name for p in theirs.iterdir()] == ["thesis.tex"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert render_context(cell, matrix, SETTINGS, empty).model.path == empty / "model"
