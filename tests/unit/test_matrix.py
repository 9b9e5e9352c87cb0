from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flagrelease.errors import ConfigError
from flagrelease.matrix import combinations, deep_merge, expand, load_matrix, select
from flagrelease.schema import MatrixAxes
from tests.conftest import ROOT


def write(tmp_path: Path, data: dict | str) -> Path:
    path = tmp_path / "matrix.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def project_matrix() -> dict:
    return yaml.safe_load((ROOT / "matrix.yaml").read_text())


def test_project_matrix_loads_and_expands():
    matrix = load_matrix(ROOT / "matrix.yaml")
    cells = expand(matrix)
    assert ("tiny-llama", "cpu") in {(c.model_id, c.chip_id) for c in cells}
    assert matrix.models["qwen3-4b"].serve.engine_args["port"] == 9010


def test_include_exclude_follow_github_actions_semantics():
    patch = {"model": {"serve": {"engine_args": {"max_num_seqs": 2}}}}
    axes = MatrixAxes(
        chip=["a", "b"],
        model=["x", "y"],
        exclude=[{"chip": "b", "model": "y"}],
        include=[{"chip": "a", "overrides": patch}, {"chip": "c", "model": "z"}],
    )
    overrides = axes.include[0].overrides
    combos = combinations(axes)
    assert {"chip": "b", "model": "y"} not in combos
    assert {"chip": "a", "model": "x", "overrides": overrides} in combos
    assert {"chip": "a", "model": "y", "overrides": overrides} in combos
    assert {"chip": "b", "model": "x"} in combos
    assert {"chip": "c", "model": "z"} in combos
    assert len(combos) == 4


def test_include_does_not_overwrite_original_axis_values():
    axes = MatrixAxes(chip=["a"], model=["x"], include=[{"model": "x", "chip": "b"}])
    # chip b does not match the original a-x on all its axis keys: it is a new combination.
    assert combinations(axes) == [{"chip": "a", "model": "x"}, {"chip": "b", "model": "x"}]


def test_exclude_matches_on_partial_keys():
    axes = MatrixAxes(chip=["a", "b"], model=["x", "y"], exclude=[{"model": "y"}])
    assert combinations(axes) == [{"chip": "a", "model": "x"}, {"chip": "b", "model": "x"}]


def test_extends_deep_merges_and_drops_abstract_blocks(tmp_path):
    data = project_matrix()
    cpu = data["chips"].pop("cpu")
    data["chips"]["_debian"] = cpu
    data["chips"]["cpu"] = {"extends": "_debian", "stack": {"python": "3.12"}}
    matrix = load_matrix(write(tmp_path, data))
    assert "_debian" not in matrix.chips
    assert matrix.chips["cpu"].stack.python == "3.12"
    assert matrix.chips["cpu"].stack.flagscale == "0.8.0"  # inherited beside the override


def test_extends_cycle_and_unknown_parent_are_errors(tmp_path):
    data = project_matrix()
    data["chips"]["cpu"]["extends"] = "_nowhere"
    with pytest.raises(ConfigError, match="extends unknown block '_nowhere'"):
        load_matrix(write(tmp_path, data))
    data["chips"]["_a"] = {"extends": "_b"}
    data["chips"]["_b"] = {"extends": "_a"}
    data["chips"]["cpu"]["extends"] = "_a"
    with pytest.raises(ConfigError, match="cycle"):
        load_matrix(write(tmp_path, data))


def test_yaml_syntax_error_names_line(tmp_path):
    path = write(tmp_path, "chips:\n  cpu: [unclosed\nmodels: {}\n")
    with pytest.raises(ConfigError) as err:
        load_matrix(path)
    assert f"{path}:" in err.value.where and "not valid YAML" in err.value.problem


def test_unknown_key_is_rejected_with_its_path(tmp_path):
    data = project_matrix()
    data["chips"]["cpu"]["stack"]["flagems"] = "2.2"  # typo of flaggems
    with pytest.raises(ConfigError) as err:
        load_matrix(write(tmp_path, data))
    assert "chips.cpu.stack.flagems" in err.value.where


def test_matrix_axis_naming_undefined_chip(tmp_path):
    data = project_matrix()
    data["matrix"]["chip"].append("ghost")
    with pytest.raises(ConfigError, match=r"matrix.chip\[8\] names 'ghost', which is not defined under chips"):
        load_matrix(write(tmp_path, data))


def test_select_by_vendor_family_and_unknown_names():
    matrix = load_matrix(ROOT / "matrix.yaml")
    assert [c.chip_id for c in select(matrix, chip="cpu")] == ["cpu"]
    with pytest.raises(ConfigError, match="unknown chip 'nope'"):
        select(matrix, chip="nope")
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        select(matrix, model="nope")


def test_defined_but_excluded_pair_says_so():
    matrix = load_matrix(ROOT / "matrix.yaml")
    with pytest.raises(ConfigError, match="no cell for model=qwen3-4b chip=cpu"):
        select(matrix, chip="cpu", model="qwen3-4b")


def test_deep_merge_replaces_lists():
    assert deep_merge({"a": {"b": 1, "c": [1]}}, {"a": {"c": [2]}}) == {"a": {"b": 1, "c": [2]}}


@pytest.mark.parametrize(
    "field,value",
    [
        ("python", "3.13\nRUN curl evil | sh"),
        ("python", "3.13 && rm -rf /"),
        ("flagscale", '0.8.0"'),
        ("flagscale", "$(id)"),
    ],
)
def test_injection_through_a_pin_is_rejected(tmp_path, field, value):
    data = project_matrix()
    data["chips"]["cpu"]["stack"][field] = value
    with pytest.raises(ConfigError, match=f"chips.cpu.stack.{field}"):
        load_matrix(write(tmp_path, data))


def test_exact_chip_id_wins_over_a_vendor_of_the_same_name(tmp_path):
    data = project_matrix()
    data["chips"]["cpu-arm64"] = {"extends": "cpu", "arch": "arm64"}
    data["matrix"]["include"].append({"chip": "cpu-arm64", "model": "tiny-llama"})
    matrix = load_matrix(write(tmp_path, data))
    assert [c.chip_id for c in select(matrix, chip="cpu")] == ["cpu"]
    assert [c.chip_id for c in select(matrix, chip="cpu-arm64")] == ["cpu-arm64"]
    assert {c.chip_id for c in select(matrix, model="tiny-llama")} == {"cpu", "cpu-arm64"}


def test_yaml_anchors_and_merge_keys_still_load(tmp_path):
    """Ordinary aliases and merge keys are fine; only expansion beyond the caps is refused."""
    text = (ROOT / "matrix.yaml").read_text()
    text = text.replace('      env: {OMP_NUM_THREADS: "2"}', '      env: &threads {OMP_NUM_THREADS: "2"}')
    text = text.replace('      env: {VLLM_USE_V1: "1"}\n', '      env: {<<: *threads, VLLM_USE_V1: "1"}\n')
    text = text.replace("served_model_name: tiny-llama-flagos", "served_model_name: &name tiny-llama-flagos")
    text = text.replace("description: A tiny random-weight", "description: *name\n    license: A tiny random-weight")
    text = text.replace("    license: Random weights generated", "    x: Random weights generated")
    matrix = load_matrix(write(tmp_path, text.replace("    x: Random weights", "    # Random weights")))
    assert matrix.chips["nvidia-h100"].runtime.env == {"OMP_NUM_THREADS": "2", "VLLM_USE_V1": "1"}
    assert matrix.models["tiny-llama"].description == "tiny-llama-flagos"


@pytest.mark.parametrize(
    "text,message",
    [
        (
            "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(f"l{i}: &l{i} [{', '.join(['*' + ('a' if i == 0 else f'l{i - 1}')] * 10)}]\n" for i in range(6)),
            "expands to more than",
        ),
        ("a: &a {b: *a}\n", "refers to itself"),
        ("a: " + "{x: " * 80 + "1" + "}" * 80 + "\n", "nests deeper than"),
    ],
    ids=["laughs", "recursive", "deep"],
)
def test_hostile_yaml_is_refused_before_anything_is_built_from_it(tmp_path, text, message):
    from flagrelease.input_files import load_yaml

    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_yaml(path, "matrix file")


def test_an_extends_chain_is_bounded(tmp_path):
    data = project_matrix()
    data["chips"]["_b0"] = data["chips"].pop("cpu")
    for i in range(1, 40):
        data["chips"][f"_b{i}"] = {"extends": f"_b{i - 1}"}
    data["chips"]["cpu"] = {"extends": "_b39"}
    with pytest.raises(ConfigError, match="`extends` chain longer than 32"):
        load_matrix(write(tmp_path, data))


def test_one_override_is_merged_once_for_all_the_cells_it_extends(tmp_path):
    data = project_matrix()
    data["matrix"]["include"].append(
        {"model": "qwen3-8b", "overrides": {"model": {"serve": {"engine_args": {"max_num_seqs": 2}}}}}
    )
    cells = [c for c in expand(load_matrix(write(tmp_path, data))) if c.model_id == "qwen3-8b"]
    assert len(cells) == 8 and {c.model.serve.engine_args["max_num_seqs"] for c in cells} == {2}
    assert len({id(c.model) for c in cells}) == 1  # validated once, shared by the eight cells
    assert load_matrix(ROOT / "matrix.yaml").models["qwen3-8b"].serve.engine_args["max_num_seqs"] == 16


def test_an_excerpt_is_short_whatever_it_quotes():
    from flagrelease.errors import EXCERPT_MAX, excerpt

    nested = ["x" * 10_000]
    for _ in range(50):
        nested = [nested] * 1000  # shared: a "billion laughs" in memory, cheap to build
    assert len(excerpt(nested)) <= EXCERPT_MAX
    assert len(excerpt("y" * 1_000_000)) <= EXCERPT_MAX


def test_validation_names_the_allowed_keys_at_any_depth():
    from flagrelease.schema import MatrixFile
    from flagrelease.validation import allowed_keys, key_path

    assert key_path(["matrix", "include", 0, "chip"]) == "matrix.include[0].chip"
    assert "flaggems" in allowed_keys(MatrixFile, ["chips", "cpu", "stack"])
    assert allowed_keys(MatrixFile, ["matrix", "include", 3]) == ["chip", "model", "overrides"]
    assert "in" in allowed_keys(MatrixFile, ["compatibility", 0, "require"])  # by its alias
    assert allowed_keys(MatrixFile, ["models", "m", "bench", "perf"])[:2] == ["concurrency", "interleave"]


def test_samples_need_a_temperature(tmp_path):
    data = project_matrix()
    data["models"]["tiny-llama"]["bench"]["accuracy"][0] |= {"samples": 4}
    with pytest.raises(ConfigError, match="samples: 4 at temperature 0 would ask the same question 4 times"):
        load_matrix(write(tmp_path, data))
    data["models"]["tiny-llama"]["bench"]["accuracy"][0] |= {"temperature": 0.6}
    [plan] = load_matrix(write(tmp_path, data)).models["tiny-llama"].bench.accuracy
    assert (plan.samples, plan.temperature) == (4, 0.6)
