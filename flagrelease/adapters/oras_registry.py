"""oras-py's Registry, with the authentication the registries we publish to need.

Every registry request goes through oras-py (`oras.provider.Registry`: its session, its
upload protocol, its tag pagination); this subclass replaces only its `do_request`, the
one place oras-py answers a 401. oras-py 0.2.43's token backend is not enough for a
release (read in its source, oras/auth/token.py and oras/provider.py):

- it keeps one token per client, whatever repository or actions it was issued for: after a
  pull token for a HEAD, the PUT of a manifest is retried with the same token and fails,
  and so does any second repository;
- it renews a token only on a 403, never on distribution's `401 error="invalid_token"`
  (expired), and never before the token's `expires_in` ran out;
- a `Basic` challenge (htpasswd: distribution's other auth) is sent to the token code
  path, which takes the realm name for a URL;
- a refused password becomes `ValueError`, which its retry decorator sleeps on for about
  two minutes (3 + 5 + 11 + 29 + 83 s), logging to stderr; requests have no timeout.

Here: each answer to a challenge follows its scheme (Basic: the credentials; Bearer: a
token from the realm for the challenge's scope, with the credentials as HTTP basic auth
at the realm), tokens are kept per repository and kind of access and renewed before they
expire, and a failure is a ServiceError that says which: the realm refused the
credentials, the registry refused a fresh token, or the token lacks the scope. Neither a
credential nor a token ever appears in an error or a log line.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import oras.auth.utils
import oras.provider
import requests

from flagrelease.adapters.loopback import is_loopback
from flagrelease.adapters.registry_auth import PASSWORD_VAR, USERNAME_VAR, RegistryCredentials
from flagrelease.errors import ServiceError, ServiceUnavailable

# A token is renewed once this share of its life is over, so a request in flight does not outlive it.
RENEW_AT = 0.9
# The distribution spec's default when a token service gives no `expires_in`.
DEFAULT_TOKEN_SECONDS = 60
_PATH = re.compile(r"^/v2/(?P<repository>.+)/(?:manifests|blobs|tags|referrers)/")
_PARAM = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Challenge:
    """A parsed `WWW-Authenticate` header: its scheme and its parameters."""

    scheme: str
    params: dict[str, str]

    @property
    def error(self) -> str:
        return self.params.get("error", "")


def parse_challenge(header: str) -> Challenge:
    scheme, _, rest = header.strip().partition(" ")
    return Challenge(scheme.lower(), dict(_PARAM.findall(rest)))


def access_key(url: str, method: str) -> tuple[str, str]:
    """(repository, kind of access) a request needs: the key its token is kept under.

    distribution asks `pull` for GET/HEAD, `pull,push` for POST/PUT/PATCH and `delete` for
    DELETE; Harbor and Quay follow it.
    """
    match = _PATH.match(urlsplit(url).path)
    kind = {"GET": "pull", "HEAD": "pull", "DELETE": "delete"}.get(method.upper(), "push")
    return (match["repository"] if match else "", kind)


@dataclass
class _Token:
    value: str
    renew_after: float  # time.monotonic()
    challenge: Challenge  # where it came from, to renew it without another 401

    def fresh(self) -> bool:
        return time.monotonic() < self.renew_after


class OrasRegistry(oras.provider.Registry):
    """oras-py's Registry for one registry host: `hostname` the API host, plain HTTP on loopback."""

    def __init__(
        self,
        registry: str,
        hostname: str,
        credentials: RegistryCredentials,
        *,
        insecure: bool,
        ca_bundle: Path | None,
        timeout: float,
    ):
        super().__init__(
            hostname=hostname,
            insecure=insecure,
            tls_verify=str(ca_bundle) if ca_bundle is not None else True,
            auth_backend="basic",  # never consulted: do_request below answers every challenge
        )
        self.registry = registry
        self.credentials = credentials
        self.timeout = timeout
        self._basic = False  # the registry asked for HTTP basic auth: send it with every request
        self._tokens: dict[tuple[str, str], _Token] = {}

    # --- oras-py's hooks ------------------------------------------------------------------------------

    def do_request(
        self,
        url: str,
        method: str = "GET",
        data=None,
        headers: dict | None = None,
        json: dict | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """One request, answering the registry's challenge once; 401 and 403 never come back."""
        key = access_key(url, method)
        headers = dict(headers or {})
        authorization = self._authorization(key)
        if authorization:
            headers["Authorization"] = authorization
        response = self._send(method, url, data, headers, json, stream)
        if response.status_code not in (401, 403):
            return response
        if response.status_code == 403:
            raise self._denied(key, message(response))
        response.close()  # a streamed 401 would hold its connection
        challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        headers["Authorization"] = self._answer(challenge, key, sent=authorization)
        retried = self._send(method, url, data, headers, json, stream)
        if retried.status_code == 403:
            raise self._denied(key, message(retried))
        if retried.status_code == 401:
            retried.close()
            self._tokens.pop(key, None)  # refused even fresh: the next request starts over
            raise self._refused_after_answer(parse_challenge(retried.headers.get("WWW-Authenticate", "")), key)
        return retried

    def _check_200_response(self, response: requests.Response) -> None:
        """oras-py logs the registry's errors and raises ValueError; the caller decides instead."""
        if response.status_code not in (200, 201, 202):
            raise Refused(response)

    # --- answering challenges -------------------------------------------------------------------------

    def _authorization(self, key: tuple[str, str]) -> str | None:
        if self._basic:
            return self._basic_header()
        token = self._tokens.get(key)
        if token is None:
            return None
        if not token.fresh():
            token = self._fetch_token(token.challenge, key)
        return f"Bearer {token.value}"

    def _answer(self, challenge: Challenge, key: tuple[str, str], sent: str | None) -> str:
        if challenge.scheme == "basic":
            if self.credentials.anonymous or sent is not None:
                raise self._unauthorized()
            self._basic = True
            return self._basic_header()
        if challenge.scheme != "bearer" or not challenge.params.get("realm"):
            raise ServiceError(
                f"registry {self.registry} asks for authentication flagrelease does not speak "
                f"({challenge.scheme or 'no WWW-Authenticate header'})",
                where=self.registry,
            )
        # invalid_token: ours expired or was revoked; insufficient_scope: it was for other actions.
        return f"Bearer {self._fetch_token(challenge, key).value}"

    def _fetch_token(self, challenge: Challenge, key: tuple[str, str]) -> _Token:
        """A token from the challenge's realm for its scope (the registry names what it wants)."""
        realm = challenge.params["realm"]
        realm_host = urlsplit(realm).hostname or realm
        if not realm.startswith("https://") and not (realm.startswith("http://") and is_loopback(realm_host)):
            raise ServiceError(
                f"registry {self.registry} sends clients to the token service {realm_host} over plain HTTP; "
                "flagrelease sends no credentials there",
                where=self.registry,
                fix="serve the token service (the realm in the registry's auth settings) over HTTPS",
            )
        params = {k: v for k, v in challenge.params.items() if k in ("service", "scope") and v}
        headers = {"Accept": "application/json"}
        if not self.credentials.anonymous:
            headers["Authorization"] = self._basic_header()
        try:
            response = self.session.get(
                realm, params=params, headers=headers, verify=self._tls_verify, timeout=self.timeout
            )
        except requests.RequestException as err:
            what = f"the token service {realm_host} of registry {self.registry}"
            raise _unreachable(what, self.registry, err) from None
        if response.status_code in (401, 403):
            raise self._unauthorized(f"its token service {realm_host} answered HTTP {response.status_code}")
        if response.status_code >= 500:
            raise ServiceUnavailable(
                f"the token service {realm_host} of registry {self.registry} failed: HTTP {response.status_code}",
                where=self.registry,
            )
        try:
            body = response.json()
            value = body.get("token") or body.get("access_token")
            seconds = float(body.get("expires_in") or DEFAULT_TOKEN_SECONDS)
        except (ValueError, AttributeError, TypeError):
            value, seconds = None, 0.0
        if response.status_code != 200 or not value:
            raise ServiceError(
                f"the token service {realm_host} of registry {self.registry} gave no token "
                f"(HTTP {response.status_code})",
                where=self.registry,
            )
        token = _Token(str(value), time.monotonic() + seconds * RENEW_AT, challenge)
        self._tokens[key] = token
        return token

    def _basic_header(self) -> str:
        return "Basic " + oras.auth.utils.get_basic_auth(*self.credentials.basic() or ("", ""))

    # --- naming what went wrong -----------------------------------------------------------------------

    def _refused_after_answer(self, challenge: Challenge, key: tuple[str, str]) -> ServiceError:
        if challenge.error == "insufficient_scope":
            return self._denied(key, "insufficient_scope")
        if challenge.scheme == "bearer":
            return ServiceError(
                f"registry {self.registry} rejected the token its token service just issued for the credentials "
                f"from {self.credentials.source} ({challenge.error or 'HTTP 401'}: expired on arrival or not "
                "signed by a key the registry trusts)",
                where=self.registry,
                fix="check that the clocks of the registry and its token service agree and that the registry's "
                "token settings (issuer, service, root certificate bundle) match the token service",
            )
        return self._unauthorized()

    def _unauthorized(self, detail: str = "HTTP 401") -> ServiceError:
        if self.credentials.anonymous:
            return ServiceError(
                f"registry {self.registry} requires credentials and none were found ({self.credentials.source})",
                where=self.registry,
                fix=f"set {USERNAME_VAR}/{PASSWORD_VAR} or `docker login {self.registry}`",
            )
        return ServiceError(
            f"registry {self.registry} refused the credentials from {self.credentials.source} ({detail})",
            where=self.registry,
            fix=f"correct {USERNAME_VAR}/{PASSWORD_VAR} or `docker login {self.registry}` again",
        )

    def _denied(self, key: tuple[str, str], reason: str) -> ServiceError:
        if self.credentials.anonymous:
            return self._unauthorized(reason)
        repository, kind = key
        what = {"pull": "pull from", "push": "push to", "delete": "delete in"}[kind]
        target = f"{self.registry}/{repository}" if repository else self.registry
        return ServiceError(
            f"the credentials from {self.credentials.source} may not {what} {target} ({reason})",
            where=target,
            fix=f"grant the account {kind} access to {repository or 'the registry'} (Harbor: a project role of "
            "Developer or above, and Maintainer to delete; Quay: write on the repository), or use one that has it",
        )

    def _send(self, method, url, data, headers, json, stream) -> requests.Response:
        try:
            return self.session.request(
                method,
                url,
                data=data,
                json=json,
                headers=headers,
                stream=stream,
                verify=self._tls_verify,
                timeout=self.timeout,
            )
        except requests.exceptions.SSLError as err:
            raise ServiceError(
                f"registry {self.registry}: TLS verification failed: {err}",
                where=self.registry,
                fix="point FLAGRELEASE_CA_BUNDLE at a PEM bundle holding the CA that signed the registry's certificate",
            ) from None
        except requests.RequestException as err:
            raise _unreachable(f"registry {self.registry}", self.registry, err) from None


class Refused(Exception):
    """A response oras-py would have called failed; RegistryClient turns it into a ServiceError."""

    def __init__(self, response: requests.Response):
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def _unreachable(what: str, registry: str, err: requests.RequestException) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"{what} cannot be reached: {type(err).__name__}: {err}",
        where=f"--registry / FLAGRELEASE_REGISTRY = {registry}",
        fix="start the registry or correct its address (omit --registry to use a local one)",
    )


def message(response: requests.Response) -> str:
    """The registry's own words: distribution's {"errors": [...]} body, else the raw text."""
    try:
        errors = response.json().get("errors") or []
        text = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
    except (ValueError, AttributeError):
        text = ""
    return text or response.text.strip()[:300] or response.reason or f"HTTP {response.status_code}"
