"""Commands that run no flow: answered without Prefect, as a user types them."""

from __future__ import annotations

import json

import yaml
from dockerfile_parse import DockerfileParser

from tests.conftest import ROOT, run_cli

SEED_ROWS = {"ascend-a2", "ascend-a3", "ascend-a3-cann83", "nvidia-h100", "metax-c550", "cpu"}
# The current FlagOS line (vllm-plugin-FL stacks), beside the seed rows.
FL_ROWS = {"ascend-a2-fl", "ascend-a3-fl", "nvidia-h100-fl"}
ASCEND_ROWS = ["ascend-a2", "ascend-a3", "ascend-a3-cann83", "ascend-a2-fl", "ascend-a3-fl"]


def test_matrix_print_resolves_every_seed_row(tmp_path):
    proc = run_cli("matrix", "--print", home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert {cell["chip"] for cell in plan} == SEED_ROWS | FL_ROWS
    a3 = next(c for c in plan if c["cell"] == "qwen3-4b x ascend-a3")
    assert a3["image"].startswith("flagrelease/flagrelease-ascend-release-model_qwen3-4b-tree_none-gems_2.2-")
    assert a3["base_image"] == "quay.io/ascend/cann:8.2.rc1.alpha002-a3-ubuntu22.04-py3.11"
    assert a3["runtime"]["visible_devices_env"] == "ASCEND_RT_VISIBLE_DEVICES"
    assert a3["serve"]["serve"][0]["engine_args"]["served_model_name"] == "Qwen3-4B-ascend-flagos"
    assert a3["launcher"]["name"] == "flagscale"
    fl = next(c for c in plan if c["cell"] == "qwen3-4b x ascend-a3-fl")
    assert fl["launcher"]["name"] == "vllm" and fl["launcher"]["sides"]["flaggems"]["VLLM_PLUGINS"] == "fl"
    assert all(cell["violations"] == [] for cell in plan)
    assert "prefect" not in proc.stderr.lower()


def test_matrix_print_filters_by_vendor_and_model(tmp_path):
    proc = run_cli("matrix", "--print", "--chip", "ascend", "--model", "qwen3-4b", home=tmp_path)
    assert [c["chip"] for c in json.loads(proc.stdout)] == ASCEND_ROWS


def test_matrix_table_shows_rule_status(tmp_path):
    proc = run_cli("matrix", home=tmp_path, extra_env={"COLUMNS": "200"})
    assert proc.returncode == 0 and "tiny-llama x cpu" in proc.stdout and "ok" in proc.stdout


def test_base_mirror_is_applied_in_the_plan(tmp_path):
    proc = run_cli(
        "matrix",
        "--print",
        "--chip",
        "ascend-a3",
        "--model",
        "qwen3-4b",
        home=tmp_path,
        extra_env={"FLAGRELEASE_BASE_MIRROR": "quay.io=mirror.example.com/quay"},
    )
    assert json.loads(proc.stdout)[0]["base_image"].startswith("mirror.example.com/quay/ascend/cann:")


def test_render_writes_a_build_context(tmp_path):
    out = tmp_path / "ctx"
    proc = run_cli("render", "--model", "qwen3-4b", "--chip", "ascend-a3", "--out", str(out), home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    parser = DockerfileParser(path=str(out / "stack/Dockerfile"))
    assert parser.parent_images[0] == "quay.io/ascend/cann:8.2.rc1.alpha002-a3-ubuntu22.04-py3.11"
    model = DockerfileParser(path=str(out / "model/Dockerfile")).structure
    assert [i["value"] for i in model if i["instruction"] == "FROM"] == ["${STACK_IMAGE}"]
    [entry] = yaml.safe_load((out / "model/serve/conf/serve/qwen3-4b.yaml").read_text())
    assert entry["engine"] == "vllm" and entry["engine_args"]["port"] == 9010
    assert entry["engine_args_specific"]["vllm"]["block_size"] == 128


def test_render_refuses_a_vendor_family(tmp_path):
    proc = run_cli("render", "--model", "qwen3-4b", "--chip", "ascend", "--out", str(tmp_path / "x"), home=tmp_path)
    assert proc.returncode == 2 and "render takes one chip id" in proc.stderr


def test_build_dry_run_prints_the_plan_and_builds_nothing(tmp_path):
    proc = run_cli("build", "--model", "qwen3-4b", "--chip", "ascend", "--dry-run", home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [c["chip"] for c in json.loads(proc.stdout)] == ASCEND_ROWS
    assert not (tmp_path / "results").exists()


def test_incompatible_pins_stop_the_build_before_prefect(tmp_path):
    bad = tmp_path / "matrix.yaml"
    bad.write_text((ROOT / "matrix.yaml").read_text().replace("torch_npu: 2.6.0rc1", "torch_npu: 2.5.1"))
    proc = run_cli("build", "--model", "qwen3-4b", "--chip", "ascend-a3", "--matrix", str(bad), home=tmp_path)
    assert proc.returncode == 2
    assert "torch-npu-matches-torch" in proc.stderr and "stack.torch_npu=2.5.1" in proc.stderr


def test_help_is_fast_and_has_examples(tmp_path):
    proc = run_cli("build", "--help", home=tmp_path, extra_env={"COLUMNS": "200"})
    assert proc.returncode == 0 and "flagrelease build --model tiny-llama --chip cpu" in proc.stdout


def test_release_dry_run_plans_the_whole_matrix(tmp_path):
    proc = run_cli("release", "--dry-run", home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 25


def test_matrix_shows_a_cell_that_breaks_a_rule_and_exits_2(tmp_path):
    """`build` refuses such a cell; `matrix` shows it, says why, and exits 2 as well."""
    bad = tmp_path / "matrix.yaml"
    bad.write_text((ROOT / "matrix.yaml").read_text().replace("torch_npu: 2.6.0rc1", "torch_npu: 2.5.1"))
    table = run_cli("matrix", "--matrix", str(bad), home=tmp_path, extra_env={"COLUMNS": "250"})
    assert table.returncode == 2, table.stderr
    assert "qwen3-4b x ascend-a3" in table.stdout and "torch-npu-matches-torch" in table.stdout
    assert "compatibility rule violation(s)" in table.stderr and "Traceback" not in table.stderr
    plan = run_cli("matrix", "--print", "--matrix", str(bad), "--chip", "ascend-a3", home=tmp_path)
    assert plan.returncode == 2
    assert {v["rule"] for c in json.loads(plan.stdout) for v in c["violations"]} == {"torch-npu-matches-torch"}


def test_error_text_keeps_its_square_brackets(tmp_path):
    """Errors are printed without Rich markup: key paths such as matrix.include[0] stay whole."""
    bad = tmp_path / "matrix.yaml"
    bad.write_text(
        (ROOT / "matrix.yaml").read_text().replace("- {chip: cpu, model: tiny-llama}", "- {chip: cpu, modle: x}")
    )
    proc = run_cli("matrix", "--matrix", str(bad), home=tmp_path)
    assert proc.returncode == 2
    assert "unknown key 'modle' in matrix.include[0]" in proc.stderr and "did you mean 'model'?" in proc.stderr


def test_a_matrix_with_two_cells_of_one_name_exits_2_before_anything_runs(tmp_path):
    data = yaml.safe_load((ROOT / "matrix.yaml").read_text())
    del data["chips"]["ascend-a2"]["spelling"]
    (tmp_path / "matrix.yaml").write_text(yaml.safe_dump(data))
    proc = run_cli(
        "build", "--matrix", str(tmp_path / "matrix.yaml"), "--model", "tiny-llama", "--chip", "cpu", home=tmp_path
    )
    assert proc.returncode == 2
    assert "qwen3-4b x ascend-a2 and qwen3-4b x ascend-a3 would get the same image name" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_unknown_progress_mode_stops_the_build_before_prefect(tmp_path):
    proc = run_cli("build", "--model", "tiny-llama", "--chip", "cpu", "--progress", "fancy", home=tmp_path)
    assert proc.returncode == 2
    assert "--progress 'fancy' is not one of auto, tty, plain" in proc.stderr
    assert "Traceback" not in proc.stderr and "prefect" not in proc.stderr.lower()
    assert not (tmp_path / "results").exists()


def test_an_empty_catalog_is_a_page_that_says_so(tmp_path):
    proc = run_cli("catalog", "--out", str(tmp_path / "site"), home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "catalog of 0 release(s)" in proc.stdout
    assert 'id="empty"' in (tmp_path / "site/index.html").read_text()
    assert (tmp_path / "site/catalog.md").read_text().count("\n") == 2


def test_a_usage_error_with_json_is_json_too(tmp_path):
    """An unknown option or a value of the wrong type is a usage error (exit 2); with --json
    a script reads it from stdout like any other error, with Typer's message on stderr."""
    for args, problem in (
        (("build", "--json", "--modle", "x"), "No such option: --modle (Possible options: --model)"),
        (("build", "--json", "--jobs", "abc"), "Invalid value for '--jobs'"),
    ):
        proc = run_cli(*args, home=tmp_path)
        assert proc.returncode == 2, proc.stderr
        error = json.loads(proc.stdout)
        assert error["status"] == "error" and error["exit_code"] == 2 and error["problem"].startswith(problem)
        assert error["fix"] == "see 'flagrelease build --help'"
        assert problem.split(" (")[0] in proc.stderr and "Traceback" not in proc.stderr
    plain = run_cli("build", "--modle", "x", home=tmp_path)
    assert plain.returncode == 2 and plain.stdout == "" and "No such option: --modle" in plain.stderr
