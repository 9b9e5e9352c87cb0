"""One run of a cell at a time per state directory (FLAGRELEASE_HOME).

Two runs of one cell would push to the same repository, write the same results directory
and serve the same image at once. A run holds `<home>/locks/<cell>.lock` (an flock) from
before its first step to its end; a second run of the cell is refused at once, with the
holder named. The kernel drops an flock when its process dies, however it dies (kill -9
too), so a lock that can be taken means no live run of the cell: whatever an earlier run
of it left behind (containers) belongs to a dead run and may be reaped.

In a fleet each host has its own state directory; there the Prefect concurrency limit of
the cell (flows/fleet.py) keeps runs of a cell on different hosts apart.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path

from flagrelease.errors import ServiceError


def home_id(home: Path) -> str:
    """A short id of a state directory on this host: what containers are labelled with, so a
    run reaps only what runs of its own lock domain left (other homes may share dockerd)."""
    return hashlib.sha256(f"{socket.gethostname()}:{home.resolve()}".encode()).hexdigest()[:16]


class CellLock:
    """`with CellLock(home, cell, run_id):` or acquire()/release()."""

    def __init__(self, home: Path, cell: str, run_id: str):
        self.path = home / "locks" / f"{cell}.lock"
        self.cell = cell
        self.run_id = run_id
        self._fd: int | None = None

    def acquire(self) -> CellLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = _holder(fd)
            os.close(fd)
            raise ServiceError(
                f"another run of {self.cell} is in progress ({who}); two runs of one cell would "
                "push and record over each other, so this one did not start",
                where=str(self.path),
                fix="wait for that run to end (or stop it: SIGTERM or Ctrl-C cleans up) and run again",
            ) from None
        holder = {
            "run_id": self.run_id,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(holder).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> CellLock:
        return self.acquire()

    def __exit__(self, *_exc) -> None:
        self.release()


def _holder(fd: int) -> str:
    """Who holds the lock, as it wrote itself into the file (best effort: it may be mid-write)."""
    try:
        found = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"run {found['run_id']}, pid {found['pid']} on {found['host']}, since {found['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"
