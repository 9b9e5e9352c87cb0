"""Render a cell into two Docker build contexts: its chip-stack image and the thin model
image FROM it (Dockerfiles, FlagScale serve config, files).

Each context is content-addressed: `context_hash` covers every byte of it, so an
unchanged cell is recognisable and a changed one never reuses an image. The stack
context holds nothing of the model, so every model on a chip renders the same one.
"""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Literal

import jinja2
import yaml
from pydantic import ValidationError

from flagrelease.cell_facts import (
    SERVE_CONF,
    cli_flags,
    flaggems_installed,
    pin_labels,
    pins,
    serve_args,
    serve_config,
    serve_port,
    served_name,
)
from flagrelease.errors import ConfigError, ServiceError
from flagrelease.launch_spec import LaunchSpec, RenderedCommand
from flagrelease.naming import base_reference, repository_name, stack_repository_name
from flagrelease.results import BuildContext, ImageContext
from flagrelease.schema import Cell, MatrixFile
from flagrelease.settings import BuildSettings

Part = Literal["stack", "model"]
# Pins that belong to the model image, not to its chip's stack (the launcher is rendered into the
# model image: chips that differ only in it share one stack).
MODEL_PINS = ("model", "launcher")


def model_labels(cell: Cell, pin_map: dict[str, str], name: str) -> dict[str, str]:
    """OCI labels the model image adds to its chip stack's (build-time ones come from the build step)."""
    return {
        "org.opencontainers.image.title": name,
        "org.opencontainers.image.description": f"FlagOS serve stack for {cell.model_id} on {cell.chip_id}",
        "org.flagos.served-model-name": served_name(cell),
        "org.flagos.serve.port": str(serve_port(cell)),
        "org.flagos.weights.mount": cell.weights_mount,
    } | pin_labels({k: v for k, v in pin_map.items() if k in MODEL_PINS})


def stack_labels(cell: Cell, pin_map: dict[str, str], name: str, base: str) -> dict[str, str]:
    """OCI labels of the chip-stack image, inherited by every model image on it: the chip's
    pins, none of a model's."""
    labels = {
        "org.opencontainers.image.title": name,
        "org.opencontainers.image.description": f"FlagOS chip stack for {cell.chip_id}: everything but the model",
        "org.opencontainers.image.vendor": "FlagRelease",
        "org.opencontainers.image.base.name": base,
    }
    return labels | pin_labels({k: v for k, v in pin_map.items() if k not in MODEL_PINS})


def _environment(templates: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # Dockerfiles, not HTML; values are pattern-checked instead
    )


def render_dockerfile(
    cell: Cell, matrix: MatrixFile, build: BuildSettings, part: Part
) -> tuple[str, dict[str, str], str]:
    """Dockerfile text of the stack or model image, its labels, and the chip's base image."""
    base = base_reference(cell.chip.base.image, build.base_mirror)
    pin_map = pins(cell)
    if part == "stack":
        labels = stack_labels(cell, pin_map, stack_repository_name(cell), base)
    else:
        labels = model_labels(cell, pin_map, repository_name(cell))
    env = _environment(matrix.dockerfiles)
    try:
        text = env.get_template(cell.chip.template).render(
            part=part,
            cell=cell,
            chip=cell.chip,
            stack=cell.chip.stack,
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


LAUNCHERS = "launchers"


def render_launcher(cell: Cell, matrix: MatrixFile) -> LaunchSpec:
    """The launcher of the cell's stack: its template's command, and the sides' environment."""
    launcher = cell.chip.stack.launcher
    template = f"{LAUNCHERS}/{launcher.name}.json.j2"
    where = f"{matrix.source}: chips.{cell.chip_id}.stack.launcher.name"
    env = _environment(matrix.dockerfiles)

    def flags(args: dict, skip: list[str] = []) -> list[str]:  # noqa: B006 (read only)
        return cli_flags({k: v for k, v in args.items() if k not in skip})

    try:
        text = env.get_template(template).render(
            cell=cell,
            stack=cell.chip.stack,
            launcher=launcher,
            args=serve_args(cell),
            flags=flags,
            serve_yaml=f"{SERVE_CONF}/serve.yaml",
        )
        rendered = RenderedCommand.model_validate(json.loads(text))
    except jinja2.TemplateNotFound:
        known = sorted(p.name.removesuffix(".json.j2") for p in (matrix.dockerfiles / LAUNCHERS).glob("*.json.j2"))
        raise ConfigError(
            f"launcher {launcher.name!r} has no template {matrix.dockerfiles / template}",
            where=where,
            fix=f"use one of: {', '.join(known)}, or add the template",
        ) from None
    except jinja2.UndefinedError as err:
        raise ConfigError(
            f"launcher template {template} needs a value the cell does not define: {err.message}",
            where=where,
            fix=f"add the engine argument to models.{cell.model_id}.serve, or use another launcher",
        ) from None
    except (ValueError, ValidationError) as err:  # not JSON, or not a command
        raise ConfigError(
            f"launcher template {template} did not render a command: {str(err).splitlines()[0][:200]}",
            where=str(matrix.dockerfiles / template),
            fix='render {"mode": "flagscale" | "foreground", "command": ["word", ...]}',
        ) from None
    return LaunchSpec(**rendered.model_dump(), launcher=launcher.name, sides=launcher.sides)


# Marks a directory as a render of ours, so the next render may replace it. Constant text,
# outside `files` and the context hash: a context hashes the same wherever it was written.
MARKER = ".flagrelease-render"
MARKER_TEXT = "Written by `flagrelease render`; the next render into this directory replaces it.\n"
_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EIO}


def render_context(
    cell: Cell, matrix: MatrixFile, build: BuildSettings, out_dir: Path, *, force: bool = False
) -> BuildContext:
    """Write both build contexts of `cell`, `out_dir`/stack and `out_dir`/model.

    `out_dir` may be new, empty or a previous render (which is replaced); anything else
    is refused unless `force`. The contexts are written beside it first and moved into
    place at the end, so a failure leaves `out_dir` as it was.
    """
    _check_target(out_dir, matrix, force)
    stack_text, stack_label_map, base = render_dockerfile(cell, matrix, build, "stack")
    model_text, model_labels, _ = render_dockerfile(cell, matrix, build, "model")
    experiment, serve_list = (yaml.safe_dump(doc, sort_keys=False) for doc in serve_config(cell))
    launch = render_launcher(cell, matrix).model_dump_json(indent=2) + "\n"
    staging: Path | None = None
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.rendering-", dir=out_dir.parent))
        staging.chmod(0o755)  # mkdtemp's 0700 is for secrets; a build context is not one
        (staging / "stack").mkdir()
        (staging / "stack/Dockerfile").write_text(stack_text)
        for static in sorted((matrix.dockerfiles / "files").iterdir()):
            shutil.copy2(static, staging / "stack" / static.name)
        (staging / "model/serve/conf/serve").mkdir(parents=True)
        (staging / "model/Dockerfile").write_text(model_text)
        (staging / "model/serve/conf/serve.yaml").write_text(experiment)
        (staging / f"model/serve/conf/serve/{cell.model_id}.yaml").write_text(serve_list)
        (staging / "model/serve/launch.json").write_text(launch)
        (staging / MARKER).write_text(MARKER_TEXT)  # beside the contexts, in neither of them
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
        stack=_image_context(out_dir / "stack", stack_repository_name(cell), stack_label_map),
        model=_image_context(out_dir / "model", repository_name(cell), model_labels),
        base_image=base,
        pins=pins(cell),
    )


def _image_context(root: Path, name: str, labels: dict[str, str]) -> ImageContext:
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    return ImageContext(
        path=root, context_hash=context_hash(root, files), repository_name=name, labels=labels, files=files
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
