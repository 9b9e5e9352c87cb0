"""Where FlagRelease keeps its state and how it reaches the outside world.

Defaults are embedded so `flagrelease build` works on a fresh machine; every
value can be set by flag or FLAGRELEASE_* environment variable. Secrets
(pip index URL with credentials, CA bundle) travel to builds as BuildKit
secrets only and are never printed: `repr` hides them.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from flagrelease.errors import ConfigError
from flagrelease.schema import Url

SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DEFAULT_REGISTRY_PORT = 5000


def _env(name: str) -> str | None:
    return os.environ.get(f"FLAGRELEASE_{name}") or None


def _default_ca() -> Path | None:
    """Trust what the host trusts (PyPI may sit behind a TLS-intercepting proxy)."""
    path = _env("CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")
    if path:
        return Path(path)
    return SYSTEM_CA_BUNDLE if SYSTEM_CA_BUNDLE.exists() else None


class BuildSettings(BaseModel):
    model_config = ConfigDict(frozen=True, validate_default=True)

    ca_bundle: Path | None = Field(default_factory=_default_ca)
    pip_index_url: SecretStr | None = Field(
        default_factory=lambda: SecretStr(v) if (v := _env("PIP_INDEX_URL")) else None
    )
    apt_mirror: Url | None = Field(default_factory=lambda: _env("APT_MIRROR"))
    base_mirror: str | None = Field(
        default_factory=lambda: _env("BASE_MIRROR"),
        description="'quay.io=mirror.example.com/quay': pull bases from a mirror instead",
    )
    docker_cli: str = Field(default_factory=lambda: _env("DOCKER_CLI") or _buildkit_cli())


def _buildkit_cli() -> str:
    """Debian's docker 20.10 client has BuildKit built in; newer clients need buildx."""
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, validate_default=True)

    home: Path = Field(default_factory=lambda: Path(_env("HOME") or Path.home() / ".local/share/flagrelease"))
    registry: str | None = Field(
        default_factory=lambda: _env("REGISTRY"),
        description="host:port of the registry to push to; unset starts a local one",
    )
    build: BuildSettings = Field(default_factory=BuildSettings)
    s3_url: str | None = Field(
        default_factory=lambda: _env("S3_URL"), description="s3://BUCKET/PREFIX for reports, beside the local copy"
    )
    s3_endpoint_url: str | None = Field(
        default_factory=lambda: _env("S3_ENDPOINT_URL"), description="S3 API endpoint (MinIO, moto); AWS when unset"
    )

    @property
    def weights_dir(self) -> Path:
        return self.home / "weights"

    @property
    def results_dir(self) -> Path:
        return self.home / "results"

    @property
    def contexts_dir(self) -> Path:
        return self.home / "contexts"

    @property
    def ledger_path(self) -> Path:
        return self.home / "ledger.sqlite"


def load_settings(**overrides) -> Settings:
    """Settings from the environment (and flags), with a bad value named by its variable."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as err:
        first = err.errors()[0]
        name = "FLAGRELEASE_" + str(first["loc"][-1]).upper()
        raise ConfigError(
            f"setting {name} is invalid: {first['msg']}", where=name, fix="correct or unset the environment variable"
        ) from None
