"""The fleet on real parts: `prefect server start`, process workers in two pools, the CLI.

A test matrix gives the runnable cpu chip four entries: `cpu` and `cpu-arm` (one multi-arch
set; this host cannot build arm64) on pool A, `cpu-b` on pool B, and `cpu-idle` on a pool no
worker polls. Workers and the orchestrator share FLAGRELEASE_HOME: the local artifact store
is the shared one, as on one machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from flagrelease.adapters.registry import RegistryClient
from tests.conftest import free_port, run_cli, shipped_matrix, write_matrix
from tests.prefect_server import prefect_server, stop_group

POOL_A, POOL_B, POOL_IDLE = "flagrelease-test-a", "flagrelease-test-b", "flagrelease-test-idle"


def fleet_matrix(directory: Path, **fleet) -> Path:
    data = shipped_matrix()
    data["chips"]["cpu"]["pool"] = POOL_A
    data["chips"]["cpu-arm"] = {"extends": "cpu", "arch": "arm64"}
    data["chips"]["cpu-b"] = {"extends": "cpu", "chip_code": "cpu002", "pool": POOL_B}
    data["chips"]["cpu-idle"] = {"extends": "cpu", "chip_code": "cpu003", "pool": POOL_IDLE}
    # Accuracy only: identical stacks answer identically at temperature 0, so the gate passes
    # whatever else this machine is doing; the perf gate has tests of its own.
    data["models"]["tiny-llama"]["bench"]["perf"] = None
    data["matrix"] = {"chip": ["cpu", "cpu-arm", "cpu-b", "cpu-idle"], "model": ["tiny-llama"]}
    data["fleet"] = {
        "concurrency": 1,
        "orchestrator_pool": "flagrelease-test-orchestrator",
        "deadline_minutes": 15,
        "worker_wait_seconds": 15,
        "schedules": [{"name": "nightly", "cron": "0 2 * * 0-5", "timezone": "Asia/Shanghai"}],
    } | fleet
    return write_matrix(directory, data)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real Prefect server on SQLite and a loopback port, for this module only."""
    home = tmp_path_factory.mktemp("prefect-server")
    with prefect_server(home) as url:
        yield {"url": url, "home": home}


@pytest.fixture(scope="module")
def fleet_env(server, tmp_path_factory, registry):
    base = tmp_path_factory.mktemp("fleet")
    return {
        "dir": base,
        "env": {
            "PREFECT_API_URL": server["url"],
            "PREFECT_HOME": str(base / "prefect-client"),
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "FLAGRELEASE_HOME": str(base / "home"),
        },
    }


@contextmanager
def api_client(fleet_env):
    """A client of the test's server (Prefect reads its settings once: override, don't setenv)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings({PREFECT_API_URL: fleet_env["env"]["PREFECT_API_URL"]}),
        get_client(sync_client=True) as client,
    ):
        yield client


def test_deploy_registers_pools_limits_deployments_and_schedules_idempotently(fleet_env, registry):
    matrix = fleet_matrix(fleet_env["dir"])
    for _ in range(2):
        proc = run_cli(
            "deploy",
            "--matrix",
            str(matrix),
            "--registry",
            registry.address,
            "--json",
            home=fleet_env["dir"] / "home",
            extra_env=fleet_env["env"],
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    done = json.loads(proc.stdout)["registered"]
    assert done[f"pool {POOL_A}"] == done[f"pool {POOL_B}"] == "unchanged"  # the second time

    with api_client(fleet_env) as client:
        names = sorted(f"{d.name}@{d.work_pool_name}" for d in client.read_deployments())
        matrix_run = client.read_deployment_by_name("release-matrix/matrix")
        watch_run = client.read_deployment_by_name("watch-upstream/matrix")
        pools = {p.name: p for p in client.read_work_pools()}
        limit = client.read_global_concurrency_limit_by_name("flagrelease-cells")
    assert names == sorted(
        [
            f"{POOL_A}@{POOL_A}",
            f"{POOL_B}@{POOL_B}",
            f"{POOL_IDLE}@{POOL_IDLE}",
            "matrix@flagrelease-test-orchestrator",  # release-matrix
            "matrix@flagrelease-test-orchestrator",  # watch-upstream
        ]
    )
    [watch_schedule] = watch_run.schedules
    assert (watch_schedule.slug, watch_schedule.schedule.cron) == ("daily-watch", "0 6 * * *")
    assert watch_run.parameters == {
        "matrix": str(matrix),
        "index": "https://pypi.org/simple/",
        "registry": registry.address,
    }
    [schedule] = matrix_run.schedules
    assert (schedule.slug, schedule.schedule.cron, schedule.schedule.timezone) == (
        "nightly",
        "0 2 * * 0-5",
        "Asia/Shanghai",
    )
    assert matrix_run.parameters == {"matrix": str(matrix), "registry": registry.address}
    assert pools[POOL_A].type == "process" and pools[POOL_A].concurrency_limit == 1
    assert limit.limit == 1


def test_release_fans_out_to_the_pools_workers(fleet_env, registry, docker_client):
    """Each cell runs on its pool's worker; at most `fleet.concurrency` cells at once; the set
    whose arm64 half fails is not published; the cell of a pool without a worker is reported."""
    matrix = fleet_matrix(fleet_env["dir"])
    deployed = run_cli("deploy", "--matrix", str(matrix), home=fleet_env["dir"] / "home", extra_env=fleet_env["env"])
    assert deployed.returncode == 0, deployed.stderr[-3000:]
    env = os.environ | fleet_env["env"] | {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    workers = {}
    for chip in ("cpu", "cpu-b"):
        log = (fleet_env["dir"] / f"worker-{chip}.log").open("wb")
        workers[chip] = subprocess.Popen(
            [str(Path(sys.executable).parent / "flagrelease"), "worker", "--chip", chip, "--matrix", str(matrix)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            cwd=fleet_env["dir"],
        )
    from flagrelease.matrix import load_matrix, select
    from flagrelease.naming import full_repository, repository_name

    cpu_repo = full_repository(None, "flagrelease", repository_name(select(load_matrix(matrix), chip="cpu")[0]))
    with RegistryClient(registry.address) as api:
        tags_before = api.tags(cpu_repo)  # the session's other tests may have released this cell
    try:
        _wait_for_workers(fleet_env, {POOL_A, POOL_B})
        proc = run_cli(
            "release",
            "--matrix",
            str(matrix),
            "--registry",
            registry.address,
            "--json",
            home=fleet_env["dir"] / "home",
            extra_env=fleet_env["env"],
            timeout=900,
        )
    finally:
        for worker in workers.values():
            stop_group(worker)
    logs = {chip: (fleet_env["dir"] / f"worker-{chip}.log").read_text() for chip in workers}
    assert proc.returncode == 3, proc.stderr[-4000:] + logs["cpu"][-2000:]
    found = {o["cell"]: o for o in json.loads(proc.stdout)}

    released = found["tiny-llama--cpu-b"]
    assert released["status"] == "released" and released["digest"].startswith("sha256:"), released
    with RegistryClient(registry.address) as api:
        assert api.manifest_digest(released["repository"].split("/", 1)[1], released["tags"][0]) == released["digest"]

    # The set: the amd64 half passed and was staged, the arm64 half cannot be built here.
    assert found["tiny-llama--cpu-arm"]["status"] == "failed"
    assert "cannot build" in found["tiny-llama--cpu-arm"]["error"]
    assert found["tiny-llama--cpu"]["status"] == "built" and found["tiny-llama--cpu"]["digest"] is None
    assert "the set is not published" in found["tiny-llama--cpu"]["error"]
    with RegistryClient(registry.address) as api:
        repo = found["tiny-llama--cpu"]["image"].split(":")[0]
        assert api.tags(repo) == tags_before  # neither a release tag nor a staging tag was left

    idle = found["tiny-llama--cpu-idle"]
    assert idle["status"] == "waiting" and POOL_IDLE in idle["error"] and idle["exit_code"] == 3

    # Every cell ran on its own pool's worker (the worker logs name the flow runs they took).
    run_of = {cell: o["flow_run"].rsplit("/", 1)[-1] for cell, o in found.items()}
    assert run_of["tiny-llama--cpu"] in logs["cpu"] and run_of["tiny-llama--cpu-arm"] in logs["cpu"]
    assert run_of["tiny-llama--cpu-b"] in logs["cpu-b"]
    assert run_of["tiny-llama--cpu-b"] not in logs["cpu"] and run_of["tiny-llama--cpu"] not in logs["cpu-b"]

    # fleet.concurrency = 1: the cells' work (their task runs) never overlapped.
    spans = sorted(
        _work_span(fleet_env, run_of[c]) for c in ("tiny-llama--cpu", "tiny-llama--cpu-arm", "tiny-llama--cpu-b")
    )
    assert all(earlier[1] <= later[0] for earlier, later in zip(spans, spans[1:], strict=False)), spans
    owners = {o["run_id"] for o in found.values()}
    left = [
        c for c in docker_client.containers.list(all=True) if c.labels.get("org.flagos.flagrelease.owner") in owners
    ]
    assert left == []


def _wait_for_workers(fleet_env, pools: set[str]) -> None:
    from prefect.client.schemas.filters import WorkerFilter, WorkerFilterStatus

    deadline = time.monotonic() + 60
    with api_client(fleet_env) as client:
        while time.monotonic() < deadline:
            online = WorkerFilter(status=WorkerFilterStatus(any_=["ONLINE"]))
            if all(client.read_workers_for_work_pool(pool, worker_filter=online) for pool in pools):
                return
            time.sleep(0.5)
    pytest.fail(f"workers for {pools} did not come online")


def _work_span(fleet_env, flow_run_id: str) -> tuple[float, float]:
    """First task start to last task end of a cell run, from the server's timeline."""
    from uuid import UUID

    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with api_client(fleet_env) as client:
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)])))
    timed = [t for t in tasks if t.start_time and t.end_time]
    assert timed, f"flow run {flow_run_id} ran no task"
    return min(t.start_time.timestamp() for t in timed), max(t.end_time.timestamp() for t in timed)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"chips": {"cpu": {"pool": "Bad Pool"}}}, "chips.cpu.pool"),
        ({"chips": {"cpu": {"pool": "prefect-pool"}}}, "chips.cpu.pool"),
        ({"fleet": {"schedules": [{"name": "n", "cron": "61 2 * * *"}]}}, "not a valid cron"),
        ({"fleet": {"schedules": [{"name": "n", "cron": "0 2 * * *", "timezone": "Mars/Olympus"}]}}, "time zone"),
    ],
)
def test_deploy_refuses_bad_fleet_data_and_registers_nothing(tmp_path, change, message):
    data = yaml.safe_load(fleet_matrix(tmp_path).read_text())
    for section, value in change.items():
        for key, sub in value.items():
            data[section][key] = data[section].get(key, {}) | sub if isinstance(sub, dict) else sub
    write_matrix(tmp_path, data)
    # A closed port: were the matrix accepted, the unreachable server would be the error instead.
    proc = run_cli(
        "deploy",
        "--matrix",
        str(tmp_path / "matrix.yaml"),
        home=tmp_path / "home",
        extra_env={"PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api"},
    )
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_deploy_and_worker_without_a_server_are_clear_errors(tmp_path):
    matrix = fleet_matrix(tmp_path)
    unset = run_cli("deploy", "--matrix", str(matrix), home=tmp_path / "home", extra_env={"PREFECT_API_URL": ""})
    assert unset.returncode == 2 and "needs a Prefect server" in unset.stderr
    closed = f"http://127.0.0.1:{free_port()}/api"
    down = run_cli("deploy", "--matrix", str(matrix), home=tmp_path / "home", extra_env={"PREFECT_API_URL": closed})
    assert down.returncode == 2 and "cannot be reached" in down.stderr and "nothing was registered" in down.stderr
    unknown = run_cli(
        "worker",
        "--chip",
        "cpu-c",
        "--matrix",
        str(matrix),
        home=tmp_path / "home",
        extra_env={"PREFECT_API_URL": closed},
    )
    assert unknown.returncode == 2 and "unknown chip 'cpu-c'" in unknown.stderr and "did you mean" in unknown.stderr
    for proc in (unset, down, unknown):
        assert "Traceback" not in proc.stderr
