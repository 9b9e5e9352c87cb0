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

from flagrelease.errors import ConfigError
from flagrelease.naming import base_reference, repository_name
from flagrelease.schema import NONE, Cell, MatrixFile
from flagrelease.settings import BuildSettings

CONTAINER_EXP_DIR = "/workspace/outputs"
SERVE_IDS = {"vllm": "vllm_model", "llama_cpp": "vllm_model", "sglang": "sglang_model"}



class BuildContext(BaseModel):
    path: Path
    context_hash: str
    repository_name: str
    base_image: str
    pins: dict[str, str]
    labels: dict[str, str]
    files: list[str]


def pins(cell: Cell) -> dict[str, str]:
    """Every version that defines the image, in tag-scheme order, then extra packages."""
    chip, stack = cell.chip, cell.chip.stack
    core = {
        "model": cell.model_id,
        "vendor": chip.vendor,
        "chip": cell.chip_id,
        "chip_code": chip.chip_code,
        "arch": chip.arch,
        "sdk": chip.sdk.name,
        "sdk_version": chip.sdk.version,
        "driver": chip.driver,
        "python": stack.python,
        "torch": stack.torch,
        "torch_npu": stack.torch_npu,
        "vllm": stack.vllm,
        "vllm_plugin": stack.vllm_plugin,
        "flaggems": stack.flaggems,
        "flagscale": stack.flagscale,
        "flagtree": stack.flagtree,
        "flagcx": stack.flagcx,
        "engine": stack.engine,
    }
    extra = {"pkg_" + name.replace("-", "_").replace(".", "_"): v for name, v in stack.packages.items()}
    return core | extra


def static_labels(cell: Cell, pin_map: dict[str, str], name: str, base: str) -> dict[str, str]:
    """OCI labels known before the build (build-time ones are added by the build step)."""
    labels = {
        "org.opencontainers.image.title": name,
        "org.opencontainers.image.description": f"FlagOS serve stack for {cell.model_id} on {cell.chip_id}",
        "org.opencontainers.image.vendor": "FlagRelease",
        "org.opencontainers.image.base.name": base,
        "org.flagos.served-model-name": served_name(cell),
        "org.flagos.serve.port": str(cell.model.serve.engine_args["port"]),
        "org.flagos.weights.mount": cell.weights_mount,
    }
    return labels | {f"org.flagos.{key.replace('_', '-')}": value for key, value in pin_map.items()}


def served_name(cell: Cell) -> str:
    return cell.model.served_model_name.format(vendor=cell.chip.vendor, chip=cell.chip_id)


def serve_config(cell: Cell) -> tuple[str, str]:
    """FlagScale's two files: the experiment (serve.yaml) and the model's serve list."""
    engine = cell.chip.stack.engine
    engine_args = {
        "model": cell.weights_mount,
        "served_model_name": served_name(cell),
        "host": "0.0.0.0",  # inside the container; the host publishes it on 127.0.0.1 only
    } | dict(cell.model.serve.engine_args)
    entry = {"serve_id": SERVE_IDS[engine], "engine": engine, "engine_args": engine_args}
    specific = cell.model.serve.engine_args_specific.get(engine)
    if specific:
        entry["engine_args_specific"] = {engine: dict(specific)}
    experiment = {
        "defaults": ["_self_", {"serve": cell.model_id}],
        "experiment": {
            "exp_name": cell.model_id,
            "exp_dir": f"{CONTAINER_EXP_DIR}/{cell.model_id}",
            "task": {"type": "serve"},
            "runner": {"hostfile": None, "deploy": {"use_fs_serve": False}},
            "envs": {},
        } | _before_start(cell),
        "action": "run",
        "hydra": {"run": {"dir": "${experiment.exp_dir}/hydra"}},
    }
    return yaml.safe_dump(experiment, sort_keys=False), yaml.safe_dump([entry], sort_keys=False)


def _before_start(cell: Cell) -> dict:
    scripts = cell.chip.serve_env_scripts
    return {"cmds": {"before_start": " && ".join(f"source {s}" for s in scripts)}} if scripts else {}


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
            port=cell.model.serve.engine_args["port"],
            use_flaggems="true" if cell.chip.stack.flaggems != NONE else "false",
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
    experiment, serve_list = serve_config(cell)
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
