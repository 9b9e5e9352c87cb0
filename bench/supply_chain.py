"""What the supply chain adds to a release: the SBOM probe and the attaching of both documents,
against the push of the same image, measured in the same run.

Per repeat, on a registry of its own (Debian's docker-registry on 127.0.0.1, fresh storage, so
the push is a cold one, as a first release is):

  push     `docker push` of the released cpu image (docker_engine.push) and the digest read back
  sbom     steps/sbom.py: the probe container (no network, removed) + CycloneDX JSON on the host
  attach   both documents attached to the digest (oras-py blobs + artifact manifests, the
           sha256-<hex> referrers index): the SBOM and a provenance statement of the real
           shape (steps/provenance.statement over the image's record-like facts)

The ratio (sbom + attach) / push is computed within each repeat; the table gives median
[min-max]. The image is the newest local `flagrelease/flagrelease-cpu-release-*` one (or
--image).

    .venv/bin/python bench/supply_chain.py --repeats 5 --json /tmp/supply_chain.json
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flagrelease.adapters import docker_engine, oci_artifacts  # noqa: E402
from flagrelease.adapters.local_registry import LocalRegistry  # noqa: E402
from flagrelease.adapters.registry_auth import RegistryCredentials  # noqa: E402
from flagrelease.matrix import load_matrix  # noqa: E402
from flagrelease.provenance import BuildInputs  # noqa: E402
from flagrelease.record import ReleaseRecord  # noqa: E402
from flagrelease.results import ImageRef  # noqa: E402
from flagrelease.steps import provenance, sbom  # noqa: E402
from flagrelease.supply_chain import MEDIA_TYPES  # noqa: E402

REPOSITORY = "flagrelease-bench/supply-chain"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def newest_cpu_image(client) -> str:
    images = [i for i in client.images.list() if any("flagrelease-cpu-release-" in t for t in i.tags)]
    if not images:
        sys.exit("no local flagrelease-cpu-release-* image: release the cpu cell first, or pass --image")
    return max(images, key=lambda i: i.attrs["Created"]).id


def one_repeat(client, image_id: str, work: Path) -> dict[str, float]:
    registry = LocalRegistry(work / "registry", free_port()).start()
    try:
        remote = f"{registry.address}/{REPOSITORY}"
        docker_engine.tag(client, image_id, remote, "bench")
        started = time.perf_counter()
        digest = docker_engine.push(client, remote, "bench", RegistryCredentials(), lambda line: None)
        push = time.perf_counter() - started
        client.images.remove(f"{remote}:bench", noprune=True)

        sources = load_matrix(ROOT / "matrix.yaml").release.sbom
        image = ImageRef(image_id=image_id, repository=remote, tag="bench", labels={}, reused=True, seconds=0)
        started = time.perf_counter()
        owner = {docker_engine.OWNER_LABEL: "bench-supply-chain"}
        inventory = sbom.read_inventory(client, image_id, sources, labels=owner)
        (work / "sbom.cdx.json").write_text(sbom.sbom_json(inventory, image))
        sbom_s = time.perf_counter() - started

        record = ReleaseRecord(
            run_id="bench", started=datetime.now(UTC), cell="bench", model="tiny-llama", chip="cpu", status="released"
        )
        inputs = BuildInputs(
            matrix_path=str(ROOT / "matrix.yaml"),
            matrix_sha256="0" * 64,
            template_path="cpu.Dockerfile.j2",
            template_sha256="0" * 64,
            stack_context_sha256="0" * 64,
            model_context_sha256="0" * 64,
            base_ref="flagrelease/debian-minbase:sid",
            base_image_id=image_id,
            dockerd=docker_engine.engine_version(client),
        )
        statement = provenance.statement(record, inputs, registry.address, REPOSITORY, digest, "0" * 64)
        (work / "provenance.intoto.json").write_text(statement.to_json())
        started = time.perf_counter()
        for kind, name in (("sbom", "sbom.cdx.json"), ("provenance", "provenance.intoto.json")):
            oci_artifacts.attach(
                registry.address, RegistryCredentials(), REPOSITORY, digest, work / name, MEDIA_TYPES[kind], kind, {}
            )
        attach = time.perf_counter() - started
        return {
            "push_s": push,
            "sbom_s": sbom_s,
            "attach_s": attach,
            "ratio": (sbom_s + attach) / push,
            "packages": len(inventory.packages),
            "sbom_bytes": (work / "sbom.cdx.json").stat().st_size,
            "provenance_bytes": (work / "provenance.intoto.json").stat().st_size,
        }
    finally:
        registry.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--image", help="image id or reference (default: the newest local cpu release)")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    client = docker_engine.connect()
    image_id = client.images.get(args.image).id if args.image else newest_cpu_image(client)
    runs = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(one_repeat(client, image_id, Path(tmp)))
    print(f"{platform.node()} {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, image {image_id[:19]}, {args.repeats} repeats")
    print("| measure | median [min-max] |\n| --- | --- |")
    for key in ("push_s", "sbom_s", "attach_s", "ratio"):
        values = [r[key] for r in runs]
        print(f"| {key} | {statistics.median(values):.3f} [{min(values):.3f}-{max(values):.3f}] |")
    first = runs[0]
    print(
        f"{first['packages']} packages; SBOM {first['sbom_bytes']} bytes, provenance {first['provenance_bytes']} bytes"
    )
    if args.json:
        args.json.write_text(json.dumps({"image": image_id, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
