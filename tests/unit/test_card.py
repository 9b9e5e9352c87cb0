"""Model cards rendered from stored release records: shape, numbers traced back, commands, strictness."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil

import pytest

from flagrelease.baseline import load_baseline
from flagrelease.cell_facts import pins, served_name
from flagrelease.errors import ConfigError
from flagrelease.matrix import load_matrix, select
from flagrelease.record import ReleaseRecord
from flagrelease.steps.card import render_card, write_card
from tests.conftest import ROOT

DATA = ROOT / "tests/data/card"
GOLDEN = ROOT / "tests/golden/card-qwen3-4b--ascend-a3.md"
MATRIX = load_matrix(ROOT / "matrix.yaml")
BASELINE = load_baseline(ROOT / "baselines/qwen3-4b-h100-cuda.yaml")
ASCEND = select(MATRIX, chip="ascend-a3", model="qwen3-4b")[0]
CPU = select(MATRIX, chip="cpu", model="tiny-llama")[0]
# (cell, the baseline its model is gated against)
CASES = {"ascend": (ASCEND, BASELINE), "cpu": (CPU, None)}


def record(cell) -> dict:
    """release.json as stored, as plain data."""
    return json.loads((DATA / cell.slug / "release.json").read_text())


def typed(rec: dict) -> ReleaseRecord:
    return ReleaseRecord.parse(json.dumps(rec), "release.json")


def card(case: str) -> tuple[str, dict]:
    cell, baseline = CASES[case]
    rec = record(cell)
    return render_card(typed(rec), cell, baseline), rec


def table(text: str, first_column: str) -> list[dict[str, str]]:
    """The Markdown table whose header starts with `first_column`, as rows keyed by header."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_column} |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True)))
    return rows


def docker_run(text: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("docker run "))
    end = next(i for i in range(start, len(lines)) if not lines[i].endswith("\\"))
    return shlex.split(" ".join(line.rstrip("\\") for line in lines[start : end + 1]))


def options(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def level_key(entry: dict) -> tuple[int, int, int]:
    return entry["max_concurrency"], entry["input_len"], entry["output_len"]


def test_card_matches_golden():
    """Regenerate with FLAGRELEASE_UPDATE_GOLDEN=1 after an intended template change, and review the diff."""
    text, _ = card("ascend")
    if os.environ.get("FLAGRELEASE_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_card_has_the_reference_cards_sections():
    text, _ = card("ascend")
    # Fences hold shell comments that look like headings.
    prose = [part for i, part in enumerate(text.split("```")) if i % 2 == 0]
    headings = [line for part in prose for line in part.splitlines() if line.startswith("# ")]
    assert headings == [
        "# Introduction",
        "# Technical Overview",
        "# Evaluation Results",
        "# User Guide",
        "# Service Invocation",
        "# Frequently Asked Questions",
        "# Contributing",
        "# License",
    ]
    assert ASCEND.model.license in text


@pytest.mark.parametrize("case", CASES)
def test_evaluation_table_is_the_records_numbers(case):
    text, rec = card(case)
    _, baseline = CASES[case]
    rows = table(text, "benchmark")
    verdicts = rec["gate"]["accuracy"]
    assert [r["benchmark"] for r in rows] == [v["benchmark"] for v in verdicts]
    for row, verdict in zip(rows, verdicts, strict=True):
        name = verdict["benchmark"]
        release = next(v for k, v in row.items() if k.endswith("(this release)"))
        expected_ref = (
            baseline.benchmarks[name].score if baseline else rec["bench"]["native"]["accuracy"][name]["score"]
        )
        assert float(row["reference stack"]) == pytest.approx(expected_ref, abs=5e-4)
        assert float(release) == pytest.approx(rec["bench"]["flaggems"]["accuracy"][name]["score"], abs=5e-4)
        diff, se = row["difference ± SE"].split(" ± ")
        assert float(diff) == pytest.approx(verdict["diff"], abs=5e-4)
        assert float(se) == pytest.approx(verdict["se"], abs=5e-4)
        assert row["gate verdict"] == verdict["verdict"]
    against = "baseline Qwen3-4B-H100-CUDA" if baseline else "native side of this run"
    assert set(rec["compared_against"].values()) == {against}
    assert f"{', '.join(rec['compared_against'])}: {against}." in text


@pytest.mark.parametrize("case", CASES)
def test_perf_table_is_the_records_numbers(case):
    text, rec = card(case)
    native = {level_key(r): r for r in rec["bench"]["native"]["perf"]}
    flaggems = {level_key(r): r for r in rec["bench"]["flaggems"]["perf"]}
    ratios = {level_key(g["level"]): g for g in rec["gate"]["perf"]}
    rows = table(text, "concurrency")
    keys = [(int(r["concurrency"]), int(r["input len"]), int(r["output len"])) for r in rows]
    assert keys == [level_key(r) for r in rec["bench"]["flaggems"]["perf"]]
    for key, row in zip(keys, rows, strict=True):
        for metric, places in (("output_throughput", 1), ("mean_ttft_ms", 1), ("mean_tpot_ms", 2)):
            for side, levels in (("native", native), ("flaggems", flaggems)):
                assert float(row[f"{metric} {side}"]) == pytest.approx(levels[key][metric], abs=0.51 * 10**-places)
        assert float(row["flaggems / native"]) == pytest.approx(ratios[key]["level"]["output_throughput"], abs=5e-4)
        assert row["gate"] == ratios[key]["verdict"]
    assert f"]({rec['files']['plot']})" in text


@pytest.mark.parametrize("case", CASES)
def test_pull_line_has_the_digest(case):
    text, rec = card(case)
    image = f"{rec['publish']['registry']}/{rec['publish']['repository']}"
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", rec["publish"]["digest"])
    assert f"\ndocker pull {image}@{rec['publish']['digest']}\n" in text
    assert f"docker pull {image}:{rec['publish']['tags'][0]}" in text
    assert docker_run(text)[-1] == f"{image}@{rec['publish']['digest']}"


@pytest.mark.parametrize("case", CASES)
def test_docker_run_has_the_chip_runtime(case):
    text, rec = card(case)
    cell, _ = CASES[case]
    runtime, port = cell.chip.runtime, cell.model.serve.engine_args["port"]
    args = docker_run(text)
    assert options(args, "--device") == runtime.devices
    volumes = options(args, "-v")
    assert volumes == [f"{m.source}:{m.target}:ro" for m in runtime.mounts] + [
        f"{cell.weights_mount}:{cell.weights_mount}:ro"
    ]
    env = dict(e.split("=", 1) for e in options(args, "-e"))
    assert env.items() >= runtime.env.items()
    if runtime.visible_devices_env:
        assert env[runtime.visible_devices_env] == "0"
    assert env["USE_FLAGGEMS"] == ("true" if rec["flaggems_installed"] else "false")
    assert options(args, "-p") == [f"{port}:{port}"]
    assert (f"--shm-size={runtime.shm_size}" in args) == (runtime.shm_size is not None)
    assert "--gpus" not in args


def test_gpus_runtime_asks_for_all_gpus():
    chip = ASCEND.chip.model_copy(update={"runtime": ASCEND.chip.runtime.model_copy(update={"gpus": True})})
    text = render_card(typed(record(ASCEND)), ASCEND.model_copy(update={"chip": chip}), BASELINE)
    assert options(docker_run(text), "--gpus") == ["all"]


@pytest.mark.parametrize("case", CASES)
def test_served_model_name_in_the_api_example(case):
    text, _ = card(case)
    cell, _ = CASES[case]
    name = served_name(cell)
    api = text.split("## API-based Invocation Script", 1)[1].split("# Frequently Asked Questions", 1)[0]
    assert f'model="{name}"' in api and f'"model": "{name}"' in api
    assert f"served_model_name: {name}\n" in text  # the serve list the image runs


def _drop(rec: dict, path: str) -> None:
    *parents, last = path.split(".")
    for key in parents:
        rec = rec[int(key)] if isinstance(rec, list) else rec[key]
    del rec[last]


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("publish.digest", "publish.digest"),
        ("bench.flaggems.perf.3.mean_ttft_ms", "bench.flaggems.perf[3].mean_ttft_ms"),
        ("gate.accuracy.1.se", "gate.accuracy[1].se"),
    ],
)
def test_a_record_missing_a_field_is_refused_with_its_key(path, key):
    """A record is typed: a field it lacks stops it being read at all, naming the key."""
    rec = record(ASCEND)
    _drop(rec, path)
    with pytest.raises(ConfigError, match=f"invalid release record: {re.escape(key)} is required") as err:
        typed(rec)
    assert err.value.where.endswith(f": {key}")


def test_a_record_missing_a_file_the_card_names_is_a_clear_error():
    """StrictUndefined stops the card; the error names the field and the template line reading it."""
    rec = record(ASCEND)
    _drop(rec, "files.plot")
    field = "plot"
    with pytest.raises(ConfigError) as err:
        render_card(typed(rec), ASCEND, BASELINE)
    message = err.value.render()
    assert f"lacks a field the card needs: 'dict object' has no attribute '{field}'" in message
    assert re.search(rf"model_card\.md\.j2:\d+: .*\b{field}\b", message), message


def test_an_unpublished_run_gets_no_card():
    rec = record(ASCEND) | {"status": "gated", "publish": None}
    with pytest.raises(ConfigError, match="only a released run gets a card"):
        render_card(typed(rec), ASCEND, BASELINE)


def old_record(cell) -> dict:
    """release.json as written before records kept what the gate compared against."""
    rec = record(cell)
    del rec["reference"]
    return rec


def test_a_record_from_before_reference_was_recorded_gives_the_same_card_with_its_baseline():
    assert render_card(typed(old_record(ASCEND)), ASCEND, BASELINE) == GOLDEN.read_text()


def test_a_baseline_the_gate_did_not_use_is_refused():
    """The reference column must show what the gate compared against, not today's baseline."""
    edited = BASELINE.model_copy(deep=True)
    edited.benchmarks["gpqa"].score = 0.43
    with pytest.raises(ConfigError, match="gpqa: the gate of run .* compared against baseline Qwen3-4B-H100-CUDA"):
        render_card(typed(old_record(ASCEND)), ASCEND, edited)
    # A record that holds its reference needs no baseline file: editing that file changes nothing.
    assert render_card(typed(record(ASCEND)), ASCEND, edited) == GOLDEN.read_text()


def test_a_recorded_reference_that_does_not_give_the_gates_difference_is_refused():
    rec = record(ASCEND)
    rec["reference"]["mmlu"]["score"] = 0.6
    with pytest.raises(ConfigError, match="mmlu: .* the card would show baseline Qwen3-4B-H100-CUDA, 0.6000"):
        render_card(typed(rec), ASCEND, None)


def test_a_released_reference_is_traced_to_its_run_image_and_raw_results():
    rec = record(ASCEND)
    image = "127.0.0.1:5000/flagrelease/flagrelease-nvidia-release-model_qwen3-4b@sha256:" + "ab" * 32
    for name, entry in rec["reference"].items():
        entry |= {
            "against": "released qwen3-4b x nvidia-h100 run 20260114T230000Z-0f0f0f (native side)",
            "origin": "released",
            "raw": f"s3://flagos-releases/qwen3-4b--nvidia-h100/20260114T230000Z-0f0f0f/accuracy-native-{name}.jsonl",
            "sha256": hashlib.sha256(name.encode()).hexdigest(),
            "run_id": "20260114T230000Z-0f0f0f",
            "image": image,
            "source": "",
        }
    rec["compared_against"] = {name: entry["against"] for name, entry in rec["reference"].items()}
    text = render_card(typed(rec), ASCEND, None)
    assert "published numbers" not in text
    assert (
        "  - gpqa, mmlu: the release record of released qwen3-4b x nvidia-h100 run 20260114T230000Z-0f0f0f "
        f"(native side), image `{image}`; raw results "
        "`s3://flagos-releases/qwen3-4b--nvidia-h100/20260114T230000Z-0f0f0f/accuracy-native-gpqa.jsonl` "
        f"(sha256 `{hashlib.sha256(b'gpqa').hexdigest()}`), "
    ) in text
    assert "run `20260114T230000Z-0f0f0f`" in text.split("**Provenance.**")[1]
    rows = table(text, "benchmark")
    assert [float(r["reference stack"]) for r in rows] == [0.41, 0.669]


def test_a_record_of_another_cell_is_refused():
    a2 = select(MATRIX, chip="ascend-a2", model="qwen3-4b")[0]
    with pytest.raises(ConfigError, match="pins differ"):
        render_card(typed(record(ASCEND)), a2, BASELINE)


def test_no_secret_from_the_environment_leaks(monkeypatch):
    planted = {
        "FLAGRELEASE_REGISTRY_USERNAME": "release-bot",
        "FLAGRELEASE_REGISTRY_PASSWORD": "hunter2-Zq8xP4vLm",
        "FLAGRELEASE_PIP_INDEX_URL": "https://ci:tok3n-9fK2@pypi.internal.example/simple",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "HF_TOKEN": "hf_aBcDeFgHiJkLmNoPqRsTuVwXyZ012345",
    }
    for name, value in planted.items():
        monkeypatch.setenv(name, value)
    secret_names = re.compile(r"PASS|SECRET|TOKEN|KEY|CREDENTIAL|AUTH|INDEX_URL", re.IGNORECASE)
    secrets = {v for k, v in os.environ.items() if secret_names.search(k) and len(v) >= 8}
    assert set(planted.values()) - {"release-bot"} <= secrets
    for case in CASES:
        text, _ = card(case)
        assert not [s for s in secrets if s in text]


def test_cpu_card_compares_against_the_native_side():
    text, rec = card("cpu")
    [row] = table(text, "benchmark")
    native = rec["bench"]["native"]["accuracy"]["arith-mc"]["score"]
    assert float(row["reference stack"]) == pytest.approx(native, abs=5e-4)
    assert "arith-mc: native side of this run." in text
    assert "Baseline scores" not in text
    assert not rec["flaggems_installed"]
    assert text.count("This stack has no FlagGems") == 2  # next to accuracy and to perf
    assert "flagrelease weights --model tiny-llama --out /data/weights/tiny-llama" in text


def test_write_card_writes_beside_the_record(tmp_path):
    shutil.copy(DATA / ASCEND.slug / "release.json", tmp_path / "release.json")
    path = write_card(tmp_path, ASCEND, BASELINE)
    assert path == tmp_path / "card.md"
    assert path.read_text() == GOLDEN.read_text()
    with pytest.raises(ConfigError, match="no release record"):
        write_card(tmp_path / "absent", ASCEND, BASELINE)


def test_the_card_lists_the_operators_flaggems_recorded_on_each_side():
    text, rec = card("ascend")
    recorded = rec["bench"]["flaggems"]["flaggems"]
    [line] = [line for line in text.splitlines() if line.startswith("- FlagGems operators recorded")]
    listed, native = line.split(" in its container): ", 1)[1].split("; on the `native` side: ")
    assert re.findall(r"`([^`]+)`", listed) == recorded["operators"]
    assert f"({len(recorded['operators'])}, from `{recorded['path']}`" in line
    assert native == "none."
    cpu, _ = card("cpu")  # no FlagGems in the stack: both sides are the same operators
    assert "This stack has no FlagGems" in cpu and "FlagGems operators recorded" not in cpu


def test_a_vllm_launcher_card_says_how_its_sides_are_switched():
    """A vllm-plugin-FL row's card: the flaggems side by FLAGRELEASE_SIDE and the declared variables,
    not FlagScale's USE_FLAGGEMS switch and `flagscale serve`."""
    fl = select(MATRIX, chip="ascend-a3-fl", model="qwen3-4b")[0]
    rec = record(ASCEND) | {"pins": pins(fl), "chip": fl.chip_id, "cell": fl.slug}
    text = render_card(typed(rec), fl, BASELINE)
    assert "-e FLAGRELEASE_SIDE=flaggems" in text and "-e USE_FLAGGEMS" not in text
    assert "flagscale serve" not in text and "`vllm` launcher" in text
    assert "`VLLM_PLUGINS=fl` `USE_FLAGGEMS=1` `VLLM_FL_PREFER_ENABLED=true` `GEMS_VENDOR=ascend`" in text
    assert "`VLLM_PLUGINS=ascend`" in text
    assert "side of the run (`VLLM_PLUGINS=fl USE_FLAGGEMS=1 VLLM_FL_PREFER_ENABLED=true GEMS_VENDOR=ascend`)" in text
