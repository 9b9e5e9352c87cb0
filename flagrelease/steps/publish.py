"""Publish step: push images under their release tags and read the digests back.

Tag policy. The release tag (a UTC timestamp, YYMMDDHHMM or YYYYMMDDHHMM) is immutable: when it already exists the
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
from collections.abc import Callable, Sequence
from typing import NoReturn, Protocol

from pydantic import BaseModel

from flagrelease.adapters import docker_engine
from flagrelease.adapters.local_registry import LocalRegistry
from flagrelease.adapters.registry import RegistryClient
from flagrelease.adapters.registry_auth import RegistryCredentials, resolve_credentials
from flagrelease.errors import ConfigError, FlagReleaseError, ServiceError
from flagrelease.naming import check_tag, is_release_tag, key_tag
from flagrelease.results import PublishResult, StackImage, StagedImage
from flagrelease.settings import DEFAULT_REGISTRY_PORT, Settings
from flagrelease.steps import attest
from flagrelease.steps.release_key import STACK_KEY_LABEL

STAGING_PREFIX = "staging-"


class PublishItem(BaseModel):
    """One image to publish; `repository` excludes the registry host."""

    image_id: str
    repository: str
    tag: str
    aliases: list[str] = []
    key_tag: str | None = None  # `key-<release key>`: moved last, it marks a complete release


def resolve_registry(settings: Settings, push_to: Sequence[str] = ()) -> str:
    """The configured registry, checked; with none configured, a local one (started if needed).

    Checked before anything is built: the registry answers, it accepts the credentials (a
    token service checks them when asked for a token), and they may push to each repository
    of `push_to` (an upload is started and cancelled: a pull-only account fails here, not
    after the build and the benchmarks).
    """
    registry = settings.registry
    if registry is None:
        registry = LocalRegistry(settings.home / "registry", DEFAULT_REGISTRY_PORT).start(detach=True).address
    with RegistryClient(registry, resolve_credentials(registry), ca_bundle=settings.build.ca_bundle) as api:
        api.check()
        for repository in push_to:
            api.check_push(repository)
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
    attach: Callable[[str], Sequence[str]] | None = None,
) -> PublishResult:
    """Push `image_id` as registry/repository:tag, then point the aliases and the key tag
    (`key-<key>`, when a release key is given) at it.

    `attach(digest)` runs between the verified push and the aliases (the SBOM and provenance
    of the digest) and returns the manifest digests of what it attached. `repository` excludes
    the registry host. The release is complete once its key tag is set; a failure (of the push,
    the attaching or an alias) or an interrupt (SIGTERM, Ctrl-C) before that removes the
    release tag again, the aliases already moved to it and the documents attached to it, so
    the registry never serves a release, or documents of one, its record does not call released.
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
        attached = _Attached()
        try:
            digest = _push(client, api, credentials, item, item.tag, on_line)
            attached.run(attach, digest)
            _move_aliases(api, item, digest, on_line)
        except BaseException:
            attached.undo(api, item, on_line)
            _undo_push(api, item, item.tag, on_line)
            raise
    return _result(registry, item, digest, started)


def stage(
    client, item: PublishItem, registry: str, on_line=print, attach: Callable[[str], Sequence[str]] | None = None
) -> StagedImage:
    """Push an image of a set under `staging-<tag>`: in the registry, verified, not yet released.

    A set's images are built on different hosts (one per arch); each host stages its own,
    and `promote_set` then releases them together from wherever the set is decided.
    `attach(digest)`: the SBOM and provenance, attached on the host that has the image (the
    digest keeps them when the set is promoted); a failure removes the staged image again.
    """
    _check_tags(item)
    check_tag(STAGING_PREFIX + item.tag)
    credentials = resolve_credentials(registry)
    staging = STAGING_PREFIX + item.tag
    with RegistryClient(registry, credentials) as api:
        api.check()
        _refuse_existing(api, item)
        attached = _Attached()
        try:
            digest = _push(client, api, credentials, item, staging, on_line)
            attached.run(attach, digest)
        except BaseException:
            attached.undo(api, item, on_line)
            _undo_push(api, item, staging, on_line)
            raise
        finally:
            docker_engine.untag(client, f"{registry}/{item.repository}:{staging}")
    return StagedImage(
        registry=registry,
        repository=item.repository,
        tag=item.tag,
        aliases=item.aliases,
        key_tag=item.key_tag,
        digest=digest,
        artifacts=attached.artifacts,
    )


def promote_set(staged: Sequence[StagedImage], registry: str, on_line=print) -> list[PublishResult]:
    """Release every staged image of a set or none: release tags only once all are checked,
    rolled back (with the staged manifests) if any fails. An alias that fails after that
    raises too, but the release tags stand."""
    started = time.monotonic()
    with RegistryClient(registry, resolve_credentials(registry)) as api:
        api.check()
        released: list[StagedImage] = []
        try:
            for image in staged:
                if api.manifest_digest(image.repository, STAGING_PREFIX + image.tag) != image.digest:
                    raise ServiceError(
                        f"{registry}/{image.repository}:{STAGING_PREFIX}{image.tag} no longer "
                        f"points at the staged {image.digest}",
                        where=registry,
                        fix="release the set again",
                    )
                _refuse_existing(api, image)  # again: another run may have released it meanwhile
            for image in staged:
                _set_tag(api, image.repository, image.digest, image.tag, on_line)
                released.append(image)
        except BaseException as err:  # Ctrl-C too: a half-published set must not stay
            _raise_rolled_back(api, staged, released, err, on_line)
        for image in staged:
            _move_aliases(api, image, image.digest, on_line)
    return [_result(registry, image, image.digest, started) for image in staged]


def discard_staged(staged: Sequence[StagedImage], registry: str, on_line=print) -> list[str]:
    """Remove the staged images of a set that will not be released; the tags that had to stay."""
    with RegistryClient(registry, resolve_credentials(registry)) as api:
        return _roll_back(api, staged, [], on_line)


def publish_set(client, items: Sequence[PublishItem], registry: str, on_line=print) -> list[PublishResult]:
    """Publish images that are all on this host, every one or none (`stage`, then `promote_set`)."""
    for item in items:
        _check_tags(item)
        check_tag(STAGING_PREFIX + item.tag)
    staged: list[StagedImage] = []
    with RegistryClient(registry, resolve_credentials(registry)) as api:
        api.check()
        for item in items:
            _refuse_existing(api, item)
        try:
            for item in items:
                staged.append(stage(client, item, registry, on_line))
        except BaseException as err:
            _raise_rolled_back(api, staged, [], err, on_line, of=len(items))
    return promote_set(staged, registry, on_line)


def _raise_rolled_back(
    api: RegistryClient,
    staged: Sequence[StagedImage],
    released: list[StagedImage],
    err: BaseException,
    on_line,
    of: int | None = None,
) -> NoReturn:
    """Roll the set back and raise what happened; `of`: the set's size, when not all were staged."""
    left = _roll_back(api, staged, released, on_line)
    cause = err.problem if isinstance(err, FlagReleaseError) else f"{type(err).__name__}: {err}"
    if left:
        raise ServiceError(
            f"publishing the set failed ({cause}) and these tags could not be removed: " + "; ".join(left),
            where=api.registry,
            fix="delete them before releasing the set again",
        ) from err
    if isinstance(err, FlagReleaseError):
        raise ServiceError(
            f"none of the {of or len(staged)} images was released: {cause}", where=err.where, fix=err.fix
        ) from err
    raise err


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
                fix=f"use a moving name such as 'latest'; not a timestamp (10 or 12 digits) or {STAGING_PREFIX}*",
            )


class _Tagged(Protocol):
    repository: str
    tag: str
    aliases: list[str]
    key_tag: str | None


def _refuse_existing(api: RegistryClient, image: _Tagged) -> None:
    if api.manifest_digest(image.repository, image.tag) is not None:
        remote = f"{api.registry}/{image.repository}"
        raise ServiceError(
            f"{remote}:{image.tag} already exists; release tags are immutable",
            where=remote,
            fix="release again in a later minute (tags are timestamps to the minute) or delete the tag deliberately",
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
    _verify(api, item.repository, tag, digest, "the push")
    return digest


class _Attached:
    """What `attach` put onto a pushed digest, so that a push that does not finish takes it back."""

    def __init__(self) -> None:
        self.digest: str | None = None
        self.artifacts: list[str] = []

    def run(self, attach: Callable[[str], Sequence[str]] | None, digest: str) -> None:
        if attach is not None:
            self.digest, self.artifacts = digest, list(attach(digest))

    def undo(self, api: RegistryClient, item: PublishItem, on_line) -> None:
        """Best effort, before the manifest goes: documents of a release that did not happen."""
        if self.digest is None:
            return
        for left in attest.detach_documents(api.registry, item.repository, self.digest, self.artifacts, on_line):
            on_line(f"could not remove {left}")


def _undo_push(api: RegistryClient, item: PublishItem, tag: str, on_line) -> None:
    """Remove the manifest a push that did not finish left under `tag` (it may have landed just
    before the failure or the interrupt), unless a tag that is not this push's still needs it.
    Best effort: the error that stopped the push is what the caller raises."""
    ours = {tag, *item.aliases} | ({item.key_tag} if item.key_tag else set())
    try:
        digest = api.manifest_digest(item.repository, tag)
        if digest is None:
            return
        if any(t not in ours and api.manifest_digest(item.repository, t) == digest for t in api.tags(item.repository)):
            return
        api.delete_manifest(item.repository, digest)
        on_line(f"removed the unfinished {api.registry}/{item.repository}:{tag}")
    except ServiceError:
        return  # the registry is gone: the key tag never landed either, so no run takes this for a release


def _set_tag(api: RegistryClient, repository: str, digest: str, tag: str, on_line) -> None:
    on_line(f"tagging {api.registry}/{repository}:{tag} -> {digest}")
    api.tag_manifest(repository, digest, tag)
    _verify(api, repository, tag, digest, "tagging")


def _verify(api: RegistryClient, repository: str, tag: str, digest: str, what: str) -> None:
    served = api.manifest_digest(repository, tag)
    if served != digest:
        remote = f"{api.registry}/{repository}"
        raise ServiceError(f"registry serves {served} for {remote}:{tag}, but {what} reported {digest}", where=remote)


def _move_aliases(api: RegistryClient, image: _Tagged, digest: str, on_line) -> None:
    """Aliases, then the key tag: moved last, it marks a complete release."""
    for alias in image.aliases:
        _set_tag(api, image.repository, digest, alias, on_line)
    if image.key_tag is not None:
        _set_tag(api, image.repository, digest, image.key_tag, on_line)


def _roll_back(api: RegistryClient, staged: Sequence[StagedImage], released: list[StagedImage], on_line) -> list[str]:
    """Delete the manifests a failed set pushed; the tags that had to stay, and why."""
    left = []
    for image in staged:
        # Its documents first, whatever happens to the manifest: they speak of a release that did not happen.
        left += attest.detach_documents(api.registry, image.repository, image.digest, image.artifacts, on_line)
        ours = {STAGING_PREFIX + image.tag} | ({image.tag} if image in released else set())
        try:
            # Deleting by digest drops every tag on it: spare a manifest some other tag still needs.
            shared = [
                t
                for t in api.tags(image.repository)
                if t not in ours and api.manifest_digest(image.repository, t) == image.digest
            ]
            if not shared:
                api.delete_manifest(image.repository, image.digest)
                on_line(f"rolled back {api.registry}/{image.repository}@{image.digest}")
                continue
            reason = f"{image.digest} is also tagged {', '.join(shared)}"
        except ServiceError as err:
            reason = err.problem
        left.append(f"{image.repository}:{'/'.join(sorted(ours))} ({reason})")
    return left


def _result(registry: str, image: _Tagged, digest: str, started: float) -> PublishResult:
    return PublishResult(
        registry=registry,
        repository=image.repository,
        tags=[image.tag, *image.aliases],
        digest=digest,
        seconds=time.monotonic() - started,
        key_tag=image.key_tag,
    )
