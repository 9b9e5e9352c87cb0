"""Every compatibility rule of matrix.yaml, with a cell that passes it and one that breaks it."""

from __future__ import annotations

import pytest

from flagrelease.compat import check_cell, ensure_compatible, release
from flagrelease.errors import ConfigError
from flagrelease.matrix import deep_merge, expand, load_matrix, select
from flagrelease.schema import Cell, Chip
from tests.conftest import ROOT

MATRIX = load_matrix(ROOT / "matrix.yaml")


def cell(chip_id: str, **patch) -> Cell:
    base = select(MATRIX, chip=chip_id)[0]
    chip = Chip.model_validate(deep_merge(base.chip.model_dump(), patch))
    return base.model_copy(update={"chip": chip})


def broken(c: Cell) -> set[str]:
    return {v.rule for v in check_cell(c, MATRIX.compatibility)}


CASES = [
    ("torch-npu-matches-torch", "ascend-a3", {"stack": {"torch": "2.5.1"}}),
    ("torch-npu-supports-cann", "ascend-a3-cann83", {"stack": {"torch": "2.6.0", "torch_npu": "2.6.0rc1"}}),
    ("vllm-plugin-matches-vllm", "ascend-a3", {"stack": {"vllm_plugin": "0.11.0rc1"}}),
    ("python-matches-base", "ascend-a2", {"stack": {"python": "3.10.15"}}),
    ("python-matches-base-nodot", "metax-c550", {"stack": {"python": "3.11"}}),
    ("cann-matches-base", "ascend-a3", {"sdk": {"version": "8.1.rc1"}}),
    (
        "a3-soc-on-a3-base",
        "ascend-a3",
        {"base": {"image": "quay.io/ascend/cann:8.2.rc1.alpha002-910b-ubuntu22.04-py3.11"}},
    ),
    (
        "a2-soc-on-910b-base",
        "ascend-a2",
        {"base": {"image": "quay.io/ascend/cann:8.2.rc1.alpha002-a3-ubuntu22.04-py3.11"}},
    ),
    ("flaggems-backend", "cpu", {"stack": {"flaggems": "2.2"}}),
    ("vllm-engine-needs-vllm", "nvidia-h100", {"stack": {"vllm": "none"}}),
    ("visible-devices-env", "nvidia-h100", {"runtime": {"visible_devices_env": "ASCEND_RT_VISIBLE_DEVICES"}}),
    # vllm-ascend's release table: v0.23.0 is CANN 9.1 and torch_npu 2.10 only.
    ("vllm-ascend-supports-cann", "ascend-a3-fl", {"sdk": {"version": "9.0.0"}}),
    ("vllm-ascend-supports-cann", "ascend-a3-cann83", {"stack": {"vllm": "0.23.0", "vllm_plugin": "0.23.0"}}),
    ("vllm-ascend-pins-torch-npu", "ascend-a3-fl", {"stack": {"torch": "2.9.0", "torch_npu": "2.9.0"}}),
    ("cuda-vllm-pins-torch", "nvidia-h100-fl", {"stack": {"torch": "2.10.0"}}),
    ("cuda-vllm-pins-torch", "nvidia-h100", {"stack": {"vllm": "0.11.0"}}),
    ("flagscale-launcher-needs-flagscale", "cpu", {"stack": {"flagscale": "none"}}),
    ("vllm-launcher-serves-vllm", "nvidia-h100-fl", {"stack": {"engine": "sglang"}}),
    (
        "llama-server-launcher-serves-llama-cpp",
        "cpu",
        {"stack": {"engine": "vllm", "launcher": {"name": "llama-server"}}},
    ),
    ("vllm-plugin-fl-needs-flaggems", "nvidia-h100-fl", {"stack": {"flaggems": "none"}}),
]


def test_every_rule_has_a_case():
    assert {rule.id for rule in MATRIX.compatibility} == {case[0] for case in CASES}


@pytest.mark.parametrize("rule,chip_id,patch", CASES, ids=[c[0] for c in CASES])
def test_rule_passes_seed_row_and_fails_when_broken(rule, chip_id, patch):
    assert rule not in broken(cell(chip_id))
    assert rule in broken(cell(chip_id, **patch))


def test_every_seed_cell_is_compatible():
    assert [v for c in expand(MATRIX) for v in check_cell(c, MATRIX.compatibility)] == []


def test_violation_names_cell_rule_and_pins():
    bad = cell("ascend-a3", stack={"torch": "2.5.1"})
    with pytest.raises(ConfigError) as err:
        ensure_compatible([bad], MATRIX.compatibility, "matrix.yaml")
    text = err.value.render()
    assert "qwen3-4b x ascend-a3" in text and "torch-npu-matches-torch" in text
    assert "stack.torch_npu=2.6.0rc1" in text and "stack.torch=2.5.1" in text


def test_the_current_vllm_ascend_table():
    """vllm-ascend's versioning policy: each release on one CANN line and one torch_npu line."""
    tuples = [
        ("0.18.0", "8.5.1", "2.9.0", "2.9.0.post1", "8.5.1-a3-ubuntu22.04-py3.11"),
        ("0.20.2rc1", "9.0.0", "2.10.0", "2.10.0", "9.0.0-a3-ubuntu22.04-py3.11"),
        ("0.23.0", "9.1.0", "2.10.0", "2.10.0.post4", "9.1.0-a3-ubuntu22.04-py3.12"),
    ]
    for plugin, cann, torch, torch_npu, base in tuples:
        vllm = plugin.removesuffix("rc1")
        row = cell(
            "ascend-a3-fl",
            sdk={"version": cann},
            base={"image": f"quay.io/ascend/cann:{base}"},
            stack={"torch": torch, "torch_npu": torch_npu, "vllm": vllm, "vllm_plugin": plugin, "python": base[-4:]},
        )
        assert broken(row) == set(), (plugin, broken(row))
    # one CANN line too far either way
    assert "vllm-ascend-supports-cann" in broken(cell("ascend-a3-cann83", sdk={"version": "8.5.1"}))


def test_unknown_torch_npu_release_is_reported_not_passed():
    assert "torch-npu-supports-cann" in broken(cell("ascend-a3", stack={"torch": "3.1.0", "torch_npu": "3.1.0"}))


@pytest.mark.parametrize(
    "version,parts,expected",
    [
        ("2.6.0rc1", 2, ("2", "6")),
        ("2.7.1.post1", 3, ("2", "7", "1")),
        ("0.11.0rc1", 2, ("0", "11")),
    ],
)
def test_release_prefix(version, parts, expected):
    assert release(version, parts) == expected


def test_the_shared_checker_decides_as_a_fresh_one_per_cell():
    """The Checker shares decisions across cells; across broken chips, cells of a chip with
    an override and a rule that reads the model, it must say what checking each cell alone says."""
    from flagrelease.compat import Checker
    from flagrelease.schema import Rule

    rules = [
        *MATRIX.compatibility,
        Rule.model_validate(
            {
                "id": "no-qwen3-8b-on-metax",
                "description": "a rule about a model",
                "when": {"model.id": "qwen3-8b"},
                "require": {"field": "chip.vendor", "in": ["!metax"]},
            }
        ),
    ]
    cells = expand(MATRIX) + [cell(chip_id, **patch) for _, chip_id, patch in CASES]
    checker = Checker(rules)
    shared = [checker.check(c) for c in cells]
    alone = [check_cell(c, rules) for c in cells]
    assert shared == alone
    assert any(v.rule == "no-qwen3-8b-on-metax" for found in shared for v in found)
    assert sum(bool(found) for found in shared) == len(CASES) + 1


def test_an_error_names_at_most_twenty_violations():
    many = [cell("ascend-a3", stack={"torch": "2.5.1"}).model_copy(update={"model_id": f"m{i}"}) for i in range(30)]
    with pytest.raises(ConfigError) as err:
        ensure_compatible(many, MATRIX.compatibility, "matrix.yaml")
    assert err.value.problem.startswith("30 compatibility rule violation(s)")
    assert "... and 10 more" in err.value.problem and err.value.problem.count("torch-npu-matches-torch") == 20
