"""Verify step: does an image in the registry match its release record, SBOM, provenance and card?

The record comes from the ledger (by the image's REPO:TAG or REPO@DIGEST) or from a run
directory; everything else read back from the registry itself (what it serves, not what
the release remembered): the digest the reference serves, the labels of that
image's config, the SBOM and provenance attached to that digest. Each check is decided by
a pure function below; `verify` only gathers what they judge.

    report = verify("127.0.0.1:5000/flagrelease/<name>:2612021200", settings)
    report.passed, [(c.name, c.passed, c.detail) for c in report.checks]
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from pydantic import BaseModel, ValidationError

from flagrelease.adapters.artifact_store import store_from_settings
from flagrelease.adapters.ledger import Ledger
from flagrelease.adapters.registry import RegistryClient
from flagrelease.adapters.registry_auth import resolve_credentials
from flagrelease.cell_facts import pin_labels
from flagrelease.errors import ConfigError, ServiceError, excerpt
from flagrelease.provenance import Statement
from flagrelease.record import RECORD_FILE, ReleaseRecord
from flagrelease.settings import Settings
from flagrelease.steps.card import CARD
from flagrelease.supply_chain import (
    MEDIA_TYPES,
    PROVENANCE_KIND,
    SBOM_KIND,
    Check,
    check_pins,
    packages_from_cyclonedx,
    pin_labels_differ,
)

_REF = re.compile(
    r"^(?P<registry>(?:localhost|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)(?::[0-9]{1,5})?)/"
    r"(?P<repository>[a-z0-9]+(?:[._/-][a-z0-9]+)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})|@(?P<digest>sha256:[0-9a-f]{64}))$"
)
RUN_ANNOTATION = "org.flagos.release-run"


class ImageName(BaseModel):
    registry: str
    repository: str
    reference: str  # a tag or sha256:<hex>

    @property
    def ref(self) -> str:
        sep = "@" if self.reference.startswith("sha256:") else ":"
        return f"{self.registry}/{self.repository}{sep}{self.reference}"


class VerifyReport(BaseModel):
    ref: str
    digest: str | None  # what the registry serves for `ref`
    run_id: str
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


def parse_ref(ref: str) -> ImageName:
    """HOST[:PORT]/REPOSITORY:TAG or HOST[:PORT]/REPOSITORY@sha256:<hex>; anything else is bad input."""
    match = _REF.match(ref)
    if match is None or (match["registry"] != "localhost" and not re.search(r"[.:]", match["registry"])):
        raise ConfigError(
            f"{excerpt(ref)} is not an image reference with its registry",
            where="REF",
            fix="give HOST[:PORT]/REPOSITORY:TAG or HOST[:PORT]/REPOSITORY@sha256:<64 hex digits>, "
            "e.g. 127.0.0.1:5000/flagrelease/<name>:latest",
        )
    return ImageName(
        registry=match["registry"], repository=match["repository"], reference=match["tag"] or match["digest"]
    )


# --- the checks: pure decisions over what was gathered --------------------------------


def check_digest(name: ImageName, served: str | None, recorded: str) -> Check:
    if served is None:
        return Check(name="digest", passed=False, detail=f"the registry serves nothing for {name.ref}")
    if served != recorded:
        return Check(name="digest", passed=False, detail=f"{name.ref} serves {served}; the release is {recorded}")
    return Check(name="digest", passed=True, detail=f"{served} exists and is the released digest")


def check_labels(pins: dict[str, str], labels: dict[str, str] | None) -> Check:
    if labels is None:
        return Check(name="labels", passed=False, detail="no image to read labels from")
    wrong = pin_labels_differ(pin_labels(pins), labels)
    if wrong:
        return Check(name="labels", passed=False, detail="; ".join(wrong))
    return Check(name="labels", passed=True, detail=f"{len(pins)} pin labels match the record")


def check_attached(
    kind: str, digest: str, manifest: dict | None, document: bytes | None, recorded: str | None
) -> Check:
    """The artifact of `kind` refers to `digest` and holds the document the record names."""
    if manifest is None or document is None:
        return Check(name=kind, passed=False, detail=f"no {kind} is attached to {digest}")
    subject = (manifest.get("subject") or {}).get("digest")
    if subject != digest:
        return Check(name=kind, passed=False, detail=f"the {kind} artifact's subject is {subject}, not {digest}")
    sha = hashlib.sha256(document).hexdigest()
    if recorded is not None and sha != recorded:
        return Check(name=kind, passed=False, detail=f"the attached {kind} (sha256 {sha[:12]}) is not the recorded one")
    return Check(name=kind, passed=True, detail=f"attached to {digest} (sha256 {sha[:12]})")


def check_sbom_pins(pins: dict[str, str], document: bytes | None) -> list[Check]:
    """One check per pinned component the SBOM must show (`sbom: flagscale`, ...)."""
    if document is None:
        return [Check(name="sbom: pins", passed=False, detail="no SBOM to compare the pins with")]
    try:
        packages = packages_from_cyclonedx(json.loads(document))
    except (ValueError, AttributeError):
        return [Check(name="sbom: pins", passed=False, detail="the SBOM is not CycloneDX JSON")]
    return [c.model_copy(update={"name": f"sbom: {c.name}"}) for c in check_pins(pins, packages)]


def check_provenance(document: bytes | None, digest: str, run_id: str) -> Check:
    if document is None:
        return Check(name="provenance: subject", passed=False, detail="no provenance to read")
    try:
        statement = Statement.model_validate_json(document)
    except ValidationError as err:
        return Check(
            name="provenance: subject", passed=False, detail=f"not an in-toto/SLSA statement: {err.errors()[0]['msg']}"
        )
    if digest not in statement.subject_digests():
        named = ", ".join(statement.subject_digests()) or "no digest"
        return Check(name="provenance: subject", passed=False, detail=f"names {named}, not {digest}")
    invocation = statement.predicate.runDetails.metadata.invocationId
    if invocation != run_id:
        return Check(name="provenance: subject", passed=False, detail=f"made by run {invocation}, not {run_id}")
    return Check(name="provenance: subject", passed=True, detail=f"names {digest}, made by run {run_id}")


def check_card(card: str | None, repository: str, digest: str, where: str) -> Check:
    """Every pull reference of `repository` in the card (`.../<repository>@sha256:...`) is `digest`."""
    if card is None:
        return Check(name="card", passed=False, detail=f"no model card at {where}")
    named = set(re.findall(re.escape(f"/{repository}@") + r"(sha256:[0-9a-f]{64})", card))
    if named != {digest}:
        return Check(name="card", passed=False, detail=f"the card names {', '.join(sorted(named)) or 'no digest'}")
    return Check(name="card", passed=True, detail=f"{where} names {digest}")


# --- gathering ------------------------------------------------------------------------


def find_record(name: ImageName, settings: Settings, record_path: Path | None) -> tuple[ReleaseRecord, Path]:
    """The release record `name` belongs to, and the run directory it names."""
    if record_path is not None:
        record = ReleaseRecord.load(record_path)
        run_dir = record_path if record_path.is_dir() else record_path.parent
    else:
        record = Ledger(settings.ledger_path).show(name.ref)
        run_dir = record.directory(settings.results_dir)
    if record.status != "released" or record.publish is None:
        raise ConfigError(
            f"run {record.run_id} has status {record.status!r}: only a released image can be verified",
            where=str(run_dir / RECORD_FILE),
            fix="give the reference of a released image (`flagrelease releases list --qualified`)",
        )
    return record, run_dir


def _read_card(record: ReleaseRecord, run_dir: Path, settings: Settings) -> tuple[str | None, str]:
    local = run_dir / CARD
    if local.is_file():
        return local.read_text(), str(local)
    for store in store_from_settings(settings.s3_url, settings.s3_endpoint_url, settings.results_dir)[1:]:
        key = f"{record.cell}/{record.run_id}/{CARD}"
        try:
            return store.get(key).decode(), f"{store.location}/{key}"
        except ServiceError:
            continue
    return None, str(local)


def _attached(api: RegistryClient, repository: str, digest: str, kind: str, run_id: str) -> tuple[dict, bytes] | None:
    """The manifest and document of the newest `kind` artifact referring to `digest` (this run's first)."""
    found = [r for r in api.referrers(repository, digest) if r.get("artifactType") == MEDIA_TYPES[kind]]
    if not found:
        return None
    ours = [r for r in found if (r.get("annotations") or {}).get(RUN_ANNOTATION) == run_id]
    manifest = api.manifest_document(repository, (ours or found)[-1]["digest"])
    if manifest is None or not manifest.get("layers"):
        return None
    return manifest, api.blob(repository, manifest["layers"][0]["digest"])


def verify(ref: str, settings: Settings, record_path: Path | None = None) -> VerifyReport:
    name = parse_ref(ref)
    record, run_dir = find_record(name, settings, record_path)
    assert record.publish is not None  # find_record checked it
    with RegistryClient(name.registry, resolve_credentials(name.registry)) as api:
        api.check()
        served = api.manifest_digest(name.repository, name.reference)
        checks = [check_digest(name, served, record.publish.digest)]
        labels = api.labels(name.repository, served) if served else None
        checks.append(check_labels(record.pins, labels))
        documents: dict[str, bytes | None] = {}
        for kind in (SBOM_KIND, PROVENANCE_KIND):
            found = _attached(api, name.repository, served, kind, record.run_id) if served else None
            recorded = record.attestations.get(kind)
            documents[kind] = found[1] if found else None
            checks.append(
                check_attached(
                    kind,
                    served or "the missing digest",
                    found[0] if found else None,
                    documents[kind],
                    recorded.sha256 if recorded else None,
                )
            )
    checks += check_sbom_pins(record.pins, documents[SBOM_KIND])
    checks.append(check_provenance(documents[PROVENANCE_KIND], served or "", record.run_id))
    card, where = _read_card(record, run_dir, settings)
    checks.append(check_card(card, record.publish.repository, served or record.publish.digest, where))
    return VerifyReport(ref=name.ref, digest=served, run_id=record.run_id, checks=checks)
