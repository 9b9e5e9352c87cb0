"""Publish step: push the image under its release tag and read the digest back.

The registry is checked before anything is built (`resolve_registry`); a tag that
already exists is never overwritten; a push error inside the stream fails the
release; the digest the push reported must equal the one the registry serves.
"""

from __future__ import annotations

import time

from pydantic import BaseModel

from flagrelease import docker_engine
from flagrelease.errors import ServiceError
from flagrelease.local_registry import LocalRegistry
from flagrelease.registry import RegistryClient
from flagrelease.settings import DEFAULT_REGISTRY_PORT, Settings


class PublishResult(BaseModel):
    registry: str
    repository: str
    tags: list[str]
    digest: str
    seconds: float

    @property
    def pull_ref(self) -> str:
        return f"{self.registry}/{self.repository}@{self.digest}"


def resolve_registry(settings: Settings) -> str:
    """The configured registry, checked; with none configured, a local one (started if needed)."""
    registry = settings.registry
    if registry is None:
        registry = LocalRegistry(settings.home / "registry", DEFAULT_REGISTRY_PORT).start(detach=True).address
    with RegistryClient(registry) as api:
        api.check()
    return registry


def push_release(client, image_id: str, registry: str, repository: str, tag: str, on_line=print) -> PublishResult:
    """Push `image_id` as registry/repository:tag; `repository` excludes the registry host."""
    started = time.monotonic()
    remote = f"{registry}/{repository}"
    with RegistryClient(registry) as api:
        if api.manifest_digest(repository, tag) is not None:
            raise ServiceError(
                f"{remote}:{tag} already exists; release tags are immutable",
                where=remote,
                fix="release again in a later minute (tags are YYMMDDHHMM) or delete the tag deliberately",
            )
        docker_engine.tag(client, image_id, remote, tag)
        on_line(f"pushing {remote}:{tag}")
        digest = docker_engine.push(client, remote, tag, None, on_line)
        served = api.manifest_digest(repository, tag)
    if served != digest:
        raise ServiceError(f"registry serves {served} for {remote}:{tag}, but the push reported {digest}",
                           where=remote)
    return PublishResult(registry=registry, repository=repository, tags=[tag], digest=digest,
                         seconds=time.monotonic() - started)
