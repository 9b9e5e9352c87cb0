"""The release key: which change moves which part, and the weights fingerprint."""

from __future__ import annotations

import os

import pytest
import yaml

from flagrelease.errors import ConfigError
from flagrelease.matrix import load_matrix, select
from flagrelease.naming import key_tag, repository_name, stack_repository_name
from flagrelease.results import BaseImageResult
from flagrelease.settings import BuildSettings, Settings
from flagrelease.steps import reference
from flagrelease.steps.release_key import key_parts, release_key, tree_fingerprint
from flagrelease.steps.render import render_context
from tests.conftest import ROOT

SETTINGS = BuildSettings(ca_bundle=None, pip_index_url=None, apt_mirror=None, base_mirror=None, docker_cli="docker")
BASE = BaseImageResult(ref="flagrelease/debian-minbase:sid", image_id="sha256:" + "1" * 64, made=False, seconds=0.0)


def parts(tmp_path, edit=None, base=BASE):
    """The key parts of tiny-llama x cpu under a copy of the matrix, edited by `edit(data)`."""
    data = yaml.safe_load((ROOT / "matrix.yaml").read_text())
    if edit:
        edit(data)
    root = tmp_path / f"m{len(list(tmp_path.iterdir()))}"
    root.mkdir()
    for name in ("dockerfiles", "datasets", "baselines"):
        (root / name).symlink_to(ROOT / name)
    (root / "matrix.yaml").write_text(yaml.safe_dump(data))
    matrix = load_matrix(root / "matrix.yaml")
    cell = select(matrix, chip="cpu", model="tiny-llama")[0]
    ctx = render_context(cell, matrix, SETTINGS, root / "ctx")
    weights = tmp_path / "weights"
    weights.mkdir(exist_ok=True)
    (weights / "tiny-llama.gguf").write_bytes(b"weights")
    against = reference.resolve(cell, matrix, Settings(home=tmp_path / "home"))
    return key_parts(cell, matrix, ctx, base, weights, tmp_path / "cache.json", against)


def changed(one: dict, two: dict) -> set[str]:
    return {name for name in one if one[name] != two[name]}


def test_the_same_inputs_give_the_same_key(tmp_path):
    assert release_key(parts(tmp_path)) == release_key(parts(tmp_path))


@pytest.mark.parametrize(
    ("edit", "moved"),
    [
        (lambda d: d["models"]["tiny-llama"]["bench"].update(gate={"perf_min_ratio": 0.7}), {"gate"}),
        (lambda d: d["models"]["tiny-llama"]["bench"]["perf"].update(num_prompts=8), {"bench"}),
        (lambda d: d["models"]["tiny-llama"]["serve"]["engine_args"].update(max_num_seqs=2), {"model"}),
        (lambda d: d["chips"]["cpu"]["runtime"]["env"].update(OMP_NUM_THREADS="1"), {"runtime"}),
        (
            lambda d: d["models"]["tiny-llama"]["bench"].update(reference="baselines/qwen3-4b-h100-cuda.yaml"),
            {"baseline"},
        ),
        # A chip pin: the stack (its labels), the pins, and the model image's name.
        (lambda d: d["chips"]["cpu"].update(driver="1.0"), {"stack", "pins", "model"}),
    ],
    ids=["gate", "bench", "serve-args", "runtime", "reference", "pin"],
)
def test_each_change_moves_its_part_and_the_key(tmp_path, edit, moved):
    before, after = parts(tmp_path), parts(tmp_path, edit)
    assert changed(before, after) == moved
    assert release_key(before) != release_key(after)


def test_a_new_base_image_is_a_new_stack(tmp_path):
    other = BASE.model_copy(update={"image_id": "sha256:" + "2" * 64})
    assert changed(parts(tmp_path), parts(tmp_path, base=other)) == {"stack"}


def test_a_missing_dataset_is_named(tmp_path):
    def edit(data):
        data["models"]["tiny-llama"]["bench"]["accuracy"][0]["path"] = "datasets/gone.jsonl"

    with pytest.raises(ConfigError, match="gone.jsonl") as err:
        parts(tmp_path, edit)
    assert err.value.where == "models.tiny-llama.bench.accuracy.arith-mc.path"


def test_weights_fingerprint_follows_content_not_bookkeeping(tmp_path):
    root, cache = tmp_path / "w", tmp_path / "cache.json"
    (root / "sub").mkdir(parents=True)
    (root / "model.gguf").write_bytes(b"a" * 100)
    (root / "sub" / "tokenizer.json").write_text("{}")
    first = tree_fingerprint(root, cache)
    (root / ".msc").write_text("downloader bookkeeping")
    (root / ".cache").mkdir()
    (root / ".cache" / "lock").write_text("")
    assert tree_fingerprint(root, cache) == first
    (root / "model.gguf").write_bytes(b"b" * 101)
    assert tree_fingerprint(root, cache) != first
    (root / "model.gguf").write_bytes(b"a" * 100)
    assert tree_fingerprint(root, cache) == first


def test_weights_digests_are_cached_by_size_and_mtime(tmp_path):
    """An unchanged file is not read again: a rewrite that keeps size and mtime goes unseen
    (as in git's index), which is what lets a multi-GB model cost nothing on a rerun."""
    root, cache = tmp_path / "w", tmp_path / "cache.json"
    root.mkdir()
    weights = root / "model.gguf"
    weights.write_bytes(b"a" * 100)
    first = tree_fingerprint(root, cache)
    stat = weights.stat()
    weights.write_bytes(b"b" * 100)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert tree_fingerprint(root, cache) == first
    cache.write_text("torn {")  # a broken cache is rebuilt
    assert tree_fingerprint(root, cache) != first


def test_stack_name_is_the_release_name_without_the_model():
    matrix = load_matrix(ROOT / "matrix.yaml")
    cell = select(matrix, chip="ascend-a3", model="qwen3-4b")[0]
    assert stack_repository_name(cell) == repository_name(cell).replace("-release-model_qwen3-4b-", "-stack-")
    assert key_tag("ab" * 32) == "key-" + "ab" * 32 and len(key_tag("ab" * 32)) <= 128
