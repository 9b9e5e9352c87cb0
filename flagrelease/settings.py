"""Where FlagRelease keeps its state and how it reaches the outside world.

Defaults are embedded so `flagrelease build` works on a fresh machine; every
value can be set by flag or FLAGRELEASE_* environment variable. Secrets
(pip index URL with credentials, CA bundle) travel to builds as BuildKit
secrets only and are never printed: `repr` hides them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, ValidationError, field_validator

from flagrelease.errors import ConfigError, did_you_mean, excerpt
from flagrelease.schema import Url

SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DEFAULT_REGISTRY_PORT = 5000

# Registry host[:port] (it becomes part of image references); `quay.io=mirror.example.com/quay`
# rewrites base images, whose names land in a Dockerfile's FROM line.
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?(?::[0-9]{1,5})?"
Registry = Annotated[str, StringConstraints(pattern=rf"^{_HOST}$")]
BaseMirror = Annotated[str, StringConstraints(pattern=rf"^{_HOST}(?:/[a-z0-9._-]+)*={_HOST}(?:/[a-z0-9._-]+)*$")]
S3Url = Annotated[str, StringConstraints(pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9._/-]*)?$")]

# Every FLAGRELEASE_* variable read on the host, by what it sets: any other is a typo. (The
# image's own, FLAGRELEASE_SERVE_CONFIG and friends, are set by its Dockerfile, inside it.)
VARIABLES = {
    "FLAGRELEASE_HOME": "home",
    "FLAGRELEASE_REGISTRY": "registry",
    "FLAGRELEASE_CA_BUNDLE": "ca_bundle",
    "FLAGRELEASE_PIP_INDEX_URL": "pip_index_url",
    "FLAGRELEASE_APT_MIRROR": "apt_mirror",
    "FLAGRELEASE_BASE_MIRROR": "base_mirror",
    "FLAGRELEASE_DOCKER_CLI": "docker_cli",
    "FLAGRELEASE_S3_URL": "s3_url",
    "FLAGRELEASE_S3_ENDPOINT_URL": "s3_endpoint_url",
    "FLAGRELEASE_REGISTRY_USERNAME": "registry credentials (adapters/registry_auth.py)",
    "FLAGRELEASE_REGISTRY_PASSWORD": "registry credentials (adapters/registry_auth.py)",
    "FLAGRELEASE_UPDATE_GOLDEN": "the test suite: rewrite golden files",
}
# Values never echoed in an error: they may carry credentials.
_SECRET_FIELDS = {"pip_index_url", "s3_url", "s3_endpoint_url", "registry"}


def _env(name: str) -> str | None:
    return os.environ.get(f"FLAGRELEASE_{name}") or None


def default_ca_bundle() -> Path | None:
    """Trust what the host trusts (PyPI may sit behind a TLS-intercepting proxy, a registry
    may have a certificate from a private CA): builds and registry calls alike."""
    path = _env("CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")
    if path:
        return Path(path)
    return SYSTEM_CA_BUNDLE if SYSTEM_CA_BUNDLE.exists() else None


class BuildSettings(BaseModel):
    model_config = ConfigDict(frozen=True, validate_default=True)

    ca_bundle: Path | None = Field(default_factory=default_ca_bundle)
    pip_index_url: SecretStr | None = Field(
        default_factory=lambda: SecretStr(v) if (v := _env("PIP_INDEX_URL")) else None
    )
    apt_mirror: Url | None = Field(default_factory=lambda: _env("APT_MIRROR"))
    base_mirror: BaseMirror | None = Field(
        default_factory=lambda: _env("BASE_MIRROR"),
        description="'quay.io=mirror.example.com/quay': pull bases from a mirror instead",
    )
    docker_cli: str = Field(default_factory=lambda: _env("DOCKER_CLI") or _buildkit_cli())

    @field_validator("ca_bundle")
    @classmethod
    def _readable_bundle(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"{v} is not a file")
        return v

    @field_validator("pip_index_url")
    @classmethod
    def _index_is_a_url(cls, v: SecretStr | None) -> SecretStr | None:
        text = v.get_secret_value() if v is not None else ""
        if v is not None and (not text.startswith(("http://", "https://")) or any(c.isspace() for c in text)):
            raise ValueError("not an http(s) URL")
        return v

    @field_validator("docker_cli")
    @classmethod
    def _runnable_cli(cls, v: str) -> str:
        if shutil.which(v) is None:
            raise ValueError(f"{v} is not an executable docker CLI")
        return v


def _buildkit_cli() -> str:
    """Debian's docker 20.10 client has BuildKit built in; newer clients need buildx."""
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, validate_default=True)

    home: Path = Field(default_factory=lambda: Path(_env("HOME") or Path.home() / ".local/share/flagrelease"))
    registry: Registry | None = Field(
        default_factory=lambda: _env("REGISTRY"),
        description="host:port of the registry to push to; unset starts a local one",
    )
    build: BuildSettings = Field(default_factory=BuildSettings)
    s3_url: S3Url | None = Field(
        default_factory=lambda: _env("S3_URL"), description="s3://BUCKET/PREFIX for reports, beside the local copy"
    )
    s3_endpoint_url: Url | None = Field(
        default_factory=lambda: _env("S3_ENDPOINT_URL"), description="S3 API endpoint (MinIO, moto); AWS when unset"
    )

    @field_validator("home")
    @classmethod
    def _home_is_a_directory(cls, v: Path) -> Path:
        if v.exists() and not v.is_dir():
            raise ValueError(f"{v} exists and is not a directory")
        return v

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
    """Settings from the environment (and flags), with a bad value named by its variable.

    A FLAGRELEASE_* variable nobody reads is refused too: a misspelt FLAGRELEASE_REGISTY
    would otherwise push to the default registry without a word.
    """
    for name in sorted(os.environ):
        if name.startswith("FLAGRELEASE_") and name not in VARIABLES:
            raise ConfigError(
                f"unknown setting {name}{did_you_mean(name, VARIABLES)}",
                where=f"environment variable {name}",
                fix="unset it or correct its name; known: " + ", ".join(VARIABLES),
            )
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        field = str(first["loc"][-1]) if first["loc"] else "?"
        name = "FLAGRELEASE_" + field.upper()
        source = f"--{field} / {name}" if field in overrides and overrides[field] is not None else name
        if first["type"] == "string_pattern_mismatch":
            detail = "not of the expected form"
            if field not in _SECRET_FIELDS:
                detail += f" (got {excerpt(first['input'])})"
        else:
            detail = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(
            f"setting {source} is invalid: {detail}",
            where=source,
            fix=_SETTING_FIX.get(field, "correct or unset the environment variable"),
        ) from None


_SETTING_FIX = {
    "registry": "give HOST or HOST:PORT, e.g. harbor.example.com:443",
    "base_mirror": "give SOURCE=TARGET, e.g. quay.io=registry.example.com/quay",
    "s3_url": "give s3://BUCKET/PREFIX (credentials come from the AWS chain, never the URL)",
    "s3_endpoint_url": "give the endpoint's http(s) URL, e.g. http://127.0.0.1:9000",
    "ca_bundle": "point FLAGRELEASE_CA_BUNDLE (or SSL_CERT_FILE) at a PEM file, or unset it",
    "pip_index_url": "give the index's http(s) URL",
    "docker_cli": "point FLAGRELEASE_DOCKER_CLI at a docker client, or unset it",
    "home": "point FLAGRELEASE_HOME at a directory (it is created if missing)",
}
