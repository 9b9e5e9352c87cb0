"""Each cell run's full log in its results directory: `results/<cell>/<run>/run.log`.

Every line the run logs, its tasks' lines and Prefect's own lines about them (task
created, state changes, tracebacks of failures) go to the file as well as to the
Prefect API, whatever the console shows. Records are picked by their flow run id, so
cells running side by side in one process keep apart.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect import get_run_logger
from prefect.context import FlowRunContext, TaskRunContext
from prefect.logging.formatters import PrefectFormatter
from prefect.logging.loggers import flow_run_logger

from flagrelease.errors import ServiceError

_FORMAT = "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(name)s - %(message)s"


class _OfRun(logging.Filter):
    def __init__(self, flow_run_id: str) -> None:
        super().__init__()
        self.flow_run_id = flow_run_id

    def filter(self, record: logging.LogRecord) -> bool:
        return str(getattr(record, "flow_run_id", "")) == self.flow_run_id


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    """The logger of the run this code is in. Prefect's get_run_logger() answers, in the body of
    a subflow started by a task (a cell run in the matrix's lane), that task's logger: its lines
    would carry the matrix's flow run id and reach neither the cell's run.log nor its display line."""
    flow_run, task_run = FlowRunContext.get(), TaskRunContext.get()
    if flow_run and flow_run.flow_run and task_run and task_run.task_run.flow_run_id != flow_run.flow_run.id:
        return flow_run_logger(flow_run.flow_run, flow_run.flow)
    return get_run_logger()


class _RunLogHandler(logging.FileHandler):
    """A disk that fills up costs the run log its last lines, not the run a traceback on the
    terminal: the run's own error (or the record's save) says what happened."""

    def handleError(self, record: logging.LogRecord) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handleError(record)


@contextmanager
def run_log(path: Path) -> Iterator[Path]:
    """Write the current flow run's log lines to `path` while the block runs."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise RuntimeError("run_log() belongs inside a flow run")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = _RunLogHandler(path, encoding="utf-8")
    except OSError as err:
        raise ServiceError(
            f"cannot write the run log: {err.strerror}", where=str(path), fix="free space on that disk"
        ) from None
    handler.setFormatter(
        PrefectFormatter(
            format=_FORMAT,
            datefmt="%Y-%m-%d %H:%M:%S",
            flow_run_fmt="%(asctime)s.%(msecs)03d | %(levelname)-7s | Flow run %(flow_run_name)r - %(message)s",
            task_run_fmt="%(asctime)s.%(msecs)03d | %(levelname)-7s | Task run %(task_run_name)r - %(message)s",
        )
    )
    handler.addFilter(_OfRun(str(context.flow_run.id)))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        # A full disk fails the last flush: the run's own error (or the record's save) says so.
        with contextlib.suppress(OSError):
            handler.close()
