"""`build` in a pseudo-terminal (pexpect), its screen read back through a terminal emulator
(pyte): what a person at a terminal sees. tty mode keeps a cached release short and puts
every line in run.log; plain mode streams the log lines, the build's among them."""

from __future__ import annotations

import re
from pathlib import Path

import pexpect
import pyte

from flagrelease.record import ReleaseRecord
from tests.conftest import CLI, ROOT, _cli_env

ROWS, COLS = 50, 120


def spawn(*args: str, home: Path, extra_env: dict[str, str] | None = None) -> pexpect.spawn:
    env = _cli_env(home, (extra_env or {}) | {"TERM": "xterm-256color", "COLUMNS": str(COLS)})
    return pexpect.spawn(CLI, list(args), env=env, cwd=str(ROOT), dimensions=(ROWS, COLS), timeout=600)


def finish(child: pexpect.spawn) -> tuple[int, str]:
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus, child.before.decode("utf-8", "replace")


def screen_lines(output: str) -> list[str]:
    """The lines a terminal shows after `output`, scrolled-off lines included: cursor movement
    and redrawing (the live display) applied, trailing blank lines dropped."""
    screen = pyte.HistoryScreen(COLS, ROWS, history=10_000)
    pyte.Stream(screen).feed(output)
    scrolled = ["".join(char.data for char in line.values()).rstrip() for line in screen.history.top]
    lines = scrolled + [line.rstrip() for line in screen.display]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def newest_run(home: Path, cell: str = "tiny-llama--cpu") -> Path:
    return max((home / "results" / cell).iterdir(), key=lambda run: run.name)


def test_a_cached_release_in_tty_mode_is_short_and_logs_everything_to_run_log(released, registry, fr_home, s3):
    args = ("build", "--model", "tiny-llama", "--chip", "cpu", "--registry", registry.address)
    child = spawn(*args, home=fr_home, extra_env=s3["env"])
    code, output = finish(child)
    lines = screen_lines(output)
    shown = "\n".join(lines)
    assert code == 0, shown
    assert len(lines) < 60, shown
    assert re.search(r"✓ tiny-llama--cpu\s+unchanged", shown)
    assert re.search(r"✓ key\s+\d+\.\d s\s+unchanged: released as " + released["tags"][0], shown)
    assert "Finished in state" not in shown  # Prefect's console lines stay off the terminal

    run_dir = newest_run(fr_home)
    record = ReleaseRecord.load(run_dir)
    assert record.status == "unchanged" and record.files["log"] == "run.log"
    log = (run_dir / "run.log").read_text()
    assert f"full log: {run_dir / 'run.log'}" in shown.replace("\n", "")
    for line in (
        f"unchanged: {released['repository']}@{released['digest']}",
        "stage key done in",
        "Task run 'preflight-",
        "Finished in state Completed()",
    ):
        assert line in log, line
    assert len(log.splitlines()) > 10


def test_plain_mode_streams_the_log_lines_as_they_come(tmp_path):
    """A forced build (no registry, so nothing is pushed) whose smoke test cannot pass in 1 s:
    the BuildKit lines reach the terminal while the run goes on, then the error block."""
    child = spawn(
        "build",
        "--model",
        "tiny-llama",
        "--chip",
        "cpu",
        "--no-push",
        "--force",
        "--smoke-timeout",
        "1",
        "--progress",
        "plain",
        home=tmp_path / "home",
    )
    child.expect(r"Task run 'build-[^']+' - #\d+ \[")  # a BuildKit step, in Prefect's log format
    assert child.isalive()  # streamed: the run is still going
    code, output = finish(child)
    assert code == 3, output[-3000:]
    assert "stage smoke failed after" in output, output[-3000:]
    assert "error:" in output and "the serve stack did not become ready" in output
    run_dir = newest_run(tmp_path / "home")
    assert re.search(r"Task run 'build-[^']+' - #\d+ \[", (run_dir / "run.log").read_text())
