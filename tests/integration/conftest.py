from __future__ import annotations

import subprocess
import uuid

import boto3.session
import pytest

from flagrelease.adapters import docker_engine
from flagrelease.adapters.local_registry import LocalRegistry
from tests.conftest import free_port, parse_json_stdout, run_cli
from tests.moto_server import ACCESS_KEY, REGION, SECRET_KEY, start_moto, stop
from tests.prefect_server import prefect_server
from tests.token_issuer import Grant, TokenIssuer

S3_BUCKET = "flagrelease-test-reports"
# The htpasswd registry's login; passwords are distinctive, so any leak is found by substring.
REGISTRY_USER = "flagos"
REGISTRY_PASSWORD = f"pw-{uuid.uuid4().hex}"
# The token registry's accounts: one may pull, push and delete, the other only pull.
RELEASER, RELEASER_PASSWORD = "releaser", f"token-pw-{uuid.uuid4().hex}"
READER, READER_PASSWORD = "reader", f"reader-pw-{uuid.uuid4().hex}"


@pytest.fixture(scope="session")
def docker_client():
    """The real Docker Engine; the suite fails (does not skip) when it is down."""
    return docker_engine.connect()


@pytest.fixture(scope="module")
def prefect_env(request, tmp_path_factory):
    """A real Prefect server for this module only, and the environment that points a run at it."""
    home = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1] + "-prefect")
    with prefect_server(home) as url:
        yield {"PREFECT_API_URL": url, "PREFECT_HOME": str(home / "client")}


@pytest.fixture
def repository(request):
    """A repository of its own under the module's `REPO_PREFIX`."""
    return request.module.REPO_PREFIX + uuid.uuid4().hex[:8]


@pytest.fixture
def no_local_tags_left(request, docker_client):
    """Removes the local tags the test left under the module's `REPO_PREFIX` (layers stay)."""
    yield
    for image in docker_client.images.list():
        for ref in image.tags:
            if request.module.REPO_PREFIX in ref:
                docker_client.images.remove(ref, noprune=True)


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """A real distribution v2 registry on a free loopback port, for this session only."""
    reg = LocalRegistry(tmp_path_factory.mktemp("registry"), free_port()).start()
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def htpasswd(tmp_path_factory):
    path = tmp_path_factory.mktemp("htpasswd") / "htpasswd"
    entry = subprocess.run(
        ["htpasswd", "-Bbn", REGISTRY_USER, REGISTRY_PASSWORD], capture_output=True, text=True, check=True
    )
    path.write_text(entry.stdout)
    return path


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory, htpasswd):
    """A real registry with htpasswd (HTTP basic) auth; shared, so the cpu image is uploaded to it once."""
    reg = LocalRegistry(tmp_path_factory.mktemp("auth-registry"), free_port(), htpasswd=htpasswd).start()
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def token_issuer(tmp_path_factory):
    """The Docker token service of `token_registry` (tests/token_issuer.py), on loopback."""
    users = {RELEASER: Grant(RELEASER_PASSWORD), READER: Grant(READER_PASSWORD, frozenset({"pull"}))}
    issuer = TokenIssuer(tmp_path_factory.mktemp("token-issuer"), users=users).start()
    yield issuer
    issuer.stop()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory, token_issuer):
    """A real registry with token auth (`auth: token`), the protocol of Harbor, Docker Hub and Quay;
    shared, so the cpu image is uploaded to it once."""
    reg = LocalRegistry(
        tmp_path_factory.mktemp("token-registry"), free_port(), token=token_issuer.registry_auth()
    ).start()
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def fr_home(tmp_path_factory):
    return tmp_path_factory.mktemp("flagrelease-home")


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """A real S3 API (moto_server) with a bucket for release reports; yields the env to use it."""
    proc, url = start_moto(tmp_path_factory.mktemp("moto-session") / "moto.log")
    env = {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "FLAGRELEASE_S3_URL": f"s3://{S3_BUCKET}/releases",
        "FLAGRELEASE_S3_ENDPOINT_URL": url,
    }
    client = boto3.session.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
    ).client("s3", endpoint_url=url)
    client.create_bucket(Bucket=S3_BUCKET)
    yield {"env": env, "client": client, "url": url}
    stop(proc)


@pytest.fixture(scope="session")
def released(registry, fr_home, docker_client, s3):
    """One real release of tiny-llama x cpu through the CLI, Prefect flow and all,
    reporting to the local store and to S3."""
    proc = run_cli(
        "build",
        "--model",
        "tiny-llama",
        "--chip",
        "cpu",
        "--registry",
        registry.address,
        "--json",
        home=fr_home,
        extra_env=s3["env"],
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    [summary] = parse_json_stdout(proc)
    return summary
