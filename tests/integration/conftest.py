from __future__ import annotations

import boto3.session
import pytest

from flagrelease.adapters import docker_engine
from flagrelease.adapters.local_registry import LocalRegistry
from tests.conftest import free_port, parse_json_stdout, run_cli
from tests.moto_server import ACCESS_KEY, REGION, SECRET_KEY, start_moto, stop

S3_BUCKET = "flagrelease-test-reports"


@pytest.fixture(scope="session")
def docker_client():
    """The real Docker Engine; the suite fails (does not skip) when it is down."""
    return docker_engine.connect()


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """A real distribution v2 registry on a free loopback port, for this session only."""
    reg = LocalRegistry(tmp_path_factory.mktemp("registry"), free_port()).start()
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
