"""What the fleet costs and buys: two independent runnable cells released serially, two at once
in one process (`--jobs 2`), and through a real Prefect server with two process workers; and
one cell through server + worker against the same cell in process. Ratios measured in one run.

    .venv/bin/python bench/fleet_overhead.py --repeats 2 --json /tmp/fleet.json

Cells are `tiny-llama x cpu` and `tiny-llama x cpu-b` (the runnable cpu chip twice, different
chip codes, pools A and B), with an accuracy-only bench plan, `--no-push` (release tags are
per minute) and a warm Docker cache (a warm-up release builds both images first, untimed).
Every wall time is the user's: the `flagrelease` command from start to exit. The in-process
runs pay the embedded Prefect server's start (~13 s) each time; the fleet runs do not (the
server is already up), but pay a worker's flow-run process start (~5 s) per cell.
Order alternates ABBA between repeats; everything stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_matrix(directory: Path) -> Path:
    data = yaml.safe_load((ROOT / "matrix.yaml").read_text())
    data["chips"]["cpu"]["pool"] = "bench-a"
    data["chips"]["cpu-b"] = {"extends": "cpu", "chip_code": "cpu002", "pool": "bench-b"}
    data["models"]["tiny-llama"]["bench"]["perf"] = None
    data["matrix"] = {"chip": ["cpu", "cpu-b"], "model": ["tiny-llama"]}
    data["fleet"] = {"concurrency": 2, "orchestrator_pool": "bench-orchestrator", "worker_wait_seconds": 60}
    for name in ("dockerfiles", "datasets", "baselines"):
        (directory / name).symlink_to(ROOT / name)
    (directory / "matrix.yaml").write_text(yaml.safe_dump(data))
    return directory / "matrix.yaml"


def timed(args: list[str], env: dict[str, str]) -> float:
    started = time.monotonic()
    proc = subprocess.run(
        [str(BIN / "flagrelease"), *args, "--json"], env=env, capture_output=True, text=True, timeout=1200
    )
    seconds = time.monotonic() - started
    outcomes = json.loads(proc.stdout) if proc.stdout.strip().startswith("[") else []
    bad = [o["cell"] for o in outcomes if o["status"] != "built"]
    if proc.returncode != 0 or bad or not outcomes:
        raise SystemExit(f"flagrelease {' '.join(args)} failed ({proc.returncode}, {bad}):\n{proc.stderr[-3000:]}")
    return seconds


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        args, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    matrix = write_matrix(work)
    base = os.environ | {
        "FLAGRELEASE_HOME": str(work / "home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_HOME": str(work / "prefect-client"),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }
    base.pop("PREFECT_API_URL", None)
    local = ["release", "--matrix", str(matrix), "--no-push", "--local"]
    procs: list[subprocess.Popen] = []
    results: dict[str, list[float]] = {"serial": [], "jobs2": [], "fleet2": [], "one_local": [], "one_fleet": []}
    try:
        print("warm-up: building both images", flush=True)
        timed([*local, "--jobs", "2"], base)
        port = free_port()
        server_env = base | {"PREFECT_HOME": str(work / "prefect-server")}
        procs.append(
            start(
                [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                server_env,
                work / "server.log",
            )
        )
        api = f"http://127.0.0.1:{port}/api"
        for _ in range(180):
            try:
                if httpx.get(f"{api}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        fleet = base | {"PREFECT_API_URL": api}
        subprocess.run(
            [str(BIN / "flagrelease"), "deploy", "--matrix", str(matrix)], env=fleet, check=True, capture_output=True
        )
        for chip in ("cpu", "cpu-b"):
            procs.append(
                start(
                    [str(BIN / "flagrelease"), "worker", "--chip", chip, "--matrix", str(matrix)],
                    fleet,
                    work / f"worker-{chip}.log",
                )
            )
        time.sleep(10)  # workers register
        fleet_cmd = ["release", "--matrix", str(matrix), "--no-push"]
        for r in range(args.repeats):
            order = ["serial", "jobs2", "fleet2"] if r % 2 == 0 else ["fleet2", "jobs2", "serial"]
            for kind in order:
                print(f"repeat {r + 1}: {kind}", flush=True)
                if kind == "serial":
                    results[kind].append(timed([*local, "--jobs", "1"], base))
                elif kind == "jobs2":
                    results[kind].append(timed([*local, "--jobs", "2"], base))
                else:
                    results[kind].append(timed(fleet_cmd, fleet))
            for kind in ["one_local", "one_fleet"] if r % 2 == 0 else ["one_fleet", "one_local"]:
                print(f"repeat {r + 1}: {kind}", flush=True)
                one = ["--chip", "cpu-b"]
                results[kind].append(
                    timed([*local, *one], base) if kind == "one_local" else timed([*fleet_cmd, *one], fleet)
                )
    finally:
        for proc in reversed(procs):  # workers before the server
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    report = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": results,
        "median": med,
        "ratios": {
            "jobs2 / serial": med["jobs2"] / med["serial"],
            "fleet (2 workers) / serial": med["fleet2"] / med["serial"],
            "one cell: fleet / in process": med["one_fleet"] / med["one_local"],
        },
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
