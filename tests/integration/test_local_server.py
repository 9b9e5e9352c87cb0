"""The Prefect server of a run without PREFECT_API_URL (flows/local_server.py), in a real
process: Ctrl-C in a terminal does not take it down before the run has cleaned up, and a
killed run does not leave it behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import httpx
import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.local_server import local_server

# Holds the server until interrupted; then asks it for its health, as a cell's cleanup would
# report its states, and says what it got.
RUN = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import httpx
    from prefect.settings import PREFECT_API_URL
    from flows.local_server import local_server

    with local_server(Path(sys.argv[1]) / "server.log"):
        url = PREFECT_API_URL.value()
        try:
            print(url, flush=True)  # inside the try: the test signals as soon as it reads this
            time.sleep(300)
        except KeyboardInterrupt:
            time.sleep(1)  # the signal has reached the whole group by now
            print("after the interrupt:", httpx.get(url + "/health", timeout=10).status_code, flush=True)
    """
)


def start(tmp_path) -> tuple[subprocess.Popen, str]:
    env = os.environ | {"PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,  # a terminal's foreground group of its own
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:"), url + proc.stdout.read()
    return proc, url


def down(url: str) -> bool:
    try:
        httpx.get(url + "/health", timeout=2)
    except httpx.HTTPError:
        return True
    return False


def test_ctrl_c_to_the_group_leaves_the_server_up_until_the_run_is_done(tmp_path):
    proc, url = start(tmp_path)
    os.killpg(proc.pid, signal.SIGINT)
    try:
        output = proc.communicate(timeout=120)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output = proc.communicate()[0]
        log = (tmp_path / "server.log").read_text(errors="replace")
        pytest.fail(f"the run did not end within 120 s of SIGINT:\n{output[-3000:]}\nserver log:\n{log[-2000:]}")
    assert "after the interrupt: 200" in output, output[-2000:]
    assert down(url), "the server outlived the run"


def test_a_killed_run_takes_its_server_along(tmp_path):
    proc, url = start(tmp_path)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 20
    while not down(url):
        assert time.monotonic() < deadline, "the server outlived its killed run by 20 s"
        time.sleep(0.2)


def test_a_configured_server_is_used_as_it_is(tmp_path):
    """PREFECT_API_URL set (here as a Prefect setting, as a profile would): no server of our own."""
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}), local_server(tmp_path / "server.log"):
        assert PREFECT_API_URL.value() == "http://127.0.0.1:9/api"
    assert not (tmp_path / "server.log").exists()
