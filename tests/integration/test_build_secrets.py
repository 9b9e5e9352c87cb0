"""Build secrets for real: the pip index URL (with credentials) and the CA bundle reach the
RUN that needs them through BuildKit, and no byte of the secret reaches the image."""

from __future__ import annotations

import hashlib
import io
import tarfile
import uuid

import jinja2
from pydantic import SecretStr

from flagrelease.adapters import docker_engine
from flagrelease.settings import load_settings
from flagrelease.steps.build import _secret_files
from tests.conftest import ROOT

SECRET_URL = "https://flagrelease-user:s3cret-token-{nonce}@pypi.org/simple"


def test_pip_secrets_are_used_and_not_stored(released, docker_client, tmp_path):
    nonce = uuid.uuid4().hex  # also busts the build cache, so the RUN really executes
    secret = SECRET_URL.format(nonce=nonce)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROOT / "dockerfiles"), undefined=jinja2.StrictUndefined)
    macros = env.get_template("_macros.j2").make_module({"settings": {"apt_mirror": None}})
    context, secrets_dir = tmp_path / "context", tmp_path / "secrets"
    context.mkdir()
    secrets_dir.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM {released['image']}\n"  # a local tag: BuildKit would look an image id up on Docker Hub
        f"{macros.pip_secrets()} \\\n"
        f" && /opt/flagscale/bin/python -m pip download -q --no-deps -d /tmp/dl six==1.16.0 \\\n"
        f" && printf %s \"$PIP_INDEX_URL\" | sha256sum | cut -d' ' -f1 > /index-url.sha256 \\\n"
        f" && echo {nonce} > /nonce\n"
    )
    build = load_settings().build.model_copy(update={"pip_index_url": SecretStr(secret)})
    image = docker_engine.build(
        build.docker_cli,
        context,
        tags=[f"flagrelease-test/secrets:{nonce[:8]}"],
        labels={},
        secrets=_secret_files(build, secrets_dir),
        platform="linux/amd64",
        on_line=lambda _: None,
    )
    try:
        seen = docker_client.containers.run(image, ["cat", "/index-url.sha256"], entrypoint=[], remove=True)
        assert seen.decode().strip() == hashlib.sha256(secret.encode()).hexdigest()  # pip got the secret index
        saved = b"".join(docker_client.images.get(image).save())
        with tarfile.open(fileobj=io.BytesIO(saved)) as outer:
            blobs = [outer.extractfile(m).read() for m in outer.getmembers() if m.isfile()]
        layers = b"".join(_unpacked(blob) for blob in blobs)
        assert b"s3cret-token" not in saved and b"s3cret-token" not in layers
        # The CA bundle was mounted for the RUN too (the base image has its own certificates,
        # so only the RUN's own layer is searched).
        assert b"BEGIN CERTIFICATE" not in _only_new_layer(blobs)
    finally:
        docker_client.images.remove(image, force=True)


def _unpacked(blob: bytes) -> bytes:
    """A layer tarball's file contents (other members: config and manifest JSON as they are)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(blob)) as layer:
            return b"".join(layer.extractfile(m).read() for m in layer.getmembers() if m.isfile())
    except tarfile.TarError:
        return blob


def _only_new_layer(blobs: list[bytes]) -> bytes:
    """The files the test's RUN added: its layer is the only one holding /nonce."""
    for blob in blobs:
        try:
            with tarfile.open(fileobj=io.BytesIO(blob)) as layer:
                names = layer.getnames()
                if "nonce" in names:
                    return b"".join(layer.extractfile(m).read() for m in layer.getmembers() if m.isfile())
        except tarfile.TarError:
            continue
    raise AssertionError("the RUN's layer was not found")
