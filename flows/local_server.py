"""The Prefect server of a run in this process (no PREFECT_API_URL): Prefect's embedded
server, but started here, in a process group of its own.

Started by Prefect's client, it shares the run's process group, and Ctrl-C in a terminal
(SIGINT to the whole foreground group) stops it with the run: every state the cells then
report while they clean up is retried against a dead port (the client backs off 2, 4, 8, 16
and 32 s), past the cleanup's grace, and containers stay behind. In its own group it outlives
the interrupt until the run has cleaned up; the parent-death signal ends it with the run even
when the run is killed outright.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import prefect.context
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_API_URL, temporary_settings

from flagrelease.adapters.loopback import free_port
from flagrelease.errors import ServiceError

PR_SET_PDEATHSIG = 1
# The server's start (migrations on a fresh database) on a busy 2-core build host.
START_TIMEOUT_S = 90.0


@contextmanager
def local_server(log: Path) -> Iterator[None]:
    """Unless a Prefect server is configured (PREFECT_API_URL, from the environment or the
    Prefect profile), run the block against a local server on a loopback port, logging to `log`."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if PREFECT_API_URL.value():
        yield
        return
    port = free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app"]
            + ["--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"],
            env=os.environ | {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1"},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            process_group=0,  # not in the terminal's foreground group: Ctrl-C does not reach it
            preexec_fn=_end_with_parent,
        )
    try:
        url = f"http://127.0.0.1:{port}/api"
        _wait_healthy(proc, url, log)
        with temporary_settings({PREFECT_API_URL: url}), _everywhere():
            try:
                yield
            finally:  # what the run logged and emitted reaches the server before it goes
                APILogWorker.drain_all(timeout=5)
                EventsWorker.drain_all(timeout=5)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _everywhere():
    """The settings also for threads started without the caller's context (Prefect's own
    background workers): otherwise Prefect starts an embedded server of its own for them.
    Prefect's `prefect_test_harness` does the same, with the same internal helper."""
    return prefect.context._temporary_global_settings_context(prefect.context.get_settings_context())


def _end_with_parent() -> None:
    """In the child, before exec: SIGTERM when the process that started it dies (Linux)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait_healthy(proc: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise ServiceError(
        f"the local Prefect server did not start within {START_TIMEOUT_S:g} s"
        + (f" (it exited with {proc.returncode})" if proc.poll() is not None else ""),
        where=str(log),
        fix="read its log; or run a Prefect server and set PREFECT_API_URL to it",
    )
