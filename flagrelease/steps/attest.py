"""Attest step: the SBOM and provenance of a release, beside its record and on its digest.

`make_sbom` runs before the push (a gate-passed image whose inventory cannot be read is not
pushed); `attach_documents` runs inside the push, between the verified release tag and the
aliases (publish.push_release's `attach`), so a release whose documents did not land fails
like a failed push and gets neither aliases nor its key tag. A member of a multi-arch set
gets its documents when it is staged (publish.stage's `attach`); the digest keeps them when
the set is promoted, and `detach_documents` removes them when the set is rolled back.

    record.attestations = {"sbom": make_sbom(client, record.image, sources, run_dir, labels=labels)}
    record.attestations = attach_documents(registry, repository, digest, run_dir, record, inputs)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from flagrelease.adapters import oci_artifacts
from flagrelease.adapters.registry_auth import resolve_credentials
from flagrelease.errors import ServiceError
from flagrelease.provenance import BuildInputs
from flagrelease.record import ReleaseRecord
from flagrelease.results import ImageRef
from flagrelease.schema import SbomSources
from flagrelease.steps import provenance, sbom
from flagrelease.supply_chain import FILES, MEDIA_TYPES, PROVENANCE_KIND, SBOM_KIND, Attestation

CREATED = "org.opencontainers.image.created"


def _write(run_dir: Path, kind: str, text: str) -> Attestation:
    run_dir.mkdir(parents=True, exist_ok=True)
    data = text.encode()
    (run_dir / FILES[kind]).write_bytes(data)
    return Attestation(
        kind=kind,
        file=FILES[kind],
        media_type=MEDIA_TYPES[kind],
        sha256=hashlib.sha256(data).hexdigest(),
    )


def make_sbom(
    client, image: ImageRef, sources: SbomSources, run_dir: Path, *, labels: dict[str, str], timeout_s: float = 120
) -> Attestation:
    """The image's CycloneDX SBOM, written beside release.json. `labels`: the probe container's."""
    inventory = sbom.read_inventory(client, image.image_id, sources, labels=labels, timeout_s=timeout_s)
    return _write(run_dir, SBOM_KIND, sbom.sbom_json(inventory, image))


def attach_documents(
    registry: str,
    repository: str,
    digest: str,
    run_dir: Path,
    record: ReleaseRecord,
    inputs: BuildInputs,
    on_line=print,
) -> dict[str, Attestation]:
    """Write the provenance of registry/repository@digest, then attach it and the SBOM to
    the digest; the attestations with their artifacts' manifest digests."""
    made = record.attestations[SBOM_KIND]
    statement = provenance.statement(record, inputs, registry, repository, digest, made.sha256)
    documents = {SBOM_KIND: made, PROVENANCE_KIND: _write(run_dir, PROVENANCE_KIND, statement.to_json())}
    credentials = resolve_credentials(registry)
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    attached: dict[str, Attestation] = {}
    try:
        for kind, document in documents.items():
            manifest, listed_by = oci_artifacts.attach(
                registry,
                credentials,
                repository,
                digest,
                run_dir / document.file,
                document.media_type,
                kind,
                {CREATED: created, "org.flagos.release-run": record.run_id},
            )
            on_line(f"attached the {kind} to {registry}/{repository}@{digest} as {manifest} (referrers: {listed_by})")
            attached[kind] = document.model_copy(update={"manifest_digest": manifest, "listed_by": listed_by})
    except BaseException:  # half attached is not attached: the caller removes the image too
        detach_documents(registry, repository, digest, [a.manifest_digest for a in attached.values()], on_line)
        raise
    return attached


def detach_documents(
    registry: str, repository: str, digest: str, artifacts: Iterable[str | None], on_line=print
) -> list[str]:
    """Remove the artifacts (manifest digests) attached to repository@digest by a release that
    did not happen, best effort; the ones that could not be removed, and why."""
    credentials = resolve_credentials(registry)
    left = []
    for artifact in filter(None, artifacts):
        try:
            oci_artifacts.detach(registry, credentials, repository, digest, artifact)
            on_line(f"removed {registry}/{repository}@{artifact}, attached to {digest}")
        except ServiceError as err:
            left.append(f"{repository}@{artifact} ({err.problem})")
    return left
