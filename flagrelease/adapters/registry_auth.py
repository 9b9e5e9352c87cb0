"""Registry credentials: FLAGRELEASE_REGISTRY_USERNAME/PASSWORD, else `docker login`'s config, else none.

The Docker config is read by docker-py (`docker.auth`), as the docker CLI reads it: an
`auths` entry for the registry, or the credential helper `credHelpers` names for it (else
`credsStore`), run as `docker-credential-<name> get`. The password is a SecretStr, so
reprs, logs, errors and release records show it masked; it is unwrapped only where it
leaves for the registry (HTTP basic auth at the registry or its token service, docker
push's auth_config).
"""

from __future__ import annotations

import binascii
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import docker.auth
import docker.errors
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
    return _from_docker_config(registry, _docker_config_path(env), env)


def _docker_config_path(env: Mapping[str, str]) -> Path:
    directory = env.get("DOCKER_CONFIG")
    return Path(directory) / "config.json" if directory else Path.home() / ".docker" / "config.json"


def _from_docker_config(registry: str, path: Path, env: Mapping[str, str]) -> RegistryCredentials:
    if not path.is_file():
        return RegistryCredentials()
    # The helper runs with this environment (its PATH finds it); errors never quote an entry's value.
    helper_env = dict(env)
    try:
        config = docker.auth.load_config(config_path=str(path), credstore_env=helper_env)
    except _BAD_ENTRY:  # like the docker CLI, one broken entry spoils the file
        raise ConfigError(
            f"auths.{_broken_entry(path)}.auth is not base64 of 'username:password'",
            where=str(path),
            fix=f"`docker login {registry}` again, or remove the entry",
        ) from None
    if config.is_empty and path.stat().st_size:
        _check_json(path, registry)
    helper = config.get_credential_store(registry)
    try:
        with warnings.catch_warnings():  # docker-py warns of a missing helper on stderr; the error says it
            warnings.simplefilter("ignore")
            entry = docker.auth.resolve_authconfig(config, registry, credstore_env=helper_env)
    except (docker.errors.DockerException, ValueError, KeyError) as err:  # not installed, refused, crashed
        detail = str(err).splitlines()[0][:300] if isinstance(err, docker.errors.DockerException) else "no credentials"
        raise ConfigError(
            f"the credential helper docker-credential-{helper} named in the Docker config failed: {detail}",
            where=str(path),
            fix=f"install docker-credential-{helper} on PATH and `docker login {registry}`, "
            f"or set {USERNAME_VAR}/{PASSWORD_VAR}",
        ) from None
    if not entry:
        return RegistryCredentials()
    if entry.get("IdentityToken"):
        raise ConfigError(
            f"the Docker config holds an identity token for {registry} (an OAuth refresh token), "
            "which flagrelease does not use",
            where=str(path),
            fix=f"set {USERNAME_VAR}/{PASSWORD_VAR} (e.g. a robot account or an access token as the password)",
        )
    # docker-py spells a helper's answer Username/Password and an `auths` entry username/password.
    username = entry.get("Username") or entry.get("username")
    password = entry.get("Password") or entry.get("password")
    if not username:
        return RegistryCredentials()
    source = f"docker-credential-{helper} (named in {path})" if "Username" in entry else f"{path} (auths)"
    return RegistryCredentials(username=username, password=SecretStr(password or ""), source=source)


_BAD_ENTRY = (docker.errors.InvalidConfigFile, binascii.Error, ValueError, UnicodeDecodeError)


def _broken_entry(path: Path) -> str:
    """The key of the `auths` entry docker-py cannot decode (it says only that one is broken)."""
    for key, entry in (json.loads(path.read_text()).get("auths") or {}).items():
        try:
            docker.auth.parse_auth({key: entry}, raise_on_error=True)
        except _BAD_ENTRY:
            return key
    return "?"


def _check_json(path: Path, registry: str) -> None:
    """docker-py takes a file it cannot parse for an empty config; we say so instead."""
    try:
        json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"cannot read the Docker config: {type(err).__name__}",
            where=str(path),
            fix=f"repair the file or remove it and `docker login {registry}` again",
        ) from None
