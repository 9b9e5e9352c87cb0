"""Distribute step: the plan bundle into the shared artifact store, and back out on a worker.

digest = publish_bundle(settings, matrix, models)   # orchestrator
matrix_path = fetch_bundle(settings, digest)        # any chip host
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from flagrelease import bundle
from flagrelease.adapters.artifact_store import shared_store, store_from_settings
from flagrelease.errors import ConfigError, ServiceError
from flagrelease.schema import MatrixFile
from flagrelease.settings import Settings


def publish_bundle(settings: Settings, matrix: MatrixFile, models: Iterable[str]) -> str:
    """Store the bundle of what `models` need (idempotent: content-addressed); its digest."""
    data, digest = bundle.pack(matrix, models)
    store = shared_store(store_from_settings(settings.s3_url, settings.s3_endpoint_url, settings.results_dir))
    store.put_bytes(bundle.key(digest), data)
    return digest


def fetch_bundle(settings: Settings, digest: str) -> Path:
    """The matrix file of the bundle `digest`, checked and unpacked under FLAGRELEASE_HOME."""
    if not digest.startswith("sha256:") or len(digest) != 71:
        raise ConfigError(f"{digest!r} is not a plan bundle digest (sha256:<64 hex>)", where="bundle")
    target = settings.home / "bundles" / digest.removeprefix("sha256:")
    if (target / bundle.MATRIX_NAME).is_file():
        return target / bundle.MATRIX_NAME
    store = shared_store(store_from_settings(settings.s3_url, settings.s3_endpoint_url, settings.results_dir))
    try:
        data = store.get(bundle.key(digest))
    except ServiceError as err:
        raise ServiceError(
            f"plan bundle {digest} is not in {store.location}: {err.problem}",
            where=bundle.key(digest),
            fix="give every chip host the orchestrator's artifact store (FLAGRELEASE_S3_URL, or the same "
            "FLAGRELEASE_HOME on one machine)",
        ) from None
    return bundle.unpack(data, digest, target)
