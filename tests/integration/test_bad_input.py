"""Bad input and expected failures, through the real command line: one clear message, the
right exit code, no traceback (ours or Prefect's), nothing built or pushed, no container left.
tests/unit/test_bad_inputs.py runs the full table in-process; this runs a subset as a user does."""

from __future__ import annotations

import json

import pytest

from flagrelease.adapters import docker_engine
from tests.conftest import ROOT, free_port, parse_json_stdout, run_cli


def _run_containers(client, home) -> list:
    """Containers of the runs recorded under `home`: other runs may share this dockerd."""
    run_ids = [json.loads(p.read_text())["run_id"] for p in home.glob("results/*/*/release.json")]
    assert run_ids, f"no run recorded under {home}"
    return [
        c
        for run_id in run_ids
        for c in client.containers.list(all=True, filters={"label": f"{docker_engine.OWNER_LABEL}={run_id}"})
    ]


@pytest.mark.parametrize(
    ("args", "message", "fix"),
    [
        (["--model", "tiny-llama", "--chip", "tpu-v9"], "unknown chip 'tpu-v9'", "use a chip id (ascend-a2,"),
        (["--model", "llama-9000", "--chip", "cpu"], "unknown model 'llama-9000'", "use one of:"),
    ],
)
def test_unknown_chip_or_model(args, message, fix, tmp_path):
    proc = run_cli("build", *args, home=tmp_path / "home")
    assert proc.returncode == 2
    assert message in proc.stderr and fix in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "home").exists()  # no run started: nothing built, nothing recorded


def test_malformed_matrix_names_file_and_line(tmp_path, docker_client):
    bad = tmp_path / "matrix.yaml"
    bad.write_text((ROOT / "matrix.yaml").read_text().replace("  cpu:\n    vendor: cpu", "  cpu:\n   vendor: [cpu"))
    proc = run_cli("build", "--model", "tiny-llama", "--chip", "cpu", "--matrix", str(bad), home=tmp_path)
    assert proc.returncode == 2
    assert "not valid YAML" in proc.stderr and f"{bad}:" in proc.stderr


def test_invalid_pin_names_the_key(tmp_path, docker_client):
    bad = tmp_path / "matrix.yaml"
    bad.write_text((ROOT / "matrix.yaml").read_text().replace('python: "3.13"', 'python: "3.13 && curl evil"'))
    proc = run_cli("build", "--model", "tiny-llama", "--chip", "cpu", "--matrix", str(bad), "--json", home=tmp_path)
    assert proc.returncode == 2
    assert "chips.cpu.stack.python" in proc.stderr
    assert parse_json_stdout(proc)["status"] == "error"


def test_unreachable_registry_builds_and_pushes_nothing(tmp_path, docker_client):
    dead = f"127.0.0.1:{free_port()}"
    proc = run_cli("build", "--model", "tiny-llama", "--chip", "cpu", "--registry", dead, home=tmp_path)
    assert proc.returncode == 3
    assert f"registry {dead} cannot be reached" in proc.stderr
    assert "fix:" in proc.stderr
    assert "Traceback" not in proc.stderr
    # The run stopped at the registry check, before the build (other runs may build on this dockerd).
    [record] = [json.loads(p.read_text()) for p in tmp_path.glob("results/*/*/release.json")]
    assert record["status"] == "failed" and record["image"] is None and "build" not in record["timings"]
    assert _run_containers(docker_client, tmp_path) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["matrix", "--matrix", "/bin/true"], "is not UTF-8 text"),
        (["matrix", "--matrix", str(ROOT / "dockerfiles")], "is a directory, not a file"),
        (["gate", str(ROOT / "tests/data/card/tiny-llama--cpu"), "--rule", "clasic"], "did you mean 'classic'?"),
        (["gate", str(ROOT / "tests/data/card/tiny-llama--cpu"), "--max-drop", "5"], "looks like a percentage"),
        (["render", "-m", "tiny-llama", "-c", "cpu", "--out", str(ROOT / "matrix.yaml")], "is a file, not a directory"),
        (["build", "-m", "tiny-llama", "-c", "cpu", "--registry", "harbor example"], "--registry"),
    ],
)
def test_bad_input_through_the_console_script(args, message, tmp_path):
    before = (ROOT / "matrix.yaml").read_bytes()
    proc = run_cli(*args, home=tmp_path / "home", timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (ROOT / "matrix.yaml").read_bytes() == before and not (tmp_path / "home").exists()


def test_a_billion_laughs_matrix_is_refused_at_once(tmp_path):
    """Nine levels of nine aliases each: 387 million nodes once expanded, refused before any of it is built."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    (tmp_path / "matrix.yaml").write_text("\n".join(lines) + "\nchips: {cpu: {vendor: *l8}}\n")
    proc = run_cli("matrix", "--matrix", str(tmp_path / "matrix.yaml"), "--json", home=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["problem"].startswith("matrix file expands to more than 500000 YAML nodes")
    assert len(proc.stderr) < 1000 and "Traceback" not in proc.stderr


def test_a_failing_flow_prints_our_error_and_no_prefect_traceback(tmp_path, docker_client):
    """A real flow run on the embedded Prefect server whose failure is expected (this host cannot
    build the Ascend cell): our error block, exit 3, and none of Prefect's tracebacks."""
    proc = run_cli("build", "--model", "qwen3-4b", "--chip", "ascend-a3", "--no-push", home=tmp_path, timeout=300)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "Beginning flow run" in proc.stderr  # Prefect ran the flow and logged to this console
    assert (
        "error: qwen3-4b--ascend-a3: cannot build qwen3-4b x ascend-a3 on this host; nothing was built" in proc.stderr
    )
    assert "Traceback" not in proc.stderr
    assert "Finished in state Failed" not in proc.stderr
    assert proc.stderr.count("cannot build qwen3-4b x ascend-a3 on this host") == 1
