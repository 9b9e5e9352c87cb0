from __future__ import annotations

import pytest

from flagrelease import docker_engine
from flagrelease.local_registry import LocalRegistry
from tests.conftest import free_port, parse_json_stdout, run_cli


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
def released(registry, fr_home, docker_client):
    """One real release of tiny-llama x cpu through the CLI, Prefect flow and all."""
    proc = run_cli("build", "--model", "tiny-llama", "--chip", "cpu", "--registry", registry.address, "--json",
                   home=fr_home)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    [summary] = parse_json_stdout(proc)
    return summary
