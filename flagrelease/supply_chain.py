"""What is inside a released image, and whether it is what the record pinned: pure decisions.

An image's inventory is read from inside it (steps/sbom.py runs a short-lived container
that prints every Python environment's distributions, the dpkg/rpm database and the vendor
SDK version files, in sections this module parses). `verify` compares the packages the SBOM
lists with the record's pins; `Check` is one line of its PASS/FAIL table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Literal

from packageurl import PackageURL
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel

from flagrelease.schema import NONE, VersionFile

Ecosystem = Literal["pypi", "deb", "rpm", "vendor"]

SBOM_KIND = "sbom"
PROVENANCE_KIND = "provenance"
# The documents' media types: what the OCI artifacts' artifactType says they are.
MEDIA_TYPES = {
    SBOM_KIND: "application/vnd.cyclonedx+json",
    PROVENANCE_KIND: "application/vnd.in-toto+json",
}
FILES = {SBOM_KIND: "sbom.cdx.json", PROVENANCE_KIND: "provenance.intoto.json"}
# CycloneDX component properties: the Python environment of a distribution, the file a
# vendor SDK's version was read from, the image id of the image the SBOM describes.
ENVIRONMENT_PROPERTY = "flagrelease:python-environment"
VERSION_FILE_PROPERTY = "flagrelease:version-file"
IMAGE_ID_PROPERTY = "flagrelease:image-id"

# Pins whose versions the SBOM must show, and the package each one names there. The
# engine's pin is the one named by ENGINE_PINS; `pkg_*` pins name their package themselves.
PIN_PACKAGES: dict[str, tuple[Ecosystem, str]] = {
    "flagscale": ("pypi", "flag-scale"),
    "flaggems": ("pypi", "flag-gems"),
    "torch": ("pypi", "torch"),
    "torch_npu": ("pypi", "torch-npu"),
    "vllm_fl": ("pypi", "vllm-fl"),  # vllm-plugin-FL (0.1.0+vllm0.23.0 is the pin 0.1.0)
}
ENGINE_PINS: dict[str, str] = {"vllm": "vllm", "llama_cpp": "pkg_llama_cpp_tools"}
ENGINE_PACKAGES: dict[str, tuple[Ecosystem, str]] = {"vllm": ("pypi", "vllm")}


class Package(BaseModel):
    """One installed package, as found inside the image."""

    ecosystem: Ecosystem
    name: str
    version: str
    arch: str | None = None
    environment: str | None = None  # a Python distribution's sys.prefix; a vendor file's path
    source: str | None = None  # a Debian binary package's source package


class Inventory(BaseModel):
    os_id: str = "unknown"  # /etc/os-release ID, e.g. debian, ubuntu, openeuler
    os_version: str | None = None
    packages: list[Package]


class Check(BaseModel):
    """One line of `flagrelease verify`: what was checked, whether it held, and why not."""

    name: str
    passed: bool
    detail: str


# --- the probe's output ---------------------------------------------------------------


def parse_probe(text: str, marker: str, version_files: Sequence[VersionFile]) -> Inventory:
    """The inventory from the probe's stdout: sections `<marker> KIND [ARG]` then their lines."""
    sections: list[tuple[str, str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith(marker + " "):
            kind, _, arg = line[len(marker) + 1 :].partition(" ")
            sections.append((kind, arg, []))
        elif sections:
            sections[-1][2].append(line)
    packages: list[Package] = []
    os_release: dict[str, str] = {}
    files = {f.path: f for f in version_files}
    for kind, arg, lines in sections:
        if kind == "python":
            packages += _python_packages(lines)
        elif kind == "dpkg":
            packages += parse_dpkg_status("\n".join(lines))
        elif kind == "rpm":
            packages += _rpm_packages(lines)
        elif kind == "os-release":
            os_release = _key_values(lines)
        elif kind == "file" and arg in files:
            found = vendor_version(files[arg], "\n".join(lines))
            if found is not None:
                packages.append(found)
    return Inventory(
        os_id=os_release.get("ID", "unknown"), os_version=os_release.get("VERSION_ID"), packages=_unique(packages)
    )


def _python_packages(lines: Iterable[str]) -> list[Package]:
    found = []
    for line in lines:
        try:
            dist = json.loads(line)
        except ValueError:
            continue  # an interpreter's own noise (a warning on stdout)
        if isinstance(dist, dict) and dist.get("name") and dist.get("version"):
            found.append(
                Package(
                    ecosystem="pypi",
                    name=normalize(str(dist["name"])),
                    version=str(dist["version"]),
                    environment=str(dist.get("prefix") or ""),
                )
            )
    return found


def parse_dpkg_status(text: str) -> list[Package]:
    """Installed packages of a dpkg status database (deb822 paragraphs)."""
    found = []
    for paragraph in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in paragraph.splitlines():
            if line[:1] in (" ", "\t") or ":" not in line:
                continue  # a continuation line (Description, Conffiles)
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
        if fields.get("Package") and fields.get("Version") and fields.get("Status", "").endswith(" installed"):
            found.append(
                Package(
                    ecosystem="deb",
                    name=fields["Package"],
                    version=fields["Version"],
                    arch=fields.get("Architecture"),
                    source=fields.get("Source", "").split(" ")[0] or None,
                )
            )
    return found


def _rpm_packages(lines: Iterable[str]) -> list[Package]:
    """`rpm -qa --qf '%{NAME}\\t%{EPOCHNUM}\\t%{VERSION}-%{RELEASE}\\t%{ARCH}\\n'` lines."""
    found = []
    for line in lines:
        parts = line.split("\t")
        if len(parts) == 4:
            name, epoch, version, arch = parts
            full = f"{epoch}:{version}" if epoch not in ("", "0") else version
            found.append(Package(ecosystem="rpm", name=name, version=full, arch=arch))
    return found


def vendor_version(spec: VersionFile, text: str) -> Package | None:
    """The vendor SDK component a version file names, or None when the file holds no version."""
    version: object = None
    if spec.format == "json":
        try:
            version = json.loads(text)
        except ValueError:
            return None
        for key in spec.key.split("."):
            version = version.get(key) if isinstance(version, dict) else None
    else:
        version = _key_values(text.splitlines()).get(spec.key)
    if not isinstance(version, str) or not version:
        return None
    return Package(ecosystem="vendor", name=spec.component, version=version, environment=spec.path)


def _key_values(lines: Iterable[str]) -> dict[str, str]:
    pairs = (line.partition("=") for line in lines)
    return {k.strip(): v.strip().strip('"') for k, sep, v in pairs if sep}


def _unique(packages: list[Package]) -> list[Package]:
    """Once per (ecosystem, name, version, environment): interpreters that share a prefix report it twice."""
    seen: dict[tuple, Package] = {}
    for p in packages:
        seen.setdefault((p.ecosystem, p.name, p.version, p.environment), p)
    return sorted(seen.values(), key=lambda p: (p.ecosystem, p.name, p.environment or "", p.version))


def normalize(name: str) -> str:
    """PEP 503 name normalization (what purls of pkg:pypi use)."""
    return re.sub(r"[-_.]+", "-", name).lower()


# --- pins against the SBOM --------------------------------------------------------------


def expected_packages(pins: dict[str, str]) -> dict[str, tuple[Ecosystem | None, str, str]]:
    """Per pin the SBOM must bear out: (ecosystem or None for any, package name, pinned version)."""
    expected: dict[str, tuple[Ecosystem | None, str, str]] = {}
    for pin, (ecosystem, name) in PIN_PACKAGES.items():
        if pin in pins:
            expected[pin] = (ecosystem, name, pins[pin])
    engine = pins.get("engine", NONE)
    engine_pin = ENGINE_PINS.get(engine)
    if engine_pin in pins:
        ecosystem_name = ENGINE_PACKAGES.get(engine)
        name = ecosystem_name[1] if ecosystem_name else engine_pin.removeprefix("pkg_")
        expected[f"engine ({engine})"] = (ecosystem_name[0] if ecosystem_name else None, name, pins[engine_pin])
    for pin, version in pins.items():
        if pin.startswith("pkg_") and pin != engine_pin:
            expected[pin] = (None, pin.removeprefix("pkg_"), version)
    return expected


def check_pins(pins: dict[str, str], packages: Sequence[Package]) -> list[Check]:
    """One check per pinned component: the SBOM lists it at the pinned version in every
    environment it is in; a `none` pin: the SBOM does not list it."""
    checks = []
    for pin, (ecosystem, name, version) in expected_packages(pins).items():
        found = [p for p in packages if _same_package(p, ecosystem, name)]
        if version == NONE:
            passed = not found
            detail = "absent, as pinned" if passed else f"pinned none, but installed: {_listing(found)}"
        elif not found:
            passed, detail = False, f"{name} {version} is pinned but not in the SBOM"
        else:
            wrong = [p for p in found if not versions_match(version, p)]
            passed = not wrong
            detail = f"{found[0].name} {version}" if passed else f"{name} pinned {version}, SBOM has {_listing(wrong)}"
        checks.append(Check(name=pin, passed=passed, detail=detail))
    return checks


def _same_package(package: Package, ecosystem: Ecosystem | None, name: str) -> bool:
    if ecosystem is not None and package.ecosystem != ecosystem:
        return False
    # `pkg_*` pins spell names with `_` for `-` and `.` (llama.cpp-tools -> llama_cpp_tools).
    return normalize(package.name) == normalize(name)


def versions_match(pinned: str, package: Package) -> bool:
    """Python versions compare as PEP 440 public versions (torch 2.6.0 is 2.6.0+cpu);
    Debian/RPM versions exactly, a pin without an epoch matching any epoch."""
    if package.ecosystem == "pypi":
        try:
            installed, wanted = Version(package.version), Version(pinned)
        except InvalidVersion:
            return package.version == pinned
        return installed == wanted or (wanted.local is None and Version(installed.public) == wanted)
    if package.version == pinned:
        return True
    return ":" not in pinned and package.version.partition(":")[2] == pinned


def _listing(packages: Sequence[Package]) -> str:
    return ", ".join(f"{p.version} ({p.ecosystem}{' in ' + p.environment if p.environment else ''})" for p in packages)


def pin_labels_differ(expected: dict[str, str], labels: dict[str, str]) -> list[str]:
    """The expected labels the image config lacks or spells differently, as 'key: want X, has Y'."""
    return [
        f"{key}: want {want!r}, has {labels.get(key)!r}" for key, want in expected.items() if labels.get(key) != want
    ]


def summary(checks: Sequence[Check]) -> bool:
    """Every check passed."""
    return all(c.passed for c in checks)


_PURL_ECOSYSTEMS: dict[str, Ecosystem] = {"pypi": "pypi", "deb": "deb", "rpm": "rpm", "generic": "vendor"}


def packages_from_cyclonedx(document: dict) -> list[Package]:
    """The packages a CycloneDX document lists, by their purls; components without one are skipped."""
    found = []
    for component in document.get("components") or []:
        try:
            url = PackageURL.from_string(str(component.get("purl") or ""))
        except ValueError:
            continue
        ecosystem = _PURL_ECOSYSTEMS.get(url.type)
        if ecosystem is None or not url.version:
            continue
        properties = {p.get("name"): p.get("value") for p in component.get("properties") or []}
        qualifiers = url.qualifiers if isinstance(url.qualifiers, dict) else {}
        found.append(
            Package(
                ecosystem=ecosystem,
                name=url.name,
                version=url.version,
                arch=qualifiers.get("arch"),
                environment=properties.get(ENVIRONMENT_PROPERTY) or properties.get(VERSION_FILE_PROPERTY),
            )
        )
    return found


class Attestation(BaseModel):
    """An SBOM or provenance document of a release: its file beside release.json and, once
    attached, the OCI artifact in the registry whose subject is the released image."""

    kind: Literal["sbom", "provenance"]
    file: str
    media_type: str
    sha256: str  # of the document's bytes
    manifest_digest: str | None = None  # the artifact's manifest, once attached
    listed_by: Literal["api", "tag"] | None = None  # the registry's referrers API, or the sha256-<hex> index


def locations(
    attestations: dict[str, Attestation],
    run_key: str,
    results_dir: str,
    s3_url: str | None,
    image: str | None,
    subject: str | None,
) -> dict[str, dict[str, str | None]]:
    """Where each document of a release is: the local file, its S3 copy, and the OCI artifact
    (`image@<artifact manifest>`) with the index that lists it when the registry has no
    referrers API. `run_key` is `<cell>/<run_id>`, the stores' layout."""
    found: dict[str, dict[str, str | None]] = {}
    for kind, doc in attestations.items():
        found[kind] = {
            "file": f"{results_dir}/{run_key}/{doc.file}",
            "s3": f"{s3_url.rstrip('/')}/{run_key}/{doc.file}" if s3_url else None,
            "artifact": f"{image}@{doc.manifest_digest}" if image and doc.manifest_digest else None,
            "referrers": (f"{image}:{subject.replace(':', '-', 1)}" if doc.listed_by == "tag" else "referrers API")
            if image and subject and doc.listed_by
            else None,
        }
    return found
