"""Build step: the rendered context becomes an image, labelled with every pin.

An image already built from the same context on the same base is reused
rather than rebuilt, as vLLM's pipeline skips tags that exist. The build is
found by a local `build-<key>` tag, not by its labels: an image derived FROM
ours inherits the labels but is not our build.
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from flagrelease.adapters import docker_engine
from flagrelease.results import BaseImageResult, ImageRef
from flagrelease.schema import Cell
from flagrelease.settings import BuildSettings
from flagrelease.steps.render import BuildContext

CONTEXT_HASH_LABEL = "org.flagos.context-hash"
BASE_ID_LABEL = "org.opencontainers.image.base.digest"


def build_labels(ctx: BuildContext, base: BaseImageResult, now: datetime) -> dict[str, str]:
    """Labels only known at build time, on top of the ones the Dockerfile carries.

    They describe the build, not a release: a reused image keeps its labels and
    gains release tags, so no label names a release tag.
    """
    labels = {
        "org.opencontainers.image.created": now.isoformat(timespec="seconds"),
        BASE_ID_LABEL: base.image_id,
        CONTEXT_HASH_LABEL: ctx.context_hash,
    }
    revision = _project_revision()
    if revision:
        labels["org.opencontainers.image.revision"] = revision
    return labels


def _project_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def build_tag(ctx: BuildContext, base: BaseImageResult) -> str:
    """Local tag naming one build: the context's bytes and the base image it ran on."""
    return "build-" + hashlib.sha256(f"{ctx.context_hash}\0{base.image_id}".encode()).hexdigest()[:20]


def build_image(
    client,
    cell: Cell,
    ctx: BuildContext,
    base: BaseImageResult,
    build: BuildSettings,
    *,
    repository: str,
    tag: str,
    now: datetime | None = None,
    on_line=print,
) -> ImageRef:
    started = time.monotonic()
    now = now or datetime.now(UTC)
    key = build_tag(ctx, base)
    existing = docker_engine.image_id(client, f"{repository}:{key}")
    if existing:
        on_line(f"context {ctx.context_hash[:12]} already built as {existing[:19]}; reusing it")
        docker_engine.tag(client, existing, repository, tag)
        return ImageRef(
            image_id=existing,
            repository=repository,
            tag=tag,
            reused=True,
            labels=docker_engine.image_labels(client, existing),
            seconds=time.monotonic() - started,
        )
    labels = build_labels(ctx, base, now)
    with tempfile.TemporaryDirectory() as tmp:
        secrets = _secret_files(build, Path(tmp))
        image_id = docker_engine.build(
            build.docker_cli,
            ctx.path,
            tags=[f"{repository}:{tag}", f"{repository}:{key}"],
            labels=labels,
            secrets=secrets,
            platform=cell.chip.platform,
            on_line=on_line,
        )
    return ImageRef(
        image_id=image_id,
        repository=repository,
        tag=tag,
        reused=False,
        labels=docker_engine.image_labels(client, image_id),
        seconds=time.monotonic() - started,
    )


def _secret_files(build: BuildSettings, tmp: Path) -> dict[str, Path]:
    """BuildKit secrets: mounted for one RUN, never stored in a layer or the history."""
    secrets = {}
    if build.ca_bundle is not None:
        secrets["ca_bundle"] = build.ca_bundle
    if build.pip_index_url is not None:
        url_file = tmp / "pip_index_url"
        url_file.write_text(build.pip_index_url.get_secret_value())
        url_file.chmod(0o600)
        secrets["pip_index_url"] = url_file
    return secrets
