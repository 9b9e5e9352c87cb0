"""Smoke step: start the image with the chip's runtime, wait for the serve stack, ask it.

Pass means: the container stays up, /health turns 200 before the deadline,
/v1/models lists the served model name, and a chat completion returns a
non-empty choice with `usage`. The container is removed whatever happens.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel

from flagrelease.adapters import docker_engine
from flagrelease.adapters.serve_client import ServeClient
from flagrelease.cell_facts import served_name
from flagrelease.results import SmokeResult
from flagrelease.schema import Cell, Side

SMOKE_PROMPT = [{"role": "user", "content": "Say hello in one word."}]


# Read by the image's entrypoint (dockerfiles/files/flagrelease-serve.py).
SIDE_ENV = "FLAGRELEASE_SIDE"


class RunOptions(BaseModel):
    env: dict[str, str]
    volumes: dict[str, dict[str, str]]
    devices: list[str]
    shm_size: str | None
    gpus: bool
    port: int
    cpus: float | None = None  # `docker run --cpus`


def run_options(
    cell: Cell,
    weights_dir: Path,
    *,
    side: Side | None = None,
    visible_devices: str = "0",
    cpus: float | None = None,
) -> RunOptions:
    """`docker run` options from the chip's runtime block and the model's weights mount.

    `side`: start that side of the comparison. The image's entrypoint gives the engine the
    environment the chip's launcher declares for it (matrix.yaml, rendered into the image);
    no side: the image's own defaults."""
    runtime = cell.chip.runtime
    env = dict(runtime.env)
    if runtime.visible_devices_env:
        env[runtime.visible_devices_env] = visible_devices
    if side is not None:
        env[SIDE_ENV] = side
    volumes = {str(weights_dir.resolve()): {"bind": cell.weights_mount, "mode": "ro"}}
    for mount in runtime.mounts:
        volumes[mount.source] = {"bind": mount.target, "mode": "ro" if mount.read_only else "rw"}
    return RunOptions(
        env=env,
        volumes=volumes,
        devices=list(runtime.devices),
        shm_size=runtime.shm_size,
        gpus=runtime.gpus,
        port=cell.model.serve.engine_args["port"],
        cpus=cpus,
    )


@contextmanager
def serving(
    client,
    image: str,
    cell: Cell,
    options: RunOptions,
    *,
    owner: str,
    timeout_s: float,
    on_line=print,
    purpose: str = "smoke",
    home: str = "",
) -> Iterator[tuple[str, Any, float]]:
    """Run the image's serve stack until it is ready; yield (base URL on 127.0.0.1, container,
    seconds to ready). Raises ServiceError with the container log when it never gets ready.

    The container is labelled with `owner` (the run id), the cell and `home` (the id of the
    state directory whose cell lock the run holds), so that the next run can reap it."""
    started = time.monotonic()
    name = f"flagrelease-{purpose}-{cell.slug}-{uuid.uuid4().hex[:8]}"
    with docker_engine.running_container(
        client,
        image,
        name=name,
        env=options.env,
        container_port=options.port,
        volumes=options.volumes,
        devices=options.devices,
        shm_size=options.shm_size,
        gpus=options.gpus,
        labels=docker_engine.run_labels(owner, cell.slug, home),
        cpus=options.cpus,
    ) as container:
        port = docker_engine.published_port(container, options.port)
        base_url = f"http://127.0.0.1:{port}"
        on_line(f"waiting for {served_name(cell)} on {base_url} (deadline {timeout_s:.0f} s)")
        with ServeClient(base_url, timeout=60.0) as api:
            problem = _wait_ready(container, api, started + timeout_s)
        if problem:
            raise NotReady(problem, docker_engine.container_log(container))
        yield base_url, container, time.monotonic() - started


class NotReady(Exception):
    def __init__(self, problem: str, log: str):
        super().__init__(problem)
        self.problem, self.log = problem, log


def smoke_test(
    client,
    image: str,
    cell: Cell,
    options: RunOptions,
    *,
    owner: str,
    timeout_s: float = 120.0,
    on_line=print,
    home: str = "",
) -> SmokeResult:
    started = time.monotonic()
    want = served_name(cell)
    result = SmokeResult(passed=False, container="", seconds=0.0)
    try:
        with serving(client, image, cell, options, owner=owner, timeout_s=timeout_s, on_line=on_line, home=home) as (
            base_url,
            container,
            ready_s,
        ):
            result.container, result.ready_seconds = container.name, ready_s
            result.host_port = int(base_url.rsplit(":", 1)[1])
            try:
                with ServeClient(base_url, timeout=60.0) as api:
                    result.error = _ask(api, want, result)
            except httpx.HTTPError as err:
                result.error = f"serve API error: {type(err).__name__}: {err}"
            result.log = docker_engine.container_log(container)
    except NotReady as err:
        result.error, result.log = err.problem, err.log
    result.seconds = time.monotonic() - started
    result.passed = result.error is None
    return result


def _wait_ready(container, api: ServeClient, deadline: float) -> str | None:
    while time.monotonic() < deadline:
        status, code = docker_engine.container_state(container)
        if status in ("exited", "dead"):
            return f"the serve stack exited (code {code}) before becoming ready"
        if api.health() == 200:
            return None
        time.sleep(0.25)
    return "the serve stack did not become ready before the deadline"


def _ask(api: ServeClient, want: str, result: SmokeResult) -> str | None:
    result.models = api.models()
    if want not in result.models:
        return f"/v1/models lists {result.models}, not the served model name {want!r}"
    reply = api.chat(want, SMOKE_PROMPT, max_tokens=16, temperature=0.0)
    choices = reply.get("choices") or []
    result.reply = (choices[0].get("message", {}).get("content") or "") if choices else ""
    result.usage = reply.get("usage") or {}
    if not result.reply:
        return "chat completion returned no choice content"
    if not result.usage.get("completion_tokens"):
        return f"chat completion carries no usage: {reply}"
    return None
