"""The plan bundle: exactly the files a matrix run was planned from, content-addressed.

Chip hosts are different machines, so a cell run on a worker must not read "matrix.yaml"
from its own disk. The orchestrator packs the matrix file and everything it refers to
(the Dockerfile templates beside it, each model's baseline and relative benchmark datasets) into
a deterministic tar, stores it in the artifact store under its sha256, and hands the
workers only the hash; a worker fetches the bundle, checks the hash and unpacks it.

    data, digest = pack(matrix, models)  # bytes, "sha256:<hex>"
    unpack(data, digest, target_dir)   # -> target_dir/matrix.yaml
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
from collections.abc import Iterable
from pathlib import Path

import yaml

from flagrelease.errors import ConfigError
from flagrelease.schema import MatrixFile

MATRIX_NAME = "matrix.yaml"


def key(digest: str) -> str:
    """Where a bundle lives in an artifact store."""
    return f"bundles/{digest.replace(':', '-')}.tar"


def files_of(matrix: MatrixFile, models: Iterable[str]) -> dict[str, Path]:
    """Bundle member name -> file: the matrix, its templates, and what `models` refer to."""
    assert matrix.source is not None, "a loaded matrix knows its file"
    root = matrix.source.parent
    members = {MATRIX_NAME: matrix.source}
    members |= {_member(root, p): p for p in sorted(matrix.dockerfiles.rglob("*")) if p.is_file()}
    for model_id in sorted(set(models)):
        bench = matrix.models[model_id].bench
        where = f"{matrix.source}: models.{model_id}.bench"
        # Absolute dataset paths are host data, like weights: each chip host provides its own.
        referred = [root / a.path for a in bench.accuracy if not Path(a.path).is_absolute()]
        # A released reference is read from the ledger and the artifact store, not from files.
        if isinstance(bench.reference, str):
            referred.append(root / bench.reference)
            referred += _baseline_files(root / bench.reference)
        for path in referred:
            if not path.is_file():
                raise ConfigError(f"{path} does not exist", where=where, fix="create it or correct the path")
            members[_member(root, path, where)] = path
    return members


def pack(matrix: MatrixFile, models: Iterable[str], *, matrix_text: bytes | None = None) -> tuple[bytes, str]:
    """A reproducible tar of the bundle (sorted, no owners or times) and its digest.
    `matrix_text`: the matrix file's content instead of what is on disk (a proposed patch)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in sorted(files_of(matrix, models).items()):
            data = matrix_text if name == MATRIX_NAME and matrix_text is not None else path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    data = buffer.getvalue()
    return data, digest_of(data)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def unpack(data: bytes, digest: str, target: Path) -> Path:
    """Check the bundle against the digest the orchestrator planned with, then unpack it;
    the matrix file's path. A bundle already unpacked there is reused."""
    found = digest_of(data)
    if found != digest:
        raise ConfigError(
            f"the plan bundle fetched for {digest} has digest {found}: not the matrix the orchestrator planned",
            where=key(digest),
            fix="re-run the release from the orchestrator; do not edit bundles in the artifact store",
        )
    matrix = target / MATRIX_NAME
    if not matrix.is_file():
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                tar.extractall(partial, filter="data")  # refuses absolute paths, `..` and links out
        except tarfile.TarError as err:
            shutil.rmtree(partial, ignore_errors=True)
            raise ConfigError(f"plan bundle {digest} cannot be unpacked: {err}", where=key(digest)) from None
        partial.replace(target)
    return matrix


def _baseline_files(path: Path) -> list[Path]:
    """Per-question files a baseline names (relative to the baseline file)."""
    try:
        entries = (yaml.safe_load(path.read_text()) or {}).get("benchmarks") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        return []  # a missing or broken baseline is reported by the baseline loader, with its key
    return [path.parent / e["per_question"] for e in entries.values() if isinstance(e, dict) and e.get("per_question")]


def _member(root: Path, path: Path, where: str | None = None) -> str:
    """The file's name inside the bundle: its path below the matrix directory (as written:
    a symlinked templates directory is fine, a `..` is not)."""
    try:
        relative = path.relative_to(root)
        if ".." in relative.parts:
            raise ValueError(relative)
        return relative.as_posix()
    except ValueError:
        raise ConfigError(
            f"{path} lies outside the matrix directory {root}",
            where=where or str(path),
            fix="keep templates, baselines and datasets below the directory of matrix.yaml",
        ) from None
