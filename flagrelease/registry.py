"""The one place that talks to an OCI registry's HTTP API (distribution v2)."""

from __future__ import annotations

import httpx

from flagrelease.errors import ServiceError
from flagrelease.loopback import is_loopback

MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])


def base_url(registry: str) -> str:
    """Loopback registries speak plain HTTP (as dockerd allows for 127.0.0.0/8); others HTTPS."""
    return f"{'http' if is_loopback(registry.rsplit(':', 1)[0]) else 'https'}://{registry}"


class RegistryClient:
    def __init__(self, registry: str, auth: tuple[str, str] | None = None, timeout: float = 10.0):
        self.registry = registry
        self._http = httpx.Client(base_url=base_url(registry), auth=auth, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "RegistryClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def check(self) -> None:
        """Fail early, before anything is built, when the registry cannot take a push."""
        try:
            response = self._http.get("/v2/")
        except httpx.HTTPError as err:
            raise ServiceError(
                f"registry {self.registry} cannot be reached: {type(err).__name__}: {err}",
                where=f"--registry / FLAGRELEASE_REGISTRY = {self.registry}",
                fix="start the registry or correct its address (omit --registry to use a local one)",
            ) from None
        if response.status_code == 401:
            raise ServiceError(
                f"registry {self.registry} refused the credentials (HTTP 401)",
                where=self.registry,
                fix="set FLAGRELEASE_REGISTRY_USERNAME/FLAGRELEASE_REGISTRY_PASSWORD or `docker login`",
            )
        if response.status_code != 200:
            raise ServiceError(f"registry {self.registry} answered /v2/ with HTTP {response.status_code}",
                               where=self.registry)

    def manifest_digest(self, repository: str, tag: str) -> str | None:
        """Digest of repository:tag, or None when the tag does not exist."""
        response = self._http.head(f"/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES})
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.headers["Docker-Content-Digest"]

    def tags(self, repository: str) -> list[str]:
        response = self._http.get(f"/v2/{repository}/tags/list")
        if response.status_code == 404:
            return []
        response.raise_for_status()
        return response.json().get("tags") or []
