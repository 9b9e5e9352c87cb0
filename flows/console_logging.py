"""Keep Prefect's tracebacks of handled failures off the console.

Prefect logs a failed task or flow run at ERROR with the Python traceback (`exc_info`),
then a "Finished in state Failed(...)" line. For a FlagReleaseError (a push refused, a
smoke test failing, a gate saying no) that is noise before the error block the CLI
prints itself (what, where, how to fix). These records still reach the run's log in the
Prefect API (their handler sits on `prefect.flow_runs` / `prefect.task_runs`); only the
console handler, on the root logger, drops them. The same goes for a run stopped
by SIGTERM or SIGINT: the CLI says so once. Any other exception keeps its traceback on the
console: it is a bug, and the traceback is how it gets fixed.
"""

from __future__ import annotations

import logging
import re

from prefect.exceptions import TerminationSignal
from prefect.logging.handlers import PrefectConsoleHandler

from flagrelease.errors import FlagReleaseError

# Prefect 3's state line: "Task run encountered an exception ServiceError: ..." for a task,
# "Flow run encountered an exception: ServiceError: ..." for a flow.
# A run stopped by SIGTERM / SIGINT: every task and flow it was in says so ("Crash
# detected! ...", "Finished in state Crashed(...)"); the CLI prints one line for all of them.
_STOPPED = re.compile(
    r"^(Crash detected! |Finished in state Crashed\(')Execution was aborted by an? (interrupt|termination) signal"
)
_FAILED_STATE = re.compile(r"^Finished in state Failed\('(?:Task|Flow) run encountered an exception:? (\w+):")


def _handled_names(cls: type[FlagReleaseError] = FlagReleaseError) -> set[str]:
    return {cls.__name__} | {name for sub in cls.__subclasses__() for name in _handled_names(sub)}


class HideHandledFailures(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.names = _handled_names()

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(("prefect.flow_runs", "prefect.task_runs")):
            return True
        if record.exc_info and isinstance(record.exc_info[1], (FlagReleaseError, KeyboardInterrupt, TerminationSignal)):
            return False
        message = record.getMessage()
        if _STOPPED.match(message):
            return False
        state = _FAILED_STATE.match(message)
        return not (state and state.group(1) in self.names)


def hide_handled_failures() -> None:
    """Put the filter on the console handlers Prefect configured (once each)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and not any(
            isinstance(f, HideHandledFailures) for f in handler.filters
        ):
            handler.addFilter(HideHandledFailures())
