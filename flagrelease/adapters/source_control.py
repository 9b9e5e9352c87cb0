"""The git revision a matrix was read from, when it lies in a git work tree."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git_revision(path: Path) -> tuple[str, bool] | None:
    """(commit, dirty) of the work tree holding `path`; None outside one or without git.

    Only the commit: a remote URL may carry credentials."""
    where = path if path.is_dir() else path.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip(), bool(status.stdout.strip())
