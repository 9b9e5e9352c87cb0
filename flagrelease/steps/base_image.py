"""Base image step: use the chip's base when present, make it when the chip says how.

Bases with a `bootstrap` recipe (the runnable cpu chip) are made offline:
debootstrap into a directory, then `docker import`. Vendor bases (CANN, CUDA,
MACA) are pulled, through a mirror when one is configured; when that is not
possible the step fails before any build with the name of the missing image.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from flagrelease.adapters import docker_engine
from flagrelease.errors import ServiceError
from flagrelease.results import BaseImageResult
from flagrelease.schema import Bootstrap, Chip


def missing_base(ref: str, chip_id: str) -> str:
    return (
        f"base image {ref} (chips.{chip_id}.base.image) is not present locally and cannot be pulled. "
        "Fix: pre-load it (`docker save` it on a connected host, `docker load -i` here), or set a registry "
        "mirror with FLAGRELEASE_BASE_MIRROR, e.g. quay.io=registry.example.com/quay"
    )


def locate(client, ref: str) -> str | None:
    """The base's image id: present locally, else pulled; None when neither works."""
    return docker_engine.image_id(client, ref) or docker_engine.pull(client, ref)


def ensure_base(client, chip: Chip, chip_id: str, ref: str, work_dir: Path, on_line) -> BaseImageResult:
    started = time.monotonic()
    found = docker_engine.image_id(client, ref)
    if found:
        return BaseImageResult(ref=ref, image_id=found, made=False, seconds=time.monotonic() - started)
    if chip.base.bootstrap is None:
        on_line(f"base image {ref} not present locally, trying to pull it")
        pulled = locate(client, ref)
        if pulled:
            return BaseImageResult(ref=ref, image_id=pulled, made=False, seconds=time.monotonic() - started)
        raise ServiceError(missing_base(ref, chip_id))
    image = make_with_debootstrap(client, chip.base.bootstrap, ref, work_dir, on_line)
    return BaseImageResult(ref=ref, image_id=image, made=True, seconds=time.monotonic() - started)


def make_with_debootstrap(client, recipe: Bootstrap, ref: str, work_dir: Path, on_line) -> str:
    if shutil.which("debootstrap") is None:
        raise ServiceError(
            f"base image {ref} is absent and debootstrap is not installed to make it",
            fix="apt-get install -y debootstrap (scripts/bootstrap does this)",
        )
    work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="rootfs-") as rootfs:
        cmd = ["debootstrap", f"--variant={recipe.variant}"]
        if recipe.include:
            cmd.append("--include=" + ",".join(recipe.include))
        cmd += [recipe.suite, rootfs, recipe.mirror]
        on_line(f"making base image {ref}: {' '.join(cmd)}")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None  # stdout=PIPE
        tail: list[str] = []
        for line in proc.stdout:
            tail = (tail + [line.rstrip()])[-15:]
            if not line.startswith(("I: Retrieving", "I: Validating")):  # per-package noise
                on_line(line.rstrip())
        if proc.wait() != 0:
            raise ServiceError(
                f"debootstrap of {recipe.suite} failed (exit {proc.returncode}): " + "\n".join(tail),
                where=recipe.mirror,
                fix="check that the Debian mirror is reachable and the suite exists",
            )
        labels = {
            "org.flagos.base.recipe": f"debootstrap --variant={recipe.variant} {recipe.suite} {recipe.mirror}",
            "org.opencontainers.image.created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        on_line(f"importing {ref}")
        return docker_engine.import_rootfs(client, Path(rootfs), ref, labels)
