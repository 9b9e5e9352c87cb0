"""Publishing against real registries (Debian's docker-registry on loopback, htpasswd auth).

The pushing tests publish the `released` tiny-llama image (or a relabelled copy)
into a repository of their own; the password is distinctive, so any leak is found
by substring.
"""

from __future__ import annotations

import base64
import io
import json
import uuid

import pytest
from pydantic import SecretStr

from flagrelease.adapters import oci_artifacts
from flagrelease.adapters.local_registry import LocalRegistry
from flagrelease.adapters.registry import RegistryClient
from flagrelease.adapters.registry_auth import RegistryCredentials, resolve_credentials
from flagrelease.errors import ConfigError, ServiceError, ServiceUnavailable
from flagrelease.steps import publish
from tests.conftest import free_port
from tests.integration.conftest import REGISTRY_PASSWORD, REGISTRY_USER

USER, PASSWORD = REGISTRY_USER, REGISTRY_PASSWORD  # of the session's htpasswd registry (`auth_registry`)
REPO_PREFIX = "flagrelease/publish-test-"
pytestmark = pytest.mark.usefixtures("no_local_tags_left")
TAG, NEXT_TAG = "2601010000", "2601010001"
SBOM_TYPE = "application/vnd.cyclonedx+json"


@pytest.fixture(scope="module")
def readonly_registry(tmp_path_factory, htpasswd):
    """Answers the /v2/ ping (and HEADs) but refuses every upload: the failure shows only in the push stream."""
    reg = LocalRegistry(tmp_path_factory.mktemp("ro-registry"), free_port(), htpasswd=htpasswd, readonly=True).start()
    yield reg
    reg.stop()


@pytest.fixture
def login(monkeypatch, tmp_path):
    """Credentials through the environment; an empty Docker config so the host's `docker login` plays no part."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))

    def _login(password: str | None) -> None:
        for name, value in (("FLAGRELEASE_REGISTRY_USERNAME", USER), ("FLAGRELEASE_REGISTRY_PASSWORD", password)):
            if password is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)

    return _login


@pytest.fixture
def admin(auth_registry):
    """A client with the right password, to look at the registry whatever the test did."""
    with RegistryClient(auth_registry.address, RegistryCredentials(username=USER, password=SecretStr(PASSWORD))) as api:
        yield api


@pytest.fixture(scope="module")
def rebuilt(docker_client, released):
    """The released image with one more label: a second release with a different digest, sharing every layer."""
    dockerfile = f"FROM {released['image_id']}\nLABEL org.flagos.test-rebuild={uuid.uuid4().hex}\n"
    # Its own tag keeps it alive when the tests' registry tags on it are removed.
    ref = f"flagrelease-test/publish-rebuilt:{uuid.uuid4().hex[:8]}"
    image, _ = docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=ref, rm=True)
    yield image.id
    docker_client.images.remove(ref)


def assert_no_secret(*things) -> None:
    for thing in things:
        texts = [str(thing), repr(thing)]
        if isinstance(thing, ServiceError | ConfigError):
            texts += [thing.render(), str(thing.__cause__), str(thing.__context__)]
        if hasattr(thing, "model_dump_json"):
            texts.append(thing.model_dump_json())
        assert all(PASSWORD not in text for text in texts), f"password leaked in {type(thing).__name__}"


def break_manifest_storage(reg: LocalRegistry, repository: str) -> None:
    """A file where the registry keeps the repository's manifest revisions: HEADs and tag lists still answer,
    blob uploads still work, but the final manifest PUT fails with HTTP 500 (dockerd does not retry it)."""
    manifests = reg.root / "data/docker/registry/v2/repositories" / repository / "_manifests"
    manifests.mkdir(parents=True)
    (manifests / "revisions").write_text("")


def local_tags(client, repository: str) -> list[str]:
    return [ref for image in client.images.list() for ref in image.tags if f"/{repository}:" in ref]


# --- tag policy ------------------------------------------------------------------------------------------


def test_publish_with_auth_sets_release_tag_then_aliases(
    docker_client, released, auth_registry, admin, login, repository
):
    login(PASSWORD)
    lines: list[str] = []
    result = publish.push_release(
        docker_client,
        released["image_id"],
        auth_registry.address,
        repository,
        TAG,
        aliases=["latest", "0.8.0-0.8.0"],
        on_line=lines.append,
    )
    assert result.tags == [TAG, "latest", "0.8.0-0.8.0"]
    assert result.digest.startswith("sha256:")
    for tag in result.tags:
        assert admin.manifest_digest(repository, tag) == result.digest
    # The release tag is verified before any alias is set.
    pushed, tagged = (
        lines.index(f"pushing {auth_registry.address}/{repository}:{TAG}"),
        lines.index(f"tagging {auth_registry.address}/{repository}:latest -> {result.digest}"),
    )
    assert pushed < tagged
    assert_no_secret(result, "\n".join(lines))


def release_with(docker_client, released, registry, repository, attach, on_line) -> None:
    """A release with an alias and a key tag, as the flow pushes it, and the given `attach`."""
    publish.push_release(
        docker_client,
        released["image_id"],
        registry.address,
        repository,
        TAG,
        aliases=["latest"],
        key="0" * 64,
        attach=attach,
        on_line=on_line,
    )


def test_a_failed_attach_fails_the_release_before_aliases_and_key(
    docker_client, released, auth_registry, admin, login, repository
):
    """push_release's contract with the attest step: it runs on the verified digest, and when it
    fails no alias and no key tag points at the digest (the next run must not find it complete),
    and the release tag is rolled back: the record of a failed run names no release."""
    login(PASSWORD)
    seen: list[str] = []

    def attach(digest: str) -> None:
        seen.append(digest)
        assert admin.manifest_digest(repository, TAG) == digest  # the release tag is already verified
        raise ServiceError("the registry refused the SBOM", where=auth_registry.address)

    with pytest.raises(ServiceError, match="refused the SBOM"):
        release_with(docker_client, released, auth_registry, repository, attach, on_line=lambda line: None)
    assert len(seen) == 1
    assert admin.tags(repository) == []


def test_an_interrupt_after_the_attach_takes_the_documents_back(
    docker_client, released, auth_registry, admin, login, repository, tmp_path
):
    """Ctrl-C while the aliases move, after a real SBOM was attached: the release tag, the
    aliases and the SBOM (and its fallback referrers tag) all go; nothing of the run is served."""
    login(PASSWORD)
    document = tmp_path / "sbom.cdx.json"
    document.write_text(json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.6", "components": []}))
    attached: list[str] = []

    def attach(digest: str) -> list[str]:
        creds = resolve_credentials(auth_registry.address)
        manifest, _ = oci_artifacts.attach(
            auth_registry.address, creds, repository, digest, document, SBOM_TYPE, "sbom", {}
        )
        attached.append(manifest)
        return attached

    def interrupted_while_tagging(line: str) -> None:
        if line.startswith("tagging") and not lines:
            lines.append(line)
            raise KeyboardInterrupt

    lines: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        release_with(docker_client, released, auth_registry, repository, attach, on_line=interrupted_while_tagging)
    assert len(attached) == 1 and lines, "the interrupt did not come after the attach"
    assert admin.tags(repository) == []  # no release tag, no alias, no `sha256-…` referrers tag
    assert admin.manifest_digest(repository, attached[0]) is None


def test_the_flow_call_without_aliases_still_works(docker_client, released, auth_registry, admin, login, repository):
    login(PASSWORD)
    result = publish.push_release(
        docker_client, released["image_id"], auth_registry.address, repository, TAG, on_line=lambda line: None
    )
    assert result.tags == [TAG]
    assert admin.tags(repository) == [TAG]


@pytest.mark.parametrize(
    ("password", "problem", "fix"),
    [
        (
            f"not-{PASSWORD}",
            "refused the credentials from FLAGRELEASE_REGISTRY_USERNAME/FLAGRELEASE_REGISTRY_PASSWORD",
            "correct FLAGRELEASE_REGISTRY_USERNAME/FLAGRELEASE_REGISTRY_PASSWORD",
        ),
        (
            None,
            "requires credentials and none were found (anonymous)",
            "set FLAGRELEASE_REGISTRY_USERNAME/FLAGRELEASE_REGISTRY_PASSWORD",
        ),
    ],
    ids=["wrong-password", "no-credentials"],
)
def test_bad_credentials_are_refused_before_anything_is_pushed(
    docker_client, released, auth_registry, admin, login, repository, password, problem, fix
):
    login(password)
    with pytest.raises(ServiceError) as caught:
        publish.push_release(
            docker_client,
            released["image_id"],
            auth_registry.address,
            repository,
            TAG,
            aliases=["latest"],
            on_line=lambda line: None,
        )
    err = caught.value
    assert f"registry {auth_registry.address} {problem}" in err.problem
    assert err.where == auth_registry.address
    assert fix in err.fix and f"docker login {auth_registry.address}" in err.fix
    assert_no_secret(err)
    assert admin.tags(repository) == []
    assert local_tags(docker_client, repository) == []


def test_docker_config_credentials_are_used(
    docker_client, released, auth_registry, admin, login, repository, tmp_path, monkeypatch
):
    login(None)
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (tmp_path / "docker-config").mkdir()
    (tmp_path / "docker-config/config.json").write_text(
        json.dumps({"auths": {f"http://{auth_registry.address}/v2/": {"auth": auth}}})
    )
    result = publish.push_release(
        docker_client, released["image_id"], auth_registry.address, repository, TAG, on_line=lambda line: None
    )
    assert admin.manifest_digest(repository, TAG) == result.digest


def test_an_existing_release_tag_is_never_overwritten(
    docker_client, released, rebuilt, auth_registry, admin, login, repository
):
    login(PASSWORD)
    first = publish.push_release(
        docker_client, released["image_id"], auth_registry.address, repository, TAG, on_line=lambda line: None
    )
    with pytest.raises(ServiceError, match="already exists; release tags are immutable") as caught:
        publish.push_release(
            docker_client,
            rebuilt,
            auth_registry.address,
            repository,
            TAG,
            aliases=["latest"],
            on_line=lambda line: None,
        )
    assert_no_secret(caught.value)
    assert admin.manifest_digest(repository, TAG) == first.digest
    assert admin.tags(repository) == [TAG]


def test_aliases_move_to_the_next_release(docker_client, released, rebuilt, auth_registry, admin, login, repository):
    login(PASSWORD)
    aliases = ["latest", "0.8.0-0.8.0"]
    first = publish.push_release(
        docker_client,
        released["image_id"],
        auth_registry.address,
        repository,
        TAG,
        aliases=aliases,
        on_line=lambda line: None,
    )
    second = publish.push_release(
        docker_client, rebuilt, auth_registry.address, repository, NEXT_TAG, aliases=aliases, on_line=lambda line: None
    )
    assert second.digest != first.digest
    assert [admin.manifest_digest(repository, alias) for alias in aliases] == [second.digest] * 2
    assert admin.manifest_digest(repository, TAG) == first.digest  # the older release is untouched


@pytest.mark.parametrize(
    ("tag", "aliases"),
    [
        ("-bad", []),
        (TAG, ["not a tag"]),
        (TAG, [NEXT_TAG]),
        (TAG, [TAG]),
        (TAG, [f"staging-{TAG}"]),
    ],
)
def test_every_tag_is_validated_before_contacting_the_registry(tag, aliases):
    dead = f"127.0.0.1:{free_port()}"
    with pytest.raises(ConfigError):
        publish.push_release(None, "sha256:unused", dead, REPO_PREFIX + "x", tag, aliases=aliases)


def test_a_push_failure_inside_the_stream_fails_the_release(
    docker_client, released, readonly_registry, login, repository
):
    login(PASSWORD)
    remote = f"{readonly_registry.address}/{repository}"
    with pytest.raises(ServiceError) as caught:
        publish.push_release(
            docker_client,
            released["image_id"],
            readonly_registry.address,
            repository,
            TAG,
            aliases=["latest"],
            on_line=lambda line: None,
        )
    err = caught.value
    # The /v2/ ping passed; dockerd relays the registry's refusal of the upload inside the stream.
    assert err.problem.startswith(f"push of {remote}:{TAG} failed: ")
    assert "405" in err.problem and "Method not allowed" in err.problem
    assert err.where == remote
    # A refusal, not an outage: the registry answered, so the push is not worth retrying.
    assert not isinstance(err, ServiceUnavailable)
    assert_no_secret(err)
    creds = RegistryCredentials(username=USER, password=SecretStr(PASSWORD))
    with RegistryClient(readonly_registry.address, creds) as api:
        assert api.tags(repository) == []


# --- sets: all or nothing -------------------------------------------------------------------------------


def test_a_registry_gone_during_the_push_is_transient(docker_client, released, tmp_path_factory, repository):
    """dockerd reports a vanished registry inside the stream, like a refusal; asking the registry
    tells them apart, so the flow's retry (which decides on the type) retries this one."""
    reg = LocalRegistry(tmp_path_factory.mktemp("vanishing"), free_port()).start()
    lines = []

    def stop_on_first_layer(line: str) -> None:
        lines.append(line)
        if len(lines) == 1:
            reg.stop()

    try:
        with pytest.raises(ServiceUnavailable, match="cannot be reached"):
            publish.push_release(
                docker_client, released["image_id"], reg.address, repository, TAG, on_line=stop_on_first_layer
            )
    finally:
        reg.stop()


def _arch_set(released, repository: str) -> list[publish.PublishItem]:
    return [
        publish.PublishItem(
            image_id=released["image_id"], repository=f"{repository}-{arch}", tag=TAG, aliases=["latest"]
        )
        for arch in ("amd64", "arm64")
    ]


def test_a_set_is_released_when_every_item_landed(docker_client, released, auth_registry, admin, login, repository):
    login(PASSWORD)
    items = _arch_set(released, repository)
    results = publish.publish_set(docker_client, items, auth_registry.address, on_line=lambda line: None)
    assert [r.repository for r in results] == [item.repository for item in items]
    for result in results:
        assert result.tags == [TAG, "latest"]
        # The staging tag stays: distribution v2 deletes manifests by digest only, which would take the release.
        assert sorted(admin.tags(result.repository)) == sorted([TAG, "latest", f"staging-{TAG}"])
        assert {admin.manifest_digest(result.repository, t) for t in admin.tags(result.repository)} == {result.digest}
        assert local_tags(docker_client, result.repository) == []  # staging tags are local only for the push
    assert_no_secret(*results)


def test_a_failed_item_leaves_no_release_tag_in_the_set(
    docker_client, released, auth_registry, admin, login, repository
):
    login(PASSWORD)
    good, bad = _arch_set(released, repository)
    break_manifest_storage(auth_registry, bad.repository)
    lines: list[str] = []
    with pytest.raises(ServiceError) as caught:
        publish.publish_set(docker_client, [good, bad], auth_registry.address, on_line=lines.append)
    err = caught.value
    assert err.problem.startswith("none of the 2 images was released: ")
    assert f"push of {auth_registry.address}/{bad.repository}:staging-{TAG} failed" in err.problem
    assert any(line.startswith(f"rolled back {auth_registry.address}/{good.repository}@sha256:") for line in lines)
    assert admin.tags(good.repository) == []  # staged, then deleted by digest
    assert admin.tags(bad.repository) == []
    assert local_tags(docker_client, good.repository) == []
    assert_no_secret(err, "\n".join(lines))


def test_a_set_with_one_existing_release_pushes_nothing(
    docker_client, released, auth_registry, admin, login, repository
):
    login(PASSWORD)
    first, second = _arch_set(released, repository)
    publish.push_release(
        docker_client, released["image_id"], auth_registry.address, second.repository, TAG, on_line=lambda line: None
    )
    with pytest.raises(ServiceError, match="already exists"):
        publish.publish_set(docker_client, [first, second], auth_registry.address, on_line=lambda line: None)
    assert admin.tags(first.repository) == []
    assert admin.tags(second.repository) == [TAG]


def test_rollback_spares_a_manifest_another_tag_still_needs(
    docker_client, released, auth_registry, admin, login, repository
):
    """The same image already released in the good repository: deleting the staged digest would take it too."""
    login(PASSWORD)
    good, bad = _arch_set(released, repository)
    earlier = publish.push_release(
        docker_client, released["image_id"], auth_registry.address, good.repository, NEXT_TAG, on_line=lambda line: None
    )
    break_manifest_storage(auth_registry, bad.repository)
    with pytest.raises(ServiceError, match=r"these tags could not be removed: .*is also tagged 2601010001") as caught:
        publish.publish_set(docker_client, [good, bad], auth_registry.address, on_line=lambda line: None)
    assert "delete them" in caught.value.fix
    assert admin.manifest_digest(good.repository, NEXT_TAG) == earlier.digest
    assert admin.manifest_digest(good.repository, TAG) is None


# --- credentials ----------------------------------------------------------------------------------------


def _docker_config(tmp_path, config: dict) -> dict[str, str]:
    (tmp_path / "config.json").write_text(json.dumps(config))
    return {"DOCKER_CONFIG": str(tmp_path)}


def test_credentials_come_from_the_environment_first(tmp_path):
    auth = base64.b64encode(b"other:otherpw").decode()
    env = _docker_config(tmp_path, {"auths": {"127.0.0.1:5000": {"auth": auth}}})
    env |= {"FLAGRELEASE_REGISTRY_USERNAME": USER, "FLAGRELEASE_REGISTRY_PASSWORD": PASSWORD}
    creds = resolve_credentials("127.0.0.1:5000", env)
    assert creds.basic() == (USER, PASSWORD)
    assert creds.source == "FLAGRELEASE_REGISTRY_USERNAME/FLAGRELEASE_REGISTRY_PASSWORD"
    assert_no_secret(creds)


def test_credentials_from_the_docker_config_match_the_host(tmp_path):
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    other = base64.b64encode(b"other:otherpw").decode()
    env = _docker_config(
        tmp_path, {"auths": {"https://127.0.0.1:5000/v1/": {"auth": auth}, "127.0.0.1:6000": {"auth": other}}}
    )
    creds = resolve_credentials("127.0.0.1:5000", env)
    assert creds.auth_config() == {"username": USER, "password": PASSWORD}
    assert str(tmp_path / "config.json") in creds.source
    assert_no_secret(creds)
    assert resolve_credentials("127.0.0.1:7000", env).anonymous


def test_a_credential_helper_that_is_not_installed_is_named(tmp_path):
    """A working helper is run for real in test_registry_auth.py; a missing one is a clear error."""
    env = _docker_config(tmp_path, {"auths": {"127.0.0.1:5000": {}}, "credsStore": "flagrelease-missing"})
    with pytest.raises(ConfigError, match="docker-credential-flagrelease-missing") as caught:
        resolve_credentials("127.0.0.1:5000", env)
    assert "not installed or not available in PATH" in caught.value.problem
    assert "install docker-credential-flagrelease-missing" in caught.value.fix


@pytest.mark.parametrize(
    "env",
    [
        {"FLAGRELEASE_REGISTRY_USERNAME": USER},
        {"FLAGRELEASE_REGISTRY_PASSWORD": PASSWORD},
    ],
)
def test_half_set_credentials_are_a_config_error(env):
    with pytest.raises(ConfigError, match="only one of") as caught:
        resolve_credentials("127.0.0.1:5000", env)
    assert_no_secret(caught.value)


def test_a_broken_docker_config_entry_is_named_without_its_value(tmp_path):
    bad = base64.b64encode(f"no-colon-{PASSWORD}".encode()).decode()
    env = _docker_config(tmp_path, {"auths": {"127.0.0.1:5000": {"auth": bad}}})
    with pytest.raises(ConfigError, match=r"auths\.127\.0\.0\.1:5000\.auth is not base64") as caught:
        resolve_credentials("127.0.0.1:5000", env)
    assert bad not in caught.value.render()
    assert_no_secret(caught.value)
