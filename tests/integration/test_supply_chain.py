"""Supply chain for real: the released cpu cell's SBOM and provenance, attached to its digest in
the real registry, read back with other clients (plain HTTP, skopeo), and `flagrelease verify`
against the release and against a scratch copy of the registry whose release tag was moved."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

from flagrelease.adapters import docker_engine
from flagrelease.adapters.local_registry import LocalRegistry
from flagrelease.adapters.registry import RegistryClient
from flagrelease.adapters.registry_auth import RegistryCredentials
from flagrelease.errors import ServiceError
from flagrelease.matrix import load_matrix, select
from flagrelease.record import ReleaseRecord
from flagrelease.settings import load_settings
from flagrelease.steps import attest, provenance, publish, render
from tests.conftest import ROOT, free_port, run_cli
from tests.integration.conftest import S3_BUCKET
from tests.moto_server import ACCESS_KEY, SECRET_KEY

TYPES = {"sbom": "application/vnd.cyclonedx+json", "provenance": "application/vnd.in-toto+json"}
USER = "flagos"
PASSWORD = f"registry-pw-{uuid.uuid4().hex}"


def _name(released) -> tuple[str, str]:
    """(registry address, repository without it)."""
    return tuple(released["repository"].split("/", 1))  # type: ignore[return-value]


def _api(registry: str, path: str, accept: str | None = None, auth=None) -> httpx.Response:
    """The registry's HTTP API, plainly: not the client that attached the documents."""
    headers = {"Accept": accept} if accept else {}
    response = httpx.get(f"http://{registry}/v2/{path}", headers=headers, auth=auth, timeout=30, follow_redirects=True)
    response.raise_for_status()
    return response


def _documents(released) -> dict[str, tuple[dict, bytes]]:
    """Per kind, the artifact manifest and the document, found through the sha256-<hex> index."""
    registry, repo = _name(released)
    index = _api(
        registry, f"{repo}/manifests/{released['digest'].replace(':', '-')}", "application/vnd.oci.image.index.v1+json"
    ).json()
    found = {}
    for entry in index["manifests"]:
        manifest = _api(registry, f"{repo}/manifests/{entry['digest']}", entry["mediaType"]).json()
        [layer] = manifest["layers"]
        blob = _api(registry, f"{repo}/blobs/{layer['digest']}").content
        assert "sha256:" + hashlib.sha256(blob).hexdigest() == layer["digest"]
        found[{v: k for k, v in TYPES.items()}[entry["artifactType"]]] = (manifest, blob)
    return found


def test_sbom_and_provenance_are_attached_to_the_released_digest(released):
    documents = _documents(released)
    assert set(documents) == {"sbom", "provenance"}
    for kind, (manifest, blob) in documents.items():
        assert manifest["subject"]["digest"] == released["digest"]
        assert manifest["artifactType"] == TYPES[kind]
        recorded = released["attestations"][kind]
        assert hashlib.sha256(blob).hexdigest() == recorded["sha256"]
        assert recorded["listed_by"] == "tag"  # Debian's distribution registry has no referrers API


def test_skopeo_finds_the_artifacts_by_their_tags(released):
    registry, repo = _name(released)
    tag = released["digest"].replace(":", "-")
    for kind in ("sbom", "provenance"):
        out = subprocess.run(
            ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{registry}/{repo}:{tag}.{kind}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        manifest = json.loads(out.stdout)
        assert manifest["subject"]["digest"] == released["digest"]
        assert manifest["layers"][0]["mediaType"] == TYPES[kind]


def test_sbom_lists_what_is_inside_the_image(released, docker_client):
    _, blob = _documents(released)["sbom"]
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(blob.decode()) is None
    sbom = json.loads(blob)
    assert sbom["metadata"]["component"]["hashes"][0]["content"] == released["image_id"].split(":", 1)[1]
    packages = {}
    for component in sbom["components"]:
        url = PackageURL.from_string(component["purl"])
        packages.setdefault((url.type, url.name), []).append((url.version, component))
    # FlagScale in its venv, the engine from Debian, pinned as the labels say
    [(version, component)] = packages[("pypi", "flag-scale")]
    assert version == "0.8.0"
    assert {"name": "flagrelease:python-environment", "value": "/opt/flagscale"} in component["properties"]
    assert [v for v, _ in packages[("deb", "llama.cpp-tools")]] == ["1:0.7.0+dfsg-2"]
    # everything else that is installed, read from the image's dpkg database and venv
    dpkg = docker_client.containers.run(
        released["image_id"],
        ["dpkg-query", "-W", "-f", "${Package}\n"],
        entrypoint=[],
        remove=True,
        network_disabled=True,
    )
    assert {n for t, n in packages if t == "deb"} == set(dpkg.decode().split())
    assert ("pypi", "hydra-core") in packages and ("pypi", "flag-gems") not in packages


def test_provenance_says_how_the_digest_was_made(released, docker_client):
    _, blob = _documents(released)["provenance"]
    statement = json.loads(blob)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    [subject] = statement["subject"]
    assert subject == {"name": released["repository"], "digest": {"sha256": released["digest"].split(":")[1]}}
    build = statement["predicate"]["buildDefinition"]
    assert build["externalParameters"]["model"] == "tiny-llama" and build["externalParameters"]["chip"] == "cpu"
    deps = {d["name"]: d["digest"] for d in build["resolvedDependencies"]}
    assert deps[str(ROOT / "matrix.yaml")] == {
        "sha256": hashlib.sha256((ROOT / "matrix.yaml").read_bytes()).hexdigest()
    }
    template = ROOT / "dockerfiles" / "cpu.Dockerfile.j2"
    assert deps[str(template)] == {"sha256": hashlib.sha256(template.read_bytes()).hexdigest()}
    base_id = docker_client.images.get("flagrelease/debian-minbase:sid").id
    assert deps["flagrelease/debian-minbase:sid"] == {"sha256": base_id.split(":")[1]}
    # The work tree's commit when the session released (HEAD, or an ancestor if a commit came since).
    commit = deps["source"]["gitCommit"]
    assert subprocess.run(["git", "-C", str(ROOT), "merge-base", "--is-ancestor", commit, "HEAD"]).returncode == 0
    run = statement["predicate"]["runDetails"]
    assert run["builder"]["version"]["dockerd"] == docker_client.version()["Version"]
    assert run["metadata"]["invocationId"] == released["run_id"]
    assert run["metadata"]["startedOn"] < run["metadata"]["finishedOn"]
    gate = next(b for b in run["byproducts"] if b["name"] == "gate")
    assert gate["annotations"]["verdict"] == released["gate"]["verdict"] and gate["annotations"]["release"] is True
    sbom = next(b for b in run["byproducts"] if b["name"] == "sbom")
    assert sbom["digest"]["sha256"] == released["attestations"]["sbom"]["sha256"]


def test_documents_are_stored_with_the_record_and_listed(released, fr_home, s3):
    ref = f"{released['repository']}@{released['digest']}"
    shown = run_cli("releases", "show", ref, home=fr_home, extra_env=s3["env"])
    assert shown.returncode == 0, shown.stderr
    shown_json = json.loads(shown.stdout)
    assert (
        shown_json["files"]["sbom"] == "sbom.cdx.json" and shown_json["files"]["provenance"] == "provenance.intoto.json"
    )
    for kind, where in shown_json["supply_chain"].items():
        local = (fr_home / "results" / where["file"].split("/results/", 1)[1]).read_bytes()
        assert hashlib.sha256(local).hexdigest() == released["attestations"][kind]["sha256"]
        key = where["s3"].removeprefix(f"s3://{S3_BUCKET}/")
        assert s3["client"].get_object(Bucket=S3_BUCKET, Key=key)["Body"].read() == local
        assert where["artifact"] == f"{released['repository']}@{released['attestations'][kind]['manifest_digest']}"
        assert where["referrers"] == f"{released['repository']}:{released['digest'].replace(':', '-')}"
    card = Path(released["card"]).read_text()
    assert released["attestations"]["sbom"]["manifest_digest"] in card
    assert released["attestations"]["provenance"]["manifest_digest"] in card
    assert f"flagrelease verify {released['repository']}:{released['tags'][0]}" in card


def test_the_session_credentials_are_in_neither_document(released):
    for _, blob in _documents(released).values():
        assert ACCESS_KEY.encode() not in blob and SECRET_KEY.encode() not in blob


def test_verify_passes_for_the_release(released, fr_home, s3):
    for ref in (f"{released['repository']}:{released['tags'][0]}", f"{released['repository']}@{released['digest']}"):
        proc = run_cli("verify", ref, "--json", home=fr_home, extra_env=s3["env"])
        assert proc.returncode == 0, proc.stdout + proc.stderr
        report = json.loads(proc.stdout)
        assert report["passed"] and report["digest"] == released["digest"]
        names = [c["name"] for c in report["checks"]]
        assert names[:4] == ["digest", "labels", "sbom", "provenance"]
        assert {"sbom: flagscale", "sbom: flaggems", "sbom: engine (llama_cpp)", "provenance: subject", "card"} <= set(
            names
        )
    table = run_cli("verify", f"{released['repository']}:latest", home=fr_home, extra_env=s3["env"])
    assert table.returncode == 0 and "FAIL" not in table.stdout and "every check passed" in table.stdout


def test_verify_refuses_bad_references(released, fr_home):
    bad = run_cli("verify", "flagrelease/no-registry:latest", home=fr_home)
    assert bad.returncode == 2 and "REF" in bad.stderr and "Traceback" not in bad.stderr
    unknown = run_cli("verify", f"{released['repository']}:2001010000", home=fr_home)
    assert unknown.returncode == 2 and "no release" in unknown.stderr and "Traceback" not in unknown.stderr


@pytest.fixture(scope="module")
def scratch(registry, tmp_path_factory):
    """A copy of the session registry's storage, served by its own registry with htpasswd auth."""
    root = tmp_path_factory.mktemp("scratch-registry")
    shutil.copytree(registry.root / "data", root / "data")
    htpasswd = root.parent / f"{root.name}.htpasswd"
    out = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], capture_output=True, text=True, check=True)
    htpasswd.write_text(out.stdout)
    reg = LocalRegistry(root, free_port(), htpasswd=htpasswd).start()
    yield reg
    reg.stop()


@pytest.fixture
def scratch_login(tmp_path):
    return {
        "FLAGRELEASE_REGISTRY_USERNAME": USER,
        "FLAGRELEASE_REGISTRY_PASSWORD": PASSWORD,
        "DOCKER_CONFIG": str(tmp_path / "docker-config"),
    }


def _run_dir(fr_home, released):
    return fr_home / "results" / "tiny-llama--cpu" / released["run_id"]


def test_verify_fails_when_the_release_tag_is_moved(released, fr_home, scratch, scratch_login, docker_client):
    _, repo = _name(released)
    ref = f"{scratch.address}/{repo}:{released['tags'][0]}"
    run_dir = str(_run_dir(fr_home, released))
    copy = run_cli("verify", ref, "--record", run_dir, "--json", home=fr_home, extra_env=scratch_login)
    assert copy.returncode == 0, copy.stdout + copy.stderr  # a faithful mirror verifies

    # Tamper: the same image with one pin label changed, pushed under the release tag.
    dockerfile = f"FROM {released['image_id']}\nLABEL org.flagos.flagscale=9.9.9\n"
    tampered, _ = docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), rm=True)
    try:
        tampered.tag(f"{scratch.address}/{repo}", released["tags"][0])
        creds = RegistryCredentials(username=USER, password=PASSWORD, source="test")
        moved = docker_engine.push(docker_client, f"{scratch.address}/{repo}", released["tags"][0], creds, print)
        assert moved != released["digest"]
        proc = run_cli("verify", ref, "--record", run_dir, "--json", home=fr_home, extra_env=scratch_login)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        report = json.loads(proc.stdout)
        failed = {c["name"]: c["detail"] for c in report["checks"] if not c["passed"]}
        assert report["digest"] == moved and not report["passed"]
        assert released["digest"] in failed["digest"]
        assert "org.flagos.flagscale: want '0.8.0', has '9.9.9'" in failed["labels"]
        assert {"sbom", "provenance", "card"} <= set(failed)  # nothing is attached to the new digest
        table = run_cli("verify", ref, "--record", run_dir, home=fr_home, extra_env=scratch_login)
        assert table.returncode == 1 and "NOT verified: digest, labels" in table.stdout
    finally:
        docker_client.images.remove(tampered.id, force=True)


def test_secrets_reach_neither_document(
    released, fr_home, scratch, scratch_login, docker_client, s3, monkeypatch, tmp_path
):
    """The attest step for real (inside registry auth, S3 keys, a pip index URL and an apt mirror
    with credentials all set): no secret in the SBOM or the provenance."""
    nonce = uuid.uuid4().hex
    pip_url = f"https://pipuser:pip-token-{nonce}@pypi.example.com/simple"
    apt_url = f"http://aptuser:apt-pw-{nonce}@deb.example.com/debian"
    env = s3["env"] | scratch_login
    env |= {"FLAGRELEASE_PIP_INDEX_URL": pip_url, "FLAGRELEASE_APT_MIRROR": apt_url, "FLAGRELEASE_HOME": str(fr_home)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    matrix = load_matrix(ROOT / "matrix.yaml")
    [cell] = select(matrix, chip="cpu", model="tiny-llama")
    record = ReleaseRecord.load(_run_dir(fr_home, released))
    ctx = render.render_context(cell, matrix, settings.build, tmp_path / "ctx")
    assert record.base is not None and record.image is not None
    inputs = provenance.build_inputs(
        docker_client,
        ROOT / "matrix.yaml",
        matrix,
        cell,
        ctx,
        record.base,
        {"registry": scratch.address},
        settings.build,
    )
    run_dir = tmp_path / "run"
    probe = {docker_engine.OWNER_LABEL: nonce}
    sbom_doc = attest.make_sbom(docker_client, record.image, matrix.release.sbom, run_dir, labels=probe)
    record.attestations = {"sbom": sbom_doc}
    _, repo = _name(released)
    attached = attest.attach_documents(scratch.address, repo, released["digest"], run_dir, record, inputs, print)
    assert all(a.manifest_digest for a in attached.values())
    texts = [(run_dir / a.file).read_text() for a in attached.values()]
    for secret in (PASSWORD, ACCESS_KEY, SECRET_KEY, f"pip-token-{nonce}", f"apt-pw-{nonce}", "pipuser", "aptuser"):
        assert all(secret not in text for text in texts), secret
    build = json.loads(texts[1])["predicate"]["buildDefinition"]["externalParameters"]["build"]
    assert build["apt_mirror"] == "http://deb.example.com/debian" and build["pip_index_url"] == provenance.SECRET
    assert docker_engine.containers_owned_by(docker_client, nonce) == []  # the SBOM probe is gone


def test_a_probe_that_hangs_is_stopped_and_removed(released, docker_client):
    owner = uuid.uuid4().hex
    with pytest.raises(ServiceError, match="did not finish in 2 s"):
        docker_engine.run_to_completion(
            docker_client, released["image_id"], "sleep 60", labels={docker_engine.OWNER_LABEL: owner}, timeout_s=2
        )
    assert docker_engine.containers_owned_by(docker_client, owner) == []


def test_a_set_member_is_attested_when_staged_and_a_roll_back_removes_only_its_documents(
    released, fr_home, docker_client, tmp_path, monkeypatch
):
    """A member of a multi-arch set is attested on the host that has the image, when it is
    staged: promotion keeps the documents on the digest (the release tag gets that digest);
    a set rolled back takes its own documents away and leaves an earlier release's alone."""
    monkeypatch.setenv("FLAGRELEASE_HOME", str(fr_home))
    reg = LocalRegistry(tmp_path / "registry", free_port()).start()
    try:
        settings = load_settings()
        matrix = load_matrix(ROOT / "matrix.yaml")
        [cell] = select(matrix, chip="cpu", model="tiny-llama")
        record = ReleaseRecord.load(_run_dir(fr_home, released))
        assert record.base is not None and record.image is not None
        ctx = render.render_context(cell, matrix, settings.build, tmp_path / "ctx")
        parameters = {"registry": reg.address, "set_member": True}
        inputs = provenance.build_inputs(
            docker_client, ROOT / "matrix.yaml", matrix, cell, ctx, record.base, parameters, settings.build
        )
        _, repo = _name(released)

        def stage(run_id: str, tag: str) -> tuple[publish.StagedImage, dict]:
            run_dir = tmp_path / run_id
            member = record.model_copy(update={"run_id": run_id})
            labels = {docker_engine.OWNER_LABEL: run_id}
            member.attestations = {
                "sbom": attest.make_sbom(docker_client, record.image, matrix.release.sbom, run_dir, labels=labels)
            }
            attached: dict = {}

            def attach(digest: str) -> list[str]:
                attached.update(attest.attach_documents(reg.address, repo, digest, run_dir, member, inputs, print))
                return [a.manifest_digest for a in attached.values()]

            item = publish.PublishItem(image_id=released["image_id"], repository=repo, tag=tag, aliases=[])
            return publish.stage(docker_client, item, reg.address, on_line=print, attach=attach), attached

        def runs_attached(api) -> list[str]:
            return sorted(
                (r.get("annotations") or {}).get("org.flagos.release-run", "")
                for r in api.referrers(repo, released["digest"])
            )

        first, attached = stage("set-run-1", "9912312357")
        assert first.digest == released["digest"] and len(first.artifacts) == 2
        assert {a.listed_by for a in attached.values()} == {"tag"}
        [promoted] = publish.promote_set([first], reg.address, on_line=print)
        with RegistryClient(reg.address) as api:
            assert api.manifest_digest(repo, "9912312357") == promoted.digest == first.digest
            assert runs_attached(api) == ["set-run-1", "set-run-1"]

        second, _ = stage("set-run-2", "9912312356")
        with RegistryClient(reg.address) as api:
            assert runs_attached(api) == ["set-run-1", "set-run-1", "set-run-2", "set-run-2"]
        # The manifest stays: the first set's release tag (and its staging tag) point at it.
        [left] = publish.discard_staged([second], reg.address, on_line=print)
        assert left.startswith(f"{repo}:staging-9912312356 ({second.digest} is also tagged ")
        assert "9912312357" in left
        with RegistryClient(reg.address) as api:
            assert runs_attached(api) == ["set-run-1", "set-run-1"]
            for digest in second.artifacts:
                assert api.manifest_document(repo, digest) is None
            assert api.manifest_digest(repo, "9912312357") == first.digest  # the release stands
    finally:
        reg.stop()
