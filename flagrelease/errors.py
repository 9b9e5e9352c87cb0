"""The one error type users see: what went wrong, where, and how to fix it."""


class FlagReleaseError(Exception):
    """A user-facing failure. The CLI prints it and exits with `exit_code`."""

    exit_code = 2

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
    """An external system (dockerd, registry, S3, served model) failed or is unreachable."""

    exit_code = 3


class GateFailed(FlagReleaseError):
    """The release gates rejected the cell; nothing was published under a release tag."""

    exit_code = 4
