"""Where run artifacts are kept: a local directory always, an S3 bucket when configured.

Both stores lay a run out as `<prefix>/<cell>/<run_id>/<file>`, so the release.json
records they hold can rebuild the ledger. S3 credentials come from the standard AWS
chain (env, config files, instance role) inside boto3; this module never sees,
logs or stores them.
"""

from __future__ import annotations

import mimetypes
import re
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from flagrelease.errors import ConfigError, ServiceError, ServiceUnavailable
from flagrelease.record import RECORD_FILE, ReleaseRecord

S3_URL_SETTING = "FLAGRELEASE_S3_URL"
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class ArtifactStore(Protocol):
    location: str

    def put_run(self, run_dir: Path, key_prefix: str) -> list[str]: ...

    def list_records(self) -> list[ReleaseRecord]: ...

    def get(self, key: str) -> bytes: ...

    def put_bytes(self, key: str, data: bytes) -> None: ...


@dataclass(frozen=True)
class StoreResult:
    """What one store did with a run; `error` says why when it refused."""

    store: str
    ok: bool
    keys: tuple[str, ...] = ()
    error: str | None = None

    @property
    def uris(self) -> list[str]:
        return [f"{self.store}/{key}" for key in self.keys]


def _run_files(run_dir: Path) -> list[tuple[str, Path]]:
    """(relative key, file) for every file of a run directory, the record last: a store
    that holds a run's release.json holds all of its files, even after a failed upload."""
    files = [(p.relative_to(run_dir).as_posix(), p) for p in run_dir.rglob("*") if p.is_file()]
    return sorted(files, key=lambda item: (item[0] == RECORD_FILE, item[0]))


def _is_record_key(key: str) -> bool:
    """Only `<cell>/<run_id>/release.json`: other JSON files are not records."""
    parts = key.split("/")
    return len(parts) == 3 and parts[2] == RECORD_FILE


class LocalStore:
    def __init__(self, root: Path):
        self.root = root
        self.location = str(root)

    def __repr__(self) -> str:
        return f"LocalStore({self.location!r})"

    def put_run(self, run_dir: Path, key_prefix: str) -> list[str]:
        keys = []
        for rel, src in _run_files(run_dir):
            key = f"{key_prefix}/{rel}"
            dest = self.root / key
            # The default root is the results directory itself: the run is already in place.
            if dest.resolve() != src.resolve():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest)
            keys.append(key)
        return keys

    def list_records(self) -> list[ReleaseRecord]:
        return [ReleaseRecord.load(p) for p in sorted(self.root.glob(f"*/*/{RECORD_FILE}"))]

    def get(self, key: str) -> bytes:
        path = self.root / key
        if not path.is_file():
            raise ServiceError(f"no artifact {key} in the local store", where=str(path))
        return path.read_bytes()

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(data)
        partial.replace(path)  # readers never see half a file


class S3Store:
    def __init__(
        self,
        bucket: str,
        prefix: str,
        endpoint_url: str | None = None,
        region: str | None = None,
        *,
        connect_timeout: float = 5.0,
        max_attempts: int = 3,
    ):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.location = f"s3://{bucket}/{self.prefix}".rstrip("/")
        # boto3 here, not at module level: a third of a second that runs without S3 do not need.
        import boto3.session
        from botocore.config import Config

        # Bounded timeouts and attempts: an unreachable S3 must not stall a release.
        config = Config(
            connect_timeout=connect_timeout,
            read_timeout=60,
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
        )
        # An own session, not boto3's process-wide default one, which resolves credentials once
        # and then ignores changes to the environment.
        session = boto3.session.Session(region_name=region)
        self._client = session.client("s3", endpoint_url=endpoint_url, config=config)

    def __repr__(self) -> str:
        return f"S3Store({self.location!r}, endpoint_url={self.endpoint_url!r})"

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_run(self, run_dir: Path, key_prefix: str) -> list[str]:
        keys = []
        for rel, src in _run_files(run_dir):
            key = f"{key_prefix}/{rel}"
            extra = {"ContentType": kind} if (kind := mimetypes.guess_type(src.name)[0]) else {}
            with self._errors(key), src.open("rb") as body:
                self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=body, **extra)
            keys.append(key)
        return keys

    def list_records(self) -> list[ReleaseRecord]:
        root = f"{self.prefix}/" if self.prefix else ""
        keys = []
        with self._errors(""):
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=root):
                keys += [obj["Key"][len(root) :] for obj in page.get("Contents", [])]
        return [
            ReleaseRecord.parse(self.get(key), f"{self.location}/{key}") for key in sorted(keys) if _is_record_key(key)
        ]

    def get(self, key: str) -> bytes:
        with self._errors(key):
            return self._client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def put_bytes(self, key: str, data: bytes) -> None:
        with self._errors(key):
            self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def download(self, target: Path) -> list[Path]:
        """Every object under this store's prefix, into `target` (same relative layout)."""
        root = f"{self.prefix}/" if self.prefix else ""
        files = []
        with self._errors(""):
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=root):
                for obj in page.get("Contents", []):
                    dest = target / obj["Key"][len(root) :]
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    self._client.download_file(self.bucket, obj["Key"], str(dest))
                    files.append(dest)
        return files

    def _errors(self, key: str):
        return _s3_errors(f"{self.location}/{key}".rstrip("/"), self.endpoint_url)


def download_prefix(uri: str, target: Path, *, where: str, endpoint_url: str | None = None) -> Path:
    """Weights (or any tree) from s3://BUCKET/PREFIX into `target`; an empty prefix is an error."""
    bucket, prefix = _parse_s3_url(uri)
    if not S3Store(bucket, prefix, endpoint_url=endpoint_url).download(target):
        raise ConfigError(f"nothing under {uri}", where=where, fix="upload the weights there or correct the URI")
    return target


_FIXES = {
    "NoSuchBucket": f"create the bucket, or correct {S3_URL_SETTING}",
    "AccessDenied": "grant the AWS credentials in use read/write access to the bucket",
    "InvalidAccessKeyId": "check the AWS credentials (env, ~/.aws, instance role)",
    "SignatureDoesNotMatch": "check the AWS credentials (env, ~/.aws, instance role)",
}


@contextmanager
def _s3_errors(where: str, endpoint_url: str | None) -> Iterator[None]:
    """Turn boto3's exceptions into a ServiceError naming the object and a likely fix."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "error"), error.get("Message")
        raise ServiceError(
            f"S3 refused: {code}" + (f": {message}" if message else ""), where=where, fix=_FIXES.get(code)
        ) from exc
    except BotoCoreError as exc:
        # botocore's messages name the endpoint and the operation, never the credentials.
        raise ServiceUnavailable(
            f"S3 unavailable at {endpoint_url or 'AWS S3'}: {exc}",
            where=where,
            fix="check that S3 is reachable and AWS credentials are configured",
        ) from exc


def publish_artifacts(run_dir: Path, stores: Sequence[ArtifactStore]) -> list[StoreResult]:
    """Copy a run to every store. A store that is down or refuses is reported, not
    raised, so the release keeps its other copies; a failing local disk does raise."""
    if not (run_dir / RECORD_FILE).is_file():
        raise ConfigError(f"{run_dir} is not a run directory: it has no {RECORD_FILE}", where=str(run_dir))
    record = ReleaseRecord.load(run_dir)
    key_prefix = f"{record.cell}/{record.run_id}"
    results = []
    for store in stores:
        try:
            results.append(StoreResult(store.location, True, tuple(store.put_run(run_dir, key_prefix))))
        except ServiceError as exc:
            results.append(StoreResult(store.location, False, error=exc.render()))
    return results


def shared_store(stores: Sequence[ArtifactStore]) -> ArtifactStore:
    """The store every host of a fleet reads: S3 when configured, else the local directory
    (shared by the workers of one machine)."""
    return stores[-1]


def store_from_settings(s3_url: str | None, endpoint_url: str | None, local_root: Path) -> list[ArtifactStore]:
    """The stores a run is published to: the local one always, then S3 when `s3_url` is set."""
    stores: list[ArtifactStore] = [LocalStore(local_root)]
    if s3_url:
        bucket, prefix = _parse_s3_url(s3_url)
        stores.append(S3Store(bucket, prefix, endpoint_url=endpoint_url or None))
    return stores


def _parse_s3_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    if "@" in parts.netloc:
        # Not echoed: the part before '@' may be a secret.
        raise ConfigError(
            f"{S3_URL_SETTING} must not carry credentials",
            where=S3_URL_SETTING,
            fix="put AWS credentials in the environment or ~/.aws, not in the URL",
        )
    if parts.scheme != "s3" or not _BUCKET.fullmatch(parts.netloc) or parts.query or parts.fragment:
        raise ConfigError(
            f"{S3_URL_SETTING}={url!r} is not an s3://BUCKET/PREFIX URL",
            where=S3_URL_SETTING,
            fix="e.g. s3://flagos-releases/flagrelease (the prefix is optional)",
        )
    return parts.netloc, parts.path
