"""What a run of a cell can skip: nothing when its release key is released already, the
completed stages of a failed run of the same key otherwise.

Unchanged is decided by the registry, never by a local file: the cell's repository
serves `key-<release key>`, the image config behind that digest carries the same key
label, and a release tag points at the same digest (the key tag is moved only after
the release tag was verified, so a gate passed). Local records only suggest which tag
to check first.

Resume takes over, from the newest run of the same key, when that run failed or was
killed after its image was built: the image (still present, still labelled with the
key), a passed smoke test and complete benchmarks. The gate is decided again (it is
a pure function of the measurements and the key's policy). A changed key, a gated
run or a missing image starts over.
"""

from __future__ import annotations

from pathlib import Path

from flagrelease.adapters import docker_engine
from flagrelease.adapters.ledger import Ledger
from flagrelease.adapters.registry import RegistryClient
from flagrelease.adapters.registry_auth import resolve_credentials
from flagrelease.errors import ConfigError
from flagrelease.naming import key_tag, newest_release_tags
from flagrelease.record import RECORD_FILE, ReleaseRecord
from flagrelease.results import ExistingRelease
from flagrelease.steps.bench import SIDES
from flagrelease.steps.release_key import KEY_LABEL
from flagrelease.steps.report import load_raw

RESUMABLE = ("failed", "running", "interrupted")
# How many release tags, newest first, to ask the registry about when no local record names one.
TAGS_TO_SCAN = 30


def released_before(
    registry: str, repository: str, key: str, ledger: Ledger, model: str, chip: str
) -> ExistingRelease | None:
    """The release of `key` that `registry` serves, or None. `repository` excludes the host."""
    with RegistryClient(registry, resolve_credentials(registry)) as api:
        digest = api.manifest_digest(repository, key_tag(key))
        if digest is None or api.labels(repository, digest).get(KEY_LABEL) != key:
            return None
        known = [
            (row.tags[0], row.run_id)
            for row in ledger.list(model=model, chip=chip, qualified=True)
            if row.digest == digest and (row.registry, row.repository) == (registry, repository) and row.tags
        ]
        for tag, run_id in known:
            if api.manifest_digest(repository, tag) == digest:
                return ExistingRelease(registry=registry, repository=repository, tag=tag, digest=digest, run_id=run_id)
        for tag in newest_release_tags(api.tags(repository))[:TAGS_TO_SCAN]:
            if api.manifest_digest(repository, tag) == digest:
                return ExistingRelease(registry=registry, repository=repository, tag=tag, digest=digest)
    return None


def resumable(client, results_dir: Path, cell_slug: str, key: str) -> tuple[ReleaseRecord, Path] | None:
    """The newest run of `cell_slug` with release key `key`, if it can be resumed."""
    # Run ids start with their UTC start time: name order is time order.
    for run_dir in sorted((results_dir / cell_slug).glob(f"*/{RECORD_FILE}"), reverse=True):
        try:
            record = ReleaseRecord.load(run_dir)
        except ConfigError:
            continue  # a torn record (killed while writing) is no run to resume
        if record.release_key != key:
            continue
        if record.status not in RESUMABLE or record.image is None:
            return None
        present = docker_engine.image_id(client, record.image.image_id)
        if present is None or docker_engine.image_labels(client, present).get(KEY_LABEL) != key:
            return None
        return record, run_dir.parent
    return None


def take_over(client, record: ReleaseRecord, earlier: ReleaseRecord, earlier_dir: Path, tag: str) -> None:
    """Copy the completed stages of `earlier` into `record`, the image under this run's `tag`."""
    image = earlier.image
    assert image is not None, "resumable() returns runs with an image"
    earlier = load_raw(earlier_dir, earlier)
    docker_engine.tag(client, image.image_id, image.repository, tag)
    record.resumed_from = earlier.run_id
    record.image = image.model_copy(update={"tag": tag, "reused": True, "seconds": 0.0})
    record.reused = ["build"]
    if earlier.smoke is not None and earlier.smoke.passed:
        record.smoke = earlier.smoke
        record.reused.append("smoke")
        if set(earlier.bench) == set(SIDES):
            record.bench, record.flaggems_installed = earlier.bench, earlier.flaggems_installed
            record.reused.append("bench")
