"""The one place that talks to the Docker Engine.

Builds go through the BuildKit-capable docker CLI (secrets for CA bundles and
index URLs; the SDK only drives the classic builder); everything else through
the Docker SDK. Push streams are read event by event, because the SDK reports a
failed push only inside the stream. A dockerd that goes away (restarted, killed) under any
SDK call is a ServiceUnavailable, translated once where the SDK sends its requests.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import docker
import docker.errors
import docker.types
import requests
import urllib3

from flagrelease.adapters.registry_auth import RegistryCredentials
from flagrelease.errors import ServiceError, ServiceUnavailable

# Every container FlagRelease starts carries these labels, so leftovers are findable: the run
# that started it, its cell, and the state directory (lock domain) the run kept its lock in.
OWNER_LABEL = "org.flagos.flagrelease.owner"
CELL_LABEL = "org.flagos.flagrelease.cell"
HOME_LABEL = "org.flagos.flagrelease.home"

LineSink = Callable[[str], None]


def run_labels(owner: str, cell: str, home: str) -> dict[str, str]:
    """The labels of a container a run starts: enough to find it, and to reap it once the run is dead."""
    return {OWNER_LABEL: owner, CELL_LABEL: cell, HOME_LABEL: home}


ENGINE_FIX = "start it (`dockerd >/var/log/dockerd.log 2>&1 &` as root, or scripts/bootstrap)"


class _EngineAPI(docker.APIClient):
    """The SDK's low-level client (a requests Session): every request it sends, so every SDK
    call, turns a refused or dropped connection to dockerd into ServiceUnavailable."""

    def __init__(self, base_url: str | None = None, **kwargs):
        # Before the SDK rewrites a socket's address to `http+docker://localhost`.
        self.engine_address = base_url or "unix:///var/run/docker.sock"
        super().__init__(base_url=base_url, **kwargs)

    def send(self, request, **kwargs):
        try:
            return super().send(request, **kwargs)
        except requests.exceptions.ConnectionError as err:
            # A read that timed out is an engine that is there but slow: the caller's to judge (a
            # container's `wait`). requests reports one that hit the body as a ConnectionError.
            cause = err.args[0] if err.args else None
            if isinstance(cause, urllib3.exceptions.ReadTimeoutError) or isinstance(
                getattr(cause, "reason", None), urllib3.exceptions.ReadTimeoutError
            ):
                raise
            raise ServiceUnavailable(
                f"cannot reach the Docker Engine: {err}", where=self.engine_address, fix=ENGINE_FIX
            ) from None


class EngineClient(docker.DockerClient):
    def __init__(self, *args, **kwargs):
        self.api = _EngineAPI(*args, **kwargs)


def connect() -> docker.DockerClient:
    try:
        client = EngineClient.from_env(timeout=120)
        client.ping()
    except docker.errors.DockerException as err:
        if isinstance(err.__cause__, ServiceUnavailable):  # the SDK's version probe wraps ours
            raise err.__cause__ from None
        raise ServiceUnavailable(
            f"cannot reach the Docker Engine: {err}",
            where=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"),
            fix=ENGINE_FIX,
        ) from None
    return client


def image_id(client: docker.DockerClient, ref: str) -> str | None:
    try:
        return client.images.get(ref).id
    except docker.errors.ImageNotFound:
        return None


def image_labels(client: docker.DockerClient, ref: str) -> dict[str, str]:
    return client.images.get(ref).labels or {}


def pull(client: docker.DockerClient, ref: str, auth: dict[str, str] | None = None) -> str | None:
    """Pull `ref`; None when it cannot be pulled (no registry reachable, unknown image)."""
    try:
        return client.images.pull(ref, auth_config=auth).id
    except docker.errors.APIError:
        return None


def split_ref(ref: str) -> tuple[str, str]:
    """'host:5000/a/b:tag' -> ('host:5000/a/b', 'tag'); no tag means 'latest'."""
    name, sep, tag_name = ref.rpartition(":")
    if not sep or "/" in tag_name:
        return ref, "latest"
    return name, tag_name


def import_rootfs(client: docker.DockerClient, rootfs: Path, ref: str, labels: dict[str, str]) -> str:
    """`tar -C rootfs -c . | docker import` with labels, returning the image id."""
    with tempfile.TemporaryDirectory() as tmp:
        tar_path = Path(tmp) / "rootfs.tar"
        with tarfile.open(tar_path, mode="w") as tar:
            tar.add(rootfs, arcname=".")
        repository, tag_name = split_ref(ref)
        changes = [f'LABEL {k}="{v}"' for k, v in labels.items()]
        # From a file, not a stream: the SDK's chunked upload is refused ("invalid byte in chunk length").
        result = client.api.import_image_from_file(str(tar_path), repository=repository, tag=tag_name, changes=changes)
    if "error" in str(result).lower():
        raise ServiceError(f"docker import of {ref} failed: {result}")
    found = image_id(client, ref)
    if found is None:
        raise ServiceError(f"docker import reported success but {ref} is not in the engine")
    return found


def build(
    cli: str,
    context: Path,
    *,
    tags: list[str],
    labels: dict[str, str],
    secrets: dict[str, Path],
    platform: str,
    on_line: LineSink,
    target: str | None = None,
    build_args: dict[str, str] | None = None,
) -> str:
    """BuildKit build of `context` (up to stage `target`); streams the log; returns the image id."""
    with tempfile.TemporaryDirectory() as tmp:
        iidfile = Path(tmp) / "iid"
        cmd = [cli, "build", "--progress=plain", "--platform", platform, "--iidfile", str(iidfile)]
        if target:
            cmd += ["--target", target]
        for tag in tags:
            cmd += ["--tag", tag]
        for key, value in labels.items():
            cmd += ["--label", f"{key}={value}"]
        for key, value in (build_args or {}).items():
            cmd += ["--build-arg", f"{key}={value}"]
        for name, path in secrets.items():
            cmd += ["--secret", f"id={name},src={path}"]
        cmd.append(str(context))
        env = os.environ | {"DOCKER_BUILDKIT": "1"}
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        except FileNotFoundError:
            raise ServiceError(
                f"docker CLI {cli!r} not found",
                fix="install Debian's docker.io (BuildKit built in) or set FLAGRELEASE_DOCKER_CLI",
            ) from None
        tail: list[str] = []
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                line = line.rstrip("\n")
                on_line(line)
                tail = (tail + [line])[-40:]
        finally:
            if proc.poll() is None:  # stopped (SIGTERM, Ctrl-C) mid-build: the build goes too
                proc.kill()
                proc.wait()
        if proc.wait() != 0:
            raise ServiceError(
                f"docker build failed (exit {proc.returncode}); last lines:\n" + "\n".join(tail),
                where=str(context / "Dockerfile"),
            )
        return iidfile.read_text().strip()


def tag(client: docker.DockerClient, image: str, repository: str, tag_name: str) -> None:
    client.images.get(image).tag(repository, tag_name)


def push(
    client: docker.DockerClient, repository: str, tag_name: str, credentials: RegistryCredentials, on_line: LineSink
) -> str:
    """Push one tag and return the manifest digest the registry reported.

    Any `error` event fails the push, whatever the HTTP status of the stream.
    """
    digest = None
    try:
        stream = client.api.push(
            repository, tag=tag_name, stream=True, decode=True, auth_config=credentials.auth_config()
        )
        for event in stream:
            if "error" in event or "errorDetail" in event:
                detail = event.get("errorDetail", {}).get("message") or event.get("error")
                raise ServiceError(f"push of {repository}:{tag_name} failed: {detail}", where=repository)
            if "aux" in event and "Digest" in event["aux"]:
                digest = event["aux"]["Digest"]
            if event.get("status") and not event.get("progressDetail"):
                on_line(f"{event.get('id', '')} {event['status']}".strip())
    except docker.errors.APIError as err:
        raise ServiceError(
            f"push of {repository}:{tag_name} failed: {err.explanation or err}", where=repository
        ) from None
    except requests.exceptions.RequestException as err:  # dockerd went away while streaming
        raise ServiceUnavailable(
            f"push of {repository}:{tag_name} lost the Docker Engine: {type(err).__name__}", fix=ENGINE_FIX
        ) from None
    if digest is None:
        raise ServiceError(f"push of {repository}:{tag_name} ended without a digest", where=repository)
    return digest


def untag(client: docker.DockerClient, ref: str) -> None:
    """Drop a local tag that only existed to be pushed (publish's staging tags).

    Never the image's last tag: removing that would delete the image.
    """
    try:
        if len(client.images.get(ref).tags) > 1:
            client.images.remove(ref, noprune=True)
    except docker.errors.ImageNotFound:
        pass


def pull_by_digest(
    client: docker.DockerClient, repository: str, digest: str, auth: dict[str, str] | None = None
) -> str:
    try:
        return client.images.pull(f"{repository}@{digest}", auth_config=auth).id
    except docker.errors.APIError as err:
        raise ServiceError(f"pull of {repository}@{digest} failed: {err.explanation or err}") from None


@contextmanager
def running_container(
    client: docker.DockerClient,
    image: str,
    *,
    name: str,
    env: dict[str, str],
    container_port: int,
    volumes: dict[str, dict[str, str]],
    devices: list[str],
    shm_size: str | None,
    labels: dict[str, str],
    gpus: bool = False,
    cpus: float | None = None,
) -> Iterator[docker.models.containers.Container]:
    """Run `image` detached with its port published on 127.0.0.1 only; always removed on exit
    (success, failure, timeout, Ctrl-C, SIGTERM). `labels`: at least OWNER_LABEL."""
    container = None
    try:
        # Created, then started: a container that cannot start (a port, a device, the bridge)
        # is already ours to remove, where `containers.run` would leave it behind as Created.
        container = client.containers.create(
            image,
            name=name,
            environment=env,
            ports={f"{container_port}/tcp": ("127.0.0.1", None)},
            volumes=volumes,
            devices=[f"{d}:{d}" for d in devices],
            shm_size=shm_size,
            device_requests=[docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])] if gpus else None,
            labels=labels,
            nano_cpus=round(cpus * 1e9) if cpus else None,
        )
        container.start()
        yield container
    except docker.errors.APIError as err:
        raise ServiceError(f"cannot start container from {image}: {err.explanation or err}") from None
    finally:
        # By name: an interrupt may land after dockerd created the container but before `create`
        # returned it. Removal finishes even when the interrupt lands during it.
        try:
            _remove(client, name)
        except KeyboardInterrupt:
            _remove(client, name)
            raise


def _remove(client: docker.DockerClient, name: str) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        client.api.remove_container(name, force=True)


def run_to_completion(
    client: docker.DockerClient, image: str, script: str, *, labels: dict[str, str], timeout_s: float
) -> tuple[int, str]:
    """Run `sh -c script` in `image` without network and return (exit code, stdout).

    The container is removed whatever happens; one still running at `timeout_s` is killed
    and reported as a ServiceError.
    """
    container = None
    try:
        container = client.containers.create(
            image,
            command=["-c", script],
            entrypoint=["/bin/sh"],
            network_disabled=True,
            labels=labels,
        )
        container.start()
        try:
            code = container.wait(timeout=timeout_s)["StatusCode"]
        except requests.exceptions.RequestException as err:  # the wait's ReadTimeout
            raise ServiceError(
                f"{image}: `sh -c ...` did not finish in {timeout_s:.0f} s ({type(err).__name__})", where=image
            ) from None
        return code, container.logs(stdout=True, stderr=False).decode(errors="replace")
    except docker.errors.APIError as err:
        raise ServiceError(f"cannot run a container of {image}: {err.explanation or err}", where=image) from None
    finally:
        if container is not None:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)


def engine_version(client: docker.DockerClient) -> str:
    """dockerd's version, e.g. 20.10.24+dfsg1."""
    return str(client.version().get("Version", "unknown"))


def published_port(container, container_port: int) -> int:
    container.reload()
    bindings = container.attrs["NetworkSettings"]["Ports"].get(f"{container_port}/tcp") or []
    for binding in bindings:
        if binding["HostIp"] == "127.0.0.1":
            return int(binding["HostPort"])
    raise ServiceError(f"container {container.name} has no port {container_port} published on 127.0.0.1")


def container_state(container) -> tuple[str, int | None]:
    container.reload()
    state = container.attrs["State"]
    return state["Status"], state.get("ExitCode")


def container_log(container) -> str:
    try:
        return container.logs(stdout=True, stderr=True).decode(errors="replace")
    except docker.errors.APIError:
        return ""


@contextmanager
def file_in_container(container, path: str) -> Iterator[IO[bytes] | None]:
    """A regular file of a container, streamed rather than read whole (a record written per call
    can grow large), or None when there is no such file."""
    try:
        chunks, _stat = container.get_archive(path)
    except docker.errors.NotFound:
        yield None
        return
    except docker.errors.APIError as err:
        raise ServiceError(f"cannot read {path} from container {container.name}: {err.explanation or err}") from None
    # The Engine sends the file as a one-member tar stream.
    with tarfile.open(fileobj=_ChunkStream(iter(chunks)), mode="r|") as tar:
        member = tar.next()
        yield tar.extractfile(member) if member is not None and member.isfile() else None


class _ChunkStream(io.RawIOBase):
    """A readable file over an iterator of byte chunks (the Engine's archive stream)."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks, self._pending = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            self._pending = next(self._chunks, b"")
            if not self._pending:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size], self._pending = self._pending[:size], self._pending[size:]
        return size


def containers_owned_by(client: docker.DockerClient, owner: str) -> list[str]:
    return [c.name for c in client.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={owner}"})]


def remove_containers_of_others(client: docker.DockerClient, cell: str, home: str, run_id: str) -> list[str]:
    """Remove the containers of `cell` started from state directory `home` by runs other
    than `run_id` (the caller holds the cell's lock: those runs are dead); their names."""
    # sparse: the list's own fields, without inspecting each container (one may go meanwhile).
    found = client.containers.list(
        all=True, sparse=True, filters={"label": [f"{CELL_LABEL}={cell}", f"{HOME_LABEL}={home}"]}
    )
    removed = []
    for container in found:
        if container.attrs["Labels"].get(OWNER_LABEL) != run_id:
            with contextlib.suppress(docker.errors.NotFound):
                client.api.remove_container(container.id, force=True)
            removed.append(container.attrs["Names"][0].lstrip("/"))
    return removed
