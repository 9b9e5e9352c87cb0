"""A real S3 API for the tests: `moto_server` on a free loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

ACCESS_KEY = "AKIAFLAGRELEASETEST"
SECRET_KEY = "flagrelease-test-secret-do-not-leak"
REGION = "us-east-1"
MOTO_SERVER = str(Path(sys.executable).parent / "moto_server")


def start_moto(log: Path, **env: str):
    """A moto_server subprocess on a free port, once it answers; the caller stops it."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [MOTO_SERVER, "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=os.environ | env,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            httpx.get(f"{url}/moto-api/", timeout=1.0)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    stop(proc)
    pytest.fail(f"moto_server did not answer on {url}:\n{log.read_text(errors='replace')[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
