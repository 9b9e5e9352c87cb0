"""Render a cell into a Docker build context: Dockerfile, FlagScale serve config, files.

The context is content-addressed: `context_hash` covers every byte of it, so
an unchanged cell is recognisable and a changed one never reuses an image.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import jinja2
import yaml
from pydantic import BaseModel

from flagrelease.cell_facts import flaggems_installed, pins, serve_config, serve_port, served_name
from flagrelease.errors import ConfigError
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


def render_context(cell: Cell, matrix: MatrixFile, build: BuildSettings, out_dir: Path) -> BuildContext:
    """Write the complete build context for `cell` into `out_dir` (replacing it)."""
    dockerfile, labels, base = render_dockerfile(cell, matrix, build)
    experiment, serve_list = (yaml.safe_dump(doc, sort_keys=False) for doc in serve_config(cell))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    (out_dir / "serve/conf/serve").mkdir(parents=True)
    (out_dir / "Dockerfile").write_text(dockerfile)
    (out_dir / "serve/conf/serve.yaml").write_text(experiment)
    (out_dir / f"serve/conf/serve/{cell.model_id}.yaml").write_text(serve_list)
    for static in sorted((matrix.dockerfiles / "files").iterdir()):
        shutil.copy2(static, out_dir / static.name)
    files = sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*") if p.is_file())
    return BuildContext(
        path=out_dir,
        context_hash=context_hash(out_dir, files),
        repository_name=repository_name(cell),
        base_image=base,
        pins=pins(cell),
        labels=labels,
        files=files,
    )


def context_hash(root: Path, files: list[str]) -> str:
    digest = hashlib.sha256()
    for rel in files:
        digest.update(rel.encode() + b"\0" + (root / rel).read_bytes() + b"\0")
    return digest.hexdigest()
