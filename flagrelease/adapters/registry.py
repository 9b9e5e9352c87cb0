"""The one place that talks to an OCI registry's HTTP API (distribution v2).

Authentication is HTTP basic (what distribution's htpasswd auth speaks); every
failure becomes a ServiceError naming the registry, never the credentials.
"""

from __future__ import annotations

import httpx

from flagrelease.adapters.loopback import is_loopback
from flagrelease.adapters.registry_auth import PASSWORD_VAR, USERNAME_VAR, RegistryCredentials
from flagrelease.errors import ServiceError, ServiceUnavailable

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


def base_url(registry: str) -> str:
    """Loopback registries speak plain HTTP (as dockerd allows for 127.0.0.0/8); others HTTPS."""
    return f"{'http' if is_loopback(registry.rsplit(':', 1)[0]) else 'https'}://{registry}"


def _registry_message(response: httpx.Response) -> str:
    """The registry's own words: distribution's {"errors": [...]} body, else the raw text."""
    try:
        errors = response.json().get("errors") or []
        text = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
    except (ValueError, AttributeError):
        text = ""
    return text or response.text.strip()[:300] or response.reason_phrase


class RegistryClient:
    def __init__(self, registry: str, credentials: RegistryCredentials | None = None, timeout: float = 10.0):
        self.registry = registry
        self.credentials = credentials or RegistryCredentials()
        self._http = httpx.Client(base_url=base_url(registry), auth=self.credentials.basic(), timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _send(self, method: str, url: str, **kwargs) -> httpx.Response:
        try:
            return self._http.request(method, url, **kwargs)
        except httpx.HTTPError as err:
            raise ServiceUnavailable(
                f"registry {self.registry} cannot be reached: {type(err).__name__}: {err}",
                where=f"--registry / FLAGRELEASE_REGISTRY = {self.registry}",
                fix="start the registry or correct its address (omit --registry to use a local one)",
            ) from None

    def _unauthorized(self) -> ServiceError:
        source = self.credentials.source
        if self.credentials.anonymous:
            return ServiceError(
                f"registry {self.registry} requires credentials and none were found ({source})",
                where=self.registry,
                fix=f"set {USERNAME_VAR}/{PASSWORD_VAR} or `docker login {self.registry}`",
            )
        return ServiceError(
            f"registry {self.registry} refused the credentials from {source} (HTTP 401)",
            where=self.registry,
            fix=f"correct {USERNAME_VAR}/{PASSWORD_VAR} or `docker login {self.registry}` again",
        )

    def _checked(self, response: httpx.Response, action: str) -> httpx.Response:
        if response.status_code == 401:
            raise self._unauthorized()
        if response.is_error:
            kind = ServiceUnavailable if response.status_code >= 500 else ServiceError
            raise kind(
                f"registry {self.registry} refused to {action}: HTTP {response.status_code} "
                f"{_registry_message(response)}",
                where=self.registry,
            )
        return response

    def check(self) -> None:
        """Fail early, before anything is built, when the registry cannot take a push."""
        response = self._checked(self._send("GET", "/v2/"), "answer the /v2/ ping")
        if response.status_code != 200:
            raise ServiceError(
                f"registry {self.registry} answered /v2/ with HTTP {response.status_code}", where=self.registry
            )

    def manifest_digest(self, repository: str, tag: str) -> str | None:
        """Digest of repository:tag, or None when the tag does not exist."""
        response = self._send("HEAD", f"/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES})
        if response.status_code == 404:
            return None
        return self._checked(response, f"look up {repository}:{tag}").headers["Docker-Content-Digest"]

    def manifest(self, repository: str, reference: str) -> dict:
        """The image manifest of repository:tag or @digest (config and layer descriptors)."""
        response = self._checked(
            self._send(
                "GET", f"/v2/{repository}/manifests/{reference}", headers={"Accept": ", ".join(IMAGE_MANIFEST_TYPES)}
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
        response = self._checked(
            self._send("GET", f"/v2/{repository}/blobs/{config}", follow_redirects=True),
            f"read the config {config} of {repository}:{reference}",
        )
        return (response.json().get("config") or {}).get("Labels") or {}

    def tag_manifest(self, repository: str, digest: str, tag: str) -> None:
        """Point repository:tag at the manifest `digest`, overwriting the tag.

        The manifest's bytes are copied unchanged, so its digest cannot change.
        """
        got = self._checked(
            self._send("GET", f"/v2/{repository}/manifests/{digest}", headers={"Accept": MANIFEST_TYPES}),
            f"read {repository}@{digest}",
        )
        self._checked(
            self._send(
                "PUT",
                f"/v2/{repository}/manifests/{tag}",
                content=got.content,
                headers={"Content-Type": got.headers["Content-Type"]},
            ),
            f"tag {repository}:{tag}",
        )

    def delete_manifest(self, repository: str, digest: str) -> None:
        """Delete a manifest by digest, and with it every tag in `repository` that points at it."""
        response = self._send("DELETE", f"/v2/{repository}/manifests/{digest}")
        if response.status_code != 404:
            self._checked(response, f"delete {repository}@{digest}")

    def tags(self, repository: str) -> list[str]:
        response = self._send("GET", f"/v2/{repository}/tags/list")
        if response.status_code == 404:
            return []
        return self._checked(response, f"list the tags of {repository}").json().get("tags") or []

    def descriptor(self, repository: str, reference: str) -> dict:
        """{mediaType, digest, size} of the manifest at repository:tag or @digest, from its bytes."""
        response = self._checked(
            self._send("GET", f"/v2/{repository}/manifests/{reference}", headers={"Accept": MANIFEST_TYPES}),
            f"read {repository}:{reference}",
        )
        return {
            "mediaType": response.headers["Content-Type"].split(";")[0],
            "digest": response.headers["Docker-Content-Digest"],
            "size": len(response.content),
        }

    def manifest_document(self, repository: str, reference: str) -> dict | None:
        """Any manifest or index at repository:tag or @digest as JSON; None when absent."""
        response = self._send(
            "GET", f"/v2/{repository}/manifests/{reference}", headers={"Accept": ", ".join(ALL_MANIFEST_TYPES)}
        )
        if response.status_code == 404:
            return None
        return self._checked(response, f"read {repository}:{reference}").json()

    def put_manifest(self, repository: str, reference: str, document: bytes, media_type: str) -> str:
        """PUT a manifest or index; the digest the registry gives it."""
        response = self._checked(
            self._send(
                "PUT", f"/v2/{repository}/manifests/{reference}", content=document, headers={"Content-Type": media_type}
            ),
            f"write {repository}:{reference}",
        )
        return response.headers["Docker-Content-Digest"]

    def blob(self, repository: str, digest: str, max_bytes: int = MAX_DOCUMENT_BYTES) -> bytes:
        """A blob's bytes, bounded (documents, not layers)."""
        chunks: list[bytes] = []
        try:
            with self._http.stream("GET", f"/v2/{repository}/blobs/{digest}", follow_redirects=True) as response:
                if response.is_error:
                    response.read()
                    self._checked(response, f"read the blob {digest} of {repository}")
                for chunk in response.iter_bytes():
                    chunks.append(chunk)
                    if sum(map(len, chunks)) > max_bytes:
                        raise ServiceError(
                            f"blob {digest} of {self.registry}/{repository} exceeds {max_bytes} bytes",
                            where=self.registry,
                        )
        except httpx.HTTPError as err:
            raise ServiceUnavailable(
                f"registry {self.registry} failed while sending {digest}: {type(err).__name__}: {err}",
                where=self.registry,
            ) from None
        return b"".join(chunks)

    def referrers(self, repository: str, digest: str) -> list[dict]:
        """Descriptors of the manifests whose `subject` is `digest`: the referrers API where the
        registry has it, else the tag-schema fallback (`sha256-<hex>` index, OCI distribution 1.1)."""
        response = self._send(
            "GET", f"/v2/{repository}/referrers/{digest}", headers={"Accept": "application/vnd.oci.image.index.v1+json"}
        )
        if response.status_code == 200 and response.headers.get("Content-Type", "").startswith(INDEX_TYPE):
            return response.json().get("manifests") or []
        if response.status_code == 401:
            raise self._unauthorized()
        index = self.manifest_document(repository, referrers_tag(digest))
        return (index or {}).get("manifests") or []


def referrers_tag(digest: str) -> str:
    """The fallback tag listing the referrers of `digest`: sha256:<hex> -> sha256-<hex>."""
    return digest.replace(":", "-", 1)
