"""The one error type users see: what went wrong, where, and how to fix it.

Messages quote what the user wrote through `excerpt` (bounded: a hostile value must not
make the message itself huge) and propose near-miss names through `did_you_mean`.
"""

import difflib
import reprlib
from collections.abc import Iterable
from typing import Any


class FlagReleaseError(Exception):
    """A user-facing failure. The CLI prints it and exits with `exit_code`."""

    exit_code = 2
    # The release record of the run that failed, when there was one (the CLI shows how far it got).
    record: Any = None

    def __init__(self, problem: str, *, where: str | None = None, fix: str | None = None):
        self.problem = problem
        self.where = where
        self.fix = fix
        super().__init__(self.render())

    def render(self) -> str:
        parts = [self.problem]
        if self.where:
            parts.append(f"  where: {self.where}")
        if self.fix:
            parts.append(f"  fix:   {self.fix}")
        return "\n".join(parts)


class ConfigError(FlagReleaseError):
    """matrix.yaml or a command-line selection is wrong; nothing was built."""


class ServiceError(FlagReleaseError):
    """An external system (dockerd, registry, S3, served model) refused or failed.

    As such it is permanent: repeating the same call would get the same answer
    (a refused credential, an immutable tag, a read-only registry).
    """

    exit_code = 3


class ServiceUnavailable(ServiceError):
    """An external system could not be reached or failed on its side (connection refused,
    timeout, HTTP 5xx): transient, so worth retrying."""


class GateFailed(FlagReleaseError):
    """The release gates rejected the cell; nothing was published under a release tag."""

    exit_code = 4


EXCERPT_MAX = 80


def _short_repr() -> reprlib.Repr:
    """At most a few items per container, two levels deep, short strings (bounded work too)."""
    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother = 2, 60, 60
    short.maxdict = short.maxlist = short.maxtuple = short.maxset = 4
    return short


def excerpt(value: Any) -> str:
    """A short repr of a value for an error message; never the whole of a large input."""
    text = _short_repr().repr(value)
    return text if len(text) <= EXCERPT_MAX else text[: EXCERPT_MAX - 3] + "..."


def did_you_mean(name: object, known: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for a near miss among `known`, else ''."""
    close = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Interrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) stopped the run; its cleanup ran. Exits 130 (128 + SIGINT)."""

    exit_code = 130
    signal_name = "SIGINT"


class Terminated(Interrupted):
    """SIGTERM (a cancelled CI job, `kill`) stopped the run; its cleanup ran. Exits 143."""

    exit_code = 143
    signal_name = "SIGTERM"
