"""How a released image was made: an in-toto Statement v1 with an SLSA provenance v1 predicate.

    statement = Statement(subject=[ResourceDescriptor(name=..., digest={"sha256": hex})], predicate=...)
    text = statement.to_json()

Typed models of the published shapes (https://in-toto.io/Statement/v1,
https://slsa.dev/provenance/v1), serialized by pydantic; what goes into them is decided
by steps/provenance.py. Secrets have no field here: parameters are named one by one there.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# What a FlagRelease release-cell run is, as SLSA's buildType (a URI naming the build's schema).
BUILD_TYPE = "urn:flagrelease:build-type:release-cell:v1"


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class ResourceDescriptor(_Model):
    name: str | None = None
    uri: str | None = None
    digest: dict[str, str] | None = None
    annotations: dict[str, Any] | None = None


class BuildDefinition(_Model):
    buildType: str = BUILD_TYPE
    externalParameters: dict[str, Any]
    internalParameters: dict[str, Any] = {}
    resolvedDependencies: list[ResourceDescriptor] = []


class Builder(_Model):
    id: str
    version: dict[str, str] = {}


class BuildMetadata(_Model):
    invocationId: str
    startedOn: datetime
    finishedOn: datetime


class RunDetails(_Model):
    builder: Builder
    metadata: BuildMetadata
    byproducts: list[ResourceDescriptor] = []


class SlsaProvenance(_Model):
    buildDefinition: BuildDefinition
    runDetails: RunDetails


class Statement(_Model):
    type_: Literal["https://in-toto.io/Statement/v1"] = Field(default="https://in-toto.io/Statement/v1", alias="_type")
    subject: list[ResourceDescriptor]
    predicateType: Literal["https://slsa.dev/provenance/v1"] = "https://slsa.dev/provenance/v1"
    predicate: SlsaProvenance

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True, indent=2) + "\n"

    def subject_digests(self) -> list[str]:
        """`sha256:<hex>` of every subject."""
        return [f"sha256:{s.digest['sha256']}" for s in self.subject if s.digest and "sha256" in s.digest]


def sha256_digest(digest: str) -> dict[str, str]:
    """`sha256:<hex>` as a DigestSet ({"sha256": hex})."""
    algorithm, _, value = digest.partition(":")
    return {algorithm: value}


class BuildInputs(BaseModel):
    """What a release was made from, gathered on the host that built it (steps/provenance.py)."""

    matrix_path: str
    matrix_sha256: str
    template_path: str
    template_sha256: str
    stack_context_sha256: str
    model_context_sha256: str
    base_ref: str
    base_image_id: str  # sha256:<hex> of the base image's config
    git_commit: str | None = None
    git_dirty: bool = False
    dockerd: str
    # The run's parameters and build settings, secrets named but never valued.
    parameters: dict[str, Any] = {}
