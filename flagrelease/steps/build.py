"""Build step: the rendered contexts become the chip-stack image and the model image on it.

The chip stack is named by its key (`key-<stack key>`): present locally, it is used;
in the registry (another host built it), it is pulled; otherwise it is built, once
for every model on the chip. The model image is thin (serve config, labels,
entrypoint) and built FROM the stack.

An image already built for the same release key is reused rather than rebuilt, as
vLLM's pipeline skips tags that exist. The build is found by a local `build-<key>`
tag, not by its labels: an image derived FROM ours inherits the labels but is not
our build.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from flagrelease.adapters import docker_engine
from flagrelease.adapters.registry import RegistryClient
from flagrelease.adapters.registry_auth import resolve_credentials
from flagrelease.naming import key_tag
from flagrelease.results import BaseImageResult, BuildContext, ImageRef, StackImage
from flagrelease.schema import Cell
from flagrelease.settings import BuildSettings
from flagrelease.steps.release_key import KEY_LABEL, STACK_KEY_LABEL, stack_key

CONTEXT_HASH_LABEL = "org.flagos.context-hash"
BASE_ID_LABEL = "org.opencontainers.image.base.digest"


def build_labels(context_hash: str, now: datetime) -> dict[str, str]:
    """Labels only known at build time, on top of the ones the Dockerfile carries.

    They describe the build, not a release: a reused image keeps its labels and
    gains release tags, so no label names a release tag.
    """
    labels = {"org.opencontainers.image.created": now.isoformat(timespec="seconds"), CONTEXT_HASH_LABEL: context_hash}
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


def build_tag(release_key: str) -> str:
    """Local tag naming the build of one release key."""
    return "build-" + release_key[:20]


def ensure_stack(
    client,
    cell: Cell,
    ctx: BuildContext,
    base: BaseImageResult,
    build: BuildSettings,
    *,
    repository: str,
    registry: str | None,
    now: datetime | None = None,
    on_line=print,
    before_build: Callable[[], None] | None = None,
) -> StackImage:
    """The chip-stack image of `ctx`, by its key: local, else pulled from `registry`, else built.

    `repository` is the stack's name without the registry host. `before_build` runs only when
    the stack is to be built (the preflight of what the build will install).
    """
    started = time.monotonic()
    key = stack_key(ctx, base)
    ref = f"{repository}:{key_tag(key)}"

    def found(image_id: str, origin) -> StackImage:
        return StackImage(ref=ref, image_id=image_id, key=key, origin=origin, seconds=time.monotonic() - started)

    local = docker_engine.image_id(client, ref)
    if local and docker_engine.image_labels(client, local).get(STACK_KEY_LABEL) == key:
        on_line(f"chip stack {key[:12]} is here as {local[:19]}")
        return found(local, "local")
    if registry is not None:
        pulled = _pull_stack(client, registry, repository, key, on_line)
        if pulled:
            return found(pulled, "pulled")
    if before_build is not None:
        before_build()
    on_line(f"building chip stack {key[:12]} ({ctx.stack.repository_name})")
    labels = build_labels(ctx.stack.context_hash, now or datetime.now(UTC)) | {
        STACK_KEY_LABEL: key,
        BASE_ID_LABEL: base.image_id,
    }
    with tempfile.TemporaryDirectory() as tmp:
        image_id = docker_engine.build(
            build.docker_cli,
            ctx.stack.path,
            tags=[ref],
            labels=labels,
            secrets=_secret_files(build, Path(tmp)),
            platform=cell.chip.platform,
            on_line=on_line,
        )
    return found(image_id, "built")


def _pull_stack(client, registry: str, repository: str, key: str, on_line) -> str | None:
    """The stack of `key` from the registry, when it serves one whose config carries that key."""
    tag = key_tag(key)
    credentials = resolve_credentials(registry)
    with RegistryClient(registry, credentials) as api:
        if api.manifest_digest(repository, tag) is None or api.labels(repository, tag).get(STACK_KEY_LABEL) != key:
            return None
    on_line(f"pulling chip stack {key[:12]} from {registry}")
    remote = f"{registry}/{repository}:{tag}"
    pulled = docker_engine.pull(client, remote, credentials.auth_config())
    if pulled:
        docker_engine.tag(client, pulled, repository, tag)
        docker_engine.untag(client, remote)  # the local name is the one without the registry
    return pulled


def build_image(
    client,
    cell: Cell,
    ctx: BuildContext,
    stack: StackImage,
    build: BuildSettings,
    *,
    repository: str,
    tag: str,
    release_key: str,
    force: bool = False,
    now: datetime | None = None,
    on_line=print,
) -> ImageRef:
    """The thin model image FROM `stack`, labelled with its release key; reused when built
    for the same key before, unless `force`."""
    started = time.monotonic()
    key_ref = f"{repository}:{build_tag(release_key)}"
    existing = None if force else docker_engine.image_id(client, key_ref)
    if existing:
        on_line(f"release key {release_key[:12]} already built as {existing[:19]}; reusing it")
        docker_engine.tag(client, existing, repository, tag)
        return _image_ref(client, existing, repository, tag, reused=True, started=started)
    labels = build_labels(ctx.model.context_hash, now or datetime.now(UTC)) | {KEY_LABEL: release_key}
    image_id = docker_engine.build(
        build.docker_cli,
        ctx.model.path,
        tags=[f"{repository}:{tag}", key_ref],
        labels=labels,
        secrets={},  # the model image runs no command
        platform=cell.chip.platform,
        on_line=on_line,
        build_args={"STACK_IMAGE": stack.ref},
    )
    return _image_ref(client, image_id, repository, tag, reused=False, started=started)


def _image_ref(client, image_id: str, repository: str, tag: str, *, reused: bool, started: float) -> ImageRef:
    return ImageRef(
        image_id=image_id,
        repository=repository,
        tag=tag,
        reused=reused,
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
