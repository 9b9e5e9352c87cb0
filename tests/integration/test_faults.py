"""Fault injection against the real parts: dockerd (the shared one, and a private one that is
restarted), Debian's docker-registry, moto_server, the llama-server engine in the cpu image.

Each test injects one fault into a real `flagrelease build` of tiny-llama x cpu and then
checks the same invariants (tests/integration/faults.py): the documented exit code and no
traceback, no container of the run left, no partial release or staging tag in the
registry, ledger and artifact stores agreeing, the run's secrets in no output or file.
docs/reliability.md has a row per test here (tests/unit/test_reliability_table.py checks it).

The runs share one Prefect server and use `--local` (the cells run in the CLI's process, as
without a server), which saves each run the embedded server's start; one run (Ctrl-C in a
terminal) uses the embedded server, as a user's shell does.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import boto3.session
import docker
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.testing.utilities import prefect_test_harness

from flagrelease.adapters import docker_engine
from flagrelease.adapters.cell_lock import home_id
from flagrelease.adapters.local_registry import LocalRegistry
from flagrelease.errors import ServiceError
from flows.fleet import cell_slot
from tests.conftest import free_port
from tests.integration.faults import FaultRun, check_invariants, containers, registry_uploads
from tests.moto_server import ACCESS_KEY, REGION, SECRET_KEY, start_moto, stop
from tests.prefect_server import stop_group

DRIVER = [sys.executable, str(Path(__file__).with_name("stage_driver.py"))]
STAGES = ["preflight", "build", "smoke", "bench", "gate", "publish", "report"]
WAIT = 600  # no wait in this module is unbounded; a stage is reached well within this


@pytest.fixture
def fault(tmp_path, registry, released, prefect_env):
    """A fault run on the session's registry (a namespace of its own) and Prefect server;
    `released` first, so the chip stack is built and the runs here only reuse it."""
    return FaultRun(tmp_path / "fault", registry.address, env=dict(prefect_env))


def wait_for(condition, what: str, proc: subprocess.Popen | None = None, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout} s")
        time.sleep(0.05)


def finish(proc: subprocess.Popen, run: FaultRun, log: str = "run.log", timeout: float = WAIT) -> str:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_group(proc)
        pytest.fail(f"the run did not end within {timeout} s:\n{(run.root / log).read_text()[-3000:]}")
    return (run.root / log).read_text()


# --- the registry -----------------------------------------------------------------------------


@pytest.fixture
def own_registry(tmp_path):
    reg = LocalRegistry(tmp_path / "registry", free_port()).start()
    yield reg
    reg.stop()


def test_registry_down_mid_push(own_registry, tmp_path, released, prefect_env, docker_client):
    """The registry stops once the first upload arrives: the push is retried (an outage),
    then the run fails with exit 3 and leaves no tag; the registry, back, holds no release."""
    run = FaultRun(tmp_path / "fault", own_registry.address, env=dict(prefect_env))
    proc = run.start()
    wait_for(lambda: registry_uploads(own_registry.root), "upload to the registry", proc)
    own_registry.stop()
    output = finish(proc, run)
    assert f"registry {own_registry.address} cannot be reached" in output
    assert run.record().status == "failed" and run.record().publish is None
    own_registry.start()
    check_invariants(run, docker_client, output, exit_code=3, returncode=proc.returncode)


def test_registry_read_only_mid_push(own_registry, tmp_path, released, prefect_env, docker_client):
    """The registry restarts read-only once the first upload arrives (maintenance mode): the
    refusal fails the run with exit 3 and the registry's answer; nothing is tagged."""
    run = FaultRun(tmp_path / "fault", own_registry.address, env=dict(prefect_env))
    proc = run.start()
    wait_for(lambda: registry_uploads(own_registry.root), "upload to the registry", proc)
    own_registry.stop()
    readonly = LocalRegistry(own_registry.root, own_registry.port, readonly=True).start()
    try:
        output = finish(proc, run)
        assert "push of" in output and ("Method not allowed" in output or "cannot be reached" in output)
        assert run.record().status == "failed"
        check_invariants(run, docker_client, output, exit_code=3, returncode=proc.returncode)
    finally:
        readonly.stop()


def test_a_read_only_registry_is_asked_once(released, tmp_path, monkeypatch, docker_client):
    """Read-only from the start (the registry answers, refuses the upload): the push probe of the
    registry stage finds it before anything is built; a refusal, so it is asked once (retries are
    for outages), the flow fails with the registry's answer and no push is tried."""
    from flows.release_cell import release_cell

    readonly = LocalRegistry(tmp_path / "ro-registry", free_port(), readonly=True).start()
    run = FaultRun(tmp_path / "fault", readonly.address)
    monkeypatch.setenv("FLAGRELEASE_HOME", str(run.home))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    try:
        with prefect_test_harness():
            state = release_cell(
                model="tiny-llama", chip="cpu", matrix=str(run.matrix), registry=readonly.address, return_state=True
            )
            assert state.is_failed()
            with pytest.raises(ServiceError, match="Method not allowed"):
                state.result()
            with get_client(sync_client=True) as client:
                runs = client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
                )
        asked = [task_run for task_run in runs if task_run.name.startswith(("registry", "push"))]
        assert [(t.name.split("-")[0], t.run_count, t.state_type.value) for t in asked] == [("registry", 1, "FAILED")]
        assert run.record().status == "failed" and "build" not in run.record().timings
        check_invariants(run, docker_client, "", exit_code=3, returncode=run.record().exit_code)
    finally:
        readonly.stop()


def test_wrong_registry_credentials(tmp_path, released, prefect_env, docker_client):
    """A registry with htpasswd auth and a wrong password: refused at the registry check,
    before anything is built; exit 3; the password in no output or file."""
    password = f"wrong-{uuid.uuid4().hex}"
    htpasswd = tmp_path / "htpasswd"
    entry = subprocess.run(["htpasswd", "-Bbn", "flagos", "right-password"], capture_output=True, text=True, check=True)
    htpasswd.write_text(entry.stdout)
    reg = LocalRegistry(tmp_path / "auth-registry", free_port(), htpasswd=htpasswd).start()
    env = dict(prefect_env) | {
        "FLAGRELEASE_REGISTRY_USERNAME": "flagos",
        "FLAGRELEASE_REGISTRY_PASSWORD": password,
        "DOCKER_CONFIG": str(tmp_path / "docker-config"),
    }
    run = FaultRun(tmp_path / "fault", reg.address, env=env, secrets=[password])
    try:
        proc = run.run()
        output = proc.stdout + proc.stderr
        assert "credentials" in output, output[-3000:]
        record = run.record()
        assert record.status == "failed" and record.image is None and "build" not in record.timings
        check_invariants(
            run, docker_client, output, exit_code=3, returncode=proc.returncode, login=("flagos", "right-password")
        )
    finally:
        reg.stop()


# --- dockerd ----------------------------------------------------------------------------------


class PrivateDockerd:
    """A second dockerd of this test's own (socket, data root, exec root, pid file, a bridge of
    its own, no iptables), so that restarting it touches nobody else's containers or builds.

    Not `--bridge=none`: a dockerd started so deletes the host's `docker0` interface (moby's
    removeDefaultBridgeInterface), which cuts every other container on the machine off."""

    def __init__(self, root: Path):
        self.root = root
        self.socket = root / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.bridge = f"frd{uuid.uuid4().hex[:8]}"
        self.proc: subprocess.Popen | None = None

    def create_bridge(self) -> None:
        subnet = f"10.250.{uuid.uuid4().int % 250}.1/24"
        for command in (
            ["ip", "link", "add", self.bridge, "type", "bridge"],
            ["ip", "addr", "add", subnet, "dev", self.bridge],
            ["ip", "link", "set", self.bridge, "up"],
        ):
            subprocess.run(command, check=True, capture_output=True)

    def delete_bridge(self) -> None:
        subprocess.run(["ip", "link", "delete", self.bridge], capture_output=True)

    def start(self) -> PrivateDockerd:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "dockerd.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    shutil.which("dockerd") or "dockerd",
                    f"--host={self.host}",
                    f"--data-root={self.root / 'data'}",
                    f"--exec-root={self.root / 'exec'}",
                    f"--pidfile={self.root / 'dockerd.pid'}",
                    f"--bridge={self.bridge}",
                    "--iptables=false",
                    "--ip-masq=false",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                docker.DockerClient(base_url=self.host, timeout=5).ping()
                return self
            except docker.errors.DockerException:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.2)
        pytest.fail("private dockerd did not start:\n" + (self.root / "dockerd.log").read_text()[-3000:])

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.host, timeout=120)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def private_dockerd():
    daemon = PrivateDockerd(Path("/tmp") / f"fr-dockerd-{uuid.uuid4().hex[:8]}")  # a short socket path
    daemon.create_bridge()
    try:
        yield daemon.start()
    finally:
        daemon.stop()
        daemon.delete_bridge()
        shutil.rmtree(daemon.root, ignore_errors=True)


def test_dockerd_restarted_during_a_build(private_dockerd, tmp_path, released, registry, prefect_env, docker_client):
    """The private dockerd is restarted when the model image's build starts: the build fails,
    the run exits 3 naming the build, leaves no container on either dockerd and pushes nothing.

    The new dockerd gets the base image by `docker save | docker load` and the chip stack
    from the registry (copied into the run's namespace with skopeo), as a fresh host would."""
    base = docker_client.images.get(released["stack"]["image_id"]).labels["org.opencontainers.image.base.name"]
    loaded = subprocess.run(
        f"docker save {base} | DOCKER_HOST={private_dockerd.host} docker load",
        shell=True,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert loaded.returncode == 0, loaded.stderr
    run = FaultRun(tmp_path / "fault", registry.address, env=dict(prefect_env) | {"DOCKER_HOST": private_dockerd.host})
    stack = released["stack"]["ref"].split("/", 1)[1]  # namespace/name:key-… -> name:key-…
    copied = subprocess.run(
        ["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false"]
        + [f"docker://{registry.address}/flagrelease/{stack}", f"docker://{registry.address}/{run.namespace}/{stack}"],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert copied.returncode == 0, copied.stderr
    marker = run.root / "stage"
    proc = run.start(command=[*DRIVER, "build", str(marker)])
    wait_for(marker.exists, "build stage", proc)
    private_dockerd.stop()
    private_dockerd.start()
    output = finish(proc, run)
    assert "docker build failed" in output or "cannot reach the Docker Engine" in output, output[-3000:]
    record = run.record()
    assert record.stack is not None and record.stack.origin == "pulled"
    assert record.status == "failed" and record.image is None
    check_invariants(run, docker_client, output, exit_code=3, returncode=proc.returncode)
    check_invariants(run, private_dockerd.client(), output, exit_code=3, returncode=proc.returncode)


# --- the engine -------------------------------------------------------------------------------


def test_engine_crashes_mid_benchmark(fault, docker_client):
    """llama-server is killed (SIGKILL, from the host) once a bench side serves: the container
    ends with it, the benchmark fails with exit 3, nothing is pushed, no container stays."""
    marker = fault.root / "stage"
    proc = fault.start(command=[*DRIVER, "bench", str(marker)])
    wait_for(marker.exists, "bench stage", proc)
    killed: list[str] = []

    def kill_engine() -> bool:
        try:
            for container in bench_containers(fault, docker_client):
                for row in container.top(ps_args="-eo pid,comm")["Processes"] or []:
                    if "llama-server" in row[-1]:
                        os.kill(int(row[0]), signal.SIGKILL)  # its pid on this host: we share the kernel
                        killed.append(container.name)
                        return True
        except docker.errors.APIError:  # a side's container that ended or was removed meanwhile
            pass
        return False

    wait_for(kill_engine, "llama-server in a bench container", proc)
    output = finish(proc, fault)
    assert killed and "Traceback" not in output
    record = fault.record()
    assert record.status == "failed" and record.publish is None and record.bench == {}
    check_invariants(fault, docker_client, output, exit_code=3, returncode=proc.returncode)


def bench_containers(run: FaultRun, client) -> list:
    label = f"{docker_engine.HOME_LABEL}={home_id(run.home)}"
    return [client.containers.get(name) for name in containers(client, label) if name.startswith("flagrelease-bench-")]


def test_engine_never_becomes_ready(fault, docker_client):
    """A deadline the serve stack cannot meet (--smoke-timeout 0.01): exit 3, no new tag."""
    proc = fault.run("--smoke-timeout", "0.01")
    output = proc.stdout + proc.stderr
    assert "smoke test failed: the serve stack did not become ready before the deadline" in output
    check_invariants(fault, docker_client, output, exit_code=3, returncode=proc.returncode)


# --- S3 and the disk --------------------------------------------------------------------------


def test_s3_down_during_report_upload(tmp_path, registry, released, prefect_env, docker_client):
    """moto_server stops while the image is pushed: the release stands (exit 0), the local
    copy and the ledger have it, the summary says the S3 copy failed; no S3 key leaks."""
    moto, url = start_moto(tmp_path / "moto.log")
    bucket = f"fault-{uuid.uuid4().hex[:8]}"
    s3 = boto3.session.Session(aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION)
    s3.client("s3", endpoint_url=url).create_bucket(Bucket=bucket)
    env = dict(prefect_env) | {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "FLAGRELEASE_S3_URL": f"s3://{bucket}/releases",
        "FLAGRELEASE_S3_ENDPOINT_URL": url,
    }
    run = FaultRun(tmp_path / "fault", registry.address, env=env, secrets=[SECRET_KEY])
    marker = run.root / "stage"
    try:
        proc = run.start(command=[*DRIVER, "publish", str(marker)])
        wait_for(marker.exists, "publish stage", proc)
        stop(moto)
        output = finish(proc, run)
    finally:
        stop(moto)
    assert f"not in s3://{bucket}/releases" in output, output[-3000:]
    assert run.record().status == "released"
    check_invariants(run, docker_client, output, exit_code=0, returncode=proc.returncode)


@pytest.mark.parametrize("where", ["contexts", "results"])
def test_disk_full(where, fault, docker_client):
    """A 16 kB tmpfs under FLAGRELEASE_HOME (the render's build contexts, or the run's results)
    fills up: exit 3 naming the directory and "free space"; no container, nothing pushed."""
    target = fault.home / where
    target.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(target)], capture_output=True)
    assert mounted.returncode == 0, f"cannot mount a tmpfs (needs root): {mounted.stderr.decode()}"
    try:
        if where == "results":  # fill it up: the first record is then what does not fit
            (target / "filler").write_bytes(b"x" * 12 * 1024)
        proc = fault.run()
        output = proc.stdout + proc.stderr
        assert "No space left on device" in output and "free space on that disk" in output, output[-3000:]
        check_invariants(fault, docker_client, output, exit_code=3, returncode=proc.returncode)
    finally:
        subprocess.run(["umount", "-l", str(target)], check=True)


# --- signals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES)
def test_sigterm_and_sigint_at_every_stage(stage, tmp_path, registry, released, prefect_env, docker_client):
    """SIGTERM to one run and SIGINT to another, once both reached `stage` (they run side by
    side): each exits 128 + the signal with one error line, removes its containers and any
    unfinished release tag, and records `interrupted`. In the report stage the record says
    `released` already: the report is finished (it is not interrupted) and then the run exits."""
    runs = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        run = FaultRun(tmp_path / signum.name, registry.address, env=dict(prefect_env))
        runs[signum] = (run, run.start("--force", command=[*DRIVER, stage, str(run.root / "stage")]))
    waiting = dict(runs)

    def signal_those_in_the_stage() -> bool:  # each as soon as it is there: a stage may take a second
        for signum, (run, proc) in list(waiting.items()):
            if (run.root / "stage").exists():
                os.kill(proc.pid, signum)
                del waiting[signum]
            elif proc.poll() is not None:
                pytest.fail(f"the {signum.name} run ended (exit {proc.returncode}) before the {stage} stage")
        return not waiting

    wait_for(signal_those_in_the_stage, f"{stage} stage")
    for signum, (run, proc) in runs.items():
        output = finish(proc, run)
        assert f"stopped by {signum.name}" in output, output[-3000:]
        record = run.record()
        if stage == "report":
            assert record.status == "released"
        else:
            assert record.status == "interrupted", output[-3000:]
            assert record.error.startswith(f"interrupted by {signum.name}") and record.publish is None
        check_invariants(run, docker_client, output, exit_code=128 + signum, returncode=proc.returncode)


def test_ctrl_c_in_a_terminal(fault, docker_client):
    """Ctrl-C as a terminal sends it: SIGINT to the whole process group (the embedded Prefect
    server included), during the smoke test. Exit 130, nothing left behind."""
    fault.env.pop("PREFECT_API_URL")
    marker = fault.root / "stage"
    proc = fault.start("--force", command=[*DRIVER, "smoke", str(marker)])
    wait_for(marker.exists, "smoke stage", proc)
    os.killpg(proc.pid, signal.SIGINT)
    output = finish(proc, fault)
    assert fault.record().status == "interrupted", output[-3000:]
    check_invariants(fault, docker_client, output, exit_code=130, returncode=proc.returncode)


def test_a_killed_run_is_reaped_by_the_next(fault, docker_client):
    """kill -9 of the whole run while a bench container serves: nothing cleans up then; the
    next run of the cell removes the dead run's container, marks its record `interrupted`
    (it said `running`), says so, and releases."""
    marker = fault.root / "stage"
    proc = fault.start(command=[*DRIVER, "bench", str(marker)])
    wait_for(marker.exists, "bench stage", proc)
    label = f"{docker_engine.HOME_LABEL}={home_id(fault.home)}"
    wait_for(lambda: containers(docker_client, label), "bench container", proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    orphans = containers(docker_client, label)
    assert orphans, "the bench ended before the kill: nothing was orphaned"
    rerun = fault.run()
    output = rerun.stdout + rerun.stderr
    for orphan in orphans:
        assert f"removed {orphan}, left behind by an earlier run" in output, output[-3000:]
    assert sorted(r.status for r in fault.records()) == ["interrupted", "released"]
    assert "was killed before it ended: its record says interrupted" in output
    check_invariants(fault, docker_client, output, exit_code=0, returncode=rerun.returncode)


# --- two runs of one cell ---------------------------------------------------------------------


def test_two_runs_of_one_cell_at_once(fault, docker_client):
    """A second run of the cell while the first is in its build: refused at once (exit 3,
    the first run named), having written nothing; the first releases undisturbed."""
    marker = fault.root / "stage"
    first = fault.start("--force", command=[*DRIVER, "build", str(marker)])
    wait_for(marker.exists, "build stage", first)
    second = fault.run(timeout=120)
    output = second.stdout + second.stderr
    first_run = next(iter(fault.records()), None)
    assert "another run of tiny-llama--cpu is in progress" in output, output[-3000:]
    assert second.returncode == 3 and "Traceback" not in output
    assert first_run is None or first_run.run_id in output
    done = finish(first, fault)
    assert len(fault.records()) == 1  # the refused run wrote no record
    check_invariants(fault, docker_client, done, exit_code=0, returncode=first.returncode)


def test_runs_of_one_cell_in_a_fleet_wait_for_each_other(prefect_env):
    """On different hosts the lock file cannot see each other: the cell's Prefect limit of
    one (created on first use) makes the second run wait until the first leaves."""
    cell = f"fault-{uuid.uuid4().hex[:8]}"
    events: list[str] = []
    with temporary_settings({PREFECT_API_URL: prefect_env["PREFECT_API_URL"]}):

        def second() -> None:
            with cell_slot(cell, in_fleet=True):
                events.append("second in")

        with cell_slot(cell, in_fleet=True):
            events.append("first in")
            waiter = threading.Thread(target=second)
            waiter.start()
            time.sleep(3)
            events.append("first out")
        waiter.join(timeout=60)
    assert events == ["first in", "first out", "second in"]
