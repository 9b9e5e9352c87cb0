"""The whole path for the cpu cell against the real dockerd, registry and engine."""

from __future__ import annotations

import json
import subprocess

from flagrelease.adapters import docker_engine
from flagrelease.adapters.registry import RegistryClient


def test_release_pushes_an_image_that_pulls_back_by_digest(released, registry, docker_client):
    assert released["status"] == "released"
    digest = released["digest"]
    assert digest.startswith("sha256:")
    repository = released["repository"]
    assert repository.startswith(f"{registry.address}/flagrelease/flagrelease-cpu-release-model_tiny-llama-")

    # The registry itself serves the same digest for the release tag.
    name = repository.split("/", 1)[1]
    tag, *aliases = released["tags"]
    assert len(tag) == 10 and tag.isdigit()  # YYMMDDHHMM
    with RegistryClient(registry.address) as api:
        assert api.manifest_digest(name, tag) == digest

    # A consumer pulls by digest and gets the very image that was smoke-tested.
    docker_client.images.remove(f"{repository}:{tag}")
    pulled = docker_engine.pull_by_digest(docker_client, repository, digest)
    assert pulled == released["image_id"]


def test_pulled_image_labels_carry_every_pin(released, docker_client):
    labels = docker_client.images.get(released["image_id"]).labels
    assert labels["org.flagos.flagscale"] == "0.8.0"
    assert labels["org.flagos.pkg-llama-cpp-tools"] == "1:0.7.0+dfsg-2"
    assert labels["org.flagos.python"] == "3.13"
    assert labels["org.flagos.chip-code"] == "cpu001"
    assert labels["org.flagos.served-model-name"] == "tiny-llama-flagos"
    assert labels["org.opencontainers.image.created"].startswith("20")
    assert labels["org.flagos.context-hash"]
    assert labels["org.opencontainers.image.base.digest"].startswith("sha256:")


def test_smoke_result_and_timings_are_reported(released):
    smoke = released["smoke"]
    assert smoke["passed"] is True
    assert smoke["models"] == ["tiny-llama-flagos"]
    assert smoke["usage"]["completion_tokens"] > 0
    assert set(released["timings"]) >= {"base", "build", "smoke", "push"}


def test_skopeo_sees_the_same_manifest(released):
    """An independent OCI client (skopeo) agrees on the published digest."""
    ref = f"docker://{released['repository']}:{released['tags'][0]}"
    out = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", ref], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(out.stdout)["Digest"] == released["digest"]


def test_no_container_is_left_behind(released, docker_client):
    # This run's containers only: other runs (tests, engineers) may share this dockerd.
    owner = f"{docker_engine.OWNER_LABEL}={released['run_id']}"
    assert [c.name for c in docker_client.containers.list(all=True, filters={"label": owner})] == []


def test_secrets_do_not_reach_the_image(released, docker_client):
    """The CA bundle is a BuildKit secret: not in any layer's history, label or env."""
    image = docker_client.images.get(released["image_id"])
    history = json.dumps(image.history())
    config = json.dumps(image.attrs["Config"])
    assert "BEGIN CERTIFICATE" not in history + config
    assert "/run/secrets/ca_bundle" not in json.dumps(image.attrs["Config"].get("Env"))
