"""The supply chain's pure decisions: the probe's output, pins against an SBOM, the provenance
statement's shape, and each check of `flagrelease verify`."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest

from flagrelease.errors import ConfigError
from flagrelease.provenance import BuildInputs, Statement
from flagrelease.record import ReleaseRecord
from flagrelease.results import GateReport, ImageRef
from flagrelease.schema import SbomSources, VersionFile
from flagrelease.steps import provenance, sbom, verify
from flagrelease.supply_chain import (
    Attestation,
    Package,
    check_pins,
    locations,
    packages_from_cyclonedx,
    parse_dpkg_status,
    parse_probe,
    versions_match,
)

M = "@@marker"
CANN = VersionFile(
    path="/usr/local/Ascend/ascend-toolkit/latest/aarch64-linux/ascend_toolkit_install.info", component="cann-toolkit"
)
CUDA = VersionFile(path="/usr/local/cuda/version.json", component="cuda", format="json", key="cuda.version")
DPKG = """Package: llama.cpp-tools
Status: install ok installed
Architecture: amd64
Source: llama.cpp
Version: 1:0.7.0+dfsg-2
Description: LLM inference in C/C++
 continuation: not a field

Package: removed-one
Status: deinstall ok config-files
Version: 1.0

Package: python3.13
Status: install ok installed
Architecture: amd64
Version: 3.13.9-1
"""
PROBE = f"""noise before any section
{M} os-release
ID=debian
VERSION_ID="13"
{M} python /usr/bin/python3
{{"name": "pip", "version": "25.1", "prefix": "/usr"}}
a warning on stdout
{M} python /opt/flagscale/bin/python3
{{"name": "Flag_Scale", "version": "0.8.0", "prefix": "/opt/flagscale"}}
{{"name": "pip", "version": "25.1", "prefix": "/usr"}}
{M} dpkg
{DPKG}
{M} rpm
openssl-libs\t1\t3.0.7-27.el9\tx86_64
bash\t0\t5.1.8-9.el9\tx86_64
{M} file {CANN.path}
package_name=Ascend-cann-toolkit
version=8.2.RC1
{M} file {CUDA.path}
{{"cuda": {{"name": "CUDA SDK", "version": "12.8.1"}}}}
{M} file /not/asked/for
version=1
"""
PINS = {
    "flagscale": "0.8.0",
    "flaggems": "none",
    "torch": "2.6.0",
    "torch_npu": "2.6.0rc1",
    "engine": "llama_cpp",
    "pkg_llama_cpp_tools": "1:0.7.0+dfsg-2",
}


def pkg(ecosystem, name, version, environment=None):
    return Package(ecosystem=ecosystem, name=name, version=version, environment=environment)


def test_the_probe_output_becomes_an_inventory():
    inventory = parse_probe(PROBE, M, [CANN, CUDA])
    assert (inventory.os_id, inventory.os_version) == ("debian", "13")
    found = {(p.ecosystem, p.name, p.version, p.environment) for p in inventory.packages}
    assert found == {
        ("pypi", "pip", "25.1", "/usr"),  # listed by two interpreters of one prefix: once
        ("pypi", "flag-scale", "0.8.0", "/opt/flagscale"),  # PEP 503 name
        ("deb", "llama.cpp-tools", "1:0.7.0+dfsg-2", None),
        ("deb", "python3.13", "3.13.9-1", None),
        ("rpm", "openssl-libs", "1:3.0.7-27.el9", None),
        ("rpm", "bash", "5.1.8-9.el9", None),
        ("vendor", "cann-toolkit", "8.2.RC1", CANN.path),
        ("vendor", "cuda", "12.8.1", CUDA.path),
    }


def test_dpkg_keeps_installed_packages_only():
    [llama, python] = parse_dpkg_status(DPKG)
    assert (llama.name, llama.arch, llama.source) == ("llama.cpp-tools", "amd64", "llama.cpp")
    assert python.name == "python3.13"


def test_a_marker_in_the_images_output_needs_the_exact_marker():
    assert parse_probe(f"{M}x python /usr/bin/python3\n", M, []).packages == []


@pytest.mark.parametrize(
    ("pinned", "package", "match"),
    [
        ("2.6.0", pkg("pypi", "torch", "2.6.0+cpu"), True),  # a local build of the pinned release
        ("2.6.0+cpu", pkg("pypi", "torch", "2.6.0+cu121"), False),
        ("2.2", pkg("pypi", "flag-gems", "2.2.0"), True),
        ("2.6.0rc1", pkg("pypi", "torch-npu", "2.6.0"), False),
        ("2.5.1.post1", pkg("pypi", "torch-npu", "2.5.1"), False),
        ("1:0.7.0+dfsg-2", pkg("deb", "llama.cpp-tools", "1:0.7.0+dfsg-2"), True),
        ("0.7.0+dfsg-2", pkg("deb", "llama.cpp-tools", "1:0.7.0+dfsg-2"), True),
        ("1:0.7.0+dfsg-3", pkg("deb", "llama.cpp-tools", "1:0.7.0+dfsg-2"), False),
    ],
)
def test_versions_match(pinned, package, match):
    assert versions_match(pinned, package) is match


def test_pins_against_packages():
    packages = [
        pkg("pypi", "flag-scale", "0.8.0", "/opt/flagscale"),
        pkg("pypi", "torch", "2.6.0+cpu", "/opt/flagscale"),
        pkg("pypi", "torch", "2.5.1", "/usr"),  # a second environment with another torch
        pkg("deb", "llama.cpp-tools", "1:0.7.0+dfsg-2"),
    ]
    checks = {c.name: c for c in check_pins(PINS, packages)}
    assert set(checks) == {"flagscale", "flaggems", "torch", "torch_npu", "engine (llama_cpp)"}
    assert checks["flagscale"].passed and checks["flaggems"].passed and checks["engine (llama_cpp)"].passed
    assert not checks["torch"].passed and "2.5.1 (pypi in /usr)" in checks["torch"].detail
    assert not checks["torch_npu"].passed and "not in the SBOM" in checks["torch_npu"].detail
    gems = check_pins({"flaggems": "none"}, [pkg("pypi", "flag-gems", "4.2.0", "/opt/x")])
    assert not gems[0].passed and "pinned none" in gems[0].detail


def test_the_vllm_engine_is_checked_against_the_vllm_pin():
    checks = check_pins({"engine": "vllm", "vllm": "0.9.1"}, [pkg("pypi", "vllm", "0.9.2", "/usr")])
    by_name = {c.name: c for c in checks}
    assert not by_name["engine (vllm)"].passed and "0.9.2" in by_name["engine (vllm)"].detail


def _image():
    return ImageRef(
        image_id="sha256:" + "1" * 64, repository="r/x", tag="2612020000", labels={}, reused=False, seconds=0
    )


def test_the_sbom_round_trips_through_purls():
    inventory = parse_probe(PROBE, M, [CANN, CUDA])
    document = json.loads(sbom.sbom_json(inventory, _image()))
    assert document["bomFormat"] == "CycloneDX" and document["specVersion"] == "1.6"
    purls = {c["purl"] for c in document["components"]}
    assert "pkg:pypi/flag-scale@0.8.0" in purls
    assert "pkg:deb/debian/llama.cpp-tools@1:0.7.0%2Bdfsg-2?arch=amd64&distro=debian-13&upstream=llama.cpp" in purls
    assert "pkg:generic/cann-toolkit@8.2.RC1" in purls
    back = {(p.ecosystem, p.name, p.version, p.environment) for p in packages_from_cyclonedx(document)}
    assert back == {(p.ecosystem, p.name, p.version, p.environment) for p in inventory.packages}


def test_the_probe_script_names_only_the_configured_places():
    script = sbom.probe_script(SbomSources(interpreters=["/opt/*/bin/python3"], version_files=[CUDA]), M)
    assert "for py in /opt/*/bin/python3; do" in script and f"for f in {CUDA.path}; do" in script


def test_version_file_globs_may_not_reach_the_shell():
    with pytest.raises(ValueError):
        SbomSources(interpreters=["/usr/bin/python3; rm -rf /"])
    with pytest.raises(ValueError):
        VersionFile(path="/x/$(id)", component="x")


def _record() -> ReleaseRecord:
    return ReleaseRecord(
        run_id="20261202T000000Z-abcdef",
        started=datetime(2026, 12, 2, tzinfo=UTC),
        cell="tiny-llama--cpu",
        model="tiny-llama",
        chip="cpu",
        status="released",
        pins=PINS,
        gate=GateReport(verdict="PASS", release=True, reason="all held", accuracy=[], perf=[]),
    )


INPUTS = BuildInputs(
    matrix_path="/m/matrix.yaml",
    matrix_sha256="a" * 64,
    template_path="/m/dockerfiles/cpu.Dockerfile.j2",
    template_sha256="b" * 64,
    stack_context_sha256="c" * 64,
    model_context_sha256="d" * 64,
    base_ref="flagrelease/debian-minbase:sid",
    base_image_id="sha256:" + "e" * 64,
    git_commit="f" * 40,
    dockerd="20.10.24",
    parameters={"registry": "127.0.0.1:5000"},
)


def test_the_provenance_statement():
    digest = "sha256:" + "9" * 64
    finished = datetime(2026, 12, 2, 1, tzinfo=UTC)
    statement = provenance.statement(_record(), INPUTS, "127.0.0.1:5000", "flagrelease/x", digest, "5" * 64, finished)
    document = json.loads(statement.to_json())
    assert document["_type"] == "https://in-toto.io/Statement/v1"
    assert document["predicateType"] == "https://slsa.dev/provenance/v1"
    assert document["subject"] == [{"name": "127.0.0.1:5000/flagrelease/x", "digest": {"sha256": "9" * 64}}]
    deps = {d["name"]: d["digest"] for d in document["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert deps["/m/matrix.yaml"] == {"sha256": "a" * 64} and deps["source"] == {"gitCommit": "f" * 40}
    assert deps["flagrelease/debian-minbase:sid"] == {"sha256": "e" * 64}
    run = document["predicate"]["runDetails"]
    assert run["metadata"]["invocationId"] == "20261202T000000Z-abcdef"
    assert run["metadata"]["finishedOn"].startswith("2026-12-02T01:00:00")
    assert {"name": "gate", "annotations": {"verdict": "PASS", "release": True, "reason": "all held"}}.items() <= (
        next(b for b in run["byproducts"] if b["name"] == "gate").items()
    )
    assert Statement.model_validate_json(statement.to_json()).subject_digests() == [digest]


def test_build_settings_name_secrets_without_their_values():
    from pydantic import SecretStr

    from flagrelease.settings import BuildSettings

    build = BuildSettings(
        ca_bundle=None,
        pip_index_url=SecretStr("https://u:token-123@pypi.example.com/simple"),
        apt_mirror="http://u:pw-456@deb.example.com/debian",
        docker_cli="/usr/bin/docker",
    )
    text = json.dumps(provenance.build_settings(build))
    assert "token-123" not in text and "pw-456" not in text and "u:" not in text
    assert provenance.build_settings(build)["apt_mirror"] == "http://deb.example.com/debian"


# --- verify's checks -------------------------------------------------------------------

D = "sha256:" + "7" * 64
OTHER = "sha256:" + "8" * 64


@pytest.mark.parametrize(
    "ref",
    [
        "127.0.0.1:5000/flagrelease/x:latest",
        "localhost/x@" + D,
        "harbor.example.com/flagrelease/x:2612020000",
    ],
)
def test_references_with_their_registry_parse(ref):
    assert verify.parse_ref(ref).ref == ref


@pytest.mark.parametrize(
    "ref", ["flagrelease/x:latest", "127.0.0.1:5000/x", "127.0.0.1:5000/X:latest", "127.0.0.1:5000/x@sha256:12"]
)
def test_bad_references_are_config_errors(ref):
    with pytest.raises(ConfigError) as err:
        verify.parse_ref(ref)
    assert err.value.where == "REF" and "HOST[:PORT]/REPOSITORY:TAG" in (err.value.fix or "")


def test_digest_check():
    name = verify.parse_ref("127.0.0.1:5000/x:latest")
    assert verify.check_digest(name, D, D).passed
    moved = verify.check_digest(name, OTHER, D)
    assert not moved.passed and OTHER in moved.detail and D in moved.detail
    assert not verify.check_digest(name, None, D).passed


def test_labels_check_names_the_label():
    labels = {"org.flagos.flagscale": "0.8.0", "org.flagos.engine": "llama_cpp"}
    assert verify.check_labels({"flagscale": "0.8.0", "engine": "llama_cpp"}, labels).passed
    wrong = verify.check_labels({"flagscale": "0.9.0", "torch_npu": "2.6.0rc1"}, labels)
    assert not wrong.passed
    assert "org.flagos.flagscale: want '0.9.0', has '0.8.0'" in wrong.detail
    assert "org.flagos.torch-npu: want '2.6.0rc1', has None" in wrong.detail


def test_attached_check():
    doc = b'{"a": 1}'
    sha = hashlib.sha256(doc).hexdigest()
    manifest = {"subject": {"digest": D}}
    assert verify.check_attached("sbom", D, manifest, doc, sha).passed
    assert verify.check_attached("sbom", D, manifest, doc, None).passed  # a record from before attestations
    assert not verify.check_attached("sbom", D, None, None, sha).passed
    assert "not " + D in verify.check_attached("sbom", D, {"subject": {"digest": OTHER}}, doc, sha).detail
    assert "not the recorded one" in verify.check_attached("sbom", D, manifest, b"{}", sha).detail


def test_sbom_pin_checks_are_named_per_pin():
    document = json.dumps({"components": [{"purl": "pkg:pypi/flag-scale@0.8.1"}]}).encode()
    checks = {c.name: c.passed for c in verify.check_sbom_pins({"flagscale": "0.8.0"}, document)}
    assert checks == {"sbom: flagscale": False}
    assert not verify.check_sbom_pins({"flagscale": "0.8.0"}, b"not json")[0].passed


def test_provenance_check():
    statement = provenance.statement(_record(), INPUTS, "r", "x", D, None).to_json().encode()
    assert verify.check_provenance(statement, D, "20261202T000000Z-abcdef").passed
    assert "not " + OTHER in verify.check_provenance(statement, OTHER, "20261202T000000Z-abcdef").detail
    assert "made by run" in verify.check_provenance(statement, D, "another-run").detail
    assert not verify.check_provenance(b"{}", D, "x").passed


def test_card_check_reads_the_images_pull_references():
    card = f"docker pull 127.0.0.1:5000/flagrelease/x@{D}\nSBOM artifact `{OTHER}` in `127.0.0.1:5000/flagrelease/x`\n"
    assert verify.check_card(card, "flagrelease/x", D, "card.md").passed
    assert not verify.check_card(card, "flagrelease/x", OTHER, "card.md").passed
    assert not verify.check_card(None, "flagrelease/x", D, "card.md").passed
    assert not verify.check_card("no digest here", "flagrelease/x", D, "card.md").passed


def test_locations_of_the_documents():
    attestation = Attestation(
        kind="sbom", file="sbom.cdx.json", media_type="x", sha256="0", manifest_digest=OTHER, listed_by="tag"
    )
    where = locations({"sbom": attestation}, "c/r", "/home/results", "s3://b/p/", "reg/x", D)
    assert where["sbom"] == {
        "file": "/home/results/c/r/sbom.cdx.json",
        "s3": "s3://b/p/c/r/sbom.cdx.json",
        "artifact": f"reg/x@{OTHER}",
        "referrers": f"reg/x:{D.replace(':', '-')}",
    }
