"""Preflight: everything that would make a cell's build fail, found before it starts.

Problems are collected, not reported one at a time: a release engineer on an
x86 host without the CANN base hears about both at once.
"""

from __future__ import annotations

import platform
from pathlib import Path

from flagrelease.compat import ensure_compatible
from flagrelease.errors import ServiceError
from flagrelease.naming import base_reference
from flagrelease.schema import Cell, Chip, MatrixFile
from flagrelease.settings import BuildSettings
from flagrelease.steps.base_image import locate, missing_base

HOST_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
QEMU_BINFMT = {"amd64": "qemu-x86_64", "arm64": "qemu-aarch64"}


def platform_problem(
    chip: Chip, chip_id: str, host_machine: str | None = None, binfmt_dir: Path = Path("/proc/sys/fs/binfmt_misc")
) -> str | None:
    """A foreign-arch build needs QEMU user emulation registered with binfmt_misc."""
    machine = host_machine or platform.machine()
    host = HOST_ARCH.get(machine, machine)
    if chip.arch == host or (binfmt_dir / QEMU_BINFMT[chip.arch]).exists():
        return None
    return (
        f"chip {chip_id} builds {chip.platform} images; this host is linux/{host} with no "
        f"{QEMU_BINFMT[chip.arch]} emulation registered (chips.{chip_id}.arch). Fix: build on "
        f"{'an' if chip.arch[0] in 'aeiou' else 'a'} {chip.arch} host, "
        "or install qemu-user-static and binfmt-support here"
    )


def base_problem(client, chip: Chip, chip_id: str, build: BuildSettings) -> str | None:
    """The base must be local or pullable, unless the chip says how to make it."""
    ref = base_reference(chip.base.image, build.base_mirror)
    if chip.base.bootstrap is not None or locate(client, ref):
        return None
    return missing_base(ref, chip_id)


def preflight(cell: Cell, matrix: MatrixFile, client, build: BuildSettings) -> None:
    ensure_compatible([cell], matrix.compatibility, str(matrix.source))
    problems = [
        p
        for p in (base_problem(client, cell.chip, cell.chip_id, build), platform_problem(cell.chip, cell.chip_id))
        if p
    ]
    if problems:
        raise ServiceError(
            f"cannot build {cell.label} on this host; nothing was built:\n  - " + "\n  - ".join(problems),
            where=f"{matrix.source}: chips.{cell.chip_id}",
        )
