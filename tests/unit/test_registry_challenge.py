"""The pure parts of answering a registry's challenge (adapters/oras_registry.py): reading
`WWW-Authenticate`, and which token a request needs. The protocol itself runs against real
registries in tests/integration/test_registry_auth.py."""

from __future__ import annotations

import pytest

from flagrelease.adapters.oras_registry import access_key, parse_challenge
from flagrelease.adapters.registry import api_host, plain_http


def test_a_bearer_challenge_names_realm_service_scope_and_error():
    challenge = parse_challenge(
        'Bearer realm="https://auth.example.com/token",service="harbor-registry",'
        'scope="repository:flagrelease/x:pull,push",error="insufficient_scope"'
    )
    assert challenge.scheme == "bearer"
    assert challenge.params == {
        "realm": "https://auth.example.com/token",
        "service": "harbor-registry",
        "scope": "repository:flagrelease/x:pull,push",
        "error": "insufficient_scope",
    }
    assert challenge.error == "insufficient_scope"


def test_a_basic_challenge_and_none_at_all():
    assert parse_challenge('Basic realm="flagrelease"').scheme == "basic"
    assert parse_challenge("").scheme == ""
    assert parse_challenge("").error == ""


@pytest.mark.parametrize(
    ("url", "method", "key"),
    [
        ("http://127.0.0.1:5000/v2/", "GET", ("", "pull")),
        ("http://127.0.0.1:5000/v2/_catalog?n=1000", "GET", ("", "pull")),
        ("http://r:5000/v2/flagrelease/a-b/manifests/latest", "HEAD", ("flagrelease/a-b", "pull")),
        ("http://r:5000/v2/flagrelease/a-b/manifests/latest", "PUT", ("flagrelease/a-b", "push")),
        ("https://r/v2/ns/deep/repo/manifests/sha256:abc", "DELETE", ("ns/deep/repo", "delete")),
        ("https://r/v2/ns/repo/blobs/uploads/", "POST", ("ns/repo", "push")),
        ("https://r/v2/ns/repo/blobs/uploads/1f2e?_state=x", "PATCH", ("ns/repo", "push")),
        ("https://r/v2/ns/repo/blobs/uploads/1f2e?_state=x", "DELETE", ("ns/repo", "delete")),
        ("https://r/v2/ns/repo/tags/list?n=100&last=a", "GET", ("ns/repo", "pull")),
        ("https://r/v2/ns/repo/referrers/sha256:abc", "GET", ("ns/repo", "pull")),
    ],
)
def test_each_request_is_keyed_by_repository_and_access(url, method, key):
    """The actions distribution asks for: pull for reads, pull,push for writes, delete for deletes."""
    assert access_key(url, method) == key


def test_docker_hub_is_reached_on_its_api_host_and_loopback_over_http():
    assert api_host("docker.io") == "registry-1.docker.io"
    assert api_host("harbor.example.com:443") == "harbor.example.com:443"
    assert plain_http("127.0.0.1:5000") and plain_http("localhost:5000")
    assert not plain_http("harbor.baai.ac.cn") and not plain_http("10.0.0.1:5000")
