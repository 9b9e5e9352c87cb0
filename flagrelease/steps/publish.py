"""Publish step: push images under their release tags and read the digests back.

Tag policy. The release tag (YYMMDDHHMM) is immutable: when it already exists the
publish is refused, never overwritten; the digest the push reported must equal
the one the registry serves. Aliases (`latest`, `<flaggems>-<flagscale>`) are
moving tags: they are set only after the release tag is verified, by copying its
manifest inside the registry, and may overwrite older ones.

A set (one model on several arches) is all or nothing: every image is pushed
under `staging-<tag>` first, and release tags are added only when all of them
landed; otherwise the staged manifests are deleted again. Distribution v2 can
delete a manifest only by digest, not a tag alone, so after a successful set the
staging tags stay, pointing at the released digests.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from pydantic import BaseModel

from flagrelease.adapters import docker_engine
from flagrelease.adapters.local_registry import LocalRegistry
from flagrelease.adapters.registry import RegistryClient
from flagrelease.adapters.registry_auth import RegistryCredentials, resolve_credentials
from flagrelease.errors import ConfigError, FlagReleaseError, ServiceError
from flagrelease.naming import check_tag, is_release_tag, key_tag
from flagrelease.results import PublishResult, StackImage
from flagrelease.settings import DEFAULT_REGISTRY_PORT, Settings
from flagrelease.steps.release_key import STACK_KEY_LABEL

STAGING_PREFIX = "staging-"


class PublishItem(BaseModel):
    """One image to publish; `repository` excludes the registry host."""

    image_id: str
    repository: str
    tag: str
    aliases: list[str] = []
    key_tag: str | None = None  # `key-<release key>`: moved last, it marks a complete release


def resolve_registry(settings: Settings) -> str:
    """The configured registry, checked; with none configured, a local one (started if needed)."""
    registry = settings.registry
    if registry is None:
        registry = LocalRegistry(settings.home / "registry", DEFAULT_REGISTRY_PORT).start(detach=True).address
    with RegistryClient(registry, resolve_credentials(registry)) as api:
        api.check()
    return registry


def push_release(
    client,
    image_id: str,
    registry: str,
    repository: str,
    tag: str,
    aliases: Sequence[str] = (),
    on_line=print,
    key: str | None = None,
) -> PublishResult:
    """Push `image_id` as registry/repository:tag, then point the aliases and the key tag
    (`key-<key>`, when a release key is given) at it.

    `repository` excludes the registry host. An alias that fails raises; the release tag stands.
    """
    started = time.monotonic()
    item = PublishItem(
        image_id=image_id, repository=repository, tag=tag, aliases=list(aliases), key_tag=key_tag(key) if key else None
    )
    _check_tags(item)
    credentials = resolve_credentials(registry)
    with RegistryClient(registry, credentials) as api:
        api.check()
        _refuse_existing(api, item)
        digest = _push(client, api, credentials, item, item.tag, on_line)
        _move_aliases(api, item, digest, on_line)
    return _result(registry, item, digest, started)


def publish_set(client, items: Sequence[PublishItem], registry: str, on_line=print) -> list[PublishResult]:
    """Publish every item or none: staged pushes first, release tags only once all landed.

    An alias that fails after that raises too, but the release tags stand.
    """
    started = time.monotonic()
    for item in items:
        _check_tags(item)
        check_tag(STAGING_PREFIX + item.tag)
    credentials = resolve_credentials(registry)
    with RegistryClient(registry, credentials) as api:
        api.check()
        for item in items:
            _refuse_existing(api, item)
        staged: list[tuple[PublishItem, str]] = []
        released: list[PublishItem] = []
        try:
            for item in items:
                staging = STAGING_PREFIX + item.tag
                try:
                    staged.append((item, _push(client, api, credentials, item, staging, on_line)))
                finally:
                    docker_engine.untag(client, f"{registry}/{item.repository}:{staging}")
            for item, digest in staged:
                _refuse_existing(api, item)  # again: another run may have released it meanwhile
                _set_tag(api, item, digest, item.tag, on_line)
                released.append(item)
        except BaseException as err:  # Ctrl-C too: a half-published set must not stay
            left = _roll_back(api, staged, released, on_line)
            cause = err.problem if isinstance(err, FlagReleaseError) else f"{type(err).__name__}: {err}"
            if left:
                raise ServiceError(
                    f"publishing the set failed ({cause}) and these tags could not be removed: " + "; ".join(left),
                    where=registry,
                    fix="delete them before releasing the set again",
                ) from err
            if isinstance(err, FlagReleaseError):
                raise ServiceError(
                    f"none of the {len(items)} images was released: {cause}", where=err.where, fix=err.fix
                ) from err
            raise
        for item, digest in staged:
            _move_aliases(api, item, digest, on_line)
    return [_result(registry, item, digest, started) for item, digest in staged]


def push_stack(client, stack: StackImage, registry: str, repository: str, on_line=print) -> str:
    """Put the chip stack in the registry under `key-<stack key>`, once: a registry that
    serves it already (its config carrying the key) is left alone. Its digest there.

    Model images pushed afterwards mount its layers instead of uploading them.
    """
    item = PublishItem(image_id=stack.image_id, repository=repository, tag=key_tag(stack.key))
    credentials = resolve_credentials(registry)
    with RegistryClient(registry, credentials) as api:
        api.check()
        served = api.manifest_digest(repository, item.tag)
        if served is not None and api.labels(repository, served).get(STACK_KEY_LABEL) == stack.key:
            on_line(f"chip stack {stack.key[:12]} is in {registry} already")
            return served
        try:
            return _push(client, api, credentials, item, item.tag, on_line)
        finally:
            docker_engine.untag(client, f"{registry}/{repository}:{item.tag}")


def _check_tags(item: PublishItem) -> None:
    check_tag(item.tag)
    if item.key_tag is not None:
        check_tag(item.key_tag)
    for alias in item.aliases:
        check_tag(alias)
        if alias == item.tag or alias.startswith(STAGING_PREFIX) or is_release_tag(alias):
            raise ConfigError(
                f"alias {alias!r} of {item.repository}:{item.tag} could overwrite a release or staging tag",
                where="aliases",
                fix=f"use a moving name such as 'latest'; not YYMMDDHHMM or {STAGING_PREFIX}*",
            )


def _refuse_existing(api: RegistryClient, item: PublishItem) -> None:
    if api.manifest_digest(item.repository, item.tag) is not None:
        remote = f"{api.registry}/{item.repository}"
        raise ServiceError(
            f"{remote}:{item.tag} already exists; release tags are immutable",
            where=remote,
            fix="release again in a later minute (tags are YYMMDDHHMM) or delete the tag deliberately",
        )


def _push(client, api: RegistryClient, credentials: RegistryCredentials, item: PublishItem, tag: str, on_line) -> str:
    """docker push image as repository:tag; the digest, once the registry serves the same one."""
    remote = f"{api.registry}/{item.repository}"
    docker_engine.tag(client, item.image_id, remote, tag)
    on_line(f"pushing {remote}:{tag}")
    try:
        digest = docker_engine.push(client, remote, tag, credentials, on_line)
    except ServiceError:
        # dockerd reports a registry that went away and one that refuses alike, inside the
        # stream: ask the registry itself (ServiceUnavailable when it is down, so retried).
        api.check()
        raise
    _verify(api, item, tag, digest, "the push")
    return digest


def _set_tag(api: RegistryClient, item: PublishItem, digest: str, tag: str, on_line) -> None:
    on_line(f"tagging {api.registry}/{item.repository}:{tag} -> {digest}")
    api.tag_manifest(item.repository, digest, tag)
    _verify(api, item, tag, digest, "tagging")


def _verify(api: RegistryClient, item: PublishItem, tag: str, digest: str, what: str) -> None:
    served = api.manifest_digest(item.repository, tag)
    if served != digest:
        remote = f"{api.registry}/{item.repository}"
        raise ServiceError(f"registry serves {served} for {remote}:{tag}, but {what} reported {digest}", where=remote)


def _move_aliases(api: RegistryClient, item: PublishItem, digest: str, on_line) -> None:
    for alias in item.aliases:
        _set_tag(api, item, digest, alias, on_line)
    if item.key_tag is not None:
        _set_tag(api, item, digest, item.key_tag, on_line)


def _roll_back(
    api: RegistryClient, staged: list[tuple[PublishItem, str]], released: list[PublishItem], on_line
) -> list[str]:
    """Delete the manifests a failed set pushed; the tags that had to stay, and why."""
    left = []
    for item, digest in staged:
        ours = {STAGING_PREFIX + item.tag} | ({item.tag} if item in released else set())
        try:
            # Deleting by digest drops every tag on it: spare a manifest some other tag still needs.
            shared = [
                t
                for t in api.tags(item.repository)
                if t not in ours and api.manifest_digest(item.repository, t) == digest
            ]
            if not shared:
                api.delete_manifest(item.repository, digest)
                on_line(f"rolled back {api.registry}/{item.repository}@{digest}")
                continue
            reason = f"{digest} is also tagged {', '.join(shared)}"
        except ServiceError as err:
            reason = err.problem
        left.append(f"{item.repository}:{'/'.join(sorted(ours))} ({reason})")
    return left


def _result(registry: str, item: PublishItem, digest: str, started: float) -> PublishResult:
    return PublishResult(
        registry=registry,
        repository=item.repository,
        tags=[item.tag, *item.aliases],
        digest=digest,
        seconds=time.monotonic() - started,
        key_tag=item.key_tag,
    )
