"""SIGTERM and SIGINT stop a release the way Ctrl-C stops a one-threaded program.

Python runs signal handlers in the main thread only, but cells run in the task runner's
threads (several at once with --jobs): left alone, a cell would go on building, serving
and pushing while the main thread waits for it, and a harder kill would orphan its
containers. So the interrupt raised in the main thread (by the handler here, or by
Prefect's own SIGTERM handler while a flow runs) is raised again, where the matrix flow
waits for its cells, in every thread running a cell. There it unwinds through the cell's
own cleanup: `finally` blocks remove containers, kill a running build, delete a release
or staging tag that has no key tag yet, and save the record as `interrupted`.

An interrupt raised in another thread lands at its next bytecode: within a fraction of a
second for a cell polling a container, reading a build log or a push stream, or running
a benchmark's event loop. The record of cell threads is process-wide because signals
are; nothing else is kept here.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from prefect.exceptions import TerminationSignal

from flagrelease.errors import Interrupted, Terminated

# How long the cleanup after a signal may take before the process ends regardless (the next
# run of the cell reaps what is left): a cell thread blocked in a call that does not return.
GRACE_SECONDS = 60.0

_lock = threading.Lock()
_cells: dict[int, bool] = {}  # thread ident -> already interrupted
_handled = threading.Event()  # this handler saw a signal: the next one ends the process
_armed = threading.Event()  # the grace timer runs


def install() -> None:
    """Handle SIGTERM and SIGINT from here on: the first raises the interrupt in the main
    thread (where the matrix flow waits for its cells and passes it on, `stop_cells`); a
    second ends the process at once. While a flow runs, Prefect's engine takes SIGTERM over
    (its TerminationSignal) and hands it back to this handler when the flow has unwound."""
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)


def _on_signal(signum: int, _frame) -> None:
    interrupt = Terminated if signum == signal.SIGTERM else Interrupted
    if _handled.is_set():
        _end_now(interrupt, "a second signal")
    _handled.set()
    raise interrupt(f"stopped by {interrupt.signal_name}")


def _end_now(interrupt: type[Interrupted], why: str) -> None:
    sys.stderr.write(
        f"error: stopped by {interrupt.signal_name}; {why}: ending now. The next run of the cell removes "
        "the containers this one left.\n"
    )
    sys.stderr.flush()
    os._exit(interrupt.exit_code)


def wait_awake(futures: list[concurrent.futures.Future]) -> None:
    """Wait for `futures`, waking every half second. The kernel may deliver a signal to any
    thread; Python then runs its handler in the main thread only when that thread next runs
    Python code, which a wait without a timeout would postpone until the cells are done."""
    pending = set(futures)
    while pending:
        _, pending = concurrent.futures.wait(pending, timeout=0.5)


def interrupt_of(err: BaseException) -> type[Interrupted] | None:
    """The interrupt a signal raised as `err`, or None when `err` is no signal's."""
    if isinstance(err, Interrupted):
        return type(err)
    if isinstance(err, TerminationSignal):
        return Terminated
    if isinstance(err, KeyboardInterrupt):
        return Interrupted
    return None


@contextmanager
def stoppable() -> Iterator[None]:
    """Mark the current thread as running a cell while the block runs."""
    ident = threading.get_ident()
    with _lock:
        _cells[ident] = False
    try:
        yield
    finally:
        with _lock:
            interrupted = _cells.pop(ident, False)
        if interrupted:
            # The steps ended before a pending interrupt landed: drop it, so it does not
            # break the record's saving that follows (the main thread stops the run anyway).
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), None)


def stop_cells(err: BaseException) -> None:
    """Where the main thread waits for cells: when `err` is a signal's, raise it in every
    thread running a cell (once each), and end the process if their cleanup is still
    running after GRACE_SECONDS."""
    interrupt = interrupt_of(err)
    if interrupt is None:
        return
    with _lock:
        if not _armed.is_set():
            _armed.set()
            why = f"cleanup still running after {GRACE_SECONDS:g} s"
            timer = threading.Timer(GRACE_SECONDS, _end_now, args=(interrupt, why))
            timer.daemon = True
            timer.start()
        main = threading.main_thread().ident
        for ident, done in _cells.items():
            if done or ident == main:
                continue
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(interrupt))
            _cells[ident] = True
