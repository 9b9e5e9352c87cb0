"""The perf gate's power on this machine: how often identical stacks PASS (they must never
FAIL), and that a really slowed side is never PASSed. Each trial is a real release of the
runnable cpu cell (`flagrelease build --no-push --force`): both sides served from the same
image, measured in the shipped plan's paired windows, judged at FlagRelease's 0.8.

    .venv/bin/python bench/perf_gate_power.py --identical 5 --slowed 2 --json /tmp/power.json

`--slowed` trials give the flaggems side half a CPU (`bench.side_cpus`, docker --cpus 0.5): half
of what its one-thread engine uses. Trials alternate kinds (identical first). Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def trial(work: Path, slowed: bool) -> dict:
    data = yaml.safe_load((ROOT / "matrix.yaml").read_text())
    if slowed:
        data["models"]["tiny-llama"]["bench"]["side_cpus"] = {"flaggems": 0.5}
    (work / "matrix.yaml").write_text(yaml.safe_dump(data))
    env = os.environ | {"FLAGRELEASE_HOME": str(work / "home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    started = time.monotonic()
    proc = subprocess.run(
        [
            str(BIN / "flagrelease"),
            "build",
            "-m",
            "tiny-llama",
            "-c",
            "cpu",
            "--matrix",
            str(work / "matrix.yaml"),
            "--no-push",
            "--force",
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    [summary] = json.loads(proc.stdout)
    run_dir = work / "home" / "results" / "tiny-llama--cpu" / summary["run_id"]
    record = json.loads((run_dir / "release.json").read_text())
    if record["gate"] is None:  # the release failed before its gate: a broken trial, not a verdict
        return {"slowed": slowed, "exit": proc.returncode, "gate": "NO GATE", "error": summary.get("error")}
    levels = [
        {
            "level": f"c={p['level']['max_concurrency']}",
            "verdict": p["verdict"],
            "ratio": p["level"]["output_throughput"],
            "ci": [p["ci_low"], p["ci_high"]],
            "pairs": len(p["level"]["pair_ratios"]),
        }
        for p in record["gate"]["perf"]
    ]
    return {
        "slowed": slowed,
        "exit": proc.returncode,
        "gate": record["gate"]["verdict"],
        "levels": levels,
        "bench_s": record["timings"].get("bench"),
        "wall_s": round(time.monotonic() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identical", type=int, default=5)
    parser.add_argument("--slowed", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    order = []
    for i in range(max(args.identical, args.slowed)):
        order += [False] if i < args.identical else []
        order += [True] if i < args.slowed else []
    trials = []
    for slowed in order:
        work = Path(tempfile.mkdtemp(prefix="power-"))
        for name in ("dockerfiles", "datasets", "baselines"):
            (work / name).symlink_to(ROOT / name)
        try:
            result = trial(work, slowed)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        trials.append(result)
        print(json.dumps(result), flush=True)
    report = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average": os.getloadavg(),
        "identical": Counter(t["gate"] for t in trials if not t["slowed"]),
        "slowed": Counter(t["gate"] for t in trials if t["slowed"]),
        "trials": trials,
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
