"""Registry authentication against real registries: Debian's docker-registry with token auth
(`auth: token`, the protocol of Harbor, Docker Hub and Quay, with the token service in
tests/token_issuer.py), with htpasswd (HTTP basic) auth, and anonymous.

On each, the release path runs as the flow runs it (the check and push probe before the build,
the exists-check, dockerd's push, the digest read back, SBOM and provenance attached, aliases,
the key tag, a set through staging tags). On the token registry, a wrong password and an account
that may only pull fail before the build, through the CLI, and leave nothing; tokens are kept
per repository and access and renewed; credentials come from a real credential helper too.
No password and no token issued appears in any output, log or record. Last, an HTTPS registry
with a certificate from a private CA is verified with FLAGRELEASE_CA_BUNDLE.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import ssl
import stat
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import SecretStr

from flagrelease.adapters import oci_artifacts
from flagrelease.adapters.local_registry import LocalRegistry
from flagrelease.adapters.loopback import is_loopback
from flagrelease.adapters.registry import RegistryClient
from flagrelease.adapters.registry_auth import RegistryCredentials, resolve_credentials
from flagrelease.errors import ServiceError
from flagrelease.matrix import load_matrix, select
from flagrelease.naming import full_repository, key_tag, repository_name, stack_repository_name
from flagrelease.settings import load_settings
from flagrelease.steps import publish
from tests.conftest import free_port
from tests.integration.conftest import (
    READER,
    READER_PASSWORD,
    REGISTRY_PASSWORD,
    REGISTRY_USER,
    RELEASER,
    RELEASER_PASSWORD,
)
from tests.integration.faults import FaultRun, check_invariants
from tests.token_issuer import Grant, TokenIssuer

REPO_PREFIX = "flagrelease/auth-test-"
pytestmark = pytest.mark.usefixtures("no_local_tags_left")
TAG = "2601020000"
SBOM_TYPE = "application/vnd.cyclonedx+json"


@pytest.fixture
def no_docker_login(monkeypatch, tmp_path):
    """An empty Docker config and no credentials in the environment: the test says which it uses."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    for name in ("FLAGRELEASE_REGISTRY_USERNAME", "FLAGRELEASE_REGISTRY_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


REGISTRIES = {
    # kind: (registry fixture, login, password)
    "token": ("token_registry", RELEASER, RELEASER_PASSWORD),
    "htpasswd": ("auth_registry", REGISTRY_USER, REGISTRY_PASSWORD),
    "anonymous": ("registry", None, None),
}
SECRETS = [RELEASER_PASSWORD, READER_PASSWORD, REGISTRY_PASSWORD]


def leaked(issuer: TokenIssuer, *texts: str) -> list[str]:
    """Every password and token issued so far that appears in `texts` (shortened)."""
    text = "\n".join(texts)
    return [secret[:12] + "…" for secret in [*SECRETS, *issuer.issued] if secret in text]


def scopes(asked: list[str]) -> list[str]:
    """Scopes with their actions sorted: distribution lists them in Go map order, at random."""
    return [f"{s.rpartition(':')[0]}:{','.join(sorted(s.rpartition(':')[2].split(',')))}" for s in asked]


def credentials(user: str | None, password: str | None) -> RegistryCredentials | None:
    return None if user is None else RegistryCredentials(username=user, password=SecretStr(password or ""))


# --- the release path, on each kind of registry ----------------------------------------------------------


@pytest.mark.parametrize("kind", list(REGISTRIES))
def test_the_release_path_works(
    kind, request, docker_client, released, token_issuer, no_docker_login, repository, tmp_path, capfd, caplog
):
    fixture, user, password = REGISTRIES[kind]
    registry = request.getfixturevalue(fixture).address
    if user is not None:
        no_docker_login.setenv("FLAGRELEASE_REGISTRY_USERNAME", user)
        no_docker_login.setenv("FLAGRELEASE_REGISTRY_PASSWORD", password)
    lines: list[str] = []
    document = tmp_path / "sbom.cdx.json"
    document.write_text(json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.6", "components": []}))
    attached: dict[str, str] = {}

    def attach(digest: str) -> list[str]:
        creds = resolve_credentials(registry)
        attached["sbom"] = oci_artifacts.attach(
            registry, creds, repository, digest, document, SBOM_TYPE, "sbom", {"org.flagos.kind": "sbom"}
        )[0]
        return [attached["sbom"]]

    # Before the build, as the flow's registry stage asks: reachable, credentials accepted, push allowed.
    assert publish.resolve_registry(load_settings(registry=registry), [repository]) == registry
    key = "k" * 64
    result = publish.push_release(
        docker_client, released["image_id"], registry, repository, TAG, ["latest"], lines.append, key, attach
    )
    set_items = [
        publish.PublishItem(image_id=released["image_id"], repository=f"{repository}-{arch}", tag=TAG)
        for arch in ("amd64", "arm64")
    ]
    set_results = publish.publish_set(docker_client, set_items, registry, lines.append)

    with RegistryClient(registry, credentials(user, password)) as api:
        assert api.manifest_digest(repository, TAG) == result.digest
        assert api.manifest_digest(repository, "latest") == result.digest
        assert api.manifest_digest(repository, key_tag(key)) == result.digest
        assert api.labels(repository, TAG) == docker_client.images.get(released["image_id"]).labels
        [referrer] = api.referrers(repository, result.digest)
        assert referrer["digest"] == attached["sbom"] and referrer["artifactType"] == SBOM_TYPE
        for item, published in zip(set_items, set_results, strict=True):
            assert api.manifest_digest(item.repository, TAG) == published.digest
            assert api.manifest_digest(item.repository, publish.STAGING_PREFIX + TAG) == published.digest
        # The exists-check: a release tag is never pushed twice.
        with pytest.raises(ServiceError, match="already exists; release tags are immutable"):
            publish.push_release(docker_client, released["image_id"], registry, repository, TAG, on_line=lines.append)
    if kind == "token":
        # dockerd asked the token service itself, with the login it was given (X-Registry-Auth).
        pushes = [r for r in token_issuer.requests if f"repository:{repository}:pull,push" in scopes(r[2])]
        assert {user for _, user, _, _ in pushes} == {RELEASER}
    out, err = capfd.readouterr()
    assert leaked(token_issuer, out, err, caplog.text, "\n".join(lines), result.model_dump_json()) == []


# --- before the build: refused credentials, a pull-only account ------------------------------------------


def _cell_repositories(run: FaultRun) -> list[str]:
    [cell] = select(load_matrix(run.matrix), chip="cpu", model="tiny-llama")
    return [full_repository(None, run.namespace, name(cell)) for name in (repository_name, stack_repository_name)]


@pytest.mark.parametrize(
    ("user", "password", "problem"),
    [
        (RELEASER, f"wrong-{uuid.uuid4().hex}", "refused the credentials from FLAGRELEASE_REGISTRY_USERNAME/"),
        (READER, READER_PASSWORD, "may not push to"),
    ],
    ids=["wrong-password", "pull-only"],
)
def test_refused_before_the_build_and_nothing_left(
    user, password, problem, tmp_path, token_registry, token_issuer, prefect_env, docker_client
):
    env = dict(prefect_env) | {
        "FLAGRELEASE_REGISTRY_USERNAME": user,
        "FLAGRELEASE_REGISTRY_PASSWORD": password,
        "DOCKER_CONFIG": str(tmp_path / "docker-config"),
    }
    run = FaultRun(tmp_path / "fault", token_registry.address, env=env)
    proc = run.run()
    output = proc.stdout + proc.stderr
    assert problem in output, output[-3000:]
    if user == READER:
        assert f"{token_registry.address}/{_cell_repositories(run)[0]} (insufficient_scope)" in output
        assert "grant the account push access" in output
    record = run.record()
    assert record.status == "failed" and record.image is None and record.stack is None
    assert "build" not in record.timings and "stack" not in record.timings
    run.secrets = [password, *token_issuer.issued]  # the tokens the run itself was given too
    login = (RELEASER, RELEASER_PASSWORD)
    check_invariants(run, docker_client, output, exit_code=3, returncode=proc.returncode, login=login)
    with RegistryClient(token_registry.address, token_admin()) as api:
        assert all(api.tags(r) == [] for r in _cell_repositories(run))


def token_admin() -> RegistryCredentials:
    return RegistryCredentials(username=RELEASER, password=SecretStr(RELEASER_PASSWORD))


# --- tokens: per repository and access, renewed, named when refused ----------------------------------------


def test_tokens_are_kept_per_repository_and_access_and_renewed(token_registry, token_issuer, monkeypatch):
    """One client, two repositories, reads and writes: a token each, for the scope the registry
    named (oras-py alone would send the first one everywhere); a token past 90 % of its
    `expires_in` is renewed before it is sent again."""
    first, second, third = (REPO_PREFIX + uuid.uuid4().hex[:8] for _ in range(3))
    with RegistryClient(token_registry.address, token_admin()) as api:
        start = len(token_issuer.requests)
        for repository in (first, second):
            api.check_push(repository)  # POST an upload (pull,push), DELETE it (delete)
            assert api.tags(repository) == []  # GET (pull)
            api.check_push(repository)
            assert api.tags(repository) == []  # the same three tokens again: no new request
        asked = [scopes(asked) for _, user, asked, _ in token_issuer.requests[start:] if user == RELEASER]
        assert asked == [[f"repository:{r}:{a}"] for r in (first, second) for a in ("pull,push", "delete", "pull")]

        monkeypatch.setattr(token_issuer, "lifetime_s", 2)
        assert api.tags(third) == []
        issued = len(token_issuer.issued)
        time.sleep(2)
        assert api.tags(third) == []
        assert len(token_issuer.issued) == issued + 1
        assert token_issuer.requests[-1][2] == [f"repository:{third}:pull"]


def test_a_token_the_registry_stopped_accepting_is_replaced(tmp_path):
    """The token service rotated its key and the registry restarted with the new certificate: the
    token the client holds is answered `invalid_token`, so it asks for a new one and goes on."""
    issuer = TokenIssuer(tmp_path / "issuer", users={RELEASER: Grant(RELEASER_PASSWORD)}).start()
    reg = LocalRegistry(tmp_path / "registry", free_port(), token=issuer.registry_auth()).start()
    try:
        with RegistryClient(reg.address, token_admin()) as api:
            assert api.tags("flagrelease/rotated") == []
            held = issuer.issued[-1]
            issuer.rotate_key()
            reg.stop()
            reg.start()
            assert api.tags("flagrelease/rotated") == []
            assert issuer.issued[-1] != held and len(issuer.issued) == 2
    finally:
        reg.stop()
        issuer.stop()


def test_an_expired_token_is_named(token_registry, token_issuer, monkeypatch):
    monkeypatch.setattr(token_issuer, "expired_next", 1)
    with RegistryClient(token_registry.address, token_admin()) as api, pytest.raises(ServiceError) as caught:
        api.check()
    err = caught.value
    assert "rejected the token its token service just issued" in err.problem
    assert "invalid_token: expired on arrival or not signed by a key the registry trusts" in err.problem
    assert "clocks" in err.fix
    assert leaked(token_issuer, err.render()) == []


def test_anonymous_is_told_to_log_in(token_registry):
    with RegistryClient(token_registry.address) as api, pytest.raises(ServiceError) as caught:
        api.check()
    assert f"registry {token_registry.address} requires credentials and none were found" in caught.value.problem


# --- a real credential helper -----------------------------------------------------------------------------

HELPER = """#!{python}
import json, sys
server = sys.stdin.read().strip()
with open({log!r}, "a") as log:
    log.write(" ".join(sys.argv[1:]) + " " + server + "\\n")
if sys.argv[1] != "get" or server != {server!r}:
    print("credentials not found in native keychain")
    sys.exit(1)
print(json.dumps({{"ServerURL": server, "Username": {user!r}, "Secret": {secret!r}}}))
"""


def test_a_credential_helper_supplies_the_login(
    docker_client, released, token_registry, token_issuer, no_docker_login, repository, tmp_path, capfd
):
    """`credHelpers` names docker-credential-flagtest for the token registry: it is run (the docker
    CLI's protocol: `get`, the server on stdin, JSON out), and its login releases, dockerd's push included."""
    bin_dir, log = tmp_path / "bin", tmp_path / "helper.log"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-flagtest"
    helper.write_text(
        HELPER.format(
            python=sys.executable, log=str(log), server=token_registry.address, user=RELEASER, secret=RELEASER_PASSWORD
        )
    )
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    no_docker_login.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    config = Path(os.environ["DOCKER_CONFIG"])
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"credHelpers": {token_registry.address: "flagtest"}}))

    creds = resolve_credentials(token_registry.address)
    assert creds.username == RELEASER and creds.source.startswith("docker-credential-flagtest (named in ")
    assert RELEASER_PASSWORD not in repr(creds) + creds.model_dump_json()
    result = publish.push_release(
        docker_client, released["image_id"], token_registry.address, repository, TAG, on_line=lambda line: None
    )
    with RegistryClient(token_registry.address, token_admin()) as api:
        assert api.manifest_digest(repository, TAG) == result.digest
    assert log.read_text().splitlines()[0] == f"get {token_registry.address}"
    assert resolve_credentials("127.0.0.1:1").anonymous  # the helper is named for the token registry only
    out, err = capfd.readouterr()
    assert leaked(token_issuer, out, err) == []


# --- HTTPS with a private CA -------------------------------------------------------------------------------


class TlsRegistry(LocalRegistry):
    """A registry serving HTTPS with a certificate from the test's own CA, listening on loopback
    and reached by the host's name (a name, not a loopback literal: the client speaks HTTPS to
    it, as to any remote registry)."""

    def __init__(self, root: Path, port: int, name: str, ca: Path, cert: Path, key: Path):
        super().__init__(root, port)
        self.address, self.ca, self.cert, self.key = f"{name}:{port}", ca, cert, key

    def answering(self) -> bool:
        try:
            context = ssl.create_default_context(cafile=str(self.ca))
            return httpx.get(f"https://{self.address}/v2/", verify=context, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _config(self) -> dict:
        config = super()._config()
        config["http"] = {
            "addr": f"127.0.0.1:{self.port}",
            "tls": {"certificate": str(self.cert), "key": str(self.key)},
        }
        return config


def _private_ca(directory: Path, name: str) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate for `name`, its key) as PEM files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "FlagRelease test private CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


def test_an_https_registry_with_a_private_ca_needs_the_ca_bundle(tmp_path, monkeypatch):
    """FLAGRELEASE_CA_BUNDLE, the bundle builds trust, verifies registry calls too; without the CA
    the first check fails with a TLS error that names the setting."""
    name = socket.gethostname()
    if not is_loopback(socket.gethostbyname(name)):
        pytest.skip(f"the host's name {name} does not resolve to a loopback address here")
    ca, cert, key = _private_ca(tmp_path, name)
    reg = TlsRegistry(tmp_path / "registry", free_port(), name, ca, cert, key).start()
    try:
        monkeypatch.setenv("FLAGRELEASE_CA_BUNDLE", str(ca))
        assert publish.resolve_registry(load_settings(registry=reg.address), ["flagrelease/tls"]) == reg.address
        with RegistryClient(reg.address) as api:
            assert api.tags("flagrelease/tls") == []
        monkeypatch.setenv("FLAGRELEASE_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
        with pytest.raises(ServiceError) as caught:
            publish.resolve_registry(load_settings(registry=reg.address))
        assert f"registry {reg.address}: TLS verification failed" in caught.value.problem
        assert "FLAGRELEASE_CA_BUNDLE" in caught.value.fix
    finally:
        reg.stop()
