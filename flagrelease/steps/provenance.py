"""Provenance step: how a released digest was made, as an in-toto/SLSA provenance statement.

`build_inputs` gathers the inputs on the host that built the image (file hashes, the
base image, the git revision, dockerd's version, the run's parameters without their
secrets); `statement` turns them and the release record into the document that is
attached to the digest in the registry and stored beside release.json.

    inputs = build_inputs(client, matrix_path, matrix, cell, ctx, base, parameters, settings.build)
    text = statement(record, inputs, registry, repository, digest, sbom_sha256).to_json()
"""

from __future__ import annotations

import hashlib
import platform
from datetime import UTC, datetime
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from flagrelease.adapters import docker_engine
from flagrelease.adapters.source_control import git_revision
from flagrelease.provenance import (
    BuildDefinition,
    Builder,
    BuildInputs,
    BuildMetadata,
    ResourceDescriptor,
    RunDetails,
    SlsaProvenance,
    Statement,
    sha256_digest,
)
from flagrelease.record import ReleaseRecord
from flagrelease.results import BaseImageResult, BuildContext
from flagrelease.schema import Cell, MatrixFile
from flagrelease.settings import BuildSettings

BUILDER_ID = "urn:flagrelease:builder:docker-engine"
SECRET = "<set; a secret, not recorded>"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def without_userinfo(url: str) -> str:
    """A URL with any user:password@ removed (mirrors may carry credentials)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    return urlunsplit(parts._replace(netloc=host + (f":{parts.port}" if parts.port else "")))


def build_settings(build: BuildSettings) -> dict[str, Any]:
    """The build settings that shaped the image, named one by one: secrets only as 'set'."""
    return {
        "apt_mirror": without_userinfo(build.apt_mirror) if build.apt_mirror else None,
        "base_mirror": build.base_mirror,
        "docker_cli": build.docker_cli,
        "ca_bundle": str(build.ca_bundle) if build.ca_bundle else None,
        "pip_index_url": SECRET if build.pip_index_url is not None else None,
    }


def build_inputs(
    client,
    matrix_path: Path,
    matrix: MatrixFile,
    cell: Cell,
    ctx: BuildContext,
    base: BaseImageResult,
    parameters: dict[str, Any],
    build: BuildSettings,
) -> BuildInputs:
    template = matrix.dockerfiles / cell.chip.template
    revision = git_revision(matrix_path)
    return BuildInputs(
        matrix_path=str(matrix_path),
        matrix_sha256=_sha256(matrix_path),
        template_path=str(template),
        template_sha256=_sha256(template),
        stack_context_sha256=ctx.stack.context_hash,
        model_context_sha256=ctx.model.context_hash,
        base_ref=base.ref,
        base_image_id=base.image_id,
        git_commit=revision[0] if revision else None,
        git_dirty=revision[1] if revision else False,
        dockerd=docker_engine.engine_version(client),
        parameters=parameters | {"build": build_settings(build)},
    )


def statement(
    record: ReleaseRecord,
    inputs: BuildInputs,
    registry: str,
    repository: str,
    digest: str,
    sbom_sha256: str | None,
    finished: datetime | None = None,
) -> Statement:
    """The provenance of `registry/repository@digest`, released by `record`'s run."""
    dependencies = [
        ResourceDescriptor(name=inputs.matrix_path, digest={"sha256": inputs.matrix_sha256}),
        ResourceDescriptor(name=inputs.template_path, digest={"sha256": inputs.template_sha256}),
        ResourceDescriptor(name="build context: chip stack", digest={"sha256": inputs.stack_context_sha256}),
        ResourceDescriptor(name="build context: model image", digest={"sha256": inputs.model_context_sha256}),
        ResourceDescriptor(name=inputs.base_ref, digest=sha256_digest(inputs.base_image_id)),
    ]
    if inputs.git_commit:
        dependencies.append(
            ResourceDescriptor(
                name="source", digest={"gitCommit": inputs.git_commit}, annotations={"dirty": inputs.git_dirty}
            )
        )
    gate = record.gate
    byproducts = [
        ResourceDescriptor(
            name="gate",
            annotations={"verdict": gate.verdict, "release": gate.release, "reason": gate.reason} if gate else {},
        ),
        ResourceDescriptor(name="release record", annotations={"run_id": record.run_id, "cell": record.cell}),
    ]
    if sbom_sha256:
        byproducts.append(ResourceDescriptor(name="sbom", digest={"sha256": sbom_sha256}))
    return Statement(
        subject=[ResourceDescriptor(name=f"{registry}/{repository}", digest=sha256_digest(digest))],
        predicate=SlsaProvenance(
            buildDefinition=BuildDefinition(
                externalParameters={"model": record.model, "chip": record.chip} | inputs.parameters,
                internalParameters={"pins": record.pins, "release_key": record.release_key},
                resolvedDependencies=dependencies,
            ),
            runDetails=RunDetails(
                builder=Builder(
                    id=BUILDER_ID,
                    version={
                        "dockerd": inputs.dockerd,
                        "flagrelease": installed_version("flagrelease"),
                        "docker-sdk": installed_version("docker"),
                        "python": platform.python_version(),
                    },
                ),
                metadata=BuildMetadata(
                    invocationId=record.run_id, startedOn=record.started, finishedOn=finished or datetime.now(UTC)
                ),
                byproducts=byproducts,
            ),
        ),
    )
