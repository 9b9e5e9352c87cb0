"""A Docker token service on loopback for the tests: the protocol Harbor, Docker Hub and Quay speak.

A registry configured with `auth: token` answers an unauthenticated request with
`401 WWW-Authenticate: Bearer realm=…,service=…,scope=…`; the client asks the realm
(GET with HTTP basic auth and `service`/`scope` parameters, or the OAuth2 POST form with
`grant_type=password` that dockerd may use) and sends the JWT it gets back. Debian's
distribution registry checks the JWT's signature against its `rootcertbundle`: the token
carries the signing certificate in its `x5c` header and that self-signed certificate is
the whole bundle, so it verifies as a chain of one.

Each user is granted at most the actions listed for them (pull-only users exist to prove
that a missing push scope is named as such). Tokens live `lifetime_s` seconds (short ones make
a client renew them); `expired_next` tokens are issued already past their expiry (beyond the
registry's 60 s leeway) and `rotate_key` makes the tokens issued so far unknown to a registry
started afterwards: both are answered with `invalid_token`. Every token issued is kept in
`issued`, so the tests can grep every output for it.
"""

from __future__ import annotations

import base64
import datetime
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ALL_ACTIONS = frozenset({"pull", "push", "delete"})
# distribution accepts a token up to this long after its `exp` (registry/auth/token: Leeway).
REGISTRY_LEEWAY_S = 60


@dataclass
class Grant:
    password: str
    actions: frozenset[str] = ALL_ACTIONS


@dataclass
class TokenIssuer:
    root: Path
    service: str = "flagrelease-test-registry"
    issuer: str = "flagrelease-test-token-issuer"
    users: dict[str, Grant] = field(default_factory=dict)
    lifetime_s: int = 300
    expired_next: int = 0
    issued: list[str] = field(default_factory=list)
    # (how the client asked: "GET" or "POST", user or None, requested scopes, granted access)
    requests: list[tuple[str, str | None, list[str], list[dict]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.cert_bundle = self.root / "token-signer.pem"
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.rotate_key()

    def rotate_key(self) -> None:
        """Sign with a new key from now on; the bundle holds only its certificate, so a registry
        (re)started after this rejects every token signed before (`invalid_token`)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.issuer)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        with self._lock:
            self._key = key
            self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
            self.cert_bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    # --- the registry's side -------------------------------------------------------------------------

    @property
    def realm(self) -> str:
        assert self._server is not None, "start() the issuer first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def registry_auth(self) -> dict[str, str]:
        """The `auth: token:` section of the registry's config."""
        return {
            "realm": self.realm,
            "service": self.service,
            "issuer": self.issuer,
            "rootcertbundle": str(self.cert_bundle),
        }

    def start(self) -> TokenIssuer:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                query = parse_qs(urlsplit(self.path).query)
                issuer._answer(self, "GET", self.headers.get("Authorization"), query)

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                issuer._answer(self, "POST", None, form)

            def log_message(self, *args) -> None:  # the test output stays the test's
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # --- the protocol ---------------------------------------------------------------------------------

    def _answer(self, handler: BaseHTTPRequestHandler, method: str, authorization: str | None, params: dict) -> None:
        if method == "POST":
            grant = (params.get("grant_type") or [""])[0]
            if grant != "password":
                return _reply(handler, 400, {"error": "unsupported_grant_type"})
            user, password = (params.get("username") or [""])[0], (params.get("password") or [""])[0]
            scopes = " ".join(params.get("scope") or []).split()
        else:
            user, password = _basic(authorization)
            scopes = params.get("scope") or []
        if (params.get("service") or [""])[0] != self.service:
            return _reply(handler, 400, {"errors": [{"code": "INVALID_REQUEST", "message": "unknown service"}]})
        grant_of_user = self.users.get(user or "")
        if user is None or grant_of_user is None or grant_of_user.password != password:
            with self._lock:
                self.requests.append((method, user, scopes, []))
            return _reply(handler, 401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]})
        access = [a for a in (_access(scope, grant_of_user.actions) for scope in scopes) if a is not None]
        token, lifetime = self._token(user, access)
        with self._lock:
            self.requests.append((method, user, scopes, access))
        issued_at = datetime.datetime.now(datetime.UTC).isoformat()
        body = {"token": token, "expires_in": lifetime, "issued_at": issued_at}
        if method == "POST":
            body = {"access_token": token, "expires_in": lifetime, "issued_at": issued_at}
        _reply(handler, 200, body)

    def _token(self, user: str, access: list[dict]) -> tuple[str, int]:
        now = int(time.time())
        with self._lock:
            expired = self.expired_next > 0
            self.expired_next -= 1 if expired else 0
        exp = now - REGISTRY_LEEWAY_S - 30 if expired else now + self.lifetime_s
        claims = {
            "iss": self.issuer,
            "sub": user,
            "aud": self.service,
            "exp": exp,
            "nbf": now - 5,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        with self._lock:
            token = jwt.encode(claims, self._key, algorithm="ES256", headers={"x5c": [self._x5c]})
            self.issued.append(token)
        return token, self.lifetime_s


def _basic(authorization: str | None) -> tuple[str | None, str | None]:
    if not authorization or not authorization.startswith("Basic "):
        return None, None
    user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
    return user, password


def _access(scope: str, allowed: frozenset[str]) -> dict | None:
    """`repository:NAME:pull,push` -> the JWT access entry with the actions this user may have;
    the catalog (`registry:catalog:*`) for users who may do everything."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if kind == "registry" and name == "catalog" and allowed == ALL_ACTIONS:
        return {"type": kind, "name": name, "actions": ["*"]}
    if kind != "repository" or not name:
        return None
    return {"type": kind, "name": name, "actions": sorted(set(actions.split(",")) & allowed)}


def _reply(handler: BaseHTTPRequestHandler, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
