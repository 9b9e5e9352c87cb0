"""How long does FlagRelease take to plan a 10,000-cell matrix?

The matrix is the project's own matrix.yaml plus N chips x M models (default 100 x 100),
written as a user would: every chip `extends: ascend-a3` and changes its driver, every
model `extends: _qwen3` and names its weights and context length. Two variants:

  axes       the product of matrix.chip and matrix.model (10,000 cells, + the cpu cell)
  overrides  the same, plus one `include` entry per model with `overrides` (a serve
             argument changed), so every cell goes through the per-cell override path

Each variant is planned by the real command line, in a fresh process as a user runs it
(start-up and imports included, stdout to a file):

  flagrelease matrix --print -f M     the resolved plan as JSON (bake --print)
  flagrelease release --dry-run -f M  the rules checked, then the same plan

With `--baseline REV` the same commands also run against the `flagrelease` package of a
git revision (exported with `git archive` into a temporary directory), alternating which
tree goes first on every repeat; both must print byte-identical plans. The ratio
baseline/current is computed within each repeat and summarized as median [min-max].
Wall time is what the user waits; CPU time (user+sys of the child) is less sensitive to
other work on a shared machine.

Example (the BENCHMARKS.md run):

    .venv/bin/python bench/plan_scale.py --baseline 2d2f9fa --repeats 5
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

# Runs `flagrelease ARGS` with the package from TREE (not the editable install of this venv).
WORKER = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("__editable__")]
sys.path.insert(0, sys.argv[1])
import flagrelease
assert flagrelease.__file__.startswith(sys.argv[1]), flagrelease.__file__
from flagrelease.cli import app
sys.argv = ["flagrelease", *sys.argv[2:]]
app()
"""


def write_matrix(directory: Path, chips: int, models: int, overrides: bool) -> Path:
    data = yaml.safe_load((ROOT / "matrix.yaml").read_text())
    chip_ids = [f"chip-{i:03d}" for i in range(chips)]
    model_ids = [f"model-{i:03d}" for i in range(models)]
    for i, chip in enumerate(chip_ids):
        data["chips"][chip] = {"extends": "ascend-a3", "driver": f"25.{i}.0"}
    for i, model in enumerate(model_ids):
        data["models"][model] = {
            "extends": "_qwen3",
            "served_model_name": f"Model{i}-{{vendor}}-flagos",
            "weights": {"source": "modelscope", "modelscope_id": f"Example/Model{i}", "mount": f"/data/weights/m{i}"},
            "serve": {"engine_args": {"max_model_len": 4096 + i}},
        }
    data["matrix"]["chip"], data["matrix"]["model"] = chip_ids, model_ids
    if overrides:
        data["matrix"]["include"] += [
            {"model": model, "overrides": {"model": {"serve": {"engine_args": {"max_num_seqs": 8}}}}}
            for model in model_ids
        ]
    directory.mkdir(parents=True)
    for name in ("dockerfiles", "datasets", "baselines"):
        (directory / name).symlink_to(ROOT / name)
    path = directory / "matrix.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def export_tree(rev: str, target: Path) -> Path:
    target.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "flagrelease"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def run_cli(tree: Path, args: list[str], out: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, child CPU seconds and the sha256 of stdout of one CLI run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with out.open("wb") as handle:
        proc = subprocess.run(
            [sys.executable, "-c", WORKER, str(tree), *args], stdout=handle, stderr=subprocess.PIPE, env=env
        )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        tail = proc.stderr.decode()[-2000:]
        raise SystemExit(f"{tree}: flagrelease {' '.join(args)} exited {proc.returncode}:\n{tail}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, hashlib.sha256(out.read_bytes()).hexdigest()


def phases(matrix: Path, repeats: int) -> dict[str, float]:
    """Median seconds of each planning phase in this process (current tree), with the garbage
    collector paused as the command line pauses it."""
    from pydantic_core import to_json

    from flagrelease.cli.common import planning
    from flagrelease.compat import ensure_compatible
    from flagrelease.matrix import expand, load_matrix
    from flagrelease.plan import plan
    from flagrelease.settings import BuildSettings

    build = BuildSettings(ca_bundle=None, docker_cli=sys.executable)
    found: dict[str, list[float]] = {}
    for _ in range(repeats):
        with planning():
            marks = [("start", time.perf_counter())]
            loaded = load_matrix(matrix)
            marks.append(("load + validate", time.perf_counter()))
            cells = expand(loaded)
            marks.append(("expand", time.perf_counter()))
            ensure_compatible(cells, loaded.compatibility, str(loaded.source))
            marks.append(("rules", time.perf_counter()))
            plans = plan(cells, loaded, build)
            marks.append(("plan", time.perf_counter()))
            to_json(plans, indent=2)
            marks.append(("JSON", time.perf_counter()))
        for (_, t0), (name, t1) in zip(marks, marks[1:], strict=False):
            found.setdefault(name, []).append(t1 - t0)
        found.setdefault("cells", []).append(len(cells))
    return {name: statistics.median(values) for name, values in found.items()}


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chips", type=int, default=100)
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline", help="git revision to compare with (its flagrelease package)")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="plan-scale-") as tmp_name:
        tmp = Path(tmp_name)
        matrices = {
            variant: write_matrix(tmp / variant, args.chips, args.models, variant == "overrides")
            for variant in ("axes", "overrides")
        }
        trees = {"current": ROOT}
        if args.baseline:
            trees["baseline"] = export_tree(args.baseline, tmp / "baseline")
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLAGRELEASE_")}
        env["FLAGRELEASE_HOME"] = str(tmp / "home")
        commands = {
            f"{variant}: {' '.join(cmd)}": [*cmd, "-f", str(path)]
            for variant, path in matrices.items()
            for cmd in (["matrix", "--print"], ["release", "--dry-run"])
        }
        runs: dict[str, dict[str, list[tuple[float, float]]]] = {c: {t: [] for t in trees} for c in commands}
        for repeat in range(args.repeats):
            order = list(trees) if repeat % 2 == 0 else list(reversed(trees))
            for label, cli_args in commands.items():
                digests = set()
                for tree in order:
                    wall, cpu, digest = run_cli(trees[tree], cli_args, tmp / f"out-{tree}.json", env)
                    runs[label][tree].append((wall, cpu))
                    digests.add(digest)
                if len(digests) != 1:
                    raise SystemExit(f"{label}: the trees printed different plans")
        inside = {variant: phases(path, args.repeats) for variant, path in matrices.items()}

    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, load average {os.getloadavg()}")
    print(f"{args.chips} chips x {args.models} models, {args.repeats} repeats; seconds as median [min-max]\n")
    header = "| command | current wall | current CPU |"
    if args.baseline:
        header += f" {args.baseline} wall | {args.baseline} CPU | wall ratio | CPU ratio |"
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    for label, by_tree in runs.items():
        current = by_tree["current"]
        row = f"| {label} | {summary([w for w, _ in current])} | {summary([c for _, c in current])} |"
        if args.baseline:
            base = by_tree["baseline"]
            wall_ratio = [b[0] / c[0] for b, c in zip(base, current, strict=True)]
            cpu_ratio = [b[1] / c[1] for b, c in zip(base, current, strict=True)]
            row += f" {summary([w for w, _ in base])} | {summary([c for _, c in base])} |"
            row += f" {summary(wall_ratio)} | {summary(cpu_ratio)} |"
        print(row)
    print("\nin-process phases of the current tree (median seconds):")
    for variant, found in inside.items():
        shown = [f"{k} {v:.3f}" if k != "cells" else f"{int(v)} cells" for k, v in found.items()]
        print(f"  {variant}: " + ", ".join(shown))
    if args.json:
        record = {"runs": runs, "phases": inside, "args": vars(args) | {"json": str(args.json)}}
        args.json.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
