"""Render a cell into a Docker build context: Dockerfile, FlagScale serve config, files.

The context is content-addressed: `context_hash` covers every byte of it, so
an unchanged cell is recognisable and a changed one never reuses an image.
"""

from __future__ import annotations

import errno
import hashlib
import shutil
import tempfile
from pathlib import Path

import jinja2
import yaml
from pydantic import BaseModel

from flagrelease.cell_facts import flaggems_installed, pins, serve_config, serve_port, served_name
from flagrelease.errors import ConfigError, ServiceError
from flagrelease.naming import base_reference, repository_name
from flagrelease.schema import Cell, MatrixFile
from flagrelease.settings import BuildSettings


class BuildContext(BaseModel):
    path: Path
    context_hash: str
    repository_name: str
    base_image: str
    pins: dict[str, str]
    labels: dict[str, str]
    files: list[str]


def static_labels(cell: Cell, pin_map: dict[str, str], name: str, base: str) -> dict[str, str]:
    """OCI labels known before the build (build-time ones are added by the build step)."""
    labels = {
        "org.opencontainers.image.title": name,
        "org.opencontainers.image.description": f"FlagOS serve stack for {cell.model_id} on {cell.chip_id}",
        "org.opencontainers.image.vendor": "FlagRelease",
        "org.opencontainers.image.base.name": base,
        "org.flagos.served-model-name": served_name(cell),
        "org.flagos.serve.port": str(serve_port(cell)),
        "org.flagos.weights.mount": cell.weights_mount,
    }
    return labels | {f"org.flagos.{key.replace('_', '-')}": value for key, value in pin_map.items()}


def _environment(templates: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # Dockerfiles, not HTML; values are pattern-checked instead
    )


def render_dockerfile(cell: Cell, matrix: MatrixFile, build: BuildSettings) -> tuple[str, dict[str, str], str]:
    """Dockerfile text, its labels and the base image it starts FROM."""
    name = repository_name(cell)
    base = base_reference(cell.chip.base.image, build.base_mirror)
    pin_map = pins(cell)
    labels = static_labels(cell, pin_map, name, base)
    env = _environment(matrix.dockerfiles)
    try:
        text = env.get_template(cell.chip.template).render(
            cell=cell,
            chip=cell.chip,
            stack=cell.chip.stack,
            model=cell.model,
            pins=pin_map,
            labels=labels,
            base_image=base,
            port=serve_port(cell),
            use_flaggems="true" if flaggems_installed(cell) else "false",
            settings=build,
        )
    except jinja2.TemplateNotFound as err:
        raise ConfigError(
            f"Dockerfile template {err.name!r} not found",
            where=f"{matrix.source}: chips.{cell.chip_id}.template",
            fix=f"add {matrix.dockerfiles / str(err.name)} or point the chip at an existing template",
        ) from None
    except jinja2.UndefinedError as err:
        raise ConfigError(
            f"template {cell.chip.template} needs a value the cell does not define: {err.message}",
            where=f"{matrix.dockerfiles / cell.chip.template}",
            fix=f"add the missing pin to chips.{cell.chip_id} in matrix.yaml",
        ) from None
    return text, labels, base


# Marks a directory as a render of ours, so the next render may replace it. Constant text,
# outside `files` and the context hash: a context hashes the same wherever it was written.
MARKER = ".flagrelease-render"
MARKER_TEXT = "Written by `flagrelease render`; the next render into this directory replaces it.\n"
_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EIO}


def render_context(
    cell: Cell, matrix: MatrixFile, build: BuildSettings, out_dir: Path, *, force: bool = False
) -> BuildContext:
    """Write the complete build context for `cell` into `out_dir`.

    `out_dir` may be new, empty or a previous render (which is replaced); anything else
    is refused unless `force`. The context is written beside it first and moved into place
    at the end, so a failure leaves `out_dir` as it was.
    """
    _check_target(out_dir, matrix, force)
    dockerfile, labels, base = render_dockerfile(cell, matrix, build)
    experiment, serve_list = (yaml.safe_dump(doc, sort_keys=False) for doc in serve_config(cell))
    staging: Path | None = None
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.rendering-", dir=out_dir.parent))
        staging.chmod(0o755)  # mkdtemp's 0700 is for secrets; a build context is not one
        (staging / "serve/conf/serve").mkdir(parents=True)
        (staging / "Dockerfile").write_text(dockerfile)
        (staging / "serve/conf/serve.yaml").write_text(experiment)
        (staging / f"serve/conf/serve/{cell.model_id}.yaml").write_text(serve_list)
        for static in sorted((matrix.dockerfiles / "files").iterdir()):
            shutil.copy2(static, staging / static.name)
        files = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
        digest = context_hash(staging, files)
        (staging / MARKER).write_text(MARKER_TEXT)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    except OSError as err:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        problem = f"cannot write the build context to {out_dir}: {err.strerror or err}"
        if err.errno in _DISK_ERRORS:
            raise ServiceError(problem, where=str(out_dir), fix="free space on that disk") from None
        raise ConfigError(problem, where=str(out_dir), fix="pass a directory you can write") from None
    return BuildContext(
        path=out_dir,
        context_hash=digest,
        repository_name=repository_name(cell),
        base_image=base,
        pins=pins(cell),
        labels=labels,
        files=files,
    )


def _check_target(out_dir: Path, matrix: MatrixFile, force: bool) -> None:
    """Refuse, before anything is written, a target whose contents are not ours to replace."""
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise ConfigError(
            f"{out_dir} is {'a symbolic link' if out_dir.is_symlink() else 'a file'}, not a directory",
            where=str(out_dir),
            fix="pass the path of a new, empty or previously rendered directory",
        )
    resolved = out_dir.resolve()
    protected = [Path.cwd(), *([matrix.source.parent] if matrix.source else [])]
    if any(resolved == p or resolved in p.parents for p in protected):
        raise ConfigError(
            f"{out_dir} holds the working directory or the matrix; a render would replace it",
            where=str(out_dir),
            fix="render into a directory of its own, e.g. --out ./ctx",
        )
    if not force and out_dir.is_dir() and not (out_dir / MARKER).is_file() and any(out_dir.iterdir()):
        raise ConfigError(
            f"{out_dir} is not empty and is not a previous render: rendering would delete what it holds",
            where=str(out_dir),
            fix="pass a new or empty directory, or --force to replace its contents",
        )


def context_hash(root: Path, files: list[str]) -> str:
    digest = hashlib.sha256()
    for rel in files:
        digest.update(rel.encode() + b"\0" + (root / rel).read_bytes() + b"\0")
    return digest.hexdigest()
