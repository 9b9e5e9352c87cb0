"""Facts of a cell that every step needs: its pins, served name and serve config.

Pure functions of the cell; render, plan, card, smoke and bench read them here
rather than from the renderer.
"""

from __future__ import annotations

from typing import Any

from flagrelease.schema import NONE, Cell, Chip, Launcher, Side

# Where FlagScale writes its run outputs inside the container.
CONTAINER_EXP_DIR = "/workspace/outputs"
# Where the Dockerfile templates COPY the rendered serve config inside the image.
SERVE_CONF = "/workspace/serve/conf"
# FlagScale 0.8 accepts only these serve ids; llama.cpp runs under the vLLM one.
SERVE_IDS = {"vllm": "vllm_model", "llama_cpp": "vllm_model", "sglang": "sglang_model"}
# Where the model image holds the rendered launcher (dockerfiles/launchers/<name>.json.j2).
LAUNCH_SPEC = "/workspace/serve/launch.json"
DEFAULT_LAUNCHER = Launcher().name


def pins(cell: Cell) -> dict[str, str]:
    """Every version that defines the image, in tag-scheme order, then extra packages."""
    return {"model": cell.model_id} | chip_pins(cell.chip_id, cell.chip)


def chip_pins(chip_id: str, chip: Chip) -> dict[str, str]:
    """The pins a chip gives every cell it is in (all but the model)."""
    stack = chip.stack
    core = {
        "vendor": chip.vendor,
        "chip": chip_id,
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
    # Added with the vllm-plugin-FL stacks: present only where set, so that the labels of the
    # stacks released before (FlagScale-launched, no plugin) stay as they were.
    later = {"vllm_fl": stack.vllm_fl} if stack.vllm_fl != NONE else {}
    if stack.launcher.name != DEFAULT_LAUNCHER:
        later["launcher"] = stack.launcher.name
    extra = {"pkg_" + name.replace("-", "_").replace(".", "_"): v for name, v in stack.packages.items()}
    return core | later | extra


def pin_labels(pin_map: dict[str, str]) -> dict[str, str]:
    """The OCI labels that carry pins: org.flagos.<pin, `_` spelled `-`>."""
    return {f"org.flagos.{key.replace('_', '-')}": value for key, value in pin_map.items()}


def served_name(cell: Cell) -> str:
    return cell.model.served_model_name.format(vendor=cell.chip.vendor, chip=cell.chip_id)


def serve_port(cell: Cell) -> int:
    return int(cell.model.serve.engine_args["port"])


def flaggems_installed(cell: Cell) -> bool:
    return cell.chip.stack.flaggems != NONE


def serve_config(cell: Cell) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """FlagScale's two documents: the experiment (serve.yaml) and the model's serve list."""
    engine = cell.chip.stack.engine
    engine_args = {
        "model": cell.weights_mount,
        "served_model_name": served_name(cell),
        "host": "0.0.0.0",  # inside the container; the host publishes it on 127.0.0.1 only
    } | dict(cell.model.serve.engine_args)
    entry: dict[str, Any] = {"serve_id": SERVE_IDS[engine], "engine": engine, "engine_args": engine_args}
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
        }
        | _before_start(cell),
        "action": "run",
        "hydra": {"run": {"dir": "${experiment.exp_dir}/hydra"}},
    }
    return experiment, [entry]


def serve_args(cell: Cell) -> dict[str, Any]:
    """The engine's arguments as FlagScale would pass them: the common ones, the model's, then
    the engine's own extras (a launcher that runs the engine itself renders them as flags)."""
    [entry] = serve_config(cell)[1]
    return dict(entry["engine_args"]) | dict(entry.get("engine_args_specific", {}).get(cell.chip.stack.engine, {}))


def cli_flags(args: dict[str, Any]) -> list[str]:
    """FlagScale's rule for `vllm serve` flags: `_` -> `-`, true -> a bare flag, false -> dropped."""
    flags: list[str] = []
    for key, value in args.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif value is not False:
            flags += [flag, str(value)]
    return flags


def side_env(cell: Cell, side: Side) -> dict[str, str]:
    """The environment the chip's launcher declares for one side of the comparison."""
    return dict(cell.chip.stack.launcher.sides[side])


def _before_start(cell: Cell) -> dict[str, Any]:
    scripts = cell.chip.serve_env_scripts
    return {"cmds": {"before_start": " && ".join(f"source {s}" for s in scripts)}} if scripts else {}
