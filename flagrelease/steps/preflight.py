"""Preflight: everything that would make a cell's build fail, found before it starts.

Problems are collected, not reported one at a time: a release engineer on an
x86 host without the CANN base hears about both at once.

`check_index_pins` runs where a chip stack is about to be built (the only step that installs
from a package index): every pin the chip installs from the index must be there, installable
for the image's Python and platform. A stack found locally or in the registry installs
nothing, so a cell served from a cached stack never asks the index (the offline path).
"""

from __future__ import annotations

import platform
from pathlib import Path

from flagrelease.adapters.package_index import DEFAULT_INDEX, PackageIndex
from flagrelease.compat import ensure_compatible
from flagrelease.errors import ConfigError, ServiceError
from flagrelease.index_pins import IndexPin, ProjectFiles, index_pins, pin_problem
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


def pip_index(build: BuildSettings) -> str:
    """The index pip installs from in a build: FLAGRELEASE_PIP_INDEX_URL, else PyPI."""
    return build.pip_index_url.get_secret_value() if build.pip_index_url is not None else DEFAULT_INDEX


def check_index_pins(cell: Cell, matrix: MatrixFile, build: BuildSettings) -> None:
    """Refuse, before the stack is built, pins the package index cannot install (all named at once)."""
    pins = index_pins(cell.chip_id, cell.chip)
    if not pins:
        return
    with PackageIndex(pip_index(build), ca_bundle=build.ca_bundle) as index:
        listed: dict[str, ProjectFiles | None] = {}
        for pin in pins:
            if pin.project not in listed:
                listed[pin.project] = index.project(pin.project)
        problems = [(pin, problem) for pin in pins if (problem := pin_problem(pin, listed[pin.project], index.label))]
    if problems:
        raise index_error(cell.label, problems, str(matrix.source))


def index_error(label: str, problems: list[tuple[IndexPin, str]], source: str) -> ConfigError:
    lines = "\n  - ".join(f"{pin.key}: {problem}" for pin, problem in problems)
    return ConfigError(
        f"{label}: {len(problems)} pinned version(s) cannot be installed from the package index; "
        f"nothing was built:\n  - {lines}",
        where=f"{source}: " + ", ".join(pin.key for pin, _ in problems) + " (or the block the chip extends)",
        fix="pin a version the index has (`flagrelease watch` lists them), install the component from a "
        "source of its own (`stack.sources.<pin>`), or point FLAGRELEASE_PIP_INDEX_URL at an index that has it",
    )
