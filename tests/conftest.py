"""Shared fixtures. Integration fixtures start the real services (registry on
loopback) and talk to the real dockerd that scripts/bootstrap started."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from subprocess import PIPE

import yaml

from flagrelease.adapters.loopback import free_port  # noqa: F401 (the tests import it from here)

ROOT = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).parent / "flagrelease")


def shipped_matrix() -> dict:
    """The shipped matrix.yaml as data, for a test to change."""
    return yaml.safe_load((ROOT / "matrix.yaml").read_text())


def write_matrix(directory: Path, data: dict) -> Path:
    """`data` as `directory`/matrix.yaml, beside links to the shipped templates, datasets and
    baselines (a matrix's relative paths resolve from its own directory)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("dockerfiles", "datasets", "baselines"):
        if not (directory / name).exists():
            (directory / name).symlink_to(ROOT / name)
    path = directory / "matrix.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _cli_env(home: Path, extra_env: dict[str, str] | None) -> dict[str, str]:
    return os.environ | {"FLAGRELEASE_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"} | (extra_env or {})


def run_cli(*args: str, home: Path, timeout: float = 900, extra_env: dict[str, str] | None = None):
    """Run the installed `flagrelease` console script as a user would. Past `timeout` it gets
    SIGTERM first, as a CI would send it, so that it removes its containers before it goes."""
    env = _cli_env(home, extra_env)
    with subprocess.Popen([CLI, *args], stdout=PIPE, stderr=PIPE, text=True, env=env, cwd=ROOT) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                stdout, stderr = proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                stdout, stderr = proc.communicate()
            raise subprocess.TimeoutExpired(proc.args, timeout, stdout, stderr) from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def start_cli(*args: str, home: Path, log: Path) -> subprocess.Popen:
    """Start `flagrelease` in a process group of its own (its Prefect server included), so that
    `os.killpg` can kill the whole run the way a lost host or `kill -9` would."""
    with log.open("w") as out:
        return subprocess.Popen(
            [CLI, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_cli_env(home, None),
            cwd=ROOT,
            start_new_session=True,
        )


def parse_json_stdout(proc) -> object:
    """--json output is the whole of stdout: logs and progress go to stderr."""
    return json.loads(proc.stdout)


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run the opt-in slow tests (stand-in vendor builds)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    import pytest

    skip = pytest.mark.skip(reason="opt-in: pass --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
