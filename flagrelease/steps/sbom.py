"""SBOM step: a CycloneDX JSON inventory of a built image, read from inside the image.

A short-lived container of the image (no network, removed afterwards, bounded time) prints
the installed distributions of every Python environment it has (importlib.metadata over
each interpreter's sys.path, with the image's own environment such as PYTHONPATH), the
dpkg status database or the rpm database, /etc/os-release and the vendor SDK version files
the matrix names (`release.sbom`). The document is built on the host with
cyclonedx-python-lib, every package with its purl (pkg:pypi, pkg:deb, pkg:rpm, pkg:generic).

    inventory = read_inventory(client, image_id, matrix.release.sbom, owner=run_id)
    text = sbom_json(inventory, image)
"""

from __future__ import annotations

import uuid
from importlib.metadata import version as installed_version

from cyclonedx.contrib.hash.factories import HashTypeFactory
from cyclonedx.model import Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from flagrelease.adapters import docker_engine
from flagrelease.errors import ServiceError
from flagrelease.results import ImageRef
from flagrelease.schema import SbomSources
from flagrelease.supply_chain import (
    ENVIRONMENT_PROPERTY,
    IMAGE_ID_PROPERTY,
    VERSION_FILE_PROPERTY,
    Inventory,
    Package,
    parse_probe,
)

# One Python line per distribution; runs under any python3 >= 3.8 (no single quotes: it sits in sh '...').
_LIST_DISTRIBUTIONS = """
import json, sys
try:
    from importlib import metadata
except ImportError:
    sys.exit(0)
for d in metadata.distributions():
    name = d.metadata["Name"]
    if name:
        print(json.dumps({"name": name, "version": d.version, "prefix": sys.prefix}))
"""


def probe_script(sources: SbomSources, marker: str) -> str:
    """The sh script the container runs; every section starts with a line `<marker> KIND [ARG]`.

    The globs and paths are pattern-checked in the schema (no quotes, spaces or `$`)."""
    interpreters = " ".join(sources.interpreters)
    files = " ".join(f.path for f in sources.version_files)
    return f"""
M='{marker}'
echo "$M os-release"; cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release 2>/dev/null
for py in {interpreters}; do
  [ -x "$py" ] || continue
  echo "$M python $py"
  "$py" -c '{_LIST_DISTRIBUTIONS}' 2>/dev/null
done
if [ -f /var/lib/dpkg/status ]; then echo "$M dpkg"; cat /var/lib/dpkg/status; fi
if command -v rpm >/dev/null 2>&1; then
  echo "$M rpm"; rpm -qa --qf '%{{NAME}}\\t%{{EPOCHNUM}}\\t%{{VERSION}}-%{{RELEASE}}\\t%{{ARCH}}\\n' 2>/dev/null
fi
for f in {files}; do
  if [ -f "$f" ]; then echo "$M file $f"; head -c 65536 "$f"; echo; fi
done
exit 0
"""


def read_inventory(
    client, image: str, sources: SbomSources, *, labels: dict[str, str], timeout_s: float = 120
) -> Inventory:
    """Everything installed in `image`, listed from inside it."""
    marker = f"@@flagrelease-sbom-{uuid.uuid4().hex}"  # cannot occur in what the image prints
    code, out = docker_engine.run_to_completion(
        client, image, probe_script(sources, marker), labels=labels, timeout_s=timeout_s
    )
    if code != 0:
        raise ServiceError(f"the SBOM probe in {image} exited {code}", where=image, fix="the image needs /bin/sh")
    inventory = parse_probe(out, marker, sources.version_files)
    if not inventory.packages:
        raise ServiceError(
            f"the SBOM probe found no package in {image}",
            where=image,
            fix="add the image's Python interpreters to release.sbom.interpreters in matrix.yaml",
        )
    return inventory


def purl(package: Package, inventory: Inventory) -> PackageURL:
    if package.ecosystem == "pypi":
        return PackageURL(type="pypi", name=package.name, version=package.version)
    if package.ecosystem == "vendor":
        return PackageURL(type="generic", name=package.name, version=package.version)
    qualifiers = {"arch": package.arch} if package.arch else {}
    if inventory.os_version:
        qualifiers["distro"] = f"{inventory.os_id}-{inventory.os_version}"
    if package.ecosystem == "deb" and package.source and package.source != package.name:
        qualifiers["upstream"] = package.source
    return PackageURL(
        type=package.ecosystem,
        namespace=inventory.os_id,
        name=package.name,
        version=package.version,
        qualifiers=qualifiers,
    )


def sbom_json(inventory: Inventory, image: ImageRef) -> str:
    """The CycloneDX 1.6 JSON document of an image's inventory."""
    bom = Bom()
    root = Component(
        type=ComponentType.CONTAINER,
        name=image.repository,
        version=image.tag,
        hashes=[HashTypeFactory().from_composite_str(image.image_id)],
        properties=[Property(name=IMAGE_ID_PROPERTY, value=image.image_id)],
    )
    bom.metadata.component = root
    bom.metadata.tools.components.add(
        Component(type=ComponentType.APPLICATION, name="flagrelease", version=installed_version("flagrelease"))
    )
    components = []
    for package in inventory.packages:
        properties = []
        if package.ecosystem == "pypi" and package.environment:
            properties.append(Property(name=ENVIRONMENT_PROPERTY, value=package.environment))
        if package.ecosystem == "vendor" and package.environment:
            properties.append(Property(name=VERSION_FILE_PROPERTY, value=package.environment))
        url = purl(package, inventory)
        components.append(
            Component(
                type=ComponentType.FRAMEWORK if package.ecosystem == "vendor" else ComponentType.LIBRARY,
                name=package.name,
                version=package.version,
                purl=url,
                bom_ref=f"{url.to_string()}#{package.environment or ''}",
                properties=properties,
            )
        )
    for component in components:
        bom.components.add(component)
    bom.register_dependency(root, components)
    return JsonV1Dot6(bom).output_as_string(indent=2) + "\n"
