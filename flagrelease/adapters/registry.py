"""The one place that talks to an OCI registry's HTTP API (distribution v2), through oras-py.

Every request goes through oras-py's Registry (adapters/oras_registry.py: HTTP basic and
Docker bearer-token auth, tokens per repository and access, renewed before they expire);
its own API is used where it has one (tags with pagination, blobs, artifact uploads in
oci_artifacts.py). What oras-py 0.2.43 does not offer is spelled here over its
`do_request`: the digest from a HEAD of a manifest, any manifest's exact bytes and media
type (its get_manifest parses, validates against the OCI schema and drops the headers),
a PUT of those bytes under another tag (its upload_manifest re-serialises as an OCI
manifest, which would change a Docker v2 manifest's digest), a delete by digest (its
delete_tag refuses anything but an OCI manifest), the referrers API, and the push probe.
Every failure becomes a ServiceError naming the registry, never the credentials.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from urllib.parse import urljoin

import oras.container
import requests

from flagrelease.adapters.loopback import is_loopback
from flagrelease.adapters.oras_registry import OrasRegistry, Refused, message
from flagrelease.adapters.registry_auth import RegistryCredentials
from flagrelease.errors import ServiceError, ServiceUnavailable
from flagrelease.settings import default_ca_bundle

# One image's manifest (what `docker push` of one platform writes), then indexes of several.
IMAGE_MANIFEST_TYPES = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
]
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
ALL_MANIFEST_TYPES = [
    INDEX_TYPE,
    *IMAGE_MANIFEST_TYPES,
    "application/vnd.docker.distribution.manifest.list.v2+json",
]
# SBOMs and provenance statements; an image's layers are never read through `blob`.
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
MANIFEST_TYPES = ", ".join(ALL_MANIFEST_TYPES)
# Docker Hub's images are named docker.io/…; its registry API answers on another host.
API_HOSTS = {"docker.io": "registry-1.docker.io", "index.docker.io": "registry-1.docker.io"}


def api_host(registry: str) -> str:
    return API_HOSTS.get(registry, registry)


def plain_http(registry: str) -> bool:
    """Loopback registries speak plain HTTP (as dockerd allows for 127.0.0.0/8); others HTTPS."""
    return is_loopback(registry.rsplit(":", 1)[0])


class RegistryClient:
    def __init__(
        self,
        registry: str,
        credentials: RegistryCredentials | None = None,
        timeout: float = 10.0,
        ca_bundle: Path | None = None,
    ):
        """`ca_bundle`: the PEM bundle to verify HTTPS registries (and their token services)
        with; by default what builds trust (FLAGRELEASE_CA_BUNDLE, else the host's bundle)."""
        self.registry = registry
        self.credentials = credentials or RegistryCredentials()
        self.oras = OrasRegistry(
            registry,
            api_host(registry),
            self.credentials,
            insecure=plain_http(registry),
            ca_bundle=ca_bundle or default_ca_bundle(),
            timeout=timeout,
        )

    def close(self) -> None:
        self.oras.session.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def container(self, repository: str, reference: str | None = None) -> oras.container.Container:
        """oras-py's name for repository[:tag|@digest] on this registry (it builds the URLs)."""
        name = f"{api_host(self.registry)}/{repository}"
        if reference:
            name += f"@{reference}" if reference.startswith("sha256:") else f":{reference}"
        return self.oras.get_container(name)

    def _url(self, path: str) -> str:
        return f"{self.oras.prefix}://{api_host(self.registry)}{path}"

    def _manifest_url(self, repository: str, reference: str) -> str:
        return f"{self.oras.prefix}://{self.container(repository).manifest_url(reference)}"

    def _request(self, method: str, url: str, **kwargs) -> requests.Response:
        return self.oras.do_request(url, method, **kwargs)

    def _checked(self, response: requests.Response, action: str) -> requests.Response:
        if response.status_code >= 400:
            kind = ServiceUnavailable if response.status_code >= 500 else ServiceError
            raise kind(
                f"registry {self.registry} refused to {action}: HTTP {response.status_code} {message(response)}",
                where=self.registry,
            )
        return response

    def check(self) -> None:
        """Fail early, before anything is built, when the registry or the credentials will not do:
        the /v2/ ping, answered with the credentials (a token service checks them here too)."""
        response = self._checked(self._request("GET", self._url("/v2/")), "answer the /v2/ ping")
        if response.status_code != 200:
            raise ServiceError(
                f"registry {self.registry} answered /v2/ with HTTP {response.status_code}", where=self.registry
            )

    def check_push(self, repository: str) -> None:
        """Fail before the build when these credentials may not push to `repository`.

        Starts a blob upload (what a push does first, needing the push scope) and cancels it:
        no blob, manifest or tag is written (distribution keeps the empty upload's state until
        its upload purging). Cancelling needs the delete scope on distribution; an account
        without it leaves the empty upload open, which that purging removes too.
        """
        container = self.container(repository)
        response = self._request("POST", f"{self.oras.prefix}://{container.upload_blob_url()}")
        self._checked(response, f"start an upload to {repository}")
        location = response.headers.get("Location")
        if location:
            with contextlib.suppress(ServiceError):  # no delete scope: the empty session expires
                self._request("DELETE", urljoin(self._url("/v2/"), location))

    def manifest_digest(self, repository: str, tag: str) -> str | None:
        """Digest of repository:tag, or None when the tag does not exist."""
        response = self._request("HEAD", self._manifest_url(repository, tag), headers={"Accept": MANIFEST_TYPES})
        if response.status_code == 404:
            return None
        return self._checked(response, f"look up {repository}:{tag}").headers["Docker-Content-Digest"]

    def manifest(self, repository: str, reference: str) -> dict:
        """The image manifest of repository:tag or @digest (config and layer descriptors)."""
        response = self._checked(
            self._request(
                "GET", self._manifest_url(repository, reference), headers={"Accept": ", ".join(IMAGE_MANIFEST_TYPES)}
            ),
            f"read {repository}:{reference}",
        )
        manifest = response.json()
        if "config" not in manifest:
            raise ServiceError(
                f"{self.registry}/{repository}:{reference} is not one image's manifest "
                f"({manifest.get('mediaType', 'no media type')})",
                where=self.registry,
            )
        return manifest

    def labels(self, repository: str, reference: str) -> dict[str, str]:
        """The labels in the image config the manifest names: what the registry itself says
        the image is, whatever any local file claims."""
        config = self.manifest(repository, reference)["config"]["digest"]
        return (_json(self.blob(repository, config)).get("config") or {}).get("Labels") or {}

    def tag_manifest(self, repository: str, digest: str, tag: str) -> None:
        """Point repository:tag at the manifest `digest`, overwriting the tag.

        The manifest's bytes are copied unchanged, so its digest cannot change.
        """
        got = self._checked(
            self._request("GET", self._manifest_url(repository, digest), headers={"Accept": MANIFEST_TYPES}),
            f"read {repository}@{digest}",
        )
        self.put_manifest(repository, tag, got.content, got.headers["Content-Type"])

    def delete_manifest(self, repository: str, digest: str) -> None:
        """Delete a manifest by digest, and with it every tag in `repository` that points at it."""
        response = self._request("DELETE", self._manifest_url(repository, digest))
        if response.status_code != 404:
            self._checked(response, f"delete {repository}@{digest}")

    def tags(self, repository: str) -> list[str]:
        """Every tag of `repository`, all pages (Harbor and Quay paginate); none when it does not exist."""
        try:
            return self.oras.get_tags(self.container(repository))
        except Refused as refused:
            if refused.response.status_code == 404:
                return []
            self._checked(refused.response, f"list the tags of {repository}")
            raise

    def descriptor(self, repository: str, reference: str) -> dict:
        """{mediaType, digest, size} of the manifest at repository:tag or @digest, from its bytes."""
        response = self._checked(
            self._request("GET", self._manifest_url(repository, reference), headers={"Accept": MANIFEST_TYPES}),
            f"read {repository}:{reference}",
        )
        return {
            "mediaType": response.headers["Content-Type"].split(";")[0],
            "digest": response.headers["Docker-Content-Digest"],
            "size": len(response.content),
        }

    def manifest_document(self, repository: str, reference: str) -> dict | None:
        """Any manifest or index at repository:tag or @digest as JSON; None when absent."""
        response = self._request(
            "GET", self._manifest_url(repository, reference), headers={"Accept": ", ".join(ALL_MANIFEST_TYPES)}
        )
        if response.status_code == 404:
            return None
        return self._checked(response, f"read {repository}:{reference}").json()

    def put_manifest(self, repository: str, reference: str, document: bytes, media_type: str) -> str:
        """PUT a manifest or index; the digest the registry gives it."""
        response = self._checked(
            self._request(
                "PUT", self._manifest_url(repository, reference), data=document, headers={"Content-Type": media_type}
            ),
            f"write {repository}:{reference}",
        )
        return response.headers["Docker-Content-Digest"]

    def blob(self, repository: str, digest: str, max_bytes: int = MAX_DOCUMENT_BYTES) -> bytes:
        """A blob's bytes, bounded (documents and image configs, not layers)."""
        response = self.oras.get_blob(self.container(repository), digest, stream=True)
        with response:
            if response.status_code >= 400:
                self._checked(response, f"read the blob {digest} of {repository}")
            chunks: list[bytes] = []
            try:
                for chunk in response.iter_content(chunk_size=1 << 16):
                    chunks.append(chunk)
                    if sum(map(len, chunks)) > max_bytes:
                        raise ServiceError(
                            f"blob {digest} of {self.registry}/{repository} exceeds {max_bytes} bytes",
                            where=self.registry,
                        )
            except requests.RequestException as err:
                raise ServiceUnavailable(
                    f"registry {self.registry} failed while sending {digest}: {type(err).__name__}: {err}",
                    where=self.registry,
                ) from None
        return b"".join(chunks)

    def referrers(self, repository: str, digest: str) -> list[dict]:
        """Descriptors of the manifests whose `subject` is `digest`: the referrers API where the
        registry has it, else the tag-schema fallback (`sha256-<hex>` index, OCI distribution 1.1)."""
        response = self._request(
            "GET",
            self._url(f"/v2/{repository}/referrers/{digest}"),
            headers={"Accept": "application/vnd.oci.image.index.v1+json"},
        )
        if response.status_code == 200 and response.headers.get("Content-Type", "").startswith(INDEX_TYPE):
            return response.json().get("manifests") or []
        index = self.manifest_document(repository, referrers_tag(digest))
        return (index or {}).get("manifests") or []


def referrers_tag(digest: str) -> str:
    """The fallback tag listing the referrers of `digest`: sha256:<hex> -> sha256-<hex>."""
    return digest.replace(":", "-", 1)


def _json(data: bytes) -> dict:
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
