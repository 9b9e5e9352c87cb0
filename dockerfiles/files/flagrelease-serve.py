"""Foreground supervisor of the serve stack inside a FlagRelease image (runs as PID 1).

It runs the launcher the image was rendered with (/workspace/serve/launch.json, from
dockerfiles/launchers/): `flagscale serve` (FlagScale writes a run script that starts the
engine with nohup and returns at once; the engine is followed by its pid file) or an engine
in the foreground (`vllm serve`). A container needs a foreground process that lives exactly
as long as the engine, shows the engine's output in `docker logs`, and turns `docker stop`
(SIGTERM) into a clean engine shutdown instead of a 10 s wait.

FLAGRELEASE_SIDE=native|flaggems starts one side of the comparison: the engine gets exactly
the environment the launcher declares for that side (a variable only the other side declares
is removed). Unset, the image's environment stands as it is (and `-e USE_FLAGGEMS=...` works
as before). Standard library only: it runs on every chip's Python.
"""

import glob
import json
import os
import signal
import subprocess
import sys
import threading
import time

LAUNCH_SPEC = os.environ.get("FLAGRELEASE_LAUNCH_SPEC", "/workspace/serve/launch.json")
EXP_DIR = os.environ.get("FLAGRELEASE_EXP_DIR", "/workspace/outputs")
GRACE_S = 8.0


def follow(path: str, stop: threading.Event) -> None:
    """Copy the engine's log file to our stdout as it grows (tail -F)."""
    while not os.path.exists(path) and not stop.is_set():
        time.sleep(0.1)
    with open(path, "rb") as log:
        while True:
            chunk = log.read(65536)
            if chunk:
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
            elif stop.is_set():
                return
            else:
                time.sleep(0.1)


def reap() -> dict[int, int]:
    """As PID 1 we inherit the engine once its launcher exits: collect exit codes."""
    done = {}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return done
        if pid == 0:
            return done
        done[pid] = os.waitstatus_to_exitcode(status)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def others_running() -> bool:
    """Any live (non-zombie) process besides us? In the container those are all the engine's."""
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                        return True
            except OSError:
                continue
    return False


def shutdown(signum: int, _frame) -> None:
    print(f"flagrelease-serve: signal {signum}, stopping the engine", flush=True)
    os.kill(-1, signal.SIGTERM)  # every process but PID 1: the engine and its launchers
    deadline = time.monotonic() + GRACE_S
    while others_running() and time.monotonic() < deadline:
        reap()
        time.sleep(0.1)
    if others_running():
        os.kill(-1, signal.SIGKILL)
    sys.exit(128 + signum)


def side_environment(spec: dict, side: str | None) -> dict[str, str]:
    """This process's environment, with the declared one of `side` (when one is asked for)."""
    env = dict(os.environ)
    if side is None:
        return env
    sides = spec["sides"]
    if side not in sides:
        raise SystemExit(f"flagrelease-serve: FLAGRELEASE_SIDE={side!r} is not one of {sorted(sides)}")
    for name in {name for declared in sides.values() for name in declared}:
        env.pop(name, None)
    env.update(sides[side])
    shown = " ".join(f"{k}={v}" for k, v in sorted(sides[side].items()))
    print(f"flagrelease-serve: {spec['launcher']} launcher, side {side}: {shown}", flush=True)
    return env


def flagscale_engine(command: list[str], env: dict[str, str]) -> tuple[int, str] | int:
    """Run `flagscale serve`; the engine it started (pid, log file), or the exit code of a failure."""
    launch = subprocess.run(command, env=env)
    pid_files = glob.glob(f"{EXP_DIR}/**/pids/*.pid", recursive=True)
    if launch.returncode != 0 or not pid_files:
        print(f"flagrelease-serve: flagscale serve exited {launch.returncode}, no engine started", flush=True)
        return launch.returncode or 1
    with open(pid_files[0]) as f:
        engine = int(f.read().split()[0])
    return engine, pid_files[0].replace("/pids/", "/").removesuffix(".pid") + ".output"


def main() -> int:
    if os.getpid() != 1:  # shutdown() signals every process in the PID namespace
        print("flagrelease-serve must run as PID 1 of a FlagRelease container", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    with open(LAUNCH_SPEC) as f:
        spec = json.load(f)
    env = side_environment(spec, os.environ.get("FLAGRELEASE_SIDE") or None)
    stop = threading.Event()
    tail = None
    if spec["mode"] == "foreground":  # the engine writes to our stdout itself
        engine = subprocess.Popen(spec["command"], env=env).pid
    else:
        started = flagscale_engine(spec["command"], env)
        if isinstance(started, int):
            return started
        engine, log_file = started
        tail = threading.Thread(target=follow, args=(log_file, stop), daemon=True)
        tail.start()
    code = 0
    while True:
        exited = reap()
        if engine in exited:
            code = exited[engine]
            break
        if not alive(engine):
            code = 1
            break
        time.sleep(0.2)
    stop.set()
    if tail is not None:
        tail.join(timeout=2)
    print(f"flagrelease-serve: engine exited with {code}", flush=True)
    return code or 1  # a serving engine never ends on its own: ending is a failure


if __name__ == "__main__":
    sys.exit(main())
