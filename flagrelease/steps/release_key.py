"""The release key: one hash of everything that decides a cell's released bits and their verdict.

Its parts are hashed one by one and kept in the record, so a changed key says what changed:

    stack     the chip-stack key: the stack's build context and the base image's id
    model     the model image's build context (serve config, labels, entrypoint)
    pins      every pin of the cell
    runtime   the chip's `docker run` options: devices and environment decide what is measured
    weights   every byte of the weights (files re-read only when their size or mtime changed)
    bench     the bench plan and every byte of its datasets
    gate      the gate policy
    baseline  the reference the gate compares with: its file and per-question files, or the
              released reference run and the digests of its per-question results

Two runs with one key build the same image and judge it on the same terms, so a
release of the key in the registry leaves nothing to do. The key is the image's
`org.flagos.release-key` label; the chip stack carries its own `org.flagos.stack-key`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from flagrelease.baseline import Reference
from flagrelease.errors import ConfigError
from flagrelease.results import BaseImageResult, BuildContext
from flagrelease.schema import Cell, MatrixFile

KEY_LABEL = "org.flagos.release-key"
STACK_KEY_LABEL = "org.flagos.stack-key"


def _sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def _sha_json(value: object) -> str:
    return _sha(json.dumps(value, sort_keys=True, default=str))


def stack_key(ctx: BuildContext, base: BaseImageResult) -> str:
    """The chip stack's identity: its build context on the base image it was built from."""
    return _sha(f"{ctx.stack.context_hash}\0{base.image_id}")


def release_key(parts: dict[str, str]) -> str:
    return _sha_json(parts)


def key_parts(
    cell: Cell,
    matrix: MatrixFile,
    ctx: BuildContext,
    base: BaseImageResult,
    weights_dir: Path,
    digest_cache: Path,
    reference: Reference | None,
) -> dict[str, str]:
    """`reference`: what the gate compares with, resolved (steps/reference.py)."""
    assert matrix.source is not None, "a loaded matrix knows its file"
    root = matrix.source.parent
    plan = cell.model.bench
    datasets = {
        a.name: _file_digest(root / a.path, f"models.{cell.model_id}.bench.accuracy.{a.name}.path")
        for a in plan.accuracy
    }
    return {
        "stack": stack_key(ctx, base),
        "model": ctx.model.context_hash,
        "pins": _sha_json(ctx.pins),
        "runtime": _sha_json(cell.chip.runtime.model_dump()),
        "weights": tree_fingerprint(weights_dir, digest_cache),
        "bench": _sha_json({"plan": plan.model_dump(exclude={"gate", "reference"}), "datasets": datasets}),
        "gate": _sha_json(plan.gate.model_dump()),
        "baseline": reference.digest if reference is not None else _sha("no reference"),
    }


def _file_digest(path: Path, where: str) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as err:
        raise ConfigError(
            f"cannot read {path}: {err.strerror}",
            where=where,
            fix="put the file there (datasets and baselines are part of what a release is judged on)",
        ) from None
    return digest.hexdigest()


def tree_fingerprint(root: Path, digest_cache: Path) -> str:
    """sha256 over every file's relative path and content digest under `root`.

    Hidden files and directories are left out: they are the downloaders' bookkeeping
    (ModelScope's `.msc`/`.mv`, lock files), which changes without the weights changing.
    Multi-GB weights must not be re-read on every run: a file's digest is kept in
    `digest_cache` with its size and mtime and recomputed only when either changed
    (git's index makes the same bet).
    """
    known = _read_cache(digest_cache)
    seen: dict[str, list] = {}
    digest = hashlib.sha256()
    for path in _visible_files(root):
        stat = path.stat()
        stamp = [stat.st_size, stat.st_mtime_ns]
        entry = known.get(str(path))
        if entry is None or entry[:2] != stamp:
            entry = [*stamp, _file_digest(path, str(root))]
        seen[str(path)] = entry
        digest.update(f"{path.relative_to(root)}\0{entry[2]}\0".encode())
    if any(known.get(name) != entry for name, entry in seen.items()):
        _write_cache(digest_cache, known | seen)
    return digest.hexdigest()


def _visible_files(root: Path) -> list[Path]:
    def visible(path: Path) -> bool:
        return not any(part.startswith(".") for part in path.relative_to(root).parts)

    return sorted(p for p in root.rglob("*") if p.is_file() and visible(p))


def _read_cache(path: Path) -> dict[str, list]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # a cache: lost or torn, it is rebuilt
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, entries: dict[str, list]) -> None:
    """Atomically (concurrent runs may share the cache; the last writer wins, both are right)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as tmp:
        json.dump(entries, tmp)
    os.replace(tmp.name, path)
