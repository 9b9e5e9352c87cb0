"""OCI artifacts that refer to an image: documents pushed to the registry with the image's
manifest as their `subject` (OCI image spec 1.1), through oras-py.

A registry that implements the referrers API says so when it stores such a manifest (the
`OCI-Subject` response header) and lists it itself. One that does not (the distribution
registry used here) gets the tag-schema fallback of the OCI distribution spec 1.1: the
index tagged `sha256-<hex>` lists the referrers of `sha256:<hex>`, and this module adds
each artifact to it. Every artifact is also tagged `sha256-<hex>.<kind>` so that a
person can find it with any registry client. Reading goes through RegistryClient.referrers.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import oras.oci
import requests

from flagrelease.adapters.oras_registry import message
from flagrelease.adapters.registry import INDEX_TYPE, RegistryClient, referrers_tag
from flagrelease.adapters.registry_auth import RegistryCredentials
from flagrelease.errors import ServiceError, ServiceUnavailable

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
# The empty config of an artifact manifest (OCI image spec 1.1: `{}`, this digest and size).
EMPTY_CONFIG = {
    "mediaType": "application/vnd.oci.empty.v1+json",
    "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
    "size": 2,
}
TITLE = "org.opencontainers.image.title"


def attach(
    registry: str,
    credentials: RegistryCredentials,
    repository: str,
    subject_digest: str,
    document: Path,
    artifact_type: str,
    kind: str,
    annotations: dict[str, str],
) -> tuple[str, str]:
    """Push `document` as an artifact referring to repository@subject_digest; (its manifest
    digest, how the registry lists it: "api" or "tag")."""
    with RegistryClient(registry, credentials) as api:
        subject = api.descriptor(repository, subject_digest)
        tag = f"{referrers_tag(subject_digest)}.{kind}"
        client = api.oras  # the same client and tokens as every other registry call
        container = api.container(repository, tag)
        layer = oras.oci.NewLayer(str(document), media_type=artifact_type)
        layer["annotations"] = {TITLE: document.name}
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "artifactType": artifact_type,
            "config": EMPTY_CONFIG,
            "layers": [layer],
            "subject": subject,
            "annotations": annotations,
        }
        try:
            with tempfile.TemporaryDirectory() as tmp:
                empty = Path(tmp) / "config.json"
                empty.write_text("{}")
                _ok(client.upload_blob(str(empty), container, EMPTY_CONFIG), registry, f"the empty config of {tag}")
            _ok(client.upload_blob(str(document), container, layer), registry, f"{document.name}")
            response = _ok(client.upload_manifest(manifest, container), registry, f"{repository}:{tag}")
        except (requests.RequestException, ValueError) as err:
            raise ServiceUnavailable(
                f"pushing {document.name} to {registry}/{repository} failed: {type(err).__name__}: {err}",
                where=registry,
            ) from None
        digest = response.headers["Docker-Content-Digest"]
        if response.headers.get("OCI-Subject") == subject_digest:
            return digest, "api"
        _add_to_fallback_index(api, repository, subject_digest, api.descriptor(repository, digest), manifest)
        return digest, "tag"


def _ok(response: requests.Response, registry: str, what: str) -> requests.Response:
    if response.status_code not in (200, 201, 202):
        kind = ServiceUnavailable if response.status_code >= 500 else ServiceError
        raise kind(
            f"registry {registry} refused {what}: HTTP {response.status_code} {message(response)}", where=registry
        )
    return response


def detach(
    registry: str, credentials: RegistryCredentials, repository: str, subject_digest: str, artifact: str
) -> None:
    """Remove an artifact attached to repository@subject_digest: its manifest (and with it its
    `sha256-<hex>.<kind>` tag, and its place in a referrers API's list) and its entry in the
    fallback index, which goes too once it lists nothing."""
    with RegistryClient(registry, credentials) as api:
        api.delete_manifest(repository, artifact)
        tag = referrers_tag(subject_digest)
        index = api.manifest_document(repository, tag)
        if index is None:
            return
        entries = [m for m in index.get("manifests") or [] if m.get("digest") != artifact]
        if not entries:
            api.delete_manifest(repository, api.descriptor(repository, tag)["digest"])
        elif len(entries) < len(index.get("manifests") or []):
            api.put_manifest(repository, tag, json.dumps(index | {"manifests": entries}).encode(), INDEX_TYPE)


def _add_to_fallback_index(api: RegistryClient, repository: str, subject: str, artifact: dict, manifest: dict) -> None:
    """Add the artifact to the `sha256-<hex>` index of its subject's referrers (created if absent)."""
    tag = referrers_tag(subject)
    index = api.manifest_document(repository, tag) or {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": []}
    entries = [m for m in index.get("manifests") or [] if m.get("digest") != artifact["digest"]]
    entries.append(artifact | {"artifactType": manifest["artifactType"], "annotations": manifest["annotations"]})
    index["manifests"] = entries
    api.put_manifest(repository, tag, json.dumps(index).encode(), INDEX_TYPE)
