"""What incremental releases cost: a no-op rerun, a second model on a chip, a resumed cell.

Everything runs in one go, through the real CLI (`flagrelease build`, Prefect's embedded
server, dockerd, a local registry on 127.0.0.1), against a chip stack made fresh for the
run so that its build is a real, cold one:

  setup    a temporary matrix: the shipped one with the cpu chip's base renamed (so
           debootstrap makes a new base and the chip stack is built from nothing: apt,
           pip), the namespace `flagrelease-bench`, and a second generated model
           `tiny-llama-b` on the cpu chip (accuracy bench only); a registry of its own.
  stack    release tiny-llama: base, chip stack (cold), model image, smoke, bench, push.
  model    release tiny-llama-b on the same chip: its image build time against the chip
           stack's (goal <= 5 %), and the bytes it added to the registry (goal <= 1 MB
           beyond the stack): the growth of the registry's blob store, and the layers of
           its manifest that the stack's manifest does not list, plus its config. The
           build stage of a run includes Prefect's task orchestration; the model image
           build alone (`build.build_image`, forced, in this process) is repeated to
           give its median.
  noop     `flagrelease build` of the released tiny-llama (unchanged: nothing built, run
           or pushed) against a bare Prefect flow start (`@flow def noop(): pass; noop()`
           in a new Python process, same environment): pairs in ABBA order, ratio per
           pair; their geometric mean with a 95 % t-interval, and PASS / FAIL /
           INCONCLUSIVE against the goal (<= 1.2x) as the interval lies below, above or across it.
  resume   tiny-llama under a new release key (the gate's perf threshold moved by a
           hair): a full run (`--force`) against a run killed (SIGKILL to its process
           group) once its record shows the built image and then resumed (at the smoke
           test), and one killed once it shows the benchmarks and then resumed (at the
           gate and push). Wall times of whole CLI runs.

Afterwards every image of the `flagrelease-bench` namespace and the bench's base are
removed, the registry is stopped and the temporary home deleted.

    .venv/bin/python bench/incremental.py --pairs 10 --json /tmp/incremental.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flagrelease.adapters import docker_engine  # noqa: E402
from flagrelease.adapters.local_registry import LocalRegistry  # noqa: E402
from flagrelease.adapters.registry import RegistryClient  # noqa: E402
from flagrelease.matrix import load_matrix, select  # noqa: E402
from flagrelease.naming import key_tag  # noqa: E402
from flagrelease.record import ReleaseRecord  # noqa: E402
from flagrelease.results import StackImage  # noqa: E402
from flagrelease.settings import Settings  # noqa: E402
from flagrelease.steps import build, render  # noqa: E402

CLI = str(Path(sys.executable).parent / "flagrelease")
NAMESPACE = "flagrelease-bench"
BARE_FLOW = "from prefect import flow\n@flow\ndef noop():\n    pass\nnoop()\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_matrix(out: Path, base: str, gate_ratio: float | None = None) -> Path:
    data = yaml.safe_load((ROOT / "matrix.yaml").read_text())
    data["release"]["namespace"] = NAMESPACE
    data["chips"]["cpu"]["base"]["image"] = base
    data["models"]["tiny-llama-b"] = {
        "extends": "tiny-llama",
        "served_model_name": "tiny-llama-b-flagos",
        "bench": {"perf": None},
    }
    if gate_ratio is not None:
        data["models"]["tiny-llama"]["bench"]["gate"]["perf_min_ratio"] = gate_ratio
    data["matrix"]["include"].append({"chip": "cpu", "model": "tiny-llama-b"})
    out.mkdir(parents=True, exist_ok=True)
    for name in ("dockerfiles", "datasets", "baselines"):
        if not (out / name).exists():
            (out / name).symlink_to(ROOT / name)
    (out / "matrix.yaml").write_text(yaml.safe_dump(data))
    return out / "matrix.yaml"


class Bench:
    def __init__(self, home: Path, registry: str):
        self.home, self.registry = home, registry
        self.env = os.environ | {"FLAGRELEASE_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}

    def build(self, model: str, matrix: Path, *extra: str) -> tuple[dict, float]:
        """One `flagrelease build`: its summary and its wall time."""
        args = [CLI, "build", "--model", model, "--chip", "cpu", "--matrix", str(matrix)]
        args += ["--registry", self.registry, "--json", *extra]
        started = time.monotonic()
        proc = subprocess.run(args, capture_output=True, text=True, env=self.env, cwd=ROOT, timeout=1800)
        seconds = time.monotonic() - started
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        [summary] = json.loads(proc.stdout)
        return summary, seconds

    def bare_flow(self) -> float:
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", BARE_FLOW], check=True, capture_output=True, env=self.env, timeout=300)
        return time.monotonic() - started

    def killed_then_resumed(self, model: str, matrix: Path, after: str, client) -> tuple[dict, float, str]:
        """Start a run, kill its process group once its record shows `after` ("image" or
        "bench"), resume it; the resumed run's summary, wall time and the killed run's id."""
        args = [CLI, "build", "--model", model, "--chip", "cpu", "--matrix", str(matrix)]
        args += ["--registry", self.registry, "--json"]
        runs = self.home / "results" / f"{model}--cpu"
        known = set(runs.glob("*")) if runs.exists() else set()
        proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env, cwd=ROOT, start_new_session=True
        )
        killed = None
        while killed is None and proc.poll() is None:
            for run_dir in set(runs.glob("*")) - known:
                with contextlib.suppress(Exception):  # being written right now
                    record = ReleaseRecord.load(run_dir)
                    if getattr(record, after):
                        killed = record
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if killed is None:
            raise SystemExit(f"the run of {model} ended before its record showed {after}")
        for name in docker_engine.containers_owned_by(client, killed.run_id):
            client.containers.get(name).remove(force=True)
        summary, seconds = self.build(model, matrix)
        if summary["resumed_from"] != killed.run_id:
            raise SystemExit(f"the run after the kill did not resume {killed.run_id}: {summary['resumed_from']}")
        return summary, seconds, killed.run_id


def model_builds(client, matrix: Path, stack: dict, work: Path, repeats: int) -> list[float]:
    """Seconds of `repeats` builds of tiny-llama-b's model image on the chip stack, each forced
    (a new image: its build-time labels differ), measured inside the build step."""
    matrix_file = load_matrix(matrix)
    cell = select(matrix_file, chip="cpu", model="tiny-llama-b")[0]
    settings = Settings()
    ctx = render.render_context(cell, matrix_file, settings.build, work / "model-builds")
    seconds = []
    for _ in range(repeats):
        image = build.build_image(
            client,
            cell,
            ctx,
            StackImage.model_validate(stack),
            settings.build,
            repository=f"{NAMESPACE}/model-builds",
            tag="bench",
            release_key="0" * 64,
            force=True,
            on_line=lambda _: None,
        )
        seconds.append(image.seconds)
    return seconds


def registry_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in (root / "data").rglob("*") if p.is_file())


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


# Two-sided 95 % quantiles of Student's t by degrees of freedom (no scipy here).
T95 = {1: 12.71, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}
T95 |= {11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093}


def ratio_interval(ratios: list[float], goal: float) -> dict:
    """Geometric mean of paired ratios with its 95 % t-interval, and the verdict against `goal`."""
    logs = [math.log(r) for r in ratios]
    mean = statistics.fmean(logs)
    half = T95[len(logs) - 1] * statistics.stdev(logs) / math.sqrt(len(logs))
    low, high = math.exp(mean - half), math.exp(mean + half)
    verdict = "PASS" if high <= goal else "FAIL" if low > goal else "INCONCLUSIVE"
    return {"geomean": math.exp(mean), "ci95": [low, high], "goal": goal, "verdict": verdict}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=10, help="ABBA pairs of no-op rerun vs. bare flow (2-20)")
    parser.add_argument("--builds", type=int, default=5, help="repeats of the model image build alone")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    args = parser.parse_args()

    client = docker_engine.connect()
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    base = f"{NAMESPACE}/debian-minbase:sid-{stamp}"
    work = Path(tempfile.mkdtemp(prefix="flagrelease-bench-"))
    registry = LocalRegistry(work / "registry", free_port()).start()
    bench = Bench(work / "home", registry.address)
    out: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()},
        "load_before": os.getloadavg(),
    }
    try:
        matrix = write_matrix(work / "matrix", base)
        print("stack: releasing tiny-llama on a fresh base (debootstrap, cold chip stack)...", flush=True)
        first, first_s = bench.build("tiny-llama", matrix)
        assert first["stack"]["origin"] == "built", first["stack"]
        before = registry_bytes(registry.root)

        print("model: releasing tiny-llama-b on the same chip stack...", flush=True)
        second, second_s = bench.build("tiny-llama-b", matrix)
        assert second["stack"]["key"] == first["stack"]["key"] and second["stack"]["origin"] == "local"
        added = registry_bytes(registry.root) - before
        with RegistryClient(registry.address) as api:
            stack_ref = second["stack"]["ref"].rsplit(":", 1)[0]
            stack_layers = {
                layer["digest"] for layer in api.manifest(stack_ref, key_tag(second["stack"]["key"]))["layers"]
            }
            manifest = api.manifest(second["repository"].split("/", 1)[1], second["digest"])
        beyond = [layer for layer in manifest["layers"] if layer["digest"] not in stack_layers]
        alone = model_builds(client, matrix, second["stack"], work, args.builds)
        out["stack"] = {
            "stack_build_s": first["stack"]["seconds"],
            "first_model_build_s": first["timings"]["build"],
            "second_model_build_s": second["timings"]["build"],
            "second_over_stack": second["timings"]["build"] / first["stack"]["seconds"],
            "model_build_alone_s": spread(alone),
            "model_build_alone_over_stack": statistics.median(alone) / first["stack"]["seconds"],
            "stack_push_s": first["timings"]["push"],
            "second_push_s": second["timings"]["push"],
            "registry_bytes_added_by_second": added,
            "layers_beyond_stack": len(beyond),
            "manifest_bytes_beyond_stack": sum(layer["size"] for layer in beyond) + manifest["config"]["size"],
            "first_run_s": first_s,
            "second_run_s": second_s,
        }
        print(json.dumps(out["stack"], indent=1), flush=True)

        print(f"noop: {args.pairs} ABBA pairs of an unchanged rerun vs. a bare Prefect flow...", flush=True)
        noop, bare, ratios, stages = [], [], [], []
        for pair in range(args.pairs):
            order = ("noop", "bare") if pair % 2 == 0 else ("bare", "noop")
            took = {}
            for side in order:
                if side == "noop":
                    summary, took[side] = bench.build("tiny-llama", matrix)
                    assert summary["status"] == "unchanged", summary["status"]
                    stages.append(sum(summary["timings"].values()))
                else:
                    took[side] = bench.bare_flow()
            noop.append(took["noop"])
            bare.append(took["bare"])
            ratios.append(took["noop"] / took["bare"])
            print(f"  pair {pair + 1}: noop {took['noop']:.2f} s, bare {took['bare']:.2f} s", flush=True)
        out["noop"] = {
            "noop_s": spread(noop),
            "bare_s": spread(bare),
            "ratio": spread(ratios),
            "ratio_interval": ratio_interval(ratios, 1.2),
            "stage_seconds": spread(stages),
            "raw": {"noop": noop, "bare": bare},
        }
        print(json.dumps({k: v for k, v in out["noop"].items() if k != "raw"}, indent=1), flush=True)

        print("resume: full run vs. runs killed after the build and after the bench, then resumed...", flush=True)
        full, full_s = bench.build("tiny-llama", write_matrix(work / "matrix-full", base, 0.49), "--force")
        at_smoke, at_smoke_s, _ = bench.killed_then_resumed(
            "tiny-llama", write_matrix(work / "matrix-smoke", base, 0.48), "image", client
        )
        at_gate, at_gate_s, _ = bench.killed_then_resumed(
            "tiny-llama", write_matrix(work / "matrix-gate", base, 0.47), "bench", client
        )
        out["resume"] = {
            "full_s": full_s,
            "full_timings": full["timings"],
            "resumed_at_smoke_s": at_smoke_s,
            "resumed_at_smoke_took_over": at_smoke["taken_over"],
            "resumed_at_smoke_over_full": at_smoke_s / full_s,
            "resumed_at_gate_s": at_gate_s,
            "resumed_at_gate_took_over": at_gate["taken_over"],
            "resumed_at_gate_over_full": at_gate_s / full_s,
        }
        print(json.dumps(out["resume"], indent=1), flush=True)
    finally:
        out["load_after"] = os.getloadavg()
        registry.stop()
        for image in client.images.list():
            if any(tag.startswith((f"{NAMESPACE}/", f"{registry.address}/")) for tag in image.tags):
                with contextlib.suppress(Exception):
                    client.images.remove(image.id, force=True)
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
