"""Pins installed from a package index, and whether the index has them: pure decisions.

A chip declares which of its pins come from the index (`stack.from_index`, pin -> project);
adapters/package_index.py reads what the index lists for a project, and the functions here
decide whether a pinned version is there, installable for the image's Python and platform.

    pins = index_pins("ascend-a3-fl", chip)      # [IndexPin(pin="flaggems", project="flag-gems", ...)]
    problem = pin_problem(pin, files, "https://pypi.org/simple/")   # None, or what is wrong
"""

from __future__ import annotations

import functools
from typing import Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel

from flagrelease.compat import release
from flagrelease.schema import NONE, Chip

WHEEL_ARCH = {"amd64": "x86_64", "arm64": "aarch64"}
# Shown when a version is missing: the releases of the index closest to it.
NEAREST = 5


class IndexFile(BaseModel):
    """One file a package index lists for a project (PEP 503 / PEP 691)."""

    filename: str
    version: str | None
    kind: Literal["wheel", "sdist", "other"]
    requires_python: str | None = None
    yanked: bool = False


class ProjectFiles(BaseModel):
    project: str
    files: list[IndexFile]

    def releases(self) -> dict[Version, str]:
        """Every release with at least one file that is not yanked, as the index spells it."""
        found: dict[Version, str] = {}
        for f in self.files:
            parsed = parse_version(f.version)
            if parsed is not None and not f.yanked:
                found.setdefault(parsed, f.version or "")
        return found


class IndexPin(BaseModel):
    chip: str
    pin: str
    project: str
    version: str
    python: str
    arch: Literal["amd64", "arm64"]

    @property
    def key(self) -> str:
        """Where the pin is set in matrix.yaml (its chip row, or a block the row extends)."""
        return f"chips.{self.chip}.stack.{self.pin}"


def parse_version(text: str | None) -> Version | None:
    try:
        return Version(text) if text else None
    except InvalidVersion:
        return None


def index_pins(chip_id: str, chip: Chip) -> list[IndexPin]:
    """The chip's pins that are installed from the index: declared in `from_index`, not `none`,
    not installed from a source of their own."""
    stack = chip.stack
    return [
        IndexPin(
            chip=chip_id, pin=pin, project=project, version=getattr(stack, pin), python=stack.python, arch=chip.arch
        )
        for pin, project in stack.from_index.items()
        if getattr(stack, pin) != NONE and pin not in stack.sources
    ]


def pin_problem(pin: IndexPin, files: ProjectFiles | None, index: str) -> str | None:
    """What keeps the pinned version from being installed from `index`, or None."""
    where = f"{pin.project}=={pin.version}"
    if files is None:
        return f"{where}: the index {index} has no project {pin.project}"
    wanted = parse_version(pin.version)
    if wanted is None:
        return f"{where}: {pin.version!r} is not a PEP 440 version, which a package index cannot serve"
    same = [f for f in files.files if parse_version(f.version) == wanted]
    if not same:
        return f"{where} is not on {index} (releases there nearest to it: {', '.join(nearest(files, wanted))})"
    if all(f.yanked for f in same):
        return f"{where} is yanked on {index}"
    if not any(fits(f, pin.python, pin.arch) for f in same if not f.yanked):
        names = ", ".join(sorted(f.filename for f in same if not f.yanked)[:6])
        return f"{where} on {index} has no file for python {pin.python} on linux/{pin.arch} (it has {names})"
    return None


def nearest(files: ProjectFiles, wanted: Version) -> list[str]:
    releases = files.releases()
    ranked = sorted(releases, key=lambda v: (release(str(v), 3) != release(str(wanted), 3), abs(_ordinal(v, wanted))))
    return [releases[v] for v in sorted(ranked[:NEAREST])] or ["none"]


def _ordinal(version: Version, wanted: Version) -> float:
    """A rough distance between two versions, for ranking only."""
    parts = [*version.release, 0, 0, 0][:3]
    other = [*wanted.release, 0, 0, 0][:3]
    return sum((a - b) * 1000.0 ** (2 - i) for i, (a, b) in enumerate(zip(parts, other, strict=True)))


def fits(f: IndexFile, python: str, arch: str) -> bool:
    """Whether pip on `python` (3.X[.Y]) on linux/`arch` could install this file."""
    major_minor = tuple(int(n) for n in release(python, 2))
    if f.requires_python:
        try:
            if not SpecifierSet(f.requires_python).contains(".".join(map(str, major_minor)) + ".0"):
                return False
        except InvalidSpecifier:
            pass  # pip ignores a specifier it cannot parse, and so do we
    if f.kind == "sdist":
        return True
    if f.kind != "wheel":
        return False
    try:
        _, _, _, tags = parse_wheel_filename(f.filename)
    except InvalidWheelFilename:
        return False
    return bool(tags & supported_tags(major_minor, WHEEL_ARCH[arch]))


@functools.cache
def supported_tags(python: tuple[int, ...], machine: str) -> frozenset[Tag]:
    """Wheel tags a CPython `python` on glibc Linux `machine` accepts (packaging's own lists);
    some thousands of them, so made once per python and machine."""
    platforms = [f"manylinux_2_{minor}_{machine}" for minor in range(60, 4, -1)]
    platforms += [f"manylinux2014_{machine}", f"linux_{machine}"]
    if machine == "x86_64":
        platforms += ["manylinux2010_x86_64", "manylinux1_x86_64"]
    return frozenset([*cpython_tags(python, platforms=platforms), *compatible_tags(python, platforms=platforms)])
