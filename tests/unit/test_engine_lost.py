"""A dockerd that is gone, or drops the connection mid-request, is a ServiceUnavailable from
every SDK call: the translation sits in the adapter's session, not in each function."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
import requests

from flagrelease.adapters import docker_engine
from flagrelease.errors import ServiceUnavailable


@pytest.fixture()
def dropping_engine(tmp_path: Path):
    """A unix socket that accepts each connection and closes it unanswered (dockerd killed mid-call)."""
    path = tmp_path / "docker.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()

    def drop() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.close()

    threading.Thread(target=drop, daemon=True).start()
    yield f"unix://{path}"
    server.close()


CALLS = {
    "image_labels": lambda c: docker_engine.image_labels(c, "any:tag"),
    "image_id": lambda c: docker_engine.image_id(c, "any:tag"),
    "containers_owned_by": lambda c: docker_engine.containers_owned_by(c, "run-1"),
    "engine_version": docker_engine.engine_version,
    "tag": lambda c: docker_engine.tag(c, "sha256:00", "r", "t"),
}


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("engine", ["absent", "dropping"])
def test_every_call_names_the_engine(call, engine, dropping_engine, tmp_path):
    address = dropping_engine if engine == "dropping" else f"unix://{tmp_path / 'none.sock'}"
    client = docker_engine.EngineClient(base_url=address, version="1.41", timeout=5)
    with pytest.raises(ServiceUnavailable) as raised:
        CALLS[call](client)
    assert raised.value.where == address
    assert "cannot reach the Docker Engine" in str(raised.value)


def test_connect_says_it_once(tmp_path, monkeypatch):
    address = f"unix://{tmp_path / 'none.sock'}"
    monkeypatch.setenv("DOCKER_HOST", address)
    with pytest.raises(ServiceUnavailable) as raised:
        docker_engine.connect()
    assert raised.value.where == address
    assert str(raised.value).count("cannot reach the Docker Engine") == 1


def test_a_slow_engine_is_not_a_lost_one(tmp_path):
    """An engine that takes the request and does not answer in time is there: the read timeout
    stays a timeout, for the caller to judge (run_to_completion's `wait`)."""
    path = tmp_path / "slow.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()
    held = []

    def answer_slowly() -> None:
        conn, _ = server.accept()
        held.append(conn)
        conn.recv(65536)
        # Headers now, the body never: how a container's `wait` looks until it exits.
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n")

    threading.Thread(target=answer_slowly, daemon=True).start()
    client = docker_engine.EngineClient(base_url=f"unix://{path}", version="1.41", timeout=1)
    try:
        with pytest.raises(requests.exceptions.RequestException) as raised:
            client.containers.list()
        assert not isinstance(raised.value, ServiceUnavailable)
    finally:
        server.close()
