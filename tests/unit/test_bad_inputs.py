"""Bad input, table-driven, through the real command line in-process (typer's CliRunner):
every case exits 2 with one clear message (what, where, how to fix), no traceback, and
nothing built or written. docs/reliability.md lists the same inputs."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from flagrelease.cli import app
from tests.conftest import ROOT

CARD_RUN = ROOT / "tests/data/card/tiny-llama--cpu"
SECRET = "s3cr3t-do-not-echo"


def project() -> dict:
    return yaml.safe_load((ROOT / "matrix.yaml").read_text())


def matrix_with(tmp: Path, change: Callable[[dict], object]) -> Path:
    """The project's matrix with one change, beside links to its templates and data."""
    data = project()
    change(data)
    return write_matrix(tmp, yaml.safe_dump(data))


def write_matrix(tmp: Path, text: str | bytes) -> Path:
    for name in ("dockerfiles", "datasets", "baselines"):
        if not (tmp / name).exists():
            (tmp / name).symlink_to(ROOT / name)
    path = tmp / "matrix.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def run_dir(tmp: Path, change: Callable[[dict], object] | None = None, per_question: str | None = None) -> Path:
    """A stored run of tiny-llama x cpu (release.json and its per-question files), changed."""
    target = tmp / "run"
    target.mkdir()
    record = json.loads((CARD_RUN / "release.json").read_text())
    if change is not None:
        change(record)
    (target / "release.json").write_text(json.dumps(record))
    for side in ("native", "flaggems"):
        line = json.dumps({"id": "q1", "expected": "A", "answer": "A", "correct": True, "attempts": 1})
        (target / f"accuracy-{side}-arith-mc.jsonl").write_text(per_question or (line + "\n"))
        (target / f"perf-{side}.json").write_text("[]")  # no perf windows: the gate judges accuracy
    return target


def laughs(levels: int = 8) -> str:
    """A "billion laughs" document: each level refers nine times to the one before."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + f"\nchips: {{cpu: {{vendor: *l{levels - 1}}}}}\n"


@dataclass
class Case:
    name: str
    # Returns the command line (after `flagrelease`); may write files under the temp dir.
    args: Callable[[Path], list[str]]
    fragments: list[str]
    env: dict[str, str] = field(default_factory=dict)
    code: int = 2


def m(change: Callable[[dict], object], *rest: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["matrix", "-f", str(matrix_with(tmp, change)), *rest]


def raw(text: str | bytes) -> Callable[[Path], list[str]]:
    return lambda tmp: ["matrix", "-f", str(write_matrix(tmp, text))]


def setitem(path: str, value) -> Callable[[dict], None]:
    """`chips.cpu.stack.flagems` = value (list indexes as numbers)."""

    def change(data: dict) -> None:
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return change


def gate(change=None, per_question=None, *rest: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["gate", str(run_dir(tmp, change, per_question)), *rest]


def render_into(make_target: Callable[[Path], Path], *rest: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["render", "-m", "tiny-llama", "-c", "cpu", "--out", str(make_target(tmp)), *rest]


def a_file(tmp: Path) -> Path:
    (tmp / "afile").write_text("mine\n")
    return tmp / "afile"


def full_dir(tmp: Path) -> Path:
    (tmp / "work").mkdir()
    (tmp / "work" / "notes.txt").write_text("mine\n")
    return tmp / "work"


def drop(key: str) -> Callable[[dict], None]:
    return lambda record: record.pop(key)


def record_dir(tmp: Path) -> list[str]:
    (tmp / "run" / "release.json").mkdir(parents=True)
    return ["card", str(tmp / "run")]


def not_json(tmp: Path) -> list[str]:
    target = run_dir(tmp)
    (target / "release.json").write_text('{"run_id": "x", ')
    return ["gate", str(target)]


CASES = [
    # --- the matrix file itself -------------------------------------------------------------------
    Case("matrix not text", raw(bytes(range(128, 256)) * 4), ["is not UTF-8 text", "byte 0"]),
    Case("matrix is a directory", lambda tmp: ["matrix", "-f", str(tmp)], ["is a directory, not a file"]),
    Case("matrix missing", lambda tmp: ["matrix", "-f", str(tmp / "nope.yaml")], ["does not exist", "--matrix"]),
    Case("matrix empty", raw(""), ["matrix file", "is empty"]),
    Case("matrix is a list", raw("- chips\n- models\n"), ["must be a mapping", "not list"]),
    Case("YAML syntax", raw("chips:\n  cpu: [unclosed\nmodels: {}\n"), ["not valid YAML", "matrix.yaml:"]),
    Case("billion laughs", raw(laughs()), ["expands to more than 500000 YAML nodes", "refused before validation"]),
    Case("recursive alias", raw("chips: &a {cpu: *a}\n"), ["refers to itself"]),
    Case(
        "too many aliases", raw("a: &a 1\nb: [" + ", ".join(["*a"] * 10_001) + "]\n"), ["more than 10000 YAML aliases"]
    ),
    Case("too deep", raw("a: " + "[" * 70 + "]" * 70 + "\n"), ["nests deeper than 64 levels"]),
    Case("too large", raw("# " + "x" * (4 * 1024 * 1024) + "\n"), ["larger than 4 MiB"]),
    # --- unknown keys, everywhere, with a near miss ------------------------------------------------
    Case(
        "top-level typo", m(lambda d: d.update(chipz=d.pop("chips"))), ["unknown key 'chipz'", "did you mean 'chips'"]
    ),
    Case("pin typo", m(setitem("chips.cpu.stack.flagems", "2.2")), ["chips.cpu.stack.flagems", "'flaggems'"]),
    Case(
        "include key typo",
        m(setitem("matrix.include.0.modle", "x")),
        ["unknown key 'modle' in matrix.include[0]", "did you mean 'model'", "allowed keys here: chip, model"],
    ),
    Case(
        "exclude key typo",
        m(setitem("matrix.exclude", [{"chp": "cpu"}])),
        ["unknown key 'chp' in matrix.exclude[0]", "did you mean 'chip'"],
    ),
    Case(
        "override key typo",
        m(setitem("matrix.include.0.overrides", {"chip": {"stack": {"pyton": "3.12"}}})),
        ["matrix.include[0].overrides.chip.stack", "unknown key 'pyton'", "did you mean 'python'"],
    ),
    Case("rule key typo", m(setitem("compatibility.0.requier", {})), ["unknown key 'requier'", "'require'"]),
    Case(
        "rule fact typo",
        m(setitem("compatibility.0.when", {"stack.torch_np": "!none"})),
        ["compatibility[0].when.stack.torch_np: unknown fact", "did you mean 'stack.torch_npu'"],
    ),
    # --- wrong types inside extends / include / exclude --------------------------------------------
    Case(
        "include entry a string",
        m(setitem("matrix.include.0", "cpu")),
        ["matrix.include[0] should be a mapping", "(got 'cpu')"],
    ),
    Case("exclude chip a list", m(setitem("matrix.exclude", [{"chip": ["a", "b"]}])), ["matrix.exclude[0].chip"]),
    Case("empty exclude entry", m(setitem("matrix.exclude", [{}])), ["names a chip, a model or both"]),
    Case("include of unknown chip", m(setitem("matrix.include.0.chip", "cpuu")), ["'cpuu'", "did you mean 'cpu'"]),
    Case("axis lists a chip twice", m(lambda d: d["matrix"]["chip"].append("ascend-a2")), ["lists 'ascend-a2' twice"]),
    Case("extends a list", m(setitem("chips.cpu.extends", ["_a", "_b"])), ["chips.cpu.extends", "not list"]),
    Case("extends a typo", m(setitem("chips.ascend-a2.extends", "_ascnd")), ["did you mean '_ascend'"]),
    Case("extends itself", m(setitem("chips.cpu.extends", "cpu")), ["`extends` cycle: cpu -> cpu"]),
    Case("chips a list", m(setitem("chips", ["cpu"])), ["`chips` must be a mapping"]),
    Case("chip a string", m(setitem("chips.cpu", "cpu")), ["chips.cpu must be a mapping"]),
    # --- values that would reach a shell, a Dockerfile or a serve config ---------------------------
    Case(
        "JSON engine arg with a command",
        m(setitem("models.tiny-llama.serve.engine_args.compilation_config", '{"level": "$(id)"}')),
        ["models.tiny-llama.serve.engine_args", "JSON string '$(id)'"],
    ),
    Case(
        "JSON engine arg with a shell key",
        m(setitem("models.tiny-llama.serve.engine_args.compilation_config", '{"a;id": 1}')),
        ["JSON key 'a;id'"],
    ),
    Case(
        "engine arg with a semicolon",
        m(setitem("models.tiny-llama.serve.engine_args.max_num_seqs", "4;id")),
        ["engine argument max_num_seqs holds characters that are not allowed"],
    ),
    Case(
        "gate margin as a percentage",
        m(setitem("models.tiny-llama.bench.gate", {"max_drop": 5})),
        ["models.tiny-llama.bench.gate.max_drop", "looks like a percentage"],
    ),
    # --- command-line options ----------------------------------------------------------------------
    Case("chip typo", lambda tmp: ["build", "-m", "tiny-llama", "-c", "cpuu", "--dry-run"], ["did you mean 'cpu'"]),
    Case("model typo", lambda tmp: ["build", "-m", "tiny-lama", "-c", "cpu"], ["did you mean 'tiny-llama'"]),
    Case(
        "markup in a name",
        lambda tmp: ["build", "-m", "tiny-llama", "-c", "[bold]cpu[/bold]", "--dry-run"],
        ["unknown chip '[bold]cpu[/bold]'"],
    ),
    Case(
        "negative smoke timeout",
        lambda tmp: ["build", "-m", "tiny-llama", "-c", "cpu", "--smoke-timeout", "-1"],
        ["--smoke-timeout -1 must be above 0"],
    ),
    Case(
        "registry with a space",
        lambda tmp: ["build", "-m", "tiny-llama", "-c", "cpu", "--registry", "a b"],
        ["--registry / FLAGRELEASE_REGISTRY is invalid", "HOST:PORT"],
    ),
    Case("unknown --rule", gate(None, None, "--rule", "clasic"), ["--rule 'clasic'", "did you mean 'classic'"]),
    Case("percent --max-drop", gate(None, None, "--max-drop", "5"), ["looks like a percentage, which would be 0.05"]),
    Case("negative --max-drop", gate(None, None, "--max-drop", "-0.1"), ["--max-drop -0.1", "fraction"]),
    Case("render --out a file", render_into(a_file), ["is a file, not a directory"]),
    Case("render --out somebody's dir", render_into(full_dir), ["is not a previous render", "--force"]),
    Case("render --out unwritable", render_into(lambda tmp: Path("/proc/flagrelease-ctx")), ["cannot write"]),
    Case("render --out the project", render_into(lambda tmp: ROOT, "--force"), ["holds the working directory"]),
    Case(
        "bench engine typo",
        lambda tmp: [
            "bench",
            "accuracy",
            "--url",
            "http://127.0.0.1:9",
            "-m",
            "x",
            "--dataset",
            "d",
            "--engine",
            "vlm",
        ],
        ["--engine 'vlm'", "did you mean 'vllm'"],
    ),
    Case(
        "bench off loopback",
        lambda tmp: ["bench", "perf", "--url", "http://10.1.2.3:9010", "-m", "x"],
        ["127.0.0.1 only", "--url"],
    ),
    Case(
        "bench levels not numbers",
        lambda tmp: ["bench", "perf", "--url", "http://127.0.0.1:9", "-m", "x", "--concurrency", "1,x"],
        ["--concurrency '1,x' is not a comma-separated list"],
    ),
    Case("rebuild source typo", lambda tmp: ["releases", "rebuild", "--source", "locl"], ["did you mean 'local'"]),
    # --- record files given to gate / card ----------------------------------------------------------
    Case("no record", lambda tmp: ["gate", str(tmp)], ["no release record at"]),
    Case("record not JSON", not_json, ["invalid release record: not valid JSON: EOF while parsing"]),
    Case("record without started", gate(drop("started")), ["invalid release record: started is required"]),
    Case("record without bench", gate(lambda r: r.update(bench={})), ["holds no benchmark results"]),
    Case(
        "record with one-sided benchmark",
        gate(lambda r: r["bench"]["native"].update(accuracy={})),
        ["measured on the flaggems side only", "bench.native.accuracy.arith-mc"],
    ),
    Case(
        "malformed per-question file",
        gate(None, '{"id": 1}\n'),
        ["invalid per-question result: id: Input should be a valid string", "accuracy-native-arith-mc.jsonl:1: id"],
    ),
    Case("card of a directory without a record", lambda tmp: ["card", str(tmp)], ["no release record"]),
    Case("release.json a directory", record_dir, ["release record", "is a directory, not a file"]),
    # --- environment settings ----------------------------------------------------------------------
    Case(
        "setting typo",
        lambda tmp: ["matrix"],
        ["FLAGRELEASE_REGISTY", "did you mean 'FLAGRELEASE_REGISTRY'"],
        env={"FLAGRELEASE_REGISTY": "127.0.0.1:5000"},
    ),
    Case(
        "base mirror with a newline",
        lambda tmp: ["matrix"],
        ["FLAGRELEASE_BASE_MIRROR is invalid"],
        env={"FLAGRELEASE_BASE_MIRROR": "quay.io=m.example.com\nRUN id"},
    ),
    Case(
        "S3 URL with credentials",
        lambda tmp: ["matrix"],
        ["FLAGRELEASE_S3_URL is invalid"],
        env={"FLAGRELEASE_S3_URL": f"s3://key:{SECRET}@bucket/x"},
    ),
    Case(
        "CA bundle missing",
        lambda tmp: ["matrix"],
        ["FLAGRELEASE_CA_BUNDLE is invalid", "is not a file"],
        env={"FLAGRELEASE_CA_BUNDLE": "/nonexistent/ca.pem"},
    ),
    Case(
        "launcher with one side",
        m(setitem("chips.cpu.stack.launcher", {"name": "flagscale", "sides": {"native": {"USE_FLAGGEMS": "0"}}})),
        ["chips.cpu.stack.launcher.sides", "declare the environment of both sides"],
    ),
    Case(
        "launcher without a template",
        lambda tmp: [
            "render",
            "-m",
            "tiny-llama",
            "-c",
            "cpu",
            "-f",
            str(matrix_with(tmp, setitem("chips.cpu.stack.launcher", {"name": "sglang"}))),
            "--out",
            str(tmp / "ctx"),
        ],
        ["launcher 'sglang' has no template", "chips.cpu.stack.launcher.name"],
    ),
    Case(
        "watch index not a URL",
        lambda tmp: ["watch", "--index", "ftp://mirror.example.com/simple/"],
        ["--index", "http(s) URL"],
    ),
    Case(
        "watch index down",
        lambda tmp: ["watch", "--index", "http://127.0.0.1:9/simple/", "--apply"],
        ["the package index http://127.0.0.1:9/simple/ cannot be reached"],
        code=3,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_clear_error(case: Case, tmp_path, monkeypatch):
    home = tmp_path / "home"
    env = {"FLAGRELEASE_HOME": str(home)} | case.env
    for name in [n for n in os.environ if n.startswith("FLAGRELEASE_")]:
        monkeypatch.delenv(name)
    args = case.args(tmp_path)
    before = _snapshot(tmp_path)
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == case.code, (result.exit_code, result.stderr, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception  # no Python exception escaped
    assert "Traceback" not in result.output
    error = result.stderr
    assert error.startswith("error: ") and "\n  where: " in error and "\n  fix:   " in error, error
    for fragment in case.fragments:
        assert fragment in error, f"{fragment!r} not in:\n{error}"
    assert SECRET not in result.output
    assert _snapshot(tmp_path) == before, "a refused command wrote something"
    assert not home.exists() or not any(home.iterdir())


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()
    }


def test_a_json_error_is_json_on_stdout(tmp_path):
    result = CliRunner().invoke(
        app, ["build", "-m", "tiny-llama", "-c", "cpuu", "--json"], env={"FLAGRELEASE_HOME": str(tmp_path)}
    )
    assert result.exit_code == 2
    error = json.loads(result.stdout)
    assert error["status"] == "error" and error["exit_code"] == 2
    assert error["problem"].startswith("unknown chip 'cpuu'") and error["where"].endswith(": chips")
    assert "use a chip id" in error["fix"]


def test_a_hostile_value_is_quoted_as_a_short_excerpt(tmp_path):
    """A 1 MB pin is named, not echoed: the message stays short."""
    data = project()
    data["chips"]["cpu"]["stack"]["torch"] = ["x" * 1000] * 1000
    path = matrix_with(tmp_path, lambda d: d.update(data))
    result = CliRunner().invoke(app, ["matrix", "-f", str(path)], env={"FLAGRELEASE_HOME": str(tmp_path / "h")})
    assert result.exit_code == 2 and "chips.cpu.stack.torch" in result.stderr
    assert len(result.stderr) < 1500, len(result.stderr)


def test_render_replaces_a_previous_render_and_force_replaces_anything(tmp_path):
    target = tmp_path / "ctx"
    env = {"FLAGRELEASE_HOME": str(tmp_path / "h")}
    first = CliRunner().invoke(app, ["render", "-m", "tiny-llama", "-c", "cpu", "--out", str(target)], env=env)
    assert first.exit_code == 0, first.stderr
    (target / "model" / "Dockerfile").write_text("stale\n")
    again = CliRunner().invoke(app, ["render", "-m", "tiny-llama", "-c", "cpu", "--out", str(target)], env=env)
    assert again.exit_code == 0, again.stderr
    assert (target / "model" / "Dockerfile").read_text() != "stale\n"
    shutil.rmtree(target)
    full_dir(tmp_path)
    forced = CliRunner().invoke(
        app, ["render", "-m", "tiny-llama", "-c", "cpu", "--out", str(tmp_path / "work"), "--force"], env=env
    )
    assert forced.exit_code == 0, forced.stderr
    assert not (tmp_path / "work" / "notes.txt").exists() and (tmp_path / "work" / "model" / "Dockerfile").is_file()


def test_the_reliability_table_lists_every_case():
    """docs/reliability.md shows this table: one row per case, in the same order."""
    section = (ROOT / "docs/reliability.md").read_text().split("\n## Bad input\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| ---")]
    assert [row.split(" | ")[0].removeprefix("| ") for row in rows[1:]] == [case.name for case in CASES]
