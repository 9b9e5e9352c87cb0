"""Registry credentials: FLAGRELEASE_REGISTRY_USERNAME/PASSWORD, else `docker login`'s config, else none.

The password is a SecretStr, so reprs, logs, errors and release records show it
masked; it is unwrapped only where it leaves for the registry (HTTP basic auth,
docker push's auth_config). Docker credential helpers (credsStore, credHelpers)
are not run: a registry reached only through one needs the environment variables.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr

from flagrelease.errors import ConfigError

USERNAME_VAR = "FLAGRELEASE_REGISTRY_USERNAME"
PASSWORD_VAR = "FLAGRELEASE_REGISTRY_PASSWORD"


class RegistryCredentials(BaseModel):
    """Who we are at one registry; no username means anonymous. `source` says where they came from."""

    model_config = ConfigDict(frozen=True)

    username: str | None = None
    password: SecretStr | None = None
    source: str = "anonymous"

    @property
    def anonymous(self) -> bool:
        return self.username is None

    def basic(self) -> tuple[str, str] | None:
        """(username, password) for HTTP basic auth."""
        return None if self.username is None else (self.username, self._password())

    def auth_config(self) -> dict[str, str] | None:
        """docker push's auth_config (sent to dockerd as X-Registry-Auth)."""
        return None if self.username is None else {"username": self.username, "password": self._password()}

    def _password(self) -> str:
        return self.password.get_secret_value() if self.password else ""


def resolve_credentials(registry: str, env: Mapping[str, str] | None = None) -> RegistryCredentials:
    """Credentials for `registry` (host:port): the environment first, then the Docker config."""
    env = os.environ if env is None else env
    username, password = env.get(USERNAME_VAR), env.get(PASSWORD_VAR)
    if username or password:
        if not (username and password):
            raise ConfigError(
                f"only one of {USERNAME_VAR} and {PASSWORD_VAR} is set",
                where="environment",
                fix="set both, or neither to use the Docker config (`docker login`)",
            )
        return RegistryCredentials(
            username=username, password=SecretStr(password), source=f"{USERNAME_VAR}/{PASSWORD_VAR}"
        )
    return _from_docker_config(registry, _docker_config_path(env))


def _docker_config_path(env: Mapping[str, str]) -> Path:
    directory = env.get("DOCKER_CONFIG")
    return Path(directory) / "config.json" if directory else Path.home() / ".docker" / "config.json"


def _host(key: str) -> str:
    """A Docker config key as docker writes it ('https://host:port/v1/') reduced to 'host:port'."""
    return key.split("://", 1)[-1].split("/", 1)[0]


def _from_docker_config(registry: str, path: Path) -> RegistryCredentials:
    if not path.is_file():
        return RegistryCredentials()
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"cannot read the Docker config: {type(err).__name__}",
            where=str(path),
            fix="repair the file or remove it and `docker login` again",
        ) from None
    for key, entry in (config.get("auths") or {}).items():
        if _host(key) == registry and isinstance(entry, dict) and entry.get("auth"):
            # The error never quotes the value: it is the password.
            try:
                username, sep, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                sep = ""
            if not (sep and username):
                raise ConfigError(
                    f"auths.{key}.auth is not base64 of 'username:password'",
                    where=str(path),
                    fix=f"`docker login {registry}` again",
                )
            return RegistryCredentials(username=username, password=SecretStr(password), source=f"{path} (auths.{key})")
    helper = (config.get("credHelpers") or {}).get(registry) or config.get("credsStore")
    if helper:
        return RegistryCredentials(
            source=f"anonymous: {path} keeps them in docker-credential-{helper}, which flagrelease does not run"
        )
    return RegistryCredentials()
